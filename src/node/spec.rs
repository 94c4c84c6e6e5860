//! The Node object, its conditions, the `/status` patch and when to send it, and the node Lease:
//! pure builders with every time and host fact passed in.
//!
//! Owns what a kubelet writes about itself and the rules for when (kubelet 1.28 is the reference:
//! `kubelet_node_status.go`, `nodestatus/setters.go`, `component-helpers/apimachinery/lease`):
//! - registration: [`node_object`] (labels from [`super::labels`], the provider taint, capacity,
//!   allocatable, addresses, daemon endpoint, nodeInfo, conditions);
//! - every sync: [`node_status`] from the previous status, then [`status_report`] (or its parts
//!   [`status_changed`], [`should_report`], [`node_status_patch`]) decides whether to PATCH
//!   `/status` and with what strategic-merge body;
//! - liveness: [`lease_object`] once, then [`renew`] every [`LEASE_RENEW_INTERVAL`];
//! - allocatable: one computation ([`SetAside`] from capacity) for the Node's status and for the
//!   downward API's defaults ([`node_allocatable`]).
//!
//! Must not send requests, read the clock or the host, or log: the heartbeat loop does those and
//! logs once, where it decides.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Map, Value};

use super::host::{HostFacts, HostUsage};
use super::quantity::{Amount, Format};
use super::NodeError;

/// The Kubernetes version whose kubelet behaviour we implement (and whose API server the
/// fixtures were recorded against).
pub const KUBELET_COMPAT_VERSION: &str = "v1.28.7";

/// `nodeInfo.kubeletVersion` (and the deprecated `kubeProxyVersion`, which kubelet 1.28 also
/// fills with its own version): `v1.28.7-vk-cri-<crate version>`.
///
/// Why this shape: `kubectl get nodes` prints it verbatim in VERSION, and controllers that
/// compare kubelet versions parse it as semver. It must start with the Kubernetes version whose
/// behaviour we implement so that those comparisons hold (`v1.28.7-…` is a 1.28 kubelet, newer
/// than any 1.27); the pre-release part (`vk-cri-0.1.0`, valid semver) says which virtual kubelet
/// it really is, as other virtual kubelets do (`v1.25.0-vk-azure-aci-…`). The API server does not
/// validate the field.
pub fn kubelet_version() -> String {
    format!(
        "{KUBELET_COMPAT_VERSION}-vk-cri-{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// The kubelet's default port.
pub const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Key of the taint a virtual kubelet registers with, so only pods that tolerate it land here.
pub const PROVIDER_TAINT_KEY: &str = "virtual-kubelet.io/provider";
/// Value of that taint: our provider's name.
pub const PROVIDER_TAINT_VALUE: &str = "cri";
/// Namespace of node Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The kubelet's default `nodeLeaseDurationSeconds`.
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// How often the default Lease is renewed: a quarter of its duration, as the kubelet does.
pub const LEASE_RENEW_INTERVAL: Duration = Duration::from_secs(10);
/// How often node status is computed (`--node-status-update-frequency`).
pub const NODE_STATUS_UPDATE_FREQUENCY: Duration = Duration::from_secs(10);
/// How often an unchanged status is still reported (`nodeStatusReportFrequency`).
pub const NODE_STATUS_REPORT_FREQUENCY: Duration = Duration::from_secs(5 * 60);

/// Node condition types we own.
pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_MEMORY_PRESSURE: &str = "MemoryPressure";
pub const CONDITION_DISK_PRESSURE: &str = "DiskPressure";
pub const CONDITION_PID_PRESSURE: &str = "PIDPressure";

/// Resources set aside from capacity (`--kube-reserved`, `--system-reserved`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reserved {
    pub cpu: Amount,
    pub memory: Amount,
    pub ephemeral_storage: Amount,
    /// Accepted as the kubelet does; there is no `pid` capacity to take it from.
    pub pid: Amount,
}

/// Parses `cpu=100m,memory=256Mi,ephemeral-storage=1Gi,pid=100` as the kubelet's
/// `ParseResourceList`: only those four names, no negative amounts; empty is nothing reserved.
pub fn parse_reserved(input: &str) -> Result<Reserved, NodeError> {
    let err = |reason: String| NodeError::Reserved {
        input: input.to_string(),
        reason,
    };
    let mut out = Reserved::default();
    if input.trim().is_empty() {
        return Ok(out);
    }
    for pair in input.split(',') {
        let pair = pair.trim();
        let Some((name, value)) = pair.split_once('=') else {
            return Err(err(format!("{pair:?} is not name=quantity")));
        };
        let name = name.trim();
        let amount = Amount::parse(value.trim()).map_err(|e| err(e.to_string()))?;
        if amount.is_negative() {
            return Err(err(format!("{name} cannot be negative")));
        }
        match name {
            "cpu" => out.cpu = amount,
            "memory" => out.memory = amount,
            "ephemeral-storage" => out.ephemeral_storage = amount,
            "pid" => out.pid = amount,
            other => {
                return Err(err(format!(
                    "cannot reserve {other:?}: only cpu, memory, ephemeral-storage and pid"
                )));
            }
        }
    }
    Ok(out)
}

/// An eviction threshold: an absolute amount, or a percentage of capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threshold {
    Absolute(u64),
    Percent(u8),
}

impl Threshold {
    /// The threshold as an amount of `capacity` (percentages round down).
    pub fn of(self, capacity: u64) -> u64 {
        match self {
            Threshold::Absolute(v) => v,
            Threshold::Percent(p) => {
                u64::try_from(u128::from(capacity) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        }
    }
}

/// Hard eviction thresholds: below them the node reports pressure. They are also held back from
/// allocatable (memory, ephemeral-storage), as the kubelet's `hardEvictionReservation` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionThresholds {
    /// `memory.available`.
    pub memory_available: Option<Threshold>,
    /// `nodefs.available`.
    pub nodefs_available: Option<Threshold>,
    /// `nodefs.inodesFree`.
    pub nodefs_inodes_free: Option<Threshold>,
    /// `pid.available`: the kubelet has no default, so PIDPressure stays False unless set.
    pub pid_available: Option<Threshold>,
}

impl Default for EvictionThresholds {
    /// The kubelet's Linux `DefaultEvictionHard`: `memory.available<100Mi`,
    /// `nodefs.available<10%`, `nodefs.inodesFree<5%` (`imagefs.available<15%` belongs to the
    /// runtime's image filesystem, which we do not watch).
    fn default() -> Self {
        EvictionThresholds {
            memory_available: Some(Threshold::Absolute(100 << 20)),
            nodefs_available: Some(Threshold::Percent(10)),
            nodefs_inodes_free: Some(Threshold::Percent(5)),
            pid_available: None,
        }
    }
}

impl EvictionThresholds {
    /// No thresholds: never pressure, nothing held back.
    pub fn none() -> Self {
        EvictionThresholds {
            memory_available: None,
            nodefs_available: None,
            nodefs_inodes_free: None,
            pid_available: None,
        }
    }
}

/// Which resources are under pressure now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// Compares the usage with the thresholds (`available < threshold` is pressure).
pub fn pressure(usage: &HostUsage, thresholds: &EvictionThresholds) -> Pressure {
    let below = |available: u64, capacity: u64, t: Option<Threshold>| {
        t.is_some_and(|t| capacity > 0 && available < t.of(capacity))
    };
    let pid = match (usage.pid_max, usage.pids_running) {
        (Some(max), Some(running)) => {
            below(max.saturating_sub(running), max, thresholds.pid_available)
        }
        _ => false,
    };
    Pressure {
        memory: below(
            usage.memory_available,
            usage.memory_total,
            thresholds.memory_available,
        ),
        disk: below(
            usage.fs_available,
            usage.fs_capacity,
            thresholds.nodefs_available,
        ) || below(
            usage.fs_inodes_free,
            usage.fs_inodes,
            thresholds.nodefs_inodes_free,
        ),
        pid,
    }
}

/// What the container runtime says about itself (CRI `Status`), for the Ready condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeReadiness {
    pub ready: bool,
    /// Why not ready, as the kubelet words it (e.g. `container runtime network not ready:
    /// NetworkReady=false reason:NetworkPluginNotReady message:…`); ignored when ready.
    pub message: String,
}

