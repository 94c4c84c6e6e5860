//! The two-way strategic merge patch the kubelet sends for a pod's status.
//!
//! Owns `pod_status_patch`, apimachinery's `CreateTwoWayMergePatch(old, new, v1.Pod{})` for the
//! part of a Pod the status manager writes (`statusutil.PatchPodStatus`): maps are diffed key by
//! key (a key gone from `new` becomes `null`), the lists that PodStatus declares
//! `patchStrategy:"merge"` (conditions by `type`, podIPs and hostIPs by `ip`,
//! resourceClaimStatuses by `name`) are diffed element by element with a `$setElementOrder`
//! list and `$patch: delete` for removed elements, and every other list (containerStatuses
//! included) is replaced whole when it changed. Pure: JSON values in, a JSON value out.

use serde_json::{Map, Value};

/// The merge key of a list in a Pod's status, by its field name (`None`: replaced whole).
fn pod_status_merge_key(field: &str) -> Option<&'static str> {
    match field {
        "conditions" => Some("type"),
        "podIPs" | "hostIPs" => Some("ip"),
        "resourceClaimStatuses" => Some("name"),
        _ => None,
    }
}

/// The strategic merge patch that turns a pod whose status is `old` into one whose status is
/// `new`, with `metadata.uid` as a precondition (as the kubelet's `preparePatchBytesForPodStatus`).
/// `None` when the statuses are the same: there is nothing to send.
pub fn pod_status_patch(uid: &str, old: &Value, new: &Value) -> Option<Value> {
    let status = match (old, new) {
        (Value::Object(o), Value::Object(n)) => diff_status(o, n),
        _ if old == new => Map::new(),
        _ => {
            let mut m = Map::new();
            m.insert("status".into(), new.clone());
            return Some(with_uid(uid, Value::Object(m)));
        }
    };
    if status.is_empty() {
        return None;
    }
    let mut m = Map::new();
    m.insert("status".into(), Value::Object(status));
    Some(with_uid(uid, Value::Object(m)))
}

fn with_uid(uid: &str, mut patch: Value) -> Value {
    patch["metadata"] = serde_json::json!({ "uid": uid });
    patch
}

/// The status level: its lists know their merge keys.
fn diff_status(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    diff_map(old, new, pod_status_merge_key)
}

/// Two maps below the status level: no list there has a merge strategy.
fn diff_maps(old: &Map<String, Value>, new: &Map<String, Value>) -> Map<String, Value> {
    diff_map(old, new, |_| None)
}

/// Two maps, key by key, with `merge_key` naming the merge key of each list field of this
/// level (`None`: the list is replaced when it changed).
fn diff_map(
    old: &Map<String, Value>,
    new: &Map<String, Value>,
    merge_key: fn(&str) -> Option<&'static str>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, nv) in new {
        match (old.get(k), merge_key(k), nv) {
            (Some(ov), _, _) if ov == nv => {}
            (Some(Value::Array(ol)), Some(key), Value::Array(nl)) => {
                diff_keyed_list(&mut out, k, key, ol, nl);
            }
            (Some(Value::Object(om)), _, Value::Object(nm)) => {
                let d = diff_maps(om, nm);
                if !d.is_empty() {
                    out.insert(k.clone(), Value::Object(d));
                }
            }
            _ => {
                out.insert(k.clone(), nv.clone());
            }
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.insert(k.clone(), Value::Null);
        }
    }
    out
}

