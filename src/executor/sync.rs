//! The runtime syncer: performs what the planner decided, through the CRI [`Runtime`].
//!
//! Owns the [`PodSyncer`] that the pod workers call: reading a pod's sandboxes and containers
//! back from the runtime (its labels are the truth, also after a restart of the daemon), running
//! the plan (kill, create sandbox, pull, create and start containers, with the kubelet's reasons
//! and events for every failure), reporting the status right after acting, stopping a pod within
//! its grace period (readiness still probed and written meanwhile), tearing a finished pod's
//! volumes down, and cleaning up after it. With a prober it also runs the containers'
//! postStart and preStop hooks around start and stop (`probe::hooks`), tells the prober which
//! containers run, and feeds its results (readiness, started, unhealthy) to the plan and
//! status. Containers get the service environment variables from a [`ServiceCache`] when there
//! is an API server. The decisions are made by the pure modules
//! (`plan`, `status`, `translate`); this file sequences the calls and is where their failures are
//! logged, once, with the pod key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};

use super::cache::RuntimeCache;
use super::cgroups;
use super::volumes::VolumeManager;
use super::worker::{PodSyncer, SyncResult, Termination};
use crate::clock::{Clock, RealClock};
use crate::cri::{api, CriError, Runtime};
use crate::kube::reflector::ServiceCache;
use crate::kube::KubeApi;
use crate::metrics;
use crate::pod::backoff::Backoff;
use crate::pod::labels::{self, ContainerInfo, SandboxInfo};
use crate::pod::observed::{
    ContainerKind, ObservedContainer, ObservedPod, ObservedSandbox, RunState,
};
use crate::pod::plan::{self, Actions, KillReason, PlanInput, Start};
use crate::pod::status::{self, StatusInput, Waiting};
use crate::pod::translate::{self, ContainerInputs, ImageUser, NodeContext};
use crate::pod::{env, tag, uid};
use crate::report::{EventType, PodReporter};
use crate::volume::{NodeAllocatable, Objects};

/// The kubelet never stops a container with less than this grace period.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// A pod with nothing pending is synced again after this long even without news.
const RESYNC: Duration = Duration::from_secs(60);
/// How soon to retry after the runtime failed us.
const RETRY: Duration = Duration::from_secs(2);
/// While a pod's containers are being stopped, how often its readiness is looked at (a change
/// is reported at once, as the kubelet's readiness results reach the status manager).
const READINESS_POLL: Duration = Duration::from_millis(100);

/// Where the syncer keeps what it writes on the host.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Per-pod directory root: `<pods_dir>/<uid>/etc-hosts`, termination-log files.
    pub pods_dir: PathBuf,
}

/// A resolved environment, in order.
type Env = Vec<(String, String)>;

/// What a pod worker remembers between syncs (the runtime remembers the rest).
#[derive(Default)]
struct PodState {
    backoff: Backoff,
    image_backoff: Backoff,
    /// When each image last failed to pull.
    image_failures: HashMap<String, SystemTime>,
    waiting: HashMap<String, Waiting>,
    pod_failed: bool,
    /// Evicted (an emptyDir over its sizeLimit): the pod's status reason and message.
    evicted: Option<String>,
    /// Stopped for the node's shutdown: Failed, `Terminated`, DisruptionTarget.
    node_shutdown: bool,
    /// Refused at admission (the node shuts down: `NodeShutdown`; it is under pressure:
    /// `Evicted`): Failed with this reason and message, never started.
    refused: Option<(&'static str, String)>,
    /// The first sync of this pod, and whether its start duration was recorded.
    first_seen: Option<Instant>,
    start_recorded: bool,
    /// The last start failure logged per container, and how often it came again since.
    start_failures: HashMap<String, (String, u32)>,
}

/// The [`PodSyncer`] over a CRI runtime.
pub struct RuntimeSyncer {
    runtime: Arc<dyn Runtime>,
    reporter: Arc<dyn PodReporter>,
    node: NodeContext,
    paths: Paths,
    host_ips: Vec<String>,
    runtime_name: String,
    states: Mutex<HashMap<String, Arc<Mutex<PodState>>>>,
    /// The failures last logged per pod: a retried failure is logged once.
    repeats: Mutex<HashMap<String, super::repeats::Repeats>>,
    /// The last observation of each pod, while the relister confirms it.
    cache: Arc<RuntimeCache>,
    /// The API server, for imagePullSecrets (None in standalone mode).
    api: Option<Arc<dyn KubeApi>>,
    /// The pods' volumes (None: pods with volume mounts are refused).
    volumes: Option<Arc<VolumeManager>>,
    /// Probes and lifecycle hooks (None: neither runs).
    prober: Option<crate::probe::Prober>,
    /// The cluster's services, for the service environment variables (None: no API server).
    services: Option<ServiceCache>,
    /// Keep a finished pod's volumes until it is deleted (--keep-terminated-pod-volumes).
    keep_terminated_volumes: bool,
    /// Where the syncer reads the time: plans, back-offs, statuses, durations.
    clock: Arc<dyn Clock>,
    /// The node shuts down: pods not started yet are refused (`NodeShutdown`).
    shutting_down: Arc<std::sync::atomic::AtomicBool>,
    /// Where pod cgroups are made (`/sys/fs/cgroup`); `None`: left to the runtime.
    cgroup_fs: Option<PathBuf>,
    /// The eviction manager's requests and pressure.
    eviction: Option<Arc<crate::eviction::Shared>>,
}

/// A container start that did not happen, as the kubelet reports it.
struct StartFailure {
    reason: &'static str,
    message: String,
}

/// A runtime error as Go's gRPC status prints it (`rpc error: code = NotFound desc = ...`), the
/// text the kubelet puts in events and waiting messages.
fn rpc_error(e: &crate::cri::CriError) -> String {
    match e.code() {
        Some(code) => format!("rpc error: code = {code} desc = {}", e.message()),
        None => e.message().to_string(),
    }
}

/// Go's `Duration.Truncate(time.Millisecond).String()`: `523ms`, `1.5s`, `2m3.004s`.
fn go_duration_ms(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (h, m, s, frac) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        secs.push_str(format!(".{frac:03}").trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

fn failure(reason: &'static str, message: impl Into<String>) -> StartFailure {
    StartFailure {
        reason,
        message: message.into(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The grace period to stop the pod's containers with.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(secs.max(0) as u64).max(MIN_GRACE)
}

fn find_container<'a>(pod: &'a Pod, name: &str, kind: ContainerKind) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    match kind {
        ContainerKind::Init => spec
            .init_containers
            .as_ref()?
            .iter()
            .find(|c| c.name == name),
        ContainerKind::App => spec.containers.iter().find(|c| c.name == name),
    }
}

fn observed_sandbox(info: SandboxInfo, status: Option<&api::PodSandboxStatus>) -> ObservedSandbox {
    let network = status.and_then(|s| s.network.as_ref());
    let host_network = status
        .and_then(|s| s.linux.as_ref())
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .is_some_and(|o| o.network.enum_value_or_default() == api::NamespaceMode::NODE);
    ObservedSandbox {
        ready: info.state == api::PodSandboxState::SANDBOX_READY,
        id: info.id,
        attempt: info.attempt,
        created_at: info.created_at,
        ip: network.map(|n| n.ip.clone()).unwrap_or_default(),
        additional_ips: network
            .map(|n| n.additional_ips.iter().map(|i| i.ip.clone()).collect())
            .unwrap_or_default(),
        host_network,
    }
}

fn observed_container(info: ContainerInfo) -> ObservedContainer {
    let state = match info.state {
        api::ContainerState::CONTAINER_CREATED => RunState::Created,
        api::ContainerState::CONTAINER_RUNNING => RunState::Running,
        api::ContainerState::CONTAINER_EXITED => RunState::Exited,
        _ => RunState::Unknown,
    };
    ObservedContainer {
        id: info.id,
        sandbox_id: info.sandbox_id,
        name: info.name,
        kind: info.kind,
        restart_count: info.restart_count,
        hash: format!("{:x}", info.hash),
        state,
        exit_code: info.exit_code,
        reason: info.reason,
        message: info.message,
        created_at: info.created_at,
        started_at: info.started_at,
        finished_at: info.finished_at,
        image: info.image,
        image_ref: info.image_id,
        log_path: info.log_path,
    }
}

impl RuntimeSyncer {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        reporter: Arc<dyn PodReporter>,
        node: NodeContext,
        paths: Paths,
        host_ips: Vec<String>,
        runtime_name: &str,
    ) -> RuntimeSyncer {
        RuntimeSyncer {
            runtime,
            reporter,
            node,
            paths,
            host_ips,
            runtime_name: runtime_name.to_string(),
            states: Mutex::new(HashMap::new()),
            repeats: Mutex::default(),
            cache: Arc::new(RuntimeCache::new()),
            api: None,
            volumes: None,
            prober: None,
            services: None,
            keep_terminated_volumes: false,
            clock: Arc::new(RealClock),
            shutting_down: Arc::default(),
            cgroup_fs: None,
            eviction: None,
        }
    }

    /// Evicts the pods the eviction manager asks for, and refuses pods under pressure as its
    /// admission does.
    pub fn with_eviction(mut self, shared: Arc<crate::eviction::Shared>) -> RuntimeSyncer {
        self.eviction = Some(shared);
        self
    }

    /// Makes each pod's cgroup with its pod-level settings under `fs` (`/sys/fs/cgroup`) before
    /// its sandbox starts; without it, the runtime makes the cgroup parent bare.
    pub fn with_pod_cgroups(mut self, fs: impl Into<PathBuf>) -> RuntimeSyncer {
        self.cgroup_fs = Some(fs.into());
        self
    }

    /// Refuses new pods while `flag` says the node shuts down.
    pub fn with_shutdown_flag(mut self, flag: Arc<std::sync::atomic::AtomicBool>) -> RuntimeSyncer {
        self.shutting_down = flag;
        self
    }

    /// Reads time from `clock` (a fake one in tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> RuntimeSyncer {
        self.clock = clock;
        self
    }

    /// Keeps the volumes of pods that finished until they are deleted.
    pub fn keep_terminated_pod_volumes(mut self, keep: bool) -> RuntimeSyncer {
        self.keep_terminated_volumes = keep;
        self
    }

    /// Gives containers the service environment variables of these services (the cache must be
    /// filled by a service reflector; until its first list, API pods' containers do not start).
    pub fn with_services(mut self, services: ServiceCache) -> RuntimeSyncer {
        self.services = Some(services);
        self
    }

    /// Sets up pods' volumes with this manager before their containers start, and removes
    /// them after the pods are gone.
    pub fn with_volumes(mut self, volumes: Arc<VolumeManager>) -> RuntimeSyncer {
        self.volumes = Some(volumes);
        self
    }

    /// A container that could not be started: the kubelet's `Failed` warning event with
    /// "Error: <message>", and the waiting reason for its status.
    fn start_error(
        &self,
        pod: &Pod,
        c: &Container,
        reason: &'static str,
        msg: String,
    ) -> StartFailure {
        self.reporter.container_event(
            pod,
            &c.name,
            EventType::Warning,
            "Failed",
            &format!("Error: {msg}"),
        );
        failure(reason, msg)
    }

    /// A container's environment and mounts; failures are CreateContainerConfigError, with the
    /// kubelet's `Failed` event.
    fn env_and_mounts(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ips: &[String],
    ) -> Result<(Env, Vec<api::Mount>), StartFailure> {
        let config_error =
            |msg: String| self.start_error(pod, c, "CreateContainerConfigError", msg);
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let (cms, secrets) = env::references(c);
        let objects = Objects::fetch(
            self.api.as_deref(),
            ns,
            cms.iter().map(String::as_str),
            secrets.iter().map(String::as_str),
        );
        let node = self.volumes.as_ref().map_or(
            NodeAllocatable {
                memory: self.node.memory_capacity,
                ..NodeAllocatable::default()
            },
            |v| v.node(),
        );
        let snapshot = self.services.as_ref().map(ServiceCache::snapshot);
        let services = match &snapshot {
            None => env::Services::NoApiServer,
            Some(None) => env::Services::NotSynced,
            Some(Some(list)) => env::Services::Synced(list),
        };
        let resolved = env::resolve(
            pod,
            c,
            &self.node.node_name,
            pod_ips,
            &self.host_ips,
            &env::EnvSources {
                objects: &objects,
                node: &node,
                services,
            },
        )
        .map_err(|e| config_error(e.to_string()))?;
        for w in &resolved.warnings {
            self.reporter.event(
                pod,
                EventType::Warning,
                "InvalidEnvironmentVariableNames",
                w,
            );
        }
        let mounts = match &self.volumes {
            Some(v) => {
                let privileged = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false);
                v.mounts(pod, c, &resolved.env, privileged)
                    .map_err(|e| config_error(e.to_string()))?
            }
            None if c.volume_mounts.as_ref().is_some_and(|m| !m.is_empty()) => {
                return Err(failure(
                    "CreateContainerConfigError",
                    "volumes are not supported by this version of vk-cri yet",
                ));
            }
            None => Vec::new(),
        };
        Ok((resolved.env, mounts))
    }

