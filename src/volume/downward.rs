//! The downward API: what a pod may know about itself, as files (downwardAPI volumes and the
//! downwardAPI source of projected volumes) and as environment values (`resourceFieldRef`).
//!
//! Owns the kubelet's `fieldpath.ExtractFieldPathAsString` for volume files (metadata.name,
//! namespace, uid, labels and annotations, whole or by key, the maps as sorted `k="v"` lines)
//! and `ExtractContainerResourceValue` (limits/requests of cpu, memory and ephemeral-storage
//! divided by the divisor and rounded up; a limit the container does not set is the node's
//! allocatable). Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Pod};

use super::atomic::{FileData, Payload};
use super::{mode_or_default, NodeAllocatable, VolumeError};
use crate::quantity::Quantity;

/// Go's `%q` of a string (what `FormatMap` writes for label and annotation values).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A label or annotation map as the kubelet writes it: sorted `key="value"` lines.
pub fn format_map(m: Option<&BTreeMap<String, String>>) -> String {
    m.iter()
        .flat_map(|m| m.iter())
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a metadata field path for a downwardAPI file.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, VolumeError> {
    let meta = &pod.metadata;
    let key = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|k| k.strip_suffix("']"))
            .map(str::to_string)
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        _ => {
            if let Some(k) = key("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|m| m.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else if let Some(k) = key("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|m| m.get(&k))
                    .cloned()
                    .unwrap_or_default()
            } else {
                return Err(VolumeError::DownwardApi(format!(
                    "unsupported fieldPath: {path}"
                )));
            }
        }
    })
}

/// A container's resource value (`limits.cpu`, `requests.memory`, ...) divided by `divisor`
/// and rounded up, as a decimal string.
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: &NodeAllocatable,
) -> Result<String, String> {
    let (section, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let res = container.resources.as_ref();
    let set = match section {
        "limits" => res.and_then(|r| r.limits.as_ref()),
        "requests" => res.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    let given = set
        .and_then(|m| m.get(name))
        .map(|q| Quantity::parse(&q.0).map_err(|e| e.to_string()))
        .transpose()?;
    // No divisor, or the zero quantity the API server stores for one left unset (`"0"`: the
    // Go field is a Quantity value, so it is always serialized): divide by 1, as the kubelet's
    // `ExtractContainerResourceValue`.
    let divisor = match divisor.filter(|d| !d.is_empty()) {
        Some(d) => Quantity::parse(d).map_err(|e| e.to_string())?,
        None => Quantity::ZERO,
    };
    let divisor = if divisor == Quantity::ZERO {
        Quantity::parse("1").map_err(|e| e.to_string())?
    } else {
        divisor
    };
    let ceil_div = |a: i64, b: i64| -> Result<String, String> {
        if b <= 0 {
            return Err(format!("invalid divisor for {resource}"));
        }
        Ok(((a + b - 1).div_euclid(b)).to_string())
    };
    match name {
        "cpu" => {
            let milli = match given {
                Some(q) => q.milli_value(),
                None if section == "limits" => node.milli_cpu,
                None => 0,
            };
            ceil_div(milli, divisor.milli_value())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = match given {
                Some(q) => q.value(),
                None if section == "limits" && name == "memory" => node.memory,
                None if section == "limits" => node.ephemeral_storage,
                None => 0,
            };
            ceil_div(bytes, divisor.value())
        }
        _ => Err(format!("unsupported container resource : {resource}")),
    }
}

/// The files of a downwardAPI volume or projection.
pub fn payload(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: Option<i32>,
    node: &NodeAllocatable,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path)?
        } else if let Some(r) = &item.resource_field_ref {
            let name = r.container_name.as_deref().unwrap_or_default();
            let spec = pod.spec.as_ref();
            let c = spec
                .into_iter()
                .flat_map(|s| {
                    s.containers
                        .iter()
                        .chain(s.init_containers.iter().flatten())
                })
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    VolumeError::DownwardApi(format!("container {name:?} not found in the pod"))
                })?;
            resource_value(
                c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                node,
            )
            .map_err(VolumeError::DownwardApi)?
        } else {
            String::new()
        };
        out.insert(
            item.path.clone(),
            FileData {
                content: value.into_bytes(),
                mode: mode_or_default(item.mode, default_mode),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1",
                         "labels": {"b": "2", "a": "x\"y"}, "annotations": {"k": "v\n"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}, "requests": {"cpu": "100m"}}}]}
        }))
        .unwrap()
    }

    const NODE: NodeAllocatable = NodeAllocatable {
        milli_cpu: 4000,
        memory: 8 << 30,
        ephemeral_storage: 100 << 30,
    };

    #[test]
    fn metadata_fields_and_maps_are_written_like_the_kubelet() {
        let p = pod();
        assert_eq!(field_value(&p, "metadata.name").unwrap(), "web");
        assert_eq!(field_value(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(
            field_value(&p, "metadata.labels").unwrap(),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(
            field_value(&p, "metadata.annotations").unwrap(),
            "k=\"v\\n\""
        );
        assert_eq!(field_value(&p, "metadata.labels['b']").unwrap(), "2");
        assert!(field_value(&p, "spec.nodeName").is_err());
    }

    #[test]
    fn resources_divide_round_up_and_fall_back_to_the_node() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let v = |r: &str, d: Option<&str>| resource_value(c, r, d, &NODE).unwrap();
        assert_eq!(v("limits.cpu", None), "1");
        assert_eq!(v("limits.cpu", Some("1m")), "250");
        assert_eq!(v("requests.cpu", Some("1m")), "100");
        assert_eq!(v("limits.memory", None), "67108864");
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        assert_eq!(v("limits.memory", Some("1Gi")), "1");
        assert_eq!(v("limits.ephemeral-storage", Some("1Gi")), "100");
        assert_eq!(v("requests.memory", None), "0");
        assert!(resource_value(c, "limits.gpu", None, &NODE).is_err());
    }

    #[test]
    fn a_zero_divisor_as_the_api_server_stores_it_divides_by_one() {
        // A real kube-apiserver stores `divisor: "0"` for every resourceFieldRef without one.
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        for zero in ["0", "0m", "0Mi"] {
            assert_eq!(
                resource_value(c, "limits.memory", Some(zero), &NODE).unwrap(),
                "67108864"
            );
            assert_eq!(
                resource_value(c, "limits.cpu", Some(zero), &NODE).unwrap(),
                "1"
            );
        }
        assert!(resource_value(c, "limits.cpu", Some("-1"), &NODE).is_err());
    }

    #[test]
    fn files_take_item_modes_or_the_default() {
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "cpu", "mode": 0o400, "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}
        ]))
        .unwrap();
        let p = payload(&pod(), &items, Some(0o640), &NODE).unwrap();
        assert_eq!(p["name"].content, b"web");
        assert_eq!(p["name"].mode, 0o640);
        assert_eq!(p["cpu"].content, b"250");
        assert_eq!(p["cpu"].mode, 0o400);
    }
}
