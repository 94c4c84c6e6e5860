//! The eviction manager's decisions, as data (the kubelet's `pkg/kubelet/eviction`, pure).
//!
//! Owns: the signals and their thresholds (`--eviction-hard`, `--eviction-soft` with
//! `--eviction-soft-grace-period`, `--eviction-minimum-reclaim`; [`parse_thresholds`] with the
//! kubelet's messages), [`Manager::synchronize`] (which thresholds are met — a soft one only
//! after its grace period, a met one until its minimum reclaim is reached too —, the node
//! conditions they raise, kept for `--eviction-pressure-transition-period` after the last
//! sighting, and the threshold to reclaim, memory first), the pods' order ([`rank`]: the
//! kubelet's `rankMemoryPressure`, `rankDiskPressureFunc`, `rankPIDPressure`), the eviction
//! message ([`message`]) and admission under pressure ([`admit`]). No I/O, no clock: `now`
//! comes in.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::node::quantity::{Amount, Format};

/// An eviction signal (the kubelet's `evictionapi.Signal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// A node condition an eviction signal raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    MemoryPressure,
    DiskPressure,
    PidPressure,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::MemoryPressure => "MemoryPressure",
            Condition::DiskPressure => "DiskPressure",
            Condition::PidPressure => "PIDPressure",
        }
    }
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The resource it starves (`signalToResource`).
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition it raises (`signalToNodeCondition`).
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::MemoryPressure,
            Signal::PidAvailable => Condition::PidPressure,
            _ => Condition::DiskPressure,
        }
    }

    /// How its quantities print (bytes in BinarySI, counts in DecimalSI).
    fn format(self) -> Format {
        match self.resource() {
            "memory" | "ephemeral-storage" => Format::BinarySi,
            _ => Format::DecimalSi,
        }
    }
}

/// A threshold's value: an absolute quantity, or a fraction of the capacity.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// The amount and its text as given (`100Mi`), which is how the kubelet prints it.
    Quantity(i64, String),
    /// A fraction in 0..=1 (float32, as the kubelet parses `10%`).
    Percentage(f32),
}

impl Value {
    /// As written in a flag or a KubeletConfiguration (`100Mi`, `10%`).
    pub fn text(&self) -> String {
        match self {
            Value::Quantity(_, text) => text.clone(),
            Value::Percentage(p) => format!("{}%", (f64::from(*p) * 1e6).round() / 1e4),
        }
    }

    /// `GetThresholdQuantity`: the amount this value is of `capacity`.
    pub fn of(&self, capacity: i64) -> i64 {
        match self {
            Value::Quantity(q, _) => *q,
            Value::Percentage(p) => (f64::from(*p) * capacity as f64) as i64,
        }
    }
}

/// One eviction threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: Value,
    /// Zero for a hard threshold.
    pub grace_period: Duration,
    pub min_reclaim: Option<Value>,
    /// Soft thresholds carry a grace period; `--eviction-soft-grace-period 0s` is still soft.
    pub hard: bool,
}

/// The kubelet's Linux `DefaultEvictionHard`, as `--eviction-hard` takes it (its default).
pub const DEFAULT_HARD: &str =
    "imagefs.available<15%,memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%";

