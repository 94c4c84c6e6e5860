//! The prober: runs every container's probes on one timer thread and a small pool of workers,
//! and keeps their results for the pod syncer.
//!
//! Owns the kubelet's probe manager and results caches: a probe per (container instance, kind),
//! created when the syncer [`Prober::track`]s a running container and dropped with it (or with
//! the pod, [`Prober::forget`]); one thread that sleeps until the earliest deadline and hands
//! due probes to [`WORKERS`] threads (never a thread per probe); liveness and readiness held back
//! until the startup probe succeeded; the events (`Unhealthy` "Liveness probe failed: ...",
//! `ProbeWarning`); and a call to the notifier (the pod workers' `poke`) whenever a result that
//! the pod's status or plan depends on changed, so that readiness is written at once and an
//! unhealthy container is restarted at once. Also the prober's start-up jitter
//! ([`startup_jitter`]), the retries of a run that errors, container events on the container's
//! field path, and a terminating pod's probes ([`Prober::stop_liveness_and_startup`]: readiness
//! only). The decisions per probe are `probe::state`'s.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use k8s_openapi::api::core::v1::Pod;

use super::run::{self, Handlers};
use super::spec::{self, Action, Kind, SpecError, Timing};
use super::state::{Outcome, ProbeState};
use crate::clock::Clock;
use crate::report::{EventType, PodReporter};

/// Probe runs in flight at most (each bounded by its timeout).
pub const WORKERS: usize = 4;

/// A running container the syncer wants probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub name: String,
    pub id: String,
    /// When the runtime started it.
    pub started_at: SystemTime,
}

/// Why a container must be killed, and with which grace period if its probe sets one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    /// `failed liveness probe` / `failed startup probe`.
    pub why: String,
    pub grace: Option<Duration>,
}

type Notify = Box<dyn Fn(&str) + Send + Sync>;

struct OneProbe {
    state: ProbeState,
    action: Result<Action, SpecError>,
    busy: bool,
    /// The heap entry that is current (older ones are stale).
    seq: u64,
}

struct Tracked {
    name: String,
    probes: Vec<OneProbe>,
}

impl Tracked {
    fn probe(&self, kind: Kind) -> Option<&OneProbe> {
        self.probes.iter().find(|p| p.state.kind == kind)
    }
    fn probe_mut(&mut self, kind: Kind) -> Option<&mut OneProbe> {
        self.probes.iter_mut().find(|p| p.state.kind == kind)
    }
    /// No startup probe, or it succeeded.
    fn started(&self) -> bool {
        self.probe(Kind::Startup).is_none_or(|p| p.state.result())
    }
}

struct PodProbes {
    pod: Arc<Pod>,
    containers: HashMap<String, Tracked>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    uid: String,
    id: String,
    kind: Kind,
}

#[derive(Default)]
struct Table {
    pods: HashMap<String, PodProbes>,
    heap: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    seq: u64,
}

impl Table {
    fn schedule(&mut self, key: Key) {
        let Some(p) = self
            .pods
            .get_mut(&key.uid)
            .and_then(|pp| pp.containers.get_mut(&key.id))
            .and_then(|t| t.probe_mut(key.kind))
        else {
            return;
        };
        if let Some(due) = p.state.due() {
            self.seq += 1;
            p.seq = self.seq;
            self.heap.push(Reverse((due, self.seq, key)));
        }
    }
}

struct Job {
    key: Key,
    at: Instant,
    action: Result<Action, SpecError>,
    timeout: Duration,
}

struct Inner {
    /// Where the prober reads time (a fake one in tests).
    clock: Arc<dyn Clock>,
    /// When the prober started: probes created within one period of it are spread out.
    started: Instant,
    table: Mutex<Table>,
    wake: Condvar,
    handlers: Arc<dyn Handlers>,
    reporter: Arc<dyn PodReporter>,
    notify: OnceLock<Notify>,
}

/// The probe manager (cheap to clone).
#[derive(Clone)]
pub struct Prober {
    inner: Arc<Inner>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify(&self, uid: &str) {
        if let Some(f) = self.notify.get() {
            f(uid);
        }
    }
}

