//! `--config FILE`: a `kubelet.config.k8s.io/v1beta1` KubeletConfiguration, and the effective
//! configuration `/configz` serves.
//!
//! Owns the file's fields vk-cri has ([`FIELDS`]: each file path, the flag it sets and the type
//! it must be), their reading ([`parse`]: YAML or JSON; a field of the wrong type is an error
//! naming its path; a field vk-cri does not have is a warning, as the kubelet's lenient decoding
//! logs the strict decoder's `unknown field`), and the reverse, the running [`Config`] written
//! back under the kubelet's names ([`effective`], Go durations such as `2m0s`). The file's
//! values become flag values: [`apply_file`] puts them under the command line and the
//! environment, so a flag given wins over the file, as the kubelet's flags do. Pure: the caller
//! reads the file.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::config::{Config, Flags};

/// The only version and kind read.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
pub const KIND: &str = "KubeletConfiguration";

/// What a field's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Str,
    Bool,
    /// An integer in this range (inclusive).
    Int(i64, i64),
    /// A Go duration string (`metav1.Duration`).
    Duration,
    /// A list of strings, given to the flag comma-separated.
    List,
    /// A map of strings (`cpu: 100m`), given to the flag as `k=v,k2=v2`.
    Map,
    /// A map of strings given to the flag as `k<v,k2<v2` (`evictionHard: {memory.available: 100Mi}`).
    LtMap,
}

/// One file field vk-cri has: its path in the file, the flag (clap id) it sets, its type.
struct Field {
    path: &'static str,
    flag: &'static str,
    ty: Type,
}

const PORT: Type = Type::Int(1, 65535);

