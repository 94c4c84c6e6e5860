//! core/v1 Events as the kubelet writes them, and the recorder core that keeps a crash-looping
//! pod from flooding the API server.
//!
//! Owns [`event_object`] (the body of `POST /api/v1/namespaces/NS/events`, shaped as kubelet
//! 1.28's, fixture 08a), the object references events point at ([`pod_ref`], [`node_ref`]) and
//! [`EventRecorder`], a pure port of client-go's `EventCorrelator`: each recorded event is
//!
//! ```text
//!   aggregate ──► dedup ──► per-object spam filter ──► global cap ──► Create | Patch | Drop
//!   (10 similar   (same      (token bucket per         (token bucket,
//!    in 10 min →   key →      source+object: burst 25,  kubelet --event-qps 50,
//!    one combined  PATCH      1 token / 5 min)          --event-burst 100)
//!    event)        count+1)
//! ```
//!
//! A node may only create, patch and update core/v1 events (fixtures 08a–08h: events.k8s.io is
//! 403), so that is all this builds. Must not send requests, read the clock or log: the caller
//! sends what [`EventRecorder::record`] decides, with `now` from its clock.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};

use super::spec::time;
use super::NodeError;

/// `source.component` and `reportingComponent` of the kubelet's events.
pub const COMPONENT: &str = "kubelet";
/// Where events about cluster-scoped objects (the Node) go, as client-go does.
pub const DEFAULT_NAMESPACE: &str = "default";
/// Prefix client-go puts on an aggregated event's message.
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// The kubelet's event reasons (`pkg/kubelet/events`) the daemon uses.
pub mod reason {
    pub const CREATED: &str = "Created";
    pub const STARTED: &str = "Started";
    pub const FAILED: &str = "Failed";
    pub const KILLING: &str = "Killing";
    pub const BACK_OFF: &str = "BackOff";
    pub const PULLING: &str = "Pulling";
    pub const PULLED: &str = "Pulled";
    pub const FAILED_MOUNT: &str = "FailedMount";
    pub const SANDBOX_CHANGED: &str = "SandboxChanged";
    pub const FAILED_CREATE_POD_SANDBOX: &str = "FailedCreatePodSandBox";
    pub const FAILED_KILL_POD: &str = "FailedKillPod";
    pub const STARTING: &str = "Starting";
    pub const REGISTERED_NODE: &str = "RegisteredNode";
    pub const NODE_READY: &str = "NodeReady";
    pub const NODE_NOT_READY: &str = "NodeNotReady";
    pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
    pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
    pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";
}

/// `type` of an Event: the API server accepts only these two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// A reference to a pod, or to one of its containers when `field_path` is given (see
/// [`container_field_path`]), as client-go's `ref.GetReference` builds it.
pub fn pod_ref(pod: &Pod, field_path: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Pod".to_string()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: field_path.map(str::to_string),
    }
}

/// `spec.containers{NAME}`: the field path of a container in events.
pub fn container_field_path(container: &str) -> String {
    format!("spec.containers{{{container}}}")
}

/// `spec.initContainers{NAME}`.
pub fn init_container_field_path(container: &str) -> String {
    format!("spec.initContainers{{{container}}}")
}

/// The field path of the pod's container named `container` (`GenerateContainerRef`):
/// `spec.initContainers{NAME}` for an init container, else `spec.containers{NAME}`.
pub fn container_ref_path(pod: &Pod, container: &str) -> String {
    let init = pod
        .spec
        .as_ref()
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.name == container));
    if init {
        init_container_field_path(container)
    } else {
        container_field_path(container)
    }
}

/// The kubelet's `nodeRef`: kind Node, the node name as name *and* uid, no namespace.
pub fn node_ref(node_name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some("Node".to_string()),
        name: Some(node_name.to_string()),
        uid: Some(node_name.to_string()),
        ..ObjectReference::default()
    }
}

/// client-go's event name: `<involved name>.<unix nanoseconds in hex>`.
pub fn event_name(involved_name: &str, now: Timestamp) -> String {
    let nanos = u128::try_from(now.as_nanosecond()).unwrap_or(0);
    format!("{involved_name}.{nanos:x}")
}

