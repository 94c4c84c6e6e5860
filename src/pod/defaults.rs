//! The API server's defaulting and the basic validation of a Pod, for pods that never went
//! through an API server (static pods from manifest files).
//!
//! Owns `apply_defaults` — the fields the API server fills in on create (restartPolicy,
//! dnsPolicy, terminationGracePeriodSeconds, imagePullPolicy by tag, terminationMessagePath,
//! probe timings, requests from limits, volume modes, …) — and `validate`, the checks without
//! which the pod workers could not run the pod (names, container set, images). Both are pure and
//! idempotent; applying the defaults to a pod that came from an API server changes nothing.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};

/// Fills in what the API server would have defaulted on create.
pub fn apply_defaults(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    spec.scheduler_name
        .get_or_insert_with(|| "default-scheduler".into());
    spec.enable_service_links.get_or_insert(true);
    spec.security_context.get_or_insert_with(Default::default);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c, host_network);
    }
    for c in &mut spec.containers {
        default_container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = v.config_map.as_mut() {
            cm.default_mode.get_or_insert(0o644);
        }
        if let Some(s) = v.secret.as_mut() {
            s.default_mode.get_or_insert(0o644);
        }
        if let Some(d) = v.downward_api.as_mut() {
            d.default_mode.get_or_insert(0o644);
        }
        if let Some(p) = v.projected.as_mut() {
            p.default_mode.get_or_insert(0o644);
        }
        if let Some(h) = v.host_path.as_mut() {
            h.type_.get_or_insert_with(String::new);
        }
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.is_none() {
        let image = c.image.as_deref().unwrap_or("");
        c.image_pull_policy = Some(default_pull_policy(image).into());
    }
    c.termination_message_path
        .get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy
        .get_or_insert_with(|| "File".into());
    for p in c.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
        // With the host's network the container port is the host port.
        if host_network && p.host_port.is_none() {
            p.host_port = Some(p.container_port);
        }
    }
    // Requests default to limits where only limits are given.
    if let Some(res) = c.resources.as_mut() {
        if let Some(limits) = res.limits.clone() {
            let requests = res.requests.get_or_insert_with(Default::default);
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
    for p in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(p);
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(f) = e.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            f.api_version.get_or_insert_with(|| "v1".into());
        }
    }
}

fn default_probe(p: &mut Probe) {
    p.timeout_seconds.get_or_insert(1);
    p.period_seconds.get_or_insert(10);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(h) = p.http_get.as_mut() {
        h.path.get_or_insert_with(|| "/".into());
        h.scheme.get_or_insert_with(|| "HTTP".into());
    }
}

/// `Always` for an image without a tag or with `:latest`, else `IfNotPresent` (digests included).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag is after the last ':' that comes after the last '/' (a registry port is not a tag).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        None => "Always",
        Some((_, "latest")) => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Checks what the pod workers rely on; every problem found, one line each, naming the field.
