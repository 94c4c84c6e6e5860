//! Pod workers: per pod UID, the latest update wins, steps never overlap, and a pod goes
//! sync → terminating → terminated exactly once.
//!
//! Owns the kubelet's `pod_workers.go` machinery: dispatching [`PodEvent`]s to per-UID workers,
//! coalescing updates (a worker always syncs the newest spec it was given), waking a worker when
//! the runtime changed ([`PodWorkers::poke`]) or when its syncer asked to be called again, and the
//! phase transitions. A pod has a thread only while it has something to do: the thread runs its
//! steps until nothing is due, then ends and leaves the pod's next deadline with the one
//! `pod-timer` thread, which starts a thread again when it passes. (An idle pod costs a few
//! hundred bytes instead of a thread and its stack; see docs/PERFORMANCE.md.) What a sync *does*
//! is behind the [`PodSyncer`] trait (the runtime one is in `executor::sync`), so this file has no CRI
//! and no API calls and is tested with a fake syncer.
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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::clock::Clock;
use crate::source::PodEvent;

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
    /// The node shuts down: stopped within this grace, then kept as a finished pod is.
    NodeShutdown { grace: Duration },
}

impl Termination {
    /// The pod stays (containers and logs kept, volumes gone) once stopped.
    pub fn keeps_pod(&self) -> bool {
        matches!(
            self,
            Termination::Finished | Termination::NodeShutdown { .. }
        )
    }
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

/// One pod's worker: the news for it and what its runs remember between them.
#[derive(Default)]
struct SlotState {
    /// The newest spec, not yet seen by the worker.
    news: Option<Arc<Pod>>,
    /// News: the pod is gone from its source.
    removed: bool,
    /// Something changed in the runtime: sync again now.
    poked: bool,
    /// News: stop the pod for the node's shutdown, within this grace.
    shut_down: Option<Duration>,
    /// The spec the worker syncs.
    pod: Option<Arc<Pod>>,
    /// The worker knows the pod is gone from its source.
    source_removed: bool,
    termination: Option<Termination>,
    /// The containers of a terminating pod are stopped.
    stopped: bool,
    /// A finished pod went through its terminated phase (volumes torn down).
    finished_done: bool,
    /// When to run again without news (None: now).
    deadline: Option<Instant>,
    /// A thread runs this pod's steps now; only it touches the fields above but the news.
    running: bool,
    /// Terminated and forgotten: never runs again.
    done: bool,
}

impl SlotState {
    fn due(&self, now: Instant) -> bool {
        self.news.is_some()
            || self.poked
            || self.removed
            || self.shut_down.is_some()
            || self.deadline.is_none_or(|d| d <= now)
    }
}

struct Slot {
    state: Mutex<SlotState>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Registry {
    workers: HashMap<String, Arc<Slot>>,
    /// UIDs whose worker finished terminating: they never start again.
    finished: HashSet<String>,
    /// Static pods by full name (`name_namespace`): the UID that runs under it now, until it
    /// has terminated (the kubelet's `startedStaticPodsByFullname`).
    static_started: HashMap<String, String>,
    /// The UIDs waiting to start under a full name, first come first served
    /// (`waitingToStartStaticPodsByFullname`).
    static_waiting: HashMap<String, Vec<String>>,
}

/// A static pod's full name, the key under which only one instance may run at a time; `None`
/// for a pod from the API server.
fn static_full_name(pod: &Pod) -> Option<String> {
    crate::source::is_static(pod).then(|| {
        format!(
            "{}_{}",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default()
        )
    })
}

/// The deadlines of idle pods, kept by the `pod-timer` thread.
struct Timers {
    /// Where deadlines are read (a fake clock in tests).
    clock: Arc<dyn Clock>,
    heap: Mutex<BinaryHeap<Reverse<(Instant, String)>>>,
    wake: Condvar,
    stop: AtomicBool,
    /// Deadlines taken off the heap and not yet handed to their workers.
    firing: AtomicUsize,
}

impl Timers {
    fn lock(&self) -> std::sync::MutexGuard<'_, BinaryHeap<Reverse<(Instant, String)>>> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, at: Instant, uid: &str) {
        let mut heap = self.lock();
        let earliest = heap.peek().is_none_or(|Reverse((d, _))| at < *d);
        heap.push(Reverse((at, uid.to_string())));
        if earliest {
            self.wake.notify_one();
        }
    }
}

struct Inner {
    registry: Mutex<Registry>,
    syncer: Arc<dyn PodSyncer>,
    timers: Arc<Timers>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.timers.stop.store(true, Ordering::SeqCst);
        self.timers.wake.notify_one();
    }
}

