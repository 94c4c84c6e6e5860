//! vk-cri: a virtual kubelet that runs the pods bound to its Node as real containers in containerd,
//! through CRI v1 over a Unix socket.
//!
//! The crate is a pure core with a thin I/O shell. Every edge (CRI, API server, filesystem, clock)
//! sits behind a small trait with one real and one fake implementation, so that everything but the
//! edges is tested without a runtime. `main.rs` only wires the pieces together.

pub mod certs;
pub mod httpd;
pub mod kubeconfig;
