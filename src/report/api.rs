//! [`ApiReporter`]: pod status, events and final deletion, written to the API server.
//!
//! Owns the kubelet's status manager and event recorder plumbing: statuses are queued per pod
//! (the newest wins) and written by one `status` thread as the kubelet's strategic merge patch
//! of `/status` (against what the API server has, carrying the pod's uid), only when they
//! differ from what was written last; events go through the pure
//! [`EventRecorder`] (aggregation, dedup into count patches, rate limits) and are written by one
//! `events` thread, so a slow API server never blocks a pod worker. The final delete (grace 0
//! with a uid precondition) is synchronous: the worker must know it happened.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;

use super::{EventType, PodReporter};
use crate::clock::Clock;
use crate::kube::{ApiError, KubeApi, PatchType};
use crate::node::events::{container_ref_path, node_ref, pod_ref, EventDecision, EventRecorder};
use crate::pod::status::KUBELET_CONDITIONS;
use crate::pod::{key, uid};
use crate::source::{CONFIG_HASH, CONFIG_MIRROR};

#[derive(Default)]
struct Queue {
    /// Newest status per pod uid, not written yet.
    pending: HashMap<String, (Arc<Pod>, Arc<PodStatus>)>,
    order: VecDeque<String>,
    /// What was last written (or found) per pod uid.
    written: HashMap<String, Arc<PodStatus>>,
    /// The newest status computed per pod uid (the "old" status of the next computation). Once
    /// written, the same allocation as in `written`: an idle pod's status is kept once.
    latest: HashMap<String, Arc<PodStatus>>,
    /// The mirror pod's uid of each static pod uid.
    mirrors: HashMap<String, String>,
    /// Why a static pod has no mirror pod, by static pod uid, as last logged (logged once).
    mirror_failures: HashMap<String, String>,
    /// The pod uid whose status the `status` thread is writing now (taken from `pending`, not
    /// in `written` yet): a status equal to the one written before must still be queued.
    in_flight: Option<String>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Reports to the API server.
pub struct ApiReporter {
    /// Where event times come from (a fake clock in tests).
    clock: Arc<dyn Clock>,
    api: Arc<dyn KubeApi>,
    shared: Arc<Shared>,
    events: Sender<Box<QueuedEvent>>,
    /// Events sent to the `events` thread and not yet written (or given up).
    events_pending: Arc<AtomicUsize>,
    /// The node's name, for events about the Node.
    node: String,
}

/// An event waiting for the `events` thread: what it is about, its type, reason and message,
/// and when it happened. Queued boxed: the channel's 1024 slots (client-go's broadcaster queue)
/// are allocated up front, 16 bytes each this way instead of 240.
type QueuedEvent = (ObjectReference, EventType, String, String, Timestamp);

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Queue> {
    s.queue.lock().unwrap_or_else(|p| p.into_inner())
}

impl ApiReporter {
    /// Starts the `status` and `events` threads for node `node_name`; events are stamped and
    /// retries paced by `clock`.
    pub fn start(
        api: Arc<dyn KubeApi>,
        node_name: &str,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Arc<ApiReporter>> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let (tx, rx) = crossbeam_channel::bounded(1024);
        {
            let api = api.clone();
            let shared = shared.clone();
            let node = node_name.to_string();
            let clock = clock.clone();
            std::thread::Builder::new()
                .name("status".into())
                .spawn(move || status_loop(api.as_ref(), &node, &shared, clock.as_ref()))?;
        }
        let events_pending = Arc::new(AtomicUsize::new(0));
        {
            let api = api.clone();
            let recorder = EventRecorder::new(node_name);
            let pending = events_pending.clone();
            std::thread::Builder::new()
                .name("events".into())
                .spawn(move || event_loop(api.as_ref(), recorder, &rx, &pending))?;
        }
        Ok(Arc::new(ApiReporter {
            clock,
            api,
            shared,
            events: tx,
            events_pending,
            node: node_name.to_string(),
        }))
    }
}

fn status_loop(api: &dyn KubeApi, node_name: &str, shared: &Shared, clock: &dyn Clock) {
    loop {
        let (pod, status) = {
            let mut q = lock(shared);
            loop {
                if let Some(id) = q.order.pop_front() {
                    if let Some(item) = q.pending.remove(&id) {
                        q.in_flight = Some(id);
                        break item;
                    }
                    continue;
                }
                q.in_flight = None;
                q = shared.wake.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        let id = uid(&pod).to_string();
        if lock(shared).written.get(&id) == Some(&status) {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        // What the API server has: what we wrote last, else its copy of the pod (a mirror
        // pod's, for a static pod).
        let mut base = lock(shared).written.get(&id).cloned();
        // A static pod's status goes to its mirror pod, which has a uid of its own.
        let target_uid = if crate::source::is_static(&pod) {
            let known = lock(shared).mirrors.get(&id).cloned();
            let found = match known {
                Some(m) => Some(m),
                None => match ensure_mirror(api, node_name, &pod) {
                    Ok((m, status)) => {
                        lock(shared).mirror_failures.remove(&id);
                        base = base.take().or(status.map(Arc::new));
                        Some(m)
                    }
                    Err(why) => {
                        // Retried with every status; logged when the reason is new.
                        let mut q = lock(shared);
                        if q.mirror_failures.get(&id) != Some(&why) {
                            log::warn!("static pod {}: {why}", key(&pod));
                            q.mirror_failures.insert(id.clone(), why);
                        }
                        None
                    }
                },
            };
            match found {
                Some(m) => {
                    lock(shared).mirrors.insert(id.clone(), m.clone());
                    m
                }
                None => continue,
            }
        } else {
            base = base.or_else(|| pod.status.clone().map(Arc::new));
            id.clone()
        };
        let Some(patch) = status_patch(&target_uid, base.as_deref(), &status) else {
            lock(shared).written.insert(id, status);
            continue;
        };
        match api.patch_pod_status(ns, name, PatchType::StrategicMerge, &patch) {
            Ok(_) => {
                lock(shared).written.insert(id, status);
            }
            // Gone, or replaced by a pod with another uid: nothing to write any more (a static
            // pod's mirror is looked up, and created again if needed, next time).
            Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {
                lock(shared).mirrors.remove(&id);
            }
            Err(e) if e.is_retryable() => {
                log::debug!("pod {}: status not written, retrying: {e}", key(&pod));
                clock.sleep(Duration::from_millis(500));
                let mut q = lock(shared);
                if !q.pending.contains_key(&id) {
                    q.pending.insert(id.clone(), (pod, status));
                    q.order.push_back(id);
                }
            }
            // NodeRestriction refuses before the uid precondition is checked: a pod of the same
            // name created since (a StatefulSet's replacement, not bound yet) looks like this.
            // The kubelet reads the pod first and skips a recreated one quietly; so do we.
            Err(e @ ApiError::Forbidden { .. })
                if match api.get_pod(ns, name) {
                    Ok(p) => p.metadata.uid.as_deref() != Some(target_uid.as_str()),
                    Err(ApiError::NotFound { .. }) => true,
                    Err(_) => false,
                } =>
            {
                log::debug!("pod {}: replaced by a pod of the same name: {e}", key(&pod));
                lock(shared).mirrors.remove(&id);
            }
            Err(e) => log::warn!("pod {}: status not written: {e}", key(&pod)),
        }
    }
}

/// The kubelet's status patch (`statusutil.PatchPodStatus`): a two-way strategic merge patch
/// from what the API server has to the new status, with the uid as a precondition. Conditions
/// the kubelet does not own are left out on both sides, so a condition another client wrote
/// (a readiness gate's, DisruptionTarget) is never touched, even when our copy of it is stale;
/// a DisruptionTarget the kubelet set itself (reason `TerminationByKubelet`: the node's
/// shutdown) is its own and is written. `None`: nothing differs.
fn status_patch(uid: &str, base: Option<&PodStatus>, new: &PodStatus) -> Option<serde_json::Value> {
    let own = |s: &PodStatus| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(cs) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            cs.retain(|c| {
                let kind = c.get("type").and_then(|t| t.as_str()).unwrap_or_default();
                KUBELET_CONDITIONS.contains(&kind)
                    || (kind == "DisruptionTarget"
                        && c.get("reason").and_then(|r| r.as_str()) == Some("TerminationByKubelet"))
            });
        }
        v
    };
    let old = base.map(own).unwrap_or_else(|| serde_json::json!({}));
    crate::kube::smp::pod_status_patch(uid, &old, &own(new))
}

/// The mirror pod of a static pod, as the kubelet creates it (`CreateMirrorPod`): the same
/// metadata and spec, with the `kubernetes.io/config.mirror` annotation carrying the static
/// pod's hash, owned by the Node (NodeRestriction lets a node create only a pod with a single
/// controller owner reference to itself, with the Node's uid).
pub fn mirror_pod(pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut m = pod.clone();
    let hash = mirror_hash(pod);
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.into(),
        uid: node_uid.into(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata.creation_timestamp = None;
    m.status = None;
    m
}

/// What a static pod's mirror carries in `kubernetes.io/config.mirror`: its config hash (its UID
/// when it has none).
fn mirror_hash(pod: &Pod) -> String {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .cloned()
        .unwrap_or_else(|| uid(pod).to_string())
}

/// Finds or creates the static pod's mirror pod; its uid and the status the API server has
/// for it. A mirror of an older version of the manifest is replaced; a regular pod of the same
/// name is left alone (and gets no status). `Err`: why there is none (for the caller to log).
fn ensure_mirror(
    api: &dyn KubeApi,
    node_name: &str,
    pod: &Pod,
) -> Result<(String, Option<PodStatus>), String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hash = mirror_hash(pod);
    match api.get_pod(ns, name) {
        Ok(existing) => {
            let theirs = existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONFIG_MIRROR))
                .cloned();
            match theirs {
                Some(h) if h == hash => {
                    return existing
                        .metadata
                        .uid
                        .map(|u| (u, existing.status))
                        .ok_or_else(|| "its mirror pod has no uid".to_string());
                }
                Some(_) => {
                    let old_uid = existing.metadata.uid.clone().unwrap_or_default();
                    if let Err(e) = api.delete_pod(ns, name, &old_uid, 0) {
                        return Err(format!("failed to replace its outdated mirror pod: {e}"));
                    }
                }
                None => {
                    return Err(
                        "a pod of the same name exists in the API server; no mirror pod".into(),
                    );
                }
            }
        }
        Err(ApiError::NotFound { .. }) => {}
        Err(e) => return Err(format!("mirror pod lookup failed: {e}")),
    }
    // The owner reference needs the Node's uid, which changes when the Node is recreated.
    let node_uid = match api.get_node(node_name) {
        Ok(n) => n.metadata.uid.unwrap_or_default(),
        Err(e) => return Err(format!("no mirror pod: cannot read node {node_name}: {e}")),
    };
    if node_uid.is_empty() {
        return Err(format!("no mirror pod: node {node_name} has no uid"));
    }
    match api.create_pod(ns, &mirror_pod(pod, node_name, &node_uid)) {
        Ok(created) => {
            log::info!("created mirror pod for static pod {}", key(pod));
            created
                .metadata
                .uid
                .map(|u| (u, created.status))
                .ok_or_else(|| "the created mirror pod has no uid".to_string())
        }
        Err(e) => Err(format!("failed to create its mirror pod: {e}")),
    }
}

