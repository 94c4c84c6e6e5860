//! Pod QoS class and a container's Linux resources (cpu shares/quota, memory limit, OOM score).
//!
//! Owns the kubelet's arithmetic: `GetPodQOS`/`ComputePodQOS` (pkg/apis/core/v1/helper/qos),
//! `GetContainerOOMScoreAdjust` (pkg/kubelet/qos/policy.go), `MilliCPUToShares` and
//! `milliCPUToQuota` (cm/helpers_linux.go) and `calculateLinuxResources`
//! (kuberuntime_container_linux.go). Host facts (memory capacity, cgroup v2) come in as
//! arguments. Not covered, as the kubelet's defaults leave them off: pod-level resources,
//! hugepages, swap, MemoryQoS, static CPU manager.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use crate::cri::api;
use crate::quantity::{Quantity, QuantityError};

/// `Guaranteed`
pub const QOS_GUARANTEED: &str = "Guaranteed";
/// `Burstable`
pub const QOS_BURSTABLE: &str = "Burstable";
/// `BestEffort`
pub const QOS_BEST_EFFORT: &str = "BestEffort";

/// The CFS period the kubelet uses (100 ms), in microseconds.
pub const QUOTA_PERIOD: i64 = 100_000;
/// The smallest CFS quota the kubelet sets (1 ms).
pub const MIN_QUOTA: i64 = 1_000;
/// Kernel minimum of cpu.shares; also what a container without a cpu request gets.
pub const MIN_SHARES: i64 = 2;
/// Kernel maximum of cpu.shares.
pub const MAX_SHARES: i64 = 262_144;

const GUARANTEED_OOM_SCORE_ADJ: i64 = -997;
const BEST_EFFORT_OOM_SCORE_ADJ: i64 = 1000;

/// The pod's QoS class: `status.qosClass` when the API server set it (as the kubelet's
/// `GetPodQOS` does, so that a resize never changes it), else computed from the spec.
pub fn qos_class(pod: &Pod) -> &'static str {
    match pod.status.as_ref().and_then(|s| s.qos_class.as_deref()) {
        Some(QOS_GUARANTEED) => QOS_GUARANTEED,
        Some(QOS_BURSTABLE) => QOS_BURSTABLE,
        Some(QOS_BEST_EFFORT) => QOS_BEST_EFFORT,
        _ => compute_qos_class(pod),
    }
}

/// The kubelet's `ComputePodQOS` over containers and init containers (not ephemeral ones):
/// BestEffort without any cpu/memory request or limit, Guaranteed when every container limits
/// both and the summed requests equal the summed limits, Burstable otherwise. A quantity that
/// does not parse counts as zero here (the API server validated it; translation reports it).
pub fn compute_qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return QOS_BEST_EFFORT;
    };
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        let res = c.resources.as_ref();
        for (name, q) in res.and_then(|r| r.requests.as_ref()).into_iter().flatten() {
            if let Some(name) = compute_resource(name) {
                let q = parse_or_zero(q);
                if q.is_positive() {
                    let sum = requests.entry(name).or_default();
                    *sum = *sum + q;
                }
            }
        }
        let mut limited = (false, false);
        for (name, q) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
            if let Some(name) = compute_resource(name) {
                let q = parse_or_zero(q);
                if q.is_positive() {
                    if name == "cpu" {
                        limited.0 = true;
                    } else {
                        limited.1 = true;
                    }
                    let sum = limits.entry(name).or_default();
                    *sum = *sum + q;
                }
            }
        }
        if limited != (true, true) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QOS_BEST_EFFORT;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, v)| limits.get(k) == Some(v))
    {
        return QOS_GUARANTEED;
    }
    QOS_BURSTABLE
}

fn compute_resource(name: &str) -> Option<&'static str> {
    match name {
        "cpu" => Some("cpu"),
        "memory" => Some("memory"),
        _ => None,
    }
}

fn parse_or_zero(q: &K8sQuantity) -> Quantity {
    Quantity::parse(&q.0).unwrap_or(Quantity::ZERO)
}

