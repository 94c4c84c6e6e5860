//! The Kubernetes API server edge: everything vk-cri says to kube-apiserver, as `system:node:NAME`.
//!
//! Owns the request builders (`request`, pure), the decoding of API errors (`error`, pure), the
//! list+watch state machine and the object cache (`watch`, pure), retry backoff arithmetic
//! (`backoff`, pure), the pod status patch (`smp`, pure), the one place HTTP happens (`client`, ureq), and the [`KubeApi`] trait the
//! rest of the daemon talks to, with its real implementation over [`client::ApiClient`] and a
//! recording fake ([`fake::FakeApi`]). It does not decide *what* to write (node specs, pod
//! status): callers hand it typed objects or patches.

pub mod api;
pub mod backoff;
pub mod client;
pub mod error;
pub mod fake;
pub mod method;
pub mod reflector;
pub mod request;
pub mod smp;
pub mod watch;

pub use api::{CsrApi, EventStream, KubeApi};
pub use error::ApiError;
pub use request::{Method, PatchType, Request, RequestKind};
pub use watch::{Page, WatchEvent};
