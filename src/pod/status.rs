//! The pod's status as the kubelet reports it, computed from the spec and what the runtime has.
//!
//! Owns `pod_status`, the kubelet's `generateAPIPodStatus` as a pure function: phase, the
//! conditions (PodReadyToStartContainers, Initialized, Ready, ContainersReady, PodScheduled)
//! with transition times kept while unchanged, container and init container statuses (waiting/running/terminated with the kubelet's reasons, lastState, restartCount,
//! image, imageID, `containerd://` ids, ready, started), IPs, startTime and qosClass. It reads no
//! clock (`now` comes in) and writes nothing; the status manager decides whether to send it.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodReadinessGate,
    PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::observed::{ContainerKind, ObservedContainer, ObservedPod, RunState};

/// Why a container is waiting, as decided by the pod worker's last attempt to start it
/// (`ErrImagePull`, `ImagePullBackOff`, `CreateContainerConfigError`, `CrashLoopBackOff`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the status builder needs besides the spec and the runtime's view.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    pub observed: &'a ObservedPod,
    /// The status last computed or read from the API server (for startTime and transitions).
    pub old: Option<&'a PodStatus>,
    /// Waiting reasons from the pod worker, by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// Readiness by container id (from readiness probes); a running container without a
    /// readiness probe is ready.
    pub readiness: &'a HashMap<String, bool>,
    /// Containers (by id) whose startup probe has not succeeded yet.
    pub not_started: &'a BTreeSet<String>,
    /// The node's IPs (hostIP/hostIPs; the pod IPs of host-network pods).
    pub host_ips: &'a [String],
    /// The runtime name for container ids, e.g. `containerd`.
    pub runtime_name: &'a str,
    /// The pod failed for a reason of its own (e.g. an init container failed under Never).
    pub pod_failed: bool,
    /// The pod came from a manifest file (the kubelet never gives those a terminal phase).
    pub is_static: bool,
    /// The pod is being deleted and its containers are stopped: report a terminal phase
    /// (Succeeded if every container succeeded, else Failed), as the kubelet does for API pods.
    pub terminal: bool,
    pub now: Timestamp,
}

/// How long a restarted container must have run before it may be Ready: one relist period.
/// The kubelet sees a container start only through its relist (every second), so one that exits
/// at once in CrashLoopBackOff is practically never reported Ready; here the status is observed
/// right after the start, and without this a container that is about to exit would be Ready (and
/// get traffic) for up to a second after each restart. A first start (restart count 0) is Ready as
/// soon as it runs, so a pod's start latency does not pay for it.
pub const SETTLE: Duration = Duration::from_secs(1);

/// For a running container that restarted less than [`SETTLE`] ago, what is left of it.
pub fn settle_left(c: &ObservedContainer, now: Timestamp) -> Option<Duration> {
    if c.restart_count == 0 || !c.is_running() {
        return None;
    }
    let ran = now.as_nanosecond() - i128::from(c.started_at);
    let settle = SETTLE.as_nanos() as i128;
    (ran < settle).then(|| Duration::from_nanos((settle - ran.max(0)) as u64))
}

/// The earliest moment a settling container of the pod becomes Ready, from now.
pub fn next_settled(observed: &ObservedPod, now: Timestamp) -> Option<Duration> {
    observed
        .containers
        .iter()
        .filter(|c| c.kind == ContainerKind::App)
        .filter_map(|c| settle_left(c, now))
        .min()
}

/// A whole-second timestamp (`metav1.Time` has second precision on the wire) from nanoseconds.
pub fn time_from_nanos(nanos: i64) -> Option<Time> {
    if nanos <= 0 {
        return None;
    }
    Timestamp::from_second(nanos / 1_000_000_000).ok().map(Time)
}

fn whole_seconds(t: Timestamp) -> Time {
    Time(Timestamp::from_second(t.as_second()).unwrap_or(t))
}

/// The pod conditions the kubelet computes (and so owns) itself.
pub const KUBELET_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "ContainersReady",
    "Ready",
    "PodScheduled",
];