fn event_loop(
    api: &dyn KubeApi,
    mut recorder: EventRecorder,
    rx: &Receiver<Box<QueuedEvent>>,
    pending: &AtomicUsize,
) {
    for item in rx {
        write_event(api, &mut recorder, *item);
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

fn write_event(api: &dyn KubeApi, recorder: &mut EventRecorder, item: QueuedEvent) {
    let (involved, kind, reason, message, now) = item;
    let ns = involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let result = match recorder.record(&involved, kind, &reason, &message, now) {
        EventDecision::Create(ev) => api.create_event(&ns, &ev).map(|_| ()),
        EventDecision::Patch(p) => match p.body() {
            Err(e) => {
                log::warn!("event {} not sent: {e}", p.name);
                return;
            }
            Ok(body) => match api.patch_event(&p.namespace, &p.name, &body) {
                Err(ApiError::NotFound { .. }) => {
                    api.create_event(&p.namespace, &p.event).map(|_| ())
                }
                other => other.map(|_| ()),
            },
        },
        EventDecision::Drop(_) => return,
    };
    if let Err(e) = result {
        log::debug!(
            "event {reason} for {ns}/{} not sent: {e}",
            involved.name.as_deref().unwrap_or("")
        );
    }
}

impl ApiReporter {
    fn send_event(&self, item: QueuedEvent) {
        self.events_pending.fetch_add(1, Ordering::SeqCst);
        if self.events.try_send(Box::new(item)).is_err() {
            // Full (the broadcaster's 1024): dropped, as client-go drops.
            self.events_pending.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl PodReporter for ApiReporter {
    fn flush(&self, timeout: Duration) -> bool {
        // Real time, not the clock's: how long a stopping daemon waits for the API server.
        let end = Instant::now() + timeout;
        loop {
            let statuses_done = {
                let q = lock(&self.shared);
                q.pending.is_empty() && q.in_flight.is_none()
            };
            if statuses_done && self.events_pending.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self, pod: &Pod, status: &PodStatus) {
        let id = uid(pod).to_string();
        let mut q = lock(&self.shared);
        let writing = q.in_flight.as_deref() == Some(id.as_str());
        if let Some(written) = q.written.get(&id).filter(|w| !writing && ***w == *status) {
            let written = written.clone();
            q.latest.insert(id.clone(), written);
            q.pending.remove(&id);
            return;
        }
        let status = Arc::new(status.clone());
        // The first status since the daemon started, and the API server already has it (the
        // daemon restarted under a running pod): nothing to write, as the kubelet's status
        // manager finds no reconcile needed against its copy of the pod.
        if !q.latest.contains_key(&id) && pod.status.as_ref() == Some(&*status) {
            q.written.insert(id.clone(), status.clone());
            q.latest.insert(id.clone(), status);
            q.pending.remove(&id);
            return;
        }
        q.latest.insert(id.clone(), status.clone());
        if q.pending
            .insert(id.clone(), (Arc::new(pod.clone()), status))
            .is_none()
        {
            q.order.push_back(id);
        }
        drop(q);
        self.shared.wake.notify_one();
    }

    fn node_event(&self, kind: EventType, reason: &str, message: &str) {
        let item = (
            node_ref(&self.node),
            kind,
            reason.to_string(),
            message.to_string(),
            self.clock.timestamp(),
        );
        self.send_event(item);
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        let item = (
            pod_ref(pod, None),
            kind,
            reason.to_string(),
            message.to_string(),
            self.clock.timestamp(),
        );
        // A full queue means the API server is far behind: dropping events is what the
        // kubelet's broadcaster does too.
        self.send_event(item);
    }

    fn container_event(
        &self,
        pod: &Pod,
        container: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let path = container_ref_path(pod, container);
        let item = (
            pod_ref(pod, Some(&path)),
            kind,
            reason.to_string(),
            message.to_string(),
            self.clock.timestamp(),
        );
        self.send_event(item);
    }

    fn deleted(&self, pod: &Pod) -> Result<(), ApiError> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        // A static pod is represented in the API server by its mirror pod.
        let target = if crate::source::is_static(pod) {
            match lock(&self.shared).mirrors.get(uid(pod)).cloned() {
                Some(m) => m,
                None => match self.api.get_pod(ns, name) {
                    Ok(p) if crate::source::is_mirror(&p) => p.metadata.uid.unwrap_or_default(),
                    _ => return Ok(()),
                },
            }
        } else {
            uid(pod).to_string()
        };
        match self.api.delete_pod(ns, name, &target, 0) {
            Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn last_status(&self, uid: &str) -> Option<Arc<PodStatus>> {
        lock(&self.shared).latest.get(uid).cloned()
    }

    fn forget(&self, uid: &str) {
        let mut q = lock(&self.shared);
        q.pending.remove(uid);
        q.written.remove(uid);
        q.latest.remove(uid);
        q.mirrors.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::FakeApi;
    use crate::kube::RequestKind;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p1", "namespace": "fixtures", "uid": "u-1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap()
    }

    fn wait_for(api: &FakeApi, kind: RequestKind, n: usize) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while api.calls_of(kind).len() < n {
            assert!(
                std::time::Instant::now() < end,
                "waited for {n} {kind:?}: {:?}",
                api.calls()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A reporter on a fake API that answers `n` status patches with the recorded pod.
    fn reporter_answering_patches(n: usize) -> (Arc<FakeApi>, Arc<ApiReporter>) {
        let api = Arc::new(FakeApi::new());
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/apiserver/07k-pod-get-200/response-body.json"
        ))
        .unwrap();
        for _ in 0..n {
            api.push_json(
                RequestKind::PatchPodStatus,
                serde_json::from_slice(&fixture).unwrap(),
            );
        }
        let r =
            ApiReporter::start(api.clone(), "vk-node", Arc::new(crate::clock::RealClock)).unwrap();
        (api, r)
    }

    #[test]
    fn a_status_is_written_once_as_a_strategic_merge_patch_with_the_uid() {
        let (api, r) = reporter_answering_patches(3);
        let s = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        r.status(&pod(), &s);
        wait_for(&api, RequestKind::PatchPodStatus, 1);
        assert!(r.flush(Duration::from_secs(5)), "the status thread is idle");
        r.status(&pod(), &s);
        assert!(
            r.flush(Duration::from_secs(5)),
            "and nothing was queued again"
        );
        let calls = api.calls_of(RequestKind::PatchPodStatus);
        assert_eq!(calls.len(), 1, "an unchanged status is not written again");
        assert_eq!(
            calls[0].content_type,
            Some("application/strategic-merge-patch+json")
        );
        let body: serde_json::Value =
            serde_json::from_slice(calls[0].body.as_ref().unwrap()).unwrap();
        assert_eq!(body["metadata"]["uid"], "u-1");
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(r.last_status("u-1").as_deref(), Some(&s));
    }

    #[test]
    fn a_status_the_api_server_already_has_is_not_written_after_a_restart() {
        let (api, r) = reporter_answering_patches(2);
        let s = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        let mut adopted = pod();
        adopted.status = Some(s.clone());
        r.status(&adopted, &s);
        assert_eq!(r.last_status("u-1").as_deref(), Some(&s));
        // A change is written as usual, and going back to the API server's old status is a
        // change too (what counts then is what this daemon wrote last).
        let failed = PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        };
        r.status(&adopted, &failed);
        wait_for(&api, RequestKind::PatchPodStatus, 1);
        r.status(&adopted, &s);
        wait_for(&api, RequestKind::PatchPodStatus, 2);
        let phases: Vec<serde_json::Value> = api
            .calls_of(RequestKind::PatchPodStatus)
            .iter()
            .map(|c| serde_json::from_slice::<serde_json::Value>(c.body.as_ref().unwrap()).unwrap())
            .map(|b| b["status"]["phase"].clone())
            .collect();
        assert_eq!(phases, ["Failed", "Running"]);
    }

    #[test]
    fn the_final_delete_carries_grace_zero_and_the_uid() {
        let api = Arc::new(FakeApi::new());
        api.push_error(
            RequestKind::DeletePod,
            ApiError::from_response(
                crate::kube::request::delete_pod("fixtures", "p1", "u-1", 0).unwrap().describe(),
                404,
                br#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
                None,
            ),
        );
        let r =
            ApiReporter::start(api.clone(), "vk-node", Arc::new(crate::clock::RealClock)).unwrap();
        assert_eq!(r.deleted(&pod()), Ok(()), "already gone counts as deleted");
        let call = &api.calls_of(RequestKind::DeletePod)[0];
        let body: serde_json::Value = serde_json::from_slice(call.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["gracePeriodSeconds"], 0);
        assert_eq!(body["preconditions"]["uid"], "u-1");
    }

    #[test]
    fn container_events_name_the_container_by_field_path_pod_events_do_not() {
        let api = Arc::new(FakeApi::new());
        let mut p = pod();
        p.spec = Some(
            serde_json::from_value(serde_json::json!({
                "initContainers": [{"name": "setup"}],
                "containers": [{"name": "web"}]
            }))
            .unwrap(),
        );
        for _ in 0..3 {
            api.push_json(RequestKind::CreateEvent, serde_json::json!({}));
        }
        let r =
            ApiReporter::start(api.clone(), "vk-node", Arc::new(crate::clock::RealClock)).unwrap();
        r.container_event(
            &p,
            "web",
            EventType::Warning,
            "Unhealthy",
            "Readiness probe failed: x",
        );
        r.container_event(
            &p,
            "setup",
            EventType::Normal,
            "Started",
            "Started container setup",
        );
        r.event(&p, EventType::Warning, "LifecycleHTTPFallback", "fallback");
        wait_for(&api, RequestKind::CreateEvent, 3);
        let paths: Vec<serde_json::Value> = api
            .calls_of(RequestKind::CreateEvent)
            .iter()
            .map(|c| {
                let body: serde_json::Value =
                    serde_json::from_slice(c.body.as_ref().unwrap()).unwrap();
                body["involvedObject"]["fieldPath"].clone()
            })
            .collect();
        assert_eq!(
            paths,
            [
                serde_json::json!("spec.containers{web}"),
                serde_json::json!("spec.initContainers{setup}"),
                serde_json::Value::Null
            ]
        );
    }
}
