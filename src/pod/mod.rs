//! Pods: what the sources deliver to the pod workers, and the pure rules about a pod's spec.
//!
//! Owns the [`PodEvent`] that every pod source (the API reflector, the static manifest directory)
//! sends, the pod's identity helpers, and the submodules: [`defaults`] (API defaulting and
//! validation for pods that never went through an API server).

pub mod backoff;
pub mod defaults;
pub mod observed;
pub mod plan;
pub mod report;
pub mod status;
pub mod worker;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

/// What a pod source tells the pod workers. The latest event for a UID wins.
#[derive(Clone, Debug, PartialEq)]
pub enum PodEvent {
    /// The pod was added or changed (including a deletionTimestamp being set).
    Upsert(Arc<Pod>),
    /// The pod is gone from its source: stop it with its grace period and forget it.
    Remove { uid: String },
}

/// `namespace/name` of a pod, for messages and logs.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pod's UID ("" when it has none, which no source delivers).
pub fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}
