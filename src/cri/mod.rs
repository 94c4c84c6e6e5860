//! The container runtime edge: exactly the CRI v1 operations the daemon needs, as one trait.
//!
//! Owns the [`Runtime`] trait, its error type and the small filter/label helpers around it. The
//! trait speaks the generated CRI message types ([`api`]), so translation code builds real
//! `PodSandboxConfig`/`ContainerConfig` values and tests can compare them field by field.
//! Implementations: [`client::GrpcRuntime`] (grpcio over the containerd socket; the only place
//! grpcio appears) and [`fake::FakeRuntime`] (in memory, recording every call, for unit tests).
//! This module decides nothing about pods; it must not log (callers log once, with the pod key).

pub mod api;
pub mod client;
pub mod fake;
pub mod lanes;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

pub use client::GrpcRuntime;
pub use fake::FakeRuntime;

/// Label selector for list calls: every pair must match (CRI `label_selector` semantics).
pub type Labels = HashMap<String, String>;

/// What the runtime reported about itself (CRI `Version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionInfo {
    /// e.g. `containerd`
    pub runtime_name: String,
    /// e.g. `1.6.20~ds1`
    pub runtime_version: String,
    /// e.g. `v1`
    pub runtime_api_version: String,
}

impl VersionInfo {
    /// The Node's `nodeInfo.containerRuntimeVersion`, e.g. `containerd://1.6.20~ds1`.
    pub fn node_runtime_version(&self) -> String {
        format!("{}://{}", self.runtime_name, self.runtime_version)
    }
}

/// The result of a synchronous exec in a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Credentials for one image pull (from imagePullSecrets): username + password, or the
/// base64 `auth` field of a docker config. `server_address` is left empty on purpose: containerd
/// 1.6 wants the address of the host it actually contacts, not the image's registry name.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub username: String,
    pub password: String,
    pub auth: String,
}

impl fmt::Debug for PullAuth {
    // Never print credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PullAuth {{ username: {:?}, .. }}", self.username)
    }
}

/// The operations of the container runtime that vk-cri uses. Every call has a deadline.
///
/// Identifiers are the runtime's own sandbox and container ids. Image references are passed
/// as written in the pod spec; the runtime normalises them.
pub trait Runtime: Send + Sync {
    /// CRI `Version`.
    fn version(&self) -> Result<VersionInfo, CriError>;
    /// CRI `Status`: the runtime's conditions (`RuntimeReady`, `NetworkReady`).
    fn status(&self) -> Result<api::RuntimeStatus, CriError>;
    /// CRI `Status` with `verbose`: the runtime's own information (containerd: its CRI
    /// `config` as JSON, e.g. the `sandboxImage`).
    fn status_info(&self) -> Result<HashMap<String, String>, CriError>;

