//! A pod and its containers → CRI `PodSandboxConfig` and `ContainerConfig`, as the kubelet builds
//! them.
//!
//! Owns the pure translation: the kubelet's `generatePodSandboxConfig` and
//! `generatePodSandboxLinuxConfig` (kuberuntime_sandbox*.go), `generateContainerConfig` and
//! `generateLinuxContainerConfig` (kuberuntime_container*.go), `determineEffectiveSecurityContext`
//! and `verifyRunAsNonRoot` (security_context*.go), `NamespacesForPod`, `MakePortMappings`, the
//! sysctl allowlist of pkg/kubelet/sysctl, and [`TranslateError`] with the reason the pod worker
//! reports. What other modules resolve at run time (env, mounts, the managed hosts file, the
//! image that was pulled and its user) comes in [`ContainerInputs`]; host facts come in
//! [`NodeContext`]. No I/O, no clock, no logging.
//!
//! Decisions where vk-cri is not a kubelet:
//! - cgroup parent: the kubelet's cgroupfs QoS layout under [`NodeContext::cgroup_root`]:
//!   `<root>/pod<uid>` (Guaranteed), `<root>/burstable/pod<uid>`, `<root>/besteffort/pod<uid>`;
//!   an empty root leaves the parent to the runtime. The systemd cgroup driver is not supported.
//! - capabilities are passed as written in the pod (`NET_ADMIN`); like the kubelet, we leave
//!   adding `CAP_` to the runtime (containerd does).
//! - the sandbox carries the pod's resources and its RuntimeClass overhead
//!   ([`resources::sandbox_resources`]); no SELinux relabelling, hugepages, swap, user
//!   namespaces or devices: the kubelet's defaults leave them off, or vk-cri does not offer them.

use std::collections::HashMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, Pod, PodSecurityContext, SELinuxOptions, SeccompProfile,
    SecurityContext,
};
use protobuf::EnumOrUnknown;

pub use super::context::{NodeContext, TranslateError};
use super::labels;
use super::{dns, expand, resources};
use crate::cri::api::{self, NamespaceMode};

pub use super::dns::etc_hosts;
pub use super::labels::ContainerKind;
pub use super::resources::qos_class;

/// Where the managed hosts file is mounted.
pub const ETC_HOSTS: &str = "/etc/hosts";

/// The kubelet's default masked paths (pkg/securitycontext), unless `procMount: Unmasked`.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The kubelet's default read-only paths, unless `procMount: Unmasked`.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Sysctls the kubelet allows every pod (pkg/kubelet/sysctl safe_sysctls.go, v1.33).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// The user an image runs as, from CRI ImageStatus (the kubelet's `getImageUser`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageUser {
    /// A numeric user.
    pub uid: Option<i64>,
    /// A user name, when the image's user is not numeric.
    pub username: String,
}

impl ImageUser {
    /// Root: what an image without a user runs as.
    pub fn root() -> ImageUser {
        ImageUser {
            uid: Some(0),
            username: String::new(),
        }
    }

    /// The user of an image as the runtime reported it: its uid, else its user name, else root.
    pub fn from_image(image: Option<&api::Image>) -> ImageUser {
        match image {
            Some(i) if i.uid.is_some() => ImageUser {
                uid: Some(i.uid.value),
                username: String::new(),
            },
            Some(i) if !i.username.is_empty() => ImageUser {
                uid: None,
                username: i.username.clone(),
            },
            _ => ImageUser::root(),
        }
    }
}

/// What other modules resolve at run time for one container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerInputs {
    /// The container's environment, resolved (valueFrom, envFrom, service links), in order.
    pub env: Vec<(String, String)>,
    /// The volume mounts, resolved to host paths.
    pub mounts: Vec<api::Mount>,
    /// Host path of the pod's managed hosts file, mounted at /etc/hosts unless the container
    /// mounts something there itself; `None` leaves /etc/hosts to the runtime.
    pub etc_hosts_path: Option<String>,
    /// Host path of a fresh, world-writable file for the termination message; `None` (or a
    /// container without `terminationMessagePath`) mounts nothing.
    pub termination_log_path: Option<String>,
    /// The image to run: the reference or id the pull returned.
    pub image_ref: String,
    /// The user the image runs as, for `runAsNonRoot`.
    pub image_user: ImageUser,
}

pub use super::key as pod_key;

/// Name, namespace and UID of a pod; the name and UID must be set.
fn pod_ids(pod: &Pod) -> Result<(&str, &str, &str), TranslateError> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    for (value, field) in [(name, "name"), (uid, "uid")] {
        if value.is_empty() {
            return Err(TranslateError::MissingField {
                pod: pod_key(pod),
                field,
            });
        }
    }
    Ok((name, namespace, uid))
}

/// The pod's log directory: `<log root>/<namespace>_<name>_<uid>` (the sandbox's
/// `log_directory`; the caller creates it before RunPodSandbox).
pub fn log_directory(pod: &Pod, node: &NodeContext) -> PathBuf {
    log_directory_of(pod, &node.log_root)
}

/// [`log_directory`] under `log_root`.
pub fn log_directory_of(pod: &Pod, log_root: &std::path::Path) -> PathBuf {
    log_root.join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

/// A container's log path, relative to the pod's log directory: `<name>/<restart count>.log`.
pub fn container_log_path(container_name: &str, restart_count: u32) -> String {
    format!("{container_name}/{restart_count}.log")
}

/// The pod's cgroup parent (see the module docs).
pub fn cgroup_parent(pod: &Pod, node: &NodeContext) -> String {
    let root = node.cgroup_root.trim_end_matches('/');
    if root.is_empty() {
        return String::new();
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    match qos_class(pod) {
        resources::QOS_GUARANTEED => format!("{root}/pod{uid}"),
        resources::QOS_BURSTABLE => format!("{root}/burstable/pod{uid}"),
        _ => format!("{root}/besteffort/pod{uid}"),
    }
}

/// The pod's namespaces (`NamespacesForPod`): network and IPC are the pod's or the node's, PID is
/// per container unless the pod shares it (`shareProcessNamespace`) or uses the node's.
pub fn namespace_options(pod: &Pod) -> api::NamespaceOption {
    let spec = pod.spec.as_ref();
    let flag = |f: fn(&k8s_openapi::api::core::v1::PodSpec) -> Option<bool>| {
        spec.and_then(f).unwrap_or(false)
    };
    let node_or_pod = |on: bool| {
        if on {
            NamespaceMode::NODE
        } else {
            NamespaceMode::POD
        }
    };
    let pid = if flag(|s| s.host_pid) {
        NamespaceMode::NODE
    } else if flag(|s| s.share_process_namespace) {
        NamespaceMode::POD
    } else {
        NamespaceMode::CONTAINER
    };
    api::NamespaceOption {
        network: EnumOrUnknown::new(node_or_pod(flag(|s| s.host_network))),
        pid: EnumOrUnknown::new(pid),
        ipc: EnumOrUnknown::new(node_or_pod(flag(|s| s.host_ipc))),
        ..Default::default()
    }
}

/// The kubelet's `NormalizeName`: `net/ipv4/conf/eno2.100/rp_filter` →
/// `net.ipv4.conf.eno2/100.rp_filter`.
fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// The namespace a sysctl belongs to (`IPC` or `Net`), if any.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    if name == "kernel.sem"
        || name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name.starts_with("fs.mqueue.")
    {
        Some("IPC")
    } else if name.starts_with("net.") {
        Some("Net")
    } else {
        None
    }
}

/// The pod's sysctls, checked as the kubelet's sysctl admission does: each must be safe or
/// allowed by the node, and not belong to a namespace the pod shares with the host.
pub fn check_sysctls(
    pod: &Pod,
    node: &NodeContext,
) -> Result<HashMap<String, String>, TranslateError> {
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    let mut out = HashMap::new();
    let sysctls = spec
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref());
    for s in sysctls.into_iter().flatten() {
        let name = normalize_sysctl(&s.name);
        let forbidden = |detail: String| TranslateError::ForbiddenSysctl {
            pod: pod_key(pod),
            name: name.clone(),
            detail,
        };
        let allowed = SAFE_SYSCTLS.contains(&name.as_str())
            || node
                .allowed_unsafe_sysctls
                .iter()
                .any(|p| match p.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => *p == name,
                });
        let ns = sysctl_namespace(&name);
        if !allowed || ns.is_none() {
            return Err(forbidden("not allowlisted".into()));
        }
        match ns {
            Some("IPC") if host_ipc => {
                return Err(forbidden("not allowed with host IPC enabled".into()))
            }
            Some("Net") if host_net => {
                return Err(forbidden("not allowed with host Net enabled".into()))
            }
            _ => {}
        }
        out.insert(name, s.value.clone());
    }
    Ok(out)
}

