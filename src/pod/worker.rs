//! Pod workers: one thread per pod UID, the latest update wins, and a pod goes
//! sync → terminating → terminated exactly once.
//!
//! Owns the kubelet's `pod_workers.go` machinery: dispatching [`PodEvent`]s to per-UID workers,
//! coalescing updates (a worker always syncs the newest spec it was given), waking a worker when
//! the runtime changed ([`PodWorkers::poke`]) or when its syncer asked to be called again, and the
//! phase transitions. What a sync *does* is behind the [`PodSyncer`] trait (the runtime one is in
//! `pod::sync`), so this file has no CRI and no API calls and is tested with a fake syncer.
//! A pod that finished (Succeeded/Failed) is terminating then terminated once (its volumes go)
//! and then kept, containers and logs included, until its source deletes or removes it.
//!
//! ```text
//!            Upsert (no deletionTimestamp)            deletionTimestamp / Remove / terminal
//!   ┌──────┐ ───────────────────────────────▶ ┌──────┐ ───────────────────────▶ ┌─────────────┐
//!   │ new  │                                   │ sync │                          │ terminating │
//!   └──────┘                                   └──────┘                          └─────────────┘
//!                                                 ▲ │ sync_pod, again and again          │ containers and
//!                                                 └─┘ (updates, pokes, resync)           │ sandbox stopped
//!                                                                                         ▼
//!                  forgotten ◀──── Remove ────  ┌────────────┐ ◀──────────────────────────┘
//!          (thread ends; the UID never         │ terminated │  sync_terminated_pod: clean up
//!           starts again)                      └────────────┘  (sandbox, volumes, logs, final delete)
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::PodEvent;

/// What a sync of a running pod concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncResult {
    /// Keep syncing; come back at the latest after this long.
    Requeue(Duration),
    /// The pod reached a terminal phase (Succeeded/Failed): terminate it.
    Terminal,
}

/// Why a pod is terminating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Termination {
    /// It has a deletionTimestamp in its source (graceful deletion).
    Deleted,
    /// It is gone from its source (file removed, or deleted without us seeing the grace).
    Removed,
    /// It finished (Succeeded/Failed).
    Finished,
}

/// The work done for a pod in each phase. Implementations log their own failures (once, with
/// the pod key) and say when to retry by returning `Err(retry_after)`.
pub trait PodSyncer: Send + Sync {
    /// Makes the runtime match the pod's spec and reports its status.
    fn sync_pod(&self, pod: &Arc<Pod>) -> SyncResult;
    /// Stops the pod's containers (within the grace period) and its sandbox.
    fn sync_terminating_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration>;
    /// Cleans up after a stopped pod (sandbox, volumes, logs, the final API delete).
    fn sync_terminated_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration>;
    /// The worker of this UID ended: drop whatever per-pod state the syncer keeps.
    fn forget(&self, uid: &str);
}

#[derive(Default)]
struct Pending {
    /// The newest spec, not yet seen by the worker.
    pod: Option<Arc<Pod>>,
    /// The pod is gone from its source.
    removed: bool,
    /// Something changed in the runtime: sync again now.
    poked: bool,
}

struct Slot {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, Arc<Slot>>,
    /// UIDs whose worker finished terminating: they never start again.
    finished: HashSet<String>,
}

/// The set of pod workers.
#[derive(Clone)]
pub struct PodWorkers {
    registry: Arc<Mutex<Registry>>,
    syncer: Arc<dyn PodSyncer>,
}

