//! The in-cluster configuration: the API server from `KUBERNETES_SERVICE_HOST` and
//! `KUBERNETES_SERVICE_PORT`, and the pod's service account files, as client-go's
//! `rest.InClusterConfig` reads them. Pure: the environment and the files come through the
//! functions passed in.

use std::io;
use std::path::Path;

use super::error::{KubeconfigError, Origin, Problem, Scope};
use super::file::{normalize_server, ReadFile};
use super::{tls, ClientConfig, Identity};

/// Where Kubernetes mounts a pod's service account token, CA bundle and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The [`ClientConfig`] of a pod's service account. The token is an
/// [`Identity::TokenFile`], since the kubelet rotates it; it is read once here so that a missing
/// token is reported now. The namespace file is optional.
pub fn in_cluster(
    env: &dyn Fn(&str) -> Option<String>,
    read: ReadFile<'_>,
) -> Result<ClientConfig, KubeconfigError> {
    let scope = Scope::InCluster;
    let var = |name: &'static str| {
        env(name)
            .filter(|v| !v.is_empty())
            .ok_or(Problem::MissingEnv { var: name }.at(&scope))
    };
    let host = var("KUBERNETES_SERVICE_HOST")?;
    let port = var("KUBERNETES_SERVICE_PORT")?;
    if port.parse::<u16>().is_err() {
        return Err(Problem::InvalidPort {
            var: "KUBERNETES_SERVICE_PORT",
            value: port,
        }
        .at(&scope));
    }
    // Go's net.JoinHostPort: an IPv6 address gets brackets.
    let server = if host.contains(':') && !host.starts_with('[') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    let (server, _) = normalize_server(&server).map_err(|reason| {
        Problem::InvalidServer {
            server: server.clone(),
            reason,
        }
        .at(&scope)
    })?;

    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let read_file = |name: &'static str| {
        let path = dir.join(name);
        read(&path).map_err(|error| (Origin::File(name, path), error))
    };

    let token_path = dir.join("token");
    let token = read_file("token")
        .map_err(|(origin, error)| Problem::ReadFile { origin, error }.at(&scope))?;
    if token.trim_ascii().is_empty() {
        return Err(Problem::EmptyToken {
            origin: Origin::File("token", token_path),
        }
        .at(&scope));
    }

    let ca_pem = read_file("ca.crt")
        .map_err(|(origin, error)| Problem::ReadFile { origin, error }.at(&scope))?;
    tls::root_store(&ca_pem, &Origin::File("ca.crt", dir.join("ca.crt")))
        .map_err(|p| p.at(&scope))?;

    let namespace = match read_file("namespace") {
        Ok(bytes) => {
            Some(String::from_utf8_lossy(&bytes).trim().to_string()).filter(|n| !n.is_empty())
        }
        Err((_, error)) if error.kind() == io::ErrorKind::NotFound => None,
        Err((origin, error)) => return Err(Problem::ReadFile { origin, error }.at(&scope)),
    };

    Ok(ClientConfig {
        server,
        ca_pem: Some(ca_pem),
        insecure_skip_tls_verify: false,
        identity: Identity::TokenFile(token_path),
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::testing::{fixture, FakeFs};

    fn service_account(namespace: Option<&[u8]>) -> FakeFs {
        let mut fs = FakeFs::default();
        fs.add(
            &format!("{SERVICE_ACCOUNT_DIR}/token"),
            b"eyJhbGciOi.test-only\n",
        );
        fs.add(
            &format!("{SERVICE_ACCOUNT_DIR}/ca.crt"),
            fixture("test-ca.crt"),
        );
        if let Some(ns) = namespace {
            fs.add(&format!("{SERVICE_ACCOUNT_DIR}/namespace"), ns);
        }
        fs
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    fn run(vars: &[(&str, &str)], fs: &FakeFs) -> Result<ClientConfig, String> {
        in_cluster(&env(vars), &|p| fs.read(p)).map_err(|e| e.to_string())
    }

    const SERVICE: &[(&str, &str)] = &[
        ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
        ("KUBERNETES_SERVICE_PORT", "443"),
    ];

    #[test]
    fn service_account_config() {
        let fs = service_account(Some(b"vk-system\n"));
        let cfg = run(SERVICE, &fs).unwrap();
        assert_eq!(
            cfg,
            ClientConfig {
                server: "https://10.96.0.1:443".to_string(),
                ca_pem: Some(fixture("test-ca.crt").to_vec()),
                insecure_skip_tls_verify: false,
                identity: Identity::TokenFile(
                    "/var/run/secrets/kubernetes.io/serviceaccount/token".into()
                ),
                namespace: Some("vk-system".to_string()),
            }
        );
    }

    #[test]
    fn ipv6_host_is_bracketed() {
        let fs = service_account(None);
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "fd00:10:96::1"),
            ("KUBERNETES_SERVICE_PORT", "6443"),
        ];
        let cfg = run(&vars, &fs).unwrap();
        assert_eq!(cfg.server, "https://[fd00:10:96::1]:6443");
        assert_eq!(cfg.namespace, None, "the namespace file is optional");
    }

    #[test]
    fn environment_errors() {
        let fs = service_account(None);
        assert_eq!(
            run(&[("KUBERNETES_SERVICE_PORT", "443")], &fs).unwrap_err(),
            "in-cluster config: KUBERNETES_SERVICE_HOST is not set"
        );
        assert_eq!(
            run(&[("KUBERNETES_SERVICE_HOST", "10.96.0.1")], &fs).unwrap_err(),
            "in-cluster config: KUBERNETES_SERVICE_PORT is not set"
        );
        let vars = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "https"),
        ];
        assert_eq!(
            run(&vars, &fs).unwrap_err(),
            "in-cluster config: KUBERNETES_SERVICE_PORT=\"https\" is not a valid port"
        );
    }

    #[test]
    fn file_errors_name_the_file() {
        let empty = FakeFs::default();
        assert_eq!(
            run(SERVICE, &empty).unwrap_err(),
            "in-cluster config: failed to read token \
             /var/run/secrets/kubernetes.io/serviceaccount/token: entity not found"
        );
        let mut no_ca = FakeFs::default();
        no_ca.add(&format!("{SERVICE_ACCOUNT_DIR}/token"), b"t");
        assert_eq!(
            run(SERVICE, &no_ca).unwrap_err(),
            "in-cluster config: failed to read ca.crt \
             /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: entity not found"
        );
        let mut bad_ca = no_ca;
        bad_ca.add(&format!("{SERVICE_ACCOUNT_DIR}/ca.crt"), b"garbage");
        assert_eq!(
            run(SERVICE, &bad_ca).unwrap_err(),
            "in-cluster config: ca.crt /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: no \
             certificate (expected a PEM \"CERTIFICATE\" block)"
        );
        let mut empty_token = service_account(None);
        empty_token.add(&format!("{SERVICE_ACCOUNT_DIR}/token"), b"");
        assert_eq!(
            run(SERVICE, &empty_token).unwrap_err(),
            "in-cluster config: token /var/run/secrets/kubernetes.io/serviceaccount/token: the \
             file is empty"
        );
    }
}