impl RuntimeReadiness {
    pub fn ready() -> Self {
        RuntimeReadiness {
            ready: true,
            message: String::new(),
        }
    }

    pub fn not_ready(message: impl Into<String>) -> Self {
        RuntimeReadiness {
            ready: false,
            message: message.into(),
        }
    }
}

/// Everything about the Node that comes from configuration rather than the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeParams {
    pub name: String,
    /// From [`super::labels::node_labels`], which has already refused forbidden keys.
    pub labels: BTreeMap<String, String>,
    /// Register with `virtual-kubelet.io/provider=cri:NoSchedule`. A node may set taints only at
    /// creation (fixture 04m), so this is decided once.
    pub provider_taint: bool,
    /// The InternalIP. A loopback address works for a single-host cluster only; the caller
    /// warns (see [`is_loopback`]).
    pub node_ip: IpAddr,
    pub kubelet_port: u16,
    pub max_pods: u32,
    pub kube_reserved: Reserved,
    pub system_reserved: Reserved,
    pub eviction: EvictionThresholds,
    /// `<runtime name>://<version>` from CRI `Version`, e.g. `containerd://1.6.20`.
    pub container_runtime_version: String,
    /// The Lease's `leaseDurationSeconds` (`nodeLeaseDurationSeconds`, 40); the agent renews
    /// it every quarter of that ([`renew_interval`]).
    pub lease_duration_seconds: i32,
}

impl NodeParams {
    /// Kubelet defaults for everything not given: port 10250, 110 pods, the provider taint,
    /// nothing reserved, the default eviction thresholds.
    pub fn new(
        name: &str,
        labels: BTreeMap<String, String>,
        node_ip: IpAddr,
        container_runtime_version: &str,
    ) -> NodeParams {
        NodeParams {
            name: name.to_string(),
            labels,
            provider_taint: true,
            node_ip,
            kubelet_port: DEFAULT_KUBELET_PORT,
            max_pods: DEFAULT_MAX_PODS,
            kube_reserved: Reserved::default(),
            system_reserved: Reserved::default(),
            eviction: EvictionThresholds::default(),
            container_runtime_version: container_runtime_version.to_string(),
            lease_duration_seconds: LEASE_DURATION_SECONDS,
        }
    }
}

/// How often a Lease of `lease_duration_seconds` is renewed: a quarter of it, as the kubelet's
/// `renewInterval` (10 s for the default 40 s).
pub fn renew_interval(lease_duration_seconds: i32) -> Duration {
    Duration::from_millis(u64::try_from(lease_duration_seconds).unwrap_or(1).max(1) * 250)
}

/// True for 127.0.0.0/8 and ::1: the API server can reach such a node only from the same host.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

/// The taint a virtual kubelet registers with.
pub fn provider_taint() -> Taint {
    Taint {
        key: PROVIDER_TAINT_KEY.to_string(),
        value: Some(PROVIDER_TAINT_VALUE.to_string()),
        effect: "NoSchedule".to_string(),
        time_added: None,
    }
}

/// The node's addresses: its InternalIP and its name as Hostname (what the serving certificate
/// is asked for, too).
pub fn addresses(name: &str, node_ip: std::net::IpAddr) -> Vec<NodeAddress> {
    vec![
        NodeAddress {
            type_: "InternalIP".to_string(),
            address: node_ip.to_string(),
        },
        NodeAddress {
            type_: "Hostname".to_string(),
            address: name.to_string(),
        },
    ]
}

/// The Node to POST at registration.
pub fn node_object(
    params: &NodeParams,
    facts: &HostFacts,
    runtime: &RuntimeReadiness,
    now: Timestamp,
) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(params.name.clone()),
            labels: Some(params.labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: params.provider_taint.then(|| vec![provider_taint()]),
            ..NodeSpec::default()
        }),
        status: Some(node_status(None, params, facts, runtime, now)),
    }
}

/// The status we want the Node to have now, starting from `prev` (the Node as last read, so
/// fields other writers own, such as `volumesAttached` or conditions of other types, stay as
/// they are).
pub fn node_status(
    prev: Option<&NodeStatus>,
    params: &NodeParams,
    facts: &HostFacts,
    runtime: &RuntimeReadiness,
    now: Timestamp,
) -> NodeStatus {
    let pressure = pressure(&facts.usage, &params.eviction);
    node_status_with(prev, params, facts, runtime, pressure, now)
}

/// [`node_status`] with the pressure conditions as the eviction manager sees them.
pub fn node_status_with(
    prev: Option<&NodeStatus>,
    params: &NodeParams,
    facts: &HostFacts,
    runtime: &RuntimeReadiness,
    pressure: Pressure,
    now: Timestamp,
) -> NodeStatus {
    let mut status = prev.cloned().unwrap_or_default();
    let (capacity, allocatable) = capacity_and_allocatable(params, facts);
    status.capacity = Some(capacity);
    status.allocatable = Some(allocatable);
    status.addresses = Some(addresses(&params.name, params.node_ip));
    status.daemon_endpoints = Some(NodeDaemonEndpoints {
        kubelet_endpoint: Some(DaemonEndpoint {
            port: i32::from(params.kubelet_port),
        }),
    });
    let id = &facts.identity;
    status.node_info = Some(NodeSystemInfo {
        architecture: id.architecture.clone(),
        boot_id: id.boot_id.clone(),
        container_runtime_version: params.container_runtime_version.clone(),
        kernel_version: id.kernel_version.clone(),
        kube_proxy_version: kubelet_version(),
        kubelet_version: kubelet_version(),
        machine_id: id.machine_id.clone(),
        operating_system: id.operating_system.clone(),
        os_image: id.os_image.clone(),
        swap: None,
        system_uuid: id.system_uuid.clone(),
    });
    status.conditions = Some(conditions(
        prev.and_then(|p| p.conditions.as_deref()),
        pressure,
        runtime,
        now,
    ));
    status
}