/// Every KubeletConfiguration field vk-cri has.
const FIELDS: &[Field] = &[
    Field {
        path: "address",
        flag: "address",
        ty: Type::Str,
    },
    Field {
        path: "port",
        flag: "port",
        ty: PORT,
    },
    Field {
        path: "tlsCertFile",
        flag: "tls_cert_file",
        ty: Type::Str,
    },
    Field {
        path: "tlsPrivateKeyFile",
        flag: "tls_private_key_file",
        ty: Type::Str,
    },
    Field {
        path: "rotateCertificates",
        flag: "rotate_certificates",
        ty: Type::Bool,
    },
    Field {
        path: "serverTLSBootstrap",
        flag: "rotate_server_certificates",
        ty: Type::Bool,
    },
    Field {
        path: "authentication.x509.clientCAFile",
        flag: "client_ca_file",
        ty: Type::Str,
    },
    Field {
        path: "authentication.anonymous.enabled",
        flag: "anonymous_auth",
        ty: Type::Bool,
    },
    Field {
        path: "authentication.webhook.cacheTTL",
        flag: "authentication_token_webhook_cache_ttl",
        ty: Type::Duration,
    },
    Field {
        path: "authorization.mode",
        flag: "authorization_mode",
        ty: Type::Str,
    },
    Field {
        path: "authorization.webhook.cacheAuthorizedTTL",
        flag: "authorization_webhook_cache_authorized_ttl",
        ty: Type::Duration,
    },
    Field {
        path: "authorization.webhook.cacheUnauthorizedTTL",
        flag: "authorization_webhook_cache_unauthorized_ttl",
        ty: Type::Duration,
    },
    Field {
        path: "healthzBindAddress",
        flag: "healthz_bind_address",
        ty: Type::Str,
    },
    Field {
        path: "healthzPort",
        flag: "healthz_port",
        ty: Type::Int(0, 65535),
    },
    Field {
        path: "clusterDNS",
        flag: "cluster_dns",
        ty: Type::List,
    },
    Field {
        path: "clusterDomain",
        flag: "cluster_domain",
        ty: Type::Str,
    },
    Field {
        path: "resolvConf",
        flag: "resolv_conf",
        ty: Type::Str,
    },
    Field {
        path: "maxPods",
        flag: "max_pods",
        ty: Type::Int(1, i32::MAX as i64),
    },
    Field {
        path: "kubeReserved",
        flag: "kube_reserved",
        ty: Type::Map,
    },
    Field {
        path: "systemReserved",
        flag: "system_reserved",
        ty: Type::Map,
    },
    Field {
        path: "cgroupRoot",
        flag: "cgroup_root",
        ty: Type::Str,
    },
    Field {
        path: "staticPodPath",
        flag: "pod_manifest_path",
        ty: Type::Str,
    },
    Field {
        path: "containerRuntimeEndpoint",
        flag: "cri_socket",
        ty: Type::Str,
    },
    Field {
        path: "runtimeRequestTimeout",
        flag: "runtime_request_timeout",
        ty: Type::Duration,
    },
    Field {
        path: "containerLogMaxSize",
        flag: "container_log_max_size",
        ty: Type::Str,
    },
    Field {
        path: "containerLogMaxFiles",
        flag: "container_log_max_files",
        ty: Type::Int(0, i32::MAX as i64),
    },
    Field {
        path: "evictionHard",
        flag: "eviction_hard",
        ty: Type::LtMap,
    },
    Field {
        path: "evictionSoft",
        flag: "eviction_soft",
        ty: Type::LtMap,
    },
    Field {
        path: "evictionSoftGracePeriod",
        flag: "eviction_soft_grace_period",
        ty: Type::Map,
    },
    Field {
        path: "evictionMinimumReclaim",
        flag: "eviction_minimum_reclaim",
        ty: Type::Map,
    },
    Field {
        path: "evictionPressureTransitionPeriod",
        flag: "eviction_pressure_transition_period",
        ty: Type::Duration,
    },
    Field {
        path: "evictionMaxPodGracePeriod",
        flag: "eviction_max_pod_grace_period",
        ty: Type::Int(i32::MIN as i64, i32::MAX as i64),
    },
    Field {
        path: "imageGCHighThresholdPercent",
        flag: "image_gc_high_threshold",
        ty: Type::Int(i32::MIN as i64, i32::MAX as i64),
    },
    Field {
        path: "imageGCLowThresholdPercent",
        flag: "image_gc_low_threshold",
        ty: Type::Int(i32::MIN as i64, i32::MAX as i64),
    },
    Field {
        path: "imageMinimumGCAge",
        flag: "minimum_image_ttl_duration",
        ty: Type::Duration,
    },
    Field {
        path: "containerLogMonitorInterval",
        flag: "container_log_monitor_interval",
        ty: Type::Duration,
    },
    Field {
        path: "nodeStatusReportFrequency",
        flag: "node_status_report_frequency",
        ty: Type::Duration,
    },
    Field {
        path: "shutdownGracePeriod",
        flag: "shutdown_grace_period",
        ty: Type::Duration,
    },
    Field {
        path: "shutdownGracePeriodCriticalPods",
        flag: "shutdown_grace_period_critical_pods",
        ty: Type::Duration,
    },
    Field {
        path: "nodeLeaseDurationSeconds",
        flag: "node_lease_duration_seconds",
        ty: Type::Int(1, i32::MAX as i64),
    },
];

/// What the file sets: flag values (clap id, value) and warnings for what it cannot.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FileFlags {
    pub values: Vec<(&'static str, String)>,
    pub warnings: Vec<String>,
}

