//! What pod sources hand to the pod side, and how a pod says where it came from.
//!
//! Owns [`PodEvent`] (what the API server's pod reflector and the manifest directory send to
//! the pod workers), [`SourcesReady`] (whether every source has delivered its first full view,
//! before which no pod is cleaned up as unknown) and the config-source annotations the kubelet
//! puts on static and mirror pods, with [`is_static`] and [`is_mirror`]. The API edge
//! (`kube/`), `static_pods` and `pod/` all import this module; it imports none of them. Pure
//! data.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// Annotation carrying the static pod's hash (its UID), as the kubelet sets it.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Annotation naming where the pod came from: `file` for a manifest, `api` for the API server.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Annotation with the time the kubelet first saw the pod.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// Annotation that marks a mirror pod in the API server.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// What a pod source tells the pod workers. The latest event for a UID wins.
#[derive(Clone, Debug, PartialEq)]
pub enum PodEvent {
    /// The pod was added or changed (including a deletionTimestamp being set).
    Upsert(Arc<Pod>),
    /// The pod is gone from its source: stop it with its grace period and forget it.
    Remove { uid: String },
}

/// Whether a pod came from a source other than the API server (the kubelet's `IsStaticPod`: its
/// config-source annotation is set and is not `api`).
pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s != "api")
}

/// Whether a pod from the API server is a mirror pod (it stands for a static pod; it is not run
/// itself).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// Counts the pod sources that have not delivered their first full view yet. Orphans are only
/// collected once it reaches zero (before that, a pod may simply not have arrived yet).
#[derive(Clone, Debug)]
pub struct SourcesReady(Arc<AtomicUsize>);

impl SourcesReady {
    /// `sources` sources still to report.
    pub fn new(sources: usize) -> SourcesReady {
        SourcesReady(Arc::new(AtomicUsize::new(sources)))
    }

    /// One source delivered its first full view (call once per source).
    pub fn done(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    pub fn all_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_become_ready_when_each_has_reported() {
        let r = SourcesReady::new(2);
        assert!(!r.all_ready());
        r.done();
        assert!(!r.all_ready());
        r.done();
        r.done();
        assert!(r.all_ready());
    }
}