/// [`DEFAULT_HARD`] as signal/value pairs.
pub fn default_hard() -> Vec<(String, String)> {
    DEFAULT_HARD
        .split(',')
        .filter_map(|p| p.split_once('<'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_signal(name: &str) -> Result<Signal, String> {
    Signal::parse(name).ok_or_else(|| format!("unsupported eviction signal {name}"))
}

fn parse_percentage(val: &str) -> Result<f32, String> {
    val.trim_end_matches('%')
        .parse::<f32>()
        .map(|p| p / 100.0)
        .map_err(|e| {
            format!(
                "strconv.ParseFloat: parsing {:?}: {e}",
                val.trim_end_matches('%')
            )
        })
}

fn parse_quantity(val: &str) -> Result<Amount, String> {
    Amount::parse(val).map_err(|_| "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".to_string())
}

/// `parseThresholdStatement`: `None` for `0%` and `100%`, which turn a signal off.
fn parse_statement(signal: &str, val: &str) -> Result<Option<Threshold>, String> {
    let signal = parse_signal(signal)?;
    let value = if val.ends_with('%') {
        if val == "0%" || val == "100%" {
            return Ok(None);
        }
        let p = parse_percentage(val)?;
        if p < 0.0 {
            return Err(format!(
                "eviction percentage threshold {} must be >= 0%: {val}",
                signal.name()
            ));
        }
        if p > 1.0 {
            return Err(format!(
                "eviction percentage threshold {} must be <= 100%: {val}",
                signal.name()
            ));
        }
        Value::Percentage(p)
    } else {
        let q = parse_quantity(val)?;
        if q.milli() <= 0 {
            return Err(format!(
                "eviction threshold {} must be positive: {val}",
                signal.name()
            ));
        }
        Value::Quantity(
            i64::try_from(q.units_floor()).unwrap_or(i64::MAX),
            val.to_string(),
        )
    };
    Ok(Some(Threshold {
        signal,
        value,
        grace_period: Duration::ZERO,
        min_reclaim: None,
        hard: true,
    }))
}

/// The kubelet's `ParseThresholdConfig`: hard thresholds, soft ones (each needs a grace
/// period), and minimum reclaims for either. Signals are taken in name order (Go's map order is
/// random; the result is a set).
pub fn parse_thresholds(
    hard: &[(String, String)],
    soft: &[(String, String)],
    soft_grace: &[(String, Duration)],
    min_reclaim: &[(String, String)],
) -> Result<Vec<Threshold>, String> {
    let mut out = Vec::new();
    for (k, v) in hard {
        out.extend(parse_statement(k, v)?);
    }
    let mut graces = BTreeMap::new();
    for (k, d) in soft_grace {
        graces.insert(parse_signal(k)?, *d);
    }
    let mut reclaims = BTreeMap::new();
    for (k, v) in min_reclaim {
        let signal = parse_signal(k)?;
        let value = if v.ends_with('%') {
            let p = parse_percentage(v)?;
            if p <= 0.0 {
                return Err(format!(
                    "eviction percentage minimum reclaim {} must be positive: {v}",
                    signal.name()
                ));
            }
            Value::Percentage(p)
        } else {
            let q = parse_quantity(v)?;
            if q.is_negative() {
                return Err(format!(
                    "negative eviction minimum reclaim specified for {}",
                    signal.name()
                ));
            }
            Value::Quantity(
                i64::try_from(q.units_floor()).unwrap_or(i64::MAX),
                v.clone(),
            )
        };
        reclaims.insert(signal, value);
    }
    for (k, v) in soft {
        if let Some(mut t) = parse_statement(k, v)? {
            let Some(grace) = graces.get(&t.signal) else {
                return Err(format!(
                    "grace period must be specified for the soft eviction threshold {}",
                    t.signal.name()
                ));
            };
            t.grace_period = *grace;
            t.hard = false;
            out.push(t);
        }
    }
    for t in &mut out {
        t.min_reclaim = reclaims.get(&t.signal).cloned();
    }
    Ok(out)
}

/// What is observed of one signal: available and capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

pub type Observations = BTreeMap<Signal, Observation>;

/// `thresholdsMet`: `available < threshold` (+ the minimum reclaim when enforced).
fn met(t: &Threshold, obs: &Observations, enforce_min_reclaim: bool) -> bool {
    let Some(o) = obs.get(&t.signal) else {
        return false;
    };
    let mut quantity = t.value.of(o.capacity);
    if enforce_min_reclaim {
        if let Some(r) = &t.min_reclaim {
            quantity = quantity.saturating_add(r.of(o.capacity));
        }
    }
    quantity > o.available
}

/// What one round decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// The node conditions to report (within the transition period of their last sighting).
    pub conditions: BTreeSet<Condition>,
    /// The threshold to reclaim for now (its grace period met), memory first.
    pub reclaim: Option<Threshold>,
}

/// The eviction manager's memory between rounds.
#[derive(Debug)]
pub struct Manager {
    thresholds: Vec<Threshold>,
    pressure_transition_period: Duration,
    /// Indexes into `thresholds`: met, their grace periods satisfied, at the last round.
    met: BTreeSet<usize>,
    first_observed: BTreeMap<usize, Instant>,
    conditions_last_observed: BTreeMap<Condition, Instant>,
}

impl Manager {
    pub fn new(thresholds: Vec<Threshold>, pressure_transition_period: Duration) -> Manager {
        Manager {
            thresholds,
            pressure_transition_period,
            met: BTreeSet::new(),
            first_observed: BTreeMap::new(),
            conditions_last_observed: BTreeMap::new(),
        }
    }

    pub fn thresholds(&self) -> &[Threshold] {
        &self.thresholds
    }

    /// The kubelet's `synchronize`, without the acting.
    pub fn synchronize(&mut self, obs: &Observations, now: Instant) -> Step {
        let mut current: BTreeSet<usize> = (0..self.thresholds.len())
            .filter(|i| met(&self.thresholds[*i], obs, false))
            .collect();
        // Met before and not yet reclaimed down to threshold + minimum reclaim: still met.
        current.extend(
            self.met
                .iter()
                .copied()
                .filter(|i| met(&self.thresholds[*i], obs, true)),
        );
        let first_observed: BTreeMap<usize, Instant> = current
            .iter()
            .map(|i| (*i, self.first_observed.get(i).copied().unwrap_or(now)))
            .collect();
        for i in &current {
            self.conditions_last_observed
                .insert(self.thresholds[*i].signal.condition(), now);
        }
        let period = self.pressure_transition_period;
        self.conditions_last_observed
            .retain(|_, at| now.saturating_duration_since(*at) < period);
        let conditions: BTreeSet<Condition> =
            self.conditions_last_observed.keys().copied().collect();
        let ready: BTreeSet<usize> = first_observed
            .iter()
            .filter(|(i, at)| {
                now.saturating_duration_since(**at) >= self.thresholds[**i].grace_period
            })
            .map(|(i, _)| *i)
            .collect();
        self.first_observed = first_observed;
        self.met = ready.clone();
        // byEvictionPriority: memory before the rest.
        let reclaim = ready
            .iter()
            .min_by_key(|i| (self.thresholds[**i].signal != Signal::MemoryAvailable, **i))
            .map(|i| self.thresholds[*i].clone());
        Step {
            conditions,
            reclaim,
        }
    }

    /// `getThresholdMetInfo` for the message: the first met threshold of `resource` with its
    /// quantity and the observed available amount, as printed.
    pub fn met_info(&self, resource: &str, obs: &Observations) -> Option<(String, String)> {
        self.met
            .iter()
            .map(|i| &self.thresholds[*i])
            .find(|t| t.signal.resource() == resource)
            .and_then(|t| {
                let o = obs.get(&t.signal)?;
                let quantity = match &t.value {
                    Value::Quantity(_, text) => text.clone(),
                    v => format_amount(v.of(o.capacity), t.signal.format()),
                };
                Some((quantity, format_amount(o.available, t.signal.format())))
            })
    }
}

fn format_amount(v: i64, format: Format) -> String {
    Amount::from_milli(i128::from(v) * 1000).format(format)
}

/// What a pod uses, for ranking and the message; `None` where the stats are missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    pub uid: String,
    /// The pod's memory working set.
    pub memory: Option<u64>,
    /// Its containers' writable layers and logs, and its local volumes (bytes).
    pub disk: Option<u64>,
    /// The same in inodes.
    pub inodes: Option<u64>,
    pub processes: Option<u64>,
    /// Per container: (name, memory working set, writable layer + logs bytes).
    pub containers: Vec<(String, Option<u64>, Option<u64>)>,
}

fn priority(p: &Pod) -> i32 {
    p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `GetResourceRequestQuantity`: the pod's request of `resource`, overhead included.
fn request(p: &Pod, resource: &str) -> i64 {
    crate::pod::resources::pod_requests(p, true)
        .get(resource)
        .map_or(0, |q| q.value())
}

/// `cmpBool`: `true` sorts first.
fn first_true(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

/// The kubelet's ranking for `signal`: the pods to evict first come first. Memory: over their
/// request first, then lower priority, then the most usage above the request; disk and inodes
/// the same with ephemeral-storage; pids: lower priority, then more processes. Pods without
/// stats come first, as the kubelet's comparisons put them.
pub fn rank(pods: &mut [(&Pod, &PodUsage)], signal: Signal) {
    let usage_of = |u: &PodUsage| match signal.resource() {
        "memory" => u.memory,
        "ephemeral-storage" => u.disk,
        "inodes" => u.inodes,
        _ => u.processes,
    };
    let request_of = |p: &Pod| match signal.resource() {
        "memory" => request(p, "memory"),
        "ephemeral-storage" | "inodes" => request(p, "ephemeral-storage"),
        _ => 0,
    };
    pods.sort_by(|(p1, u1), (p2, u2)| {
        let (s1, s2) = (usage_of(u1), usage_of(u2));
        if s1.is_none() || s2.is_none() {
            return first_true(s1.is_none(), s2.is_none());
        }
        let (s1, s2) = (s1.unwrap_or(0) as i64, s2.unwrap_or(0) as i64);
        let by_priority = priority(p1).cmp(&priority(p2));
        if signal == Signal::PidAvailable {
            return by_priority.then(s2.cmp(&s1));
        }
        let (r1, r2) = (request_of(p1), request_of(p2));
        first_true(s1 > r1, s2 > r2)
            .then(by_priority)
            .then((s2 - r2).cmp(&(s1 - r1)))
    });
}

/// The kubelet's `evictionMessage`: the starved resource, the threshold and what was
/// available, and each container that used more than its request of it.
pub fn message(
    resource: &str,
    pod: &Pod,
    usage: &PodUsage,
    met_info: Option<(String, String)>,
) -> String {
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some((quantity, available)) = met_info {
        m += &format!("Threshold quantity: {quantity}, available: {available}. ");
    }
    let format = if resource == "memory" || resource == "ephemeral-storage" {
        Format::BinarySi
    } else {
        return m;
    };
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let Some((_, memory, disk)) = usage.containers.iter().find(|(n, _, _)| *n == c.name) else {
            continue;
        };
        let used = if resource == "memory" { *memory } else { *disk };
        let Some(used) = used else { continue };
        let req = c
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get(resource));
        let req_value = req
            .and_then(|q| Amount::parse(&q.0).ok())
            .map_or(0, |a| a.units_floor());
        if i128::from(used) > req_value {
            m += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {resource}. ",
                c.name,
                format_amount(used as i64, format),
                req.map_or_else(|| "0".to_string(), |q| q.0.clone()),
            );
        }
    }
    m
}

