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
