//! TLS settings for the server: PEM material to a rustls 0.23 `ServerConfig` (ring provider,
//! chosen explicitly), client-certificate verification against a CA, and the verified peer
//! identity the handler sees.
//!
//! Owns: certificate/key parsing and verifier policy. Must not do socket I/O or HTTP; it never
//! decides authorization, it only reports who the verified peer is.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use super::HttpdError;

/// Whether and how the server asks for client certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// Do not ask for a client certificate.
    None,
    /// Ask for one and verify it against `ca_pem` if sent; a peer without one is still served
    /// (anonymous).
    Optional { ca_pem: String },
    /// Require a certificate that verifies against `ca_pem`; the handshake fails otherwise.
    Required { ca_pem: String },
}

/// Everything the server needs for TLS, as PEM text.
#[derive(Clone)]
pub struct TlsSetup {
    /// The serving certificate chain, leaf first.
    pub cert_chain_pem: String,
    /// The private key: PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`).
    pub key_pem: String,
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsSetup")
            .field("cert_chain_pem", &self.cert_chain_pem)
            .field("key_pem", &"<redacted>")
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, HttpdError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpdError::Certificate {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(HttpdError::Certificate {
            what: what.to_string(),
            reason: "no CERTIFICATE block found".to_string(),
        });
    }
    Ok(certs)
}

fn roots_from(ca_pem: &str) -> Result<Arc<RootCertStore>, HttpdError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem, "client ca")? {
        roots.add(cert).map_err(|e| HttpdError::Certificate {
            what: "client ca".to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Builds the rustls server configuration from the setup. ALPN offers only `http/1.1`: clients
/// that offer `h2, http/1.1` (kube-apiserver for logs) then speak HTTP/1.1.
pub(crate) fn server_config(setup: &TlsSetup) -> Result<Arc<ServerConfig>, HttpdError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = parse_certs(&setup.cert_chain_pem, "serving certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(setup.key_pem.as_bytes()).map_err(|e| {
        HttpdError::Certificate {
            what: "serving key".to_string(),
            reason: e.to_string(),
        }
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpdError::Tls {
            what: "protocol versions".to_string(),
            source: e,
        })?;
    let builder = match &setup.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional { ca_pem } | ClientAuth::Required { ca_pem } => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots_from(ca_pem)?, provider);
            let verifier = if matches!(setup.client_auth, ClientAuth::Optional { .. }) {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| HttpdError::Certificate {
                what: "client ca".to_string(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| HttpdError::Tls {
            what: "serving certificate and key".to_string(),
            source: e,
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Who the peer is, as far as TLS proved it: the verified client certificate chain (leaf
/// first), or nothing for plain HTTP and for TLS peers that sent no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    chain: Vec<Vec<u8>>,
}

impl PeerIdentity {
    /// No verified certificate.
    pub fn anonymous() -> PeerIdentity {
        PeerIdentity { chain: Vec::new() }
    }

    /// A verified chain (DER, leaf first). Only the server builds these after verification;
    /// tests may build them to drive handlers directly.
    pub fn from_verified_chain(chain: Vec<Vec<u8>>) -> PeerIdentity {
        PeerIdentity { chain }
    }

    /// True when the peer presented a certificate that verified.
    pub fn is_authenticated(&self) -> bool {
        !self.chain.is_empty()
    }

    /// The verified chain as DER, leaf first; empty when anonymous.
    pub fn chain_der(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// The leaf's subject: its first common name and all its organizations, the way
    /// Kubernetes maps a client certificate to a user name and groups. `(None, [])` when
    /// anonymous or when the leaf cannot be parsed.
    pub fn subject(&self) -> (Option<String>, Vec<String>) {
        let Some(leaf) = self.chain.first() else {
            return (None, Vec::new());
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) else {
            return (None, Vec::new());
        };
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .find_map(|a| a.as_str().ok())
            .map(str::to_string);
        let orgs = subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect();
        (cn, orgs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Ca;

    #[test]
    fn subject_reads_cn_and_organization() {
        let ca = Ca::generate("test-ca").unwrap();
        let client = ca
            .issue_client("system:node:vk-node", Some("system:nodes"))
            .unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        let peer = PeerIdentity::from_verified_chain(vec![der.to_vec()]);
        assert!(peer.is_authenticated());
        assert_eq!(
            peer.subject(),
            (
                Some("system:node:vk-node".to_string()),
                vec!["system:nodes".to_string()]
            )
        );
    }

    #[test]
    fn anonymous_and_garbage_have_no_subject() {
        assert_eq!(PeerIdentity::anonymous().subject(), (None, vec![]));
        let junk = PeerIdentity::from_verified_chain(vec![vec![1, 2, 3]]);
        assert_eq!(junk.subject(), (None, vec![]));
    }

    #[test]
    fn server_config_accepts_generated_material_and_rejects_junk() {
        let ca = Ca::generate("test-ca").unwrap();
        let server = ca
            .issue_server("localhost", &["127.0.0.1", "localhost"])
            .unwrap();
        let ok = TlsSetup {
            cert_chain_pem: server.cert_pem.clone(),
            key_pem: server.key_pem.clone(),
            client_auth: ClientAuth::Required {
                ca_pem: ca.cert_pem(),
            },
        };
        assert!(server_config(&ok).is_ok());
        let bad_key = TlsSetup {
            key_pem: "not a key".to_string(),
            ..ok.clone()
        };
        assert!(matches!(
            server_config(&bad_key),
            Err(HttpdError::Certificate { .. })
        ));
        let no_chain = TlsSetup {
            cert_chain_pem: String::new(),
            ..ok
        };
        assert!(matches!(
            server_config(&no_chain),
            Err(HttpdError::Certificate { .. })
        ));
    }

    #[test]
    fn debug_never_prints_the_key() {
        let setup = TlsSetup {
            cert_chain_pem: "c".to_string(),
            key_pem: "SECRET".to_string(),
            client_auth: ClientAuth::None,
        };
        assert!(!format!("{setup:?}").contains("SECRET"));
    }
}
