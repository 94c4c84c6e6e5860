//! Pod volumes: what each volume of a pod becomes on the host, under
//! `<volumes-dir>/<pod-uid>/<volume-name>`, and the CRI mounts that bring them into containers.
//!
//! Pure parts: [`plan`] (pod spec + the API objects it references → what to make, per volume
//! type: [`configmap`], [`secret`], [`downward`], [`projected`], [`hostpath`], emptyDir;
//! [`claim`] for PersistentVolumeClaims),
//! [`subpath`] (subPath validation) and [`atomic::validate_path`]. With I/O, behind the [`fs::Fs`]
//! trait: [`atomic`] (the kubelet's AtomicWriter). The volume manager that drives them for each
//! pod (set-up before the containers, the refresher, tear-down) is the executor's
//! (`crate::executor::volumes`); this module imports no pod module. This file owns the
//! errors, whose messages are the kubelet's where the kubelet has one, and the API objects a pod
//! references, fetched once per sync.

pub mod atomic;
pub mod claim;
pub mod configmap;
pub mod downward;
pub mod fs;
pub mod hostpath;
pub mod plan;
pub mod projected;
pub mod secret;
pub mod subpath;

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolume, PersistentVolumeClaim, Secret};

use crate::kube::KubeApi;

/// Why a volume cannot be set up or mounted. Messages are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    /// The API server could not be asked (any error but NotFound).
    #[error("{0}")]
    Api(String),
    #[error("configmap references non-existent config key: {0}")]
    MissingConfigMapKey(String),
    #[error("references non-existent secret key: {0}")]
    MissingSecretKey(String),
    #[error("{reason}: {path}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("failed to {what} {path}: {}", go_text(source))]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{kind} volumes are not supported by vk-cri")]
    Unsupported { kind: String },
    #[error("hostPath type check failed: {path} is not a {want}")]
    HostPathType { path: String, want: &'static str },
    #[error("invalid HostPathType {0:?}")]
    InvalidHostPathType(String),
    #[error("failed to fetch token: {0}")]
    Token(String),
    #[error("{0}")]
    DownwardApi(String),
    #[error("invalid sizeLimit {0:?}")]
    SizeLimit(String),
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    NoSuchVolume { volume: String, container: String },
    #[error("error SubPath `{0}` must not be an absolute path")]
    SubPathAbsolute(String),
    #[error("unable to provision SubPath `{0}`: must not contain '..'")]
    SubPathBackSteps(String),
    #[error("subPath {sub_path:?} of volumeMount {volume:?} escapes the volume (resolves to {resolved})")]
    SubPathEscape {
        volume: String,
        sub_path: String,
        resolved: PathBuf,
    },
    /// The kubelet's words for a subPath directory that could not be created safely; the
    /// detail (which may describe the host) is only logged.
    #[error(
        "failed to create subPath directory for volumeMount {mount:?} of container {container:?}"
    )]
    SubPathCreate {
        mount: String,
        container: String,
        detail: String,
    },
    /// The kubelet's words for a subPath that could not be opened and bound safely (it leaves
    /// the volume, through a symlink or otherwise); the detail is only logged.
    #[error("failed to prepare subPath for volumeMount {mount:?} of container {container:?}")]
    SubPathPrepare {
        mount: String,
        container: String,
        detail: String,
    },
    #[error("Bidirectional mount propagation is available only to privileged containers")]
    BidirectionalUnprivileged,
    #[error("invalid mountPropagation {0:?}")]
    InvalidPropagation(String),
    /// A volume that failed to set up, as the kubelet's FailedMount event says it.
    #[error("MountVolume.SetUp failed for volume {volume:?} : {cause}")]
    SetUp {
        volume: String,
        cause: Box<VolumeError>,
    },
    /// A volume the kubelet's desired-state populator cannot take (a claim not bound, …).
    #[error("{0}")]
    Unprocessed(String),
    /// The pod's volumes some of which could not be processed, as the kubelet's FailedMount
    /// event after `WaitForAttachAndMount` words it (Go's `%v` of a string slice).
    #[error(
        "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[], failed to process volumes=[{}]: {}",
        unmounted.join(" "), unprocessed.join(" "), errors.join("; ")
    )]
    NotProcessed {
        unmounted: Vec<String>,
        unprocessed: Vec<String>,
        errors: Vec<String>,
    },
    #[error(
        "MountVolume.NodeAffinity check failed for volume {pv:?} : no matching NodeSelectorTerms"
    )]
    NodeAffinity { pv: String },
    #[error("MountVolume.NewMounter initialization failed for volume {pv:?} : path {path:?} does not exist")]
    LocalPathMissing { pv: String, path: String },
}

impl VolumeError {
    /// Whether retrying can help (an unsupported volume type never mounts).
    pub fn is_permanent(&self) -> bool {
        match self {
            VolumeError::SetUp { cause, .. } => cause.is_permanent(),
            VolumeError::NotProcessed { .. } | VolumeError::Unprocessed(_) => false,
            VolumeError::Unsupported { .. }
            | VolumeError::InvalidPath { .. }
            | VolumeError::InvalidHostPathType(_)
            | VolumeError::SizeLimit(_) => true,
            _ => false,
        }
    }
}

