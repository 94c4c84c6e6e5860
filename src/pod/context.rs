//! What the node contributes to translating a pod ([`NodeContext`]) and what goes wrong
//! translating one ([`TranslateError`]).
//!
//! Owns those two types, shared by `translate.rs` and `dns.rs` (which `translate.rs` uses), so
//! that neither of those imports the other for them. Pure data.

use std::path::PathBuf;

use super::labels::LabelError;

/// Facts about this node that the translation needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeContext {
    /// The Node's name; also the value of the owner label.
    pub node_name: String,
    /// Root of the pods' log directories (the kubelet's `/var/log/pods`).
    pub log_root: PathBuf,
    /// Cluster DNS servers (the kubelet's `clusterDNS`); empty: ClusterFirst falls back to the
    /// host's resolver.
    pub cluster_dns: Vec<String>,
    /// The cluster domain (the kubelet's `clusterDomain`, default `cluster.local`).
    pub cluster_domain: String,
    /// The content of the host's resolv.conf (the kubelet's `--resolv-conf`); `None` is the
    /// kubelet's `--resolv-conf=""`: pods with host DNS get the local resolver only.
    pub host_resolv_conf: Option<String>,
    /// Root of the pods' cgroups (cgroupfs syntax, e.g. `/vk-cri`); empty: the runtime's default.
    pub cgroup_root: String,
    /// The node's memory in bytes, for the OOM score of Burstable containers.
    pub memory_capacity: i64,
    /// Whether the host runs the unified cgroup v2 hierarchy.
    pub cgroup_v2: bool,
    /// Unsafe sysctls (or `prefix*` patterns) this node allows besides [`SAFE_SYSCTLS`](super::translate::SAFE_SYSCTLS) (the
    /// kubelet's `--allowed-unsafe-sysctls`).
    pub allowed_unsafe_sysctls: Vec<String>,
    /// Where `Localhost` seccomp profiles live (the kubelet's `<root-dir>/seccomp`).
    pub seccomp_profile_root: PathBuf,
}

impl NodeContext {
    /// A node with the kubelet's defaults: logs under `/var/log/pods`, domain `cluster.local`,
    /// no cluster DNS, no host resolv.conf, no cgroup root, 4 GiB of memory, cgroup v1.
    pub fn new(node_name: &str) -> NodeContext {
        NodeContext {
            node_name: node_name.to_string(),
            log_root: PathBuf::from("/var/log/pods"),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".to_string(),
            host_resolv_conf: None,
            cgroup_root: String::new(),
            memory_capacity: 4 << 30,
            cgroup_v2: false,
            allowed_unsafe_sysctls: Vec::new(),
            seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
        }
    }
}

/// A pod or container that cannot be translated. Messages name the pod (`namespace/name`) and
/// container; the runAsNonRoot ones are the kubelet's own words, which users search for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("pod {pod} has no {field}")]
    MissingField { pod: String, field: &'static str },
    #[error("invalid {field} {value:?} of pod {pod}: {detail}")]
    InvalidPodField {
        pod: String,
        field: &'static str,
        value: String,
        detail: String,
    },
    #[error("failed to read the host's resolv.conf for pod {pod}: {detail}")]
    ResolvConf { pod: String, detail: String },
    #[error("forbidden sysctl {name:?} in pod {pod}: {detail}")]
    ForbiddenSysctl {
        pod: String,
        name: String,
        detail: String,
    },
    #[error(
        "container's runAsUser breaks non-root policy (pod: {pod_desc:?}, container: {container})"
    )]
    RunAsUserRoot { pod_desc: String, container: String },
    #[error(
        "container has runAsNonRoot and image will run as root (pod: {pod_desc:?}, container: \
         {container})"
    )]
    ImageRunsAsRoot { pod_desc: String, container: String },
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user \
         is non-root (pod: {pod_desc:?}, container: {container})"
    )]
    NonNumericImageUser {
        user: String,
        pod_desc: String,
        container: String,
    },
    #[error("invalid {field} {value:?} of container {container} in pod {pod}: {detail}")]
    InvalidContainerField {
        pod: String,
        container: String,
        field: &'static str,
        value: String,
        detail: String,
    },
    #[error(transparent)]
    Label(#[from] LabelError),
}

impl TranslateError {
    /// The kubelet reason to report: `FailedCreatePodSandBox` (the event reason) for what stops
    /// the sandbox, `SysctlForbidden` (the kubelet rejects such pods at admission) and
    /// `CreateContainerConfigError` (the container's waiting reason) for the rest.
    pub fn reason(&self) -> &'static str {
        match self {
            TranslateError::MissingField { .. }
            | TranslateError::InvalidPodField { .. }
            | TranslateError::ResolvConf { .. } => "FailedCreatePodSandBox",
            TranslateError::ForbiddenSysctl { .. } => "SysctlForbidden",
            TranslateError::RunAsUserRoot { .. }
            | TranslateError::ImageRunsAsRoot { .. }
            | TranslateError::NonNumericImageUser { .. }
            | TranslateError::InvalidContainerField { .. }
            | TranslateError::Label(_) => "CreateContainerConfigError",
        }
    }
}