/// The kubelet's `MilliCPUToShares`: 1024 shares per cpu, clamped to the kernel's 2..=262144.
pub fn milli_cpu_to_shares(milli_cpu: i64) -> i64 {
    if milli_cpu <= 0 {
        return MIN_SHARES;
    }
    let shares = milli_cpu.saturating_mul(1024) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// The kubelet's `milliCPUToQuota` for a period: 0 (no quota) without a limit, else the limit's
/// share of the period, at least 1 ms.
pub fn milli_cpu_to_quota(milli_cpu: i64, period: i64) -> i64 {
    if milli_cpu <= 0 {
        return 0;
    }
    (milli_cpu.saturating_mul(period) / 1000).max(MIN_QUOTA)
}

/// Whether the pod is node-critical (`system-node-critical` priority class with a critical
/// priority), which the kubelet protects like a Guaranteed pod.
fn is_node_critical(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.priority_class_name.as_deref() == Some("system-node-critical")
        && spec.priority.unwrap_or(0) >= 2_000_000_000
}

/// The kubelet's `GetContainerOOMScoreAdjust`: -997 for Guaranteed (and node-critical) pods,
/// 1000 for BestEffort, and for Burstable `1000 - 1000 * memory request / capacity` clamped to
/// 3..=999 (a sidecar, i.e. a restartable init container, gets at most the score of the
/// smallest app container). `memory_capacity` is the node's memory in bytes.
pub fn oom_score_adj(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
) -> Result<i64, QuantityError> {
    if is_node_critical(pod) {
        return Ok(GUARANTEED_OOM_SCORE_ADJ);
    }
    match qos_class(pod) {
        QOS_GUARANTEED => return Ok(GUARANTEED_OOM_SCORE_ADJ),
        QOS_BEST_EFFORT => return Ok(BEST_EFFORT_OOM_SCORE_ADJ),
        _ => {}
    }
    let capacity = i128::from(memory_capacity.max(1));
    let score = |request: i64| 1000 - (1000 * i128::from(request)) / capacity;
    let mut adj = score(memory_request(container)?);
    if is_sidecar(pod, container) {
        let min_regular = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .map(memory_request)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .min();
        if let Some(min) = min_regular {
            adj = adj.min(score(min));
        }
    }
    let floor = i128::from(1000 + GUARANTEED_OOM_SCORE_ADJ);
    if adj < floor {
        return Ok(1000 + GUARANTEED_OOM_SCORE_ADJ);
    }
    if adj >= i128::from(BEST_EFFORT_OOM_SCORE_ADJ) {
        return Ok(BEST_EFFORT_OOM_SCORE_ADJ - 1);
    }
    Ok(i64::try_from(adj).unwrap_or(BEST_EFFORT_OOM_SCORE_ADJ - 1))
}

/// An init container with `restartPolicy: Always`.
fn is_sidecar(pod: &Pod, container: &Container) -> bool {
    container.restart_policy.as_deref() == Some("Always")
        && pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .any(|c| c.name == container.name)
}

fn resource(
    container: &Container,
    limits: bool,
    name: &str,
) -> Result<Option<Quantity>, QuantityError> {
    let list = container.resources.as_ref().and_then(|r| {
        if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }
    });
    list.and_then(|l| l.get(name))
        .map(|q| Quantity::parse(&q.0))
        .transpose()
}

/// The container's memory request in bytes (0 when unset).
pub fn memory_request(container: &Container) -> Result<i64, QuantityError> {
    Ok(resource(container, false, "memory")?.map_or(0, |q| q.value()))
}

/// The kubelet's `generateLinuxContainerResources` with its defaults (CFS quota enforced,
/// period 100 ms): shares from the cpu request (else the limit, else 2), quota from the cpu
/// limit, the memory limit, the OOM score adjustment, and on cgroup v2 `memory.oom.group=1`
/// (the kubelet's default `singleProcessOOMKill: false`).
pub fn linux_container_resources(
    pod: &Pod,
    container: &Container,
    memory_capacity: i64,
    cgroup_v2: bool,
) -> Result<api::LinuxContainerResources, QuantityError> {
    let cpu_request = resource(container, false, "cpu")?;
    let cpu_limit = resource(container, true, "cpu")?.unwrap_or_default();
    let memory_limit = resource(container, true, "memory")?.unwrap_or_default();
    let shares = match cpu_request {
        Some(req) => milli_cpu_to_shares(req.milli_value()),
        None => milli_cpu_to_shares(cpu_limit.milli_value()),
    };
    let mut r = api::LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(cpu_limit.milli_value(), QUOTA_PERIOD),
        memory_limit_in_bytes: memory_limit.value().max(0),
        oom_score_adj: oom_score_adj(pod, container, memory_capacity)?,
        ..Default::default()
    };
    if cgroup_v2 {
        r.unified
            .insert("memory.oom.group".to_string(), "1".to_string());
    }
    Ok(r)
}

