//! Everything about one pod: what it becomes in the runtime, what to do next, what its status
//! is, and the workers that run it.
//!
//! Pure modules (no I/O, no clock, no logging): [`translate`] (Pod → CRI sandbox and container
//! configs), [`labels`] (the labels and annotations that make the runtime the source of truth
//! after a restart), [`expand`] (`$(VAR)`), [`dns`], [`resources`], [`defaults`]
//! (API defaulting and validation for pods that never went through an API server),
//! [`observed`] (the runtime's view of a pod), [`backoff`], [`plan`] (what to do next) and
//! [`status`] (the pod's status). With I/O: [`worker`] (one thread per pod) and [`report`]
//! (where status and events go). This file owns the pod's identity helpers; what pod sources send
//! is in [`crate::source`].

pub mod api_report;
pub mod backoff;
pub mod cache;
pub mod cgroups;
pub mod context;
pub mod defaults;
pub mod dns;
pub mod env;
pub mod expand;
pub mod index;
pub mod labels;
pub mod observed;
pub mod plan;
pub mod pleg;
pub mod pull_secrets;
pub mod report;
pub mod resources;
pub mod status;
pub mod sync;
pub mod translate;
pub mod worker;

use k8s_openapi::api::core::v1::Pod;

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

/// Whether the pod runs in the host's network namespace.
pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// A pod as log lines name it: `namespace/name (uid prefix)`, so that two instances of one pod
/// (a replaced static pod) are told apart.
pub fn tag(pod: &Pod) -> String {
    format!("{} ({})", key(pod), short_uid(uid(pod)))
}

/// The first 8 characters of a pod UID, enough to tell two instances of one pod apart in a log
/// line (a replaced static pod has the same name and a new UID).
pub fn short_uid(uid: &str) -> &str {
    uid.get(..8).unwrap_or(uid)
}
