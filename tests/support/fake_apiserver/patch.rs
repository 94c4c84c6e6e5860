//! Patch application as the real server does it for the objects the daemon touches: JSON merge
//! patch (RFC 7386), strategic merge patch with the merge keys of the Pod, Node and container
//! lists (conditions by `type`, pod/host IPs by `ip`, containers by `name`, node addresses by
//! `type`, ...; container statuses have none and are replaced), the `$patch: delete|replace`
//! directives and `$setElementOrder` as apimachinery orders a merged list, and JSON patch
//! (RFC 6902: add, remove, replace, test).
//!
//! Owns: pure value transformations. Must not know about storage or HTTP.

use serde_json::{Map, Value};

use super::store::Res;

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// The merge key of a list field, by the path of field names from the object root (list
/// positions are not part of the path). `None`: the list is replaced as a whole.
pub fn merge_key(res: Res, path: &[&str]) -> Option<&'static str> {
    let containers = |f: &str| matches!(f, "containers" | "initContainers" | "ephemeralContainers");
    match (res, path) {
        (Res::Pods, ["status", "conditions"]) => Some("type"),
        // containerStatuses, initContainerStatuses and ephemeralContainerStatuses have no patch
        // strategy in v1.28's types.go: they are replaced whole.
        (Res::Pods, ["status", "podIPs" | "hostIPs"]) => Some("ip"),
        (Res::Pods, ["status", "resourceClaimStatuses"]) => Some("name"),
        (Res::Pods, ["spec", c]) if containers(c) => Some("name"),
        (Res::Pods, ["spec", "volumes" | "imagePullSecrets"]) => Some("name"),
        (Res::Pods, ["spec", c, "env"]) if containers(c) => Some("name"),
        (Res::Pods, ["spec", c, "ports"]) if containers(c) => Some("containerPort"),
        (Res::Pods, ["spec", c, "volumeMounts"]) if containers(c) => Some("mountPath"),
        (Res::Pods, ["spec", c, "volumeDevices"]) if containers(c) => Some("devicePath"),
        (Res::Nodes, ["status", "conditions"]) => Some("type"),
        (Res::Nodes, ["status", "addresses"]) => Some("type"),
        (Res::Nodes, ["status", "volumesAttached"]) => Some("name"),
        (_, ["metadata", "ownerReferences"]) => Some("uid"),
        _ => None,
    }
}

/// Applies a strategic merge patch.
pub fn strategic_merge(res: Res, target: &mut Value, patch: &Value) {
    let mut path = Vec::new();
    smp_value(res, &mut path, target, patch);
}

fn is_directive(k: &str) -> bool {
    k.starts_with('$')
}

fn smp_value(res: Res, path: &mut Vec<String>, target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = p.clone();
        clean.retain(|k, _| !is_directive(k));
        *target = Value::Object(clean);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return;
    };
    for (k, v) in p {
        if is_directive(k) {
            // `$setElementOrder/F` of a list the patch does not change: only reorders it.
            if let Some(field) = k.strip_prefix("$setElementOrder/") {
                if p.contains_key(field) {
                    continue;
                }
                path.push(field.to_string());
                let refs: Vec<&str> = path.iter().map(String::as_str).collect();
                if let (Some(key), Some(Value::Array(order)), Some(Value::Array(existing))) =
                    (merge_key(res, &refs), Some(v), t.get_mut(field))
                {
                    let original = existing.clone();
                    *existing = normalize_order(std::mem::take(existing), order, &original, key);
                }
                path.pop();
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        path.push(k.clone());
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let key = merge_key(res, &refs);
        match (key, v, t.get_mut(k)) {
            (Some(key), Value::Array(items), Some(Value::Array(existing))) => {
                let original = existing.clone();
                smp_list(res, path, key, existing, items);
                // The order: `$setElementOrder/F` if given, else the patch list's own.
                let order = match p.get(&format!("$setElementOrder/{k}")) {
                    Some(Value::Array(o)) => o.clone(),
                    _ => items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect(),
                };
                *existing = normalize_order(std::mem::take(existing), &order, &original, key);
            }
            (_, Value::Array(items), _) => {
                // Replace, dropping any directive elements.
                let kept: Vec<Value> = items
                    .iter()
                    .filter(|i| i.get("$patch").is_none())
                    .cloned()
                    .collect();
                t.insert(k.clone(), Value::Array(kept));
            }
            (_, Value::Object(_), Some(existing)) => smp_value(res, path, existing, v),
            (_, _, _) => {
                let mut fresh = Value::Null;
                smp_value(res, path, &mut fresh, v);
                t.insert(k.clone(), fresh);
            }
        }
        path.pop();
    }
}

fn smp_list(
    res: Res,
    path: &mut Vec<String>,
    key: &str,
    existing: &mut Vec<Value>,
    items: &[Value],
) {
    for item in items {
        let Some(id) = item.get(key).cloned() else {
            existing.push(item.clone());
            continue;
        };
        let pos = existing.iter().position(|e| e.get(key) == Some(&id));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => smp_value(res, path, &mut existing[i], item),
            (None, false) => {
                let mut fresh = Value::Null;
                smp_value(res, path, &mut fresh, item);
                existing.push(fresh);
            }
        }
    }
}