/// Per-resource totals of a pod (`cpu`, `memory`, …), as `v1.ResourceList` sums.
pub type Totals = BTreeMap<String, Quantity>;

fn add_list(into: &mut Totals, list: Option<&BTreeMap<String, K8sQuantity>>) {
    for (name, q) in list.into_iter().flatten() {
        let sum = into.get(name).copied().unwrap_or(Quantity::ZERO) + parse_or_zero(q);
        into.insert(name.clone(), sum);
    }
}

fn add_totals(into: &mut Totals, other: &Totals) {
    for (name, q) in other {
        let sum = into.get(name).copied().unwrap_or(Quantity::ZERO) + *q;
        into.insert(name.clone(), sum);
    }
}

fn max_totals(into: &mut Totals, other: &Totals) {
    for (name, q) in other {
        match into.get(name) {
            Some(have) if have.nanos() >= q.nanos() => {}
            _ => {
                into.insert(name.clone(), *q);
            }
        }
    }
}

fn is_restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The kubelet's `PodRequests`/`PodLimits` (`pkg/api/v1/resource`) without the overhead: the
/// app containers' sum, at least what each init container needs while it runs (itself and the
/// restartable init containers before it), restartable init containers added. `each` sees
/// every app container's list and every init container's running total, as `ContainerFn`.
fn pod_totals(pod: &Pod, limits: bool, mut each: impl FnMut(&Totals)) -> Totals {
    fn list(c: &Container, limits: bool) -> Option<&BTreeMap<String, K8sQuantity>> {
        let r = c.resources.as_ref()?;
        if limits {
            r.limits.as_ref()
        } else {
            r.requests.as_ref()
        }
    }
    let spec = pod.spec.as_ref();
    let mut out = Totals::new();
    for c in spec.map(|s| s.containers.as_slice()).unwrap_or_default() {
        let mut one = Totals::new();
        add_list(&mut one, list(c, limits));
        each(&one);
        add_totals(&mut out, &one);
    }
    let mut restartable = Totals::new();
    let mut init_max = Totals::new();
    for c in spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
    {
        let mut one = Totals::new();
        add_list(&mut one, list(c, limits));
        let running = if is_restartable(c) {
            add_totals(&mut out, &one);
            add_totals(&mut restartable, &one);
            restartable.clone()
        } else {
            add_totals(&mut one, &restartable);
            one
        };
        each(&running);
        max_totals(&mut init_max, &running);
    }
    max_totals(&mut out, &init_max);
    out
}

fn overhead(pod: &Pod) -> Totals {
    let mut o = Totals::new();
    add_list(&mut o, pod.spec.as_ref().and_then(|s| s.overhead.as_ref()));
    o
}

/// The kubelet's `PodRequests`; `spec.overhead` (a RuntimeClass's, set at admission) added
/// when `with_overhead`.
pub fn pod_requests(pod: &Pod, with_overhead: bool) -> Totals {
    let mut r = pod_totals(pod, false, |_| {});
    if with_overhead {
        add_totals(&mut r, &overhead(pod));
    }
    r
}

/// The kubelet's `PodLimits`; with `with_overhead`, the overhead is added to the limits that
/// are set and not zero.
pub fn pod_limits(pod: &Pod, with_overhead: bool) -> Totals {
    let mut l = pod_totals(pod, true, |_| {});
    if with_overhead {
        for (name, q) in overhead(pod) {
            if let Some(have) = l.get_mut(&name).filter(|v| v.nanos() != 0) {
                *have = *have + q;
            }
        }
    }
    l
}

/// The pod cgroup's settings, as the kubelet's `ResourceConfigForPod` computes them (CFS quota
/// enforced, 100 ms period): `None` leaves a setting at the kernel's default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCgroupConfig {
    pub cpu_shares: i64,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<i64>,
    pub memory_limit: Option<i64>,
}

