//! The labels and annotations vk-cri writes on sandboxes and containers, and reading them back.
//!
//! Owns the keys (the kubelet's `io.kubernetes.*` ones from kuberuntime/labels.go, plus
//! `vk-cri.io/node`, the owner label that lets several vk-cri nodes and a real kubelet share
//! one containerd, and `vk-cri.io/container-type`), the functions that write them, the list
//! selectors, [`SandboxInfo`]/[`ContainerInfo`] parsed back from what the runtime lists (so that
//! after a restart the runtime is the source of truth), and the container spec hash. Pure: it
//! neither talks to the runtime nor logs; a missing or malformed label is an error that names
//! the object and the key.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, ContainerPort, LifecycleHandler, Pod};

use crate::cri::{api, short_id, Labels};

/// Pod name (sandboxes and containers).
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Pod namespace (sandboxes and containers).
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Pod UID (sandboxes and containers).
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container name (containers).
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// The vk-cri node that owns the object (sandboxes and containers); list calls select on it.
pub const OWNER: &str = "vk-cri.io/node";

/// Container annotation: the spec hash, lowercase hex of [`container_hash`].
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Container annotation: the restart count this container was created with.
pub const RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Container annotation: `terminationMessagePath` of the spec.
pub const TERMINATION_MESSAGE_PATH: &str = "io.kubernetes.container.terminationMessagePath";
/// Container annotation: `terminationMessagePolicy` of the spec.
pub const TERMINATION_MESSAGE_POLICY: &str = "io.kubernetes.container.terminationMessagePolicy";
/// Container annotation: the pod's `terminationGracePeriodSeconds`.
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Container annotation: the pod's `deletionGracePeriodSeconds`, when it was being deleted.
pub const POD_DELETION_GRACE_PERIOD: &str = "io.kubernetes.pod.deletionGracePeriod";
/// Container annotation: the preStop handler, as JSON.
pub const PRE_STOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Container annotation: the container's ports, as JSON.
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";
/// Container annotation: `init` or `app`.
pub const CONTAINER_TYPE: &str = "vk-cri.io/container-type";

/// Whether a container is one of the pod's init containers or one of its app containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ContainerKind {
    Init,
    App,
}

impl ContainerKind {
    /// The value of the [`CONTAINER_TYPE`] annotation.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Init => "init",
            ContainerKind::App => "app",
        }
    }

    fn parse(s: &str) -> Option<ContainerKind> {
        match s {
            "init" => Some(ContainerKind::Init),
            "app" => Some(ContainerKind::App),
            _ => None,
        }
    }
}

/// A label or annotation that is missing, malformed, or could not be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("failed to read {object}: it has no {place} {key}")]
    Missing {
        /// e.g. `sandbox 5d507ec88f0df`
        object: String,
        /// `label` or `annotation`
        place: &'static str,
        key: &'static str,
    },
    #[error("failed to read {object}: {place} {key}={value:?} is not {expected}")]
    Malformed {
        object: String,
        place: &'static str,
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("failed to encode {what}: {message}")]
    Encode { what: String, message: String },
}

