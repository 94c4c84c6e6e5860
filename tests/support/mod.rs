//! Shared support for the integration tests (included once, from `tests/it/main.rs`).
//!
//! Owns: test doubles of the daemon's edges. Must not be used by the library.
//! Not every test module uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod fake_apiserver;
