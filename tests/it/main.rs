//! The one integration-test binary: each test area is a module here. Shared test support
//! (the fake API server) lives in `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod fake_apiserver;
