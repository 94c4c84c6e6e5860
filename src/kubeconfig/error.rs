//! The one error type of the kubeconfig module, and the small enums its messages are built from.
//!
//! Every message is one line and names the file (and the cluster or user) it is about. Messages
//! never contain key material or tokens: this module only ever formats names, paths and fixed
//! text, and the `Debug` of every type here is derived from fields that hold no secrets.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong turning a kubeconfig or the in-cluster files into a
/// [`ClientConfig`](super::ClientConfig), or that into a TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// An error found in a kubeconfig file; wraps one of the variants below with the file's
    /// path. [`Kubeconfig::from_yaml`](super::Kubeconfig::from_yaml) and
    /// [`Kubeconfig::resolve`](super::Kubeconfig::resolve) do not know the path, so
    /// [`load`](super::load) adds it.
    #[error("kubeconfig {}: {error}", file.display())]
    InFile {
        file: PathBuf,
        error: Box<KubeconfigError>,
    },
    #[error("failed to read kubeconfig {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    /// A YAML syntax error or a value of the wrong type; the text carries line and column.
    #[error("invalid kubeconfig: {0}")]
    Syntax(String),
    #[error("duplicate {kind} name {name:?}")]
    DuplicateName { kind: &'static str, name: String },
    #[error(
        "no context given and current-context is not set (contexts: {})",
        names(available)
    )]
    NoContext { available: Vec<String> },
    #[error("context {name:?} not found (contexts: {})", names(available))]
    ContextNotFound {
        name: String,
        available: Vec<String>,
    },
    #[error("context {context:?} names no cluster")]
    ContextWithoutCluster { context: String },
    #[error(
        "context {context:?}: {kind} {name:?} not found ({kind}s: {})",
        names(available)
    )]
    NotFound {
        context: String,
        kind: &'static str,
        name: String,
        available: Vec<String>,
    },
    #[error(
        "context {context:?}: namespace {namespace:?} is not a valid namespace name (lowercase \
         letters, digits and '-', at most 63)"
    )]
    InvalidNamespace { context: String, namespace: String },
    /// A problem with one cluster, one user, or the in-cluster files.
    #[error("{scope}: {problem}")]
    Invalid { scope: Scope, problem: Problem },
    /// `KUBECONFIG` is set but names no existing file.
    #[error("KUBECONFIG={value:?}: none of the listed files exists")]
    NoKubeconfigInEnv { value: String },
    #[error(
        "no kubeconfig (neither --kubeconfig nor KUBECONFIG is set) and not running in a \
         cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"
    )]
    NotInCluster,
    #[error("context {context:?} was asked for, but there is no kubeconfig: the in-cluster config has no contexts")]
    ContextWithoutKubeconfig { context: String },
    /// [`tls_config`](super::tls_config) was given a [`ClientConfig`](super::ClientConfig) whose
    /// TLS material is unusable. (Through [`load`](super::load) this is reported earlier, as
    /// [`KubeconfigError::Invalid`] naming the file and user.)
    #[error("invalid TLS material: {0}")]
    Tls(Problem),
}

/// What a [`KubeconfigError::Invalid`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Cluster(String),
    User(String),
    InCluster,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Cluster(name) => write!(f, "cluster {name:?}"),
            Scope::User(name) => write!(f, "user {name:?}"),
            Scope::InCluster => f.write_str("in-cluster config"),
        }
    }
}

/// Where a piece of PEM or a token came from, for messages: `client-key-data`, or
/// `client-key /etc/vk/node.key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Data(&'static str),
    File(&'static str, PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Data(field) => f.write_str(field),
            Origin::File(field, path) => write!(f, "{field} {}", path.display()),
        }
    }
}

/// A problem with a cluster, a user or the in-cluster files.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("failed to read {origin}: {error}")]
    ReadFile { origin: Origin, error: io::Error },
    #[error("{field} is not valid base64")]
    InvalidBase64 { field: &'static str },
    #[error("{origin}: malformed PEM ({what})")]
    MalformedPem { origin: Origin, what: &'static str },
    #[error("{origin}: no certificate (expected a PEM \"CERTIFICATE\" block)")]
    NoCertificate { origin: Origin },
    #[error("{origin}: no usable certificate ({ignored} could not be parsed)")]
    NoUsableCertificate { origin: Origin, ignored: usize },
    #[error("{origin}: no private key{} (expected PKCS#1, PKCS#8 or SEC1 PEM)", if *found_certificate { ", only a certificate" } else { "" })]
    NoPrivateKey {
        origin: Origin,
        found_certificate: bool,
    },
    #[error("{origin}: encrypted private keys are not supported")]
    EncryptedPrivateKey { origin: Origin },
    #[error("{origin}: the file is empty")]
    EmptyToken { origin: Origin },
    #[error("both {file} and {data} are set (kubectl refuses this too); keep one")]
    DataAndFile {
        data: &'static str,
        file: &'static str,
    },
    #[error("client-certificate is set but client-key is not")]
    CertWithoutKey,
    #[error("client-key is set but client-certificate is not")]
    KeyWithoutCert,
    #[error(
        "both a client certificate and a token are set; vk-cri authenticates with one, keep one"
    )]
    CertAndToken,
    #[error("the client key does not match the client certificate")]
    KeyMismatch,
    #[error("the client certificate or key cannot be used: {0}")]
    ClientCertUnusable(rustls::Error),
    #[error("exec credential plugins are not supported (command {command:?}); use a client certificate or a token")]
    Exec { command: String },
    #[error("auth-provider {name:?} is not supported; use a client certificate or a token")]
    AuthProvider { name: String },
    #[error(
        "username/password (basic auth) is not supported: Kubernetes removed it in v1.19; use a \
         client certificate or a token"
    )]
    BasicAuth,
    #[error("impersonation (as, as-uid, as-groups) is not supported")]
    Impersonation,
    #[error("server is not set")]
    NoServer,
    #[error("server {server:?}: {reason}")]
    InvalidServer {
        server: String,
        reason: &'static str,
    },
    #[error("proxy-url is not supported; connect to the API server directly")]
    ProxyUrl,
    #[error(
        "tls-server-name is not supported; put a name the server certificate is valid for in \
         server instead"
    )]
    TlsServerName,
    #[error(
        "neither certificate-authority nor certificate-authority-data is set and system roots \
         are not used; set one (or insecure-skip-tls-verify: true)"
    )]
    NoCertificateAuthority,
    #[error(
        "insecure-skip-tls-verify is set together with a certificate authority (kubectl refuses \
         this too); keep one"
    )]
    InsecureWithCertificateAuthority,
    #[error("{var} is not set")]
    MissingEnv { var: &'static str },
    #[error("{var}={value:?} is not a valid port")]
    InvalidPort { var: &'static str, value: String },
    #[error("failed to build the TLS configuration: {0}")]
    Rustls(rustls::Error),
}

impl Problem {
    /// Wraps this problem as an error about `scope`.
    pub(crate) fn at(self, scope: &Scope) -> KubeconfigError {
        KubeconfigError::Invalid {
            scope: scope.clone(),
            problem: self,
        }
    }
}

/// `a, b, c`, or `none` for an empty list.
fn names(list: &[String]) -> String {
    if list.is_empty() {
        "none".to_string()
    } else {
        list.join(", ")
    }
}