    /// Runs the containers' probes and lifecycle hooks with this prober.
    pub fn with_prober(mut self, prober: crate::probe::Prober) -> RuntimeSyncer {
        self.prober = Some(prober);
        self
    }

    /// The pod's IP as probes and hooks see it: the node's for a host-network pod.
    fn pod_ip(&self, pod: &Pod, observed: &ObservedPod) -> String {
        if crate::pod::host_network(pod) {
            self.host_ips.first().cloned().unwrap_or_default()
        } else {
            observed
                .latest_sandbox()
                .map(|s| s.ip.clone())
                .unwrap_or_default()
        }
    }

    /// Stops one running container: its preStop hook first, then StopContainer with what is
    /// left of `grace`.
    fn stop_container(
        &self,
        pod: &Pod,
        c: &ObservedContainer,
        pod_ip: &str,
        grace: Duration,
    ) -> Result<(), CriError> {
        let grace = match (&self.prober, find_container(pod, &c.name, c.kind)) {
            (Some(p), Some(spec)) if c.is_running() => crate::probe::hooks::pre_stop(
                p.handlers(),
                self.reporter.as_ref(),
                pod,
                spec,
                &c.id,
                pod_ip,
                grace,
            ),
            _ => grace,
        };
        self.runtime.stop_container(&c.id, grace)
    }

    /// Reads imagePullSecrets from this API server.
    pub fn with_api(mut self, api: Arc<dyn KubeApi>) -> RuntimeSyncer {
        self.api = Some(api);
        self
    }

