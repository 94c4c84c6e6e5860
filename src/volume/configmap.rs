//! configMap volumes (and the configMap source of projected volumes): a ConfigMap's `data` and
//! `binaryData` as files, every key or only the `items` (key → path, per-item mode), with
//! `defaultMode` and `optional` as the kubelet honours them. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath};

use super::atomic::{FileData, Payload};
use super::{mode_or_default, Objects, VolumeError};

/// The keys of a ConfigMap with their bytes (`data` then `binaryData`).
pub fn contents(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.insert(k.clone(), v.0.clone());
    }
    out
}

/// Files from keyed data: all keys with `default_mode`, or the `items` only. A missing key
/// fails unless `optional`.
pub fn keyed_payload(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
    missing: impl Fn(&str) -> VolumeError,
) -> Result<Payload, VolumeError> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k.clone(),
                    FileData {
                        content: v.clone(),
                        mode: mode_or_default(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                let Some(v) = data.get(&item.key) else {
                    if optional {
                        continue;
                    }
                    return Err(missing(&item.key));
                };
                out.insert(
                    item.path.clone(),
                    FileData {
                        content: v.clone(),
                        mode: mode_or_default(item.mode, default_mode),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// The files of ConfigMap `name`; an optional missing ConfigMap gives no files.
pub fn payload(
    objects: &Objects,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let Some(cm) = objects.configmap(name)? else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(VolumeError::ConfigMapNotFound(name.to_string()));
    };
    keyed_payload(&contents(cm), items, default_mode, optional, |k| {
        VolumeError::MissingConfigMapKey(k.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Fetched;

    fn objects() -> Objects {
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "cfg"},
            "data": {"a": "1", "b": "2"},
            "binaryData": {"bin": "AAEC"}
        }))
        .unwrap();
        let mut o = Objects::default();
        o.configmaps.insert("cfg".into(), Fetched::Found(cm));
        o.configmaps.insert("gone".into(), Fetched::NotFound);
        o
    }

    fn items(v: serde_json::Value) -> Vec<KeyToPath> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_key_with_default_mode_including_binary_data() {
        let p = payload(&objects(), "cfg", None, Some(0o600), false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["a", "b", "bin"]);
        assert_eq!(p["bin"].content, vec![0, 1, 2]);
        assert!(p.values().all(|f| f.mode == 0o600));
        let p = payload(&objects(), "cfg", None, None, false).unwrap();
        assert!(p.values().all(|f| f.mode == 0o644));
    }

    #[test]
    fn items_choose_keys_paths_and_modes() {
        let it = items(serde_json::json!([
            {"key": "a", "path": "dir/first", "mode": 0o400},
            {"key": "b", "path": "second"}
        ]));
        let p = payload(&objects(), "cfg", Some(&it), Some(0o644), false).unwrap();
        assert_eq!(p.keys().collect::<Vec<_>>(), ["dir/first", "second"]);
        assert_eq!(p["dir/first"].mode, 0o400);
        assert_eq!(p["second"].mode, 0o644);
    }

    #[test]
    fn missing_objects_and_keys_fail_unless_optional() {
        assert_eq!(
            payload(&objects(), "gone", None, None, false)
                .unwrap_err()
                .to_string(),
            "configmap \"gone\" not found"
        );
        assert!(payload(&objects(), "gone", None, None, true)
            .unwrap()
            .is_empty());
        let it = items(serde_json::json!([{"key": "nope", "path": "x"}]));
        assert_eq!(
            payload(&objects(), "cfg", Some(&it), None, false)
                .unwrap_err()
                .to_string(),
            "configmap references non-existent config key: nope"
        );
        assert!(payload(&objects(), "cfg", Some(&it), None, true)
            .unwrap()
            .is_empty());
    }
}