/// A new core/v1 Event (count 1), as the kubelet's recorder makes it: in the involved object's
/// namespace (`default` for the Node), `source {component: kubelet, host}`, first and last
/// timestamp `now`, `reportingComponent: kubelet`, `reportingInstance: host`.
pub fn event_object(
    involved: &ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    host: &str,
    now: Timestamp,
) -> Event {
    let namespace = involved
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let t = time(now);
    Event {
        metadata: ObjectMeta {
            name: Some(event_name(
                involved.name.as_deref().unwrap_or_default(),
                now,
            )),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        involved_object: involved.clone(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(EventSource {
            component: Some(COMPONENT.to_string()),
            host: Some(host.to_string()),
        }),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        count: Some(1),
        type_: Some(type_.as_str().to_string()),
        reporting_component: Some(COMPONENT.to_string()),
        reporting_instance: Some(host.to_string()),
        ..Event::default()
    }
}

/// The recorder's limits; [`Default`] is client-go's and the kubelet's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecorderLimits {
    /// Events per source+object before the spam filter drops (client-go: 25).
    pub per_object_burst: u32,
    /// One more token per this long (client-go: 5 minutes).
    pub per_object_refill: Duration,
    /// Events across all objects before the global cap drops (kubelet `--event-burst`: 100).
    pub global_burst: u32,
    /// One more global token per this long (kubelet `--event-qps` 50: 20 ms).
    pub global_refill: Duration,
    /// Distinct messages for one object+reason before they are combined (client-go: 10).
    pub aggregate_max_events: usize,
    /// Window in which such messages count as similar (client-go: 10 minutes).
    pub aggregate_window: Duration,
    /// Entries per cache, least recently used evicted (client-go: 4096).
    pub cache_entries: usize,
}

impl Default for RecorderLimits {
    fn default() -> Self {
        RecorderLimits {
            per_object_burst: 25,
            per_object_refill: Duration::from_secs(5 * 60),
            global_burst: 100,
            global_refill: Duration::from_millis(20),
            aggregate_max_events: 10,
            aggregate_window: Duration::from_secs(10 * 60),
            cache_entries: 4096,
        }
    }
}

/// What to do with a recorded event.
#[derive(Clone, Debug, PartialEq)]
pub enum EventDecision {
    /// `POST /api/v1/namespaces/{ns}/events` with this body.
    Create(Event),
    /// `PATCH` (strategic merge) an event already sent.
    Patch(EventPatch),
    /// Send nothing: a limit was hit.
    Drop(DropReason),
}

/// An update of an event already sent: `PATCH /api/v1/namespaces/{namespace}/events/{name}`
/// with [`EventPatch::body`] (fixture 08b). If that answers 404 (events expire after the API
/// server's `--event-ttl`, or the first one was dropped), POST [`EventPatch::event`] instead, as
/// client-go does.
#[derive(Clone, Debug, PartialEq)]
pub struct EventPatch {
    pub namespace: String,
    pub name: String,
    pub count: i32,
    pub last_timestamp: Time,
    pub message: String,
    /// The whole event with the new count, to create if the patch finds nothing.
    pub event: Event,
}

impl EventPatch {
    /// `{"count": N, "lastTimestamp": "...", "message": "..."}`.
    pub fn body(&self) -> Result<Value, NodeError> {
        let last =
            serde_json::to_value(&self.last_timestamp).map_err(|source| NodeError::Serialize {
                what: "event lastTimestamp",
                source,
            })?;
        let mut m = Map::new();
        m.insert("count".to_string(), Value::from(self.count));
        m.insert("lastTimestamp".to_string(), last);
        m.insert("message".to_string(), Value::from(self.message.clone()));
        Ok(Value::Object(m))
    }
}

/// Which limit dropped an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// This object's source+object token bucket is empty.
    ObjectRateLimited,
    /// The recorder's global token bucket is empty.
    GlobalRateLimited,
}

/// client-go's EventCorrelator without the clock and the sink: feed it every event the daemon
/// wants to record; send what it decides.
#[derive(Debug)]
pub struct EventRecorder {
    host: String,
    limits: RecorderLimits,
    aggregates: Lru<AggregateRecord>,
    observed: Lru<Observation>,
    spam: Lru<TokenBucket>,
    global: TokenBucket,
}