/// The container's ports as CRI port mappings (`MakePortMappings`): a port whose name (or, for
/// an unnamed port, family/protocol/IPs/ports) repeats is dropped.
fn port_mappings(container: &Container) -> Vec<api::PortMapping> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for p in container.ports.iter().flatten() {
        let protocol = p.protocol.as_deref().unwrap_or("TCP");
        let host_ip = p.host_ip.as_deref().unwrap_or_default();
        let host_port = p.host_port.unwrap_or(0);
        let name = match p.name.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => {
                let family = if host_ip.is_empty() {
                    "any"
                } else if host_ip.contains(':') {
                    "v6"
                } else {
                    "v4"
                };
                format!(
                    "{family}-{protocol}-{host_ip}:{}:{host_port}",
                    p.container_port
                )
            }
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        let protocol = match protocol {
            "UDP" => api::Protocol::UDP,
            "SCTP" => api::Protocol::SCTP,
            // TCP, and what the API server would have rejected.
            _ => api::Protocol::TCP,
        };
        out.push(api::PortMapping {
            protocol: EnumOrUnknown::new(protocol),
            container_port: p.container_port,
            host_port,
            host_ip: host_ip.to_string(),
            ..Default::default()
        });
    }
    out
}

fn selinux_option(o: &SELinuxOptions) -> api::SELinuxOption {
    api::SELinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        type_: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
        ..Default::default()
    }
}

fn groups_policy(value: &str) -> Option<api::SupplementalGroupsPolicy> {
    match value {
        "Merge" => Some(api::SupplementalGroupsPolicy::Merge),
        "Strict" => Some(api::SupplementalGroupsPolicy::Strict),
        _ => None,
    }
}

/// Whether any container of the pod asks to be privileged.
fn has_privileged_container(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let privileged = |sc: Option<&SecurityContext>| sc.and_then(|s| s.privileged).unwrap_or(false);
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| privileged(c.security_context.as_ref()))
        || spec
            .ephemeral_containers
            .iter()
            .flatten()
            .any(|c| privileged(c.security_context.as_ref()))
}

/// `PodSandboxConfig` for the pod (the kubelet's `generatePodSandboxConfig`).
pub fn sandbox_config(
    pod: &Pod,
    node: &NodeContext,
    attempt: u32,
) -> Result<api::PodSandboxConfig, TranslateError> {
    let (name, namespace, uid) = pod_ids(pod)?;
    let Some(spec) = pod.spec.as_ref() else {
        return Err(TranslateError::MissingField {
            pod: pod_key(pod),
            field: "spec",
        });
    };
    let host_network = spec.host_network.unwrap_or(false);
    let sysctls = check_sysctls(pod, node)?;
    let dns = dns::dns_config(pod, node)?;
    let sandbox_resources = resources::sandbox_resources(pod, node.cgroup_v2);
    // runc refuses a hostname without a private UTS namespace, which host-network pods lack.
    let hostname = if host_network {
        String::new()
    } else {
        dns::kernel_hostname(pod, &node.cluster_domain)?
    };

    let mut sc = api::LinuxSandboxSecurityContext {
        namespace_options: Some(namespace_options(pod)).into(),
        privileged: has_privileged_container(pod),
        // The sandbox (pause) always runs under the runtime's default seccomp profile, so that
        // pods may use least-privileged profiles (kubernetes#84623).
        seccomp: Some(api::SecurityProfile {
            profile_type: EnumOrUnknown::new(api::security_profile::ProfileType::RuntimeDefault),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    };
    if let Some(psc) = spec.security_context.as_ref() {
        sc.run_as_user = psc.run_as_user.map(int64).into();
        sc.run_as_group = psc.run_as_group.map(int64).into();
        sc.supplemental_groups = pod_groups(psc);
        if let Some(p) = psc.supplemental_groups_policy.as_deref() {
            let policy = groups_policy(p).ok_or_else(|| TranslateError::InvalidPodField {
                pod: pod_key(pod),
                field: "supplementalGroupsPolicy",
                value: p.to_string(),
                detail: "unsupported (Merge or Strict)".into(),
            })?;
            sc.supplemental_groups_policy = EnumOrUnknown::new(policy);
        }
        sc.selinux_options = psc.se_linux_options.as_ref().map(selinux_option).into();
    }

    Ok(api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.to_string(),
            namespace: namespace.to_string(),
            attempt,
            ..Default::default()
        })
        .into(),
        hostname,
        log_directory: log_directory(pod, node).to_string_lossy().into_owned(),
        dns_config: Some(dns.config).into(),
        port_mappings: spec.containers.iter().flat_map(port_mappings).collect(),
        labels: labels::sandbox_labels(pod, &node.node_name),
        annotations: labels::sandbox_annotations(pod),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod, node),
            security_context: Some(sc).into(),
            sysctls,
            resources: Some(sandbox_resources.0).into(),
            overhead: Some(sandbox_resources.1).into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

fn int64(value: i64) -> api::Int64Value {
    api::Int64Value {
        value,
        ..Default::default()
    }
}

/// fsGroup first, then supplementalGroups (the kubelet's order).
fn pod_groups(psc: &PodSecurityContext) -> Vec<i64> {
    psc.fs_group
        .into_iter()
        .chain(psc.supplemental_groups.iter().flatten().copied())
        .collect()
}

/// The kubelet's `DetermineEffectiveSecurityContext`: the container's security context, with
/// the pod's SELinux options, user, group and runAsNonRoot where the container sets none.
pub fn effective_security_context(pod: &Pod, container: &Container) -> SecurityContext {
    let mut sc = container.security_context.clone().unwrap_or_default();
    if let Some(psc) = pod.spec.as_ref().and_then(|s| s.security_context.as_ref()) {
        if sc.se_linux_options.is_none() {
            sc.se_linux_options = psc.se_linux_options.clone();
        }
        if sc.run_as_user.is_none() {
            sc.run_as_user = psc.run_as_user;
        }
        if sc.run_as_group.is_none() {
            sc.run_as_group = psc.run_as_group;
        }
        if sc.run_as_non_root.is_none() {
            sc.run_as_non_root = psc.run_as_non_root;
        }
    }
    sc
}

/// The kubelet's `verifyRunAsNonRoot`.
fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    sc: &SecurityContext,
    image_user: &ImageUser,
) -> Result<(), TranslateError> {
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    let pod_desc = dns::kubelet_pod_desc(pod);
    let container_name = container.name.clone();
    if let Some(uid) = sc.run_as_user {
        if uid == 0 {
            return Err(TranslateError::RunAsUserRoot {
                pod_desc,
                container: container_name,
            });
        }
        return Ok(());
    }
    match (image_user.uid, image_user.username.as_str()) {
        (Some(0), _) => Err(TranslateError::ImageRunsAsRoot {
            pod_desc,
            container: container_name,
        }),
        (None, user) if !user.is_empty() => Err(TranslateError::NonNumericImageUser {
            user: user.to_string(),
            pod_desc,
            container: container_name,
        }),
        _ => Ok(()),
    }
}