fn pod_meta(pod: &Pod) -> (&str, &str, &str) {
    (
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

/// Sandbox labels: the pod's labels, then pod name/namespace/UID and the owner (ours win).
pub fn sandbox_labels(pod: &Pod, node_name: &str) -> Labels {
    let mut labels: Labels = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (name, namespace, uid) = pod_meta(pod);
    labels.insert(POD_NAME.into(), name.into());
    labels.insert(POD_NAMESPACE.into(), namespace.into());
    labels.insert(POD_UID.into(), uid.into());
    labels.insert(OWNER.into(), node_name.into());
    labels
}

/// Sandbox annotations: the pod's annotations.
pub fn sandbox_annotations(pod: &Pod) -> Labels {
    pod.metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Container labels: pod name/namespace/UID, container name and the owner.
pub fn container_labels(pod: &Pod, container_name: &str, node_name: &str) -> Labels {
    let (name, namespace, uid) = pod_meta(pod);
    crate::cri::labels([
        (POD_NAME, name),
        (POD_NAMESPACE, namespace),
        (POD_UID, uid),
        (CONTAINER_NAME, container_name),
        (OWNER, node_name),
    ])
}

/// Container annotations: spec hash, restart count, termination message path and policy, the
/// pod's grace periods, the preStop handler and ports (JSON), and the container type.
pub fn container_annotations(
    pod: &Pod,
    container: &Container,
    kind: ContainerKind,
    restart_count: u32,
) -> Result<Labels, LabelError> {
    let mut a = Labels::new();
    a.insert(
        CONTAINER_HASH.into(),
        format!("{:x}", container_hash(container)?),
    );
    a.insert(RESTART_COUNT.into(), restart_count.to_string());
    a.insert(
        TERMINATION_MESSAGE_PATH.into(),
        container
            .termination_message_path
            .clone()
            .unwrap_or_default(),
    );
    a.insert(
        TERMINATION_MESSAGE_POLICY.into(),
        container
            .termination_message_policy
            .clone()
            .unwrap_or_default(),
    );
    if let Some(g) = pod.metadata.deletion_grace_period_seconds {
        a.insert(POD_DELETION_GRACE_PERIOD.into(), g.to_string());
    }
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        a.insert(POD_TERMINATION_GRACE_PERIOD.into(), g.to_string());
    }
    let (name, namespace, _) = pod_meta(pod);
    let encode_err = |what: &str, e: serde_json::Error| LabelError::Encode {
        what: format!(
            "the {what} of container {} in pod {namespace}/{name}",
            container.name
        ),
        message: e.to_string(),
    };
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        let json = serde_json::to_string(pre_stop).map_err(|e| encode_err("preStop handler", e))?;
        a.insert(PRE_STOP_HANDLER.into(), json);
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty()) {
        let json = serde_json::to_string(ports).map_err(|e| encode_err("ports", e))?;
        a.insert(CONTAINER_PORTS.into(), json);
    }
    a.insert(CONTAINER_TYPE.into(), kind.as_str().into());
    Ok(a)
}

/// Selects everything this node owns, for ListPodSandbox/ListContainers.
pub fn owner_selector(node_name: &str) -> Labels {
    crate::cri::labels([(OWNER, node_name)])
}

/// Selects this node's sandboxes and containers of one pod.
pub fn pod_selector(node_name: &str, pod_uid: &str) -> Labels {
    crate::cri::labels([(OWNER, node_name), (POD_UID, pod_uid)])
}

/// FNV-1a, 64 bits (written out here: ten lines do not justify a dependency).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// The container spec hash: FNV-1a 64 over the serde_json serialization of the k8s-openapi
/// `Container` (fields in a fixed order, unset fields omitted, maps sorted). The same spec
/// always gives the same hash; any change to the spec changes it.
pub fn container_hash(container: &Container) -> Result<u64, LabelError> {
    let json = serde_json::to_vec(container).map_err(|e| LabelError::Encode {
        what: format!("the spec of container {}", container.name),
        message: e.to_string(),
    })?;
    Ok(fnv1a64(&json))
}

/// A sandbox as read back from the runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct SandboxInfo {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    /// The attempt it was created with (metadata).
    pub attempt: u32,
    pub state: api::PodSandboxState,
    /// Creation time, nanoseconds since the epoch.
    pub created_at: i64,
    /// The pod's own labels (without ours).
    pub pod_labels: Labels,
    /// The pod's annotations.
    pub annotations: Labels,
}

impl SandboxInfo {
    /// Reads a sandbox from ListPodSandbox.
    pub fn from_sandbox(s: &api::PodSandbox) -> Result<SandboxInfo, LabelError> {
        Self::parse(
            &s.id,
            s.metadata.attempt,
            s.state
                .enum_value_or(api::PodSandboxState::SANDBOX_NOTREADY),
            s.created_at,
            &s.labels,
            &s.annotations,
        )
    }