#[derive(Clone, Debug)]
struct AggregateRecord {
    messages: BTreeSet<String>,
    last: Timestamp,
}

#[derive(Clone, Debug)]
struct Observation {
    count: i32,
    first: Time,
    name: String,
}

impl EventRecorder {
    /// A recorder for events from this node (`source.host`), with client-go's limits.
    pub fn new(host: &str) -> EventRecorder {
        EventRecorder::with_limits(host, RecorderLimits::default())
    }

    pub fn with_limits(host: &str, limits: RecorderLimits) -> EventRecorder {
        EventRecorder {
            host: host.to_string(),
            limits,
            aggregates: Lru::new(limits.cache_entries),
            observed: Lru::new(limits.cache_entries),
            spam: Lru::new(limits.cache_entries),
            global: TokenBucket::full(limits.global_burst, limits.global_refill),
        }
    }

    /// Decides what to send for one occurrence of an event at `now`.
    pub fn record(
        &mut self,
        involved: &ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) -> EventDecision {
        let fresh = event_object(involved, type_, reason, message, &self.host, now);
        let (mut event, key) = self.aggregate(fresh, now);

        // Dedup: the same key again becomes a PATCH of the first event's count.
        let previous = self.observed.get_mut(&key).cloned();
        let decision_patch = match previous {
            Some(obs) if obs.count > 0 => {
                event.metadata.name = Some(obs.name.clone());
                event.first_timestamp = Some(obs.first.clone());
                event.count = Some(obs.count.saturating_add(1));
                true
            }
            _ => false,
        };
        self.observed.insert(
            key,
            Observation {
                count: event.count.unwrap_or(1),
                first: event.first_timestamp.clone().unwrap_or_else(|| time(now)),
                name: event.metadata.name.clone().unwrap_or_default(),
            },
        );

        // Spam filter per source+object, then the global cap.
        let spam_key = spam_key(&event);
        let limits = self.limits;
        let bucket = self.spam.get_or_insert_with(spam_key, || {
            TokenBucket::full(limits.per_object_burst, limits.per_object_refill)
        });
        if !bucket.try_accept(now) {
            return EventDecision::Drop(DropReason::ObjectRateLimited);
        }
        if !self.global.try_accept(now) {
            return EventDecision::Drop(DropReason::GlobalRateLimited);
        }

        if decision_patch {
            EventDecision::Patch(EventPatch {
                namespace: event.metadata.namespace.clone().unwrap_or_default(),
                name: event.metadata.name.clone().unwrap_or_default(),
                count: event.count.unwrap_or(1),
                last_timestamp: event.last_timestamp.clone().unwrap_or_else(|| time(now)),
                message: event.message.clone().unwrap_or_default(),
                event,
            })
        } else {
            EventDecision::Create(event)
        }
    }

    /// client-go's EventAggregator: once `aggregate_max_events` distinct messages for the same
    /// object+type+reason arrive within `aggregate_window` of each other, further ones become
    /// one combined event keyed by the aggregate key (so repeats of it are patched).
    fn aggregate(&mut self, event: Event, now: Timestamp) -> (Event, String) {
        let agg_key = aggregate_key(&event);
        let message = event.message.clone().unwrap_or_default();
        let window = nanos(self.limits.aggregate_window);
        let record = self
            .aggregates
            .get_or_insert_with(agg_key.clone(), || AggregateRecord {
                messages: BTreeSet::new(),
                last: now,
            });
        if now.duration_since(record.last).as_nanos() > window {
            record.messages.clear();
        }
        record.messages.insert(message.clone());
        record.last = now;
        if record.messages.len() < self.limits.aggregate_max_events {
            let key = event_key(&event);
            return (event, key);
        }
        // Keep the set from growing past the threshold.
        record.messages.pop_first();
        let mut combined = event;
        combined.metadata.name = Some(event_name(
            combined.involved_object.name.as_deref().unwrap_or_default(),
            now,
        ));
        combined.message = Some(format!("{COMBINED_PREFIX}{message}"));
        combined.count = Some(1);
        combined.first_timestamp = Some(time(now));
        combined.last_timestamp = Some(time(now));
        (combined, agg_key)
    }
}

