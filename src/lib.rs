//! vk-cri: a virtual kubelet that runs the pods bound to its Node as real containers in containerd,
//! through CRI v1 over a Unix socket.
//!
//! The crate is a pure core with a thin I/O shell. Every edge (CRI, API server, filesystem, clock)
//! sits behind a small trait with one real and one fake implementation, so that everything but the
//! edges is tested without a runtime. `main.rs` only wires the pieces together.
//!
//! Module map:
//! - [`bootstrap`]: TLS bootstrap (the node's client certificate from a bootstrap token) and
//!   the rotation of the client and serving certificates (CSRs).
//! - [`certs`]: certificates generated at run time (the kubelet API's self-signed pair; test CAs).
//! - [`config`]: command-line flags and environment → a validated [`config::Config`].
//! - [`cri`]: the [`cri::Runtime`] trait (the CRI operations the daemon needs), its grpcio client
//!   and a recording fake.
//! - [`httpd`]: the small blocking HTTPS/1.1 server (rustls, httparse) with full-duplex upgrades.
//! - [`imagegc`]: image garbage collection (the kubelet's thresholds, least recently used first).
//! - [`kube`]: the API server client: requests as data, typed errors, the watch state machine.
//! - [`kubeconfig`]: where the API server is and who we are to it.
//! - [`kubelet_config`]: the `--config` KubeletConfiguration under the flags, and `/configz`.
//! - [`logrotate`]: container log rotation (size, files kept, gzip, CRI `ReopenContainerLog`).
//! - [`metrics`]: vk-cri's own counters and histograms and their Prometheus text.
//! - [`node`]: the Node, Lease and Event objects as pure builders, the host facts they report
//!   and the event recorder's aggregation and rate limits.
//! - [`pod`]: the pure pod core: translation to CRI configs and labels, the environment, the
//!   planner, the status. No I/O, no thread, no clock; imports no executor, prober or reporter.
//! - [`eviction`]: node-pressure eviction (signals, thresholds, the kubelet's ranking).
//! - [`executor`]: the threads that run pods: the pod workers, the syncer (the kubelet's SyncPod
//!   steps against CRI), the relister and runtime cache, the volume manager, pod cgroups.
//! - [`probe`]: liveness, readiness and startup probes and lifecycle hooks: the prober
//!   thread and its workers, the handlers (exec, httpGet, tcpSocket, grpc) and their results.
//! - [`report`]: where pod statuses and events go ([`report::PodReporter`]): the API server
//!   ([`report::api::ApiReporter`]) or the log in standalone mode.
//! - [`server`]: the kubelet API on :10250 (auth, logs, exec/attach/port-forward, pods).
//! - [`static_pods`]: pods from manifest files (`--pod-manifest-path`).
//! - [`volume`]: pod volumes on the host and the mounts that bring them into containers.

pub mod bootstrap;
pub mod certs;
pub mod clock;
pub mod config;
pub mod cri;
pub mod eviction;
pub mod executor;
#[cfg(test)]
mod fuzz;
pub mod httpd;
pub mod imagegc;
pub mod kube;
pub mod kubeconfig;
pub mod kubelet_config;
pub mod logrotate;
pub mod metrics;
pub mod node;
pub mod pod;
pub mod probe;
pub mod quantity;
pub mod random;
pub mod report;
pub mod server;
pub mod source;
pub mod static_pods;
pub mod volume;