/// What is held back from the node's capacity: `--kube-reserved`, `--system-reserved` and the
/// hard eviction thresholds.
#[derive(Clone, Copy, Debug)]
pub struct SetAside<'a> {
    pub kube_reserved: &'a Reserved,
    pub system_reserved: &'a Reserved,
    pub eviction: &'a EvictionThresholds,
}

impl<'a> SetAside<'a> {
    pub fn of(params: &'a NodeParams) -> SetAside<'a> {
        SetAside {
            kube_reserved: &params.kube_reserved,
            system_reserved: &params.system_reserved,
            eviction: &params.eviction,
        }
    }
}

/// The node's allocatable cpu (millicores), memory and ephemeral storage (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
}

/// One resource: its name, capacity, allocatable and print format.
type Row = (&'static str, Amount, Amount, Format);

/// Capacity from the host; allocatable = capacity − kube-reserved − system-reserved − the hard
/// eviction thresholds (memory, ephemeral-storage), never below zero: the kubelet's
/// `GetNodeAllocatableReservation`. The one computation behind the Node's `status.allocatable`
/// and the downward API's defaults ([`node_allocatable`]).
fn resource_rows(aside: SetAside<'_>, max_pods: u32, facts: &HostFacts) -> [Row; 4] {
    let usage = &facts.usage;
    let eviction_memory = aside
        .eviction
        .memory_available
        .map_or(0, |t| t.of(usage.memory_total));
    let eviction_storage = aside
        .eviction
        .nodefs_available
        .map_or(0, |t| t.of(usage.fs_capacity));
    let (kr, sr) = (aside.kube_reserved, aside.system_reserved);
    let row = |name, cap: Amount, reserved: Amount, format| {
        (name, cap, cap.saturating_sub(reserved), format)
    };
    [
        row(
            "cpu",
            Amount::from_units(u64::from(facts.identity.cpu_count)),
            kr.cpu.saturating_add(sr.cpu),
            Format::DecimalSi,
        ),
        row(
            "memory",
            Amount::from_units(usage.memory_total),
            kr.memory
                .saturating_add(sr.memory)
                .saturating_add(Amount::from_units(eviction_memory)),
            Format::BinarySi,
        ),
        row(
            "ephemeral-storage",
            Amount::from_units(usage.fs_capacity),
            kr.ephemeral_storage
                .saturating_add(sr.ephemeral_storage)
                .saturating_add(Amount::from_units(eviction_storage)),
            Format::BinarySi,
        ),
        row(
            "pods",
            Amount::from_units(u64::from(max_pods)),
            Amount::ZERO,
            Format::DecimalSi,
        ),
    ]
}

/// Capacity and allocatable as the Node's status carries them. Memory and storage print in
/// BinarySI, cpu and pods in DecimalSI, as the kubelet's do (`16318412Ki`, `8`, `110`).
fn capacity_and_allocatable(
    params: &NodeParams,
    facts: &HostFacts,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity = BTreeMap::new();
    let mut allocatable = BTreeMap::new();
    for (name, cap, alloc, format) in resource_rows(SetAside::of(params), params.max_pods, facts) {
        capacity.insert(name.to_string(), cap.to_quantity(format));
        allocatable.insert(name.to_string(), alloc.to_quantity(format));
    }
    (capacity, allocatable)
}

/// The node's allocatable cpu, memory and ephemeral storage: what a container's
/// `resourceFieldRef` to a limit it does not set reads (the kubelet merges `node.status.
/// allocatable` into the limits), the same numbers as the Node's `status.allocatable`.
pub fn node_allocatable(aside: SetAside<'_>, facts: &HostFacts) -> NodeAllocatable {
    let mut out = NodeAllocatable::default();
    for (name, _, alloc, _) in resource_rows(aside, 0, facts) {
        let milli = alloc.milli();
        let units = i64::try_from(alloc.units_floor()).unwrap_or(i64::MAX);
        match name {
            "cpu" => out.milli_cpu = i64::try_from(milli).unwrap_or(i64::MAX),
            "memory" => out.memory = units,
            "ephemeral-storage" => out.ephemeral_storage = units,
            _ => {}
        }
    }
    out
}

/// A `metav1.Time` of `now`, truncated to the second as it travels on the wire.
pub(super) fn time(now: Timestamp) -> Time {
    Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
}

/// A `metav1.MicroTime` of `now`, truncated to the microsecond as it travels on the wire.
fn micro_time(now: Timestamp) -> MicroTime {
    let micros = now.as_nanosecond().div_euclid(1000) * 1000;
    MicroTime(Timestamp::from_nanosecond(micros).unwrap_or(now))
}

struct PressureWords {
    type_: &'static str,
    true_reason: &'static str,
    true_message: &'static str,
    false_reason: &'static str,
    false_message: &'static str,
}

const MEMORY_WORDS: PressureWords = PressureWords {
    type_: CONDITION_MEMORY_PRESSURE,
    true_reason: "KubeletHasInsufficientMemory",
    true_message: "kubelet has insufficient memory available",
    false_reason: "KubeletHasSufficientMemory",
    false_message: "kubelet has sufficient memory available",
};
const DISK_WORDS: PressureWords = PressureWords {
    type_: CONDITION_DISK_PRESSURE,
    true_reason: "KubeletHasDiskPressure",
    true_message: "kubelet has disk pressure",
    false_reason: "KubeletHasNoDiskPressure",
    false_message: "kubelet has no disk pressure",
};
const PID_WORDS: PressureWords = PressureWords {
    type_: CONDITION_PID_PRESSURE,
    true_reason: "KubeletHasInsufficientPID",
    true_message: "kubelet has insufficient PID available",
    false_reason: "KubeletHasSufficientPID",
    false_message: "kubelet has sufficient PID available",
};

/// The Node's conditions now, as the kubelet's setters compute them from the previous ones:
/// conditions of other types are kept in place; ours (MemoryPressure, DiskPressure, PIDPressure,
/// Ready, appended in that order when missing so that Ready is last) get `lastHeartbeatTime =
/// now`. A pressure condition keeps its reason, message and `lastTransitionTime` unless its
/// status flips (a missing one counts as Unknown). Ready is rewritten every time (`KubeletReady`
/// "kubelet is posting ready status", or `KubeletNotReady` with the runtime's message) but keeps
/// `lastTransitionTime` while its status is unchanged.
pub fn conditions(
    prev: Option<&[NodeCondition]>,
    pressure: Pressure,
    runtime: &RuntimeReadiness,
    now: Timestamp,
) -> Vec<NodeCondition> {
    let now = time(now);
    let mut out: Vec<NodeCondition> = prev.map(<[NodeCondition]>::to_vec).unwrap_or_default();
    set_pressure(&mut out, &MEMORY_WORDS, pressure.memory, &now);
    set_pressure(&mut out, &DISK_WORDS, pressure.disk, &now);
    set_pressure(&mut out, &PID_WORDS, pressure.pid, &now);

    let (status, reason, message) = if runtime.ready {
        (
            "True",
            "KubeletReady",
            "kubelet is posting ready status".to_string(),
        )
    } else if runtime.message.is_empty() {
        (
            "False",
            "KubeletNotReady",
            "container runtime is not ready".to_string(),
        )
    } else {
        ("False", "KubeletNotReady", runtime.message.clone())
    };
    let mut ready = NodeCondition {
        type_: CONDITION_READY.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    match out.iter_mut().find(|c| c.type_ == CONDITION_READY) {
        Some(existing) => {
            if existing.status == ready.status {
                ready.last_transition_time = existing
                    .last_transition_time
                    .clone()
                    .or(ready.last_transition_time);
            }
            *existing = ready;
        }
        None => out.push(ready),
    }
    out
}

fn set_pressure(out: &mut Vec<NodeCondition>, words: &PressureWords, under: bool, now: &Time) {
    let index = match out.iter().rposition(|c| c.type_ == words.type_) {
        Some(i) => i,
        None => {
            out.push(NodeCondition {
                type_: words.type_.to_string(),
                status: "Unknown".to_string(),
                ..NodeCondition::default()
            });
            out.len() - 1
        }
    };
    let c = &mut out[index];
    c.last_heartbeat_time = Some(now.clone());
    let (status, reason, message) = if under {
        ("True", words.true_reason, words.true_message)
    } else {
        ("False", words.false_reason, words.false_message)
    };
    if c.status != status {
        c.status = status.to_string();
        c.reason = Some(reason.to_string());
        c.message = Some(message.to_string());
        c.last_transition_time = Some(now.clone());
    }
}

/// The node events the kubelet records when our conditions change (all type Normal, message
/// from [`node_status_event_message`]): `NodeHasSufficientMemory`/`NodeHasInsufficientMemory`,
/// `NodeHasNoDiskPressure`/`NodeHasDiskPressure`, `NodeHasSufficientPID`/`NodeHasInsufficientPID`
/// when a pressure condition appears or flips, and `NodeReady`/`NodeNotReady` when an existing
/// Ready condition flips.
pub fn condition_events(
    prev: Option<&[NodeCondition]>,
    new: &[NodeCondition],
) -> Vec<&'static str> {
    let status_of = |list: Option<&[NodeCondition]>, t: &str| -> Option<String> {
        list.and_then(|l| l.iter().rev().find(|c| c.type_ == t))
            .map(|c| c.status.clone())
    };
    let mut events = Vec::new();
    for (t, on_true, on_false) in [
        (
            CONDITION_MEMORY_PRESSURE,
            "NodeHasInsufficientMemory",
            "NodeHasSufficientMemory",
        ),
        (
            CONDITION_DISK_PRESSURE,
            "NodeHasDiskPressure",
            "NodeHasNoDiskPressure",
        ),
        (
            CONDITION_PID_PRESSURE,
            "NodeHasInsufficientPID",
            "NodeHasSufficientPID",
        ),
    ] {
        let before = status_of(prev, t).unwrap_or_else(|| "Unknown".to_string());
        match status_of(Some(new), t).as_deref() {
            Some(s) if s == before => {}
            Some("True") => events.push(on_true),
            Some("False") => events.push(on_false),
            _ => {}
        }
    }
    if let (Some(before), Some(after)) = (
        status_of(prev, CONDITION_READY),
        status_of(Some(new), CONDITION_READY),
    ) {
        if before != after {
            events.push(if after == "True" {
                "NodeReady"
            } else {
                "NodeNotReady"
            });
        }
    }
    events
}

/// The message of a node status event: `Node vk-node status is now: NodeReady`.
pub fn node_status_event_message(node_name: &str, reason: &str) -> String {
    format!("Node {node_name} status is now: {reason}")
}

/// The kubelet's `nodeStatusHasChanged`: anything but the conditions' heartbeat times differs
/// (conditions are compared as a set, by type).
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let normalized = |conds: &Option<Vec<NodeCondition>>| {
        let mut list = conds.clone().unwrap_or_default();
        for c in &mut list {
            c.last_heartbeat_time = None;
        }
        list.sort_by(|a, b| a.type_.cmp(&b.type_));
        list
    };
    if normalized(&old.conditions) != normalized(&new.conditions) {
        return true;
    }
    let strip = |s: &NodeStatus| NodeStatus {
        conditions: None,
        ..s.clone()
    };
    strip(old) != strip(new)
}

