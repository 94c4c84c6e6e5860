//! What a pod becomes in the runtime, as pure functions of the pod and the node's facts.
//!
//! Owns the translation from a k8s-openapi `Pod` to CRI `PodSandboxConfig`/`ContainerConfig`
//! ([`translate`]), the labels and annotations that let the runtime be the source of truth
//! after a restart ([`labels`]), the kubelet's `$(VAR)` expansion ([`expand`]), and the helpers
//! those need ([`dns`], [`resources`], [`quantity`]). Every module here is pure: no I/O, no
//! clock, no logging. Whatever a caller must know at run time (resolved env, mounts, the image's
//! user, the host's resolv.conf) is passed in.

pub mod dns;
pub mod expand;
pub mod labels;
pub mod quantity;
pub mod resources;
pub mod translate;
