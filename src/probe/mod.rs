//! Probes and lifecycle hooks: liveness, readiness and startup probes (exec, httpGet,
//! tcpSocket, grpc) and postStart/preStop hooks, as the kubelet runs them.
//!
//! - [`spec`] (pure): a probe or hook in the pod spec → an [`spec::Action`] and its timing.
//! - [`state`] (pure): one probe of one container instance: when it is due, thresholds, the
//!   published result.
//! - [`run`]: the [`run::Handlers`] edge (CRI exec, HTTP, TCP, gRPC) and the kubelet's reading of
//!   their answers, for probes and for hooks.
//! - [`grpc`]: the grpc.health.v1 client.
//! - [`hooks`]: postStart and preStop, around the start and the stop of a container.
//! - [`manager`]: the [`Prober`]: one timer thread and a few workers running every probe, the
//!   results the pod syncer reads (readiness, started, unhealthy) and the pokes when they change.
//!
//! The pod syncer (`executor::sync`) decides what the results mean for a pod and runs the hooks.

pub mod grpc;
pub mod hooks;
pub mod manager;
pub mod run;
pub mod spec;
pub mod state;

pub use manager::{Prober, Running, Unhealthy};