/// Whether to send a status update: on any change, else once the last report is at least
/// `frequency` old (the Lease carries liveness in between). Never reported → report. A clock
/// that went backwards also reports (the kubelet's monotonic clock cannot go backwards; ours can).
pub fn should_report(
    changed: bool,
    last_report: Option<Timestamp>,
    now: Timestamp,
    frequency: Duration,
) -> bool {
    let Some(last) = last_report else {
        return true;
    };
    let elapsed = now.duration_since(last).as_nanos();
    changed || elapsed < 0 || elapsed >= i128::try_from(frequency.as_nanos()).unwrap_or(i128::MAX)
}

/// The whole decision for one sync: `Some(body)` for `PATCH /api/v1/nodes/NAME/status`
/// (`application/strategic-merge-patch+json`) when [`should_report`] says so and there is
/// something to send; `None` otherwise.
pub fn status_report(
    old: &NodeStatus,
    new: &NodeStatus,
    last_report: Option<Timestamp>,
    now: Timestamp,
    frequency: Duration,
) -> Result<Option<Value>, NodeError> {
    if !should_report(status_changed(old, new), last_report, now, frequency) {
        return Ok(None);
    }
    node_status_patch(old, new)
}

/// The strategic-merge patch that turns `old` into `new`, as `{"status": {...}}`, or `None` when
/// they serialize the same. The shape is what the kubelet's `PatchNodeStatus` sends:
/// - conditions are merged by `type`: only changed fields of changed conditions (with their
///   `type`), `{"type": T, "$patch": "delete"}` for removed ones, and
///   `$setElementOrder/conditions` giving the full order;
/// - addresses, when they changed, are sent whole with `{"$patch": "replace"}` (the kubelet's
///   `fixupPatchForNodeStatusAddresses`: the API's merge key `type` is not unique, two
///   InternalIPs would merge into one);
/// - maps and structs (capacity, allocatable, nodeInfo, daemonEndpoints) carry changed keys,
///   and `null` for removed ones; other lists are replaced whole.
pub fn node_status_patch(old: &NodeStatus, new: &NodeStatus) -> Result<Option<Value>, NodeError> {
    let ser = |s: &NodeStatus| {
        serde_json::to_value(s).map_err(|source| NodeError::Serialize {
            what: "node status",
            source,
        })
    };
    let (old, new) = (ser(old)?, ser(new)?);
    let empty = Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    for (key, nv) in n {
        let ov = o.get(key);
        if ov == Some(nv) {
            continue;
        }
        match key.as_str() {
            "conditions" => conditions_patch(ov, nv, &mut out),
            "addresses" => {
                out.insert(key.clone(), addresses_patch(ov, nv));
            }
            _ => {
                out.insert(key.clone(), merge_diff(ov, nv));
            }
        }
    }
    for key in o.keys() {
        if !n.contains_key(key) {
            out.insert(key.clone(), Value::Null);
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    let mut body = Map::new();
    body.insert("status".to_string(), Value::Object(out));
    Ok(Some(Value::Object(body)))
}

/// JSON merge semantics for maps/structs: changed keys recursively, `null` for removed keys.
fn merge_diff(old: Option<&Value>, new: &Value) -> Value {
    match (old, new) {
        (Some(Value::Object(o)), Value::Object(n)) => {
            let mut out = Map::new();
            for (k, nv) in n {
                if o.get(k) != Some(nv) {
                    out.insert(k.clone(), merge_diff(o.get(k), nv));
                }
            }
            for k in o.keys() {
                if !n.contains_key(k) {
                    out.insert(k.clone(), Value::Null);
                }
            }
            Value::Object(out)
        }
        _ => new.clone(),
    }
}

fn condition_type(c: &Value) -> Option<&str> {
    c.get("type").and_then(Value::as_str)
}

fn conditions_patch(old: Option<&Value>, new: &Value, out: &mut Map<String, Value>) {
    let none = Vec::new();
    let old_list = old.and_then(Value::as_array).unwrap_or(&none);
    let new_list = new.as_array().unwrap_or(&none);
    let mut items = Vec::new();
    for nc in new_list {
        let Some(t) = condition_type(nc) else {
            continue;
        };
        match old_list.iter().find(|oc| condition_type(oc) == Some(t)) {
            Some(oc) if oc == nc => {}
            Some(oc) => {
                let mut diff = merge_diff(Some(oc), nc);
                if let Value::Object(m) = &mut diff {
                    m.insert("type".to_string(), Value::String(t.to_string()));
                }
                items.push(diff);
            }
            None => items.push(nc.clone()),
        }
    }
    for oc in old_list {
        let Some(t) = condition_type(oc) else {
            continue;
        };
        if !new_list.iter().any(|nc| condition_type(nc) == Some(t)) {
            items.push(json!({ "type": t, "$patch": "delete" }));
        }
    }
    let old_order: Vec<&str> = old_list.iter().filter_map(condition_type).collect();
    let new_order: Vec<&str> = new_list.iter().filter_map(condition_type).collect();
    if items.is_empty() && old_order == new_order {
        return;
    }
    out.insert(
        "$setElementOrder/conditions".to_string(),
        Value::Array(new_order.iter().map(|t| json!({ "type": t })).collect()),
    );
    if !items.is_empty() {
        out.insert("conditions".to_string(), Value::Array(items));
    }
}

fn addresses_patch(old: Option<&Value>, new: &Value) -> Value {
    let old_has_any = old.and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !old_has_any {
        return new.clone();
    }
    let mut list = new.as_array().cloned().unwrap_or_default();
    list.push(json!({ "$patch": "replace" }));
    Value::Array(list)
}

/// The node's Lease in `kube-node-lease`, as the kubelet's lease controller first creates it:
/// named after the node, held by `holder`, owned by the Node (so it goes when the Node goes).
pub fn lease_object(
    node_name: &str,
    node_uid: &str,
    holder: &str,
    duration_secs: i32,
    now: Timestamp,
) -> Lease {
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(node_name.to_string()),
            namespace: Some(NODE_LEASE_NAMESPACE.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(duration_secs),
            renew_time: Some(micro_time(now)),
            ..LeaseSpec::default()
        }),
    };
    with_node_owner(&lease, node_name, node_uid)
}