    /// Registry credentials for `image` from the pod's imagePullSecrets, most specific first.
    /// Secrets that cannot be read or used are reported, and the pull goes ahead without them,
    /// as with the kubelet.
    fn pull_credentials(&self, pod: &Pod, image: &str) -> Vec<crate::cri::PullAuth> {
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.as_ref())
            .map(|refs| {
                refs.iter()
                    .map(|r| r.name.clone())
                    .filter(|n| !n.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() {
            return Vec::new();
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut secrets = Vec::new();
        let mut missing = Vec::new();
        for name in &names {
            match self.api.as_ref().map(|api| api.get_secret(ns, name)) {
                Some(Ok(s)) => secrets.push(s),
                _ => missing.push(name.clone()),
            }
        }
        if !missing.is_empty() {
            self.reporter.event(
                pod,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &format!(
                    "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                    missing.join(", ")
                ),
            );
        }
        let (creds, problems) = crate::pod::pull_secrets::credentials_for(image, &secrets);
        for p in problems {
            self.reporter.event(
                pod,
                EventType::Warning,
                "FailedToRetrieveImagePullSecret",
                &p.to_string(),
            );
        }
        creds
    }

    fn state(&self, uid: &str) -> Arc<Mutex<PodState>> {
        lock(&self.states)
            .entry(uid.to_string())
            .or_default()
            .clone()
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.paths.pods_dir.join(uid)
    }

    /// The cache the relister must confirm observations to (`pleg::spawn`).
    pub fn runtime_cache(&self) -> Arc<RuntimeCache> {
        self.cache.clone()
    }

    /// Everything the runtime has for the pod with this UID (on this node), as the last
    /// relist confirmed it, or read now.
    fn observe_cached(&self, uid: &str) -> Result<ObservedPod, CriError> {
        match self.cache.confirmed(uid, self.clock.monotonic()) {
            Some(o) => Ok(o),
            None => self.observe(uid),
        }
    }

    /// Everything the runtime has for the pod with this UID (on this node), read now.
    pub fn observe(&self, uid: &str) -> Result<ObservedPod, CriError> {
        let selector = labels::pod_selector(&self.node.node_name, uid);
        let mut observed = ObservedPod::default();
        for sb in self.runtime.list_pod_sandboxes(&selector)? {
            let Ok(info) = SandboxInfo::from_sandbox(&sb) else {
                continue;
            };
            let status = match self.runtime.pod_sandbox_status(&sb.id) {
                Ok(s) => Some(s),
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            observed
                .sandboxes
                .push(observed_sandbox(info, status.as_ref()));
        }
        for c in self.runtime.list_containers(&selector, None)? {
            let status = match self.runtime.container_status(&c.id) {
                Ok(s) => s,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            };
            if let Ok(info) = ContainerInfo::from_runtime(&c, Some(&status)) {
                observed.containers.push(observed_container(info));
            }
        }
        observed.sort();
        self.cache.store(uid, &observed);
        Ok(observed)
    }

    fn hashes(pod: &Pod) -> HashMap<String, String> {
        let Some(spec) = pod.spec.as_ref() else {
            return HashMap::new();
        };
        spec.init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .filter_map(|c| {
                labels::container_hash(c)
                    .ok()
                    .map(|h| (c.name.clone(), format!("{h:x}")))
            })
            .collect()
    }

    /// The pod reached Succeeded or Failed: in the API server's copy or in our last status.
    fn is_terminal(&self, pod: &Pod) -> bool {
        let terminal =
            |s: Option<&PodStatus>| status::is_terminal(s.and_then(|s| s.phase.as_deref()));
        terminal(pod.status.as_ref()) || terminal(self.reporter.last_status(uid(pod)).as_deref())
    }

    fn report_status(
        &self,
        pod: &Pod,
        observed: &ObservedPod,
        st: &PodState,
        terminal: bool,
    ) -> PodStatus {
        let old = self
            .reporter
            .last_status(uid(pod))
            .or_else(|| pod.status.clone().map(Arc::new));
        let is_static = crate::source::is_static(pod);
        let status = status::pod_status(&StatusInput {
            pod,
            observed,
            old: old.as_deref(),
            waiting: &st.waiting,
            readiness: &self
                .prober
                .as_ref()
                .map(|p| p.readiness(uid(pod)))
                .unwrap_or_default(),
            not_started: &self
                .prober
                .as_ref()
                .map(|p| p.not_started(uid(pod)))
                .unwrap_or_default(),
            host_ips: &self.host_ips,
            runtime_name: &self.runtime_name,
            pod_failed: st.pod_failed,
            is_static,
            terminal,
            now: self.clock.timestamp(),
        });
        let mut status = status;
        if let Some(msg) = &st.evicted {
            status =
                crate::pod::shutdown::killed_status(status, "Evicted", msg, self.clock.timestamp());
        }
        if st.node_shutdown {
            status = crate::pod::shutdown::stopped_status(status, self.clock.timestamp());
        } else if let Some((reason, message)) = &st.refused {
            status = crate::pod::shutdown::rejected_status(
                old.as_deref().or(pod.status.as_ref()),
                self.clock.timestamp(),
                reason,
                message,
            );
        }
        self.reporter.status(pod, &status);
        status
    }

    /// Stops every running container of the pod (in parallel, within `grace`) and its sandboxes.
    fn kill_pod(&self, pod: &Pod, observed: &ObservedPod, grace: Duration) -> Result<(), CriError> {
        let running: Vec<&ObservedContainer> = observed
            .containers
            .iter()
            .filter(|c| {
                matches!(
                    c.state,
                    RunState::Running | RunState::Created | RunState::Unknown
                )
            })
            .collect();
        let pod_ip = self.pod_ip(pod, observed);
        let pod_ip = pod_ip.as_str();
        let results: Vec<Result<(), CriError>> = std::thread::scope(|s| {
            let handles: Vec<_> = running
                .iter()
                .map(|c| {
                    self.reporter.container_event(
                        pod,
                        &c.name,
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {}", c.name),
                    );
                    s.spawn(move || self.stop_container(pod, c, pod_ip, grace))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Ok(())))
                .collect()
        });
        for r in results {
            match r {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        for sb in observed.sandboxes.iter().filter(|s| s.ready) {
            match self.runtime.stop_pod_sandbox(&sb.id) {
                Err(e) if !e.is_not_found() => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes sure the container's image is there; the image reference to run.
    /// The image manager's `EnsureImageExists` and the `Error: REASON` event the kubelet's
    /// `startContainer` records after any failure of it.
    fn ensure_image(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_config: &api::PodSandboxConfig,
        st: &mut PodState,
    ) -> Result<(String, ImageUser), StartFailure> {
        self.ensure_image_exists(pod, c, sandbox_config, st)
            .inspect_err(|f| {
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {}", f.reason),
                );
            })
    }

    fn ensure_image_exists(
        &self,
        pod: &Pod,
        c: &Container,
        sandbox_config: &api::PodSandboxConfig,
        st: &mut PodState,
    ) -> Result<(String, ImageUser), StartFailure> {
        let image = c.image.clone().unwrap_or_default();
        if image.trim().is_empty() {
            return Err(failure("InvalidImageName", "the container has no image"));
        }
        let policy = c
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| crate::pod::defaults::default_pull_policy(&image).to_string());
        let present = self.runtime.image_status(&image).map_err(|e| {
            let msg = format!("Failed to inspect image \"{image}\": {}", rpc_error(&e));
            self.reporter
                .container_event(pod, &c.name, EventType::Warning, "InspectFailed", &msg);
            failure("ImageInspectError", msg)
        })?;
        match (policy.as_str(), &present) {
            ("Never", None) => {
                let msg =
                    format!("Container image \"{image}\" is not present with pull policy of Never");
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "ErrImageNeverPull",
                    &msg,
                );
                return Err(failure("ErrImageNeverPull", msg));
            }
            ("Never" | "IfNotPresent", Some(img)) => {
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
                return Ok((img.id.clone(), ImageUser::from_image(Some(img))));
            }
            _ => {}
        }
        let now = self.clock.now();
        if let Some(failed_at) = st.image_failures.get(&image) {
            if st
                .image_backoff
                .in_backoff_since(&image, *failed_at, now)
                .is_some()
            {
                let msg = format!("Back-off pulling image \"{image}\"");
                self.reporter
                    .container_event(pod, &c.name, EventType::Normal, "BackOff", &msg);
                return Err(failure("ImagePullBackOff", msg));
            }
        }
        self.reporter.container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Pulling",
            &format!("Pulling image \"{image}\""),
        );
        let started = self.clock.monotonic();
        let creds = self.pull_credentials(pod, &image);
        let attempts: Vec<Option<&crate::cri::PullAuth>> = if creds.is_empty() {
            vec![None]
        } else {
            creds.iter().map(Some).collect()
        };
        let mut pulled = self
            .runtime
            .pull_image(&image, attempts[0], Some(sandbox_config));
        for auth in &attempts[1..] {
            if pulled.is_ok() {
                break;
            }
            pulled = self.runtime.pull_image(&image, *auth, Some(sandbox_config));
        }
        let pulled_in = self.clock.monotonic().saturating_duration_since(started);
        match pulled {
            Ok(image_ref) => {
                st.image_failures.remove(&image);
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Normal,
                    "Pulled",
                    &format!(
                        "Successfully pulled image \"{image}\" in {} ({} including waiting)",
                        go_duration_ms(pulled_in),
                        go_duration_ms(self.clock.monotonic().saturating_duration_since(started))
                    ),
                );
                let img = self.runtime.image_status(&image).ok().flatten();
                Ok((image_ref, ImageUser::from_image(img.as_ref())))
            }
            Err(e) => {
                st.image_backoff.next(&image, now);
                st.image_failures.insert(image.clone(), now);
                let msg = rpc_error(&e);
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Warning,
                    "Failed",
                    &format!("Failed to pull image \"{image}\": {msg}"),
                );
                // The waiting message is the runtime's error itself (`evalCRIPullErr`).
                Err(failure("ErrImagePull", msg))
            }
        }
    }

    /// Pulls, creates and starts one container instance.
    fn start_container(
        &self,
        pod: &Pod,
        sandbox_id: &str,
        sandbox_config: &api::PodSandboxConfig,
        pod_ips: &[String],
        start: &Start,
        st: &mut PodState,
    ) -> Result<(), StartFailure> {
        let Some(c) = find_container(pod, &start.name, start.kind) else {
            return Err(failure(
                "CreateContainerConfigError",
                "container not in spec",
            ));
        };
        let (image_ref, image_user) = self.ensure_image(pod, c, sandbox_config, st)?;
        let (env, mounts) = self.env_and_mounts(pod, c, pod_ips)?;
        let pod_dir = self.pod_dir(uid(pod));
        let termination_log = pod_dir
            .join("containers")
            .join(&c.name)
            .join(format!("{}-termination-log", start.restart_count));
        write_file(&termination_log, b"", 0o666)
            .map_err(|e| failure("CreateContainerConfigError", e))?;
        let inputs = ContainerInputs {
            env,
            mounts,
            etc_hosts_path: (!crate::pod::host_network(pod))
                .then(|| pod_dir.join("etc-hosts").to_string_lossy().into_owned()),
            termination_log_path: Some(termination_log.to_string_lossy().into_owned()),
            image_ref,
            image_user,
        };
        let config = translate::container_config(
            pod,
            c,
            start.kind,
            start.restart_count,
            &inputs,
            &self.node,
        )
        .map_err(|e| failure("CreateContainerConfigError", e.to_string()))?;
        if let Some(exit) = start.previous_exit {
            let hash = labels::container_hash(c)
                .map(|h| format!("{h:x}"))
                .unwrap_or_default();
            st.backoff.next(&plan::backoff_key(&c.name, &hash), exit);
        }
        // Counted as the kubelet counts them: every attempt, and every failed create or start
        // with its gRPC code.
        let container_type = match start.kind {
            ContainerKind::Init => "init_container",
            ContainerKind::App => "container",
        };
        metrics::STARTED_CONTAINERS.inc(&[container_type]);
        let start_failed = |e: &CriError| {
            let code = e.code().unwrap_or(crate::cri::Code::Unknown).to_string();
            metrics::STARTED_CONTAINERS_ERRORS.inc(&[&code, container_type]);
        };
        let id = self
            .runtime
            .create_container(sandbox_id, &config, sandbox_config)
            .map_err(|e| {
                start_failed(&e);
                self.start_error(pod, c, "CreateContainerError", e.message().to_string())
            })?;
        self.reporter.container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Created",
            &format!("Created container {}", c.name),
        );
        self.runtime.start_container(&id).map_err(|e| {
            start_failed(&e);
            self.start_error(pod, c, "RunContainerError", e.message().to_string())
        })?;
        self.reporter.container_event(
            pod,
            &c.name,
            EventType::Normal,
            "Started",
            &format!("Started container {}", c.name),
        );
        if let Some(p) = &self.prober {
            let pod_ip = pod_ips.first().map(String::as_str).unwrap_or_default();
            let hook = crate::probe::hooks::post_start(
                p.handlers().as_ref(),
                self.reporter.as_ref(),
                pod,
                c,
                &id,
                pod_ip,
            );
            if let Err(msg) = hook {
                self.reporter.container_event(
                    pod,
                    &c.name,
                    EventType::Normal,
                    "Killing",
                    "FailedPostStartHook",
                );
                let grace = crate::probe::hooks::pre_stop(
                    p.handlers(),
                    self.reporter.as_ref(),
                    pod,
                    c,
                    &id,
                    pod_ip,
                    grace_period(pod),
                );
                if let Err(e) = self.runtime.stop_container(&id, grace) {
                    log::warn!("pod {}: {e}", tag(pod));
                }
                return Err(failure("PostStartHookError", msg.to_string()));
            }
        }
        Ok(())
    }

    /// The CRI runtime handler of the pod's `runtimeClassName`: its RuntimeClass's `handler`,
    /// read when the sandbox is made (the kubelet's runtime class manager; without an API
    /// server, as the standalone kubelet, none is looked up and the default is used).
    fn runtime_handler(&self, pod: &Pod) -> Result<String, String> {
        let name = pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref())
            .filter(|n| !n.is_empty());
        let (Some(name), Some(api)) = (name, &self.api) else {
            return Ok(String::new());
        };
        match api.get_runtime_class(name) {
            Ok(rc) => Ok(rc.handler),
            // The lister's NotFound, as the kubelet's message has it.
            Err(e) if e.status_code() == Some(404) => {
                Err(format!("runtimeclass.node.k8s.io {name:?} not found"))
            }
            Err(e) => Err(format!("failed to lookup RuntimeClass {name}: {e}")),
        }
    }

    /// Creates the pod's sandbox (attempt `attempt`) with its log directory and hosts file.
    fn create_sandbox(
        &self,
        pod: &Pod,
        attempt: u32,
    ) -> Result<(String, api::PodSandboxConfig, Vec<String>), String> {
        let config =
            translate::sandbox_config(pod, &self.node, attempt).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&config.log_directory).map_err(|e| {
            format!(
                "failed to create log directory {}: {e}",
                config.log_directory
            )
        })?;
        let handler = self.runtime_handler(pod)?;
        metrics::STARTED_PODS.inc(&[]);
        let id = self
            .runtime
            .run_pod_sandbox(&config, &handler)
            .map_err(|e| {
                metrics::STARTED_PODS_ERRORS.inc(&[]);
                // The kubelet's event carries the runtime's status as Go prints it.
                rpc_error(&e)
            })?;
        let ips: Vec<String> = match self.runtime.pod_sandbox_status(&id) {
            Ok(s) => s
                .network
                .as_ref()
                .map(|n| {
                    std::iter::once(n.ip.clone())
                        .chain(n.additional_ips.iter().map(|i| i.ip.clone()))
                        .filter(|ip| !ip.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            Err(e) => return Err(e.to_string()),
        };
        self.write_hosts(pod, &ips)?;
        Ok((id, config, ips))
    }

    /// Writes the kubelet-managed /etc/hosts of a pod on the pod network.
    fn write_hosts(&self, pod: &Pod, ips: &[String]) -> Result<(), String> {
        if crate::pod::host_network(pod) {
            return Ok(());
        }
        let content = crate::pod::dns::etc_hosts(pod, ips, &self.node.cluster_domain)
            .map_err(|e| e.to_string())?;
        write_file(
            &self.pod_dir(uid(pod)).join("etc-hosts"),
            content.as_bytes(),
            0o644,
        )
    }

    /// The kubelet's `SyncPod` for a pod that is to run, as its numbered steps: observe, plan,
    /// kill, volumes, sandbox, containers (init, then app), back-off, clean-up, status. Each step
    /// is a method below; a step that cannot go on ends the sync with the retry it asks for.
    fn sync(&self, pod: &Arc<Pod>) -> SyncResult {
        let state = self.state(uid(pod));
        let mut st = lock(&state);
        let first_sync = st.first_seen.is_none();
        let first_seen = *st.first_seen.get_or_insert_with(|| self.clock.monotonic());
        let observed = match self.step_observe(pod, &mut st, first_sync) {
            Ok(o) => o,
            Err(done) => return done,
        };
        if first_sync
            && observed.latest_sandbox().is_none()
            && self.shutting_down.load(std::sync::atomic::Ordering::SeqCst)
        {
            use crate::pod::shutdown::{NOT_ADMITTED_MESSAGE, NOT_ADMITTED_REASON};
            return self.refuse(
                pod,
                &observed,
                &mut st,
                NOT_ADMITTED_REASON,
                NOT_ADMITTED_MESSAGE.to_string(),
            );
        }
        if first_sync && observed.latest_sandbox().is_none() {
            if let Some(Err(message)) = self.eviction.as_ref().map(|e| e.admit(pod)) {
                return self.refuse(pod, &observed, &mut st, "Evicted", message);
            }
        }
        if self.is_terminal(pod) {
            // The kubelet's syncPod: a pod whose phase is terminal (in the API or as last
            // reported) never starts anything again; its worker stops what still runs.
            self.report_status(pod, &observed, &st, false);
            return SyncResult::Terminal;
        }
        let mut pass = self.step_plan(pod, observed, &mut st);
        if let Err(done) = self.step_kill(&mut pass) {
            return done;
        }
        let volumes_ready = self.step_volumes(&mut pass, &mut st);
        let sandbox = self.step_sandbox(&mut pass, volumes_ready);
        if let Some(sandbox) = &sandbox {
            self.step_containers(&mut pass, &mut st, sandbox);
        }
        self.step_backoff(&mut pass, &mut st);
        self.step_cleanup(&mut pass);
        self.step_status(pass, &mut st, first_seen)
    }
}

/// One sync of one pod, carried through the steps of [`RuntimeSyncer::sync`].
struct Pass<'a> {
    pod: &'a Arc<Pod>,
    /// How log lines name the pod.
    key: String,
    /// The runtime's view of the pod when the sync began.
    observed: ObservedPod,
    /// What the plan says to do.
    actions: Actions,
    /// Containers failing a liveness or startup probe, by id.
    unhealthy: HashMap<String, crate::probe::Unhealthy>,
    /// The pod's IP, for hooks and probes.
    pod_ip: String,
    /// When to sync again at the latest (the steps' retries).
    retry: Option<Duration>,
    /// Whether anything was asked of the runtime: if not, what `observe` read is still what
    /// it has, and the status needs no second look.
    acted: bool,
}

impl RuntimeSyncer {
    /// Step 1, observe: the pod's sandboxes and containers (from the relist's cache when it
    /// confirmed them); a pod over an emptyDir limit is evicted instead. The first sync of a pod
    /// that already runs says it is adopted.
    fn step_observe(
        &self,
        pod: &Arc<Pod>,
        st: &mut PodState,
        first_sync: bool,
    ) -> Result<ObservedPod, SyncResult> {
        let observed = match self.observe_cached(uid(pod)) {
            Ok(o) => {
                self.recovered(pod, "reading its runtime state");
                o
            }
            Err(e) => {
                self.warn_once(pod, "reading its runtime state", &e.to_string());
                return Err(SyncResult::Requeue(RETRY));
            }
        };
        if first_sync {
            // What a previous run left in the runtime is taken over as it is, not started again.
            if let Some(sb) = observed.latest_sandbox().filter(|s| s.ready) {
                let running = observed
                    .containers
                    .iter()
                    .filter(|c| c.is_running())
                    .count();
                log::info!(
                    "pod {}: adopted from the runtime: sandbox {}, {running} container(s) running",
                    tag(pod),
                    crate::cri::short_id(&sb.id)
                );
            }
        }
        if let Some(msg) = self.volumes.as_ref().and_then(|v| v.eviction(uid(pod))) {
            return Err(self.evict(pod, &observed, st, msg, Some(Duration::ZERO)));
        }
        if let Some(e) = self.eviction.as_ref().and_then(|e| e.eviction(uid(pod))) {
            return Err(self.evict(pod, &observed, st, e.message, e.grace));
        }
        Ok(observed)
    }

    /// Step 2, plan: `computePodActions` from the spec, the runtime's view, the probes'
    /// verdicts and the back-off (pure: `plan::compute_actions`).
    fn step_plan<'a>(
        &self,
        pod: &'a Arc<Pod>,
        observed: ObservedPod,
        st: &mut PodState,
    ) -> Pass<'a> {
        let hashes = Self::hashes(pod);
        let unhealthy = self
            .prober
            .as_ref()
            .map(|p| p.unhealthy(uid(pod)))
            .unwrap_or_default();
        let unhealthy_why: HashMap<String, String> = unhealthy
            .iter()
            .map(|(id, u)| (id.clone(), u.why.clone()))
            .collect();
        let pod_ip = self.pod_ip(pod, &observed);
        let actions: Actions = plan::compute_actions(PlanInput {
            pod,
            observed: &observed,
            hashes: &hashes,
            unhealthy: &unhealthy_why,
            backoff: &st.backoff,
            now: self.clock.now(),
        });
        if actions.pod_failed {
            st.pod_failed = true;
        }
        let acted = actions.kill_pod || !actions.kill.is_empty();
        Pass {
            pod,
            key: tag(pod),
            observed,
            actions,
            unhealthy,
            pod_ip,
            retry: None,
            acted,
        }
    }