fn source_parts(e: &Event) -> [&str; 2] {
    let source = e.source.as_ref();
    [
        source
            .and_then(|s| s.component.as_deref())
            .unwrap_or_default(),
        source.and_then(|s| s.host.as_deref()).unwrap_or_default(),
    ]
}

fn object_parts(o: &ObjectReference) -> [&str; 5] {
    [
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
    ]
}

/// Joined with a separator no Kubernetes name contains (client-go joins with "", which can
/// collide; the separator only makes keys unambiguous).
fn join(parts: &[&str]) -> String {
    parts.join("\u{1f}")
}

/// client-go `getSpamKey`: source and involved object.
fn spam_key(e: &Event) -> String {
    let mut parts = source_parts(e).to_vec();
    parts.extend(object_parts(&e.involved_object));
    join(&parts)
}

/// client-go `EventAggregatorByReasonFunc`'s aggregate key: source, object, type, reason,
/// reporting controller and instance (the message is the local key).
fn aggregate_key(e: &Event) -> String {
    let mut parts = source_parts(e).to_vec();
    parts.extend(object_parts(&e.involved_object));
    parts.extend([
        e.type_.as_deref().unwrap_or_default(),
        e.reason.as_deref().unwrap_or_default(),
        e.reporting_component.as_deref().unwrap_or_default(),
        e.reporting_instance.as_deref().unwrap_or_default(),
    ]);
    join(&parts)
}

/// client-go `getEventKey`: everything that makes two events "the same" (field path and
/// message included).
fn event_key(e: &Event) -> String {
    let o = &e.involved_object;
    let mut parts = source_parts(e).to_vec();
    parts.extend([
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.field_path.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
        e.type_.as_deref().unwrap_or_default(),
        e.reason.as_deref().unwrap_or_default(),
        e.message.as_deref().unwrap_or_default(),
    ]);
    join(&parts)
}

fn nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

/// A token bucket that starts full, held exactly: credit in nanoseconds, one token costs
/// `refill` of credit, at most `burst` tokens of credit.
#[derive(Clone, Debug)]
struct TokenBucket {
    capacity: i128,
    cost: i128,
    credit: i128,
    last: Option<Timestamp>,
}

impl TokenBucket {
    fn full(burst: u32, refill: Duration) -> TokenBucket {
        let cost = nanos(refill).max(1);
        let capacity = cost.saturating_mul(i128::from(burst));
        TokenBucket {
            capacity,
            cost,
            credit: capacity,
            last: None,
        }
    }

