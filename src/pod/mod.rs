//! The pure pod core: everything vk-cri decides about one pod, with no I/O, no thread, no lock,
//! no clock and no logging (callers pass `now` and what they read; results are data).
//!
//! [`translate`] (Pod → CRI sandbox and container configs, with [`context`] for what the node
//! contributes), [`labels`] (the labels and annotations that make the runtime the source of
//! truth after a restart), [`env`](mod@env) and [`expand`] (`$(VAR)`), [`dns`], [`resources`],
//! [`defaults`] (API defaulting and validation for pods that never went through an API
//! server), [`pull_secrets`], [`observed`] (the runtime's view of a pod), [`backoff`], [`plan`]
//! (what to do next) and [`status`] (the pod's status). The threads that act on these
//! decisions are `crate::executor`'s; this module imports no executor, prober or reporter
//! (`contrib/tools/import-cycles.py` checks it). This file owns the pod's identity helpers;
//! what pod sources send is in [`crate::source`].

pub mod backoff;
pub mod context;
pub mod defaults;
pub mod dns;
pub mod env;
pub mod expand;
pub mod labels;
pub mod observed;
pub mod plan;
pub mod pull_secrets;
pub mod resources;
pub mod shutdown;
pub mod status;
pub mod translate;

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