/// Why the file cannot be used; the daemon does not start (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("--config {file}: {message}")]
    Syntax { file: String, message: String },
    #[error(
        "--config {file}: not a {API_VERSION} {KIND} (apiVersion {api_version:?}, kind {kind:?})"
    )]
    Kind {
        file: String,
        api_version: String,
        kind: String,
    },
    #[error("--config {file}: {path}: {message}")]
    Field {
        file: String,
        path: String,
        message: String,
    },
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The flag value for `v`, if it is of type `ty`.
fn flag_value(v: &Value, ty: Type) -> Result<String, String> {
    let wrong = |want: &str| Err(format!("expected {want}, got {} {v}", type_name(v)));
    match ty {
        Type::Str => v
            .as_str()
            .map(str::to_string)
            .map_or_else(|| wrong("a string"), Ok),
        Type::Bool => v
            .as_bool()
            .map(|b| b.to_string())
            .map_or_else(|| wrong("a boolean"), Ok),
        Type::Int(min, max) => match v.as_i64() {
            Some(n) if (min..=max).contains(&n) => Ok(n.to_string()),
            Some(n) => Err(format!("{n} is out of range [{min}, {max}]")),
            None => wrong("an integer"),
        },
        Type::Duration => {
            let Some(s) = v.as_str() else {
                return wrong("a duration string (such as \"2m0s\")");
            };
            crate::config::parse_duration(s)
                .map(|_| s.to_string())
                .map_err(|reason| format!("{s:?} is not a duration: {reason}"))
        }
        Type::List => {
            let Some(items) = v.as_array() else {
                return wrong("a list of strings");
            };
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(s) if !s.contains(',') => out.push(s.to_string()),
                    Some(s) => return Err(format!("[{i}]: {s:?} holds a comma")),
                    None => {
                        return Err(format!("[{i}]: expected a string, got {}", type_name(item)))
                    }
                }
            }
            Ok(out.join(","))
        }
        Type::Map | Type::LtMap => {
            let Some(map) = v.as_object() else {
                return wrong("a map of strings");
            };
            let sep = if matches!(ty, Type::LtMap) { '<' } else { '=' };
            let mut out = Vec::new();
            for (k, item) in map {
                match item.as_str() {
                    Some(s) => out.push(format!("{k}{sep}{s}")),
                    None => return Err(format!("{k}: expected a string, got {}", type_name(item))),
                }
            }
            Ok(out.join(","))
        }
    }
}

/// Reads the file `file` (its name, for messages) with content `text`.
pub fn parse(file: &str, text: &str) -> Result<FileFlags, FileError> {
    let syntax = |message: String| FileError::Syntax {
        file: file.to_string(),
        message,
    };
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(syntax("empty file".into()));
    }
    let value: Value = if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| syntax(format!("invalid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| syntax(format!("invalid YAML: {e}")))?
    };
    let Value::Object(top) = value else {
        return Err(syntax(format!(
            "expected an object, got {}",
            type_name(&value)
        )));
    };
    let text_of = |k: &str| {
        top.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind) = (text_of("apiVersion"), text_of("kind"));
    if api_version != API_VERSION || kind != KIND {
        return Err(FileError::Kind {
            file: file.to_string(),
            api_version,
            kind,
        });
    }
    let mut out = FileFlags::default();
    walk(file, "", &top, &mut out)?;
    Ok(out)
}

fn walk(
    file: &str,
    prefix: &str,
    obj: &Map<String, Value>,
    out: &mut FileFlags,
) -> Result<(), FileError> {
    for (key, v) in obj {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if prefix.is_empty() && matches!(key.as_str(), "apiVersion" | "kind") {
            continue;
        }
        if let Some(field) = FIELDS.iter().find(|f| f.path == path) {
            // null is Go's zero value: the field is as if absent.
            if v.is_null() {
                continue;
            }
            let value = flag_value(v, field.ty).map_err(|message| FileError::Field {
                file: file.to_string(),
                path: path.clone(),
                message,
            })?;
            out.values.push((field.flag, value));
            continue;
        }
        let nested = format!("{path}.");
        if FIELDS.iter().any(|f| f.path.starts_with(&nested)) {
            match v {
                Value::Object(inner) => walk(file, &path, inner, out)?,
                Value::Null => {}
                other => {
                    return Err(FileError::Field {
                        file: file.to_string(),
                        path,
                        message: format!("expected an object, got {}", type_name(other)),
                    })
                }
            }
            continue;
        }
        out.warnings.push(match path.as_str() {
            "authentication.webhook.enabled" if v == &Value::Bool(false) => format!(
                "--config {file}: {path}: false is not supported (bearer tokens are always reviewed with the API server when there is one): ignored"
            ),
            _ => format!("--config {file}: unknown field \"{path}\" (not one vk-cri has): ignored"),
        });
    }
    Ok(())
}