fn has_deletion_timestamp(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

impl PodWorkers {
    pub fn new(syncer: Arc<dyn PodSyncer>) -> PodWorkers {
        PodWorkers {
            registry: Arc::new(Mutex::new(Registry::default())),
            syncer,
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers an event from a pod source to the pod's worker, starting one if needed.
    pub fn dispatch(&self, event: PodEvent) {
        match event {
            PodEvent::Upsert(pod) => {
                let uid = super::uid(&pod).to_string();
                if uid.is_empty() {
                    log::warn!("ignoring pod {} without a uid", super::key(&pod));
                    return;
                }
                let slot = {
                    let mut reg = self.registry();
                    if reg.finished.contains(&uid) {
                        return;
                    }
                    match reg.workers.get(&uid) {
                        Some(s) => s.clone(),
                        None => {
                            let slot = Arc::new(Slot {
                                pending: Mutex::new(Pending::default()),
                                wake: Condvar::new(),
                            });
                            reg.workers.insert(uid.clone(), slot.clone());
                            self.spawn(uid.clone(), slot.clone());
                            slot
                        }
                    }
                };
                slot.lock().pod = Some(pod);
                slot.wake.notify_one();
            }
            PodEvent::Remove { uid } => {
                let slot = self.registry().workers.get(&uid).cloned();
                if let Some(slot) = slot {
                    slot.lock().removed = true;
                    slot.wake.notify_one();
                }
            }
        }
    }

    /// Wakes the worker of `uid` to sync now (the runtime changed under it).
    pub fn poke(&self, uid: &str) {
        let slot = self.registry().workers.get(uid).cloned();
        if let Some(slot) = slot {
            slot.lock().poked = true;
            slot.wake.notify_one();
        }
    }

    /// UIDs that have a worker now.
    pub fn active(&self) -> Vec<String> {
        self.registry().workers.keys().cloned().collect()
    }

    /// Whether `uid` finished terminating (and must not start again).
    pub fn is_finished(&self, uid: &str) -> bool {
        self.registry().finished.contains(uid)
    }

    fn spawn(&self, uid: String, slot: Arc<Slot>) {
        let this = self.clone();
        let name = format!("pod-{}", &uid[..uid.len().min(8)]);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || this.run(&uid, &slot));
        if let Err(e) = spawned {
            log::error!("failed to start a pod worker thread: {e}");
        }
    }

    /// The worker loop of one pod.
    fn run(&self, uid: &str, slot: &Slot) {
        let mut pod: Option<Arc<Pod>> = None;
        let mut termination: Option<Termination> = None;
        let mut stopped = false;
        // A finished pod went through its terminated phase (volumes torn down).
        let mut finished_done = false;
        let mut deadline = Instant::now();
        loop {
            // Wait for news or the deadline, then take the newest state.
            let removed = {
                let mut p = slot.lock();
                while p.pod.is_none() && !p.poked && !p.removed && Instant::now() < deadline {
                    let wait = deadline.saturating_duration_since(Instant::now());
                    p = slot
                        .wake
                        .wait_timeout(p, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                if let Some(newer) = p.pod.take() {
                    pod = Some(newer);
                }
                p.poked = false;
                p.removed
            };
            let Some(current) = pod.clone() else {
                // Removed before its first spec arrived: nothing ever ran.
                if removed {
                    break;
                }
                deadline = Instant::now() + IDLE;
                continue;
            };
            // Deletion or removal overrides "finished": the finished pod is cleaned up now.
            let gone = if removed {
                Some(Termination::Removed)
            } else if has_deletion_timestamp(&current) {
                Some(Termination::Deleted)
            } else {
                None
            };
            if let Some(g) = gone {
                if termination.is_none() || termination == Some(Termination::Finished) {
                    termination = Some(g);
                    stopped = false;
                }
            }
            let Some(why) = termination.clone() else {
                match self.syncer.sync_pod(&current) {
                    SyncResult::Requeue(after) => deadline = Instant::now() + after,
                    SyncResult::Terminal => {
                        termination = Some(Termination::Finished);
                        deadline = Instant::now();
                    }
                }
                continue;
            };
            if !stopped {
                if let Err(after) = self.syncer.sync_terminating_pod(&current, &why) {
                    deadline = Instant::now() + after;
                    continue;
                }
                stopped = true;
            }
            if why == Termination::Finished {
                // Terminated (its volumes go), with its containers kept for their logs until
                // its source lets go.
                if !finished_done {
                    if let Err(after) = self.syncer.sync_terminated_pod(&current, &why) {
                        deadline = Instant::now() + after;
                        continue;
                    }
                    finished_done = true;
                }
                deadline = Instant::now() + IDLE;
                continue;
            }
            if let Err(after) = self.syncer.sync_terminated_pod(&current, &why) {
                deadline = Instant::now() + after;
                continue;
            }
            break;
        }
        let mut reg = self.registry();
        reg.workers.remove(uid);
        reg.finished.insert(uid.to_string());
        drop(reg);
        self.syncer.forget(uid);
    }
}

/// How long an idle worker sleeps when nothing asked it to come back sooner.
const IDLE: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Call {
        Sync(String),
        Terminating(String, Termination),
        Terminated(String),
        Forget(String),
    }

    /// Records calls; `sync_pod` optionally blocks until released, to test coalescing.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<Call>>,
        gate: Mutex<bool>,
        gate_cv: Condvar,
        terminal_after: Mutex<Option<String>>,
        fail_terminating_once: Mutex<bool>,
    }

    impl Recorder {
        fn calls(&self) -> Vec<Call> {
            self.calls.lock().unwrap().clone()
        }
        fn wait_for(&self, what: &str, f: impl Fn(&[Call]) -> bool) {
            let end = Instant::now() + Duration::from_secs(5);
            while !f(&self.calls()) {
                assert!(
                    Instant::now() < end,
                    "timed out waiting for {what}: {:?}",
                    self.calls()
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn label(pod: &Pod) -> String {
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("v").cloned())
            .unwrap_or_default()
    }

    impl PodSyncer for Recorder {
        fn sync_pod(&self, pod: &Arc<Pod>) -> SyncResult {
            let mut open = self.gate.lock().unwrap();
            while !*open {
                open = self.gate_cv.wait(open).unwrap();
            }
            drop(open);
            self.calls.lock().unwrap().push(Call::Sync(label(pod)));
            if self.terminal_after.lock().unwrap().as_deref() == Some(label(pod).as_str()) {
                return SyncResult::Terminal;
            }
            SyncResult::Requeue(Duration::from_secs(3600))
        }
        fn sync_terminating_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Terminating(label(pod), why.clone()));
            let mut fail = self.fail_terminating_once.lock().unwrap();
            if std::mem::take(&mut *fail) {
                return Err(Duration::from_millis(10));
            }
            Ok(())
        }
        fn sync_terminated_pod(&self, pod: &Arc<Pod>, _why: &Termination) -> Result<(), Duration> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Terminated(label(pod)));
            Ok(())
        }
        fn forget(&self, uid: &str) {
            self.calls.lock().unwrap().push(Call::Forget(uid.into()));
        }
    }

    fn pod(uid: &str, v: &str, deleted: bool) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": uid, "labels": {"v": v}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        if deleted {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        Arc::new(p)
    }

    fn open(rec: &Recorder) {
        *rec.gate.lock().unwrap() = true;
        rec.gate_cv.notify_all();
    }

    #[test]
    fn the_latest_update_wins_while_a_sync_runs() {
        let rec = Arc::new(Recorder::default());
        let workers = PodWorkers::new(rec.clone());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        std::thread::sleep(Duration::from_millis(50));
        // The worker is blocked in sync_pod("1"); these pile up and only the last survives.
        for v in ["2", "3", "4"] {
            workers.dispatch(PodEvent::Upsert(pod("u1", v, false)));
        }
        open(&rec);
        rec.wait_for("sync of 4", |c| c.contains(&Call::Sync("4".into())));
        let syncs: Vec<Call> = rec
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Sync(_)))
            .collect();
        assert_eq!(syncs, [Call::Sync("1".into()), Call::Sync("4".into())]);
    }

    #[test]
    fn deletion_terminates_once_and_the_uid_never_starts_again() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        rec.wait_for("first sync", |c| c.contains(&Call::Sync("1".into())));
        *rec.fail_terminating_once.lock().unwrap() = true;
        workers.dispatch(PodEvent::Upsert(pod("u1", "2", true)));
        rec.wait_for("forget", |c| c.contains(&Call::Forget("u1".into())));
        assert_eq!(
            rec.calls(),
            [
                Call::Sync("1".into()),
                Call::Terminating("2".into(), Termination::Deleted),
                Call::Terminating("2".into(), Termination::Deleted),
                Call::Terminated("2".into()),
                Call::Forget("u1".into()),
            ],
            "a failed termination is retried; the deleted spec is never synced"
        );
        assert!(workers.is_finished("u1"));
        workers.dispatch(PodEvent::Upsert(pod("u1", "3", false)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !rec.calls().contains(&Call::Sync("3".into())),
            "a terminated UID must not start again"
        );
        assert!(workers.active().is_empty());
    }

    #[test]
    fn a_finished_pod_is_stopped_and_kept_until_its_source_removes_it() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        *rec.terminal_after.lock().unwrap() = Some("1".into());
        let workers = PodWorkers::new(rec.clone());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        rec.wait_for("terminated", |c| c.contains(&Call::Terminated("1".into())));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            rec.calls()
                .iter()
                .filter(|c| **c == Call::Terminated("1".into()))
                .count(),
            1,
            "the terminated phase of a finished pod runs once"
        );
        assert_eq!(workers.active(), ["u1"]);
        workers.dispatch(PodEvent::Upsert(pod("u1", "1b", false)));
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !rec.calls().contains(&Call::Sync("1b".into())),
            "a finished pod is not synced again"
        );
        workers.dispatch(PodEvent::Remove { uid: "u1".into() });
        rec.wait_for("forget", |c| c.contains(&Call::Forget("u1".into())));
        assert_eq!(
            rec.calls(),
            [
                Call::Sync("1".into()),
                Call::Terminating("1".into(), Termination::Finished),
                Call::Terminated("1".into()),
                Call::Terminating("1b".into(), Termination::Removed),
                Call::Terminated("1b".into()),
                Call::Forget("u1".into()),
            ],
            "stopped and terminated when finished, cleaned up once its source removed it"
        );
    }

    #[test]
    fn removal_from_the_source_terminates_and_pokes_resync() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        rec.wait_for("sync", |c| c.contains(&Call::Sync("1".into())));
        workers.poke("u1");
        rec.wait_for("second sync after poke", |c| {
            c.iter().filter(|x| **x == Call::Sync("1".into())).count() == 2
        });
        workers.poke("nobody");
        workers.dispatch(PodEvent::Remove { uid: "u1".into() });
        rec.wait_for("forget", |c| c.contains(&Call::Forget("u1".into())));
        assert!(rec
            .calls()
            .contains(&Call::Terminating("1".into(), Termination::Removed)));
    }

    #[test]
    fn pods_are_independent() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone());
        for u in ["a", "b", "c"] {
            workers.dispatch(PodEvent::Upsert(pod(u, u, false)));
        }
        rec.wait_for("three syncs", |c| {
            c.iter().filter(|x| matches!(x, Call::Sync(_))).count() == 3
        });
        let mut active = workers.active();
        active.sort();
        assert_eq!(active, ["a", "b", "c"]);
    }
}