    /// Reads a sandbox from PodSandboxStatus.
    pub fn from_status(s: &api::PodSandboxStatus) -> Result<SandboxInfo, LabelError> {
        Self::parse(
            &s.id,
            s.metadata.attempt,
            s.state
                .enum_value_or(api::PodSandboxState::SANDBOX_NOTREADY),
            s.created_at,
            &s.labels,
            &s.annotations,
        )
    }

    fn parse(
        id: &str,
        attempt: u32,
        state: api::PodSandboxState,
        created_at: i64,
        labels: &HashMap<String, String>,
        annotations: &HashMap<String, String>,
    ) -> Result<SandboxInfo, LabelError> {
        let r = Reader {
            object: format!("sandbox {}", short_id(id)),
            place: "label",
            map: labels,
        };
        Ok(SandboxInfo {
            id: id.to_string(),
            pod_uid: r.required(POD_UID)?.to_string(),
            pod_name: r.required(POD_NAME)?.to_string(),
            pod_namespace: r.required(POD_NAMESPACE)?.to_string(),
            attempt,
            state,
            created_at,
            pod_labels: labels
                .iter()
                .filter(|(k, _)| ![POD_NAME, POD_NAMESPACE, POD_UID, OWNER].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            annotations: annotations.clone(),
        })
    }
}

/// A container as read back from the runtime: its labels and annotations, and the state the
/// runtime reports, with the kubelet's rules: `started_at` is 0 while it is only created, and
/// `finished_at`, `exit_code`, `reason` and `message` are only kept once it exited.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox_id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub name: String,
    pub kind: ContainerKind,
    /// The attempt it was created with (metadata; equals the restart count).
    pub attempt: u32,
    pub restart_count: u32,
    /// The spec hash it was created from.
    pub hash: u64,
    pub state: api::ContainerState,
    /// Nanoseconds since the epoch; 0 when not (yet) known.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The image it runs (what the container config asked for).
    pub image: String,
    /// The image id the runtime resolved (`image_id`, else `image_ref`, as the kubelet reads it).
    pub image_id: String,
    /// The host path of its CRI log (status only; empty from a list).
    pub log_path: String,
    pub termination_message_path: String,
    pub termination_message_policy: String,
    pub termination_grace_period: Option<i64>,
    pub deletion_grace_period: Option<i64>,
    pub pre_stop: Option<LifecycleHandler>,
    pub ports: Vec<ContainerPort>,
}