    /// Step 3, kill: the whole pod when its sandbox must go (a failure retries the sync in
    /// [`RETRY`]), then each container the plan kills, with a `Killing` event and its grace
    /// period (a probe's own `terminationGracePeriodSeconds` for the kills it causes).
    fn step_kill(&self, pass: &mut Pass<'_>) -> Result<(), SyncResult> {
        let pod = pass.pod;
        if pass.actions.kill_pod {
            if let Err(e) = self.kill_pod(pod, &pass.observed, grace_period(pod)) {
                self.warn_once(pod, "stopping it", &e.to_string());
                return Err(SyncResult::Requeue(RETRY));
            }
            self.recovered(pod, "stopping it");
        }
        for k in &pass.actions.kill {
            let message = match &k.reason {
                KillReason::SpecChanged => {
                    format!("Container {} definition changed, will be restarted", k.name)
                }
                KillReason::Unhealthy(why) => {
                    format!("Container {} {why}, will be restarted", k.name)
                }
                KillReason::NeverStarted | KillReason::UnknownState => {
                    format!("Stopping container {}", k.name)
                }
            };
            self.reporter
                .container_event(pod, &k.name, EventType::Normal, "Killing", &message);
            let grace = pass
                .unhealthy
                .get(&k.id)
                .and_then(|u| u.grace)
                .filter(|_| matches!(k.reason, KillReason::Unhealthy(_)))
                .map_or_else(|| grace_period(pod), |g| g.max(MIN_GRACE));
            let stop = match pass.observed.containers.iter().find(|c| c.id == k.id) {
                Some(c) => self.stop_container(pod, c, &pass.pod_ip, grace),
                None => self.runtime.stop_container(&k.id, grace),
            };
            let stopped = stop.and_then(|()| match k.reason {
                KillReason::NeverStarted | KillReason::UnknownState => {
                    self.runtime.remove_container(&k.id)
                }
                _ => Ok(()),
            });
            if let Err(e) = stopped.filter_not_found() {
                self.warn_once(pod, "stopping a container", &e.to_string());
                pass.retry = Some(RETRY);
            }
        }
        Ok(())
    }

    /// Step 4, volumes: set up before the sandbox, as the kubelet waits for them (whether they
    /// are ready); a running pod the volume manager does not know yet (adopted after a restart)
    /// is taken over so that its volumes are kept current.
    fn step_volumes(&self, pass: &mut Pass<'_>, st: &mut PodState) -> bool {
        let pod = pass.pod;
        if pass.actions.create_sandbox.is_some() || !pass.actions.start.is_empty() {
            return self.setup_volumes(pod, &pass.observed, st, &mut pass.retry);
        }
        // A pod whose containers all ended gets none: it is finished, or about to restart them.
        if let Some(v) = self
            .volumes
            .as_ref()
            .filter(|v| pass.observed.any_running() && !v.tracks(uid(pod)))
        {
            if let Err(e) = v.setup(pod) {
                log::debug!("pod {}: {e}", pass.key);
            }
        }
        true
    }