/// The kubelet's eviction admission: under memory pressure alone a BestEffort pod is refused
/// unless it tolerates the memory-pressure taint; under any other pressure every pod is; a
/// critical pod always comes in. The refusal's message.
pub fn admit(pod: &Pod, conditions: &BTreeSet<Condition>) -> Result<(), String> {
    if conditions.is_empty() || is_critical(pod) {
        return Ok(());
    }
    if conditions.len() == 1 && conditions.contains(&Condition::MemoryPressure) {
        if crate::pod::resources::qos_class(pod) != crate::pod::resources::QOS_BEST_EFFORT {
            return Ok(());
        }
        let tolerates = pod
            .spec
            .iter()
            .flat_map(|s| s.tolerations.iter().flatten())
            .any(|t| {
                let key_ok = match t.key.as_deref() {
                    None | Some("") => t.operator.as_deref() == Some("Exists"),
                    Some(k) => k == "node.kubernetes.io/memory-pressure",
                };
                let effect_ok = matches!(t.effect.as_deref(), None | Some("" | "NoSchedule"));
                let value_ok = t.operator.as_deref() == Some("Exists")
                    || t.value.as_deref().unwrap_or("").is_empty();
                key_ok && effect_ok && value_ok
            });
        if tolerates {
            return Ok(());
        }
    }
    let names: Vec<&str> = conditions.iter().map(|c| c.as_str()).collect();
    Err(format!("The node had condition: [{}]. ", names.join(" ")))
}