impl ContainerInfo {
    /// Reads a container from ListContainers and, when the caller fetched it, its
    /// ContainerStatus (which has the fresher state and the times, exit code and reason).
    pub fn from_runtime(
        c: &api::Container,
        status: Option<&api::ContainerStatus>,
    ) -> Result<ContainerInfo, LabelError> {
        let object = format!("container {}", short_id(&c.id));
        let labels = Reader {
            object: object.clone(),
            place: "label",
            map: &c.labels,
        };
        let ann = Reader {
            object,
            place: "annotation",
            map: &c.annotations,
        };
        let hash_hex = ann.required(CONTAINER_HASH)?;
        let hash = u64::from_str_radix(hash_hex, 16)
            .map_err(|_| ann.malformed(CONTAINER_HASH, hash_hex, "a hexadecimal u64"))?;
        let restart_hex = ann.required(RESTART_COUNT)?;
        let restart_count = restart_hex
            .parse::<u32>()
            .map_err(|_| ann.malformed(RESTART_COUNT, restart_hex, "a non-negative integer"))?;
        let kind_str = ann.required(CONTAINER_TYPE)?;
        let kind = ContainerKind::parse(kind_str)
            .ok_or_else(|| ann.malformed(CONTAINER_TYPE, kind_str, "\"init\" or \"app\""))?;
        let pre_stop = ann
            .optional(PRE_STOP_HANDLER)
            .map(|v| {
                serde_json::from_slice::<LifecycleHandler>(v.as_bytes())
                    .map_err(|_| ann.malformed(PRE_STOP_HANDLER, v, "a JSON lifecycle handler"))
            })
            .transpose()?;
        let ports = ann
            .optional(CONTAINER_PORTS)
            .map(|v| {
                serde_json::from_slice::<Vec<ContainerPort>>(v.as_bytes())
                    .map_err(|_| ann.malformed(CONTAINER_PORTS, v, "a JSON list of ports"))
            })
            .transpose()?
            .unwrap_or_default();
        let grace = |key: &'static str| {
            ann.optional(key)
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| ann.malformed(key, v, "an integer"))
                })
                .transpose()
        };

        let mut info = ContainerInfo {
            id: c.id.clone(),
            sandbox_id: c.pod_sandbox_id.clone(),
            pod_uid: labels.required(POD_UID)?.to_string(),
            pod_name: labels.required(POD_NAME)?.to_string(),
            pod_namespace: labels.required(POD_NAMESPACE)?.to_string(),
            name: labels.required(CONTAINER_NAME)?.to_string(),
            kind,
            attempt: c.metadata.attempt,
            restart_count,
            hash,
            state: c
                .state
                .enum_value_or(api::ContainerState::CONTAINER_UNKNOWN),
            created_at: c.created_at,
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            image: c.image.image.clone(),
            image_id: if c.image_id.is_empty() {
                c.image_ref.clone()
            } else {
                c.image_id.clone()
            },
            log_path: String::new(),
            termination_message_path: ann
                .optional(TERMINATION_MESSAGE_PATH)
                .unwrap_or_default()
                .to_string(),
            termination_message_policy: ann
                .optional(TERMINATION_MESSAGE_POLICY)
                .unwrap_or_default()
                .to_string(),
            termination_grace_period: grace(POD_TERMINATION_GRACE_PERIOD)?,
            deletion_grace_period: grace(POD_DELETION_GRACE_PERIOD)?,
            pre_stop,
            ports,
        };
        if let Some(s) = status {
            info.state = s
                .state
                .enum_value_or(api::ContainerState::CONTAINER_UNKNOWN);
            info.created_at = s.created_at;
            info.log_path = s.log_path.clone();
            if !s.image_id.is_empty() {
                info.image_id = s.image_id.clone();
            } else if !s.image_ref.is_empty() {
                info.image_id = s.image_ref.clone();
            }
            if info.state != api::ContainerState::CONTAINER_CREATED {
                info.started_at = s.started_at;
            }
            if info.state == api::ContainerState::CONTAINER_EXITED {
                info.finished_at = s.finished_at;
                info.exit_code = s.exit_code;
                info.reason = s.reason.clone();
                info.message = s.message.clone();
            }
        }
        Ok(info)
    }
}

/// Reads keys of one label or annotation map, with errors that name the object.
struct Reader<'a> {
    object: String,
    place: &'static str,
    map: &'a HashMap<String, String>,
}

