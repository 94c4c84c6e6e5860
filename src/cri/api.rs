//! The CRI runtime v1 protocol, generated at build time from `proto/api.proto` (see `build.rs`).
//!
//! Owns nothing but the generated code: the message types (used across the crate to describe
//! sandboxes and containers) and, in [`grpc`], the grpcio stubs that only `cri::client` may use.

#![allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_results
)]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals, unused)]
#![allow(rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/cri/api.rs"));

/// grpcio client stubs for `RuntimeService` and `ImageService`.
pub(crate) mod grpc {
    #![allow(clippy::all, dead_code)]
    include!(concat!(env!("OUT_DIR"), "/cri/api_grpc.rs"));
}