/// `IsCriticalPod`: static and mirror pods, and pods at system-critical priority or above,
/// are never evicted.
pub fn is_critical(pod: &Pod) -> bool {
    crate::source::is_static(pod)
        || crate::source::is_mirror(pod)
        || priority(pod) >= crate::pod::shutdown::SYSTEM_CRITICAL_PRIORITY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn thresholds_parse_as_the_kubelets_with_its_messages() {
        let t = parse_thresholds(
            &kv(&[("memory.available", "100Mi"), ("nodefs.available", "10%")]),
            &kv(&[("memory.available", "300Mi")]),
            &[("memory.available".to_string(), Duration::from_secs(90))],
            &kv(&[("memory.available", "50Mi")]),
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[0].value, Value::Quantity(100 << 20, "100Mi".into()));
        assert!(t[0].hard);
        assert_eq!(t[1].value, Value::Percentage(0.1));
        assert_eq!(t[2].grace_period, Duration::from_secs(90));
        assert!(!t[2].hard);
        assert_eq!(
            t[0].min_reclaim,
            Some(Value::Quantity(50 << 20, "50Mi".into()))
        );
        assert_eq!(t[2].min_reclaim, t[0].min_reclaim);
        let none = parse_thresholds(&kv(&[("nodefs.available", "0%")]), &[], &[], &[]).unwrap();
        assert!(none.is_empty(), "0% turns a signal off");
        for (hard, soft, grace, want) in [
            (
                kv(&[("disk.available", "1Gi")]),
                vec![],
                vec![],
                "unsupported eviction signal disk.available",
            ),
            (
                kv(&[("memory.available", "101%")]),
                vec![],
                vec![],
                "eviction percentage threshold memory.available must be <= 100%: 101%",
            ),
            (
                kv(&[("memory.available", "0")]),
                vec![],
                vec![],
                "eviction threshold memory.available must be positive: 0",
            ),
            (
                vec![],
                kv(&[("pid.available", "100")]),
                vec![],
                "grace period must be specified for the soft eviction threshold pid.available",
            ),
        ] {
            assert_eq!(
                parse_thresholds(&hard, &soft, &grace, &[]).unwrap_err(),
                want
            );
        }
    }

    fn obs(pairs: &[(Signal, i64, i64)]) -> Observations {
        pairs
            .iter()
            .map(|(s, a, c)| {
                (
                    *s,
                    Observation {
                        available: *a,
                        capacity: *c,
                    },
                )
            })
            .collect()
    }

    const MI: i64 = 1 << 20;

    #[test]
    fn a_hard_threshold_acts_at_once_and_its_condition_outlives_it_by_the_transition_period() {
        let t = parse_thresholds(
            &kv(&[("memory.available", "100Mi"), ("nodefs.available", "10%")]),
            &[],
            &[],
            &kv(&[("memory.available", "50Mi")]),
        )
        .unwrap();
        let mut m = Manager::new(t, Duration::from_secs(300));
        let t0 = Instant::now();
        let fine = obs(&[
            (Signal::MemoryAvailable, 500 * MI, 1000 * MI),
            (Signal::NodeFsAvailable, 500, 1000),
        ]);
        assert_eq!(m.synchronize(&fine, t0), Step::default());
        // Both low: memory is reclaimed first; both conditions.
        let low = obs(&[
            (Signal::MemoryAvailable, 90 * MI, 1000 * MI),
            (Signal::NodeFsAvailable, 50, 1000),
        ]);
        let s = m.synchronize(&low, t0 + Duration::from_secs(10));
        assert_eq!(s.reclaim.unwrap().signal, Signal::MemoryAvailable);
        assert_eq!(
            s.conditions,
            BTreeSet::from([Condition::MemoryPressure, Condition::DiskPressure])
        );
        assert_eq!(
            m.met_info("memory", &low),
            Some(("100Mi".to_string(), "90Mi".to_string()))
        );
        // Above 100Mi but under 100Mi + the 50Mi minimum reclaim: still reclaiming memory.
        let some = obs(&[
            (Signal::MemoryAvailable, 120 * MI, 1000 * MI),
            (Signal::NodeFsAvailable, 500, 1000),
        ]);
        let s = m.synchronize(&some, t0 + Duration::from_secs(20));
        assert_eq!(s.reclaim.unwrap().signal, Signal::MemoryAvailable);
        // Reclaimed: nothing to do, but the conditions stay for the transition period.
        let s = m.synchronize(&fine, t0 + Duration::from_secs(30));
        assert_eq!(s.reclaim, None);
        assert_eq!(s.conditions.len(), 2);
        let s = m.synchronize(&fine, t0 + Duration::from_secs(321));
        assert!(s.conditions.is_empty(), "{s:?}");
    }

    #[test]
    fn a_soft_threshold_waits_for_its_grace_period() {
        let t = parse_thresholds(
            &[],
            &kv(&[("pid.available", "100")]),
            &[("pid.available".to_string(), Duration::from_secs(30))],
            &[],
        )
        .unwrap();
        let mut m = Manager::new(t, Duration::ZERO);
        let t0 = Instant::now();
        let low = obs(&[(Signal::PidAvailable, 50, 1000)]);
        let s = m.synchronize(&low, t0);
        assert_eq!(s.reclaim, None, "grace period not met");
        assert_eq!(
            s.conditions,
            BTreeSet::new(),
            "a zero transition period ends at once"
        );
        let s = m.synchronize(&low, t0 + Duration::from_secs(29));
        assert_eq!(s.reclaim, None);
        let s = m.synchronize(&low, t0 + Duration::from_secs(30));
        assert_eq!(s.reclaim.unwrap().signal, Signal::PidAvailable);
        // Recovered in between: the grace period starts over.
        m.synchronize(
            &obs(&[(Signal::PidAvailable, 500, 1000)]),
            t0 + Duration::from_secs(40),
        );
        assert_eq!(
            m.synchronize(&low, t0 + Duration::from_secs(50)).reclaim,
            None
        );
    }

    fn pod(name: &str, priority: i32, requests: &[(&str, &str)]) -> Pod {
        let req: serde_json::Map<String, serde_json::Value> = requests
            .iter()
            .map(|(k, v)| (k.to_string(), (*v).into()))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"priority": priority, "containers": [
                {"name": "c", "image": "i", "resources": {"requests": req}}]}
        }))
        .unwrap()
    }

    fn usage(name: &str, memory: Option<u64>) -> PodUsage {
        PodUsage {
            uid: name.into(),
            memory,
            disk: memory,
            processes: memory,
            containers: vec![("c".into(), memory, memory)],
            ..Default::default()
        }
    }

    #[test]
    fn memory_ranking_is_over_request_then_priority_then_usage_above_request() {
        let within = pod("within", 0, &[("memory", "1Gi")]);
        let over_small = pod("over-small", 0, &[("memory", "10Mi")]);
        let over_big = pod("over-big", 0, &[]);
        let over_important = pod("over-important", 1000, &[]);
        let no_stats = pod("no-stats", 5000, &[]);
        let us = [
            usage("within", Some(500 << 20)),
            usage("over-small", Some(20 << 20)),
            usage("over-big", Some(200 << 20)),
            usage("over-important", Some(900 << 20)),
            usage("no-stats", None),
        ];
        let mut v: Vec<(&Pod, &PodUsage)> = vec![
            (&within, &us[0]),
            (&over_small, &us[1]),
            (&over_big, &us[2]),
            (&over_important, &us[3]),
            (&no_stats, &us[4]),
        ];
        rank(&mut v, Signal::MemoryAvailable);
        let order: Vec<&str> = v.iter().map(|(_, u)| u.uid.as_str()).collect();
        assert_eq!(
            order,
            [
                "no-stats",
                "over-big",
                "over-small",
                "over-important",
                "within"
            ]
        );
        rank(&mut v, Signal::PidAvailable);
        let order: Vec<&str> = v.iter().map(|(_, u)| u.uid.as_str()).collect();
        // pids: lower priority first, then the most processes.
        assert_eq!(
            order,
            [
                "no-stats",
                "within",
                "over-big",
                "over-small",
                "over-important"
            ]
        );
    }

    #[test]
    fn the_message_names_the_threshold_and_the_containers_over_their_request() {
        let p = pod("hog", 0, &[("memory", "10Mi")]);
        let u = usage("hog", Some(150 << 20));
        assert_eq!(
            message("memory", &p, &u, Some(("100Mi".into(), "90Mi".into()))),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 90Mi. Container c was using 150Mi, request is 10Mi, has larger consumption of memory. "
        );
        let p = pod("small", 0, &[]);
        let u = usage("small", Some(1000));
        assert_eq!(
            message("ephemeral-storage", &p, &u, None),
            "The node was low on resource: ephemeral-storage. Container c was using 1000, request is 0, has larger consumption of ephemeral-storage. "
        );
        assert_eq!(
            message("pids", &p, &u, Some(("100".into(), "50".into()))),
            "The node was low on resource: pids. Threshold quantity: 100, available: 50. "
        );
    }

    #[test]
    fn admission_under_pressure_is_the_kubelets() {
        let be = pod("be", 0, &[]);
        let burstable = pod("b", 0, &[("memory", "1Mi")]);
        let mem = BTreeSet::from([Condition::MemoryPressure]);
        assert_eq!(admit(&be, &BTreeSet::new()), Ok(()));
        assert_eq!(
            admit(&be, &mem),
            Err("The node had condition: [MemoryPressure]. ".to_string())
        );
        assert_eq!(admit(&burstable, &mem), Ok(()));
        let mut tolerant = be.clone();
        tolerant.spec.as_mut().unwrap().tolerations =
            Some(vec![serde_json::from_value(serde_json::json!({
                "key": "node.kubernetes.io/memory-pressure", "operator": "Exists",
                "effect": "NoSchedule"}))
            .unwrap()]);
        assert_eq!(admit(&tolerant, &mem), Ok(()));
        let both = BTreeSet::from([Condition::MemoryPressure, Condition::DiskPressure]);
        assert_eq!(
            admit(&burstable, &both),
            Err("The node had condition: [MemoryPressure DiskPressure]. ".to_string())
        );
        let critical = pod("c", 2_000_000_000, &[]);
        assert_eq!(admit(&critical, &both), Ok(()));
    }
}