impl Reader<'_> {
    fn required(&self, key: &'static str) -> Result<&str, LabelError> {
        match self.map.get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(v) => Err(self.malformed(key, v, "a non-empty value")),
            None => Err(LabelError::Missing {
                object: self.object.clone(),
                place: self.place,
                key,
            }),
        }
    }

    fn optional(&self, key: &'static str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }

    fn malformed(&self, key: &'static str, value: &str, expected: &'static str) -> LabelError {
        LabelError::Malformed {
            object: self.object.clone(),
            place: self.place,
            key,
            value: value.to_string(),
            expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ExecAction, Lifecycle};
    use protobuf::EnumOrUnknown;

    fn fixture_pod() -> Pod {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/apiserver/00f-admin-create-pod-p1/response-body.json"
        ))
        .expect("fixture pod")
    }

    fn fixture_container() -> Container {
        fixture_pod().spec.unwrap().containers[0].clone()
    }

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    /// The hash of the fixture's container is pinned, so that an accidental change of the hash
    /// function (or of the serialization it hashes) fails here rather than restarting every
    /// container of every node after an upgrade.
    #[test]
    fn golden_container_hash_is_stable() {
        let c = fixture_container();
        assert_eq!(container_hash(&c).unwrap(), GOLDEN_HASH);
        assert_eq!(container_hash(&c.clone()).unwrap(), GOLDEN_HASH);
    }

    const GOLDEN_HASH: u64 = 0xdf0f_db33_d007_ef1d;

    #[test]
    fn any_spec_change_changes_the_hash() {
        let base = fixture_container();
        let h = container_hash(&base).unwrap();
        type Mutation = Box<dyn Fn(&mut Container)>;
        let mutations: Vec<(&str, Mutation)> = vec![
            ("image", Box::new(|c| c.image = Some("busybox:1.37".into()))),
            ("command", Box::new(|c| c.command = Some(vec!["sh".into()]))),
            ("args", Box::new(|c| c.args = Some(vec!["-c".into()]))),
            ("name", Box::new(|c| c.name = "d".into())),
            (
                "working dir",
                Box::new(|c| c.working_dir = Some("/tmp".into())),
            ),
            ("tty", Box::new(|c| c.tty = Some(true))),
            (
                "port",
                Box::new(|c| c.ports.as_mut().unwrap()[0].container_port = 81),
            ),
            (
                "pull policy",
                Box::new(|c| c.image_pull_policy = Some("Always".into())),
            ),
        ];
        for (name, mutate) in mutations {
            let mut c = base.clone();
            mutate(&mut c);
            assert_ne!(container_hash(&c).unwrap(), h, "{name}");
        }
    }

    fn runtime_container(
        pod: &Pod,
        c: &Container,
        kind: ContainerKind,
        restart: u32,
    ) -> api::Container {
        api::Container {
            id: "5d507ec88f0df208187bc308f213f3de8b6f919225544b08cf1aa15742278d97".into(),
            pod_sandbox_id: "sb-1".into(),
            metadata: Some(api::ContainerMetadata {
                name: c.name.clone(),
                attempt: restart,
                ..Default::default()
            })
            .into(),
            image: Some(api::ImageSpec {
                image: "sha256:abc".into(),
                ..Default::default()
            })
            .into(),
            image_ref: "sha256:abc".into(),
            state: EnumOrUnknown::new(api::ContainerState::CONTAINER_RUNNING),
            created_at: 10,
            labels: container_labels(pod, &c.name, "vk-node"),
            annotations: container_annotations(pod, c, kind, restart).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn sandbox_labels_round_trip() {
        let pod = fixture_pod();
        let labels = sandbox_labels(&pod, "vk-node");
        assert_eq!(labels.get(OWNER).unwrap(), "vk-node");
        assert_eq!(labels.get("app").unwrap(), "fixture");
        let mut annotations = sandbox_annotations(&pod);
        annotations.insert("a".into(), "b".into());
        let sb = api::PodSandbox {
            id: "5d507ec88f0df208187bc308f213f3de8b6f919225544b08cf1aa15742278d97".into(),
            metadata: Some(api::PodSandboxMetadata {
                name: "p1".into(),
                uid: "4efec839-56e9-47bb-866d-48bc6e748cd4".into(),
                namespace: "fixtures".into(),
                attempt: 2,
                ..Default::default()
            })
            .into(),
            state: EnumOrUnknown::new(api::PodSandboxState::SANDBOX_READY),
            created_at: 42,
            labels,
            annotations: annotations.clone(),
            ..Default::default()
        };
        let info = SandboxInfo::from_sandbox(&sb).unwrap();
        assert_eq!(
            info,
            SandboxInfo {
                id: sb.id.clone(),
                pod_uid: "4efec839-56e9-47bb-866d-48bc6e748cd4".into(),
                pod_name: "p1".into(),
                pod_namespace: "fixtures".into(),
                attempt: 2,
                state: api::PodSandboxState::SANDBOX_READY,
                created_at: 42,
                pod_labels: crate::cri::labels([("app", "fixture")]),
                annotations,
            }
        );
    }

    #[test]
    fn container_labels_round_trip_with_status() {
        let mut pod = fixture_pod();
        pod.metadata.deletion_grace_period_seconds = Some(5);
        let mut c = fixture_container();
        c.lifecycle = Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sh".into(), "-c".into(), "sleep 1".into()]),
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let rc = runtime_container(&pod, &c, ContainerKind::App, 3);
        let status = api::ContainerStatus {
            id: rc.id.clone(),
            state: EnumOrUnknown::new(api::ContainerState::CONTAINER_EXITED),
            created_at: 10,
            started_at: 20,
            finished_at: 30,
            exit_code: 137,
            reason: "OOMKilled".into(),
            message: "bye".into(),
            image_ref: "docker.io/library/busybox@sha256:def".into(),
            log_path: "/var/log/pods/x/c/3.log".into(),
            ..Default::default()
        };
        let info = ContainerInfo::from_runtime(&rc, Some(&status)).unwrap();
        assert_eq!(
            info,
            ContainerInfo {
                id: rc.id.clone(),
                sandbox_id: "sb-1".into(),
                pod_uid: "4efec839-56e9-47bb-866d-48bc6e748cd4".into(),
                pod_name: "p1".into(),
                pod_namespace: "fixtures".into(),
                name: "c".into(),
                kind: ContainerKind::App,
                attempt: 3,
                restart_count: 3,
                hash: container_hash(&c).unwrap(),
                state: api::ContainerState::CONTAINER_EXITED,
                created_at: 10,
                started_at: 20,
                finished_at: 30,
                exit_code: 137,
                reason: "OOMKilled".into(),
                message: "bye".into(),
                image: "sha256:abc".into(),
                image_id: "docker.io/library/busybox@sha256:def".into(),
                log_path: "/var/log/pods/x/c/3.log".into(),
                termination_message_path: "/dev/termination-log".into(),
                termination_message_policy: "File".into(),
                termination_grace_period: Some(30),
                deletion_grace_period: Some(5),
                pre_stop: c.lifecycle.as_ref().unwrap().pre_stop.clone(),
                ports: c.ports.clone().unwrap(),
            }
        );
    }

    #[test]
    fn container_state_rules_follow_the_kubelet() {
        let pod = fixture_pod();
        let c = fixture_container();
        let rc = runtime_container(&pod, &c, ContainerKind::Init, 0);
        let mut status = api::ContainerStatus {
            state: EnumOrUnknown::new(api::ContainerState::CONTAINER_CREATED),
            created_at: 10,
            started_at: 20,
            finished_at: 30,
            exit_code: 1,
            reason: "Error".into(),
            ..Default::default()
        };
        let info = ContainerInfo::from_runtime(&rc, Some(&status)).unwrap();
        assert_eq!(info.kind, ContainerKind::Init);
        assert_eq!(
            (info.started_at, info.finished_at, info.exit_code),
            (0, 0, 0)
        );
        assert_eq!(info.reason, "");
        status.state = EnumOrUnknown::new(api::ContainerState::CONTAINER_RUNNING);
        let info = ContainerInfo::from_runtime(&rc, Some(&status)).unwrap();
        assert_eq!(
            (info.started_at, info.finished_at, info.exit_code),
            (20, 0, 0)
        );
        // From the list alone: the list's state, and no times but creation.
        let info = ContainerInfo::from_runtime(&rc, None).unwrap();
        assert_eq!(info.state, api::ContainerState::CONTAINER_RUNNING);
        assert_eq!((info.created_at, info.started_at), (10, 0));
        assert_eq!(info.image_id, "sha256:abc");
        assert!(info.pre_stop.is_none());
    }

    #[test]
    fn missing_and_malformed_labels_are_clear_errors() {
        let pod = fixture_pod();
        let c = fixture_container();
        let rc = runtime_container(&pod, &c, ContainerKind::App, 0);

        let mut no_uid = rc.clone();
        no_uid.labels.remove(POD_UID);
        assert_eq!(
            ContainerInfo::from_runtime(&no_uid, None)
                .unwrap_err()
                .to_string(),
            "failed to read container 5d507ec88f0df: it has no label io.kubernetes.pod.uid"
        );
        let mut bad_hash = rc.clone();
        bad_hash
            .annotations
            .insert(CONTAINER_HASH.into(), "xyz".into());
        assert_eq!(
            ContainerInfo::from_runtime(&bad_hash, None)
                .unwrap_err()
                .to_string(),
            "failed to read container 5d507ec88f0df: annotation \
             io.kubernetes.container.hash=\"xyz\" is not a hexadecimal u64"
        );
        let mut bad_count = rc.clone();
        bad_count
            .annotations
            .insert(RESTART_COUNT.into(), "-1".into());
        assert!(ContainerInfo::from_runtime(&bad_count, None).is_err());
        let mut bad_type = rc.clone();
        bad_type
            .annotations
            .insert(CONTAINER_TYPE.into(), "ephemeral".into());
        assert!(ContainerInfo::from_runtime(&bad_type, None)
            .unwrap_err()
            .to_string()
            .contains("is not \"init\" or \"app\""));
        let mut bad_ports = rc.clone();
        bad_ports
            .annotations
            .insert(CONTAINER_PORTS.into(), "[{".into());
        assert!(ContainerInfo::from_runtime(&bad_ports, None).is_err());
        let mut bad_grace = rc.clone();
        bad_grace
            .annotations
            .insert(POD_TERMINATION_GRACE_PERIOD.into(), "soon".into());
        assert!(ContainerInfo::from_runtime(&bad_grace, None).is_err());

        let sb = api::PodSandbox {
            id: "fake-sandbox-1".into(),
            labels: crate::cri::labels([(POD_UID, "u"), (POD_NAME, "")]),
            ..Default::default()
        };
        assert_eq!(
            SandboxInfo::from_sandbox(&sb).unwrap_err().to_string(),
            "failed to read sandbox fake-sandbox-1: label io.kubernetes.pod.name=\"\" is not a \
             non-empty value"
        );
    }

    #[test]
    fn selectors_select_on_the_owner() {
        assert_eq!(
            owner_selector("vk-node"),
            crate::cri::labels([(OWNER, "vk-node")])
        );
        assert_eq!(
            pod_selector("vk-node", "u-1"),
            crate::cri::labels([(OWNER, "vk-node"), (POD_UID, "u-1")])
        );
        let pod = fixture_pod();
        let labels = container_labels(&pod, "c", "vk-node");
        assert!(owner_selector("vk-node")
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v)));
        assert!(!owner_selector("other")
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v)));
    }

    #[test]
    fn annotations_without_optional_parts() {
        let mut pod = fixture_pod();
        pod.spec.as_mut().unwrap().termination_grace_period_seconds = None;
        let mut c = fixture_container();
        c.ports = Some(vec![]);
        let a = container_annotations(&pod, &c, ContainerKind::App, 0).unwrap();
        assert!(!a.contains_key(CONTAINER_PORTS));
        assert!(!a.contains_key(PRE_STOP_HANDLER));
        assert!(!a.contains_key(POD_TERMINATION_GRACE_PERIOD));
        assert!(!a.contains_key(POD_DELETION_GRACE_PERIOD));
        assert_eq!(a.get(CONTAINER_TYPE).unwrap(), "app");
        assert_eq!(a.get(RESTART_COUNT).unwrap(), "0");
    }
}