impl Prober {
    /// Starts the timer thread and the workers, reading time from `clock`.
    pub fn start(
        handlers: Arc<dyn Handlers>,
        reporter: Arc<dyn PodReporter>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Prober> {
        let inner = Arc::new(Inner {
            started: clock.monotonic(),
            clock,
            table: Mutex::new(Table::default()),
            wake: Condvar::new(),
            handlers,
            reporter,
            notify: OnceLock::new(),
        });
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for n in 0..WORKERS {
            let (inner, rx) = (inner.clone(), rx.clone());
            std::thread::Builder::new()
                .name(format!("probe-{n}"))
                .spawn(move || work(&inner, &rx))?;
        }
        let timer = inner.clone();
        std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || tick(&timer, &tx))?;
        Ok(Prober { inner })
    }

    /// Who to tell (with the pod UID) when a result the syncer depends on changed. Set once.
    pub fn set_notify(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.inner.notify.set(Box::new(f));
    }

    /// The handlers, for lifecycle hooks.
    pub fn handlers(&self) -> Arc<dyn Handlers> {
        self.inner.handlers.clone()
    }

    /// Probes exactly these running app containers of the pod (new instances get fresh probes,
    /// instances no longer listed lose theirs and their results).
    pub fn track(&self, pod: &Arc<Pod>, running: &[Running], pod_ip: &str) {
        let uid = crate::pod::uid(pod).to_string();
        let now = self.inner.clock.monotonic();
        let wall = self.inner.clock.now();
        let mut t = self.inner.lock();
        let entry = t.pods.entry(uid.clone()).or_insert_with(|| PodProbes {
            pod: pod.clone(),
            containers: HashMap::new(),
        });
        entry.pod = pod.clone();
        entry
            .containers
            .retain(|id, _| running.iter().any(|r| &r.id == id));
        let mut new = Vec::new();
        let specs = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default();
        for r in running {
            if entry.containers.contains_key(&r.id) {
                continue;
            }
            let Some(c) = specs.iter().find(|c| c.name == r.name) else {
                continue;
            };
            let started = now - wall.duration_since(r.started_at).unwrap_or_default();
            let probes: Vec<OneProbe> = [Kind::Startup, Kind::Liveness, Kind::Readiness]
                .into_iter()
                .filter_map(|kind| {
                    let p = spec::probe_of(c, kind)?;
                    let timing = Timing::of(p);
                    let mut state = ProbeState::new(kind, timing, started, now);
                    let uptime = now.saturating_duration_since(self.inner.started);
                    state.not_before(
                        now + startup_jitter(uptime, timing.period, crate::random::fraction()),
                    );
                    Some(OneProbe {
                        state,
                        action: spec::probe_action(p, c, pod_ip),
                        busy: false,
                        seq: 0,
                    })
                })
                .collect();
            if probes.is_empty() {
                continue;
            }
            for p in &probes {
                new.push(Key {
                    uid: uid.clone(),
                    id: r.id.clone(),
                    kind: p.state.kind,
                });
            }
            entry.containers.insert(
                r.id.clone(),
                Tracked {
                    name: r.name.clone(),
                    probes,
                },
            );
        }
        if entry.containers.is_empty() {
            t.pods.remove(&uid);
        }
        let woke = !new.is_empty();
        for k in new {
            t.schedule(k);
        }
        drop(t);
        if woke {
            self.inner.wake.notify_all();
        }
    }

    /// The pod is terminating: its liveness and startup probes stop and their results go (so no
    /// container is restarted or held unstarted any more), while readiness goes on being probed
    /// until the containers are stopped (the kubelet's `StopLivenessAndStartup`).
    pub fn stop_liveness_and_startup(&self, uid: &str) {
        let mut t = self.inner.lock();
        if let Some(pp) = t.pods.get_mut(uid) {
            for c in pp.containers.values_mut() {
                c.probes.retain(|p| p.state.kind == Kind::Readiness);
            }
            pp.containers.retain(|_, c| !c.probes.is_empty());
        }
    }

    /// Stops probing the pod and drops its results.
    pub fn forget(&self, uid: &str) {
        self.inner.lock().pods.remove(uid);
    }