    /// Step 5, sandbox: a new one when the plan says so (a failure is a Warning
    /// `FailedCreatePodSandBox` event and a retry in 10 s), else the current one; the sandbox
    /// to start containers in, with its config and IPs.
    fn step_sandbox(
        &self,
        pass: &mut Pass<'_>,
        volumes_ready: bool,
    ) -> Option<(String, api::PodSandboxConfig, Vec<String>)> {
        let pod = pass.pod;
        if !volumes_ready {
            return None;
        }
        if let Some(attempt) = pass.actions.create_sandbox {
            pass.acted = true;
            if let Some(fs) = &self.cgroup_fs {
                let parent = translate::cgroup_parent(pod, &self.node);
                let config = crate::pod::resources::pod_cgroup_config(pod);
                if let Err(e) = super::cgroups::ensure_pod_cgroup(fs, &parent, &config) {
                    // The kubelet's SyncPod: an event, then the pod worker's 10 s back-off.
                    let msg = format!("unable to ensure pod container exists: {e}");
                    self.warn_once(pod, "creating its cgroup", &msg);
                    self.reporter.event(
                        pod,
                        EventType::Warning,
                        "FailedToCreatePodContainer",
                        &msg,
                    );
                    pass.retry = Some(Duration::from_secs(10));
                    return None;
                }
            }
            return match self.create_sandbox(pod, attempt) {
                Ok(s) => {
                    self.recovered(pod, "creating its sandbox");
                    Some(s)
                }
                Err(msg) => {
                    self.warn_once(
                        pod,
                        "creating its sandbox",
                        &format!("failed to create its sandbox: {msg}"),
                    );
                    self.reporter.event(
                        pod,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {msg}"),
                    );
                    pass.retry = Some(sandbox_retry(&msg));
                    None
                }
            };
        }
        let id = pass.actions.sandbox_id.as_ref()?;
        let latest = pass.observed.latest_sandbox();
        let attempt = latest.map_or(0, |s| s.attempt);
        let ips: Vec<String> = latest
            .map(|s| {
                std::iter::once(s.ip.clone())
                    .chain(s.additional_ips.iter().cloned())
                    .filter(|ip| !ip.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        match translate::sandbox_config(pod, &self.node, attempt) {
            Ok(cfg) => Some((id.clone(), cfg, ips)),
            Err(e) => {
                log::warn!("pod {}: {e}", pass.key);
                None
            }
        }
    }

    /// Step 6, containers: start what the plan says (the next init container, or the app
    /// containers), each pulled, created and started; a failure becomes the container's waiting
    /// reason (ErrImagePull, CreateContainerConfigError, RunContainerError, ...) and a retry
    /// within 10 s, and stops the init containers there.
    fn step_containers(
        &self,
        pass: &mut Pass<'_>,
        st: &mut PodState,
        (sandbox_id, sandbox_config, ips): &(String, api::PodSandboxConfig, Vec<String>),
    ) {
        let pod = pass.pod;
        let pod_ips = if crate::pod::host_network(pod) {
            self.host_ips.clone()
        } else {
            ips.clone()
        };
        for s in &pass.actions.start {
            pass.acted = true;
            match self.start_container(pod, sandbox_id, sandbox_config, &pod_ips, s, st) {
                Ok(()) => {
                    st.waiting.remove(&s.name);
                    if let Some((_, again)) = st.start_failures.remove(&s.name) {
                        if again > 0 {
                            log::info!(
                                "pod {}: container {} started after {again} more failed try(s)",
                                pass.key,
                                s.name
                            );
                        }
                    }
                }
                Err(f) => {
                    // Logged once per failure, with a count when it changes: a pull retried
                    // every 10-20 s is one line, not one a retry.
                    let what = format!("{}: {}", f.reason, f.message);
                    match st.start_failures.get_mut(&s.name) {
                        Some((last, again)) if *last == what => *again += 1,
                        previous => {
                            let before = previous
                                .filter(|(_, again)| *again > 0)
                                .map(|(_, again)| {
                                    format!(" (the previous failure {again} more time(s))")
                                })
                                .unwrap_or_default();
                            log::info!(
                                "pod {}: container {} not started: {what}{before}",
                                pass.key,
                                s.name
                            );
                            st.start_failures.insert(s.name.clone(), (what, 0));
                        }
                    }
                    pass.retry = Some(
                        pass.retry
                            .map_or(Duration::from_secs(10), |r| r.min(Duration::from_secs(10))),
                    );
                    st.waiting.insert(
                        s.name.clone(),
                        Waiting {
                            reason: f.reason.to_string(),
                            message: f.message,
                        },
                    );
                    if s.kind == ContainerKind::Init {
                        break;
                    }
                }
            }
        }
    }

    /// Step 7, back-off: each container held in CrashLoopBackOff waits with the kubelet's
    /// message and a Warning `BackOff` event, and the sync comes back when its back-off ends.
    fn step_backoff(&self, pass: &mut Pass<'_>, st: &mut PodState) {
        let pod = pass.pod;
        let now = self.clock.now();
        // The kubelet's `format.Pod`: name_namespace(uid).
        let pod_format = format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
            uid(pod)
        );
        for b in &pass.actions.backing_off {
            let message = format!(
                "back-off {}s restarting failed container={} pod={pod_format}",
                b.backoff.as_secs(),
                b.name,
            );
            self.reporter.container_event(
                pod,
                &b.name,
                EventType::Warning,
                "BackOff",
                &format!(
                    "Back-off restarting failed container {} in pod {pod_format}",
                    b.name
                ),
            );
            st.waiting.insert(
                b.name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message,
                },
            );
            let exit = pass
                .observed
                .latest(&b.name, b.kind)
                .map(|c| plan::time_of(c.finished_at))
                .unwrap_or(now);
            let left = (exit + b.backoff).duration_since(now).unwrap_or_default()
                + Duration::from_millis(100);
            pass.retry = Some(pass.retry.map_or(left, |r| r.min(left)));
        }
    }

    /// Step 8, clean-up: old exited container instances go with their log files, keeping the
    /// newest exited one of each container for its logs (`logs --previous`, lastState), as the
    /// kubelet's container deletor does (its `removeContainerLog`, then `RemoveContainer`);
    /// then older sandboxes that are stopped and empty (the kubelet's sandbox GC).
    fn step_cleanup(&self, pass: &mut Pass<'_>) {
        let gone = plan::containers_to_remove(&pass.observed, 1);
        for c in pass
            .observed
            .containers
            .iter()
            .filter(|c| gone.contains(&c.id))
        {
            pass.acted = true;
            if let Err(e) = remove_container_log(&c.log_path) {
                log::warn!("pod {}: failed to remove log {}: {e}", pass.key, c.log_path);
            }
            if let Err(e) = self.runtime.remove_container(&c.id).filter_not_found() {
                log::debug!("pod {}: {e}", pass.key);
            }
        }
        // Older sandboxes, stopped and emptied, go too (the newest stays for its logs).
        for id in plan::sandboxes_to_remove(&pass.observed, &gone) {
            pass.acted = true;
            if let Err(e) = self.runtime.remove_pod_sandbox(&id).filter_not_found() {
                log::debug!("pod {}: {e}", pass.key);
            }
        }
    }

    /// Step 9, status: what the runtime has right after acting, to the prober (what to probe)
    /// and the reporter (`generateAPIPodStatus`); the pod start duration; `Terminal` for a
    /// finished pod, else when to sync again (a retry, the end of a restarted container's
    /// settling, or the periodic resync).
    fn step_status(&self, pass: Pass<'_>, st: &mut PodState, first_seen: Instant) -> SyncResult {
        let pod = pass.pod;
        let after = if pass.acted {
            self.observe(uid(pod)).unwrap_or(pass.observed)
        } else {
            pass.observed
        };
        if let Some(p) = &self.prober {
            let running: Vec<crate::probe::Running> = after
                .containers
                .iter()
                .filter(|c| c.kind == ContainerKind::App && c.is_running())
                .map(|c| crate::probe::Running {
                    name: c.name.clone(),
                    id: c.id.clone(),
                    started_at: plan::time_of(c.started_at),
                })
                .collect();
            p.track(pod, &running, &self.pod_ip(pod, &after));
        }
        let done = pass.actions.kill_pod && pass.actions.create_sandbox.is_none();
        let was_pending = match self.reporter.last_status(uid(pod)) {
            Some(s) => s.phase.clone(),
            None => pod.status.as_ref().and_then(|s| s.phase.clone()),
        }
        .is_none_or(|p| p == "Pending");
        let status = self.report_status(pod, &after, st, false);
        // The kubelet's pod start duration: first seen → the first Running status of a pod
        // that was Pending (a pod adopted while running is not counted).
        if was_pending && !st.start_recorded && status.phase.as_deref() == Some("Running") {
            st.start_recorded = true;
            metrics::POD_START_DURATION.observe_duration(
                &[],
                self.clock.monotonic().saturating_duration_since(first_seen),
            );
        }
        if done || status::is_terminal(status.phase.as_deref()) && !after.any_running() {
            return SyncResult::Terminal;
        }
        // A restarted container becomes Ready once it has settled: write that then.
        let settled = status::next_settled(&after, self.clock.timestamp())
            .map(|left| left + Duration::from_millis(20));
        let retry = match (pass.retry, settled) {
            (Some(r), Some(s)) => Some(r.min(s)),
            (r, s) => r.or(s),
        };
        SyncResult::Requeue(retry.unwrap_or(RESYNC))
    }
}

impl RuntimeSyncer {
    /// Logs a failure of `topic` for `pod` unless it is the one logged last time (a retry).
    fn warn_once(&self, pod: &Pod, topic: &'static str, message: &str) {
        let news = lock(&self.repeats)
            .entry(uid(pod).to_string())
            .or_default()
            .news(topic, message);
        if news {
            log::warn!("pod {}: {message}", tag(pod));
        }
    }