/// The flags parsed from `argv` with the `--config` file's values under them: each file value
/// is used only where the flag was given neither on the command line nor in the environment
/// (the kubelet's precedence: flags over the file).
pub fn apply_file(argv: &[std::ffi::OsString], file: &FileFlags) -> Result<Flags, clap::Error> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let given = Flags::command().try_get_matches_from(argv)?;
    let mut merged: Vec<std::ffi::OsString> = argv.iter().take(1).cloned().collect();
    for (id, value) in &file.values {
        match given.value_source(id) {
            Some(
                clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable,
            ) => {}
            _ => merged.push(format!("--{}={value}", id.replace('_', "-")).into()),
        }
    }
    merged.extend(argv.iter().skip(1).cloned());
    let matches = Flags::command().try_get_matches_from(merged)?;
    Flags::from_arg_matches(&matches)
}

/// A duration as Go's `time.Duration.String()` writes it: `2m0s`, `1h0m0s`, `500ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = u128::from(d.subsec_nanos());
    let seconds = if frac == 0 {
        s.to_string()
    } else {
        trim_fraction(u128::from(s) * 1_000_000_000 + frac, 1_000_000_000)
    };
    match (h, m) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `n / unit` with its fraction, trailing zeros dropped (`1500, 1000` → `1.5`).
