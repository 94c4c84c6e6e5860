//! imagePullSecrets → registry credentials for CRI PullImage, the kubelet's keyring way.
//!
//! Owns reading `kubernetes.io/dockerconfigjson` and `kubernetes.io/dockercfg` secrets and
//! matching their entries against an image reference (registry host, with `*` globs on host
//! labels, and path prefixes; Docker Hub's many spellings), most specific match first. Pure.
//! The credentials become username/password (or `auth`) with `server_address` left empty:
//! containerd 1.6 wants the host it actually contacts there, not the image's registry name.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;

use crate::cri::PullAuth;

/// A pull secret that cannot be used; reported as an event, never fatal to the pull.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PullSecretError {
    #[error("secret {0:?} has type {1:?}, not kubernetes.io/dockerconfigjson or kubernetes.io/dockercfg")]
    WrongType(String, String),
    #[error("secret {0:?} has no {1} key")]
    MissingKey(String, &'static str),
    #[error("secret {0:?} is not a valid docker config: {1}")]
    Invalid(String, String),
}

#[derive(serde::Deserialize, Default)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(serde::Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

/// The registry entries of one pull secret, keyed as written in it.
fn entries(secret: &Secret) -> Result<BTreeMap<String, Entry>, PullSecretError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let type_ = secret.type_.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let invalid = |e: String| PullSecretError::Invalid(name.clone(), e);
    match type_.as_str() {
        "kubernetes.io/dockerconfigjson" => {
            let raw = data
                .get(".dockerconfigjson")
                .ok_or_else(|| PullSecretError::MissingKey(name.clone(), ".dockerconfigjson"))?;
            let cfg: DockerConfigJson =
                serde_json::from_slice(&raw.0).map_err(|e| invalid(e.to_string()))?;
            Ok(cfg.auths)
        }
        "kubernetes.io/dockercfg" => {
            let raw = data
                .get(".dockercfg")
                .ok_or_else(|| PullSecretError::MissingKey(name.clone(), ".dockercfg"))?;
            serde_json::from_slice(&raw.0).map_err(|e| invalid(e.to_string()))
        }
        other => Err(PullSecretError::WrongType(name, other.to_string())),
    }
}

/// `(host, path)` of an image reference, Docker Hub normalised to `docker.io` + `library/…`.
pub fn registry_of(image: &str) -> (String, String) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let (first, rest) = match without_digest.split_once('/') {
        Some((f, r)) if f.contains('.') || f.contains(':') || f == "localhost" => {
            (f.to_string(), r.to_string())
        }
        _ => ("docker.io".to_string(), without_digest.to_string()),
    };
    // Drop the tag from the last path segment.
    let path = match rest.rsplit_once('/') {
        Some((dir, last)) => format!("{dir}/{}", last.split(':').next().unwrap_or(last)),
        None => rest.split(':').next().unwrap_or(&rest).to_string(),
    };
    let path = if first == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    (first, path)
}

/// A config key as `(host, path prefix)`: scheme, `/v1/`-style suffixes and Docker Hub's
/// aliases normalised.
fn key_of(key: &str) -> (String, String) {
    let k = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let (host, path) = k.split_once('/').unwrap_or((k, ""));
    let path = path.trim_end_matches('/');
    let path = if matches!(path, "v1" | "v2") {
        ""
    } else {
        path
    };
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => "docker.io",
        h => h,
    };
    (host.to_string(), path.to_string())
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let (p_host, p_port) = pattern.split_once(':').unwrap_or((pattern, ""));
    let (h_host, h_port) = host.split_once(':').unwrap_or((host, ""));
    if p_port != h_port {
        return false;
    }
    let p: Vec<&str> = p_host.split('.').collect();
    let h: Vec<&str> = h_host.split('.').collect();
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| {
            *p == "*"
                || p.eq_ignore_ascii_case(h)
                || p.strip_prefix('*').is_some_and(|s| h.ends_with(s))
        })
}

