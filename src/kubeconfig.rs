//! Kubeconfig and in-cluster configuration: where the API server is and who we are to it.
//!
//! Owns turning a kubeconfig (YAML) or the in-cluster service-account files into a
//! [`ClientConfig`]. Parsing is pure; reading files goes through a reader passed in. It does not
//! open connections (see `kube::client`).

use std::path::PathBuf;

/// Where and how to reach the API server: the result of resolving a kubeconfig context or the
/// in-cluster configuration. All referenced files have been read already, except a token file,
/// which is re-read on use because it rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port`, without a trailing slash.
    pub server: String,
    /// PEM bundle of the certificate authorities that sign the server's certificate.
    pub ca_pem: Option<Vec<u8>>,
    /// Skip verification of the server's certificate (kubeconfig `insecure-skip-tls-verify`).
    pub insecure_skip_tls_verify: bool,
    /// How we authenticate.
    pub identity: Identity,
    /// The context's default namespace, if any.
    pub namespace: Option<String>,
}

/// How the client authenticates to the API server.
#[derive(Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials at all.
    Anonymous,
    /// A TLS client certificate (PEM chain) and its private key (PEM: PKCS#1, PKCS#8 or SEC1).
    ClientCert { cert_pem: Vec<u8>, key_pem: Vec<u8> },
    /// A bearer token.
    Token(String),
    /// A bearer token read from this file on every use.
    TokenFile(PathBuf),
}

impl std::fmt::Debug for Identity {
    // Never print key material or tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anonymous => f.write_str("Anonymous"),
            Identity::ClientCert { .. } => f.write_str("ClientCert{..}"),
            Identity::Token(_) => f.write_str("Token(..)"),
            Identity::TokenFile(p) => write!(f, "TokenFile({})", p.display()),
        }
    }
}