/// Succeeded or Failed: a phase a pod never leaves.
pub fn is_terminal(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pod's status now.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let spec = pod.spec.clone().unwrap_or_default();
    let empty = Vec::new();
    let init_specs = spec.init_containers.as_ref().unwrap_or(&empty);
    let init_done = init_specs.iter().all(|c| {
        input
            .observed
            .latest(&c.name, ContainerKind::Init)
            .is_some_and(ObservedContainer::succeeded)
    });

    let init_statuses: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(input, c, ContainerKind::Init, "PodInitializing"))
        .collect();
    let app_default = if init_done {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let app_statuses: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(input, c, ContainerKind::App, app_default))
        .collect();

    let restart_policy = spec.restart_policy.as_deref().unwrap_or("Always");
    let old_phase = input.old.and_then(|s| s.phase.as_deref());
    let api = pod.status.as_ref();
    let api_phase = api.and_then(|s| s.phase.as_deref());
    let phase = if is_terminal(old_phase) {
        // A terminal phase never changes again.
        old_phase.unwrap_or_default().to_string()
    } else if is_terminal(api_phase) {
        // Nor one the API server shows (after a restart, the API's copy is all we know).
        api_phase.unwrap_or_default().to_string()
    } else if input.pod_failed {
        "Failed".to_string()
    } else if input.terminal && !input.is_static && !input.observed.any_running() {
        let all_ok = app_statuses.iter().all(|s| {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        });
        if all_ok { "Succeeded" } else { "Failed" }.to_string()
    } else {
        phase_of(&init_statuses, &app_statuses, restart_policy).to_string()
    };

    let sandbox = input
        .observed
        .latest_sandbox()
        .filter(|s| s.ready || is_terminal(Some(&phase)));
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ips: Vec<String> = if host_network {
        input.host_ips.to_vec()
    } else {
        sandbox
            .filter(|s| !s.ip.is_empty())
            .map(|s| {
                std::iter::once(s.ip.clone())
                    .chain(s.additional_ips.iter().cloned())
                    .collect()
            })
            .unwrap_or_default()
    };

    // The kubelet keeps the reason and message that came with the phase (Evicted, NodeAffinity,
    // Shutdown, ...) while the phase stays: from our last status, else the API server's.
    let base_phase = input.old.or(api).and_then(|s| s.phase.as_deref());
    let (reason, message) = if base_phase == Some(phase.as_str()) {
        let from = |f: fn(&PodStatus) -> Option<&String>| {
            input
                .old
                .and_then(f)
                .filter(|v| !v.is_empty())
                .or_else(|| api.and_then(f).filter(|v| !v.is_empty()))
                .cloned()
        };
        (from(|s| s.reason.as_ref()), from(|s| s.message.as_ref()))
    } else {
        (None, None)
    };
    let conditions = conditions(input, &phase, init_specs, &init_statuses, &app_statuses);
    let old_start = input.old.and_then(|s| s.start_time.clone());
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: input.host_ips.first().cloned(),
        host_ips: (!input.host_ips.is_empty()).then(|| {
            input
                .host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: (!pod_ips.is_empty())
            .then(|| pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: Some(old_start.unwrap_or_else(|| whole_seconds(input.now))),
        qos_class: Some(super::resources::qos_class(pod).to_string()),
        init_container_statuses: (!init_specs.is_empty()).then_some(init_statuses),
        container_statuses: Some(app_statuses),
        reason,
        message,
        ..Default::default()
    }
}

fn terminated(c: &ObservedContainer, runtime: &str) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: c.exit_code,
            reason: Some(if c.reason.is_empty() {
                if c.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string()
            } else {
                c.reason.clone()
            }),
            message: (!c.message.is_empty()).then(|| c.message.clone()),
            started_at: time_from_nanos(c.started_at),
            finished_at: time_from_nanos(c.finished_at),
            container_id: Some(format!("{runtime}://{}", c.id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_status(
    input: &StatusInput<'_>,
    spec: &Container,
    kind: ContainerKind,
    default_reason: &str,
) -> ContainerStatus {
    let obs = input.observed;
    let latest = obs.latest(&spec.name, kind);
    let previous = obs.previous(&spec.name, kind);
    let rt = input.runtime_name;
    let mut status = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        restart_count: latest.map_or(0, |c| c.restart_count as i32),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    if let Some(c) = latest {
        status.container_id = Some(format!("{rt}://{}", c.id));
        status.image_id = c.image_ref.clone();
        if !c.image.is_empty() {
            status.image = c.image.clone();
        }
    }
    status.last_state = previous
        .filter(|p| p.exited())
        .map(|p| terminated(p, rt))
        .or_else(|| Some(ContainerState::default()));
    match latest.map(|c| c.state) {
        Some(RunState::Running) => {
            let c = latest.expect("matched Some");
            let started = !input.not_started.contains(&c.id);
            status.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: time_from_nanos(c.started_at),
                }),
                ..Default::default()
            });
            status.started = Some(started);
            // An init container is ready once it has completed, not while it runs; a
            // restarted one once it has outlived its first relist period.
            status.ready = kind == ContainerKind::App
                && started
                && settle_left(c, input.now).is_none()
                && input.readiness.get(&c.id).copied().unwrap_or(true);
        }
        Some(RunState::Exited) => {
            let c = latest.expect("matched Some");
            status.state = Some(terminated(c, rt));
            status.ready = kind == ContainerKind::Init && c.exit_code == 0;
        }
        _ => status.state = Some(waiting(default_reason, None)),
    }
    // A start that failed or is held back: the container waits, and what it ran last moves to
    // lastState (the kubelet's handling of its sync results).
    if let Some(w) = input.waiting.get(&spec.name) {
        if latest.is_none_or(|c| !c.is_running()) {
            if let Some(state) = status.state.take() {
                if state.terminated.is_some() {
                    status.last_state = Some(state);
                }
            }
            status.state = Some(waiting(&w.reason, Some(&w.message)));
        }
    }
    status
}