/// A list of maps merged by `key`: changed and new elements (changed ones with only their
/// changed fields and the key), deletions, and the order of `new` as `$setElementOrder/FIELD`
/// whenever anything changed or the order did (apimachinery's `diffLists`).
fn diff_keyed_list(
    out: &mut Map<String, Value>,
    field: &str,
    key: &str,
    old: &[Value],
    new: &[Value],
) {
    let id = |v: &Value| v.get(key).cloned();
    let mut patch = Vec::new();
    for n in new {
        let found = id(n).and_then(|k| old.iter().find(|o| id(o).as_ref() == Some(&k)));
        match (found, n) {
            (Some(Value::Object(om)), Value::Object(nm)) => {
                let mut d = diff_maps(om, nm);
                if !d.is_empty() {
                    d.insert(key.to_string(), nm.get(key).cloned().unwrap_or(Value::Null));
                    patch.push(Value::Object(d));
                }
            }
            (Some(o), _) if o == n => {}
            _ => patch.push(n.clone()),
        }
    }
    for o in old {
        let gone = id(o).is_some_and(|k| !new.iter().any(|n| id(n).as_ref() == Some(&k)));
        if gone {
            let mut d = Map::new();
            d.insert(key.to_string(), o.get(key).cloned().unwrap_or(Value::Null));
            d.insert("$patch".into(), Value::String("delete".into()));
            patch.push(Value::Object(d));
        }
    }
    let common = |list: &[Value], other: &[Value]| -> Vec<Value> {
        list.iter()
            .filter_map(id)
            .filter(|k| other.iter().any(|x| id(x).as_ref() == Some(k)))
            .collect()
    };
    let order_same = common(old, new) == common(new, old);
    if patch.is_empty() && order_same {
        return;
    }
    let order: Vec<Value> = new
        .iter()
        .map(|n| {
            let mut m = Map::new();
            m.insert(key.to_string(), n.get(key).cloned().unwrap_or(Value::Null));
            Value::Object(m)
        })
        .collect();
    if !patch.is_empty() {
        out.insert(field.to_string(), Value::Array(patch));
    }
    out.insert(format!("$setElementOrder/{field}"), Value::Array(order));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unchanged_statuses_need_no_patch() {
        let s = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]});
        assert_eq!(pod_status_patch("u", &s, &s), None);
    }

    #[test]
    fn a_changed_condition_is_sent_alone_with_the_order_and_the_uid() {
        let old = json!({"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": "m"}
        ]});
        let new = json!({"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "True"}
        ]});
        assert_eq!(
            pod_status_patch("u1", &old, &new).unwrap(),
            json!({
                "metadata": {"uid": "u1"},
                "status": {
                    "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}],
                    "conditions": [{"type": "Ready", "status": "True", "reason": null, "message": null}]
                }
            })
        );
    }

    #[test]
    fn removed_conditions_are_deleted_and_container_statuses_replaced_whole() {
        let old = json!({
            "conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": true}],
            "podIP": "10.88.0.2"
        });
        let new = json!({
            "conditions": [{"type": "B", "status": "True"}],
            "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": true}]
        });
        let p = pod_status_patch("u", &old, &new).unwrap();
        assert_eq!(
            p["status"],
            json!({
                "$setElementOrder/conditions": [{"type": "B"}],
                "conditions": [{"type": "A", "$patch": "delete"}],
                "containerStatuses": [{"name": "a", "ready": true}, {"name": "b", "ready": true}],
                "podIP": null
            })
        );
    }

    #[test]
    fn new_list_elements_and_nested_maps() {
        let old = json!({"podIPs": [{"ip": "10.88.0.2"}], "containerStatuses": []});
        let new = json!({
            "podIPs": [{"ip": "10.88.0.2"}, {"ip": "fd00::2"}],
            "containerStatuses": [],
            "startTime": "2026-01-01T00:00:00Z"
        });
        assert_eq!(
            pod_status_patch("u", &old, &new).unwrap()["status"],
            json!({
                "$setElementOrder/podIPs": [{"ip": "10.88.0.2"}, {"ip": "fd00::2"}],
                "podIPs": [{"ip": "fd00::2"}],
                "startTime": "2026-01-01T00:00:00Z"
            })
        );
        // A reorder alone sends the order.
        let a = json!({"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]});
        let b = json!({"conditions": [{"type": "B", "status": "True"}, {"type": "A", "status": "True"}]});
        assert_eq!(
            pod_status_patch("u", &a, &b).unwrap()["status"],
            json!({"$setElementOrder/conditions": [{"type": "B"}, {"type": "A"}]})
        );
    }

    #[test]
    fn from_nothing_everything_is_sent() {
        let new =
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]});
        let p = pod_status_patch("u", &json!({}), &new).unwrap();
        assert_eq!(p["status"], new);
    }
}
