//! The one integration-test binary (ripgrep's layout): every test that needs a real component
//! lives in a module here. Tests that need containerd get it from the environment `make test`
//! brings up (contrib/dev-env/up.sh) and fail loudly when it is missing; none is skipped.
//! Shared test support (the fake API server) lives in `tests/support/`.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod contrib;
mod cri;
mod daemon;
mod env;
mod fake_apiserver;
mod imagegc;
mod kubelet_api;
mod kubelet_client;
mod probes;
mod prom;
mod standalone;
mod translate;
mod volumes;
