//! Finding a pod and its containers for the kubelet API, with the runtime as the source of
//! truth: the sandboxes and containers this node owns, read back by their `io.kubernetes.*`
//! labels (namespace, name, uid, container name).
//!
//! Owns: choosing the sandbox of a pod and the container instance a request means (the newest
//! attempt, or the one before it for `previous`). Must not answer HTTP.

use crate::cri::{api, CriError, Runtime};
use crate::pod::labels::{self, CONTAINER_NAME, OWNER, POD_NAME, POD_NAMESPACE, POD_UID};

use super::route::PodRef;

/// A pod as the runtime knows it.
#[derive(Debug, Clone)]
pub struct FoundPod {
    pub sandbox_id: String,
    pub uid: String,
    /// Every container instance of the pod, any attempt.
    pub containers: Vec<api::Container>,
}

/// The pod's current sandbox (ready first, then the newest), with its containers; `None` when
/// this node runs no such pod (or its uid differs from the one asked for).
pub fn find_pod(
    runtime: &dyn Runtime,
    node: &str,
    pod: &PodRef,
) -> Result<Option<FoundPod>, CriError> {
    let mut selector = labels::owner_selector(node);
    selector.insert(POD_NAMESPACE.into(), pod.namespace.clone());
    selector.insert(POD_NAME.into(), pod.name.clone());
    if let Some(uid) = &pod.uid {
        selector.insert(POD_UID.into(), uid.clone());
    }
    let mut sandboxes = runtime.list_pod_sandboxes(&selector)?;
    sandboxes.sort_by_key(|s| {
        (
            s.state.enum_value_or_default() == api::PodSandboxState::SANDBOX_READY,
            s.created_at,
        )
    });
    let Some(sandbox) = sandboxes.pop() else {
        return Ok(None);
    };
    let Some(uid) = sandbox.labels.get(POD_UID).cloned() else {
        return Ok(None);
    };
    let containers = runtime.list_containers(&labels::pod_selector(node, &uid), None)?;
    Ok(Some(FoundPod {
        sandbox_id: sandbox.id,
        uid,
        containers,
    }))
}

/// The instance of container `name` a request means: the newest attempt, or with `previous`
/// the one before it.
pub fn pick_container<'a>(
    pod: &'a FoundPod,
    name: &str,
    previous: bool,
) -> Option<&'a api::Container> {
    let mut all: Vec<&api::Container> = pod
        .containers
        .iter()
        .filter(|c| c.labels.get(CONTAINER_NAME).map(String::as_str) == Some(name))
        .filter(|c| c.labels.contains_key(OWNER))
        .collect();
    all.sort_by_key(|c| std::cmp::Reverse((c.metadata.attempt, c.created_at)));
    all.get(usize::from(previous)).copied()
}

/// True when the pod has any instance of this container.
pub fn has_container(pod: &FoundPod, name: &str) -> bool {
    pick_container(pod, name, false).is_some()
}
