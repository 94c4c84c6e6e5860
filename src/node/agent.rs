//! The node agent: registers the Node, renews its Lease and keeps its status current.
//!
//! Owns the I/O around the pure builders of `spec`: create the Node (or adopt it after a 409),
//! re-create it when it was deleted, PUT the Lease every 10 s (re-reading on a conflict), and
//! patch the Node's status when it changed or at least every report frequency, recording the
//! kubelet's Node events (`Starting`, and one per condition a written status changed). Every
//! step is a method that does one round of work, so tests drive it against the fake API server
//! without sleeping; [`spawn`] runs them on a thread. Failures are logged here, once per change of
//! state (an API server that is down is reported when it goes down and when it comes back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;

use super::events::{reason, EventType};
use super::host::{HostFacts, HostProbe};
use super::runtime_state::RuntimeState;
use super::spec::{self, NodeParams, RuntimeReadiness};
use super::NodeError;
use crate::cri::Runtime;
use k8s_openapi::api::core::v1::{Node, NodeCondition};

/// The message of the kubelet's `Starting` event.
const STARTING_MESSAGE: &str = "Starting kubelet.";

/// How often a runtime that stopped answering is asked again, so the node turns Ready within
/// seconds of its return rather than at the next heartbeat.
const RUNTIME_RECHECK: Duration = Duration::from_secs(2);
use crate::kube::{ApiError, KubeApi};

/// Why a registration, status sync or Lease renewal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The host's facts could not be read, or the status could not be built from them.
    #[error(transparent)]
    Host(#[from] NodeError),
    /// The API server refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The Lease needs the Node's uid.
    #[error("the node is not registered yet")]
    NotRegistered,
    /// Another writer kept winning the Lease's optimistic concurrency.
    #[error("lease {0} kept changing under us")]
    LeaseContended(String),
}

/// The state of the node's registration and heartbeats.
pub struct NodeAgent {
    api: Arc<dyn KubeApi>,
    runtime: Arc<dyn Runtime>,
    probe: Box<dyn HostProbe + Send>,
    params: NodeParams,
    report_frequency: Duration,
    node_uid: Option<String>,
    last_report: Option<Timestamp>,
    lease: Option<Lease>,
    /// Woken to sync at once (the shutdown began).
    wake: crossbeam_channel::Receiver<()>,
    /// Once begun, Ready is False (`node is shutting down`); [`NodeAgent::shutdown_notice`]
    /// hands it out.
    notice: ShutdownNotice,
    /// The runtime's answers so far.
    runtime_state: RuntimeState,
    /// The readiness the Node's status was last written with.
    written_readiness: Option<RuntimeReadiness>,
    /// The pressure conditions, from the eviction manager; without one, from the host's usage
    /// against the hard thresholds.
    pressure: Option<PressureSource>,
    /// Where the Node's events go (the kubelet's `Starting` and condition events).
    events: Option<EventSink>,
    /// `Starting` was recorded (once per run, at the first registration or adoption).
    started: bool,
}

/// Records an event about the Node (type, reason, message): the status writer's node events.
pub type EventSink = Box<dyn Fn(EventType, &str, &str) + Send>;

/// Where the Node's MemoryPressure, DiskPressure and PIDPressure come from.
pub type PressureSource = Box<dyn Fn() -> spec::Pressure + Send>;

/// Tells the node agent the node shuts down: its Ready condition turns False, written at once.
/// The flag it sets is shared with whoever else must know (the pod syncer refuses new pods);
/// the default one, for standalone mode, has no agent to wake.
#[derive(Clone, Default)]
pub struct ShutdownNotice {
    flag: Arc<AtomicBool>,
    wake: Option<crossbeam_channel::Sender<()>>,
}