pub fn validate(pod: &Pod) -> Result<(), Vec<String>> {
    let mut errs = Vec::new();
    let name = pod.metadata.name.as_deref().unwrap_or("");
    if let Some(why) = dns_subdomain_error(name) {
        errs.push(format!("metadata.name {name:?}: {why}"));
    }
    if let Some(ns) = pod.metadata.namespace.as_deref() {
        if let Some(why) = dns_label_error(ns) {
            errs.push(format!("metadata.namespace {ns:?}: {why}"));
        }
    }
    let Some(spec) = pod.spec.as_ref() else {
        errs.push("spec: required".into());
        return Err(errs);
    };
    if spec.containers.is_empty() {
        errs.push("spec.containers: at least one container is required".into());
    }
    if let Some(p) = spec.restart_policy.as_deref() {
        if !matches!(p, "Always" | "OnFailure" | "Never") {
            errs.push(format!(
                "spec.restartPolicy {p:?}: must be Always, OnFailure or Never"
            ));
        }
    }
    if let Some(p) = spec.dns_policy.as_deref() {
        if !matches!(
            p,
            "ClusterFirst" | "ClusterFirstWithHostNet" | "Default" | "None"
        ) {
            errs.push(format!("spec.dnsPolicy {p:?}: must be ClusterFirst, ClusterFirstWithHostNet, Default or None"));
        }
    }
    if spec.termination_grace_period_seconds.is_some_and(|g| g < 0) {
        errs.push("spec.terminationGracePeriodSeconds: must be >= 0".into());
    }
    let mut seen = HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("spec.initContainers", c))
        .chain(spec.containers.iter().map(|c| ("spec.containers", c)));
    for (field, c) in all {
        if let Some(why) = dns_label_error(&c.name) {
            errs.push(format!("{field}[{:?}].name: {why}", c.name));
        }
        if !seen.insert(c.name.as_str()) {
            errs.push(format!(
                "{field}[{:?}].name: duplicate container name",
                c.name
            ));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            errs.push(format!("{field}[{:?}].image: required", c.name));
        }
        if let Some(p) = c.image_pull_policy.as_deref() {
            if !matches!(p, "Always" | "IfNotPresent" | "Never") {
                errs.push(format!(
                    "{field}[{:?}].imagePullPolicy {p:?}: must be Always, IfNotPresent or Never",
                    c.name
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

/// Why `s` is not a DNS-1123 label (what container names and namespaces must be).
pub fn dns_label_error(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    if s.len() > 63 {
        return Some("must be no more than 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Some("must consist of lower case alphanumeric characters or '-'");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("must start and end with an alphanumeric character");
    }
    None
}

/// Why `s` is not a DNS-1123 subdomain (what object names must be).
pub fn dns_subdomain_error(s: &str) -> Option<&'static str> {
    if s.is_empty() {
        return Some("must not be empty");
    }
    if s.len() > 253 {
        return Some("must be no more than 253 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some("must consist of lower case alphanumeric characters, '-' or '.'");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(s.bytes().next()) || !alnum(s.bytes().last()) {
        return Some("must start and end with an alphanumeric character");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn minimal() -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(
            default_pull_policy("127.0.0.1:5000/vk-cri/busybox"),
            "Always"
        );
        assert_eq!(
            default_pull_policy("127.0.0.1:5000/vk-cri/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("busybox@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn defaults_are_the_api_servers() {
        let mut p = minimal();
        apply_defaults(&mut p);
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.enable_service_links, Some(true));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    }

    #[test]
    fn defaults_change_nothing_on_an_api_server_pod() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/apiserver/00f-admin-create-pod-p1/response-body.json"
        ))
        .unwrap();
        let from_server: Pod = serde_json::from_str(&text).unwrap();
        let mut defaulted = from_server.clone();
        apply_defaults(&mut defaulted);
        assert_eq!(defaulted, from_server);
        assert_eq!(validate(&from_server), Ok(()));
    }

    #[test]
    fn probes_ports_and_requests_are_defaulted() {
        let mut p = pod(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"hostNetwork": true, "containers": [{
                "name": "c", "image": "busybox:1.36",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
                "readinessProbe": {"httpGet": {"port": 8080}}
            }]}
        }));
        apply_defaults(&mut p);
        let c = &p.spec.as_ref().unwrap().containers[0];
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.protocol.as_deref(), port.host_port),
            (Some("TCP"), Some(8080))
        );
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "100m", "explicit requests are kept");
        assert_eq!(req["memory"].0, "64Mi", "missing requests come from limits");
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            (
                probe.timeout_seconds,
                probe.period_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let http = probe.http_get.as_ref().unwrap();
        assert_eq!(
            (http.path.as_deref(), http.scheme.as_deref()),
            (Some("/"), Some("HTTP"))
        );
    }

    #[test]
    fn validation_names_every_problem() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "Bad_Name"},
            "spec": {
                "restartPolicy": "Sometimes",
                "initContainers": [{"name": "c", "image": "busybox"}],
                "containers": [{"name": "c", "image": ""}, {"name": "UPPER", "image": "x", "imagePullPolicy": "Maybe"}]
            }
        }));
        let errs = validate(&p).unwrap_err();
        let all = errs.join("\n");
        for needle in [
            "metadata.name \"Bad_Name\"",
            "spec.restartPolicy \"Sometimes\"",
            "spec.containers[\"c\"].name: duplicate container name",
            "spec.containers[\"c\"].image: required",
            "spec.containers[\"UPPER\"].name",
            "imagePullPolicy \"Maybe\"",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        let no_containers =
            pod(serde_json::json!({"metadata": {"name": "x"}, "spec": {"containers": []}}));
        assert_eq!(
            validate(&no_containers).unwrap_err(),
            vec!["spec.containers: at least one container is required".to_string()]
        );
    }
}