/// The node's allocatable resources, for `resourceFieldRef` limits a container does not set
/// (computed with the Node's `status.allocatable`, in `node::spec`).
pub use crate::node::spec::NodeAllocatable;

/// An object read from the API server for a pod.
#[derive(Clone, Debug)]
pub enum Fetched<T> {
    Found(T),
    NotFound,
    /// Any other failure, with its message.
    Failed(String),
}

/// The ConfigMaps, Secrets and claims (with their volumes) a pod references, as read for one
/// sync.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    pub configmaps: BTreeMap<String, Fetched<ConfigMap>>,
    pub secrets: BTreeMap<String, Fetched<Secret>>,
    pub claims: BTreeMap<String, Fetched<PersistentVolumeClaim>>,
    /// The volumes bound to the claims that are Bound, by name.
    pub volumes: BTreeMap<String, Fetched<PersistentVolume>>,
}

fn fetched<T>(r: Option<Result<T, crate::kube::ApiError>>) -> Fetched<T> {
    match r {
        None => Fetched::NotFound,
        Some(Ok(o)) => Fetched::Found(o),
        Some(Err(e)) if e.status_code() == Some(404) => Fetched::NotFound,
        Some(Err(e)) => Fetched::Failed(e.to_string()),
    }
}

impl Objects {
    /// Reads these claims in `namespace` and the volume each Bound one names (the Node
    /// authorizer's pod → PVC → PV edges).
    pub fn fetch_claims<'a>(
        &mut self,
        api: Option<&dyn KubeApi>,
        namespace: &str,
        claims: impl IntoIterator<Item = &'a str>,
    ) {
        for name in claims {
            let claim = self.claims.entry(name.to_string()).or_insert_with(|| {
                fetched(api.map(|a| a.get_persistent_volume_claim(namespace, name)))
            });
            let Fetched::Found(c) = claim else { continue };
            let bound = c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
            let Some(pv) = c.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
                continue;
            };
            if bound && !pv.is_empty() {
                self.volumes
                    .entry(pv.clone())
                    .or_insert_with(|| fetched(api.map(|a| a.get_persistent_volume(&pv))));
            }
        }
    }

    /// Reads exactly these objects in `namespace` (the Node authorizer lets a node read only
    /// what its pods reference). Without an API server every object is missing.
    pub fn fetch<'a>(
        api: Option<&dyn KubeApi>,
        namespace: &str,
        configmaps: impl IntoIterator<Item = &'a str>,
        secrets: impl IntoIterator<Item = &'a str>,
    ) -> Objects {
        let mut out = Objects::default();
        for name in configmaps {
            out.configmaps
                .entry(name.to_string())
                .or_insert_with(|| fetched(api.map(|a| a.get_configmap(namespace, name))));
        }
        for name in secrets {
            out.secrets
                .entry(name.to_string())
                .or_insert_with(|| fetched(api.map(|a| a.get_secret(namespace, name))));
        }
        out
    }

    /// The ConfigMap `name`; `Ok(None)` when it does not exist.
    pub fn configmap(&self, name: &str) -> Result<Option<&ConfigMap>, VolumeError> {
        match self.configmaps.get(name) {
            Some(Fetched::Found(c)) => Ok(Some(c)),
            Some(Fetched::Failed(m)) => Err(VolumeError::Api(m.clone())),
            _ => Ok(None),
        }
    }

    /// The Secret `name`; `Ok(None)` when it does not exist.
    pub fn secret(&self, name: &str) -> Result<Option<&Secret>, VolumeError> {
        match self.secrets.get(name) {
            Some(Fetched::Found(s)) => Ok(Some(s)),
            Some(Fetched::Failed(m)) => Err(VolumeError::Api(m.clone())),
            _ => Ok(None),
        }
    }
}

/// A mode from the API (`defaultMode`, item `mode`), or the kubelet's 0644.
pub fn mode_or_default(mode: Option<i32>, default: Option<i32>) -> u32 {
    mode.or(default).map_or(0o644, |m| (m as u32) & 0o7777)
}

/// An I/O error as Go prints one (the kubelet's messages come from Go's `os` package): an OS
/// error is its `strerror` text starting lowercase, without Rust's ` (os error N)`, so a full
/// disk reads `no space left on device`.
pub fn go_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            let desc = nix::errno::Errno::from_raw(code).desc();
            let mut chars = desc.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => e.to_string(),
            }
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod go_text_tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let full = std::io::Error::from_raw_os_error(nix::libc::ENOSPC);
        assert_eq!(go_text(&full), "no space left on device");
        let missing = std::io::Error::from_raw_os_error(nix::libc::ENOENT);
        assert_eq!(go_text(&missing), "no such file or directory");
        let other = std::io::Error::other("custom");
        assert_eq!(go_text(&other), "custom");
    }
}
