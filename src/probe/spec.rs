//! What a probe or a lifecycle hook does, as data: the pod spec's handlers resolved against the
//! container and the pod's IP into an [`Action`], and a probe's timing with the API defaults.
//!
//! Owns the kubelet's resolution rules (pure, no I/O): the host defaults to the pod IP (the node
//! IP for a host-network pod), a port is given by number or by the name of one of the container's
//! ports (or a number written as a string), the path is parsed as a URL reference, headers keep
//! their order and repeats, and exec commands get the container's static `$(VAR)` values. Running
//! an action is the runner's job (`probe::run`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ExecAction, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The three kinds of probe, as the kubelet names them in its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// `Liveness`, `Readiness`, `Startup` (the start of "Liveness probe failed: ...").
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// An HTTP GET to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpGet {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Path and query, as written (`/` when empty).
    pub path: String,
    /// In spec order, repeats kept.
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    /// The URL, with an IPv6 host in brackets.
    pub fn url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let path = if self.path.starts_with('/') {
            self.path.clone()
        } else {
            format!("/{}", self.path)
        };
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

/// What to do to check a container (or to run a hook).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run this command in the container (CRI ExecSync).
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGet),
    /// Open a TCP connection.
    TcpSocket {
        host: String,
        port: u16,
    },
    /// Call grpc.health.v1.Health/Check.
    Grpc {
        host: String,
        port: u16,
        service: String,
    },
}

/// A probe's timing, with the API's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// The probe's own terminationGracePeriodSeconds (for kills it causes).
    pub termination_grace: Option<Duration>,
}

fn secs(v: Option<i32>, default: i32, min: i32) -> Duration {
    Duration::from_secs(v.unwrap_or(default).max(min) as u64)
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            termination_grace: p
                .termination_grace_period_seconds
                .map(|s| Duration::from_secs(s.max(0) as u64)),
        }
    }
}

/// What is wrong with a probe's or hook's spec, in the kubelet's words (reported as the probe's
/// or hook's error; the spec is not run).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("couldn't find port: {port} in container {container}")]
    NoSuchPort { port: String, container: String },
    #[error("invalid port number: {0}")]
    PortRange(i64),
    #[error("exec has no command")]
    NoCommand,
    #[error("unsupported HTTP scheme {0:?}")]
    Scheme(String),
    #[error("missing probe handler")]
    NoProbeHandler,
    #[error("unsupported lifecycle hook handler: only exec and httpGet are run")]
    HookHandler,
}

/// The kubelet's `ResolveContainerPort`.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, SpecError> {
    let n: i64 = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| i64::from(p.container_port))
            .or_else(|| name.parse::<i64>().ok())
            .ok_or_else(|| SpecError::NoSuchPort {
                port: name.clone(),
                container: c.name.clone(),
            })?,
    };
    if (1..65536).contains(&n) {
        Ok(n as u16)
    } else {
        Err(SpecError::PortRange(n))
    }
}

fn host_or(host: Option<&str>, pod_ip: &str) -> String {
    match host {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => pod_ip.to_string(),
    }
}

