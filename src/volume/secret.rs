//! secret volumes (and the secret source of projected volumes): a Secret's `data` as files,
//! every key or only the `items`, with `defaultMode` and `optional` as the kubelet honours them.
//! The files always go to a tmpfs (the manager mounts it), never to disk. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::KeyToPath;

use super::atomic::Payload;
use super::configmap::keyed_payload;
use super::{Objects, VolumeError};

/// The files of Secret `name`; an optional missing Secret gives no files.
pub fn payload(
    objects: &Objects,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    optional: bool,
) -> Result<Payload, VolumeError> {
    let Some(secret) = objects.secret(name)? else {
        if optional {
            return Ok(Payload::new());
        }
        return Err(VolumeError::SecretNotFound(name.to_string()));
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    keyed_payload(&data, items, default_mode, optional, |k| {
        VolumeError::MissingSecretKey(k.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Fetched;

    #[test]
    fn secret_data_is_decoded_and_modes_kept_exactly() {
        let s = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"}, "data": {"user": "YWRtaW4=", "pass": "c2VjcmV0"}
        }))
        .unwrap();
        let mut o = Objects::default();
        o.secrets.insert("s".into(), Fetched::Found(s));
        let p = payload(&o, "s", None, Some(0o400), false).unwrap();
        assert_eq!(p["user"].content, b"admin");
        assert_eq!(p["pass"].content, b"secret");
        assert!(p.values().all(|f| f.mode == 0o400));
        assert_eq!(
            payload(&o, "other", None, None, false)
                .unwrap_err()
                .to_string(),
            "secret \"other\" not found"
        );
        let items: Vec<KeyToPath> =
            serde_json::from_value(serde_json::json!([{"key": "x", "path": "x"}])).unwrap();
        assert_eq!(
            payload(&o, "s", Some(&items), None, false)
                .unwrap_err()
                .to_string(),
            "references non-existent secret key: x"
        );
    }
}