/// The Lease with `renewTime = now` and `leaseDurationSeconds` this node's (the kubelet's
/// `newLease` sets both on every renewal, so a changed `nodeLeaseDurationSeconds` takes effect
/// on the next one), everything else (resourceVersion included, for the PUT's optimistic
/// concurrency) as it was read.
pub fn renew(lease: &Lease, duration_secs: i32, now: Timestamp) -> Lease {
    let mut out = lease.clone();
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    spec.renew_time = Some(micro_time(now));
    spec.lease_duration_seconds = Some(duration_secs);
    out
}

/// The Lease owned by the Node, if it has no owner yet: the kubelet's `setNodeOwnerFunc`, which
/// also fixes Leases created before the Node's uid was known.
pub fn with_node_owner(lease: &Lease, node_name: &str, node_uid: &str) -> Lease {
    let mut out = lease.clone();
    if out
        .metadata
        .owner_references
        .as_ref()
        .is_none_or(Vec::is_empty)
    {
        out.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "v1".to_string(),
            kind: "Node".to_string(),
            name: node_name.to_string(),
            uid: node_uid.to_string(),
            ..OwnerReference::default()
        }]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::host::FakeHost;
    use crate::node::labels::node_labels;
    use std::net::Ipv4Addr;

    const NODE_UID: &str = "a4207659-f9f3-47e2-9a7c-5f00a7407a5e";

    fn fixture(dir: &str, file: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/apiserver/{dir}/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The JSON body of a recorded request (after the blank line ending the headers).
    fn request_body(dir: &str) -> String {
        let text = fixture(dir, "request.txt");
        text.split_once("\n\n").unwrap().1.to_string()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Host facts shaped like the fixture's node: 8 CPUs, 16Gi, 100Gi.
    fn facts() -> HostFacts {
        FakeHost::new().facts
    }

    fn params() -> NodeParams {
        let labels = node_labels("vk-node", &[], "amd64", "linux").unwrap();
        NodeParams::new(
            "vk-node",
            labels,
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            "containerd://1.6.20",
        )
    }

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn kubelet_version_is_semver_with_our_name() {
        assert_eq!(
            kubelet_version(),
            format!("v1.28.7-vk-cri-{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn node_object_matches_the_fields_of_fixture_04b() {
        let sent: Node = serde_json::from_str(&request_body("04b-node-create-201")).unwrap();
        let mut p = params();
        p.eviction = EvictionThresholds::none(); // the fixture's allocatable == capacity
        let now = ts("2026-11-22T12:52:16.404Z");
        let node = node_object(&p, &facts(), &RuntimeReadiness::ready(), now);
        // Round-trip through JSON, as it goes on the wire.
        let node: Node = serde_json::from_value(serde_json::to_value(&node).unwrap()).unwrap();

        assert_eq!(node.metadata.name, sent.metadata.name);
        let ours = node.metadata.labels.clone().unwrap();
        for (k, v) in sent.metadata.labels.unwrap() {
            assert_eq!(ours.get(&k), Some(&v), "label {k}");
        }
        assert_eq!(
            node.spec.as_ref().unwrap().taints,
            sent.spec.unwrap().taints
        );
        let (st, sent_st) = (node.status.unwrap(), sent.status.unwrap());
        assert_eq!(st.capacity, sent_st.capacity);
        assert_eq!(st.allocatable, sent_st.allocatable);
        assert_eq!(st.addresses, sent_st.addresses);
        assert_eq!(st.daemon_endpoints, sent_st.daemon_endpoints);
        let (info, sent_info) = (st.node_info.unwrap(), sent_st.node_info.unwrap());
        assert_eq!(info.operating_system, sent_info.operating_system);
        assert_eq!(info.architecture, sent_info.architecture);
        assert_eq!(info.container_runtime_version, "containerd://1.6.20");
        assert_eq!(info.kubelet_version, kubelet_version());
        assert_eq!(info.kube_proxy_version, kubelet_version());
        assert_eq!(info.machine_id, "0123456789abcdef0123456789abcdef");
        assert_eq!(info.system_uuid, "4c4c4544-0042-3510-8052-b4c04f4e3332");
        assert_eq!(info.boot_id, "a9b1c8e2-5d0e-4e55-9f3b-2c1f0e7d6a10");
        assert_eq!(info.kernel_version, "6.1.0-18-amd64");
        assert_eq!(info.os_image, "Debian GNU/Linux 12 (bookworm)");
        // Ready like the fixture's (times to the second), in the kubelet's words.
        let conds = st.conditions.unwrap();
        let sent_ready = &sent_st.conditions.unwrap()[0];
        let ready = conds.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, sent_ready.status);
        assert_eq!(ready.reason, sent_ready.reason);
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        assert_eq!(ready.last_heartbeat_time, sent_ready.last_heartbeat_time);
        assert_eq!(ready.last_transition_time, sent_ready.last_transition_time);
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
    }

    #[test]
    fn provider_taint_can_be_left_off() {
        let mut p = params();
        p.provider_taint = false;
        let node = node_object(
            &p,
            &facts(),
            &RuntimeReadiness::ready(),
            ts("2026-11-22T12:00:00Z"),
        );
        assert_eq!(node.spec.unwrap().taints, None);
    }

    #[test]
    fn allocatable_subtracts_reserved_and_eviction_and_never_goes_negative() {
        let mut p = params();
        p.kube_reserved = parse_reserved("cpu=100m,memory=256Mi,ephemeral-storage=1Gi").unwrap();
        p.system_reserved = parse_reserved("cpu=400m,memory=256Mi").unwrap();
        p.max_pods = 30;
        let (cap, alloc) = capacity_and_allocatable(&p, &facts());
        assert_eq!(cap["cpu"], q("8"));
        assert_eq!(cap["memory"], q("16Gi"));
        assert_eq!(cap["ephemeral-storage"], q("100Gi"));
        assert_eq!(cap["pods"], q("30"));
        assert_eq!(alloc["cpu"], q("7500m"));
        // 16Gi − 512Mi − 100Mi (memory.available)
        assert_eq!(alloc["memory"], q("15772Mi"));
        // 100Gi − 1Gi − 10% of 100Gi (nodefs.available)
        assert_eq!(alloc["ephemeral-storage"], q("89Gi"));
        assert_eq!(alloc["pods"], q("30"));

        // The downward API's defaults are the very same numbers.
        assert_eq!(
            node_allocatable(SetAside::of(&p), &facts()),
            NodeAllocatable {
                milli_cpu: 7500,
                memory: 15772 << 20,
                ephemeral_storage: 89 << 30,
            }
        );

        p.kube_reserved = parse_reserved("cpu=9,memory=32Gi").unwrap();
        let (_, alloc) = capacity_and_allocatable(&p, &facts());
        assert_eq!(alloc["cpu"], q("0"));
        assert_eq!(alloc["memory"], q("0"));
        let n = node_allocatable(SetAside::of(&p), &facts());
        assert_eq!((n.milli_cpu, n.memory), (0, 0));
    }

    #[test]
    fn real_host_sizes_print_like_a_real_node() {
        let mut f = facts();
        f.usage.memory_total = 16_318_412 * 1024;
        f.usage.fs_capacity = 103_865_303_040; // 101430960Ki
        let (cap, alloc) = capacity_and_allocatable(&params(), &f);
        assert_eq!(cap["memory"], q("16318412Ki"));
        assert_eq!(alloc["memory"], q("16216012Ki"));
        assert_eq!(cap["ephemeral-storage"], q("101430960Ki"));
        // Exactly 90% (the kubelet's float32 percentage is off by a few hundred bytes).
        assert_eq!(alloc["ephemeral-storage"], q("91287864Ki"));
    }

    #[test]
    fn parses_reserved_lists() {
        let r = parse_reserved("cpu=100m, memory=256Mi,ephemeral-storage=1Gi,pid=1k").unwrap();
        assert_eq!(r.cpu, Amount::parse("100m").unwrap());
        assert_eq!(r.memory, Amount::parse("256Mi").unwrap());
        assert_eq!(r.ephemeral_storage, Amount::parse("1Gi").unwrap());
        assert_eq!(r.pid, Amount::from_units(1000));
        assert_eq!(parse_reserved("").unwrap(), Reserved::default());
        let errors: &[(&str, &str)] = &[
            ("cpu", "failed to parse reserved resources \"cpu\": \"cpu\" is not name=quantity"),
            (
                "gpu=1",
                "failed to parse reserved resources \"gpu=1\": cannot reserve \"gpu\": only cpu, memory, ephemeral-storage and pid",
            ),
            ("memory=-1Gi", "failed to parse reserved resources \"memory=-1Gi\": memory cannot be negative"),
            (
                "memory=1GB",
                "failed to parse reserved resources \"memory=1GB\": invalid quantity \"1GB\": unknown suffix: use one of m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei, or an exponent such as e3",
            ),
        ];
        for (input, msg) in errors {
            assert_eq!(parse_reserved(input).unwrap_err().to_string(), *msg);
        }
    }

    #[test]
    fn pressure_follows_the_kubelet_default_thresholds() {
        let t = EvictionThresholds::default();
        let ok = facts().usage;
        assert_eq!(pressure(&ok, &t), Pressure::default());

        let mut u = ok.clone();
        u.memory_available = (100 << 20) - 1;
        assert!(pressure(&u, &t).memory);
        u.memory_available = 100 << 20;
        assert!(
            !pressure(&u, &t).memory,
            "exactly the threshold is not below it"
        );

        let mut u = ok.clone();
        u.fs_available = u.fs_capacity / 10 - 1;
        assert!(pressure(&u, &t).disk);
        let mut u = ok.clone();
        u.fs_inodes_free = u.fs_inodes / 20 - 1;
        assert!(pressure(&u, &t).disk, "inodes count too");
        let mut u = ok.clone();
        u.fs_inodes = 0;
        u.fs_inodes_free = 0;
        assert!(
            !pressure(&u, &t).disk,
            "a filesystem without inode counts is not under pressure"
        );

        let mut u = ok.clone();
        u.pids_running = u.pid_max;
        assert!(
            !pressure(&u, &t).pid,
            "no pid.available threshold by default"
        );
        let with_pid = EvictionThresholds {
            pid_available: Some(Threshold::Percent(10)),
            ..t
        };
        assert!(pressure(&u, &with_pid).pid);
        u.pids_running = None;
        assert!(
            !pressure(&u, &with_pid).pid,
            "unknown pid usage is not pressure"
        );
    }

    fn cond<'a>(list: &'a [NodeCondition], t: &str) -> &'a NodeCondition {
        list.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn conditions_keep_transition_times_until_status_flips() {
        let t0 = ts("2026-11-22T12:00:00.700Z");
        let t1 = ts("2026-11-22T12:00:10Z");
        let t2 = ts("2026-11-22T12:00:20Z");
        let first = conditions(None, Pressure::default(), &RuntimeReadiness::ready(), t0);
        for c in &first {
            assert_eq!(
                c.last_heartbeat_time,
                Some(Time(ts("2026-11-22T12:00:00Z"))),
                "{}",
                c.type_
            );
            assert_eq!(
                c.last_transition_time,
                Some(Time(ts("2026-11-22T12:00:00Z"))),
                "{}",
                c.type_
            );
        }
        assert_eq!(
            cond(&first, "MemoryPressure").reason.as_deref(),
            Some("KubeletHasSufficientMemory")
        );
        assert_eq!(
            cond(&first, "DiskPressure").reason.as_deref(),
            Some("KubeletHasNoDiskPressure")
        );
        assert_eq!(
            cond(&first, "PIDPressure").reason.as_deref(),
            Some("KubeletHasSufficientPID")
        );
        assert_eq!(
            cond(&first, "PIDPressure").message.as_deref(),
            Some("kubelet has sufficient PID available")
        );

        // Same statuses: heartbeats move, transitions stay.
        let second = conditions(
            Some(&first),
            Pressure::default(),
            &RuntimeReadiness::ready(),
            t1,
        );
        for c in &second {
            assert_eq!(c.last_heartbeat_time, Some(Time(t1)));
            assert_eq!(
                c.last_transition_time,
                Some(Time(ts("2026-11-22T12:00:00Z")))
            );
        }

        // Memory pressure and a runtime failure: both flip at t2; disk stays.
        let p = Pressure {
            memory: true,
            ..Pressure::default()
        };
        let rt =
            RuntimeReadiness::not_ready("container runtime network not ready: NetworkReady=false");
        let third = conditions(Some(&second), p, &rt, t2);
        let mem = cond(&third, "MemoryPressure");
        assert_eq!(mem.status, "True");
        assert_eq!(mem.reason.as_deref(), Some("KubeletHasInsufficientMemory"));
        assert_eq!(
            mem.message.as_deref(),
            Some("kubelet has insufficient memory available")
        );
        assert_eq!(mem.last_transition_time, Some(Time(t2)));
        let ready = cond(&third, "Ready");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime network not ready: NetworkReady=false")
        );
        assert_eq!(ready.last_transition_time, Some(Time(t2)));
        assert_eq!(
            cond(&third, "DiskPressure").last_transition_time,
            Some(Time(ts("2026-11-22T12:00:00Z")))
        );

        let quiet = conditions(Some(&third), p, &RuntimeReadiness::not_ready(""), t2);
        assert_eq!(
            cond(&quiet, "Ready").message.as_deref(),
            Some("container runtime is not ready")
        );
    }

    #[test]
    fn conditions_from_fixture_04d_keep_order_and_other_types() {
        // The node as the API server returned it: only Ready (from 04b's body), plus a condition
        // someone else owns.
        let node: Node =
            serde_json::from_str(&fixture("04d-node-get", "response-body.json")).unwrap();
        let mut prev = node.status.unwrap().conditions.unwrap();
        prev.insert(
            0,
            NodeCondition {
                type_: "NetworkUnavailable".to_string(),
                status: "False".to_string(),
                reason: Some("RouteCreated".to_string()),
                ..NodeCondition::default()
            },
        );
        let now = ts("2026-11-22T12:52:37Z");
        let out = conditions(
            Some(&prev),
            Pressure::default(),
            &RuntimeReadiness::ready(),
            now,
        );
        let types: Vec<&str> = out.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "NetworkUnavailable",
                "Ready",
                "MemoryPressure",
                "DiskPressure",
                "PIDPressure"
            ]
        );
        assert_eq!(out[0], prev[0], "a condition we do not own is untouched");
        let ready = cond(&out, "Ready");
        assert_eq!(
            ready.last_transition_time,
            Some(Time(ts("2026-11-22T12:52:16Z")))
        );
        assert_eq!(ready.last_heartbeat_time, Some(Time(now)));
    }

    #[test]
    fn condition_events_follow_the_kubelet() {
        let t0 = ts("2026-11-22T12:00:00Z");
        let first = conditions(None, Pressure::default(), &RuntimeReadiness::ready(), t0);
        assert_eq!(
            condition_events(None, &first),
            [
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        let same = conditions(
            Some(&first),
            Pressure::default(),
            &RuntimeReadiness::ready(),
            t0,
        );
        assert!(condition_events(Some(&first), &same).is_empty());
        let p = Pressure {
            disk: true,
            ..Pressure::default()
        };
        let flipped = conditions(Some(&same), p, &RuntimeReadiness::not_ready("x"), t0);
        assert_eq!(
            condition_events(Some(&same), &flipped),
            ["NodeHasDiskPressure", "NodeNotReady"]
        );
        let back = conditions(
            Some(&flipped),
            Pressure::default(),
            &RuntimeReadiness::ready(),
            t0,
        );
        assert_eq!(
            condition_events(Some(&flipped), &back),
            ["NodeHasNoDiskPressure", "NodeReady"]
        );
        assert_eq!(
            node_status_event_message("vk-node", "NodeReady"),
            "Node vk-node status is now: NodeReady"
        );
    }

    fn status_at(prev: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
        node_status(prev, &params(), &facts(), &RuntimeReadiness::ready(), now)
    }

    #[test]
    fn heartbeat_only_patch_is_the_kubelets_shape() {
        let old = status_at(None, ts("2026-11-22T12:52:16Z"));
        let new = status_at(Some(&old), ts("2026-11-22T12:52:37Z"));
        assert!(!status_changed(&old, &new));
        let patch = node_status_patch(&old, &new).unwrap().unwrap();
        let hb = |t: &str| json!({ "type": t, "lastHeartbeatTime": "2026-11-22T12:52:37Z" });
        assert_eq!(
            patch,
            json!({ "status": {
                "$setElementOrder/conditions": [
                    { "type": "MemoryPressure" }, { "type": "DiskPressure" },
                    { "type": "PIDPressure" }, { "type": "Ready" }
                ],
                "conditions": [hb("MemoryPressure"), hb("DiskPressure"), hb("PIDPressure"), hb("Ready")]
            }})
        );
        assert_eq!(node_status_patch(&new, &new).unwrap(), None);
    }

    #[test]
    fn patch_carries_changed_fields_deletions_and_replaced_addresses() {
        let old = status_at(None, ts("2026-11-22T12:52:16Z"));
        let mut p = params();
        p.node_ip = "10.0.0.7".parse().unwrap();
        p.max_pods = 50;
        let mut f = facts();
        f.identity.boot_id = "new-boot".to_string();
        let rt = RuntimeReadiness::not_ready("runtime down");
        let mut new = node_status(Some(&old), &p, &f, &rt, ts("2026-11-22T12:52:26Z"));
        new.conditions
            .as_mut()
            .unwrap()
            .retain(|c| c.type_ != "PIDPressure");
        assert!(status_changed(&old, &new));
        let patch = node_status_patch(&old, &new).unwrap().unwrap();
        let s = &patch["status"];
        assert_eq!(s["capacity"], json!({ "pods": "50" }));
        assert_eq!(s["allocatable"], json!({ "pods": "50" }));
        assert_eq!(s["nodeInfo"], json!({ "bootID": "new-boot" }));
        assert_eq!(
            s["addresses"],
            json!([
                { "type": "InternalIP", "address": "10.0.0.7" },
                { "type": "Hostname", "address": "vk-node" },
                { "$patch": "replace" }
            ])
        );
        assert_eq!(
            s["$setElementOrder/conditions"],
            json!([{ "type": "MemoryPressure" }, { "type": "DiskPressure" }, { "type": "Ready" }])
        );
        let conds = s["conditions"].as_array().unwrap();
        assert!(conds.contains(&json!({
            "type": "Ready", "status": "False", "reason": "KubeletNotReady", "message": "runtime down",
            "lastHeartbeatTime": "2026-11-22T12:52:26Z", "lastTransitionTime": "2026-11-22T12:52:26Z"
        })));
        assert!(conds.contains(&json!({ "type": "PIDPressure", "$patch": "delete" })));
        assert!(
            s.get("daemonEndpoints").is_none(),
            "unchanged fields are left out"
        );

        let mut gone = new.clone();
        gone.daemon_endpoints = None;
        let patch = node_status_patch(&new, &gone).unwrap().unwrap();
        assert_eq!(patch, json!({ "status": { "daemonEndpoints": null } }));
    }

    #[test]
    fn patch_applies_to_fixture_04d_like_the_api_server_would() {
        // Minimal strategic-merge application (merge conditions by type, replace addresses) to
        // check the body against the node the API server holds.
        let node: Node =
            serde_json::from_str(&fixture("04d-node-get", "response-body.json")).unwrap();
        let old = node.status.unwrap();
        let new = status_at(Some(&old), ts("2026-11-22T12:53:00Z"));
        let patch = node_status_patch(&old, &new).unwrap().unwrap();
        let mut applied = serde_json::to_value(&old).unwrap();
        let s = applied.as_object_mut().unwrap();
        for (k, v) in patch["status"].as_object().unwrap() {
            match k.as_str() {
                "$setElementOrder/conditions" => {}
                "conditions" => {
                    let list = s
                        .entry("conditions")
                        .or_insert(json!([]))
                        .as_array_mut()
                        .unwrap();
                    for item in v.as_array().unwrap() {
                        match list.iter_mut().find(|c| c["type"] == item["type"]) {
                            Some(c) => {
                                for (f, fv) in item.as_object().unwrap() {
                                    c[f] = fv.clone();
                                }
                            }
                            None => list.push(item.clone()),
                        }
                    }
                }
                _ => {
                    let target = s.entry(k.clone()).or_insert(json!({}));
                    for (f, fv) in v.as_object().unwrap() {
                        target[f] = fv.clone();
                    }
                }
            }
        }
        let applied: NodeStatus = serde_json::from_value(applied).unwrap();
        assert!(
            !status_changed(&applied, &new),
            "applying the patch yields the new status"
        );
        let ready = applied
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            ready.last_transition_time,
            Some(Time(ts("2026-11-22T12:52:16Z")))
        );
    }

    #[test]
    fn report_when_changed_or_when_the_last_report_is_old() {
        let f = NODE_STATUS_REPORT_FREQUENCY;
        let t0 = ts("2026-11-22T12:00:00Z");
        let at = |s: i64| {
            ts("2026-11-22T12:00:00Z")
                .checked_add(k8s_openapi::jiff::SignedDuration::from_secs(s))
                .unwrap()
        };
        assert!(should_report(false, None, t0, f), "never reported");
        assert!(!should_report(false, Some(t0), at(10), f));
        assert!(!should_report(false, Some(t0), at(299), f));
        assert!(should_report(false, Some(t0), at(300), f));
        assert!(should_report(true, Some(t0), at(10), f));
        assert!(
            should_report(false, Some(at(10)), t0, f),
            "clock went backwards"
        );

        let old = status_at(None, t0);
        let new = status_at(Some(&old), at(10));
        assert_eq!(
            status_report(&old, &new, Some(t0), at(10), f).unwrap(),
            None
        );
        assert!(status_report(&old, &new, Some(t0), at(300), f)
            .unwrap()
            .is_some());
        let flipped = node_status(
            Some(&old),
            &params(),
            &facts(),
            &RuntimeReadiness::not_ready("x"),
            at(10),
        );
        assert!(status_report(&old, &flipped, Some(t0), at(10), f)
            .unwrap()
            .is_some());
    }

    #[test]
    fn lease_matches_fixture_05a_plus_the_node_owner() {
        let sent: Lease = serde_json::from_str(&request_body("05a-lease-create-201")).unwrap();
        let now = ts("2026-11-22T12:00:00Z");
        let lease = lease_object("vk-node", NODE_UID, "vk-node", LEASE_DURATION_SECONDS, now);
        let lease: Lease = serde_json::from_value(serde_json::to_value(&lease).unwrap()).unwrap();
        assert_eq!(lease.metadata.name, sent.metadata.name);
        assert_eq!(lease.metadata.namespace, sent.metadata.namespace);
        assert_eq!(lease.spec, sent.spec);
        assert_eq!(
            lease.metadata.owner_references,
            Some(vec![OwnerReference {
                api_version: "v1".to_string(),
                kind: "Node".to_string(),
                name: "vk-node".to_string(),
                uid: NODE_UID.to_string(),
                ..OwnerReference::default()
            }])
        );
    }

    #[test]
    fn renew_sets_renew_time_and_keeps_the_resource_version_like_05b() {
        // 05a's response is what we read back; 05b's body is what a renewal PUTs.
        let read: Lease =
            serde_json::from_str(&fixture("05a-lease-create-201", "response-body.json")).unwrap();
        let put: Lease = serde_json::from_str(&request_body("05b-lease-put-renew-200")).unwrap();
        let renewed = renew(
            &read,
            LEASE_DURATION_SECONDS,
            ts("2026-11-22T12:52:20.599105123Z"),
        );
        let renewed: Lease =
            serde_json::from_value(serde_json::to_value(&renewed).unwrap()).unwrap();
        assert_eq!(renewed, put);
        assert_eq!(renewed.metadata.resource_version.as_deref(), Some("2659"));
        let body = serde_json::to_value(&renewed).unwrap();
        assert_eq!(body["spec"]["renewTime"], "2026-11-22T12:52:20.599105Z");
        let longer = renew(&read, 60, ts("2026-11-22T12:52:20Z"));
        assert_eq!(longer.spec.unwrap().lease_duration_seconds, Some(60));
        assert_eq!(renew_interval(60), Duration::from_secs(15));
        assert_eq!(renew_interval(LEASE_DURATION_SECONDS), LEASE_RENEW_INTERVAL);
    }

    #[test]
    fn node_owner_is_added_once() {
        let read: Lease =
            serde_json::from_str(&fixture("05a-lease-create-201", "response-body.json")).unwrap();
        assert_eq!(read.metadata.owner_references, None);
        let owned = with_node_owner(&read, "vk-node", NODE_UID);
        assert_eq!(
            owned.metadata.owner_references.as_ref().unwrap()[0].uid,
            NODE_UID
        );
        let again = with_node_owner(&owned, "vk-node", "other-uid");
        assert_eq!(again, owned, "an existing owner is kept");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("127.8.9.10".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
        assert!(!is_loopback("fd00::1".parse().unwrap()));
    }
}