fn trim_fraction(n: u128, unit: u128) -> String {
    let (whole, frac) = (n / unit, n % unit);
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The effective configuration, as `/configz` serves it: `{"kubeletconfig": {...}}` with the
/// kubelet's v1beta1 field names (the kubelet converts its internal configuration to v1beta1
/// and serves it without apiVersion or kind).
pub fn effective(c: &Config) -> Value {
    use crate::node::quantity::{Amount, Format};
    let reserved = |r: &crate::node::spec::Reserved| -> BTreeMap<&str, String> {
        [
            ("cpu", r.cpu, Format::DecimalSi),
            ("memory", r.memory, Format::BinarySi),
            ("ephemeral-storage", r.ephemeral_storage, Format::BinarySi),
            ("pid", r.pid, Format::DecimalSi),
        ]
        .into_iter()
        .filter(|(_, a, _)| *a != Amount::ZERO)
        .map(|(k, a, f)| (k, a.format(f)))
        .collect()
    };
    let mut kc = json!({
        "enableServer": true,
        "staticPodPath": c.pod_manifest_path.as_ref().map(|p| p.display().to_string()),
        "address": c.address.to_string(),
        "port": c.port,
        "tlsCertFile": c.tls_cert_file.as_ref().map(|p| p.display().to_string()),
        "tlsPrivateKeyFile": c.tls_private_key_file.as_ref().map(|p| p.display().to_string()),
        "rotateCertificates": c.rotate_certificates,
        "serverTLSBootstrap": c.rotate_server_certificates,
        "authentication": {
            "x509": {"clientCAFile": c.client_ca_file.as_ref().map(|p| p.display().to_string())},
            "webhook": {
                "enabled": c.kubeconfig.is_some(),
                "cacheTTL": go_duration(c.auth_cache.token),
            },
            "anonymous": {"enabled": c.anonymous_auth},
        },
        "authorization": {
            "mode": match c.authorization_mode {
                crate::config::AuthorizationMode::Webhook => "Webhook",
                crate::config::AuthorizationMode::AlwaysAllow => "AlwaysAllow",
            },
            "webhook": {
                "cacheAuthorizedTTL": go_duration(c.auth_cache.allowed),
                "cacheUnauthorizedTTL": go_duration(c.auth_cache.denied),
            },
        },
        "healthzBindAddress": c.healthz.map(|a| a.ip().to_string()),
        "healthzPort": c.healthz.map_or(0, |a| a.port()),
        "clusterDomain": c.cluster_domain,
        "clusterDNS": c.cluster_dns.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "resolvConf": c.resolv_conf.as_ref().map_or_else(String::new, |p| p.display().to_string()),
        "runtimeRequestTimeout": go_duration(c.runtime_request_timeout),
        "maxPods": c.max_pods,
        "cgroupRoot": c.cgroup_root,
        "kubeReserved": reserved(&c.kube_reserved),
        "systemReserved": reserved(&c.system_reserved),
        "containerRuntimeEndpoint": format!("unix://{}", c.cri_socket.display()),
        "containerLogMaxSize": Amount::from_units(c.container_logs.max_size).format(Format::BinarySi),
        "containerLogMaxFiles": c.container_logs.max_files,
        "containerLogMonitorInterval": go_duration(c.container_logs.interval),
        "evictionHard": eviction_map(c, true, |t| t.value.text()),
        "evictionSoft": eviction_map(c, false, |t| t.value.text()),
        "evictionSoftGracePeriod": eviction_map(c, false, |t| go_duration(t.grace_period)),
        "evictionMinimumReclaim": c.eviction.thresholds.iter()
            .filter_map(|t| Some((t.signal.name().to_string(), serde_json::Value::from(t.min_reclaim.as_ref()?.text()))))
            .collect::<serde_json::Map<_, _>>(),
        "evictionPressureTransitionPeriod": go_duration(c.eviction.pressure_transition_period),
        "evictionMaxPodGracePeriod": c.eviction.max_pod_grace_period,
        "imageGCHighThresholdPercent": c.image_gc.high_threshold_percent,
        "imageGCLowThresholdPercent": c.image_gc.low_threshold_percent,
        "imageMinimumGCAge": go_duration(c.image_gc.min_age),
        "nodeStatusReportFrequency": go_duration(c.node_status_report_frequency),
        "nodeLeaseDurationSeconds": c.node_lease_duration_seconds,
        "shutdownGracePeriod": go_duration(c.shutdown_grace_period),
        "shutdownGracePeriodCriticalPods": go_duration(c.shutdown_grace_period_critical_pods),
    });
    prune_nulls(&mut kc);
    json!({ "kubeletconfig": kc })
}

/// Go's `omitempty`: unset paths and empty maps are left out.
/// The hard (or soft) thresholds of `c` as a KubeletConfiguration map, signal → `f(threshold)`.
fn eviction_map(
    c: &Config,
    hard: bool,
    f: impl Fn(&crate::eviction::core::Threshold) -> String,
) -> serde_json::Map<String, Value> {
    c.eviction
        .thresholds
        .iter()
        .filter(|t| t.hard == hard)
        .map(|t| (t.signal.name().to_string(), Value::from(f(t))))
        .collect()
}

fn prune_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            prune_nulls(x);
        }
        m.retain(|_, x| !matches!(x, Value::Object(o) if o.is_empty()));
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::path::PathBuf;

    use super::*;

    /// The configuration of these flags alone.
    fn flags_config(args: &[&str]) -> Config {
        let argv = std::iter::once("virtual-kubelet").chain(args.iter().copied());
        Config::from_flags(clap::Parser::try_parse_from(argv).unwrap()).unwrap()
    }

    /// The flag values, sorted (the file's order does not matter: each sets its own flag).
    fn values(f: &FileFlags) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = f.values.iter().map(|(k, v)| (*k, v.as_str())).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn every_field_sets_its_flag_in_yaml_and_json_alike() {
        let yaml = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10251
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 30s
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 1m0s
clusterDNS: [10.96.0.10, 10.96.0.11]
clusterDomain: cluster.local
kubeReserved:
  cpu: 100m
  memory: 256Mi
maxPods: 50
runtimeRequestTimeout: 2m0s
containerLogMaxFiles: 3
serverTLSBootstrap: true
staticPodPath: /etc/kubernetes/manifests
nodeLeaseDurationSeconds: 60
tlsCertFile: null
";
        let f = parse("k.yaml", yaml).unwrap();
        assert_eq!(
            values(&f),
            [
                ("address", "127.0.0.1"),
                ("anonymous_auth", "false"),
                ("authentication_token_webhook_cache_ttl", "30s"),
                ("authorization_mode", "Webhook"),
                ("authorization_webhook_cache_authorized_ttl", "1m0s"),
                ("client_ca_file", "/etc/kubernetes/pki/ca.crt"),
                ("cluster_dns", "10.96.0.10,10.96.0.11"),
                ("cluster_domain", "cluster.local"),
                ("container_log_max_files", "3"),
                ("kube_reserved", "cpu=100m,memory=256Mi"),
                ("max_pods", "50"),
                ("node_lease_duration_seconds", "60"),
                ("pod_manifest_path", "/etc/kubernetes/manifests"),
                ("port", "10251"),
                ("rotate_server_certificates", "true"),
                ("runtime_request_timeout", "2m0s"),
            ]
        );
        assert!(f.warnings.is_empty(), "{:?}", f.warnings);
        let json = r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","port":10251,"clusterDNS":["10.96.0.10"]}"#;
        assert_eq!(
            values(&parse("k.json", json).unwrap()),
            [("cluster_dns", "10.96.0.10"), ("port", "10251")]
        );
    }

    #[test]
    fn unknown_fields_warn_and_wrong_types_name_their_path() {
        let f = parse(
            "k.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncpuManagerPolicyOptions:\n  full-pcpus-only: \"true\"\nauthentication:\n  webhook:\n    enabled: false\n  magic: 1\nmaxPods: 7\n",
        )
        .unwrap();
        assert_eq!(values(&f), [("max_pods", "7")]);
        let mut warnings = f.warnings.clone();
        warnings.sort();
        assert_eq!(
            warnings,
            [
                "--config k.yaml: authentication.webhook.enabled: false is not supported (bearer tokens are always reviewed with the API server when there is one): ignored",
                "--config k.yaml: unknown field \"authentication.magic\" (not one vk-cri has): ignored",
                "--config k.yaml: unknown field \"cpuManagerPolicyOptions\" (not one vk-cri has): ignored",
            ]
        );
        let head = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
        let err = |body: &str| {
            parse("k.yaml", &format!("{head}{body}"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("port: \"10250\"\n"),
            "--config k.yaml: port: expected an integer, got a string \"10250\""
        );
        assert_eq!(
            err("port: 70000\n"),
            "--config k.yaml: port: 70000 is out of range [1, 65535]"
        );
        assert_eq!(
            err("authentication:\n  anonymous:\n    enabled: \"yes\"\n"),
            "--config k.yaml: authentication.anonymous.enabled: expected a boolean, got a string \"yes\""
        );
        assert_eq!(
            err("authentication: true\n"),
            "--config k.yaml: authentication: expected an object, got a boolean"
        );
        assert_eq!(
            err("runtimeRequestTimeout: 2 minutes\n"),
            "--config k.yaml: runtimeRequestTimeout: \"2 minutes\" is not a duration: unknown unit \" minutes\" (use ns, us, ms, s, m or h)"
        );
        assert_eq!(
            err("clusterDNS: [10.0.0.1, 3]\n"),
            "--config k.yaml: clusterDNS: [1]: expected a string, got a number"
        );
        assert_eq!(
            err("kubeReserved:\n  cpu: [1]\n"),
            "--config k.yaml: kubeReserved: cpu: expected a string, got a list"
        );
        assert_eq!(
            parse("k.yaml", "apiVersion: v1\nkind: Pod\n").unwrap_err().to_string(),
            "--config k.yaml: not a kubelet.config.k8s.io/v1beta1 KubeletConfiguration (apiVersion \"v1\", kind \"Pod\")"
        );
        assert!(parse("k.yaml", "")
            .unwrap_err()
            .to_string()
            .ends_with("empty file"));
        assert!(parse("k.yaml", "port: [")
            .unwrap_err()
            .to_string()
            .contains("invalid YAML"));
        assert!(parse("k.json", "{\"port\": ")
            .unwrap_err()
            .to_string()
            .contains("invalid JSON"));
        assert!(parse("k.yaml", "- 1\n")
            .unwrap_err()
            .to_string()
            .ends_with("expected an object, got a list"));
    }

    #[test]
    fn a_config_file_sits_under_the_flags() {
        let file = parse(
            "k.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 50
clusterDNS: [10.96.0.10]
runtimeRequestTimeout: 30s
authentication:
  anonymous:
    enabled: true
  webhook:
    cacheTTL: 10s
serverTLSBootstrap: true
nodeLeaseDurationSeconds: 60
",
        )
        .unwrap();
        let argv = |args: &[&str]| -> Vec<std::ffi::OsString> {
            ["virtual-kubelet", "--kubeconfig", "k", "--config", "k.yaml"]
                .iter()
                .chain(args)
                .map(Into::into)
                .collect()
        };
        let config = |args: &[&str]| {
            crate::config::Config::from_flags(apply_file(&argv(args), &file).unwrap()).unwrap()
        };
        let c = config(&[]);
        assert_eq!(c.max_pods, 50);
        assert_eq!(c.cluster_dns, [IpAddr::from([10, 96, 0, 10])]);
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(30));
        assert!(c.anonymous_auth && c.rotate_server_certificates);
        assert_eq!(c.auth_cache.token, Duration::from_secs(10));
        assert_eq!(c.auth_cache.allowed, Duration::from_secs(300), "a default");
        assert_eq!(c.node_lease_duration_seconds, 60);
        assert_eq!(c.config_file, Some(PathBuf::from("k.yaml")));
        // A flag given wins, wherever it stands; the rest still comes from the file.
        let c = config(&[
            "--max-pods=7",
            "--cluster-dns",
            "10.0.0.1,10.0.0.2",
            "--anonymous-auth",
            "false",
            "--rotate-server-certificates=false",
        ]);
        assert_eq!(c.max_pods, 7);
        assert_eq!(
            c.cluster_dns,
            [IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2])],
            "replaced, not appended"
        );
        assert!(!c.anonymous_auth && !c.rotate_server_certificates);
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(30));
        // A file value the flags refuse names its flag.
        let bad = parse(
            "k.yaml",
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncontainerLogMaxFiles: 1\n",
        )
        .unwrap();
        let err =
            crate::config::Config::from_flags(apply_file(&argv(&[]), &bad).unwrap()).unwrap_err();
        assert_eq!(err, crate::config::ConfigError::ContainerLogMaxFiles(1));
    }

    #[test]
    fn the_effective_configuration_reads_as_the_kubelets_configz() {
        let c = flags_config(&[
            "--kubeconfig",
            "k",
            "--max-pods",
            "50",
            "--kube-reserved",
            "cpu=100m,memory=256Mi",
            "--cluster-dns",
            "10.96.0.10",
            "--tls-cert-file",
            "c.pem",
            "--tls-private-key-file",
            "k.pem",
        ]);
        let z = effective(&c);
        let kc = &z["kubeletconfig"];
        assert_eq!(kc["maxPods"], 50);
        assert_eq!(kc["port"], 10250);
        assert_eq!(kc["runtimeRequestTimeout"], "2m0s");
        assert_eq!(kc["nodeStatusReportFrequency"], "5m0s");
        assert_eq!(kc["containerLogMaxSize"], "10Mi");
        assert_eq!(kc["containerLogMaxFiles"], 5);
        assert_eq!(kc["containerLogMonitorInterval"], "10s");
        assert_eq!(
            kc["kubeReserved"],
            serde_json::json!({"cpu": "100m", "memory": "256Mi"})
        );
        assert!(kc.get("systemReserved").is_none(), "omitted when empty");
        assert_eq!(kc["clusterDNS"], serde_json::json!(["10.96.0.10"]));
        assert_eq!(kc["tlsCertFile"], "c.pem");
        assert_eq!(kc["authorization"]["mode"], "Webhook");
        assert_eq!(kc["authorization"]["webhook"]["cacheAuthorizedTTL"], "5m0s");
        assert_eq!(
            kc["authorization"]["webhook"]["cacheUnauthorizedTTL"],
            "30s"
        );
        assert_eq!(kc["authentication"]["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(kc["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(kc["healthzPort"], 10248);
        assert_eq!(kc["healthzBindAddress"], "127.0.0.1");
        assert_eq!(kc["nodeLeaseDurationSeconds"], 40);
        assert_eq!(
            kc["containerRuntimeEndpoint"],
            "unix:///run/containerd/containerd.sock"
        );
        assert!(kc.get("staticPodPath").is_none());
        assert!(kc.get("apiVersion").is_none() && kc.get("kind").is_none());
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(3 * 3600 + 61), "3h1m1s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(20), "20ns"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want, "{d:?}");
            assert_eq!(crate::config::parse_duration(want).unwrap(), d, "{want}");
        }
    }
}