/// The kubelet's `ResourceConfigForPod`: shares from the requests (overhead included), a cpu
/// quota and a memory limit from the limits (overhead included) — for a Guaranteed pod always,
/// for a Burstable pod only when every container declares that limit, for a BestEffort pod
/// neither (minimum shares).
pub fn pod_cgroup_config(pod: &Pod) -> PodCgroupConfig {
    let requests = pod_requests(pod, true);
    let (mut cpu_declared, mut memory_declared) = (true, true);
    let mut limits = pod_totals(pod, true, |l| {
        let zero = |n: &str| l.get(n).is_none_or(|q| q.nanos() == 0);
        cpu_declared &= !zero("cpu");
        memory_declared &= !zero("memory");
    });
    for (name, q) in overhead(pod) {
        if let Some(have) = limits.get_mut(&name).filter(|v| v.nanos() != 0) {
            *have = *have + q;
        }
    }
    let cpu_shares = milli_cpu_to_shares(requests.get("cpu").map_or(0, Quantity::milli_value));
    let cpu_quota = milli_cpu_to_quota(
        limits.get("cpu").map_or(0, Quantity::milli_value),
        QUOTA_PERIOD,
    );
    let memory = limits.get("memory").map_or(0, Quantity::value);
    match qos_class(pod) {
        QOS_GUARANTEED => PodCgroupConfig {
            cpu_shares,
            cpu_quota: Some(cpu_quota),
            cpu_period: Some(QUOTA_PERIOD),
            memory_limit: Some(memory),
        },
        QOS_BURSTABLE => PodCgroupConfig {
            cpu_shares,
            cpu_quota: cpu_declared.then_some(cpu_quota),
            cpu_period: cpu_declared.then_some(QUOTA_PERIOD),
            memory_limit: memory_declared.then_some(memory),
        },
        _ => PodCgroupConfig {
            cpu_shares: MIN_SHARES,
            cpu_quota: None,
            cpu_period: None,
            memory_limit: None,
        },
    }
}

/// The kubelet's `calculateLinuxResources` (CFS quota enforced): shares from the request, else
/// the limit; quota from the limit; the memory limit; `memory.oom.group` on cgroup v2.
fn linux_resources(
    cpu_request: Option<Quantity>,
    cpu_limit: Quantity,
    memory_limit: Quantity,
    cgroup_v2: bool,
) -> api::LinuxContainerResources {
    let shares = match cpu_request {
        None if cpu_limit.nanos() != 0 => milli_cpu_to_shares(cpu_limit.milli_value()),
        other => milli_cpu_to_shares(other.map_or(0, |q| q.milli_value())),
    };
    let mut r = api::LinuxContainerResources {
        cpu_shares: shares,
        cpu_period: QUOTA_PERIOD,
        cpu_quota: milli_cpu_to_quota(cpu_limit.milli_value(), QUOTA_PERIOD),
        memory_limit_in_bytes: memory_limit.value().max(0),
        ..Default::default()
    };
    if cgroup_v2 {
        r.unified
            .insert("memory.oom.group".to_string(), "1".to_string());
    }
    r
}