/// The credentials that apply to `image` from these pull secrets, most specific first, and
/// the secrets that could not be read.
pub fn credentials_for(image: &str, secrets: &[Secret]) -> (Vec<PullAuth>, Vec<PullSecretError>) {
    let (host, path) = registry_of(image);
    let mut found: Vec<(usize, PullAuth)> = Vec::new();
    let mut errors = Vec::new();
    for s in secrets {
        match entries(s) {
            Err(e) => errors.push(e),
            Ok(map) => {
                for (key, e) in map {
                    let (k_host, k_path) = key_of(&key);
                    if !host_matches(&k_host, &host) {
                        continue;
                    }
                    if !(k_path.is_empty()
                        || path == k_path
                        || path.starts_with(&format!("{k_path}/")))
                    {
                        continue;
                    }
                    let auth = if e.username.is_empty() && e.password.is_empty() {
                        // `auth` alone: keep it, and also decode it for runtimes that want the pair.
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(e.auth.trim())
                            .ok()
                            .and_then(|b| String::from_utf8(b).ok());
                        match decoded.as_deref().and_then(|d| d.split_once(':')) {
                            Some((u, p)) => PullAuth {
                                username: u.into(),
                                password: p.into(),
                                auth: e.auth.clone(),
                            },
                            None => PullAuth {
                                auth: e.auth.clone(),
                                ..Default::default()
                            },
                        }
                    } else {
                        PullAuth {
                            username: e.username,
                            password: e.password,
                            auth: String::new(),
                        }
                    };
                    found.push((k_host.len() + k_path.len(), auth));
                }
            }
        }
    }
    found.sort_by_key(|(specificity, _)| std::cmp::Reverse(*specificity));
    (found.into_iter().map(|(_, a)| a).collect(), errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, type_: &str, key: &str, value: &str) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "type": type_,
            "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}
        }))
        .unwrap()
    }

    #[test]
    fn images_normalise_to_registry_and_path() {
        assert_eq!(
            registry_of("busybox"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            registry_of("busybox:1.36"),
            ("docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            registry_of("user/app:1"),
            ("docker.io".into(), "user/app".into())
        );
        assert_eq!(
            registry_of("127.0.0.1:5001/vk-cri/busybox:1"),
            ("127.0.0.1:5001".into(), "vk-cri/busybox".into())
        );
        assert_eq!(
            registry_of("registry.k8s.io/pause@sha256:ab"),
            ("registry.k8s.io".into(), "pause".into())
        );
        assert_eq!(registry_of("localhost/x"), ("localhost".into(), "x".into()));
    }

    #[test]
    fn dockerconfigjson_credentials_match_by_host_and_path() {
        let cfg = r#"{"auths":{
            "127.0.0.1:5001":{"username":"vkcri","password":"vkcri-secret"},
            "https://index.docker.io/v1/":{"auth":"aHViOnB3"},
            "*.example.com/team":{"username":"t","password":"p"}}}"#;
        let s = secret(
            "regcred",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            cfg,
        );
        let (creds, errs) =
            credentials_for("127.0.0.1:5001/vk-cri/busybox:1", std::slice::from_ref(&s));
        assert!(errs.is_empty());
        assert_eq!(creds.len(), 1);
        assert_eq!(
            (creds[0].username.as_str(), creds[0].password.as_str()),
            ("vkcri", "vkcri-secret")
        );
        let (hub, _) = credentials_for("busybox:1.36", std::slice::from_ref(&s));
        assert_eq!(
            (
                hub[0].username.as_str(),
                hub[0].password.as_str(),
                hub[0].auth.as_str()
            ),
            ("hub", "pw", "aHViOnB3")
        );
        assert_eq!(
            credentials_for("r.example.com/team/app:1", std::slice::from_ref(&s))
                .0
                .len(),
            1
        );
        assert!(
            credentials_for("r.example.com/other/app:1", std::slice::from_ref(&s))
                .0
                .is_empty()
        );
        assert!(
            credentials_for("127.0.0.1:5000/vk-cri/busybox:1", std::slice::from_ref(&s))
                .0
                .is_empty(),
            "another port"
        );
    }

    #[test]
    fn legacy_dockercfg_and_bad_secrets() {
        let legacy = secret(
            "old",
            "kubernetes.io/dockercfg",
            ".dockercfg",
            r#"{"127.0.0.1:5001":{"username":"u","password":"p"}}"#,
        );
        assert_eq!(
            credentials_for("127.0.0.1:5001/a:1", &[legacy]).0[0].username,
            "u"
        );
        let opaque = secret("opaque", "Opaque", "x", "y");
        let broken = secret(
            "broken",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            "{",
        );
        let (creds, errs) = credentials_for("127.0.0.1:5001/a:1", &[opaque, broken]);
        assert!(creds.is_empty());
        assert!(errs[0].to_string().contains("has type \"Opaque\""));
        assert!(errs[1]
            .to_string()
            .starts_with("secret \"broken\" is not a valid docker config"));
    }
}
