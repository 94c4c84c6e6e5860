//! The one integration-test binary (ripgrep's layout): every test that needs a real component
//! lives in a module here. Tests that need containerd get it from the environment `make test`
//! brings up (contrib/dev-env/up.sh) and fail loudly when it is missing; none is skipped.

mod cri;
mod daemon;
mod env;
mod standalone;
mod translate;