/// The sandbox's `resources` and `overhead` (the kubelet's `applySandboxResources`): the pod's
/// requests and limits without the overhead, and the overhead itself, treated as guaranteed
/// (request = limit). A pod without overhead sends an empty `overhead`, as the kubelet.
pub fn sandbox_resources(
    pod: &Pod,
    cgroup_v2: bool,
) -> (api::LinuxContainerResources, api::LinuxContainerResources) {
    let requests = pod_requests(pod, false);
    let limits = pod_limits(pod, false);
    let resources = linux_resources(
        requests.get("cpu").copied(),
        limits.get("cpu").copied().unwrap_or(Quantity::ZERO),
        limits.get("memory").copied().unwrap_or(Quantity::ZERO),
        cgroup_v2,
    );
    let overhead = match pod.spec.as_ref().and_then(|s| s.overhead.as_ref()) {
        None => api::LinuxContainerResources::default(),
        Some(_) => {
            let o = overhead(pod);
            let cpu = o.get("cpu").copied().unwrap_or(Quantity::ZERO);
            let memory = o.get("memory").copied().unwrap_or(Quantity::ZERO);
            linux_resources(Some(cpu), cpu, memory, cgroup_v2)
        }
    };
    (resources, overhead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus, ResourceRequirements};

    const GIB: i64 = 1 << 30;

    fn rl(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, K8sQuantity>> {
        if pairs.is_empty() {
            return None;
        }
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), K8sQuantity(v.to_string())))
                .collect(),
        )
    }

    fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            resources: Some(ResourceRequirements {
                requests: rl(requests),
                limits: rl(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: if init.is_empty() { None } else { Some(init) },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn with_overhead(mut p: Pod, pairs: &[(&str, &str)]) -> Pod {
        p.spec.as_mut().unwrap().overhead = rl(pairs);
        p
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn pod_requests_and_limits_are_the_kubelets_sums() {
        let mut sidecar = container("side", &[("cpu", "100m")], &[("cpu", "100m")]);
        sidecar.restart_policy = Some("Always".into());
        let p = pod(
            vec![
                container(
                    "a",
                    &[("cpu", "200m"), ("memory", "64Mi")],
                    &[("memory", "128Mi")],
                ),
                container("b", &[("cpu", "300m")], &[]),
            ],
            vec![
                container("big-init", &[("cpu", "1"), ("memory", "32Mi")], &[]),
                sidecar,
                container("late-init", &[("cpu", "950m")], &[]),
            ],
        );
        let r = pod_requests(&p, true);
        // Apps 500m + sidecar 100m = 600m; big-init alone needs 1; late-init 950m + sidecar.
        assert_eq!(r["cpu"], q("1050m"));
        assert_eq!(r["memory"], q("64Mi"));
        let l = pod_limits(&p, false);
        assert_eq!(l["memory"], q("128Mi"));
        assert_eq!(l["cpu"], q("100m"));

        let p = with_overhead(p, &[("cpu", "250m"), ("memory", "16Mi")]);
        assert_eq!(pod_requests(&p, true)["cpu"], q("1300m"));
        assert_eq!(pod_requests(&p, false)["cpu"], q("1050m"));
        assert_eq!(
            pod_limits(&p, true)["memory"],
            q("144Mi"),
            "added to a set limit"
        );
    }

    #[test]
    fn the_pod_cgroup_counts_the_overhead_as_resource_config_for_pod() {
        let guaranteed = with_overhead(
            pod(
                vec![container(
                    "a",
                    &[("cpu", "500m"), ("memory", "64Mi")],
                    &[("cpu", "500m"), ("memory", "64Mi")],
                )],
                vec![],
            ),
            &[("cpu", "100m"), ("memory", "16Mi")],
        );
        assert_eq!(
            pod_cgroup_config(&guaranteed),
            PodCgroupConfig {
                cpu_shares: 614,
                cpu_quota: Some(60_000),
                cpu_period: Some(100_000),
                memory_limit: Some(80 << 20),
            }
        );
        // Burstable: a quota only when every container has a cpu limit, a memory limit only
        // when every container has one.
        let burstable = pod(
            vec![
                container(
                    "a",
                    &[("cpu", "100m")],
                    &[("cpu", "200m"), ("memory", "32Mi")],
                ),
                container("b", &[], &[("cpu", "300m")]),
            ],
            vec![],
        );
        assert_eq!(
            pod_cgroup_config(&burstable),
            PodCgroupConfig {
                cpu_shares: 102,
                cpu_quota: Some(50_000),
                cpu_period: Some(100_000),
                memory_limit: None,
            }
        );
        let best_effort = pod(vec![container("a", &[], &[])], vec![]);
        assert_eq!(
            pod_cgroup_config(&best_effort),
            PodCgroupConfig {
                cpu_shares: 2,
                cpu_quota: None,
                cpu_period: None,
                memory_limit: None,
            }
        );
    }

    #[test]
    fn sandbox_resources_leave_the_overhead_out_and_send_it_apart() {
        let p = with_overhead(
            pod(
                vec![container(
                    "a",
                    &[("cpu", "500m")],
                    &[("cpu", "1"), ("memory", "64Mi")],
                )],
                vec![],
            ),
            &[("cpu", "100m"), ("memory", "16Mi")],
        );
        let (r, o) = sandbox_resources(&p, true);
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.cpu_period,
                r.memory_limit_in_bytes
            ),
            (512, 100_000, 100_000, 64 << 20)
        );
        assert_eq!(
            r.unified.get("memory.oom.group").map(String::as_str),
            Some("1")
        );
        assert_eq!(
            (o.cpu_shares, o.cpu_quota, o.memory_limit_in_bytes),
            (102, 10_000, 16 << 20)
        );
        let (_, none) = sandbox_resources(&pod(vec![container("a", &[], &[])], vec![]), false);
        assert_eq!(none, api::LinuxContainerResources::default());
    }

    #[test]
    fn qos_class_table() {
        let cases: Vec<(&str, Pod, &str)> = vec![
            (
                "nothing",
                pod(vec![container("a", &[], &[])], vec![]),
                QOS_BEST_EFFORT,
            ),
            (
                "zero requests are nothing",
                pod(vec![container("a", &[("cpu", "0")], &[])], vec![]),
                QOS_BEST_EFFORT,
            ),
            (
                "other resources do not count",
                pod(
                    vec![container("a", &[("ephemeral-storage", "1Gi")], &[])],
                    vec![],
                ),
                QOS_BEST_EFFORT,
            ),
            (
                "memory request only",
                pod(vec![container("a", &[("memory", "256Mi")], &[])], vec![]),
                QOS_BURSTABLE,
            ),
            (
                "equal requests and limits",
                pod(
                    vec![container(
                        "a",
                        &[("cpu", "500m"), ("memory", "256Mi")],
                        &[("cpu", "0.5"), ("memory", "268435456")],
                    )],
                    vec![],
                ),
                QOS_GUARANTEED,
            ),
            (
                "limits only, requests not defaulted (the API server would copy them)",
                pod(
                    vec![container("a", &[], &[("cpu", "1"), ("memory", "1Gi")])],
                    vec![],
                ),
                QOS_BURSTABLE,
            ),
            (
                "requests below limits",
                pod(
                    vec![container(
                        "a",
                        &[("cpu", "250m"), ("memory", "128Mi")],
                        &[("cpu", "500m"), ("memory", "256Mi")],
                    )],
                    vec![],
                ),
                QOS_BURSTABLE,
            ),
            (
                "one container without memory limit",
                pod(
                    vec![
                        container(
                            "a",
                            &[("cpu", "1"), ("memory", "1Gi")],
                            &[("cpu", "1"), ("memory", "1Gi")],
                        ),
                        container("b", &[("cpu", "1")], &[("cpu", "1")]),
                    ],
                    vec![],
                ),
                QOS_BURSTABLE,
            ),
            (
                "init container counts",
                pod(
                    vec![container(
                        "a",
                        &[("cpu", "1"), ("memory", "1Gi")],
                        &[("cpu", "1"), ("memory", "1Gi")],
                    )],
                    vec![container("i", &[("cpu", "1")], &[])],
                ),
                QOS_BURSTABLE,
            ),
        ];
        for (name, p, want) in cases {
            assert_eq!(qos_class(&p), want, "{name}");
        }
    }

    #[test]
    fn status_qos_class_wins_over_the_spec() {
        let mut p = pod(vec![container("a", &[], &[])], vec![]);
        p.status = Some(PodStatus {
            qos_class: Some("Burstable".into()),
            ..Default::default()
        });
        assert_eq!(qos_class(&p), QOS_BURSTABLE);
        assert_eq!(compute_qos_class(&p), QOS_BEST_EFFORT);
        p.status.as_mut().unwrap().qos_class = Some("Unheard-of".into());
        assert_eq!(qos_class(&p), QOS_BEST_EFFORT);
    }

    #[test]
    fn oom_score_adj_table() {
        let guaranteed = pod(
            vec![container(
                "a",
                &[("cpu", "1"), ("memory", "1Gi")],
                &[("cpu", "1"), ("memory", "1Gi")],
            )],
            vec![],
        );
        let best_effort = pod(vec![container("a", &[], &[])], vec![]);
        let burstable = |mem: &str| {
            pod(
                vec![container("a", &[("memory", mem)], &[("memory", "8Gi")])],
                vec![],
            )
        };
        let cases: Vec<(&str, Pod, i64)> = vec![
            ("guaranteed", guaranteed, -997),
            ("best effort", best_effort, 1000),
            ("burstable 10% of memory", burstable("1638Mi"), 1000 - 99),
            ("burstable half of memory", burstable("8Gi"), 500),
            ("burstable all of memory", burstable("16Gi"), 3),
            ("burstable more than memory", burstable("32Gi"), 3),
            ("burstable tiny request", burstable("1"), 999),
            (
                "burstable no memory request",
                { pod(vec![container("a", &[("cpu", "1")], &[])], vec![]) },
                999,
            ),
        ];
        for (name, p, want) in cases {
            let c = p.spec.as_ref().unwrap().containers[0].clone();
            assert_eq!(oom_score_adj(&p, &c, 16 * GIB).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn node_critical_pods_are_protected_like_guaranteed_ones() {
        let mut p = pod(vec![container("a", &[("memory", "1Gi")], &[])], vec![]);
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        assert_eq!(oom_score_adj(&p, &c, 16 * GIB).unwrap(), 938);
        let spec = p.spec.as_mut().unwrap();
        spec.priority_class_name = Some("system-node-critical".into());
        spec.priority = Some(2_000_001_000);
        assert_eq!(oom_score_adj(&p, &c, 16 * GIB).unwrap(), -997);
    }

    #[test]
    fn sidecar_gets_at_most_the_score_of_the_smallest_app_container() {
        let mut sidecar = container("s", &[("memory", "1Mi")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let p = pod(
            vec![
                container("a", &[("memory", "4Gi")], &[]),
                container("b", &[("memory", "2Gi")], &[]),
            ],
            vec![sidecar.clone()],
        );
        // Its own request alone would give 999; the smallest app container (2Gi) gives 875.
        assert_eq!(oom_score_adj(&p, &sidecar, 16 * GIB).unwrap(), 875);
        // A plain init container keeps its own score.
        sidecar.restart_policy = None;
        assert_eq!(oom_score_adj(&p, &sidecar, 16 * GIB).unwrap(), 999);
    }

    #[test]
    fn cpu_shares_and_quota_table() {
        let shares: &[(i64, i64)] = &[
            (0, 2),
            (1, 2),
            (2, 2),
            (3, 3),
            (100, 102),
            (250, 256),
            (500, 512),
            (1000, 1024),
            (1500, 1536),
            (256_000, 262_144),
            (300_000, 262_144),
        ];
        for (milli, want) in shares {
            assert_eq!(milli_cpu_to_shares(*milli), *want, "shares of {milli}m");
        }
        let quotas: &[(i64, i64)] = &[
            (0, 0),
            (1, 1000),
            (5, 1000),
            (9, 1000),
            (10, 1000),
            (11, 1100),
            (200, 20_000),
            (500, 50_000),
            (1000, 100_000),
            (1500, 150_000),
        ];
        for (milli, want) in quotas {
            assert_eq!(
                milli_cpu_to_quota(*milli, QUOTA_PERIOD),
                *want,
                "quota of {milli}m"
            );
        }
    }

    #[test]
    fn linux_resources_follow_requests_and_limits() {
        let p = pod(
            vec![container(
                "a",
                &[("cpu", "250m"), ("memory", "32Mi")],
                &[("cpu", "500m"), ("memory", "64Mi")],
            )],
            vec![],
        );
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = linux_container_resources(&p, c, 16 * GIB, false).unwrap();
        assert_eq!(r.cpu_shares, 256);
        assert_eq!(r.cpu_period, 100_000);
        assert_eq!(r.cpu_quota, 50_000);
        assert_eq!(r.memory_limit_in_bytes, 64 << 20);
        assert_eq!(r.oom_score_adj, 1000 - (1000 * (32i64 << 20)) / (16 * GIB));
        assert!(r.unified.is_empty());

        // Without a request, shares follow the limit; without either, the minimum.
        let p = pod(vec![container("a", &[], &[("cpu", "2")])], vec![]);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = linux_container_resources(&p, c, 16 * GIB, true).unwrap();
        assert_eq!((r.cpu_shares, r.cpu_quota), (2048, 200_000));
        assert_eq!(
            r.unified.get("memory.oom.group").map(String::as_str),
            Some("1")
        );
        let p = pod(vec![container("a", &[], &[])], vec![]);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let r = linux_container_resources(&p, c, 16 * GIB, false).unwrap();
        assert_eq!(
            (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
            (2, 0, 0)
        );
        assert_eq!(r.oom_score_adj, 1000);
    }

    #[test]
    fn unparsable_quantities_are_errors() {
        let p = pod(vec![container("a", &[("cpu", "lots")], &[])], vec![]);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let e = linux_container_resources(&p, c, GIB, false).unwrap_err();
        assert_eq!(e.to_string(), "invalid quantity \"lots\"");
    }
}