/// The kubelet's `getPhase`.
fn phase_of(
    init: &[ContainerStatus],
    app: &[ContainerStatus],
    restart_policy: &str,
) -> &'static str {
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else {
            let last_failed = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0);
            if last_failed {
                failed_init += 1;
            } else {
                pending_init += 1;
            }
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if s
            .last_state
            .as_ref()
            .is_some_and(|l| l.terminated.is_some())
        {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    if failed_init > 0 && restart_policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if restart_policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if restart_policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn conditions(
    input: &StatusInput<'_>,
    phase: &str,
    init_specs: &[Container],
    init: &[ContainerStatus],
    app: &[ContainerStatus],
) -> Vec<PodCondition> {
    let old = |t: &str| {
        input
            .old
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
    };
    let make = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" }.to_string();
        let prev = old(t);
        let last_transition_time = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(whole_seconds(input.now)),
        };
        PodCondition {
            type_: t.to_string(),
            status,
            reason: reason.map(str::to_string),
            message,
            last_transition_time,
            last_probe_time: None,
            observed_generation: None,
        }
    };

    let sandbox_ready = input.observed.latest_sandbox().is_some_and(|s| s.ready);
    // Conditions the kubelet does not own (DisruptionTarget, readiness gates set by
    // controllers, any custom type) are kept as the API server has them.
    let mut out: Vec<PodCondition> = foreign_conditions(input);
    out.push(make("PodReadyToStartContainers", sandbox_ready, None, None));

    let initialized = initialized_condition(init_specs, init, app, phase);
    out.push(make(
        "Initialized",
        initialized.ok,
        initialized.reason,
        initialized.message,
    ));
    let containers_ready = containers_ready_condition(app, phase);
    let ready = ready_condition(
        &containers_ready,
        input
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.readiness_gates.as_deref()),
        &out,
    );
    out.push(make("Ready", ready.ok, ready.reason, ready.message));
    out.push(make(
        "ContainersReady",
        containers_ready.ok,
        containers_ready.reason,
        containers_ready.message,
    ));
    // The kubelet always reports PodScheduled (static pods never meet a scheduler).
    out.push(make("PodScheduled", true, None, None));
    out
}