impl ShutdownNotice {
    pub fn begin(&self) {
        self.flag.store(true, Ordering::SeqCst);
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// The flag [`ShutdownNotice::begin`] sets.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}

impl NodeAgent {
    pub fn new(
        api: Arc<dyn KubeApi>,
        runtime: Arc<dyn Runtime>,
        probe: Box<dyn HostProbe + Send>,
        params: NodeParams,
        report_frequency: Duration,
    ) -> NodeAgent {
        let (wake_tx, wake) = crossbeam_channel::bounded(1);
        let notice = ShutdownNotice {
            flag: Arc::default(),
            wake: Some(wake_tx),
        };
        NodeAgent {
            api,
            runtime,
            probe,
            params,
            report_frequency,
            node_uid: None,
            last_report: None,
            lease: None,
            wake,
            notice,
            runtime_state: RuntimeState::default(),
            written_readiness: None,
            pressure: None,
            events: None,
            started: false,
        }
    }

    /// Records the Node's events through `events`: `Starting` once per run, and the
    /// condition events (`NodeHasSufficientMemory`, `NodeHasDiskPressure`, `NodeNotReady`, ...)
    /// when a written status changes a condition, as the kubelet's status setters do.
    pub fn with_events(mut self, events: EventSink) -> NodeAgent {
        self.events = Some(events);
        self
    }

    /// The condition events from `old` to `new`, recorded (all Normal, as the kubelet's).
    fn condition_events(&self, old: Option<&[NodeCondition]>, new: Option<&[NodeCondition]>) {
        let Some(events) = &self.events else {
            return;
        };
        for reason in spec::condition_events(old, new.unwrap_or_default()) {
            let message = spec::node_status_event_message(&self.params.name, reason);
            events(EventType::Normal, reason, &message);
        }
    }

    /// Reports the pressure conditions `source` gives (the eviction manager's).
    pub fn with_pressure(mut self, source: PressureSource) -> NodeAgent {
        self.pressure = Some(source);
        self
    }

    /// The notice that turns this node's Ready False for its shutdown.
    pub fn shutdown_notice(&self) -> ShutdownNotice {
        self.notice.clone()
    }

    /// Asks the runtime for its status and returns the Ready verdict it leads to.
    fn readiness(&mut self) -> RuntimeReadiness {
        let answer = self.runtime.status();
        let now = Instant::now();
        self.runtime_state.observe(answer.as_ref(), now);
        self.runtime_state
            .readiness(now, self.notice.flag.load(Ordering::SeqCst))
    }

    /// Whether the runtime answered last time and leaves nothing to report.
    pub fn runtime_settled(&self) -> bool {
        self.runtime_state.settled(Instant::now())
    }

    /// Asks the runtime again; when the verdict differs from the one last written, writes the
    /// Node's status now (the kubelet's fast status update on a readiness change).
    pub fn recheck_runtime(&mut self) -> Result<(), AgentError> {
        let readiness = self.readiness();
        if self.written_readiness.as_ref() == Some(&readiness) {
            return Ok(());
        }
        self.sync_status()
    }

    /// The Node's uid once registered.
    pub fn node_uid(&self) -> Option<&str> {
        self.node_uid.as_deref()
    }

    fn facts(&self) -> Result<HostFacts, AgentError> {
        Ok(HostFacts::gather(self.probe.as_ref())?)
    }

    /// Creates the Node, or adopts the one that exists (409). A NodeRestriction refusal (403)
    /// is returned as it is: retrying cannot fix it.
    pub fn register(&mut self) -> Result<(), AgentError> {
        let facts = self.facts()?;
        let readiness = self.readiness();
        let now = Timestamp::now();
        let node = spec::node_object(&self.params, &facts, &readiness, now);
        if !self.started {
            self.started = true;
            if let Some(events) = &self.events {
                events(EventType::Normal, reason::STARTING, STARTING_MESSAGE);
            }
        }
        let registered = match self.api.create_node(&node) {
            Ok(n) => {
                log::info!("registered node {}", self.params.name);
                self.last_report = Some(now);
                self.written_readiness = Some(readiness);
                let conditions = |n: &Node| n.status.as_ref().and_then(|s| s.conditions.clone());
                self.condition_events(None, conditions(&node).as_deref());
                n
            }
            Err(ApiError::AlreadyExists { .. }) => {
                let n = self.api.get_node(&self.params.name)?;
                log::info!("node {} exists: adopting it", self.params.name);
                n
            }
            Err(e) => return Err(e.into()),
        };
        self.node_uid = registered.metadata.uid.clone();
        self.lease = None;
        Ok(())
    }

    /// Reads the Node, then patches its status if it changed or the report frequency passed;
    /// re-creates the Node if it was deleted. The comparison is against the Node as the API
    /// server has it, as the kubelet's tryUpdateNodeStatus reads it every round: what another
    /// writer changed — the node lifecycle controller's `Unknown` conditions after the
    /// heartbeats stopped for its grace period (fixture 15a) — is written over at once, not at
    /// the next report.
    pub fn sync_status(&mut self) -> Result<(), AgentError> {
        if self.node_uid.is_none() {
            return self.register();
        }
        let current = match self.api.get_node(&self.params.name) {
            Ok(n) if n.metadata.uid == self.node_uid => n,
            Ok(_) | Err(ApiError::NotFound { .. }) => return self.register_again(),
            Err(e) => return Err(e.into()),
        };
        let facts = self.facts()?;
        let readiness = self.readiness();
        let now = Timestamp::now();
        let old = current.status.unwrap_or_default();
        let new = match &self.pressure {
            Some(p) => {
                spec::node_status_with(Some(&old), &self.params, &facts, &readiness, p(), now)
            }
            None => spec::node_status(Some(&old), &self.params, &facts, &readiness, now),
        };
        let Some(patch) =
            spec::status_report(&old, &new, self.last_report, now, self.report_frequency)?
        else {
            return Ok(());
        };
        match self.api.patch_node_status(&self.params.name, &patch) {
            Ok(_) => {
                self.last_report = Some(now);
                self.written_readiness = Some(readiness);
                self.condition_events(old.conditions.as_deref(), new.conditions.as_deref());
                Ok(())
            }
            Err(ApiError::NotFound { .. }) => self.register_again(),
            Err(e) => Err(e.into()),
        }
    }

    fn register_again(&mut self) -> Result<(), AgentError> {
        log::warn!(
            "node {} was deleted: registering it again",
            self.params.name
        );
        self.node_uid = None;
        self.register()
    }

    /// Renews the Lease (creating it first if needed); a conflict is resolved by re-reading.
    pub fn renew_lease(&mut self) -> Result<(), AgentError> {
        let Some(uid) = self.node_uid.clone() else {
            return Err(AgentError::NotRegistered);
        };
        let name = self.params.name.clone();
        for _ in 0..2 {
            let now = Timestamp::now();
            let current = match self.lease.take() {
                Some(l) => l,
                None => match self.api.get_lease(&name) {
                    Ok(l) => spec::with_node_owner(&l, &name, &uid),
                    Err(ApiError::NotFound { .. }) => {
                        let lease = spec::lease_object(
                            &name,
                            &uid,
                            &name,
                            self.params.lease_duration_seconds,
                            now,
                        );
                        match self.api.create_lease(&lease) {
                            Ok(l) => {
                                self.lease = Some(l);
                                return Ok(());
                            }
                            Err(ApiError::AlreadyExists { .. }) => continue,
                            Err(e) => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                },
            };
            match self.api.update_lease(
                &name,
                &spec::renew(&current, self.params.lease_duration_seconds, now),
            ) {
                Ok(l) => {
                    self.lease = Some(l);
                    return Ok(());
                }
                // Someone else wrote it: read it again and retry once.
                Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AgentError::LeaseContended(name))
    }
}

/// Runs the agent on a thread named `node`: register, then every 10 s sync the status and
/// renew the Lease (each whether or not the other worked); while the runtime is not answering,
/// ask it again every 2 s and write the status as soon as its verdict changes.
pub fn spawn(mut agent: NodeAgent) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("node".into())
        .spawn(move || {
            let mut failing: Option<AgentError> = None;
            let mut next_heartbeat = Instant::now();
            loop {
                let result = if Instant::now() >= next_heartbeat {
                    let status = agent.sync_status();
                    let lease = agent.renew_lease();
                    next_heartbeat = Instant::now()
                        + if status.is_err() && agent.node_uid.is_none() {
                            Duration::from_secs(2)
                        } else {
                            spec::renew_interval(agent.params.lease_duration_seconds)
                        };
                    status.and(lease)
                } else {
                    agent.recheck_runtime()
                };
                match (&result, &failing) {
                    (Err(e), None) => log::warn!("node {}: {e}", agent.params.name),
                    (Ok(()), Some(_)) => {
                        log::info!("node {}: heartbeats work again", agent.params.name);
                    }
                    _ => {}
                }
                failing = result.err();
                let mut pause = next_heartbeat.saturating_duration_since(Instant::now());
                if !agent.runtime_settled() {
                    pause = pause.min(RUNTIME_RECHECK);
                }
                if agent.wake.recv_timeout(pause).is_ok() {
                    // The shutdown began: write the status now.
                    next_heartbeat = Instant::now();
                }
            }
        })
}