/// apimachinery's `normalizeElementOrder`: the merged items named by `order` sorted by it, the
/// others (server-only) in their live order, and the two interleaved by their positions in the
/// live list (`mergeSortedSlice`: a server-only item goes before a patch item only when both are
/// in the live list and it came first there).
fn normalize_order(merged: Vec<Value>, order: &[Value], live: &[Value], key: &str) -> Vec<Value> {
    let pos = |list: &[Value], item: &Value| {
        list.iter()
            .position(|x| x.get(key).is_some() && x.get(key) == item.get(key))
    };
    let (mut patched, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|m| pos(order, m).is_some());
    patched.sort_by_key(|m| pos(order, m));
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(patched.len() + server_only.len());
    while i < server_only.len() || j < patched.len() {
        let take_left = if i >= server_only.len() {
            false
        } else if j >= patched.len() {
            true
        } else {
            matches!(
                (pos(live, &server_only[i]), pos(live, &patched[j])),
                (Some(l), Some(r)) if l < r
            )
        };
        if take_left {
            out.push(server_only[i].clone());
            i += 1;
        } else {
            out.push(patched[j].clone());
            j += 1;
        }
    }
    out
}

/// Why a JSON patch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonPatchError {
    Invalid(String),
    TestFailed(String),
}

fn pointer_parts(path: &str) -> Result<Vec<String>, JsonPatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(JsonPatchError::Invalid(format!("invalid path {path}")));
    };
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn parent_mut<'a>(doc: &'a mut Value, parts: &[String]) -> Result<&'a mut Value, JsonPatchError> {
    let mut cur = doc;
    for p in parts {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(p)
                .ok_or_else(|| JsonPatchError::Invalid(format!("missing path element {p}")))?,
            Value::Array(a) => {
                let i: usize = p
                    .parse()
                    .map_err(|_| JsonPatchError::Invalid(format!("bad index {p}")))?;
                a.get_mut(i)
                    .ok_or_else(|| JsonPatchError::Invalid(format!("index {i} out of range")))?
            }
            _ => return Err(JsonPatchError::Invalid(format!("cannot descend into {p}"))),
        };
    }
    Ok(cur)
}