    /// `topic` worked for `pod`: if it had been failing, say so once.
    fn recovered(&self, pod: &Pod, topic: &'static str) {
        let again = lock(&self.repeats)
            .get_mut(uid(pod))
            .and_then(|r| r.clear(topic));
        if let Some(again) = again {
            log::info!(
                "pod {}: {topic} works again ({again} more failures were not logged)",
                tag(pod)
            );
        }
    }

    /// A pod refused at admission is never started: the kubelet's `rejectPod` (a Warning event
    /// with the reason and message, Failed with `Pod was rejected: <message>`).
    fn refuse(
        &self,
        pod: &Arc<Pod>,
        observed: &ObservedPod,
        st: &mut PodState,
        reason: &'static str,
        message: String,
    ) -> SyncResult {
        log::info!("pod {}: not started: {message}", tag(pod));
        self.reporter
            .event(pod, EventType::Warning, reason, &message);
        st.pod_failed = true;
        st.refused = Some((reason, message));
        self.report_status(pod, observed, st, false);
        SyncResult::Terminal
    }

    /// Evicts the pod as the kubelet's eviction manager does: a Warning `Evicted` event, every
    /// container stopped within `grace` (`None`: the pod's own; at least the kubelet's minimum),
    /// and the pod Failed with reason `Evicted`, the message and `DisruptionTarget`.
    fn evict(
        &self,
        pod: &Arc<Pod>,
        observed: &ObservedPod,
        st: &mut PodState,
        msg: String,
        grace: Option<Duration>,
    ) -> SyncResult {
        if st.evicted.is_none() {
            log::info!("pod {}: evicted: {msg}", tag(pod));
            self.reporter
                .event(pod, EventType::Warning, "Evicted", &msg);
            st.evicted = Some(msg);
            st.pod_failed = true;
        }
        let grace = grace.unwrap_or_else(|| grace_period(pod)).max(MIN_GRACE);
        if let Err(e) = self.kill_pod(pod, observed, grace) {
            log::warn!("pod {}: {e}", tag(pod));
            return SyncResult::Requeue(RETRY);
        }
        let after = self.observe(uid(pod)).unwrap_or_else(|_| observed.clone());
        self.report_status(pod, &after, st, false);
        SyncResult::Terminal
    }

    /// Sets up the pod's volumes; on failure the kubelet's FailedMount event, the containers
    /// that are not running wait with the reason, and a retry is due.
    fn setup_volumes(
        &self,
        pod: &Arc<Pod>,
        observed: &ObservedPod,
        st: &mut PodState,
        retry: &mut Option<Duration>,
    ) -> bool {
        let Some(v) = &self.volumes else {
            return true;
        };
        let Err(e) = v.setup(pod) else {
            self.recovered(pod, "setting up its volumes");
            return true;
        };
        let msg = e.to_string();
        self.warn_once(pod, "setting up its volumes", &msg);
        self.reporter
            .event(pod, EventType::Warning, "FailedMount", &msg);
        let reason = if e.is_permanent() {
            "UnsupportedVolume"
        } else {
            "ContainerCreating"
        };
        let spec = pod.spec.as_ref();
        for (c, kind) in spec
            .into_iter()
            .flat_map(|s| s.init_containers.iter().flatten())
            .map(|c| (c, ContainerKind::Init))
            .chain(
                spec.into_iter()
                    .flat_map(|s| s.containers.iter())
                    .map(|c| (c, ContainerKind::App)),
            )
        {
            if !observed
                .latest(&c.name, kind)
                .is_some_and(|o| o.state == RunState::Running)
            {
                st.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: reason.to_string(),
                        message: msg.clone(),
                    },
                );
            }
        }
        let wait = if e.is_permanent() {
            Duration::from_secs(30)
        } else {
            RETRY
        };
        *retry = Some(retry.map_or(wait, |r| r.min(wait)));
        false
    }
}

/// When a failed RunPodSandbox is tried again: after the kubelet's 10 s back-off, or after 2 s
/// when containerd still holds the sandbox's name for an attempt that was cut short (the
/// daemon killed during the call): that one ends within moments, and waiting 10 s only leaves
/// the pod Pending longer (`make chaos` counted it).
fn sandbox_retry(message: &str) -> Duration {
    if message.contains("failed to reserve sandbox name") {
        RETRY
    } else {
        Duration::from_secs(10)
    }
}

/// `Result<(), CriError>` where NotFound (already gone) counts as success.
trait FilterNotFound {
    fn filter_not_found(self) -> Result<(), CriError>;
}