/// The set of pod workers.
#[derive(Clone)]
pub struct PodWorkers {
    inner: Arc<Inner>,
}

fn has_deletion_timestamp(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Whether an update of a pod asks for a sync: its spec, labels, annotations or deletion
/// changed (the kubelet's `podsDifferSemantically`); a new status or resourceVersion does not.
fn differs_semantically(known: &Pod, update: &Pod) -> bool {
    let (a, b) = (&known.metadata, &update.metadata);
    known.spec != update.spec
        || a.labels != b.labels
        || a.annotations != b.annotations
        || a.deletion_timestamp != b.deletion_timestamp
        || a.deletion_grace_period_seconds != b.deletion_grace_period_seconds
}

/// What one step of a worker did: when to come back, or that the pod is done.
enum Step {
    Again(Instant),
    Done,
}

impl PodWorkers {
    /// The workers, with their `pod-timer` thread (which ends when the last clone is dropped);
    /// deadlines are read from `clock`.
    pub fn new(syncer: Arc<dyn PodSyncer>, clock: Arc<dyn Clock>) -> PodWorkers {
        let inner = Arc::new(Inner {
            registry: Mutex::new(Registry::default()),
            syncer,
            timers: Arc::new(Timers {
                clock,
                heap: Mutex::new(BinaryHeap::new()),
                wake: Condvar::new(),
                stop: AtomicBool::new(false),
                firing: AtomicUsize::new(0),
            }),
        });
        let (timers, weak) = (inner.timers.clone(), Arc::downgrade(&inner));
        let spawned = std::thread::Builder::new()
            .name("pod-timer".into())
            .spawn(move || timer_loop(&timers, &weak));
        if let Err(e) = spawned {
            // Without it pods are synced on news only (updates, pokes), never on a deadline.
            log::error!("failed to start the pod timer thread: {e}");
        }
        PodWorkers { inner }
    }

    /// The present on the workers' clock.
    fn now(&self) -> Instant {
        self.inner.timers.clock.monotonic()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Delivers an event from a pod source to the pod's worker, starting one if needed.
    pub fn dispatch(&self, event: PodEvent) {
        match event {
            PodEvent::Upsert(pod) => {
                let uid = crate::pod::uid(&pod).to_string();
                if uid.is_empty() {
                    log::warn!("ignoring pod {} without a uid", crate::pod::key(&pod));
                    return;
                }
                let slot = {
                    let mut reg = self.registry();
                    if reg.finished.contains(&uid) {
                        return;
                    }
                    reg.workers
                        .entry(uid.clone())
                        .or_insert_with(|| {
                            Arc::new(Slot {
                                state: Mutex::new(SlotState::default()),
                            })
                        })
                        .clone()
                };
                let mut st = slot.lock();
                if st.news.is_none()
                    && st
                        .pod
                        .as_ref()
                        .is_some_and(|known| !differs_semantically(known, &pod))
                    && !crate::pod::status::needs_readiness_reconcile(&pod)
                {
                    // Only its status (or resourceVersion) changed, most often by our own
                    // status write coming back through the watch: as the kubelet's config
                    // source, keep the newest object but do not sync for it — unless a
                    // readiness gate's condition changed what Ready must say (the kubelet's
                    // HandlePodReconcile).
                    st.pod = Some(pod);
                    return;
                }
                st.news = Some(pod);
                self.wake(&uid, &slot, &mut st);
            }
            PodEvent::Remove { uid } => {
                let slot = self.registry().workers.get(&uid).cloned();
                if let Some(slot) = slot {
                    let mut st = slot.lock();
                    st.removed = true;
                    self.wake(&uid, &slot, &mut st);
                }
            }
        }
    }

    /// Wakes the worker of `uid` to sync now (the runtime changed under it).
    pub fn poke(&self, uid: &str) {
        let slot = self.registry().workers.get(uid).cloned();
        if let Some(slot) = slot {
            let mut st = slot.lock();
            st.poked = true;
            self.wake(uid, &slot, &mut st);
        }
    }

    /// Stops the pod of `uid` for the node's shutdown within `grace` (the kubelet's
    /// `killPodFunc` with a grace override): it is then kept as a finished pod is. A pod already
    /// terminating goes on as it was.
    pub fn shut_down(&self, uid: &str, grace: Duration) {
        let slot = self.registry().workers.get(uid).cloned();
        if let Some(slot) = slot {
            let mut st = slot.lock();
            st.shut_down = Some(grace);
            self.wake(uid, &slot, &mut st);
        }
    }

    /// Whether the pod of `uid` is stopped (terminating done), or has no worker.
    pub fn is_stopped(&self, uid: &str) -> bool {
        let slot = self.registry().workers.get(uid).cloned();
        slot.is_none_or(|slot| {
            let st = slot.lock();
            st.stopped && st.shut_down.is_none()
        })
    }

    /// UIDs that have a worker now.
    pub fn active(&self) -> Vec<String> {
        self.registry().workers.keys().cloned().collect()
    }

    /// Whether the worker of `uid` has nothing left to do now: no thread runs its steps and no
    /// news waits (or it has no worker). A test's negative check is made once this holds, so it
    /// cannot pass only because the worker had not got to it yet.
    #[cfg(test)]
    fn settled(&self, uid: &str) -> bool {
        {
            // No deadline due on the clock is waiting for, or being handed over by, the timer.
            let now = self.now();
            let heap = self.inner.timers.lock();
            if self.inner.timers.firing.load(Ordering::SeqCst) > 0
                || heap.peek().is_some_and(|Reverse((at, _))| *at <= now)
            {
                return false;
            }
        }
        let slot = self.registry().workers.get(uid).cloned();
        slot.is_none_or(|slot| {
            let st = slot.lock();
            !st.running && st.news.is_none() && !st.poked && !st.removed
        })
    }

    /// Whether `uid` finished terminating (and must not start again).
    pub fn is_finished(&self, uid: &str) -> bool {
        self.registry().finished.contains(uid)
    }

    /// Starts a thread for the pod if it has something to do and none runs (slot locked). An
    /// idle pod has no thread: its deadline waits in the timer.
    fn wake(&self, uid: &str, slot: &Arc<Slot>, st: &mut SlotState) {
        if st.running || st.done || !st.due(self.now()) {
            return;
        }
        st.running = true;
        let (this, uid2, slot2) = (self.clone(), uid.to_string(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("pod-{}", &uid[..uid.len().min(8)]))
            .spawn(move || this.run(&uid2, &slot2));
        if let Err(e) = spawned {
            log::error!("failed to start a pod worker thread, retrying in 1s: {e}");
            st.running = false;
            let retry = self.now() + Duration::from_secs(1);
            st.deadline = Some(retry);
            self.inner.timers.add(retry, uid);
        }
    }

    /// The timer says `uid`'s deadline `at` passed.
    fn fire(&self, uid: &str, at: Instant) {
        let slot = self.registry().workers.get(uid).cloned();
        if let Some(slot) = slot {
            let mut st = slot.lock();
            // An older deadline, replaced since, is not this pod's business any more.
            if st.deadline == Some(at) {
                self.wake(uid, &slot, &mut st);
            }
        }
    }

    /// A pod's thread: runs its steps while it has something to do, then ends, leaving the
    /// pod's deadline with the timer.
    fn run(&self, uid: &str, slot: &Slot) {
        loop {
            let (pod, removed, termination, stopped, finished_done, shut_down) = {
                let mut st = slot.lock();
                if !st.due(self.now()) {
                    st.running = false;
                    if let Some(at) = st.deadline {
                        self.inner.timers.add(at, uid);
                    }
                    return;
                }
                if let Some(newer) = st.news.take() {
                    st.pod = Some(newer);
                }
                st.poked = false;
                // Taken once: a failed termination retries on its deadline, not in a loop.
                st.source_removed |= std::mem::take(&mut st.removed);
                (
                    st.pod.clone(),
                    st.source_removed,
                    st.termination.clone(),
                    st.stopped,
                    st.finished_done,
                    st.shut_down.take(),
                )
            };
            let Some(pod) = pod else {
                // Removed before its first spec arrived: nothing ever ran.
                break;
            };
            let mut termination = termination;
            if let Some(grace) = shut_down {
                if termination.is_none() {
                    termination = Some(Termination::NodeShutdown { grace });
                }
            }
            let mut stopped = stopped;
            let mut finished_done = finished_done;
            let step = self.step(
                uid,
                &pod,
                removed,
                &mut termination,
                &mut stopped,
                &mut finished_done,
            );
            let mut st = slot.lock();
            st.termination = termination;
            st.stopped = stopped;
            st.finished_done = finished_done;
            match step {
                Step::Again(at) => st.deadline = Some(at),
                Step::Done => {
                    st.done = true;
                    break;
                }
            }
        }
        let mut reg = self.registry();
        reg.workers.remove(uid);
        reg.finished.insert(uid.to_string());
        drop(reg);
        self.release_static(uid);
        self.inner.syncer.forget(uid);
    }

    /// Whether the static pod `uid` may start under `full_name`: no other instance runs under
    /// it, and no earlier waiter is still waiting (the kubelet's `allowStaticPodStart`). A
    /// changed manifest is a new UID with the same full name: it starts once the old one has
    /// stopped, so the two never hold the same ports or files at once.
    fn allow_static_start(&self, full_name: &str, uid: &str) -> Result<(), Waiting> {
        let mut reg = self.registry();
        if reg.static_started.get(full_name).is_some_and(|s| s == uid) {
            return Ok(());
        }
        let Registry {
            static_started,
            static_waiting,
            ..
        } = &mut *reg;
        let waiting = static_waiting.entry(full_name.to_string()).or_default();
        let first_time = !waiting.iter().any(|w| w == uid);
        if first_time {
            waiting.push(uid.to_string());
        }
        let holder = match static_started.get(full_name) {
            Some(started) => Some(started.clone()),
            None if waiting[0] != uid => Some(waiting[0].clone()),
            None => None,
        };
        if let Some(holder) = holder {
            return Err(Waiting { holder, first_time });
        }
        waiting.remove(0);
        if waiting.is_empty() {
            static_waiting.remove(full_name);
        }
        static_started.insert(full_name.to_string(), uid.to_string());
        Ok(())
    }

    /// `uid` terminated, or will never start: it holds its full name no longer and waits for
    /// it no longer; the next waiter is woken.
    fn release_static(&self, uid: &str) {
        let mut reg = self.registry();
        let Registry {
            static_started,
            static_waiting,
            ..
        } = &mut *reg;
        static_started.retain(|_, u| u != uid);
        let mut next = Vec::new();
        static_waiting.retain(|full, waiting| {
            waiting.retain(|w| w != uid);
            if !static_started.contains_key(full) {
                next.extend(waiting.first().cloned());
            }
            !waiting.is_empty()
        });
        drop(reg);
        for w in next {
            self.poke(&w);
        }
    }

    /// One step of a pod's life with its newest spec: sync, stop, or clean up.
    fn step(
        &self,
        uid: &str,
        current: &Arc<Pod>,
        removed: bool,
        termination: &mut Option<Termination>,
        stopped: &mut bool,
        finished_done: &mut bool,
    ) -> Step {
        let syncer = &self.inner.syncer;
        // Deletion or removal overrides "finished": the finished pod is cleaned up now.
        let gone = if removed {
            Some(Termination::Removed)
        } else if has_deletion_timestamp(current) {
            Some(Termination::Deleted)
        } else {
            None
        };
        if let Some(g) = gone {
            if termination.as_ref().is_none_or(Termination::keeps_pod) {
                *termination = Some(g);
                *stopped = false;
            }
        }
        let Some(why) = termination.clone() else {
            if let Some(full) = static_full_name(current) {
                if let Err(Waiting { holder, first_time }) = self.allow_static_start(&full, uid) {
                    if first_time {
                        log::info!(
                            "static pod {} (uid {uid}) waits for the instance with uid {holder} \
                             to terminate",
                            crate::pod::key(current)
                        );
                    }
                    // Woken when the holder is done; the deadline is only a safety net.
                    return Step::Again(self.now() + STATIC_WAIT);
                }
            }
            return match syncer.sync_pod(current) {
                SyncResult::Requeue(after) => Step::Again(self.now() + after),
                SyncResult::Terminal => {
                    *termination = Some(Termination::Finished);
                    Step::Again(self.now())
                }
            };
        };
        if !*stopped {
            if let Err(after) = syncer.sync_terminating_pod(current, &why) {
                return Step::Again(self.now() + after);
            }
            *stopped = true;
        }
        if why.keeps_pod() {
            // Terminated (its volumes go), with its containers kept for their logs until its
            // source lets go.
            if !*finished_done {
                if let Err(after) = syncer.sync_terminated_pod(current, &why) {
                    return Step::Again(self.now() + after);
                }
                *finished_done = true;
                self.release_static(uid);
            }
            return Step::Again(self.now() + IDLE);
        }
        if let Err(after) = syncer.sync_terminated_pod(current, &why) {
            return Step::Again(self.now() + after);
        }
        Step::Done
    }
}

/// The `pod-timer` thread: wakes the pods whose deadline passed; ends with the workers.
fn timer_loop(timers: &Timers, workers: &Weak<Inner>) {
    let mut heap = timers.lock();
    loop {
        if timers.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = timers.clock.monotonic();
        let mut due = Vec::new();
        while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse(entry)) = heap.pop() {
                due.push(entry);
            }
        }
        if !due.is_empty() {
            timers.firing.fetch_add(1, Ordering::SeqCst);
            drop(heap);
            let Some(inner) = workers.upgrade() else {
                return;
            };
            let this = PodWorkers { inner };
            for (at, uid) in due {
                this.fire(&uid, at);
            }
            timers.firing.fetch_sub(1, Ordering::SeqCst);
            drop(this);
            heap = timers.lock();
            continue;
        }
        let wait = heap
            .peek()
            .map_or(IDLE, |Reverse((at, _))| timers.clock.block_for(*at));
        heap = timers
            .wake
            .wait_timeout(heap, wait)
            .map(|(g, _)| g)
            .unwrap_or_else(|e| e.into_inner().0);
    }
}

/// How long an idle worker sleeps when nothing asked it to come back sooner.
const IDLE: Duration = Duration::from_secs(3600);

/// How often a static pod waiting for its previous instance checks again without being woken
/// (a safety net: it is woken when that instance has terminated).
const STATIC_WAIT: Duration = Duration::from_secs(30);

/// Why a static pod may not start yet: the UID ahead of it under its full name, and whether it
/// was just put in line.
struct Waiting {
    holder: String,
    first_time: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FakeClock, RealClock};

    fn real_clock() -> Arc<dyn Clock> {
        Arc::new(RealClock)
    }

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
        /// What `sync_pod` asks for (default: an hour).
        requeue: Mutex<Option<Duration>>,
        /// `sync_terminating_pod` blocks while this is set.
        hold_terminating: Mutex<bool>,
        hold_cv: Condvar,
        /// Labels of the pods `sync_pod` was entered for (before its gate).
        entered: Mutex<Vec<String>>,
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
            self.entered.lock().unwrap().push(label(pod));
            let mut open = self.gate.lock().unwrap();
            while !*open {
                open = self.gate_cv.wait(open).unwrap();
            }
            drop(open);
            self.calls.lock().unwrap().push(Call::Sync(label(pod)));
            if self.terminal_after.lock().unwrap().as_deref() == Some(label(pod).as_str()) {
                return SyncResult::Terminal;
            }
            SyncResult::Requeue(
                self.requeue
                    .lock()
                    .unwrap()
                    .unwrap_or(Duration::from_secs(3600)),
            )
        }
        fn sync_terminating_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Terminating(label(pod), why.clone()));
            let mut hold = self.hold_terminating.lock().unwrap();
            while *hold {
                hold = self.hold_cv.wait(hold).unwrap();
            }
            drop(hold);
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

    /// Waits until the workers of `uids` have nothing left to do.
    fn wait_settled(workers: &PodWorkers, uids: &[&str]) {
        let end = Instant::now() + Duration::from_secs(5);
        while !uids.iter().all(|u| workers.settled(u)) {
            assert!(Instant::now() < end, "workers {uids:?} did not settle");
            std::thread::yield_now();
        }
    }

    fn open(rec: &Recorder) {
        *rec.gate.lock().unwrap() = true;
        rec.gate_cv.notify_all();
    }

    #[test]
    fn the_latest_update_wins_while_a_sync_runs() {
        let rec = Arc::new(Recorder::default());
        let workers = PodWorkers::new(rec.clone(), real_clock());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        let end = Instant::now() + Duration::from_secs(5);
        while !rec.entered.lock().unwrap().contains(&"1".to_string()) {
            assert!(Instant::now() < end, "sync_pod(1) was not entered");
            std::thread::yield_now();
        }
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
        let workers = PodWorkers::new(rec.clone(), real_clock());
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
        // dispatch is synchronous: a UID that gets no worker can never be synced.
        assert!(
            workers.active().is_empty(),
            "a terminated UID must not start again"
        );
        wait_settled(&workers, &["u1"]);
        assert!(!rec.calls().contains(&Call::Sync("3".into())));
    }

    #[test]
    fn a_finished_pod_is_stopped_and_kept_until_its_source_removes_it() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        *rec.terminal_after.lock().unwrap() = Some("1".into());
        let workers = PodWorkers::new(rec.clone(), real_clock());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        rec.wait_for("terminated", |c| c.contains(&Call::Terminated("1".into())));
        wait_settled(&workers, &["u1"]);
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
        wait_settled(&workers, &["u1"]);
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
    fn a_pod_shut_down_for_the_node_is_stopped_once_and_kept_until_deleted() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone(), real_clock());
        workers.dispatch(PodEvent::Upsert(pod("u1", "1", false)));
        rec.wait_for("sync", |c| c.contains(&Call::Sync("1".into())));
        wait_settled(&workers, &["u1"]);
        assert!(!workers.is_stopped("u1"), "running");
        *rec.hold_terminating.lock().unwrap() = true;
        let grace = Duration::from_secs(3);
        workers.shut_down("u1", grace);
        rec.wait_for("terminating", |c| {
            c.contains(&Call::Terminating(
                "1".into(),
                Termination::NodeShutdown { grace },
            ))
        });
        assert!(!workers.is_stopped("u1"), "while its containers stop");
        *rec.hold_terminating.lock().unwrap() = false;
        rec.hold_cv.notify_all();
        rec.wait_for("terminated", |c| c.contains(&Call::Terminated("1".into())));
        wait_settled(&workers, &["u1"]);
        assert!(workers.is_stopped("u1"));
        assert!(
            workers.is_stopped("never-seen"),
            "no worker: nothing to wait for"
        );
        // A second shutdown, or a new spec, changes nothing; deletion cleans it up.
        workers.shut_down("u1", grace);
        workers.dispatch(PodEvent::Upsert(pod("u1", "1b", false)));
        wait_settled(&workers, &["u1"]);
        workers.dispatch(PodEvent::Upsert(pod("u1", "1c", true)));
        rec.wait_for("forget", |c| c.contains(&Call::Forget("u1".into())));
        assert_eq!(
            rec.calls(),
            [
                Call::Sync("1".into()),
                Call::Terminating("1".into(), Termination::NodeShutdown { grace }),
                Call::Terminated("1".into()),
                Call::Terminating("1c".into(), Termination::Deleted),
                Call::Terminated("1c".into()),
                Call::Forget("u1".into()),
            ]
        );
    }

    #[test]
    fn removal_from_the_source_terminates_and_pokes_resync() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone(), real_clock());
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
        let workers = PodWorkers::new(rec.clone(), real_clock());
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

    /// Threads of this process with this name.
    fn threads_named(name: &str) -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name)
            })
            .count()
    }

    #[test]
    fn an_idle_pod_holds_no_thread_and_its_deadline_brings_it_back() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        *rec.requeue.lock().unwrap() = Some(Duration::from_secs(30));
        let clock = Arc::new(FakeClock::at(std::time::UNIX_EPOCH));
        let workers = PodWorkers::new(rec.clone(), clock.clone());
        workers.dispatch(PodEvent::Upsert(pod("idlethr1", "1", false)));
        rec.wait_for("first sync", |c| c.contains(&Call::Sync("1".into())));
        let end = Instant::now() + Duration::from_secs(5);
        while threads_named("pod-idlethr1") > 0 {
            assert!(Instant::now() < end, "the worker thread outlived its sync");
            std::thread::sleep(Duration::from_millis(5));
        }
        let syncs = || {
            rec.calls()
                .iter()
                .filter(|x| **x == Call::Sync("1".into()))
                .count()
        };
        // Short of the deadline, nothing; past it, the timer brings the pod back, each time.
        clock.advance(Duration::from_secs(29));
        wait_settled(&workers, &["idlethr1"]);
        assert_eq!(syncs(), 1);
        for n in 2..=3 {
            clock.advance(Duration::from_secs(30));
            rec.wait_for("the requeued sync", |c| {
                c.iter().filter(|x| **x == Call::Sync("1".into())).count() >= n
            });
        }
        assert_eq!(workers.active(), ["idlethr1"]);
    }

    #[test]
    fn a_status_only_update_does_not_sync_but_is_kept() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone(), real_clock());
        workers.dispatch(PodEvent::Upsert(pod("st1", "1", false)));
        rec.wait_for("first sync", |c| c.contains(&Call::Sync("1".into())));
        // Our own status write comes back: same spec, new status and resourceVersion.
        let mut echoed = (*pod("st1", "1", false)).clone();
        echoed.metadata.resource_version = Some("7".into());
        echoed.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        wait_settled(&workers, &["st1"]);
        workers.dispatch(PodEvent::Upsert(Arc::new(echoed)));
        wait_settled(&workers, &["st1"]);
        assert_eq!(
            rec.calls(),
            [Call::Sync("1".into())],
            "a status-only update is no reason to sync"
        );
        // A deletion is: it terminates with the newest object.
        workers.dispatch(PodEvent::Upsert(pod("st1", "1", true)));
        rec.wait_for("forget", |c| c.contains(&Call::Forget("st1".into())));
        assert!(rec
            .calls()
            .contains(&Call::Terminating("1".into(), Termination::Deleted)));
    }

    #[test]
    fn a_readiness_gate_condition_set_by_another_client_syncs_the_pod() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone(), real_clock());
        let gated = |gate_status: Option<&str>| {
            let mut conditions = vec![serde_json::json!({
                "type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady",
                "message": "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
            })];
            if let Some(st) = gate_status {
                conditions.push(serde_json::json!({"type": "example.com/lb", "status": st}));
            }
            Arc::new(
                serde_json::from_value::<Pod>(serde_json::json!({
                    "metadata": {"name": "p", "namespace": "ns", "uid": "rg1", "labels": {"v": "rg1"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                             "readinessGates": [{"conditionType": "example.com/lb"}]},
                    "status": {"phase": "Running", "conditions": conditions,
                               "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0,
                                                      "image": "busybox", "imageID": ""}]}
                }))
                .unwrap(),
            )
        };
        workers.dispatch(PodEvent::Upsert(gated(None)));
        rec.wait_for("first sync", |c| c.contains(&Call::Sync("rg1".into())));
        // A controller sets the gate's condition: Ready must become True, so the pod syncs.
        workers.dispatch(PodEvent::Upsert(gated(Some("True"))));
        rec.wait_for("the reconcile sync", |c| {
            c.iter().filter(|x| **x == Call::Sync("rg1".into())).count() >= 2
        });
    }

    fn static_pod(uid: &str, v: &str) -> Arc<Pod> {
        let mut p = (*pod(uid, v, false)).clone();
        p.metadata.annotations =
            Some([(crate::source::CONFIG_SOURCE.to_string(), "file".to_string())].into());
        Arc::new(p)
    }

    #[test]
    fn a_changed_static_pod_starts_once_the_previous_instance_terminated() {
        let rec = Arc::new(Recorder::default());
        open(&rec);
        let workers = PodWorkers::new(rec.clone(), real_clock());
        workers.dispatch(PodEvent::Upsert(static_pod("old", "old")));
        rec.wait_for("the old instance syncs", |c| {
            c.contains(&Call::Sync("old".into()))
        });

        // The manifest changed: the old UID goes, a new one with the same name comes, while
        // the old one is still stopping.
        *rec.hold_terminating.lock().unwrap() = true;
        workers.dispatch(PodEvent::Remove { uid: "old".into() });
        workers.dispatch(PodEvent::Upsert(static_pod("new", "new")));
        rec.wait_for("the old instance stopping", |c| {
            c.contains(&Call::Terminating("old".into(), Termination::Removed))
        });
        // The new one has tried to start and is waiting, not syncing, while the old one stops.
        wait_settled(&workers, &["new"]);
        assert!(
            !rec.calls().contains(&Call::Sync("new".into())),
            "{:?}",
            rec.calls()
        );
        *rec.hold_terminating.lock().unwrap() = false;
        rec.hold_cv.notify_all();
        rec.wait_for("the new instance syncs", |c| {
            c.contains(&Call::Sync("new".into()))
        });
        let calls = rec.calls();
        let at = |call: &Call| calls.iter().position(|c| c == call).unwrap();
        assert!(
            at(&Call::Terminated("old".into())) < at(&Call::Sync("new".into())),
            "{calls:?}"
        );

        // Pods from the API server with the same name do not wait for each other.
        *rec.hold_terminating.lock().unwrap() = true;
        workers.dispatch(PodEvent::Upsert(pod("api-1", "api-1", false)));
        rec.wait_for("api-1 syncs", |c| c.contains(&Call::Sync("api-1".into())));
        workers.dispatch(PodEvent::Remove {
            uid: "api-1".into(),
        });
        workers.dispatch(PodEvent::Upsert(pod("api-2", "api-2", false)));
        rec.wait_for("api-2 syncs while api-1 is stopping", |c| {
            c.contains(&Call::Sync("api-2".into()))
        });
        *rec.hold_terminating.lock().unwrap() = false;
        rec.hold_cv.notify_all();
    }
}