/// A condition's value before its transition time is kept or set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Computed {
    ok: bool,
    reason: Option<&'static str>,
    message: Option<String>,
}

impl Computed {
    fn yes() -> Computed {
        Computed {
            ok: true,
            reason: None,
            message: None,
        }
    }

    fn no(reason: &'static str, message: Option<String>) -> Computed {
        Computed {
            ok: false,
            reason: Some(reason),
            message,
        }
    }
}

/// The conditions of the API server's copy of the pod that the kubelet does not own (in
/// standalone mode, where there is no API copy, those of the last computed status).
fn foreign_conditions(input: &StatusInput<'_>) -> Vec<PodCondition> {
    let source = match input.pod.status.as_ref() {
        Some(s) => Some(s),
        None => input.old,
    };
    source
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| !KUBELET_CONDITIONS.contains(&c.type_.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Go's `fmt.Sprintf("%s", []string)`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// The kubelet's `GeneratePodInitializedCondition`.
fn initialized_condition(
    init_specs: &[Container],
    init: &[ContainerStatus],
    app: &[ContainerStatus],
    phase: &str,
) -> Computed {
    if phase == "Succeeded" {
        return Computed {
            ok: true,
            reason: Some("PodCompleted"),
            message: None,
        };
    }
    // A regular container that has run means the pod was initialized before.
    let app_started = app.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if app_started {
        return Computed::yes();
    }
    let incomplete: Vec<&str> = init_specs
        .iter()
        .zip(init)
        .filter(|(_, s)| !s.ready)
        .map(|(c, _)| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        Computed::yes()
    } else {
        Computed::no(
            "ContainersNotInitialized",
            Some(format!(
                "containers with incomplete status: {}",
                go_list(&incomplete)
            )),
        )
    }
}

/// The kubelet's `GenerateContainersReadyCondition`.
fn containers_ready_condition(app: &[ContainerStatus], phase: &str) -> Computed {
    match phase {
        "Succeeded" => return Computed::no("PodCompleted", None),
        "Failed" => return Computed::no("PodFailed", None),
        _ => {}
    }
    let unready: Vec<&str> = app
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    if unready.is_empty() {
        Computed::yes()
    } else {
        Computed::no(
            "ContainersNotReady",
            Some(format!(
                "containers with unready status: {}",
                go_list(&unready)
            )),
        )
    }
}

/// The kubelet's `GeneratePodReadyCondition`: ContainersReady, then every readiness gate's
/// condition True among `conditions` (the API server's copy, as the kubelet reads them).
fn ready_condition(
    containers_ready: &Computed,
    gates: Option<&[PodReadinessGate]>,
    conditions: &[PodCondition],
) -> Computed {
    if !containers_ready.ok {
        return containers_ready.clone();
    }
    let unready: Vec<String> = gates
        .unwrap_or_default()
        .iter()
        .filter_map(|g| {
            let t = &g.condition_type;
            match conditions.iter().find(|c| &c.type_ == t) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {t:?} does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate {t:?} is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if unready.is_empty() {
        Computed::yes()
    } else {
        Computed::no("ReadinessGatesNotReady", Some(unready.join(", ")))
    }
}

/// The kubelet's `NeedToReconcilePodReadiness`: the pod has readiness gates and the Ready
/// condition the API server has no longer matches what they and the containers say (a gate's
/// condition was set by a controller). Such a status-only update asks for a sync.
pub fn needs_readiness_reconcile(pod: &Pod) -> bool {
    let Some(gates) = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .filter(|g| !g.is_empty())
    else {
        return false;
    };
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let Some(current) = conditions.iter().find(|c| c.type_ == "Ready") else {
        return false;
    };
    let app = status.container_statuses.as_deref().unwrap_or_default();
    let phase = status.phase.as_deref().unwrap_or_default();
    let want = ready_condition(
        &containers_ready_condition(app, phase),
        Some(gates),
        conditions,
    );
    let want_status = if want.ok { "True" } else { "False" };
    current.status != want_status || current.message != want.message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::ObservedSandbox;

    const T0: i64 = 1_800_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox:1.36"});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": init.iter().map(c).collect::<Vec<_>>(),
                "containers": app.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn ctr(
        name: &str,
        kind: ContainerKind,
        restart: u32,
        state: RunState,
        exit: i32,
    ) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}{restart}"),
            sandbox_id: "sb".into(),
            name: name.into(),
            kind,
            restart_count: restart,
            hash: "h".into(),
            state,
            exit_code: exit,
            reason: match (state, exit) {
                (RunState::Exited, 0) => "Completed".into(),
                (RunState::Exited, _) => "Error".into(),
                _ => String::new(),
            },
            message: String::new(),
            created_at: T0 + restart as i64 * 10 * SEC,
            started_at: T0 + restart as i64 * 10 * SEC + SEC,
            finished_at: if state == RunState::Exited {
                T0 + restart as i64 * 10 * SEC + 2 * SEC
            } else {
                0
            },
            image: "docker.io/library/busybox:1.36".into(),
            image_ref: "sha256:abc".into(),
            log_path: String::new(),
        }
    }

    struct Case {
        pod: Pod,
        observed: ObservedPod,
        waiting: HashMap<String, Waiting>,
        readiness: HashMap<String, bool>,
        old: Option<PodStatus>,
        pod_failed: bool,
        terminal: bool,
        now: Timestamp,
    }

    impl Case {
        fn new(pod: Pod, containers: Vec<ObservedContainer>) -> Case {
            let mut observed = ObservedPod {
                sandboxes: vec![ObservedSandbox {
                    id: "sb".into(),
                    ready: true,
                    ip: "10.88.0.7".into(),
                    created_at: T0,
                    ..Default::default()
                }],
                containers,
            };
            observed.sort();
            Case {
                pod,
                observed,
                waiting: HashMap::new(),
                readiness: HashMap::new(),
                old: None,
                pod_failed: false,
                terminal: false,
                now: Timestamp::from_second(1_800_000_100).unwrap(),
            }
        }

        fn status(&self) -> PodStatus {
            pod_status(&StatusInput {
                pod: &self.pod,
                observed: &self.observed,
                old: self.old.as_ref(),
                waiting: &self.waiting,
                readiness: &self.readiness,
                not_started: &BTreeSet::new(),
                host_ips: &["192.0.2.10".to_string()],
                runtime_name: "containerd",
                pod_failed: self.pod_failed,
                is_static: false,
                terminal: self.terminal,
                now: self.now,
            })
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    use ContainerKind::{App, Init};
    use RunState::{Exited, Running};

    #[test]
    fn a_running_pod_reports_running_ready_and_its_ips() {
        let s = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        )
        .status();
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.7"));
        assert_eq!(s.host_ip.as_deref(), Some("192.0.2.10"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        for t in [
            "PodReadyToStartContainers",
            "Initialized",
            "ContainersReady",
            "Ready",
        ] {
            assert_eq!(cond(&s, t).status, "True", "{t}");
        }
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert!(cs.ready && cs.started == Some(true));
        assert_eq!(cs.container_id.as_deref(), Some("containerd://a0"));
        assert_eq!(cs.image, "docker.io/library/busybox:1.36");
        assert_eq!(cs.image_id, "sha256:abc");
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            time_from_nanos(T0 + SEC)
        );
    }

    #[test]
    fn a_new_pod_is_pending_with_container_creating() {
        let s = Case::new(pod("Always", &[], &["a"]), vec![]).status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("ContainerCreating")
        );
        let ready = cond(&s, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some("ContainersNotReady"))
        );
        assert_eq!(
            ready.message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn completed_under_never_is_succeeded_with_completed_reason() {
        let s = Case::new(pod("Never", &[], &["a"]), vec![ctr("a", App, 0, Exited, 0)]).status();
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let failed =
            Case::new(pod("Never", &[], &["a"]), vec![ctr("a", App, 0, Exited, 1)]).status();
        assert_eq!(failed.phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn crash_loop_waits_with_last_state_and_restart_count() {
        let mut c = Case::new(
            pod("OnFailure", &[], &["a"]),
            vec![ctr("a", App, 0, Exited, 1), ctr("a", App, 1, Exited, 1)],
        );
        c.waiting.insert(
            "a".into(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 20s restarting failed container=a pod=p_ns(u1)".into(),
            },
        );
        let s = c.status();
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        let w = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(
            (last.exit_code, last.container_id.as_deref()),
            (1, Some("containerd://a1"))
        );
        assert_eq!(
            s.phase.as_deref(),
            Some("Running"),
            "OnFailure restarting: Running, as the kubelet says"
        );
    }

    #[test]
    fn a_running_restarted_container_shows_the_previous_exit_as_last_state() {
        let s = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Exited, 2), ctr("a", App, 1, Running, 0)],
        )
        .status();
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.restart_count, 1);
        assert_eq!(
            cs.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            2
        );
    }

    #[test]
    fn init_containers_block_with_pod_initializing() {
        let s = Case::new(
            pod("Always", &["i1", "i2"], &["a"]),
            vec![ctr("i1", Init, 0, Running, 0)],
        )
        .status();
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [i1 i2]")
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let i1 = &s.init_container_statuses.as_ref().unwrap()[0];
        assert!(!i1.ready, "a running init container is not ready");
        let i2 = &s.init_container_statuses.as_ref().unwrap()[1];
        assert_eq!(
            i2.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
    }

    #[test]
    fn image_pull_errors_show_as_waiting_reasons() {
        let mut c = Case::new(pod("Always", &[], &["a"]), vec![]);
        c.waiting.insert(
            "a".into(),
            Waiting {
                reason: "ErrImagePull".into(),
                message: "401 Unauthorized".into(),
            },
        );
        let s = c.status();
        let w = s.container_statuses.unwrap()[0]
            .state
            .clone()
            .unwrap()
            .waiting
            .unwrap();
        assert_eq!(
            (w.reason.as_deref(), w.message.as_deref()),
            (Some("ErrImagePull"), Some("401 Unauthorized"))
        );
    }

    #[test]
    fn transition_times_are_kept_while_conditions_do_not_change() {
        let mut c = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        );
        let mut old = c.status();
        let earlier = Time(Timestamp::from_second(1_700_000_000).unwrap());
        for cond in old.conditions.as_mut().unwrap() {
            cond.last_transition_time = Some(earlier.clone());
        }
        old.start_time = Some(earlier.clone());
        c.old = Some(old);
        let s = c.status();
        assert_eq!(
            cond(&s, "Ready").last_transition_time,
            Some(earlier.clone())
        );
        assert_eq!(s.start_time, Some(earlier.clone()));
        c.readiness.insert("a0".into(), false);
        let s = c.status();
        assert_ne!(cond(&s, "Ready").last_transition_time, Some(earlier));
        assert_eq!(cond(&s, "Ready").status, "False");
    }

    #[test]
    fn a_terminal_phase_never_changes() {
        let mut c = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        );
        c.old = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        assert_eq!(c.status().phase.as_deref(), Some("Failed"));
        c.old = None;
        c.pod_failed = true;
        assert_eq!(c.status().phase.as_deref(), Some("Failed"));
    }

    #[test]
    fn a_deleted_pod_whose_containers_stopped_is_terminal() {
        let mut c = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Exited, 137)],
        );
        assert_eq!(
            c.status().phase.as_deref(),
            Some("Running"),
            "Always: restarting"
        );
        c.terminal = true;
        assert_eq!(c.status().phase.as_deref(), Some("Failed"));
        let mut ok = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Exited, 0)],
        );
        ok.terminal = true;
        assert_eq!(ok.status().phase.as_deref(), Some("Succeeded"));
    }

    #[test]
    fn a_terminal_phase_in_the_api_stays_with_its_reason_and_message() {
        // After a restart the API server's copy is the only memory of an eviction: the pod's
        // container exited under Always, yet the pod stays Failed/Evicted (generateAPIPodStatus).
        let mut c = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Exited, 0)],
        );
        let evicted = PodStatus {
            phase: Some("Failed".into()),
            reason: Some("Evicted".into()),
            message: Some("The node was low on resource: memory. ".into()),
            ..Default::default()
        };
        c.pod.status = Some(evicted.clone());
        let s = c.status();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason, evicted.reason);
        assert_eq!(s.message, evicted.message);
        // Our own last status (without a reason) wins for the phase; the API's reason fills in.
        c.old = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        assert_eq!(c.status().reason.as_deref(), Some("Evicted"));
        // A phase that changes drops the reason that came with the old one.
        let mut running = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        );
        running.old = Some(PodStatus {
            phase: Some("Pending".into()),
            reason: Some("SomeReason".into()),
            ..Default::default()
        });
        assert_eq!(running.status().phase.as_deref(), Some("Running"));
        assert_eq!(running.status().reason, None);
    }

    #[test]
    fn conditions_owned_by_others_are_kept() {
        let mut c = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        );
        let scheduled = PodCondition {
            type_: "PodScheduled".into(),
            status: "True".into(),
            last_transition_time: Some(Time(Timestamp::from_second(1_700_000_000).unwrap())),
            ..Default::default()
        };
        let gate = PodCondition {
            type_: "example.com/gate".into(),
            status: "False".into(),
            ..Default::default()
        };
        c.old = Some(PodStatus {
            conditions: Some(vec![scheduled.clone(), gate.clone()]),
            ..Default::default()
        });
        let s = c.status();
        assert_eq!(cond(&s, "PodScheduled"), &scheduled);
        assert_eq!(cond(&s, "example.com/gate"), &gate);
        assert_eq!(
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .filter(|c| c.type_ == "PodScheduled")
                .count(),
            1
        );
    }

    fn with_gate(mut p: Pod, gate: &str, condition: Option<&str>) -> Pod {
        let spec = p.spec.as_mut().unwrap();
        spec.readiness_gates = Some(vec![PodReadinessGate {
            condition_type: gate.into(),
        }]);
        p.status = Some(PodStatus {
            conditions: condition.map(|st| {
                vec![PodCondition {
                    type_: gate.into(),
                    status: st.into(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        p
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_condition_is_true() {
        let running = || vec![ctr("a", App, 0, Running, 0)];
        let missing = Case::new(
            with_gate(pod("Always", &[], &["a"]), "example.com/lb", None),
            running(),
        )
        .status();
        let ready = cond(&missing, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("ReadinessGatesNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some(
                "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
            )
        );
        assert_eq!(cond(&missing, "ContainersReady").status, "True");

        let unready = Case::new(
            with_gate(pod("Always", &[], &["a"]), "example.com/lb", Some("False")),
            running(),
        )
        .status();
        assert_eq!(
            cond(&unready, "Ready").message.as_deref(),
            Some("the status of pod readiness gate \"example.com/lb\" is not \"True\", but False")
        );

        let open = Case::new(
            with_gate(pod("Always", &[], &["a"]), "example.com/lb", Some("True")),
            running(),
        )
        .status();
        assert_eq!(cond(&open, "Ready").status, "True");
        // The gate's own condition is the API server's, kept as it is.
        assert_eq!(cond(&open, "example.com/lb").status, "True");
    }

    #[test]
    fn conditions_of_others_come_from_the_api_servers_copy() {
        // Our last status knew no DisruptionTarget; the API server's copy of the pod has it.
        let mut p = pod("Always", &[], &["a"]);
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("EvictionByEvictionAPI".into()),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let mut c = Case::new(p, vec![ctr("a", App, 0, Running, 0)]);
        c.old = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "example.com/stale".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let s = c.status();
        assert_eq!(cond(&s, "DisruptionTarget").status, "True");
        assert!(s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .all(|c| c.type_ != "example.com/stale"));
    }

    #[test]
    fn terminal_pods_say_pod_failed_or_pod_completed() {
        let mut failed = Case::new(pod("Never", &[], &["a"]), vec![ctr("a", App, 0, Exited, 1)]);
        failed.observed.sandboxes[0].ready = false;
        let s = failed.status();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        for t in ["Ready", "ContainersReady"] {
            let c = cond(&s, t);
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("False", Some("PodFailed"))
            );
            assert_eq!(c.message, None);
        }
        let done = Case::new(pod("Never", &[], &["a"]), vec![ctr("a", App, 0, Exited, 0)]).status();
        assert_eq!(done.phase.as_deref(), Some("Succeeded"));
        for t in ["Ready", "ContainersReady"] {
            assert_eq!(cond(&done, t).reason.as_deref(), Some("PodCompleted"));
        }
        // The kubelet says PodCompleted on Initialized of every succeeded pod.
        assert_eq!(
            cond(&done, "Initialized").reason.as_deref(),
            Some("PodCompleted")
        );
    }

    #[test]
    fn readiness_reconcile_is_needed_only_when_ready_disagrees_with_the_gates() {
        let api_pod = |gate: Option<&str>, ready: &str, message: Option<&str>| {
            let mut conditions =
                vec![serde_json::json!({"type": "Ready", "status": ready, "message": message})];
            if let Some(g) = gate {
                conditions.push(serde_json::json!({"type": "example.com/lb", "status": g}));
            }
            serde_json::from_value::<Pod>(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
                "spec": {"containers": [{"name": "a", "image": "busybox"}],
                         "readinessGates": [{"conditionType": "example.com/lb"}]},
                "status": {"phase": "Running", "conditions": conditions,
                           "containerStatuses": [{"name": "a", "ready": true, "restartCount": 0, "image": "b", "imageID": ""}]}
            }))
            .unwrap()
        };
        let missing =
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist.";
        assert!(!needs_readiness_reconcile(&api_pod(
            None,
            "False",
            Some(missing)
        )));
        assert!(needs_readiness_reconcile(&api_pod(
            Some("True"),
            "False",
            Some(missing)
        )));
        assert!(!needs_readiness_reconcile(&api_pod(
            Some("True"),
            "True",
            None
        )));
        assert!(needs_readiness_reconcile(&api_pod(
            Some("False"),
            "True",
            None
        )));
        // No gates: never.
        let mut plain = api_pod(Some("True"), "False", Some(missing));
        plain.spec.as_mut().unwrap().readiness_gates = None;
        assert!(!needs_readiness_reconcile(&plain));
    }

    #[test]
    fn a_restarted_container_is_ready_only_once_it_outlived_a_relist_period() {
        let restarted = ctr("a", App, 3, Running, 0);
        let started = restarted.started_at;
        let mut case = Case::new(pod("Always", &[], &["a"]), vec![restarted]);
        let at = |nanos: i64| Timestamp::from_nanosecond(i128::from(nanos)).unwrap();
        case.now = at(started + SEC / 2);
        let s = case.status();
        assert!(!s.container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            next_settled(&case.observed, case.now),
            Some(Duration::from_millis(500))
        );
        case.now = at(started + SEC);
        assert!(case.status().container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(next_settled(&case.observed, case.now), None);

        // A first start is Ready at once.
        let mut first = Case::new(
            pod("Always", &[], &["a"]),
            vec![ctr("a", App, 0, Running, 0)],
        );
        first.now = at(first.observed.containers[0].started_at + 1);
        assert!(first.status().container_statuses.as_ref().unwrap()[0].ready);
        assert_eq!(next_settled(&first.observed, first.now), None);
    }
}