    /// Readiness by container id, for the containers that have a readiness probe.
    pub fn readiness(&self, uid: &str) -> HashMap<String, bool> {
        let t = self.inner.lock();
        t.pods
            .get(uid)
            .map(|pp| {
                pp.containers
                    .iter()
                    .filter_map(|(id, c)| {
                        c.probe(Kind::Readiness)
                            .map(|p| (id.clone(), p.state.result()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Containers whose startup probe has not succeeded yet.
    pub fn not_started(&self, uid: &str) -> BTreeSet<String> {
        let t = self.inner.lock();
        t.pods
            .get(uid)
            .map(|pp| {
                pp.containers
                    .iter()
                    .filter(|(_, c)| !c.started())
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Containers a liveness or startup probe declared unhealthy.
    pub fn unhealthy(&self, uid: &str) -> HashMap<String, Unhealthy> {
        let t = self.inner.lock();
        let mut out = HashMap::new();
        for (id, c) in t.pods.get(uid).iter().flat_map(|pp| pp.containers.iter()) {
            if let Some(p) = c.probes.iter().find(|p| p.state.failed()) {
                out.insert(
                    id.clone(),
                    Unhealthy {
                        why: format!("failed {} probe", p.state.kind.name().to_lowercase()),
                        grace: p.state.timing.termination_grace,
                    },
                );
            }
        }
        out
    }

    /// Whether the prober has nothing left to do at its clock's present: no probe runs and
    /// none is due. A test's negative check ("no further run") is made once this holds on a
    /// fake clock, so it cannot pass only because the timer had not got to the probe yet.
    #[cfg(test)]
    fn settled(&self) -> bool {
        let now = self.inner.clock.monotonic();
        let t = self.inner.lock();
        t.pods
            .values()
            .flat_map(|pp| pp.containers.values())
            .flat_map(|c| c.probes.iter())
            .all(|p| !p.busy && p.state.due().is_none_or(|due| due > now))
    }

    /// How many probes are tracked (for tests and metrics).
    pub fn probe_count(&self) -> usize {
        let t = self.inner.lock();
        t.pods
            .values()
            .flat_map(|pp| pp.containers.values())
            .map(|c| c.probes.len())
            .sum()
    }
}

/// The kubelet's probe worker start: when the prober itself started less than a period ago (a
/// restart adopting running containers), the first run waits a random `fraction` of the
/// period, so that the probes of all the containers do not fire at once; otherwise none.
pub fn startup_jitter(uptime: Duration, period: Duration, fraction: f64) -> Duration {
    if period > uptime {
        period.mul_f64(fraction.clamp(0.0, 1.0))
    } else {
        Duration::ZERO
    }
}

/// The timer thread: hands due probes to the workers, sleeping until the next deadline.
fn tick(inner: &Inner, jobs: &Sender<Job>) {
    let mut t = inner.lock();
    loop {
        let now = inner.clock.monotonic();
        let next = t.heap.peek().map(|Reverse((at, _, _))| *at);
        match next {
            None => {
                t = inner.wake.wait(t).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            Some(at) if at > now => {
                t = inner
                    .wake
                    .wait_timeout(t, inner.clock.block_for(at))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
                continue;
            }
            Some(_) => {}
        }
        let Some(Reverse((at, seq, key))) = t.heap.pop() else {
            continue;
        };
        let Some(c) = t
            .pods
            .get_mut(&key.uid)
            .and_then(|pp| pp.containers.get_mut(&key.id))
        else {
            continue;
        };
        let started = c.started();
        let Some(p) = c.probe_mut(key.kind) else {
            continue;
        };
        if p.seq != seq || p.busy {
            continue;
        }
        if key.kind != Kind::Startup && !started {
            // Liveness and readiness wait for the startup probe.
            p.state.skip(at, now);
            t.schedule(key);
            continue;
        }
        p.busy = true;
        let job = Job {
            at,
            action: p.action.clone(),
            timeout: p.state.timing.timeout,
            key,
        };
        if jobs.send(job).is_err() {
            return;
        }
    }
}

/// A worker: runs probes and records their outcomes.
fn work(inner: &Inner, jobs: &Receiver<Job>) {
    for job in jobs {
        let outcome = run::with_retries(run::MAX_PROBE_RETRIES, || match &job.action {
            Ok(action) => run::probe(inner.handlers.as_ref(), &job.key.id, action, job.timeout),
            Err(e) => Outcome::Error(e.to_string()),
        });
        let now = inner.clock.monotonic();
        let mut t = inner.lock();
        let Some(pp) = t.pods.get_mut(&job.key.uid) else {
            continue;
        };
        let pod = pp.pod.clone();
        let Some(c) = pp.containers.get_mut(&job.key.id) else {
            continue;
        };
        let name = c.name.clone();
        let Some(p) = c.probe_mut(job.key.kind) else {
            continue;
        };
        p.busy = false;
        let changed = p.state.record(&outcome, job.at, now);
        let failed = p.state.failed();
        t.schedule(job.key.clone());
        drop(t);
        inner.wake.notify_all();

        let kind = job.key.kind.name();
        let event = |kind_: EventType, reason: &str, message: String| {
            inner
                .reporter
                .container_event(&pod, &name, kind_, reason, &message);
        };
        match &outcome {
            Outcome::Failure(out) => event(
                EventType::Warning,
                "Unhealthy",
                format!("{kind} probe failed: {out}"),
            ),
            Outcome::Error(err) => event(
                EventType::Warning,
                "Unhealthy",
                format!("{kind} probe errored: {err}"),
            ),
            Outcome::Warning(out) => event(
                EventType::Warning,
                "ProbeWarning",
                format!("{kind} probe warning: {out}"),
            ),
            Outcome::Success(_) => {}
        }
        if let Some(result) = changed {
            if failed {
                log::info!(
                    "pod {}: container {name} failed {} probe, will be restarted",
                    crate::pod::key(&pod),
                    kind.to_lowercase()
                );
            } else {
                log::debug!(
                    "pod {}: container {name} {} probe result {result}",
                    crate::pod::key(&pod),
                    kind.to_lowercase()
                );
            }
            inner.notify(&job.key.uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::cri::ExecOutput;
    use crate::probe::run::fake::FakeHandlers;
    use k8s_openapi::api::core::v1::PodStatus;

    #[derive(Default)]
    struct Events(Mutex<Vec<(String, String)>>, Mutex<Vec<String>>);
    impl PodReporter for Events {
        fn status(&self, _: &Pod, _: &PodStatus) {}
        fn event(&self, _: &Pod, _: EventType, reason: &str, message: &str) {
            self.0.lock().unwrap().push((reason.into(), message.into()));
        }
        fn container_event(
            &self,
            pod: &Pod,
            container: &str,
            kind: EventType,
            reason: &str,
            message: &str,
        ) {
            self.1.lock().unwrap().push(container.into());
            self.event(pod, kind, reason, message);
        }
        fn deleted(&self, _: &Pod) -> Result<(), crate::kube::ApiError> {
            Ok(())
        }
        fn last_status(&self, _: &str) -> Option<Arc<PodStatus>> {
            None
        }
        fn forget(&self, _: &str) {}
    }

    fn pod(containers: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
                "spec": {"containers": containers}
            }))
            .unwrap(),
        )
    }

    /// A fake clock for a prober: probes run only as far as a test moves it.
    fn clock() -> Arc<FakeClock> {
        Arc::new(FakeClock::at(
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        ))
    }

    /// Moves the clock on in 100 ms steps, giving the prober's threads a moment after each,
    /// until `f` holds (10 s of real time at most).
    fn run_until(clock: &FakeClock, what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            clock.advance(Duration::from_millis(100));
            std::thread::sleep(Duration::from_millis(3));
        }
    }

    /// Waits (in real time, the clock standing still) until the prober has settled.
    fn settle(prober: &Prober) {
        let end = Instant::now() + Duration::from_secs(10);
        while !prober.settled() {
            assert!(Instant::now() < end, "the prober did not settle");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn fail(code: i32, out: &str) -> Result<ExecOutput, crate::cri::CriError> {
        Ok(ExecOutput {
            stdout: out.as_bytes().to_vec(),
            stderr: Vec::new(),
            exit_code: code,
        })
    }

    fn running(clock: &FakeClock, name: &str, id: &str) -> Running {
        Running {
            name: name.into(),
            id: id.into(),
            started_at: clock.now(),
        }
    }

    #[test]
    fn liveness_failures_make_the_container_unhealthy_with_events_and_a_poke() {
        let (h, clock) = (Arc::new(FakeHandlers::default()), clock());
        h.exec
            .lock()
            .unwrap()
            .extend([fail(1, "dead"), fail(1, "dead")]);
        let ev = Arc::new(Events::default());
        let prober = Prober::start(h.clone(), ev.clone(), clock.clone()).unwrap();
        let pokes = Arc::new(Mutex::new(Vec::<String>::new()));
        let p2 = pokes.clone();
        prober.set_notify(move |uid| p2.lock().unwrap().push(uid.into()));
        let p = pod(serde_json::json!([{"name": "c", "livenessProbe": {
            "exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 2,
            "terminationGracePeriodSeconds": 5
        }}]));
        prober.track(&p, &[running(&clock, "c", "id1")], "127.0.0.1");
        // The result is stored, then the event sent and the worker poked: wait for all three.
        run_until(&clock, "unhealthy, the events and the poke", || {
            !prober.unhealthy("u1").is_empty()
                && ev.0.lock().unwrap().len() == 2
                && !pokes.lock().unwrap().is_empty()
        });
        assert_eq!(
            prober.unhealthy("u1")["id1"],
            Unhealthy {
                why: "failed liveness probe".into(),
                grace: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(pokes.lock().unwrap().as_slice(), ["u1"]);
        assert_eq!(
            ev.0.lock().unwrap().as_slice(),
            [
                ("Unhealthy".into(), "Liveness probe failed: dead".into()),
                ("Unhealthy".into(), "Liveness probe failed: dead".into())
            ]
        );
        // On hold: no third run, however far the clock moves.
        clock.advance(Duration::from_secs(5));
        settle(&prober);
        assert_eq!(h.calls.lock().unwrap().len(), 2);
        // The new instance starts healthy; the old one's results are gone.
        prober.track(&p, &[running(&clock, "c", "id2")], "127.0.0.1");
        assert!(prober.unhealthy("u1").is_empty());
        prober.forget("u1");
        assert_eq!(prober.probe_count(), 0);
    }

    #[test]
    fn readiness_waits_for_startup_and_flips_with_a_poke() {
        let (h, clock) = (Arc::new(FakeHandlers::default()), clock());
        // Startup: fail once, then succeed; readiness then succeeds.
        h.exec
            .lock()
            .unwrap()
            .extend([fail(1, "not yet"), fail(0, "")]);
        let ev = Arc::new(Events::default());
        let prober = Prober::start(h.clone(), ev, clock.clone()).unwrap();
        let pokes = Arc::new(Mutex::new(0));
        let p2 = pokes.clone();
        prober.set_notify(move |_| *p2.lock().unwrap() += 1);
        let p = pod(serde_json::json!([{"name": "c",
            "startupProbe": {"exec": {"command": ["start"]}, "periodSeconds": 1, "failureThreshold": 5},
            "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1}
        }]));
        prober.track(&p, &[running(&clock, "c", "id1")], "127.0.0.1");
        assert_eq!(
            prober.not_started("u1"),
            BTreeSet::from(["id1".to_string()])
        );
        assert_eq!(
            prober.readiness("u1"),
            HashMap::from([("id1".to_string(), false)])
        );
        // The result is stored before the worker is poked: wait for both.
        run_until(&clock, "ready and poked twice", || {
            prober.readiness("u1").get("id1") == Some(&true) && *pokes.lock().unwrap() >= 2
        });
        assert!(prober.not_started("u1").is_empty());
        let calls = h.calls.lock().unwrap().clone();
        let first_tcp = calls.iter().position(|c| c.starts_with("tcp")).unwrap();
        assert_eq!(
            calls[..first_tcp],
            ["exec id1 start 1s", "exec id1 start 1s"],
            "no readiness run before the startup probe succeeded"
        );
        assert_eq!(calls[first_tcp], "tcp 127.0.0.1:80");
        assert_eq!(*pokes.lock().unwrap(), 2, "started, then ready");
    }

    #[test]
    fn a_bad_probe_spec_is_reported_as_an_error_and_never_flips() {
        let (h, clock) = (Arc::new(FakeHandlers::default()), clock());
        let ev = Arc::new(Events::default());
        let prober = Prober::start(h.clone(), ev.clone(), clock.clone()).unwrap();
        let p = pod(serde_json::json!([{"name": "c",
            "readinessProbe": {"httpGet": {"port": "missing"}, "periodSeconds": 1}
        }]));
        prober.track(&p, &[running(&clock, "c", "id1")], "127.0.0.1");
        run_until(&clock, "an event", || !ev.0.lock().unwrap().is_empty());
        assert_eq!(
            ev.0.lock().unwrap()[0],
            (
                "Unhealthy".into(),
                "Readiness probe errored: couldn't find port: missing in container c".into()
            )
        );
        assert!(!prober.readiness("u1")["id1"]);
        assert!(h.calls.lock().unwrap().is_empty());
    }

    #[test]
    fn an_erroring_run_is_retried_within_the_period_and_events_name_the_container() {
        let (h, clock) = (Arc::new(FakeHandlers::default()), clock());
        let gone = || {
            Err(crate::cri::CriError::Rpc {
                op: "exec in",
                target: crate::cri::Target::Container("id1".into()),
                code: crate::cri::Code::Unavailable,
                message: "runtime restarting".into(),
            })
        };
        // Period 1: two errors then a success (one result: ready). Period 2: three errors (no
        // result, one event). Period 3: a failure.
        h.exec.lock().unwrap().extend([
            gone(),
            gone(),
            fail(0, ""),
            gone(),
            gone(),
            gone(),
            fail(1, "down"),
        ]);
        let ev = Arc::new(Events::default());
        let prober = Prober::start(h.clone(), ev.clone(), clock.clone()).unwrap();
        let p = pod(serde_json::json!([{"name": "web", "readinessProbe": {
            "exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 1
        }}]));
        prober.track(&p, &[running(&clock, "web", "id1")], "127.0.0.1");
        run_until(&clock, "ready", || {
            prober.readiness("u1").get("id1") == Some(&true)
        });
        assert!(
            ev.0.lock().unwrap().is_empty(),
            "errors that were retried away say nothing"
        );
        run_until(&clock, "unready", || {
            prober.readiness("u1").get("id1") == Some(&false)
        });
        assert_eq!(h.calls.lock().unwrap().len(), 7);
        let events = ev.0.lock().unwrap().clone();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events[0].1.starts_with("Readiness probe errored: "),
            "{events:?}"
        );
        assert_eq!(
            events[1],
            ("Unhealthy".into(), "Readiness probe failed: down".into())
        );
        assert_eq!(ev.1.lock().unwrap().as_slice(), ["web", "web"]);
    }

    #[test]
    fn first_runs_are_spread_over_a_period_only_right_after_the_prober_started() {
        let period = Duration::from_secs(10);
        assert_eq!(
            startup_jitter(Duration::from_secs(1), period, 0.25),
            Duration::from_millis(2500)
        );
        assert_eq!(
            startup_jitter(Duration::from_secs(10), period, 0.25),
            Duration::ZERO,
            "a prober running for a period or more starts probes at once"
        );
        assert!(startup_jitter(Duration::ZERO, period, 1.5) <= period);
        let samples: Vec<f64> = (0..64).map(|_| crate::random::fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        assert!(samples.iter().any(|f| *f != samples[0]));
    }

    #[test]
    fn a_terminating_pod_keeps_its_readiness_probe_and_loses_liveness_and_startup() {
        let (h, clock) = (Arc::new(FakeHandlers::default()), clock());
        let ev = Arc::new(Events::default());
        let prober = Prober::start(h.clone(), ev.clone(), clock.clone()).unwrap();
        let p = pod(serde_json::json!([{"name": "c",
            "startupProbe": {"exec": {"command": ["start"]}, "periodSeconds": 1, "failureThreshold": 30},
            "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 1},
            "readinessProbe": {"exec": {"command": ["ready"]}, "periodSeconds": 1}
        }, {"name": "plain", "livenessProbe": {"exec": {"command": ["live"]}, "periodSeconds": 1}}]));
        // The startup probe keeps failing: not started, not ready.
        h.exec
            .lock()
            .unwrap()
            .extend((0..100).map(|_| fail(1, "no")));
        prober.track(
            &p,
            &[running(&clock, "c", "id1"), running(&clock, "plain", "id2")],
            "127.0.0.1",
        );
        assert_eq!(prober.probe_count(), 4);
        prober.stop_liveness_and_startup("u1");
        assert_eq!(prober.probe_count(), 1, "only c's readiness probe is left");
        assert!(
            prober.not_started("u1").is_empty(),
            "no startup probe: started"
        );
        assert!(prober.unhealthy("u1").is_empty());
        // Readiness now runs (no startup gate) and flips with its outcomes.
        h.exec.lock().unwrap().clear();
        run_until(&clock, "ready", || {
            prober.readiness("u1").get("id1") == Some(&true)
        });
        assert!(h
            .calls
            .lock()
            .unwrap()
            .iter()
            .any(|c| c.contains(" ready ")));
    }
}
