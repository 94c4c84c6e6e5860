//! A container's environment, resolved the kubelet's way (`makeEnvironmentVariables`).
//!
//! Owns turning `env` into name/value pairs: literal values with `$(VAR)` expansion against the
//! variables defined before them, and the `fieldRef` values a pod knows about itself (name,
//! namespace, uid, labels/annotations, node name, service account, pod and host IPs).
//! References to ConfigMaps and Secrets need objects from the API server; without one (standalone
//! mode) a required reference fails with the kubelet's message and an optional one is skipped.
//! Pure.

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod};

use super::expand::expand_env;

/// An environment variable that cannot be resolved; the message is the pod's waiting message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("env {name}: unsupported fieldPath {path:?}")]
    FieldPath { name: String, path: String },
    #[error("env {name}: resourceFieldRef is not supported by this version of vk-cri yet")]
    ResourceField { name: String },
}

fn field_value(
    pod: &Pod,
    sel: &ObjectFieldSelector,
    name: &str,
    node_name: &str,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = sel.field_path.as_str();
    let from_map = |map: Option<&std::collections::BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        p => {
            if let Some(key) = p
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                from_map(meta.labels.as_ref(), key)
            } else if let Some(key) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                from_map(meta.annotations.as_ref(), key)
            } else {
                return Err(EnvError::FieldPath {
                    name: name.to_string(),
                    path: p.to_string(),
                });
            }
        }
    })
}

/// The container's environment, in order.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    node_name: &str,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<Vec<(String, String)>, EnvError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            if !cm.optional.unwrap_or(false) {
                return Err(EnvError::ConfigMapNotFound(cm.name.clone()));
            }
        }
        if let Some(s) = &from.secret_ref {
            if !s.optional.unwrap_or(false) {
                return Err(EnvError::SecretNotFound(s.name.clone()));
            }
        }
    }
    for e in container.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand_env(e.value.as_deref().unwrap_or(""), &out),
            Some(src) => {
                if let Some(f) = &src.field_ref {
                    field_value(pod, f, &e.name, node_name, pod_ips, host_ips)?
                } else if src.resource_field_ref.is_some() {
                    return Err(EnvError::ResourceField {
                        name: e.name.clone(),
                    });
                } else if let Some(r) = &src.config_map_key_ref {
                    if r.optional.unwrap_or(false) {
                        continue;
                    }
                    return Err(EnvError::ConfigMapNotFound(r.name.clone()));
                } else if let Some(r) = &src.secret_key_ref {
                    if r.optional.unwrap_or(false) {
                        continue;
                    }
                    return Err(EnvError::SecretNotFound(r.name.clone()));
                } else {
                    String::new()
                }
            }
        };
        out.retain(|(k, _)| *k != e.name);
        out.push((e.name.clone(), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(env: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "sa",
                     "containers": [{"name": "c", "image": "busybox", "env": env}]}
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn values_expand_earlier_variables_and_fields_resolve() {
        let (p, c) = pod(serde_json::json!([
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b-$$(A)-$(MISSING)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        ]));
        let env = resolve(
            &p,
            &c,
            "node-a",
            &["10.88.0.9".into()],
            &["192.0.2.1".into(), "fd00::1".into()],
        )
        .unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("B"), Some("a-b-$(A)-$(MISSING)"));
        assert_eq!(get("NAME"), Some("web"));
        assert_eq!(get("NS"), Some("ns"));
        assert_eq!(get("NODE"), Some("node-a"));
        assert_eq!(get("IP"), Some("10.88.0.9"));
        assert_eq!(get("HOST"), Some("192.0.2.1,fd00::1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("SA"), Some("sa"));
    }

    #[test]
    fn references_without_an_api_server_fail_unless_optional() {
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}
        ]));
        assert_eq!(
            resolve(&p, &c, "n", &[], &[]).unwrap_err().to_string(),
            "configmap \"cfg\" not found"
        );
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}
        ]));
        assert_eq!(resolve(&p, &c, "n", &[], &[]).unwrap(), vec![]);
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}
        ]));
        assert!(resolve(&p, &c, "n", &[], &[])
            .unwrap_err()
            .to_string()
            .contains("spec.bogus"));
    }
}