/// A seccomp or AppArmor profile of the pod API as a CRI security profile.
fn security_profile(
    kind: &str,
    localhost: Option<&str>,
    localhost_root: Option<&PathBuf>,
) -> Result<api::SecurityProfile, String> {
    use api::security_profile::ProfileType;
    let (profile_type, localhost_ref) = match kind {
        "RuntimeDefault" => (ProfileType::RuntimeDefault, String::new()),
        "Unconfined" => (ProfileType::Unconfined, String::new()),
        "Localhost" => {
            let name = localhost
                .filter(|l| !l.is_empty())
                .ok_or("a Localhost profile needs localhostProfile")?;
            let r = match localhost_root {
                Some(root) => root.join(name).to_string_lossy().into_owned(),
                None => name.to_string(),
            };
            (ProfileType::Localhost, r)
        }
        _ => return Err("not RuntimeDefault, Unconfined or Localhost".into()),
    };
    Ok(api::SecurityProfile {
        profile_type: EnumOrUnknown::new(profile_type),
        localhost_ref,
        ..Default::default()
    })
}

/// `ContainerConfig` for one container of the pod (the kubelet's `generateContainerConfig`),
/// created for the `restart_count`-th time.
pub fn container_config(
    pod: &Pod,
    container: &Container,
    kind: ContainerKind,
    restart_count: u32,
    inputs: &ContainerInputs,
    node: &NodeContext,
) -> Result<api::ContainerConfig, TranslateError> {
    pod_ids(pod)?;
    let invalid =
        |field: &'static str, value: &str, detail: String| TranslateError::InvalidContainerField {
            pod: pod_key(pod),
            container: container.name.clone(),
            field,
            value: value.to_string(),
            detail,
        };
    let sc = effective_security_context(pod, container);
    verify_run_as_non_root(pod, container, &sc, &inputs.image_user)?;

    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| expand::expand_env(s, &inputs.env))
            .collect()
    };

    let mut mounts = inputs.mounts.clone();
    if let Some(hosts) = inputs.etc_hosts_path.as_ref() {
        let mounted_by_container = container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == ETC_HOSTS)
            || mounts.iter().any(|m| m.container_path == ETC_HOSTS);
        if !mounted_by_container {
            mounts.push(api::Mount {
                container_path: ETC_HOSTS.to_string(),
                host_path: hosts.clone(),
                ..Default::default()
            });
        }
    }
    let termination_path = container
        .termination_message_path
        .as_deref()
        .unwrap_or_default();
    if let (false, Some(host)) = (
        termination_path.is_empty(),
        inputs.termination_log_path.as_ref(),
    ) {
        mounts.push(api::Mount {
            container_path: termination_path.to_string(),
            host_path: host.clone(),
            ..Default::default()
        });
    }

    let resources =
        resources::linux_container_resources(pod, container, node.memory_capacity, node.cgroup_v2)
            .map_err(|e| invalid("resources", &e.0, "not a quantity".into()))?;

    let psc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let mut lsc = api::LinuxContainerSecurityContext {
        privileged: sc.privileged.unwrap_or(false),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        run_as_group: sc.run_as_group.map(int64).into(),
        namespace_options: Some(namespace_options(pod)).into(),
        supplemental_groups: psc.map(pod_groups).unwrap_or_default(),
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        selinux_options: sc.se_linux_options.as_ref().map(selinux_option).into(),
        ..Default::default()
    };
    if let Some(caps) = sc.capabilities.as_ref() {
        lsc.capabilities = Some(api::Capability {
            add_capabilities: caps.add.clone().unwrap_or_default(),
            drop_capabilities: caps.drop.clone().unwrap_or_default(),
            ..Default::default()
        })
        .into();
    }
    match sc.run_as_user {
        Some(uid) => lsc.run_as_user = Some(int64(uid)).into(),
        None => {
            lsc.run_as_user = inputs.image_user.uid.map(int64).into();
            lsc.run_as_username = inputs.image_user.username.clone();
        }
    }
    if let Some(p) = psc.and_then(|p| p.supplemental_groups_policy.as_deref()) {
        let policy = groups_policy(p).ok_or_else(|| {
            invalid(
                "supplementalGroupsPolicy",
                p,
                "unsupported (Merge or Strict)".into(),
            )
        })?;
        lsc.supplemental_groups_policy = EnumOrUnknown::new(policy);
    }
    if sc.proc_mount.as_deref() != Some("Unmasked") {
        lsc.masked_paths = DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect();
        lsc.readonly_paths = DEFAULT_READONLY_PATHS
            .iter()
            .map(|s| s.to_string())
            .collect();
    }
    // Seccomp: the container's profile, else the pod's, else unconfined (the kubelet's default
    // without --seccomp-default).
    let seccomp: Option<&SeccompProfile> = container
        .security_context
        .as_ref()
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| psc.and_then(|p| p.seccomp_profile.as_ref()));
    lsc.seccomp = Some(match seccomp {
        Some(p) => security_profile(
            &p.type_,
            p.localhost_profile.as_deref(),
            Some(&node.seccomp_profile_root),
        )
        .map_err(|d| invalid("seccompProfile", &p.type_, d))?,
        None => security_profile("Unconfined", None, None)
            .map_err(|d| invalid("seccompProfile", "Unconfined", d))?,
    })
    .into();
    // AppArmor: the container's profile, else the pod's, else the runtime's choice. Both the
    // structured field and the deprecated string, which containerd 1.6 still reads.
    let apparmor: Option<&AppArmorProfile> = container
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
        .or_else(|| psc.and_then(|p| p.app_armor_profile.as_ref()));
    if let Some(p) = apparmor {
        let profile = security_profile(&p.type_, p.localhost_profile.as_deref(), None)
            .map_err(|d| invalid("appArmorProfile", &p.type_, d))?;
        lsc.apparmor_profile = match p.type_.as_str() {
            "RuntimeDefault" => "runtime/default".to_string(),
            "Unconfined" => "unconfined".to_string(),
            _ => format!("localhost/{}", profile.localhost_ref),
        };
        lsc.apparmor = Some(profile).into();
    }

    Ok(api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: container.name.clone(),
            attempt: restart_count,
            ..Default::default()
        })
        .into(),
        image: Some(api::ImageSpec {
            image: inputs.image_ref.clone(),
            user_specified_image: container.image.clone().unwrap_or_default(),
            ..Default::default()
        })
        .into(),
        command: expand_all(&container.command),
        args: expand_all(&container.args),
        working_dir: container.working_dir.clone().unwrap_or_default(),
        envs: inputs
            .env
            .iter()
            .map(|(k, v)| api::KeyValue {
                key: k.clone(),
                value: v.clone().into_bytes(),
                ..Default::default()
            })
            .collect(),
        mounts,
        labels: labels::container_labels(pod, &container.name, &node.node_name),
        annotations: labels::container_annotations(pod, container, kind, restart_count)?,
        log_path: container_log_path(&container.name, restart_count),
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(resources).into(),
            security_context: Some(lsc).into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    //! Golden-config tests in the style of containerd's `getCreateContainerTestData`: one
    //! realistic pod (the recorded API server's `p1`), its expected configs written out in full,
    //! and one mutation per test applied to both the pod and the expectation.

    use super::*;
    use crate::pod::labels::LabelError;
    use k8s_openapi::api::core::v1::{
        Capabilities, ContainerPort, HostAlias, ResourceRequirements, Sysctl, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
    use std::collections::BTreeMap;

    const UID: &str = "4efec839-56e9-47bb-866d-48bc6e748cd4";
    const IMAGE_REF: &str =
        "sha256:a6f503d192ac90aa8a3112330b93e197a06d537bdb53f475b5159a417f890399";
    const HOSTS: &str = "/var/lib/vk-cri/pods/4efec839-56e9-47bb-866d-48bc6e748cd4/etc-hosts";
    const TERMLOG: &str =
        "/var/lib/vk-cri/pods/4efec839-56e9-47bb-866d-48bc6e748cd4/containers/c/1a2b3c4d";

    fn fixture_pod() -> Pod {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/apiserver/00f-admin-create-pod-p1/response-body.json"
        ))
        .expect("fixture pod")
    }

    fn spec(pod: &mut Pod) -> &mut k8s_openapi::api::core::v1::PodSpec {
        pod.spec.as_mut().unwrap()
    }

    fn c0(pod: &mut Pod) -> &mut Container {
        &mut spec(pod).containers[0]
    }

    fn psc(pod: &mut Pod) -> &mut PodSecurityContext {
        spec(pod)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn csc(pod: &mut Pod) -> &mut SecurityContext {
        c0(pod)
            .security_context
            .get_or_insert_with(Default::default)
    }

    fn node() -> NodeContext {
        let mut n = NodeContext::new("vk-node");
        n.cluster_dns = vec!["10.96.0.10".into()];
        n.host_resolv_conf = Some("nameserver 192.168.1.1\nsearch corp.example\n".into());
        n.cgroup_root = "/vk-cri".into();
        n.memory_capacity = 16 << 30;
        n
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn ns(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> api::NamespaceOption {
        api::NamespaceOption {
            network: EnumOrUnknown::new(network),
            pid: EnumOrUnknown::new(pid),
            ipc: EnumOrUnknown::new(ipc),
            ..Default::default()
        }
    }

    fn profile(t: api::security_profile::ProfileType, r: &str) -> api::SecurityProfile {
        api::SecurityProfile {
            profile_type: EnumOrUnknown::new(t),
            localhost_ref: r.into(),
            ..Default::default()
        }
    }

    fn golden_sandbox() -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: "p1".into(),
                uid: UID.into(),
                namespace: "fixtures".into(),
                attempt: 0,
                ..Default::default()
            })
            .into(),
            hostname: "p1".into(),
            log_directory: format!("/var/log/pods/fixtures_p1_{UID}"),
            dns_config: Some(api::DNSConfig {
                servers: strings(&["10.96.0.10"]),
                searches: strings(&[
                    "fixtures.svc.cluster.local",
                    "svc.cluster.local",
                    "cluster.local",
                    "corp.example",
                ]),
                options: strings(&["ndots:5"]),
                ..Default::default()
            })
            .into(),
            port_mappings: vec![api::PortMapping {
                protocol: EnumOrUnknown::new(api::Protocol::TCP),
                container_port: 80,
                ..Default::default()
            }],
            labels: crate::cri::labels([
                ("app", "fixture"),
                ("io.kubernetes.pod.name", "p1"),
                ("io.kubernetes.pod.namespace", "fixtures"),
                ("io.kubernetes.pod.uid", UID),
                ("vk-cri.io/node", "vk-node"),
            ]),
            annotations: Default::default(),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("/vk-cri/besteffort/pod{UID}"),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(ns(
                        NamespaceMode::POD,
                        NamespaceMode::CONTAINER,
                        NamespaceMode::POD,
                    ))
                    .into(),
                    seccomp: Some(profile(
                        api::security_profile::ProfileType::RuntimeDefault,
                        "",
                    ))
                    .into(),
                    ..Default::default()
                })
                .into(),
                // A BestEffort pod: the minimum shares, no quota or memory limit; no overhead.
                resources: Some(api::LinuxContainerResources {
                    cpu_shares: 2,
                    cpu_period: 100_000,
                    ..Default::default()
                })
                .into(),
                overhead: Some(api::LinuxContainerResources::default()).into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }

    fn inputs() -> ContainerInputs {
        ContainerInputs {
            env: vec![("PASSWORD".into(), "hunter2".into())],
            mounts: vec![
                api::Mount {
                    container_path: "/etc/app".into(),
                    host_path: format!("/var/lib/vk-cri/pods/{UID}/volumes/conf"),
                    ..Default::default()
                },
                api::Mount {
                    container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                    host_path: format!("/var/lib/vk-cri/pods/{UID}/volumes/kube-api-access-tvrnn"),
                    readonly: true,
                    ..Default::default()
                },
            ],
            etc_hosts_path: Some(HOSTS.into()),
            termination_log_path: Some(TERMLOG.into()),
            image_ref: IMAGE_REF.into(),
            image_user: ImageUser::root(),
        }
    }

    fn golden_container() -> api::ContainerConfig {
        let mut mounts = inputs().mounts;
        mounts.push(api::Mount {
            container_path: "/etc/hosts".into(),
            host_path: HOSTS.into(),
            ..Default::default()
        });
        mounts.push(api::Mount {
            container_path: "/dev/termination-log".into(),
            host_path: TERMLOG.into(),
            ..Default::default()
        });
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
                ..Default::default()
            })
            .into(),
            image: Some(api::ImageSpec {
                image: IMAGE_REF.into(),
                user_specified_image: "busybox:1.36".into(),
                ..Default::default()
            })
            .into(),
            command: strings(&["sh", "-c", "while true; do echo tick; sleep 5; done"]),
            envs: vec![api::KeyValue {
                key: "PASSWORD".into(),
                value: b"hunter2".to_vec(),
                ..Default::default()
            }],
            mounts,
            labels: crate::cri::labels([
                ("io.kubernetes.pod.name", "p1"),
                ("io.kubernetes.pod.namespace", "fixtures"),
                ("io.kubernetes.pod.uid", UID),
                ("io.kubernetes.container.name", "c"),
                ("vk-cri.io/node", "vk-node"),
            ]),
            annotations: crate::cri::labels([
                ("io.kubernetes.container.hash", "df0fdb33d007ef1d"),
                ("io.kubernetes.container.restartCount", "0"),
                (
                    "io.kubernetes.container.terminationMessagePath",
                    "/dev/termination-log",
                ),
                ("io.kubernetes.container.terminationMessagePolicy", "File"),
                ("io.kubernetes.pod.terminationGracePeriod", "30"),
                (
                    "io.kubernetes.container.ports",
                    r#"[{"containerPort":80,"protocol":"TCP"}]"#,
                ),
                ("vk-cri.io/container-type", "app"),
            ]),
            log_path: "c/0.log".into(),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                })
                .into(),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(ns(
                        NamespaceMode::POD,
                        NamespaceMode::CONTAINER,
                        NamespaceMode::POD,
                    ))
                    .into(),
                    run_as_user: Some(int64(0)).into(),
                    masked_paths: strings(DEFAULT_MASKED_PATHS),
                    readonly_paths: strings(DEFAULT_READONLY_PATHS),
                    seccomp: Some(profile(api::security_profile::ProfileType::Unconfined, ""))
                        .into(),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }
    }

    fn sandbox_for(pod: &Pod) -> api::PodSandboxConfig {
        sandbox_config(pod, &node(), 0).unwrap_or_else(|e| panic!("{e}"))
    }

    fn container_for(pod: &Pod, inputs: &ContainerInputs) -> api::ContainerConfig {
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        container_config(pod, &c, ContainerKind::App, 0, inputs, &node())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sandbox_linux(cfg: &mut api::PodSandboxConfig) -> &mut api::LinuxPodSandboxConfig {
        cfg.linux.as_mut().unwrap()
    }

    fn sandbox_sc(cfg: &mut api::PodSandboxConfig) -> &mut api::LinuxSandboxSecurityContext {
        sandbox_linux(cfg).security_context.as_mut().unwrap()
    }

    fn container_sc(cfg: &mut api::ContainerConfig) -> &mut api::LinuxContainerSecurityContext {
        cfg.linux
            .as_mut()
            .unwrap()
            .security_context
            .as_mut()
            .unwrap()
    }

    fn container_resources(cfg: &mut api::ContainerConfig) -> &mut api::LinuxContainerResources {
        cfg.linux.as_mut().unwrap().resources.as_mut().unwrap()
    }

    /// Re-hashes the expectation after a spec mutation.
    fn rehash(pod: &Pod, want: &mut api::ContainerConfig) {
        let c = &pod.spec.as_ref().unwrap().containers[0];
        want.annotations.insert(
            labels::CONTAINER_HASH.into(),
            format!("{:x}", labels::container_hash(c).unwrap()),
        );
    }

    #[test]
    fn golden_sandbox_config() {
        assert_eq!(sandbox_for(&fixture_pod()), golden_sandbox());
    }

    #[test]
    fn golden_container_config() {
        assert_eq!(container_for(&fixture_pod(), &inputs()), golden_container());
    }

    #[test]
    fn sandbox_attempt_and_annotations() {
        let mut pod = fixture_pod();
        pod.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        let mut want = golden_sandbox();
        want.metadata.as_mut().unwrap().attempt = 3;
        want.annotations = crate::cri::labels([("a", "b")]);
        assert_eq!(sandbox_config(&pod, &node(), 3).unwrap(), want);
    }

    #[test]
    fn sandbox_host_network_has_no_hostname_and_host_dns() {
        let mut pod = fixture_pod();
        spec(&mut pod).host_network = Some(true);
        let mut want = golden_sandbox();
        want.hostname = String::new();
        want.dns_config = Some(api::DNSConfig {
            servers: strings(&["192.168.1.1"]),
            searches: strings(&["corp.example"]),
            ..Default::default()
        })
        .into();
        sandbox_sc(&mut want).namespace_options = Some(ns(
            NamespaceMode::NODE,
            NamespaceMode::CONTAINER,
            NamespaceMode::POD,
        ))
        .into();
        assert_eq!(sandbox_for(&pod), want);

        // The container carries the same namespaces itself.
        let got = container_for(&pod, &inputs());
        assert_eq!(
            got.linux
                .security_context
                .namespace_options
                .network
                .enum_value(),
            Ok(NamespaceMode::NODE)
        );
    }

    #[test]
    fn sandbox_host_pid_ipc_and_shared_process_namespace() {
        let cases = [
            (
                Some(true),
                None,
                None,
                ns(NamespaceMode::POD, NamespaceMode::NODE, NamespaceMode::POD),
            ),
            (
                None,
                Some(true),
                None,
                ns(
                    NamespaceMode::POD,
                    NamespaceMode::CONTAINER,
                    NamespaceMode::NODE,
                ),
            ),
            (
                None,
                None,
                Some(true),
                ns(NamespaceMode::POD, NamespaceMode::POD, NamespaceMode::POD),
            ),
            // hostPID wins over sharing.
            (
                Some(true),
                None,
                Some(true),
                ns(NamespaceMode::POD, NamespaceMode::NODE, NamespaceMode::POD),
            ),
        ];
        for (host_pid, host_ipc, share, want_ns) in cases {
            let mut pod = fixture_pod();
            spec(&mut pod).host_pid = host_pid;
            spec(&mut pod).host_ipc = host_ipc;
            spec(&mut pod).share_process_namespace = share;
            let mut want = golden_sandbox();
            sandbox_sc(&mut want).namespace_options = Some(want_ns.clone()).into();
            assert_eq!(
                sandbox_for(&pod),
                want,
                "{host_pid:?} {host_ipc:?} {share:?}"
            );
            let mut want_c = golden_container();
            container_sc(&mut want_c).namespace_options = Some(want_ns).into();
            assert_eq!(container_for(&pod, &inputs()), want_c);
        }
    }

    #[test]
    fn sandbox_hostname_subdomain_and_fqdn() {
        let mut pod = fixture_pod();
        spec(&mut pod).hostname = Some("web-0".into());
        spec(&mut pod).subdomain = Some("nginx".into());
        let mut want = golden_sandbox();
        want.hostname = "web-0".into();
        assert_eq!(sandbox_for(&pod), want);
        spec(&mut pod).set_hostname_as_fqdn = Some(true);
        want.hostname = "web-0.nginx.fixtures.svc.cluster.local".into();
        assert_eq!(sandbox_for(&pod), want);
    }

    #[test]
    fn sandbox_port_mappings() {
        let mut pod = fixture_pod();
        let port = |p: i32, proto: &str, hp: Option<i32>, ip: Option<&str>, name: Option<&str>| {
            ContainerPort {
                container_port: p,
                protocol: Some(proto.into()),
                host_port: hp,
                host_ip: ip.map(String::from),
                name: name.map(String::from),
            }
        };
        c0(&mut pod).ports = Some(vec![
            port(80, "TCP", Some(8080), Some("127.0.0.1"), Some("http")),
            port(53, "UDP", None, None, None),
            port(53, "UDP", None, None, None), // same unnamed port: dropped
            port(9999, "SCTP", Some(9999), Some("::1"), None),
            port(81, "TCP", None, None, Some("http")), // same name: dropped
        ]);
        let mut init = Container {
            name: "init".into(),
            ports: Some(vec![port(7, "TCP", Some(7), None, None)]),
            ..Default::default()
        };
        init.image = Some("busybox".into());
        spec(&mut pod).init_containers = Some(vec![init]); // init containers' ports are not mapped
        let mapping = |proto: api::Protocol, cp: i32, hp: i32, ip: &str| api::PortMapping {
            protocol: EnumOrUnknown::new(proto),
            container_port: cp,
            host_port: hp,
            host_ip: ip.into(),
            ..Default::default()
        };
        let mut want = golden_sandbox();
        want.port_mappings = vec![
            mapping(api::Protocol::TCP, 80, 8080, "127.0.0.1"),
            mapping(api::Protocol::UDP, 53, 0, ""),
            mapping(api::Protocol::SCTP, 9999, 9999, "::1"),
        ];
        assert_eq!(sandbox_for(&pod), want);
    }

    #[test]
    fn sandbox_pod_security_context() {
        let mut pod = fixture_pod();
        let sc = psc(&mut pod);
        sc.run_as_user = Some(1000);
        sc.run_as_group = Some(3000);
        sc.fs_group = Some(2000);
        sc.supplemental_groups = Some(vec![4000, 5000]);
        sc.supplemental_groups_policy = Some("Strict".into());
        sc.se_linux_options = Some(SELinuxOptions {
            level: Some("s0:c123,c456".into()),
            ..Default::default()
        });
        let mut want = golden_sandbox();
        let s = sandbox_sc(&mut want);
        s.run_as_user = Some(int64(1000)).into();
        s.run_as_group = Some(int64(3000)).into();
        s.supplemental_groups = vec![2000, 4000, 5000];
        s.supplemental_groups_policy = EnumOrUnknown::new(api::SupplementalGroupsPolicy::Strict);
        s.selinux_options = Some(api::SELinuxOption {
            level: "s0:c123,c456".into(),
            ..Default::default()
        })
        .into();
        assert_eq!(sandbox_for(&pod), want);

        // The container inherits user, group, groups and SELinux options from the pod.
        let mut want_c = golden_container();
        let s = container_sc(&mut want_c);
        s.run_as_user = Some(int64(1000)).into();
        s.run_as_group = Some(int64(3000)).into();
        s.supplemental_groups = vec![2000, 4000, 5000];
        s.supplemental_groups_policy = EnumOrUnknown::new(api::SupplementalGroupsPolicy::Strict);
        s.selinux_options = Some(api::SELinuxOption {
            level: "s0:c123,c456".into(),
            ..Default::default()
        })
        .into();
        assert_eq!(container_for(&pod, &inputs()), want_c);

        psc(&mut pod).supplemental_groups_policy = Some("Loose".into());
        let e = sandbox_config(&pod, &node(), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid supplementalGroupsPolicy \"Loose\" of pod fixtures/p1: unsupported (Merge or Strict)"
        );
        assert_eq!(e.reason(), "FailedCreatePodSandBox");
    }

    #[test]
    fn sandbox_privileged_when_any_container_is() {
        let mut pod = fixture_pod();
        spec(&mut pod).init_containers = Some(vec![Container {
            name: "init".into(),
            security_context: Some(SecurityContext {
                privileged: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        let mut want = golden_sandbox();
        sandbox_sc(&mut want).privileged = true;
        assert_eq!(sandbox_for(&pod), want);
    }

    #[test]
    fn sandbox_cgroup_parent_by_qos() {
        let mut pod = fixture_pod();
        let set = |pod: &mut Pod, req: &[(&str, &str)], lim: &[(&str, &str)], qos: &str| {
            let q = |v: &[(&str, &str)]| {
                Some(
                    v.iter()
                        .map(|(k, x)| (k.to_string(), K8sQuantity(x.to_string())))
                        .collect::<BTreeMap<_, _>>(),
                )
            };
            c0(pod).resources = Some(ResourceRequirements {
                requests: q(req),
                limits: q(lim),
                ..Default::default()
            });
            pod.status.as_mut().unwrap().qos_class = Some(qos.into());
        };
        set(
            &mut pod,
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")],
            "Guaranteed",
        );
        assert_eq!(
            sandbox_for(&pod).linux.cgroup_parent,
            format!("/vk-cri/pod{UID}")
        );
        set(&mut pod, &[("cpu", "1")], &[], "Burstable");
        assert_eq!(
            sandbox_for(&pod).linux.cgroup_parent,
            format!("/vk-cri/burstable/pod{UID}")
        );
        let mut n = node();
        n.cgroup_root = String::new();
        assert_eq!(sandbox_config(&pod, &n, 0).unwrap().linux.cgroup_parent, "");
    }

    #[test]
    fn sandbox_sysctls() {
        let mut pod = fixture_pod();
        psc(&mut pod).sysctls = Some(vec![
            Sysctl {
                name: "net.ipv4.ip_local_port_range".into(),
                value: "1024 65535".into(),
            },
            Sysctl {
                name: "kernel/shm_rmid_forced".into(),
                value: "1".into(),
            },
        ]);
        let mut want = golden_sandbox();
        sandbox_linux(&mut want).sysctls = crate::cri::labels([
            ("net.ipv4.ip_local_port_range", "1024 65535"),
            ("kernel.shm_rmid_forced", "1"),
        ]);
        assert_eq!(sandbox_for(&pod), want);

        // Unsafe ones need the node's consent, and a namespace.
        psc(&mut pod).sysctls = Some(vec![Sysctl {
            name: "kernel.msgmax".into(),
            value: "65536".into(),
        }]);
        let e = sandbox_config(&pod, &node(), 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "forbidden sysctl \"kernel.msgmax\" in pod fixtures/p1: not allowlisted"
        );
        assert_eq!(e.reason(), "SysctlForbidden");
        let mut n = node();
        n.allowed_unsafe_sysctls = vec!["kernel.msg*".into()];
        assert_eq!(
            sandbox_config(&pod, &n, 0)
                .unwrap()
                .linux
                .sysctls
                .get("kernel.msgmax"),
            Some(&"65536".to_string())
        );
        n.allowed_unsafe_sysctls = vec!["vm.swappiness".into()];
        psc(&mut pod).sysctls = Some(vec![Sysctl {
            name: "vm.swappiness".into(),
            value: "1".into(),
        }]);
        assert!(sandbox_config(&pod, &n, 0).is_err(), "not namespaced");

        // A namespace shared with the host forbids its sysctls.
        psc(&mut pod).sysctls = Some(vec![Sysctl {
            name: "net.ipv4.tcp_syncookies".into(),
            value: "1".into(),
        }]);
        spec(&mut pod).host_network = Some(true);
        assert_eq!(
            sandbox_config(&pod, &node(), 0).unwrap_err().to_string(),
            "forbidden sysctl \"net.ipv4.tcp_syncookies\" in pod fixtures/p1: not allowed with host Net enabled"
        );
        spec(&mut pod).host_network = None;
        spec(&mut pod).host_ipc = Some(true);
        psc(&mut pod).sysctls = Some(vec![Sysctl {
            name: "kernel.shm_rmid_forced".into(),
            value: "1".into(),
        }]);
        assert!(sandbox_config(&pod, &node(), 0)
            .unwrap_err()
            .to_string()
            .ends_with("not allowed with host IPC enabled"));
    }

    #[test]
    fn sandbox_rejects_pods_without_identity() {
        let mut pod = fixture_pod();
        pod.metadata.uid = None;
        let e = sandbox_config(&pod, &node(), 0).unwrap_err();
        assert_eq!(e.to_string(), "pod fixtures/p1 has no uid");
        assert_eq!(e.reason(), "FailedCreatePodSandBox");
    }

    #[test]
    fn container_command_and_args_are_expanded_from_the_env() {
        let mut pod = fixture_pod();
        c0(&mut pod).command = Some(strings(&["sh", "-c", "echo $(GREETING) $$HOME $(MISSING)"]));
        c0(&mut pod).args = Some(strings(&["$(PASSWORD)", "$$(PASSWORD)"]));
        let mut inp = inputs();
        inp.env.push(("GREETING".into(), "hello".into()));
        let mut want = golden_container();
        rehash(&pod, &mut want);
        want.command = strings(&["sh", "-c", "echo hello $HOME $(MISSING)"]);
        want.args = strings(&["hunter2", "$(PASSWORD)"]);
        want.envs.push(api::KeyValue {
            key: "GREETING".into(),
            value: b"hello".to_vec(),
            ..Default::default()
        });
        assert_eq!(container_for(&pod, &inp), want);
    }

    #[test]
    fn container_working_dir_tty_stdin_restart_count_and_kind() {
        let mut pod = fixture_pod();
        c0(&mut pod).working_dir = Some("/work".into());
        c0(&mut pod).tty = Some(true);
        c0(&mut pod).stdin = Some(true);
        c0(&mut pod).stdin_once = Some(true);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let got = container_config(&pod, &c, ContainerKind::Init, 4, &inputs(), &node()).unwrap();
        let mut want = golden_container();
        rehash(&pod, &mut want);
        want.working_dir = "/work".into();
        want.tty = true;
        want.stdin = true;
        want.stdin_once = true;
        want.metadata.as_mut().unwrap().attempt = 4;
        want.log_path = "c/4.log".into();
        want.annotations
            .insert(labels::RESTART_COUNT.into(), "4".into());
        want.annotations
            .insert(labels::CONTAINER_TYPE.into(), "init".into());
        assert_eq!(got, want);
    }

    #[test]
    fn container_resources_follow_requests_and_limits() {
        let mut pod = fixture_pod();
        let q = |v: &[(&str, &str)]| {
            Some(
                v.iter()
                    .map(|(k, x)| (k.to_string(), K8sQuantity(x.to_string())))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        c0(&mut pod).resources = Some(ResourceRequirements {
            requests: q(&[("cpu", "250m"), ("memory", "1Gi")]),
            limits: q(&[("cpu", "500m"), ("memory", "2Gi")]),
            ..Default::default()
        });
        pod.status.as_mut().unwrap().qos_class = Some("Burstable".into());
        let mut want = golden_container();
        rehash(&pod, &mut want);
        let r = container_resources(&mut want);
        r.cpu_shares = 256;
        r.cpu_quota = 50_000;
        r.memory_limit_in_bytes = 2 << 30;
        r.oom_score_adj = 1000 - 1000 / 16;
        assert_eq!(container_for(&pod, &inputs()), want);

        c0(&mut pod).resources.as_mut().unwrap().limits = q(&[("memory", "two")]);
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let e = container_config(&pod, &c, ContainerKind::App, 0, &inputs(), &node()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid resources \"two\" of container c in pod fixtures/p1: not a quantity"
        );
        assert_eq!(e.reason(), "CreateContainerConfigError");
    }

    #[test]
    fn container_run_as_non_root_checks() {
        let desc = format!("p1_fixtures({UID})");
        let check = |pod: &Pod, user: ImageUser| {
            let mut inp = inputs();
            inp.image_user = user;
            let c = pod.spec.as_ref().unwrap().containers[0].clone();
            container_config(pod, &c, ContainerKind::App, 0, &inp, &node())
        };
        let numeric = |uid| ImageUser {
            uid: Some(uid),
            username: String::new(),
        };
        let named = ImageUser {
            uid: None,
            username: "nginx".into(),
        };
        let mut pod = fixture_pod();
        psc(&mut pod).run_as_non_root = Some(true);

        let e = check(&pod, ImageUser::root()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("container has runAsNonRoot and image will run as root (pod: {desc:?}, container: c)")
        );
        assert_eq!(e.reason(), "CreateContainerConfigError");
        let e = check(&pod, named.clone()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("container has runAsNonRoot and image has non-numeric user (nginx), cannot verify user is non-root (pod: {desc:?}, container: c)")
        );
        let ok = check(&pod, numeric(1000)).unwrap();
        assert_eq!(ok.linux.security_context.run_as_user.value, 1000);

        // An explicit non-root user satisfies the check whatever the image says.
        csc(&mut pod).run_as_user = Some(1001);
        let ok = check(&pod, ImageUser::root()).unwrap();
        assert_eq!(ok.linux.security_context.run_as_user.value, 1001);
        csc(&mut pod).run_as_user = Some(0);
        assert_eq!(
            check(&pod, numeric(1000)).unwrap_err().to_string(),
            format!("container's runAsUser breaks non-root policy (pod: {desc:?}, container: c)")
        );
        // The container may lift the pod's requirement.
        csc(&mut pod).run_as_non_root = Some(false);
        assert!(check(&pod, ImageUser::root()).is_ok());
    }

    #[test]
    fn container_user_from_image_name() {
        let pod = fixture_pod();
        let mut inp = inputs();
        inp.image_user = ImageUser {
            uid: None,
            username: "nginx".into(),
        };
        let mut want = golden_container();
        let s = container_sc(&mut want);
        s.run_as_user = Default::default();
        s.run_as_username = "nginx".into();
        assert_eq!(container_for(&pod, &inp), want);
    }

    #[test]
    fn container_security_context() {
        use api::security_profile::ProfileType;
        let mut pod = fixture_pod();
        let sc = csc(&mut pod);
        sc.privileged = Some(true);
        sc.read_only_root_filesystem = Some(true);
        sc.allow_privilege_escalation = Some(false);
        sc.run_as_group = Some(3000);
        sc.capabilities = Some(Capabilities {
            add: Some(strings(&["NET_ADMIN", "SYS_TIME"])),
            drop: Some(strings(&["ALL"])),
        });
        sc.seccomp_profile = Some(SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("profiles/audit.json".into()),
        });
        sc.app_armor_profile = Some(AppArmorProfile {
            type_: "Localhost".into(),
            localhost_profile: Some("k8s-apparmor-example".into()),
        });
        let mut want = golden_container();
        rehash(&pod, &mut want);
        let s = container_sc(&mut want);
        s.privileged = true;
        s.readonly_rootfs = true;
        s.no_new_privs = true;
        s.run_as_group = Some(int64(3000)).into();
        s.capabilities = Some(api::Capability {
            add_capabilities: strings(&["NET_ADMIN", "SYS_TIME"]),
            drop_capabilities: strings(&["ALL"]),
            ..Default::default()
        })
        .into();
        s.seccomp = Some(profile(
            ProfileType::Localhost,
            "/var/lib/kubelet/seccomp/profiles/audit.json",
        ))
        .into();
        s.apparmor = Some(profile(ProfileType::Localhost, "k8s-apparmor-example")).into();
        s.apparmor_profile = "localhost/k8s-apparmor-example".into();
        assert_eq!(container_for(&pod, &inputs()), want);

        // allowPrivilegeEscalation true (or unset) keeps no_new_privs off.
        csc(&mut pod).allow_privilege_escalation = Some(true);
        let got = container_for(&pod, &inputs());
        assert!(!got.linux.security_context.no_new_privs);
    }

    #[test]
    fn container_profiles_fall_back_to_the_pods() {
        use api::security_profile::ProfileType;
        let mut pod = fixture_pod();
        psc(&mut pod).seccomp_profile = Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        });
        psc(&mut pod).app_armor_profile = Some(AppArmorProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        });
        let mut want = golden_container();
        let s = container_sc(&mut want);
        s.seccomp = Some(profile(ProfileType::RuntimeDefault, "")).into();
        s.apparmor = Some(profile(ProfileType::Unconfined, "")).into();
        s.apparmor_profile = "unconfined".into();
        assert_eq!(container_for(&pod, &inputs()), want);

        // The container's own profile wins.
        csc(&mut pod).seccomp_profile = Some(SeccompProfile {
            type_: "Unconfined".into(),
            localhost_profile: None,
        });
        let got = container_for(&pod, &inputs());
        assert_eq!(
            got.linux.security_context.seccomp.profile_type.enum_value(),
            Ok(ProfileType::Unconfined)
        );

        csc(&mut pod).seccomp_profile = Some(SeccompProfile {
            type_: "Localhost".into(),
            localhost_profile: None,
        });
        let c = pod.spec.as_ref().unwrap().containers[0].clone();
        let e = container_config(&pod, &c, ContainerKind::App, 0, &inputs(), &node()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid seccompProfile \"Localhost\" of container c in pod fixtures/p1: a Localhost profile needs localhostProfile"
        );
    }

    #[test]
    fn container_unmasked_proc_mount_has_no_masked_paths() {
        let mut pod = fixture_pod();
        csc(&mut pod).proc_mount = Some("Unmasked".into());
        let mut want = golden_container();
        rehash(&pod, &mut want);
        let s = container_sc(&mut want);
        s.masked_paths.clear();
        s.readonly_paths.clear();
        assert_eq!(container_for(&pod, &inputs()), want);
    }

    #[test]
    fn container_mounts_hosts_and_termination_log_only_when_due() {
        // The container mounts its own /etc/hosts: ours is not added.
        let mut pod = fixture_pod();
        c0(&mut pod)
            .volume_mounts
            .as_mut()
            .unwrap()
            .push(VolumeMount {
                name: "hosts".into(),
                mount_path: "/etc/hosts".into(),
                ..Default::default()
            });
        let mut want = golden_container();
        rehash(&pod, &mut want);
        want.mounts.retain(|m| m.host_path != HOSTS);
        assert_eq!(container_for(&pod, &inputs()), want);

        // No hosts file (host network) and no termination message path: neither mount.
        let mut pod = fixture_pod();
        c0(&mut pod).termination_message_path = None;
        let mut inp = inputs();
        inp.etc_hosts_path = None;
        let mut want = golden_container();
        rehash(&pod, &mut want);
        want.mounts.truncate(2);
        want.annotations
            .insert(labels::TERMINATION_MESSAGE_PATH.into(), String::new());
        assert_eq!(container_for(&pod, &inp), want);

        // A custom termination message path is where the file goes.
        let mut pod = fixture_pod();
        c0(&mut pod).termination_message_path = Some("/tmp/done".into());
        let got = container_for(&pod, &inputs());
        assert_eq!(got.mounts.last().unwrap().container_path, "/tmp/done");
        assert_eq!(got.mounts.last().unwrap().host_path, TERMLOG);
    }

    #[test]
    fn image_user_from_image_status() {
        assert_eq!(ImageUser::from_image(None), ImageUser::root());
        let mut image = api::Image::default();
        assert_eq!(ImageUser::from_image(Some(&image)), ImageUser::root());
        image.username = "nginx".into();
        assert_eq!(
            ImageUser::from_image(Some(&image)),
            ImageUser {
                uid: None,
                username: "nginx".into()
            }
        );
        image.uid = Some(int64(101)).into();
        assert_eq!(
            ImageUser::from_image(Some(&image)),
            ImageUser {
                uid: Some(101),
                username: String::new()
            }
        );
    }

    #[test]
    fn etc_hosts_of_the_fixture_pod_with_aliases() {
        let mut pod = fixture_pod();
        spec(&mut pod).host_aliases = Some(vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: Some(strings(&["db"])),
        }]);
        let hosts = etc_hosts(&pod, &strings(&["10.88.0.7"]), "cluster.local").unwrap();
        assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("\n10.88.0.7\tp1\n"));
        assert!(hosts.ends_with("# Entries added by HostAliases.\n10.1.2.3\tdb\n"));
    }

    #[test]
    fn errors_map_to_kubelet_reasons() {
        let cases: Vec<(TranslateError, &str)> = vec![
            (
                TranslateError::ResolvConf {
                    pod: "a/b".into(),
                    detail: "x".into(),
                },
                "FailedCreatePodSandBox",
            ),
            (
                TranslateError::NonNumericImageUser {
                    user: "u".into(),
                    pod_desc: "d".into(),
                    container: "c".into(),
                },
                "CreateContainerConfigError",
            ),
            (
                TranslateError::Label(LabelError::Encode {
                    what: "w".into(),
                    message: "m".into(),
                }),
                "CreateContainerConfigError",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason(), want, "{e}");
        }
    }

    #[test]
    fn log_paths() {
        let pod = fixture_pod();
        assert_eq!(
            log_directory(&pod, &node()),
            PathBuf::from(format!("/var/log/pods/fixtures_p1_{UID}"))
        );
        assert_eq!(container_log_path("c", 7), "c/7.log");
        assert_eq!(qos_class(&pod), "BestEffort");
    }
}