    fn try_accept(&mut self, now: Timestamp) -> bool {
        match self.last {
            Some(last) => {
                let elapsed = now.duration_since(last).as_nanos();
                // A clock that went backwards refills nothing and keeps the later mark.
                if elapsed > 0 {
                    self.credit = self.credit.saturating_add(elapsed).min(self.capacity);
                    self.last = Some(now);
                }
            }
            None => self.last = Some(now),
        }
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

/// A bounded map that evicts the least recently used entry (client-go's caches are LRUs).
#[derive(Debug)]
struct Lru<V> {
    cap: usize,
    tick: u64,
    map: HashMap<String, (V, u64)>,
}

impl<V> Lru<V> {
    fn new(cap: usize) -> Lru<V> {
        Lru {
            cap: cap.max(1),
            tick: 0,
            map: HashMap::new(),
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let tick = self.next_tick();
        self.map.get_mut(key).map(|(v, t)| {
            *t = tick;
            v
        })
    }

    fn insert(&mut self, key: String, value: V) {
        if !self.map.contains_key(&key) {
            self.evict_if_full();
        }
        let tick = self.next_tick();
        self.map.insert(key, (value, tick));
    }

    fn get_or_insert_with(&mut self, key: String, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&key) {
            self.evict_if_full();
        }
        let tick = self.next_tick();
        let entry = self.map.entry(key).or_insert_with(|| (make(), tick));
        entry.1 = tick;
        &mut entry.0
    }

    fn evict_if_full(&mut self) {
        if self.map.len() < self.cap {
            return;
        }
        let oldest = self
            .map
            .iter()
            .min_by_key(|(_, (_, t))| *t)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            self.map.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn fixture(dir: &str, file: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/apiserver/{dir}/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn request_body(dir: &str) -> String {
        fixture(dir, "request.txt")
            .split_once("\n\n")
            .unwrap()
            .1
            .to_string()
    }

    fn p1() -> Pod {
        serde_json::from_str(&fixture("07k-pod-get-200", "response-body.json")).unwrap()
    }

    fn t0() -> Timestamp {
        // 0x18ea5f3688716bd8 ns: the name of fixture 08a's event.
        Timestamp::from_nanosecond(1_795_352_089_282_571_224).unwrap()
    }

    fn after(secs: i64) -> Timestamp {
        t0().checked_add(SignedDuration::from_secs(secs)).unwrap()
    }

    fn started(rec: &mut EventRecorder, pod: &ObjectReference, now: Timestamp) -> EventDecision {
        rec.record(
            pod,
            EventType::Normal,
            reason::STARTED,
            "Started container c",
            now,
        )
    }

    #[test]
    fn event_matches_fixture_08a_exactly() {
        let sent: Event =
            serde_json::from_str(&request_body("08a-event-core-v1-create-201")).unwrap();
        let involved = pod_ref(&p1(), Some(&container_field_path("c")));
        let ours = event_object(
            &involved,
            EventType::Normal,
            "Started",
            "Started container c",
            "vk-node",
            t0(),
        );
        let ours: Event = serde_json::from_value(serde_json::to_value(&ours).unwrap()).unwrap();
        assert_eq!(ours, sent);
    }

    #[test]
    fn node_events_go_to_default_with_the_kubelets_node_ref() {
        let ev = event_object(
            &node_ref("vk-node"),
            EventType::Normal,
            reason::NODE_READY,
            "Node vk-node status is now: NodeReady",
            "vk-node",
            t0(),
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            ev.metadata.name.as_deref(),
            Some("vk-node.18ea5f3688716bd8")
        );
        let o = &ev.involved_object;
        assert_eq!(
            (o.kind.as_deref(), o.name.as_deref(), o.uid.as_deref()),
            (Some("Node"), Some("vk-node"), Some("vk-node"))
        );
        assert_eq!(o.namespace, None);
        assert_eq!(
            init_container_field_path("init"),
            "spec.initContainers{init}"
        );
    }

    #[test]
    fn a_repeat_becomes_the_patch_of_fixture_08b() {
        let mut rec = EventRecorder::new("vk-node");
        let pod = pod_ref(&p1(), Some("spec.containers{c}"));
        let EventDecision::Create(first) = started(&mut rec, &pod, t0()) else {
            panic!("first occurrence must be created");
        };
        let EventDecision::Patch(patch) = started(&mut rec, &pod, after(1)) else {
            panic!("a repeat must be a patch");
        };
        assert_eq!(patch.namespace, "fixtures");
        assert_eq!(patch.name, "p1.18ea5f3688716bd8");
        assert_eq!(patch.count, 2);
        let sent: Value =
            serde_json::from_str(&request_body("08b-event-core-v1-patch-count-200")).unwrap();
        assert_eq!(patch.body().unwrap(), sent);
        // The fallback create keeps the first event's name and first timestamp.
        assert_eq!(patch.event.metadata.name, first.metadata.name);
        assert_eq!(patch.event.first_timestamp, first.first_timestamp);
        assert_eq!(patch.event.count, Some(2));
        let EventDecision::Patch(third) = started(&mut rec, &pod, after(2)) else {
            panic!("a third occurrence must be a patch");
        };
        assert_eq!(third.count, 3);
    }

    #[test]
    fn what_makes_events_the_same() {
        let pod = pod_ref(&p1(), Some("spec.containers{c}"));
        let other_container = pod_ref(&p1(), Some("spec.containers{d}"));
        let mut other_pod = pod.clone();
        other_pod.name = Some("p2".to_string());
        other_pod.uid = Some("another-uid".to_string());
        // (involved, type, reason, message) after a first "Started container c" on `pod`.
        let table: &[(&ObjectReference, EventType, &str, &str, bool)] = &[
            (
                &pod,
                EventType::Normal,
                "Started",
                "Started container c",
                true,
            ),
            (
                &pod,
                EventType::Warning,
                "Started",
                "Started container c",
                false,
            ),
            (
                &pod,
                EventType::Normal,
                "Created",
                "Started container c",
                false,
            ),
            (
                &pod,
                EventType::Normal,
                "Started",
                "Started container c again",
                false,
            ),
            (
                &other_container,
                EventType::Normal,
                "Started",
                "Started container c",
                false,
            ),
            (
                &other_pod,
                EventType::Normal,
                "Started",
                "Started container c",
                false,
            ),
        ];
        for (i, (obj, ty, r, msg, same)) in table.iter().enumerate() {
            let mut rec = EventRecorder::new("vk-node");
            assert!(matches!(
                started(&mut rec, &pod, t0()),
                EventDecision::Create(_)
            ));
            let d = rec.record(obj, *ty, r, msg, after(1));
            assert_eq!(
                matches!(d, EventDecision::Patch(_)),
                *same,
                "row {i}: {d:?}"
            );
        }
    }

    #[test]
    fn many_distinct_messages_are_combined() {
        let mut rec = EventRecorder::new("vk-node");
        let pod = pod_ref(&p1(), None);
        let mut decisions = Vec::new();
        for i in 0..12 {
            decisions.push(rec.record(
                &pod,
                EventType::Warning,
                reason::FAILED,
                &format!("attempt {i} failed"),
                after(i),
            ));
        }
        // 9 distinct messages go through as themselves; the 10th and later are combined.
        for d in &decisions[..9] {
            let EventDecision::Create(e) = d else {
                panic!("{d:?}")
            };
            assert!(!e.message.as_deref().unwrap().starts_with(COMBINED_PREFIX));
        }
        let EventDecision::Create(combined) = &decisions[9] else {
            panic!("{:?}", decisions[9])
        };
        assert_eq!(
            combined.message.as_deref(),
            Some("(combined from similar events): attempt 9 failed")
        );
        let EventDecision::Patch(p) = &decisions[10] else {
            panic!("{:?}", decisions[10])
        };
        assert_eq!(p.name, combined.metadata.name.clone().unwrap());
        assert_eq!(p.count, 2);
        assert_eq!(
            p.message,
            "(combined from similar events): attempt 10 failed"
        );
        let EventDecision::Patch(p) = &decisions[11] else {
            panic!("{:?}", decisions[11])
        };
        assert_eq!(p.count, 3);
    }

    #[test]
    fn similar_messages_spread_over_more_than_the_window_are_not_combined() {
        let mut rec = EventRecorder::new("vk-node");
        let pod = pod_ref(&p1(), None);
        for i in 0..15 {
            // 11 minutes apart: each finds the previous aggregate record expired.
            let d = rec.record(
                &pod,
                EventType::Warning,
                reason::FAILED,
                &format!("m{i}"),
                after(i * 660),
            );
            let EventDecision::Create(e) = d else {
                panic!("{d:?}")
            };
            assert_eq!(e.message.as_deref(), Some(format!("m{i}").as_str()));
        }
    }

    #[test]
    fn a_crash_looping_pod_cannot_flood_the_api_server() {
        let mut rec = EventRecorder::new("vk-node");
        let pod = pod_ref(&p1(), Some("spec.containers{c}"));
        let other = pod_ref(&p1(), Some("spec.containers{d}"));
        let mut sent = 0;
        let mut dropped = 0;
        // One BackOff a second for an hour, with a message that changes every time.
        for s in 0..3600 {
            let d = rec.record(
                &pod,
                EventType::Warning,
                reason::BACK_OFF,
                &format!("Back-off restarting failed container c (try {s})"),
                after(s),
            );
            match d {
                EventDecision::Create(_) | EventDecision::Patch(_) => sent += 1,
                EventDecision::Drop(r) => {
                    assert_eq!(r, DropReason::ObjectRateLimited);
                    dropped += 1;
                }
            }
        }
        // 25 at once, then one per 5 minutes: 25 + 3599/300.
        assert_eq!(sent, 25 + 11);
        assert_eq!(dropped, 3600 - sent);
        // The limit is per object: the same pod's other container shares it (spam key has no
        // field path), another pod does not.
        let d = rec.record(
            &other,
            EventType::Normal,
            reason::STARTED,
            "Started container d",
            after(3599),
        );
        assert!(
            matches!(d, EventDecision::Drop(DropReason::ObjectRateLimited)),
            "{d:?}"
        );
        let mut p2 = pod.clone();
        p2.name = Some("p2".to_string());
        p2.uid = Some("p2-uid".to_string());
        let d = rec.record(
            &p2,
            EventType::Normal,
            reason::STARTED,
            "Started container c",
            after(3600),
        );
        assert!(matches!(d, EventDecision::Create(_)), "{d:?}");
    }

    #[test]
    fn a_dropped_first_event_is_created_by_the_patch_fallback() {
        let limits = RecorderLimits {
            per_object_burst: 1,
            ..RecorderLimits::default()
        };
        let mut rec = EventRecorder::with_limits("vk-node", limits);
        let pod = pod_ref(&p1(), None);
        assert!(matches!(
            rec.record(&pod, EventType::Normal, "Pulled", "a", t0()),
            EventDecision::Create(_)
        ));
        assert!(matches!(
            rec.record(&pod, EventType::Normal, "Pulled", "b", after(1)),
            EventDecision::Drop(_)
        ));
        let d = rec.record(&pod, EventType::Normal, "Pulled", "b", after(301));
        let EventDecision::Patch(p) = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            p.count, 2,
            "the dropped occurrence still counts, as in client-go"
        );
        assert_eq!(p.event.message.as_deref(), Some("b"));
    }

    #[test]
    fn the_global_cap_limits_many_objects_at_once() {
        let mut rec = EventRecorder::new("vk-node");
        let mut created = 0;
        for i in 0..150 {
            let mut pod = pod_ref(&p1(), None);
            pod.name = Some(format!("pod-{i}"));
            pod.uid = Some(format!("uid-{i}"));
            match rec.record(&pod, EventType::Normal, reason::SANDBOX_CHANGED, "x", t0()) {
                EventDecision::Create(_) => created += 1,
                EventDecision::Drop(r) => assert_eq!(r, DropReason::GlobalRateLimited),
                d @ EventDecision::Patch(_) => panic!("{d:?}"),
            }
        }
        assert_eq!(created, 100, "--event-burst");
        // 50 per second refill: one second later 50 more get through.
        let mut later = 0;
        for i in 150..250 {
            let mut pod = pod_ref(&p1(), None);
            pod.name = Some(format!("pod-{i}"));
            pod.uid = Some(format!("uid-{i}"));
            if matches!(
                rec.record(
                    &pod,
                    EventType::Normal,
                    reason::SANDBOX_CHANGED,
                    "x",
                    after(1)
                ),
                EventDecision::Create(_)
            ) {
                later += 1;
            }
        }
        assert_eq!(later, 50);
    }

    #[test]
    fn token_bucket_is_exact_and_ignores_a_clock_going_back() {
        let mut b = TokenBucket::full(2, Duration::from_secs(300));
        assert!(b.try_accept(t0()));
        assert!(b.try_accept(t0()));
        assert!(!b.try_accept(after(299)));
        assert!(b.try_accept(after(300)));
        assert!(!b.try_accept(after(-1000)), "going back refills nothing");
        assert!(!b.try_accept(after(599)));
        assert!(b.try_accept(after(600)));
        // Never more than the burst, however long the pause.
        let mut b = TokenBucket::full(2, Duration::from_secs(1));
        assert!(b.try_accept(t0()));
        assert!(b.try_accept(t0()));
        let late = after(1_000_000);
        assert!(b.try_accept(late) && b.try_accept(late) && !b.try_accept(late));
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut lru: Lru<u32> = Lru::new(2);
        lru.insert("a".to_string(), 1);
        lru.insert("b".to_string(), 2);
        assert_eq!(lru.get_mut("a"), Some(&mut 1));
        lru.insert("c".to_string(), 3);
        assert!(lru.get_mut("b").is_none(), "b was the least recently used");
        assert_eq!(lru.get_mut("a"), Some(&mut 1));
        assert_eq!(*lru.get_or_insert_with("c".to_string(), || 9), 3);
        assert_eq!(*lru.get_or_insert_with("d".to_string(), || 4), 4);
        assert_eq!(lru.map.len(), 2);
    }
}
