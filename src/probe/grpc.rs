//! The grpc.health.v1 client of grpc probes: `Health/Check` over a plaintext grpcio channel,
//! answered with the kubelet's messages.
//!
//! Owns the generated health protocol (`proto/health.proto`, built by `build.rs`) and the one
//! call grpc probes make. Like the kubelet's, the probe never uses TLS, and a failure to connect,
//! an unimplemented service, a deadline and any other RPC error are distinct messages.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use grpcio::{CallOption, ChannelBuilder, EnvBuilder, Environment, RpcStatusCode};

/// The generated grpc.health.v1 messages and client stub.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unused_imports,
    unused_results,
    non_camel_case_types,
    non_snake_case,
    non_upper_case_globals,
    unused,
    rustdoc::all
)]
pub mod health {
    include!(concat!(env!("OUT_DIR"), "/health/health.rs"));

    /// grpcio client stub for `Health` (and the method descriptors a test server needs).
    pub mod grpc {
        #![allow(clippy::all, dead_code)]
        include!(concat!(env!("OUT_DIR"), "/health/health_grpc.rs"));
    }
}

fn env() -> Arc<Environment> {
    static ENV: OnceLock<Arc<Environment>> = OnceLock::new();
    ENV.get_or_init(|| {
        Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("probe-grpc")
                .build(),
        )
    })
    .clone()
}

/// Go's `%v` of a whole-second duration (`1s`, `1m0s`).
fn go_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The grpc.health.v1 serving status of a Check answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serving {
    Unknown,
    Serving,
    NotServing,
    ServiceUnknown,
}

/// Why a health check got no answer, in the words of the kubelet's grpc prober.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    #[error(
        "this server does not implement the grpc health protocol (grpc.health.v1.Health): {0}"
    )]
    Unimplemented(String),
    #[error("timeout: health rpc did not complete within {}", go_duration(*.timeout))]
    Deadline { timeout: Duration },
    #[error("timeout: failed to connect service {addr:?} within {}: {message}", go_duration(*.timeout))]
    Unavailable {
        addr: String,
        timeout: Duration,
        message: String,
    },
    #[error("error: health rpc probe failed: {0}")]
    Failed(String),
}

/// `Health/Check` of `service` at `addr` (`host:port`) within `timeout`.
pub fn check(addr: &str, service: &str, timeout: Duration) -> Result<Serving, GrpcError> {
    use health::health_check_response::ServingStatus;

    let channel = ChannelBuilder::new(env()).connect(addr);
    let client = health::grpc::HealthClient::new(channel);
    let req = health::HealthCheckRequest {
        service: service.to_string(),
        ..Default::default()
    };
    let opt = CallOption::default().timeout(timeout).wait_for_ready(false);
    match client.check(&req, opt) {
        Ok(resp) => Ok(match resp.status.enum_value_or_default() {
            ServingStatus::SERVING => Serving::Serving,
            ServingStatus::NOT_SERVING => Serving::NotServing,
            ServingStatus::SERVICE_UNKNOWN => Serving::ServiceUnknown,
            ServingStatus::UNKNOWN => Serving::Unknown,
        }),
        Err(grpcio::Error::RpcFailure(status)) => Err(match status.code() {
            RpcStatusCode::UNIMPLEMENTED => GrpcError::Unimplemented(status.message().to_string()),
            RpcStatusCode::DEADLINE_EXCEEDED => GrpcError::Deadline { timeout },
            RpcStatusCode::UNAVAILABLE => GrpcError::Unavailable {
                addr: addr.to_string(),
                timeout,
                message: status.message().to_string(),
            },
            _ => GrpcError::Failed(status.message().to_string()),
        }),
        Err(e) => Err(GrpcError::Failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_go() {
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
    }

    #[test]
    fn a_closed_port_is_a_connection_failure() {
        // Port 1 on loopback: nothing listens there.
        let err = check("127.0.0.1:1", "", Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("timeout: failed to connect service \"127.0.0.1:1\" within 1s")
                || err.starts_with("timeout: health rpc did not complete within 1s"),
            "{err}"
        );
    }
}