impl FilterNotFound for Result<(), CriError> {
    fn filter_not_found(self) -> Result<(), CriError> {
        match self {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// Removes a container's log file and its rotated files (every `<path>*`, as the kubelet's log
/// manager `Clean` globs), before the container instance is removed; an empty path or missing
/// files are not an error.
fn remove_container_log(path: &str) -> std::io::Result<()> {
    let path = std::path::Path::new(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Ok(());
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(name))
        {
            match std::fs::remove_file(entry.path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).map_err(|e| format!("failed to write {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("failed to chmod {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("failed to write {}: {e}", path.display()))
}

impl PodSyncer for RuntimeSyncer {
    fn sync_pod(&self, pod: &Arc<Pod>) -> SyncResult {
        self.sync(pod)
    }

    fn sync_terminating_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration> {
        let pod_key = tag(pod);
        // Liveness and startup probes stop as the pod terminates; readiness is probed until
        // the containers are stopped, and its changes are reported meanwhile.
        if let Some(p) = &self.prober {
            p.stop_liveness_and_startup(uid(pod));
        }
        let observed = self.observe(uid(pod)).map_err(|e| {
            self.warn_once(pod, "reading its runtime state", &e.to_string());
            RETRY
        })?;
        let state = self.state(uid(pod));
        let grace = match why {
            Termination::NodeShutdown { grace } => {
                lock(&state).node_shutdown = true;
                log::info!(
                    "pod {pod_key}: stopping for the node's shutdown (grace {}s)",
                    grace.as_secs()
                );
                (*grace).max(MIN_GRACE)
            }
            _ => grace_period(pod),
        };
        let killed = std::thread::scope(|s| {
            let (done, stopped) = crossbeam_channel::bounded::<()>(1);
            let observed = &observed;
            let kill = s.spawn(move || {
                let r = self.kill_pod(pod, observed, grace);
                let _ = done.send(());
                r
            });
            if let Some(p) = &self.prober {
                let mut last = p.readiness(uid(pod));
                // Woken the moment the containers are stopped, not at the next poll.
                while stopped.recv_timeout(READINESS_POLL).is_err() && !kill.is_finished() {
                    let now = p.readiness(uid(pod));
                    if now != last {
                        last = now;
                        if let Ok(o) = self.observe(uid(pod)) {
                            self.report_status(pod, &o, &lock(&state), false);
                        }
                    }
                }
            }
            kill.join().unwrap_or(Ok(()))
        });
        if let Some(p) = &self.prober {
            p.forget(uid(pod));
        }
        if let Err(e) = killed {
            self.warn_once(pod, "stopping it", &format!("failed to stop: {e}"));
            return Err(RETRY);
        }
        let st = lock(&state);
        let after = self.observe(uid(pod)).unwrap_or(observed);
        self.report_status(pod, &after, &st, *why != Termination::Finished);
        Ok(())
    }

    fn sync_terminated_pod(&self, pod: &Arc<Pod>, why: &Termination) -> Result<(), Duration> {
        let pod_key = tag(pod);
        if why.keeps_pod() {
            // The kubelet's SyncTerminatedPod for a pod that finished but still exists: its
            // volumes are unmounted and removed (unless --keep-terminated-pod-volumes); its
            // sandbox, containers and logs stay until the pod is deleted, for `kubectl logs`.
            if let Some(v) = self
                .volumes
                .as_ref()
                .filter(|_| !self.keep_terminated_volumes)
            {
                if let Err(e) = v.cleanup(uid(pod)) {
                    log::warn!("pod {pod_key}: {e}");
                    return Err(RETRY);
                }
                log::debug!("pod {pod_key}: finished, its volumes are torn down");
            }
            return Ok(());
        }
        let observed = self.observe(uid(pod)).map_err(|e| {
            log::warn!("pod {pod_key}: {e}");
            RETRY
        })?;
        for sb in &observed.sandboxes {
            if let Err(e) = self.runtime.remove_pod_sandbox(&sb.id).filter_not_found() {
                log::warn!("pod {pod_key}: {e}");
                return Err(RETRY);
            }
        }
        if let Some(v) = &self.volumes {
            if let Err(e) = v.cleanup(uid(pod)) {
                log::warn!("pod {pod_key}: {e}");
                return Err(RETRY);
            }
        }
        for dir in [
            self.pod_dir(uid(pod)),
            translate::log_directory(pod, &self.node),
        ] {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("pod {pod_key}: failed to remove {}: {e}", dir.display());
                }
            }
        }
        if let Some(e) = &self.eviction {
            e.forget(uid(pod));
        }
        // Deleted, or gone from its source (a removed manifest's mirror pod goes too).
        if !why.keeps_pod() {
            if let Err(e) = self.reporter.deleted(pod) {
                log::warn!("pod {pod_key}: {e}");
                return Err(RETRY);
            }
        }
        // After the final delete, as the kubelet leaves it to housekeeping: removing a cgroup
        // waits for the kernel (RCU) in every hierarchy, tens of milliseconds in all.
        match cgroups::remove_pod_cgroups(
            Path::new(cgroups::CGROUP_FS),
            &self.node.cgroup_root,
            uid(pod),
        ) {
            Ok(n) if n > 0 => log::debug!("pod {pod_key}: {n} cgroup directories removed"),
            Ok(_) => {}
            Err(e) => log::warn!("pod {pod_key}: {e}"),
        }
        Ok(())
    }

    fn forget(&self, uid: &str) {
        lock(&self.states).remove(uid);
        lock(&self.repeats).remove(uid);
        self.cache.forget(uid);
        if let Some(p) = &self.prober {
            p.forget(uid);
        }
        self.reporter.forget(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_container_log_takes_its_rotated_files_and_leaves_the_others() {
        let dir = std::env::temp_dir().join(format!("vkcri-rmlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "1.log",
            "1.log.20261204-150405",
            "1.log.20261204-140405.gz",
            "0.log",
            "11.log",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        remove_container_log(dir.join("1.log").to_str().unwrap()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["0.log", "11.log"]);
        remove_container_log("").unwrap();
        remove_container_log(dir.join("gone/1.log").to_str().unwrap()).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use crate::cri::fake::{Call, FakeRuntime};
    use crate::report::recorded::Recorded;
    use crate::report::LogReporter;

    /// A syncer on `rt` reporting to `reporter`, with its files under a fresh directory.
    fn syncer(
        test: &str,
        rt: &Arc<FakeRuntime>,
        reporter: Arc<dyn PodReporter>,
    ) -> (RuntimeSyncer, PathBuf) {
        let dir = std::env::temp_dir().join(format!("vk-cri-sync-{test}-{}", std::process::id()));
        let mut node = NodeContext::new("vk-node");
        node.log_root = dir.join("logs");
        let syncer = RuntimeSyncer::new(
            rt.clone(),
            reporter,
            node,
            Paths {
                pods_dir: dir.join("pods"),
            },
            vec!["10.0.0.1".into()],
            "fake",
        );
        (syncer, dir)
    }

    /// A defaulted pod of one container `c` running `image` with `policy`.
    fn one_container_pod(uid: &str, image: &str, policy: &str) -> Arc<Pod> {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": uid},
            "spec": {"containers": [
                {"name": "c", "image": image, "imagePullPolicy": policy}
            ]}
        }))
        .unwrap();
        crate::pod::defaults::apply_defaults(&mut pod);
        Arc::new(pod)
    }

    fn rpc(op: &'static str, message: &str) -> CriError {
        CriError::Rpc {
            op,
            target: crate::cri::Target::Runtime,
            code: crate::cri::Code::Unknown,
            message: message.into(),
        }
    }

    /// The waiting reason of the pod's container `c` in the last status reported.
    fn waiting_reason(rec: &Recorded) -> Option<String> {
        rec.last_status_seen()?.container_statuses?[0]
            .state
            .clone()?
            .waiting?
            .reason
    }

    #[test]
    fn step_observe_a_runtime_that_cannot_list_retries_in_two_seconds() {
        let rt = Arc::new(FakeRuntime::new());
        rt.fail_next(
            "ListPodSandbox",
            rpc("list sandboxes", "connection refused"),
        );
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("observe-fail", &rt, rec.clone());
        let pod = one_container_pod("obs-1", "busybox:1.36", "IfNotPresent");
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RETRY));
        assert!(rec.take_events().is_empty(), "nothing was done");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_sandbox_name_still_reserved_is_tried_again_sooner() {
        assert_eq!(
            sandbox_retry("rpc error: code = Unknown desc = failed to reserve sandbox name \"p_default_u_0\": name \"p_default_u_0\" is reserved for \"1aa8\""),
            Duration::from_secs(2)
        );
        assert_eq!(sandbox_retry("no CNI network"), Duration::from_secs(10));
    }

    #[test]
    fn step_sandbox_a_sandbox_that_cannot_be_created_is_an_event_and_a_retry_in_ten_seconds() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        rt.fail_next("RunPodSandbox", rpc("run sandbox", "cni: no IP left"));
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("sandbox-fail", &rt, rec.clone());
        let pod = one_container_pod("sb-1", "busybox:1.36", "IfNotPresent");
        assert_eq!(
            syncer.sync(&pod),
            SyncResult::Requeue(Duration::from_secs(10))
        );
        let events = rec.take_events();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            events[0],
            "FailedCreatePodSandBox: Failed to create pod sandbox: rpc error: code = Unknown desc = cni: no IP left",
            "the kubelet's text (the runtime's status as Go prints it)"
        );
        assert!(
            rt.container_ids().is_empty(),
            "no container without a sandbox"
        );
        // The next sync tries again and gets on.
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RESYNC));
        assert_eq!(rt.container_ids().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_containers_create_and_start_failures_are_the_kubelets_waiting_reasons() {
        for (op, reason) in [
            ("CreateContainer", "CreateContainerError"),
            ("StartContainer", "RunContainerError"),
        ] {
            let rt = Arc::new(FakeRuntime::new());
            rt.add_image("busybox:1.36");
            rt.fail_next(op, rpc("container", "no such file or directory"));
            let rec = Arc::new(Recorded::default());
            let (syncer, dir) = syncer(&format!("start-fail-{op}"), &rt, rec.clone());
            let pod = one_container_pod("start-1", "busybox:1.36", "IfNotPresent");
            let next = syncer.sync(&pod);
            assert!(
                matches!(next, SyncResult::Requeue(d) if d <= Duration::from_secs(10)),
                "{op}: {next:?}"
            );
            assert_eq!(waiting_reason(&rec).as_deref(), Some(reason), "{op}");
            assert!(
                rec.take_events().iter().any(|e| e.starts_with("Failed: ")),
                "{op}: a Failed event"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn step_backoff_a_crash_looping_container_waits_with_the_kubelets_event() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let rec = Arc::new(Recorded::default());
        // The syncer's clock and the runtime's on one time line: the back-off is measured
        // from an exit, and moving the clock ends it (no sleep).
        let clock = Arc::new(crate::clock::FakeClock::at(std::time::UNIX_EPOCH));
        let (syncer, dir) = syncer("backoff", &rt, rec.clone());
        let syncer = syncer.with_clock(clock.clone());
        let pod = one_container_pod("crash-1", "busybox:1.36", "IfNotPresent");
        syncer.sync(&pod);
        // It exits: restarted at once, then held back 10 s after the next exit.
        let first = rt.container_ids()[0].clone();
        rt.exit_container(&first, 1);
        // What the relist does when the runtime changed: the cached view is not confirmed.
        syncer.cache.forget("crash-1");
        syncer.sync(&pod);
        let second: Vec<String> = rt
            .container_ids()
            .into_iter()
            .filter(|id| *id != first)
            .collect();
        assert_eq!(second.len(), 1, "restarted once");
        rt.exit_container(&second[0], 1);
        syncer.cache.forget("crash-1");
        rec.take_events();
        let next = syncer.sync(&pod);
        assert!(
            matches!(next, SyncResult::Requeue(d) if d > Duration::from_secs(9) && d <= Duration::from_millis(10_500)),
            "comes back when the back-off ends: {next:?}"
        );
        assert_eq!(waiting_reason(&rec).as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(
            rec.take_events(),
            ["BackOff: Back-off restarting failed container c in pod p_ns(crash-1)".to_string()]
        );
        assert_eq!(
            rt.container_ids(),
            [second[0].clone()],
            "held back; only the newest exited instance is kept"
        );
        // Ten seconds later the back-off is over: it starts again.
        clock.advance(Duration::from_secs(11));
        syncer.cache.forget("crash-1");
        syncer.sync(&pod);
        let ids = rt.container_ids();
        assert!(
            ids.len() == 2 && ids.contains(&second[0]),
            "restarted after its back-off: {ids:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The log lines of this test binary that contain `needle` (a process-wide logger,
    /// installed once; each test filters by its own pod's name).
    fn logged(needle: &str) -> Vec<String> {
        struct Capture;
        static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
        impl log::Log for Capture {
            fn enabled(&self, _: &log::Metadata<'_>) -> bool {
                true
            }
            fn log(&self, r: &log::Record<'_>) {
                lock(&LINES).push(r.args().to_string());
            }
            fn flush(&self) {}
        }
        static CAPTURE: Capture = Capture;
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            log::set_logger(&CAPTURE).expect("the only logger of the test binary");
            log::set_max_level(log::LevelFilter::Info);
        });
        lock(&LINES)
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    #[test]
    fn step_containers_a_failure_that_repeats_is_logged_once_with_a_count() {
        let rt = Arc::new(FakeRuntime::new());
        logged("");
        let clock = Arc::new(crate::clock::FakeClock::at(std::time::UNIX_EPOCH));
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("repeat", &rt, rec.clone());
        let syncer = syncer.with_clock(clock.clone());
        let mut pod = (*one_container_pod("rep-1", "busybox:1.36", "IfNotPresent")).clone();
        pod.metadata.name = Some("repeats".into());
        let pod = Arc::new(pod);
        // Three failed pulls, the back-off passed between them, then the image is there.
        for _ in 0..3 {
            rt.fail_next("PullImage", rpc("pull image", "registry down"));
            syncer.sync(&pod);
            clock.advance(Duration::from_secs(400));
        }
        rt.add_image("busybox:1.36");
        syncer.sync(&pod);
        let lines = logged("ns/repeats (rep-1): container c");
        assert_eq!(
            lines.len(),
            2,
            "one line for the failure, one when it ended: {lines:#?}"
        );
        assert!(
            lines[0].contains("not started: ErrImagePull: "),
            "{lines:#?}"
        );
        assert_eq!(
            lines[1],
            "pod ns/repeats (rep-1): container c started after 2 more failed try(s)"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_volumes_a_volume_that_cannot_be_set_up_holds_the_pod_before_its_sandbox() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("volumes", &rt, rec.clone());
        let volumes = Arc::new(VolumeManager::new(
            Arc::new(crate::volume::fs::RecordingFs::new()),
            dir.join("volumes"),
            None,
            NodeAllocatable::default(),
            Arc::new(RealClock),
        ));
        let syncer = syncer.with_volumes(volumes);
        let mut pod = (*one_container_pod("vol-1", "busybox:1.36", "IfNotPresent")).clone();
        let spec = pod.spec.as_mut().unwrap();
        spec.volumes = Some(vec![serde_json::from_value(serde_json::json!(
            {"name": "data", "nfs": {"server": "127.0.0.1", "path": "/"}}
        ))
        .unwrap()]);
        spec.containers[0].volume_mounts = Some(vec![serde_json::from_value(
            serde_json::json!({"name": "data", "mountPath": "/data"}),
        )
        .unwrap()]);
        let pod = Arc::new(pod);
        syncer.sync(&pod);
        assert!(rt.sandbox_ids().is_empty(), "no sandbox before the volumes");
        assert_eq!(waiting_reason(&rec).as_deref(), Some("UnsupportedVolume"));
        let events = rec.take_events();
        assert!(
            events.len() == 1 && events[0].starts_with("FailedMount: "),
            "{events:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_cleanup_old_instances_go_and_the_previous_one_stays() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let clock = Arc::new(crate::clock::FakeClock::at(std::time::UNIX_EPOCH));
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("cleanup", &rt, rec.clone());
        let syncer = syncer.with_clock(clock.clone());
        let pod = one_container_pod("gc-1", "busybox:1.36", "IfNotPresent");
        syncer.sync(&pod);
        // Three exits, each restarted once its back-off is over: four instances in all.
        for _ in 0..3 {
            let running: Vec<String> = rt.container_ids();
            for id in &running {
                rt.exit_container(id, 1);
            }
            clock.advance(Duration::from_secs(400));
            syncer.sync(&pod);
        }
        // The clean-up works on what the sync observed before starting the new instance: the
        // next sync leaves the running one and the one before it, for logs --previous.
        syncer.sync(&pod);
        assert_eq!(rt.container_ids().len(), 2, "{:?}", rt.calls());
        let removed = rt
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::RemoveContainer(_)))
            .count();
        assert_eq!(removed, 2, "the two oldest of four instances");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_kill_a_stop_that_fails_retries_in_two_seconds() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        rt.add_image("busybox:1.37");
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("kill-fail", &rt, rec.clone());
        syncer.sync(&one_container_pod("kill-1", "busybox:1.36", "IfNotPresent"));
        // The spec changes: the running container is killed and replaced; its stop fails.
        rt.fail_next("StopContainer", rpc("stop container", "deadline exceeded"));
        rec.take_events();
        let next = syncer.sync(&one_container_pod("kill-1", "busybox:1.37", "IfNotPresent"));
        assert_eq!(next, SyncResult::Requeue(RETRY));
        assert_eq!(
            rec.take_events()[0],
            "Killing: Container c definition changed, will be restarted"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn step_status_a_finished_pod_is_terminal() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("terminal", &rt, rec.clone());
        let mut never = (*one_container_pod("done-1", "busybox:1.36", "IfNotPresent")).clone();
        never.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let pod = Arc::new(never);
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RESYNC));
        rt.exit_container(&rt.container_ids()[0], 0);
        syncer.cache.forget("done-1");
        assert_eq!(syncer.sync(&pod), SyncResult::Terminal);
        assert_eq!(
            rec.last_status_seen().unwrap().phase.as_deref(),
            Some("Succeeded")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pod_failed_in_the_api_is_not_started_again() {
        // An evicted pod whose container exited, seen by a restarted daemon: the kubelet's
        // syncPod returns at once for a terminal phase, so nothing is restarted.
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let rec = Arc::new(Recorded::default());
        let (first_daemon, dir) = syncer("api-failed", &rt, rec.clone());
        let pod = one_container_pod("failed-1", "busybox:1.36", "IfNotPresent");
        assert_eq!(first_daemon.sync(&pod), SyncResult::Requeue(RESYNC));
        let first = rt.container_ids();
        rt.exit_container(&first[0], 0);
        first_daemon.cache.forget("failed-1");
        let mut failed = (*pod).clone();
        failed.status = Some(PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory. ".into()),
            ..Default::default()
        });
        let failed = Arc::new(failed);
        // A new daemon on the same runtime: it knows only the API server's copy.
        let rec2 = Arc::new(Recorded::default());
        let (restarted, dir2) = syncer("api-failed-2", &rt, rec2.clone());
        assert_eq!(restarted.sync(&failed), SyncResult::Terminal);
        assert_eq!(rt.container_ids(), first, "no container started again");
        let status = rec2.last_status_seen().expect("a status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(status.reason.as_deref(), Some("Evicted"));
        // The daemon that saw the pod fail knows it from its own last status as well.
        first_daemon.cache.forget("failed-1");
        let mut stale = (*pod).clone();
        stale.status = None;
        rec.status(&stale, &status);
        assert_eq!(first_daemon.sync(&Arc::new(stale)), SyncResult::Terminal);
        assert_eq!(rt.container_ids(), first);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&dir2);
    }

    #[test]
    fn a_present_image_is_pulled_already_present_before_created() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox:1.36");
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("present", &rt, rec.clone());
        syncer.sync(&one_container_pod(
            "img-present",
            "busybox:1.36",
            "IfNotPresent",
        ));
        let events = rec.take_events();
        assert_eq!(
            events[..2],
            [
                "Pulled: Container image \"busybox:1.36\" already present on machine".to_string(),
                "Created: Created container c".to_string()
            ],
            "{events:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_pull_is_the_kubelets_events_and_waiting_message() {
        let rt = Arc::new(FakeRuntime::new());
        rt.fail_next(
            "PullImage",
            CriError::Rpc {
                op: "pull image",
                target: crate::cri::Target::Runtime,
                code: crate::cri::Code::NotFound,
                message: "failed to pull and unpack image \"docker.io/library/nope:1\"".into(),
            },
        );
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("pullfail", &rt, rec.clone());
        let pod = one_container_pod("img-fail", "nope:1", "IfNotPresent");
        syncer.sync(&pod);
        let rpc = "rpc error: code = NotFound desc = failed to pull and unpack image \"docker.io/library/nope:1\"";
        assert_eq!(
            rec.take_events(),
            [
                "Pulling: Pulling image \"nope:1\"".to_string(),
                format!("Failed: Failed to pull image \"nope:1\": {rpc}"),
                "Failed: Error: ErrImagePull".to_string(),
            ]
        );
        let status = rec.last_status_seen().unwrap();
        let waiting = status.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("ErrImagePull"));
        assert_eq!(waiting.message.as_deref(), Some(rpc));
        // Within the back-off: no pull, the kubelet's BackOff and ImagePullBackOff.
        syncer.sync(&pod);
        assert_eq!(
            rec.take_events(),
            [
                "BackOff: Back-off pulling image \"nope:1\"".to_string(),
                "Failed: Error: ImagePullBackOff".to_string(),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pull_says_how_long_it_took_as_go_prints_durations() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_pullable("registry.test/app:2");
        let rec = Arc::new(Recorded::default());
        let (syncer, dir) = syncer("pulled", &rt, rec.clone());
        syncer.sync(&one_container_pod(
            "img-pulled",
            "registry.test/app:2",
            "Always",
        ));
        let events = rec.take_events();
        let pulled = events
            .iter()
            .find(|e| e.starts_with("Pulled: "))
            .expect("a Pulled event");
        let rest = pulled
            .strip_prefix("Pulled: Successfully pulled image \"registry.test/app:2\" in ")
            .unwrap_or_else(|| panic!("{pulled}"));
        assert!(rest.ends_with(" including waiting)"), "{pulled}");
        assert!(rest.contains("ms ("), "{pulled}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn go_durations_truncated_to_milliseconds() {
        let ms = Duration::from_millis;
        assert_eq!(go_duration_ms(Duration::from_micros(999)), "0ms");
        assert_eq!(go_duration_ms(ms(523)), "523ms");
        assert_eq!(go_duration_ms(ms(1000)), "1s");
        assert_eq!(go_duration_ms(ms(1500)), "1.5s");
        assert_eq!(go_duration_ms(ms(123_004)), "2m3.004s");
        assert_eq!(go_duration_ms(ms(3_600_000)), "1h0m0s");
    }

    #[test]
    fn a_sync_with_nothing_to_do_reads_the_runtime_once_and_a_confirmed_resync_not_at_all() {
        let rt = Arc::new(FakeRuntime::new());
        rt.add_image("busybox");
        let (syncer, dir) = syncer("once", &rt, Arc::new(LogReporter::new(Arc::new(RealClock))));
        let pod = one_container_pod("sync-once", "busybox", "IfNotPresent");
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RESYNC));
        assert!(
            rt.take_calls()
                .iter()
                .any(|c| matches!(c, Call::StartContainer(_))),
            "the first sync starts the container"
        );
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RESYNC));
        let (sandbox, container) = (rt.sandbox_ids()[0].clone(), rt.container_ids()[0].clone());
        assert_eq!(
            rt.take_calls(),
            [
                Call::ListPodSandbox,
                Call::PodSandboxStatus(sandbox),
                Call::ListContainers,
                Call::ContainerStatus(container.clone()),
            ],
            "nothing changed: the status comes from the one observation"
        );

        // Once a relist shows the same runtime state, a resync reads nothing at all.
        let relisted = |syncer: &RuntimeSyncer| {
            let prints = crate::executor::pleg::relist(rt.as_ref(), "vk-node").unwrap();
            syncer
                .runtime_cache()
                .relisted(Instant::now(), Arc::new(prints.fingerprints));
            rt.take_calls();
        };
        relisted(&syncer);
        assert_eq!(syncer.sync(&pod), SyncResult::Requeue(RESYNC));
        assert_eq!(rt.take_calls(), [], "the relist confirmed the observation");

        // The container exited: the next relist differs, the sync reads the runtime again.
        rt.stop_container(&container, Duration::ZERO).unwrap();
        relisted(&syncer);
        syncer.sync(&pod);
        assert_eq!(
            rt.take_calls().first(),
            Some(&Call::ListPodSandbox),
            "a changed pod is observed afresh"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
