//! TLS settings for the server: PEM material to a rustls 0.23 `ServerConfig` (ring provider,
//! chosen explicitly), a serving certificate that can be replaced while the server runs (each
//! handshake takes the current one: rotation), client-certificate verification against a CA,
//! and the verified peer identity the handler sees.
//!
//! Owns: certificate/key parsing and verifier policy. Must not do socket I/O or HTTP; it never
//! decides authorization, it only reports who the verified peer is.

use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
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

/// The serving certificate and key, shared with the server: [`ServingCert::replace`] puts a new
/// pair in place for the handshakes that follow (connections already open keep theirs). A
/// pending one (no pair yet: `--rotate-server-certificates` before the first is issued) fails
/// every handshake, as the kubelet's does.
#[derive(Clone, Default)]
pub struct ServingCert {
    current: Arc<RwLock<Option<Arc<CertifiedKey>>>>,
}

impl ServingCert {
    /// No certificate yet.
    pub fn pending() -> ServingCert {
        ServingCert::default()
    }

    /// The pair from PEM: the chain (leaf first) and the key, PKCS#1 (`RSA PRIVATE KEY`),
    /// PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(cert_chain_pem: &str, key_pem: &str) -> Result<ServingCert, HttpdError> {
        let cert = ServingCert::pending();
        cert.replace(cert_chain_pem, key_pem)?;
        Ok(cert)
    }

    /// Serves new handshakes with this pair; an unusable one changes nothing.
    pub fn replace(&self, cert_chain_pem: &str, key_pem: &str) -> Result<(), HttpdError> {
        let key = certified_key(cert_chain_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(key));
        Ok(())
    }

    /// Whether there is a pair to serve.
    pub fn is_ready(&self) -> bool {
        self.get().is_some()
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        let state = if self.is_ready() { "ready" } else { "pending" };
        f.debug_tuple("ServingCert").field(&state).finish()
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

fn certified_key(cert_chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, HttpdError> {
    let provider = rustls::crypto::ring::default_provider();
    let chain = parse_certs(cert_chain_pem, "serving certificate chain")?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| HttpdError::Certificate {
            what: "serving key".to_string(),
            reason: e.to_string(),
        })?;
    let signing =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| HttpdError::Certificate {
                what: "serving key".to_string(),
                reason: e.to_string(),
            })?;
    let pair = CertifiedKey::new(chain, signing);
    match pair.keys_match() {
        // A key that cannot tell its public half is taken as it is.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(pair)
        }
        Err(source) => Err(HttpdError::Tls {
            what: "serving certificate and key".to_string(),
            source,
        }),
    }
}

/// Everything the server needs for TLS.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    pub cert: ServingCert,
    pub client_auth: ClientAuth,
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
    let mut config = builder.with_cert_resolver(Arc::new(setup.cert.clone()));
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
    fn serving_material_is_checked_and_replaced_in_place() {
        let ca = Ca::generate("test-ca").unwrap();
        let server = ca
            .issue_server("localhost", &["127.0.0.1", "localhost"])
            .unwrap();
        let cert = ServingCert::from_pem(&server.cert_pem, &server.key_pem).unwrap();
        let ok = TlsSetup {
            cert: cert.clone(),
            client_auth: ClientAuth::Required {
                ca_pem: ca.cert_pem(),
            },
        };
        assert!(server_config(&ok).is_ok());
        assert!(matches!(
            ServingCert::from_pem(&server.cert_pem, "not a key"),
            Err(HttpdError::Certificate { .. })
        ));
        assert!(matches!(
            ServingCert::from_pem("", &server.key_pem),
            Err(HttpdError::Certificate { .. })
        ));
        let other = ca.issue_server("other", &["other"]).unwrap();
        assert!(
            matches!(
                ServingCert::from_pem(&server.cert_pem, &other.key_pem),
                Err(HttpdError::Tls { .. })
            ),
            "a key that is not the certificate's"
        );
        // A failed replace keeps the pair; a good one is seen through every clone.
        let before = cert.get().unwrap();
        assert!(cert.replace(&other.cert_pem, "junk").is_err());
        assert!(Arc::ptr_eq(&before, &cert.get().unwrap()));
        ok.cert.replace(&other.cert_pem, &other.key_pem).unwrap();
        assert_eq!(cert.get().unwrap().cert, before_chain(&other.cert_pem));
        assert!(!ServingCert::pending().is_ready());
        assert!(cert.is_ready());
    }

    fn before_chain(pem: &str) -> Vec<CertificateDer<'static>> {
        parse_certs(pem, "t").unwrap()
    }

    #[test]
    fn debug_never_prints_the_key() {
        let ca = Ca::generate("test-ca").unwrap();
        let server = ca.issue_server("localhost", &["localhost"]).unwrap();
        let setup = TlsSetup {
            cert: ServingCert::from_pem(&server.cert_pem, &server.key_pem).unwrap(),
            client_auth: ClientAuth::None,
        };
        let shown = format!("{setup:?}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
        assert!(shown.contains("ready"), "{shown}");
    }
}
