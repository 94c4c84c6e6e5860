//! Shared support for the integration tests, the bench and the chaos harness (each includes
//! it once: `tests/it/main.rs`, `tests/bench/main.rs`, `tests/chaos/main.rs`).
//!
//! Owns: test doubles of the daemon's edges (the fake API server, the CRI proxy) and the daemon
//! as a child process. Must not be used by the library. Not every user uses every helper, hence
//! the `dead_code` allowance.
#![allow(dead_code)]

pub mod cri_proxy;
pub mod daemon;
pub mod fake_apiserver;