/// RFC 6902 with `add`, `remove`, `replace` and `test`.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    let Value::Array(ops) = ops else {
        return Err(JsonPatchError::Invalid("patch is not an array".into()));
    };
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op.get("path").and_then(Value::as_str).unwrap_or("");
        let parts = pointer_parts(path)?;
        let value = op.get("value").cloned().unwrap_or(Value::Null);
        match name {
            "test" => {
                if doc.pointer(path) != Some(&value) {
                    return Err(JsonPatchError::TestFailed(path.to_string()));
                }
            }
            "add" | "replace" | "remove" => {
                let Some((last, parent_path)) = parts.split_last() else {
                    if name == "remove" {
                        return Err(JsonPatchError::Invalid("cannot remove the root".into()));
                    }
                    *doc = value;
                    continue;
                };
                let parent = parent_mut(doc, parent_path)?;
                match parent {
                    Value::Object(m) => {
                        if name != "add" && !m.contains_key(last) {
                            return Err(JsonPatchError::Invalid(format!("missing {path}")));
                        }
                        if name == "remove" {
                            m.remove(last);
                        } else {
                            m.insert(last.clone(), value);
                        }
                    }
                    Value::Array(a) => {
                        let i = if last == "-" {
                            a.len()
                        } else {
                            last.parse::<usize>()
                                .map_err(|_| JsonPatchError::Invalid(format!("bad index {last}")))?
                        };
                        match name {
                            "add" if i <= a.len() => a.insert(i, value),
                            "replace" if i < a.len() => a[i] = value,
                            "remove" if i < a.len() => {
                                a.remove(i);
                            }
                            _ => {
                                return Err(JsonPatchError::Invalid(format!(
                                    "index {i} out of range"
                                )))
                            }
                        }
                    }
                    _ => return Err(JsonPatchError::Invalid(format!("cannot patch {path}"))),
                }
            }
            other => return Err(JsonPatchError::Invalid(format!("unsupported op {other:?}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_with_null_and_replaces_lists() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn smp_merges_pod_conditions_by_type_and_keeps_the_rest() {
        let mut pod = json!({"status": {"conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True", "lastProbeTime": null}
        ], "podIPs": [{"ip": "10.0.0.1"}]}});
        strategic_merge(
            Res::Pods,
            &mut pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "X"}],
                               "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}],
                               "podIPs": [{"ip": "fd00::1"}]}}),
        );
        assert_eq!(
            pod,
            json!({"status": {"conditions": [
                {"type": "Initialized", "status": "True"},
                {"type": "Ready", "status": "False", "lastProbeTime": null, "reason": "X"}
            ], "podIPs": [{"ip": "fd00::1"}, {"ip": "10.0.0.1"}]}}),
            "without $setElementOrder a new element goes before the live ones (13c2)"
        );
    }

    #[test]
    fn smp_replaces_container_statuses_and_deletes_keyed_elements() {
        let mut pod = json!({"status": {"containerStatuses": [{"name": "a", "ready": false}, {"name": "b"}],
                                        "conditions": [{"type": "A"}, {"type": "B"}]},
                             "spec": {"tolerations": [{"key": "x"}]}});
        strategic_merge(
            Res::Pods,
            &mut pod,
            &json!({"status": {"containerStatuses": [{"name": "a", "ready": true}],
                               "conditions": [{"type": "B", "$patch": "delete"}]},
                    "spec": {"tolerations": [{"key": "y"}]}}),
        );
        assert_eq!(
            pod,
            json!({"status": {"containerStatuses": [{"name": "a", "ready": true}],
                              "conditions": [{"type": "A"}]},
                   "spec": {"tolerations": [{"key": "y"}]}})
        );
    }

    #[test]
    fn smp_orders_by_set_element_order_keeping_server_only_items_in_place() {
        // The kubelet's order, with a condition of another client's in the live list.
        let mut pod = json!({"status": {"conditions": [
            {"type": "example.com/gate", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}});
        strategic_merge(
            Res::Pods,
            &mut pod,
            &json!({"status": {
                "$setElementOrder/conditions": [{"type": "PodReadyToStartContainers"}, {"type": "Initialized"},
                                                {"type": "Ready"}, {"type": "PodScheduled"}],
                "conditions": [{"type": "PodReadyToStartContainers", "status": "True"},
                               {"type": "Ready", "status": "True"}]}}),
        );
        let types: Vec<&str> = pod["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            // As a real v1.28.7 server orders them (recorded: 13c-...).
            [
                "PodReadyToStartContainers",
                "example.com/gate",
                "Initialized",
                "Ready",
                "PodScheduled"
            ]
        );
        assert_eq!(pod["status"]["conditions"][3]["status"], "True");
    }

    #[test]
    fn smp_node_addresses_by_type() {
        let mut node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "1.1.1.1"}, {"type": "Hostname", "address": "h"}]}});
        strategic_merge(
            Res::Nodes,
            &mut node,
            &json!({"status": {"addresses": [{"type": "InternalIP", "address": "2.2.2.2"}]}}),
        );
        assert_eq!(node["status"]["addresses"][0]["address"], "2.2.2.2");
        assert_eq!(node["status"]["addresses"][1]["address"], "h");
    }

    #[test]
    fn json_patch_test_and_replace() {
        let mut doc = json!({"status": {"conditions": [{"type": "Ready", "t": "1"}]}});
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/status/conditions/0/type", "value": "Ready"},
                    {"op": "replace", "path": "/status/conditions/0/t", "value": "2"},
                    {"op": "add", "path": "/status/conditions/-", "value": {"type": "X"}}]),
        )
        .unwrap();
        assert_eq!(doc["status"]["conditions"][0]["t"], "2");
        assert_eq!(doc["status"]["conditions"][1]["type"], "X");
        let failed = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/status/conditions/0/type", "value": "Nope"}]),
        );
        assert!(matches!(failed, Err(JsonPatchError::TestFailed(_))));
    }
}