/// The container's literal env values, for `$(VAR)` in probe commands (the kubelet's
/// `ExpandContainerCommandOnlyStatic`: values from references are not known here).
fn static_env(c: &Container) -> Vec<(String, String)> {
    c.env
        .iter()
        .flatten()
        .filter(|e| e.value_from.is_none())
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn exec(e: &ExecAction, c: &Container) -> Result<Action, SpecError> {
    let env = static_env(c);
    let command: Vec<String> = e
        .command
        .iter()
        .flatten()
        .map(|a| crate::pod::expand::expand_env(a, &env))
        .collect();
    if command.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(Action::Exec { command })
}

fn http_get(h: &HTTPGetAction, c: &Container, pod_ip: &str) -> Result<Action, SpecError> {
    let scheme = match h.scheme.as_deref().unwrap_or("HTTP") {
        s if s.eq_ignore_ascii_case("HTTP") => Scheme::Http,
        s if s.eq_ignore_ascii_case("HTTPS") => Scheme::Https,
        s => return Err(SpecError::Scheme(s.to_string())),
    };
    Ok(Action::HttpGet(HttpGet {
        scheme,
        host: host_or(h.host.as_deref(), pod_ip),
        port: resolve_port(&h.port, c)?,
        path: h.path.clone().unwrap_or_default(),
        headers: h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    }))
}

fn tcp(t: &TCPSocketAction, c: &Container, pod_ip: &str) -> Result<Action, SpecError> {
    Ok(Action::TcpSocket {
        host: host_or(t.host.as_deref(), pod_ip),
        port: resolve_port(&t.port, c)?,
    })
}

fn grpc(g: &GRPCAction, pod_ip: &str) -> Result<Action, SpecError> {
    if !(1..65536).contains(&g.port) {
        return Err(SpecError::PortRange(i64::from(g.port)));
    }
    Ok(Action::Grpc {
        host: pod_ip.to_string(),
        port: g.port as u16,
        service: g.service.clone().unwrap_or_default(),
    })
}

/// The action of a probe. `Err` names what is wrong with the spec (the kubelet reports it as a
/// probe error, and throws the result away).
pub fn probe_action(p: &Probe, c: &Container, pod_ip: &str) -> Result<Action, SpecError> {
    if let Some(e) = &p.exec {
        exec(e, c)
    } else if let Some(h) = &p.http_get {
        http_get(h, c, pod_ip)
    } else if let Some(t) = &p.tcp_socket {
        tcp(t, c, pod_ip)
    } else if let Some(g) = &p.grpc {
        grpc(g, pod_ip)
    } else {
        Err(SpecError::NoProbeHandler)
    }
}

/// The action of a lifecycle hook (exec or httpGet; tcpSocket is accepted by the API but never
/// run by the kubelet).
pub fn hook_action(h: &LifecycleHandler, c: &Container, pod_ip: &str) -> Result<Action, SpecError> {
    if let Some(e) = &h.exec {
        exec(e, c)
    } else if let Some(g) = &h.http_get {
        http_get(g, c, pod_ip)
    } else {
        Err(SpecError::HookHandler)
    }
}

/// The container's probe of this kind, if it has one.
pub fn probe_of(c: &Container, kind: Kind) -> Option<&Probe> {
    match kind {
        Kind::Liveness => c.liveness_probe.as_ref(),
        Kind::Readiness => c.readiness_probe.as_ref(),
        Kind::Startup => c.startup_probe.as_ref(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn http_get_defaults_host_to_the_pod_ip_and_resolves_named_ports() {
        let c = container(serde_json::json!({
            "name": "web", "ports": [{"name": "http", "containerPort": 8080}]
        }));
        let p = probe(serde_json::json!({"httpGet": {
            "port": "http", "path": "/healthz?x=1",
            "httpHeaders": [{"name": "X-A", "value": "1"}, {"name": "X-A", "value": "2"}]
        }}));
        let Action::HttpGet(h) = probe_action(&p, &c, "127.0.0.1").unwrap() else {
            panic!("not an httpGet");
        };
        assert_eq!(h.url(), "http://127.0.0.1:8080/healthz?x=1");
        assert_eq!(
            h.headers,
            [("X-A".into(), "1".into()), ("X-A".into(), "2".into())]
        );
        let p = probe(serde_json::json!({"httpGet": {
            "port": 443, "scheme": "HTTPS", "host": "::1"
        }}));
        let Action::HttpGet(h) = probe_action(&p, &c, "10.88.0.4").unwrap() else {
            panic!("not an httpGet");
        };
        assert_eq!(h.url(), "https://[::1]:443/");
    }

    #[test]
    fn ports_by_unknown_name_or_out_of_range_are_errors_and_numeric_strings_work() {
        let c = container(serde_json::json!({"name": "web"}));
        assert_eq!(
            resolve_port(&IntOrString::String("metrics".into()), &c).map_err(|e| e.to_string()),
            Err("couldn't find port: metrics in container web".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::String("8081".into()), &c),
            Ok(8081)
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &c).map_err(|e| e.to_string()),
            Err("invalid port number: 0".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c).map_err(|e| e.to_string()),
            Err("invalid port number: 70000".into())
        );
    }

    #[test]
    fn exec_commands_get_static_env_values_only() {
        let c = container(serde_json::json!({
            "name": "c",
            "env": [{"name": "A", "value": "x"},
                    {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        }));
        let p = probe(serde_json::json!({"exec": {"command": ["test", "$(A)", "$(B)"]}}));
        assert_eq!(
            probe_action(&p, &c, "").unwrap(),
            Action::Exec {
                command: vec!["test".into(), "x".into(), "$(B)".into()]
            }
        );
        let p = probe(serde_json::json!({"exec": {"command": []}}));
        assert!(probe_action(&p, &c, "").is_err());
    }

    #[test]
    fn tcp_and_grpc_target_the_pod_ip() {
        let c = container(serde_json::json!({"name": "c"}));
        let p = probe(serde_json::json!({"tcpSocket": {"port": 6379}}));
        assert_eq!(
            probe_action(&p, &c, "127.0.0.1").unwrap(),
            Action::TcpSocket {
                host: "127.0.0.1".into(),
                port: 6379
            }
        );
        let p = probe(serde_json::json!({"grpc": {"port": 9090}}));
        assert_eq!(
            probe_action(&p, &c, "127.0.0.1").unwrap(),
            Action::Grpc {
                host: "127.0.0.1".into(),
                port: 9090,
                service: String::new()
            }
        );
    }

    #[test]
    fn timing_defaults_like_the_api_server() {
        let t = Timing::of(&probe(serde_json::json!({"exec": {"command": ["true"]}})));
        assert_eq!(
            t,
            Timing {
                initial_delay: Duration::ZERO,
                period: Duration::from_secs(10),
                timeout: Duration::from_secs(1),
                success_threshold: 1,
                failure_threshold: 3,
                termination_grace: None,
            }
        );
        let t = Timing::of(&probe(serde_json::json!({
            "periodSeconds": 0, "timeoutSeconds": 0, "terminationGracePeriodSeconds": 3
        })));
        assert_eq!(
            (t.period, t.timeout, t.termination_grace),
            (
                Duration::from_secs(1),
                Duration::from_secs(1),
                Some(Duration::from_secs(3))
            )
        );
    }

    #[test]
    fn hooks_run_exec_and_http_get_only() {
        let c = container(serde_json::json!({"name": "c"}));
        let h: LifecycleHandler =
            serde_json::from_value(serde_json::json!({"tcpSocket": {"port": 80}})).unwrap();
        assert!(hook_action(&h, &c, "").is_err());
        let h: LifecycleHandler =
            serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}})).unwrap();
        assert!(matches!(hook_action(&h, &c, ""), Ok(Action::Exec { .. })));
    }
}