    /// CRI `RunPodSandbox`; returns the new sandbox id.
    fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, CriError>;
    /// CRI `StopPodSandbox`: stops every container in it and tears down its network.
    fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError>;
    /// CRI `RemovePodSandbox`: removes it and all its containers.
    fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError>;
    /// CRI `PodSandboxStatus`.
    fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<api::PodSandboxStatus, CriError>;
    /// CRI `ListPodSandbox` filtered by labels (empty = all).
    fn list_pod_sandboxes(&self, labels: &Labels) -> Result<Vec<api::PodSandbox>, CriError>;
    /// The relist's `ListPodSandbox`: only each sandbox's id, pod metadata and state (the
    /// gRPC client reads nothing else off the wire; this default trims the full list).
    fn relist_pod_sandboxes(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::relist::RelistPodSandbox>, CriError> {
        Ok(self
            .list_pod_sandboxes(labels)?
            .into_iter()
            .map(|sb| api::relist::RelistPodSandbox {
                id: sb.id,
                metadata: sb
                    .metadata
                    .into_option()
                    .map(|m| api::relist::RelistPodSandboxMetadata {
                        name: m.name,
                        uid: m.uid,
                        namespace: m.namespace,
                        ..Default::default()
                    })
                    .into(),
                state: sb.state.value(),
                ..Default::default()
            })
            .collect())
    }

    /// CRI `CreateContainer` in a sandbox; returns the new container id.
    fn create_container(
        &self,
        sandbox_id: &str,
        config: &api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, CriError>;
    /// CRI `StartContainer`.
    fn start_container(&self, container_id: &str) -> Result<(), CriError>;
    /// CRI `StopContainer`: SIGTERM (or the image's stop signal), SIGKILL after `timeout`.
    fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<(), CriError>;
    /// CRI `RemoveContainer`.
    fn remove_container(&self, container_id: &str) -> Result<(), CriError>;
    /// CRI `ListContainers` filtered by labels and optionally by sandbox.
    fn list_containers(
        &self,
        labels: &Labels,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<api::Container>, CriError>;
    /// The relist's `ListContainers`: only each container's id, sandbox id and state (as
    /// [`Runtime::relist_pod_sandboxes`]).
    fn relist_containers(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::relist::RelistContainer>, CriError> {
        Ok(self
            .list_containers(labels, None)?
            .into_iter()
            .map(|c| api::relist::RelistContainer {
                id: c.id,
                pod_sandbox_id: c.pod_sandbox_id,
                state: c.state.value(),
                ..Default::default()
            })
            .collect())
    }
    /// CRI `ContainerStatus`.
    fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus, CriError>;
    /// CRI `ReopenContainerLog`, after the log file was rotated away.
    fn reopen_container_log(&self, container_id: &str) -> Result<(), CriError>;

    /// CRI `ExecSync`: runs `cmd` in the container and waits at most `timeout` for it.
    fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, CriError>;
    /// CRI `Exec`: the URL of the runtime's streaming server for this exec session.
    fn exec(&self, req: &api::ExecRequest) -> Result<String, CriError>;
    /// CRI `Attach`: the streaming URL to attach to the container's main process.
    fn attach(&self, req: &api::AttachRequest) -> Result<String, CriError>;
    /// CRI `PortForward`: the streaming URL to forward ports of the sandbox.
    fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, CriError>;

    /// CRI `ContainerStats`.
    fn container_stats(&self, container_id: &str) -> Result<api::ContainerStats, CriError>;
    /// CRI `ListContainerStats` filtered by labels.
    fn list_container_stats(&self, labels: &Labels) -> Result<Vec<api::ContainerStats>, CriError>;
    /// CRI `PodSandboxStats`.
    fn pod_sandbox_stats(&self, sandbox_id: &str) -> Result<api::PodSandboxStats, CriError>;
    /// CRI `ListPodSandboxStats` filtered by labels.
    fn list_pod_sandbox_stats(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::PodSandboxStats>, CriError>;

    /// CRI `ImageStatus`: `None` when the image is not present.
    fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError>;
    /// CRI `PullImage`; returns the image reference (id) the runtime stored.
    fn pull_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        sandbox_config: Option<&api::PodSandboxConfig>,
    ) -> Result<String, CriError>;
    /// CRI `ListImages`.
    fn list_images(&self) -> Result<Vec<api::Image>, CriError>;
    /// CRI `RemoveImage` (removes every tag of the same image id).
    fn remove_image(&self, image: &str) -> Result<(), CriError>;
    /// CRI `ImageFsInfo`: the filesystems that hold the images, with their mountpoints and what
    /// the images use of them.
    fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>, CriError>;
}

/// What a failed runtime call was about, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The runtime itself (version, status, lists).
    Runtime,
    /// A sandbox to be created for this pod (`namespace/name`).
    Pod(String),
    Sandbox(String),
    Container(String),
    Image(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Runtime => f.write_str("runtime"),
            Target::Pod(p) => write!(f, "sandbox for pod {p}"),
            Target::Sandbox(id) => write!(f, "sandbox {}", short_id(id)),
            Target::Container(id) => write!(f, "container {}", short_id(id)),
            Target::Image(i) => write!(f, "image {i:?}"),
        }
    }
}

/// The first 13 characters of a 64-hex-digit runtime id, as `crictl` shows them.
pub fn short_id(id: &str) -> &str {
    if id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        &id[..13]
    } else {
        id
    }
}

/// The gRPC status code of a failed call, kept so that callers can branch on it
/// (a `NotFound` sandbox is gone, a `DeadlineExceeded` call may be retried).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Code::Cancelled => "Canceled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::NotFound => "NotFound",
            Code::AlreadyExists => "AlreadyExists",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::FailedPrecondition => "FailedPrecondition",
            Code::Aborted => "Aborted",
            Code::OutOfRange => "OutOfRange",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::DataLoss => "DataLoss",
            Code::Unauthenticated => "Unauthenticated",
        };
        f.write_str(s)
    }
}

/// A failed runtime call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    /// The call reached the runtime (or timed out) and failed with a gRPC status.
    #[error("failed to {op} {target}: {code}: {message}")]
    Rpc {
        op: &'static str,
        target: Target,
        code: Code,
        message: String,
    },
    /// The request could not be built from what we were given.
    #[error("failed to {op} {target}: {message}")]
    InvalidRequest {
        op: &'static str,
        target: Target,
        message: String,
    },
}

impl CriError {
    /// The gRPC code, if the runtime answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            CriError::Rpc { code, .. } => Some(*code),
            CriError::InvalidRequest { .. } => None,
        }
    }

    /// The object does not exist (any more) in the runtime.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(Code::NotFound)
    }

    /// The runtime's own message, without our prefix (for pod status messages).
    pub fn message(&self) -> &str {
        match self {
            CriError::Rpc { message, .. } | CriError::InvalidRequest { message, .. } => message,
        }
    }
}

/// Labels as a CRI label selector.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_id_truncates_only_runtime_ids() {
        let id = "5d507ec88f0df208187bc308f213f3de8b6f919225544b08cf1aa15742278d97";
        assert_eq!(short_id(id), "5d507ec88f0df");
        assert_eq!(short_id("fake-sandbox-1"), "fake-sandbox-1");
    }

    #[test]
    fn error_names_operation_target_and_code() {
        let e = CriError::Rpc {
            op: "stop",
            target: Target::Sandbox(
                "5d507ec88f0df208187bc308f213f3de8b6f919225544b08cf1aa15742278d97".into(),
            ),
            code: Code::NotFound,
            message: "an error occurred when try to find sandbox: not found".into(),
        };
        assert_eq!(
            e.to_string(),
            "failed to stop sandbox 5d507ec88f0df: NotFound: an error occurred when try to find sandbox: not found"
        );
        assert!(e.is_not_found());
        let img = CriError::Rpc {
            op: "pull",
            target: Target::Image("127.0.0.1:5001/vk-cri/busybox:1".into()),
            code: Code::Unknown,
            message: "401 Unauthorized".into(),
        };
        assert!(img
            .to_string()
            .starts_with("failed to pull image \"127.0.0.1:5001/vk-cri/busybox:1\": Unknown:"));
        assert!(!img.is_not_found());
    }

    #[test]
    fn node_runtime_version_is_name_scheme() {
        let v = VersionInfo {
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20~ds1".into(),
            runtime_api_version: "v1".into(),
        };
        assert_eq!(v.node_runtime_version(), "containerd://1.6.20~ds1");
    }
}
