//! projected volumes: configMap, secret, downwardAPI and serviceAccountToken sources combined in
//! one directory, with the volume's `defaultMode` (the ServiceAccount admission plugin's
//! `kube-api-access-*` volume is one). Tokens are obtained by the manager (TokenRequest bound to
//! the pod) and passed in by [`TokenKey`]. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource, ServiceAccountTokenProjection};

use super::atomic::{FileData, Payload};
use super::{configmap, downward, mode_or_default, secret, NodeAllocatable, Objects, VolumeError};

/// The API's default token lifetime.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What a token is requested for: its audience ("" = the API server's) and lifetime.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    pub audience: String,
    pub expiration_seconds: i64,
}

impl TokenKey {
    pub fn of(src: &ServiceAccountTokenProjection) -> TokenKey {
        TokenKey {
            audience: src.audience.clone().unwrap_or_default(),
            expiration_seconds: src.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
        }
    }
}

/// The tokens of a projected volume's serviceAccountToken sources.
pub fn token_keys(src: &ProjectedVolumeSource) -> Vec<TokenKey> {
    src.sources
        .iter()
        .flatten()
        .filter_map(|s| s.service_account_token.as_ref())
        .map(TokenKey::of)
        .collect()
}

/// The files of a projected volume. `tokens` holds the token (or why there is none) for every
/// key of [`token_keys`].
pub fn payload(
    pod: &Pod,
    src: &ProjectedVolumeSource,
    objects: &Objects,
    tokens: &BTreeMap<TokenKey, Result<String, String>>,
    node: &NodeAllocatable,
) -> Result<Payload, VolumeError> {
    let default_mode = src.default_mode;
    let mut out = Payload::new();
    for s in src.sources.iter().flatten() {
        let part = if let Some(c) = &s.config_map {
            configmap::payload(
                objects,
                &c.name,
                c.items.as_ref(),
                default_mode,
                c.optional.unwrap_or(false),
            )?
        } else if let Some(c) = &s.secret {
            secret::payload(
                objects,
                &c.name,
                c.items.as_ref(),
                default_mode,
                c.optional.unwrap_or(false),
            )?
        } else if let Some(d) = &s.downward_api {
            downward::payload(
                pod,
                d.items.as_deref().unwrap_or_default(),
                default_mode,
                node,
            )?
        } else if let Some(t) = &s.service_account_token {
            let token = match tokens.get(&TokenKey::of(t)) {
                Some(Ok(token)) => token.clone(),
                Some(Err(e)) => return Err(VolumeError::Token(e.clone())),
                None => return Err(VolumeError::Token("no token requested".into())),
            };
            // With an fsGroup the token is 0600 before the group's read bit (the kubelet's rule).
            let fs_group = pod
                .spec
                .as_ref()
                .and_then(|s| s.security_context.as_ref())
                .and_then(|c| c.fs_group)
                .is_some();
            Payload::from([(
                t.path.clone(),
                FileData {
                    content: token.into_bytes(),
                    mode: if fs_group {
                        0o600
                    } else {
                        mode_or_default(None, default_mode)
                    },
                },
            )])
        } else if s.cluster_trust_bundle.is_some() {
            return Err(VolumeError::Unsupported {
                kind: "projected clusterTrustBundle".into(),
            });
        } else {
            Payload::new()
        };
        out.extend(part);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Fetched;

    #[test]
    fn kube_api_access_combines_token_ca_and_namespace() {
        // The volume the ServiceAccount admission plugin injects (fixture 00f).
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "fixtures", "uid": "u"},
            "spec": {"containers": [], "volumes": [{"name": "kube-api-access-x", "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
                ]}}]}
        }))
        .unwrap();
        let src = pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0]
            .projected
            .clone()
            .unwrap();
        let keys = token_keys(&src);
        assert_eq!(
            keys,
            [TokenKey {
                audience: String::new(),
                expiration_seconds: 3607
            }]
        );
        let mut objects = Objects::default();
        objects.configmaps.insert(
            "kube-root-ca.crt".into(),
            Fetched::Found(
                serde_json::from_value(serde_json::json!({"data": {"ca.crt": "PEM"}})).unwrap(),
            ),
        );
        let tokens = BTreeMap::from([(keys[0].clone(), Ok("tok".to_string()))]);
        let p = payload(&pod, &src, &objects, &tokens, &NodeAllocatable::default()).unwrap();
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            ["ca.crt", "namespace", "token"]
        );
        assert_eq!(p["token"].content, b"tok");
        assert_eq!(p["namespace"].content, b"fixtures");
        assert_eq!(p["ca.crt"].content, b"PEM");
        assert!(p.values().all(|f| f.mode == 0o644));

        let failed = BTreeMap::from([(keys[0].clone(), Err("forbidden".to_string()))]);
        assert_eq!(
            payload(&pod, &src, &objects, &failed, &NodeAllocatable::default())
                .unwrap_err()
                .to_string(),
            "failed to fetch token: forbidden"
        );
    }
}
