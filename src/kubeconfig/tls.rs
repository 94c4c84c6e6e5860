//! From a [`ClientConfig`] to a TLS client configuration: a rustls one ([`tls_config`]) and the
//! equivalent ureq one ([`ureq_tls_config`]). Pure; no connections are made here.
//!
//! The crypto provider is always ring, passed explicitly: nothing relies on a process-wide
//! default provider being installed.
//!
//! The two differ in one way, because ureq 3.5 builds its own rustls configuration: with
//! `insecure_skip_tls_verify`, ureq's verifier accepts handshake signatures without checking
//! them, while [`tls_config`]'s still checks them against the (unverified) server certificate.
//! Neither authenticates the server, which is what the setting asks for.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::error::{KubeconfigError, Origin, Problem};
use super::pem;
use super::{ClientConfig, Identity};

/// The rustls client configuration for talking to the API server described by `cfg`: roots from
/// `ca_pem` (none trusted when it is `None`), the client certificate when the identity is one,
/// and no server certificate verification when `insecure_skip_tls_verify` is set.
pub fn tls_config(cfg: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, KubeconfigError> {
    build(cfg).map_err(KubeconfigError::Tls)
}

/// The same configuration as [`tls_config`], for ureq 3.5's agent: ring as crypto provider,
/// `ca_pem` as the only roots, the client certificate, and ureq's own verification switch for
/// `insecure_skip_tls_verify` (see the module docs for how that verifier differs).
///
/// Everything is first checked by building the rustls configuration: ureq `expect`s the client
/// key to be usable with the certificate when it connects, and must not be handed one that is
/// not.
pub fn ureq_tls_config(cfg: &ClientConfig) -> Result<ureq::tls::TlsConfig, KubeconfigError> {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

    build(cfg).map_err(KubeconfigError::Tls)?;
    let mut builder = TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(provider());
    let roots = match &cfg.ca_pem {
        Some(ca_pem) => pem::certificates(ca_pem, &Origin::Data("ca_pem"))
            .map_err(KubeconfigError::Tls)?
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect(),
        // Never ureq's default (WebPki), which panics without the webpki-roots feature.
        None => Vec::new(),
    };
    builder = builder
        .root_certs(RootCerts::new_with_certs(&roots))
        .disable_verification(cfg.insecure_skip_tls_verify);
    if let Identity::ClientCert { cert_pem, key_pem } = &cfg.identity {
        let (chain, _) = client_auth_parts(cert_pem, key_pem, &cert_origin(), &key_origin())
            .map_err(KubeconfigError::Tls)?;
        let chain: Vec<_> = chain
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        // ureq's PEM reading is rustls-pki-types', as ours: it finds the key ours found. (Its
        // key kind type is not public, so the DER cannot be handed over directly.)
        let key = PrivateKey::from_pem(key_pem).map_err(|_| {
            KubeconfigError::Tls(Problem::NoPrivateKey {
                origin: key_origin(),
                found_certificate: false,
            })
        })?;
        builder = builder.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    Ok(builder.build())
}

fn build(cfg: &ClientConfig) -> Result<Arc<rustls::ClientConfig>, Problem> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Problem::Rustls)?;
    let builder = if cfg.insecure_skip_tls_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert {
                algorithms: provider.signature_verification_algorithms,
            }))
    } else {
        let roots = match &cfg.ca_pem {
            Some(ca_pem) => root_store(ca_pem, &Origin::Data("ca_pem"))?,
            None => RootCertStore::empty(),
        };
        builder.with_root_certificates(roots)
    };
    let config = match &cfg.identity {
        Identity::ClientCert { cert_pem, key_pem } => {
            let (chain, key) = client_auth_parts(cert_pem, key_pem, &cert_origin(), &key_origin())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(Problem::ClientCertUnusable)?
        }
        Identity::Anonymous | Identity::Token(_) | Identity::TokenFile(_) => {
            builder.with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// Origins for messages about a [`ClientConfig`] given directly (not through a kubeconfig).
fn cert_origin() -> Origin {
    Origin::Data("cert_pem")
}

fn key_origin() -> Origin {
    Origin::Data("key_pem")
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The trust anchors of a CA bundle. Like Go's `x509.CertPool.AppendCertsFromPEM`, certificates
/// that do not parse are skipped, as long as one does.
pub(crate) fn root_store(ca_pem: &[u8], origin: &Origin) -> Result<RootCertStore, Problem> {
    let certs = pem::certificates(ca_pem, origin)?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Problem::NoUsableCertificate {
            origin: origin.clone(),
            ignored,
        });
    }
    Ok(roots)
}

/// The client certificate chain and key, checked to be usable together: ring can load the key,
/// and its public key is the certificate's.
pub(crate) fn client_auth_parts(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_origin: &Origin,
    key_origin: &Origin,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), Problem> {
    let chain = pem::certificates(cert_pem, cert_origin)?;
    let key = pem::private_key(key_pem, key_origin)?;
    match CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider()) {
        Ok(_) => Ok((chain, key)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(Problem::KeyMismatch),
        Err(e) => Err(Problem::ClientCertUnusable(e)),
    }
}

/// `insecure-skip-tls-verify`: any server certificate is accepted, but the handshake signatures
/// are still checked against it, so the peer at least holds the key of the certificate it sent.
#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::testing::fixture;
    use rustls::pki_types::pem::PemObject;
    use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
    use rustls::{ClientConnection, ServerConnection};

    fn client_config(ca: Option<&str>, insecure: bool, identity: Identity) -> ClientConfig {
        ClientConfig {
            server: "https://localhost:6443".to_string(),
            ca_pem: ca.map(|name| fixture(name).to_vec()),
            insecure_skip_tls_verify: insecure,
            identity,
            namespace: None,
        }
    }

    fn client_cert(cert: &str, key: &str) -> Identity {
        Identity::ClientCert {
            cert_pem: fixture(cert).to_vec(),
            key_pem: fixture(key).to_vec(),
        }
    }

    fn server_chain() -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from_pem_slice(fixture("test-server.crt")).unwrap()]
    }

    fn server_key() -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(fixture("test-server.key")).unwrap()
    }

    /// A server with the test server certificate that asks for a client certificate signed by
    /// the test CA (and accepts none).
    fn server_config(
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ServerConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(fixture("test-ca.crt")).unwrap())
            .unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_chain(), server_key())
            .unwrap();
        Arc::new(config)
    }

    /// Runs a TLS handshake in memory. Returns the server side, or the client's error.
    fn handshake(
        client: Arc<rustls::ClientConfig>,
        server: Arc<rustls::ServerConfig>,
    ) -> Result<ServerConnection, rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut client = ClientConnection::new(client, name).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        for _ in 0..20 {
            let mut to_server = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut to_server).unwrap();
            }
            let mut rd = &to_server[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
                // A server-side error shows up on the client as the alert the server sends.
                if server.process_new_packets().is_err() {
                    break;
                }
            }
            let mut to_client = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut to_client).unwrap();
            }
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(server);
            }
        }
        panic!("handshake did not finish");
    }

    const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

    #[test]
    fn builds_a_config_for_each_key_type() {
        for (cert, key) in [
            ("test-client-rsa.crt", "test-client-rsa-pkcs1.key"),
            ("test-client-rsa.crt", "test-client-rsa-pkcs8.key"),
            ("test-client-ec.crt", "test-client-ec-sec1.key"),
            ("test-client-ec.crt", "test-client-ec-pkcs8.key"),
        ] {
            let cfg = client_config(Some("test-ca.crt"), false, client_cert(cert, key));
            let tls = tls_config(&cfg).unwrap();
            assert!(tls.client_auth_cert_resolver.has_certs(), "{key}");
            let ureq = ureq_tls_config(&cfg).unwrap();
            let client = ureq.client_cert().unwrap();
            assert_eq!(
                client.certs()[0].der(),
                CertificateDer::from_pem_slice(fixture(cert))
                    .unwrap()
                    .as_ref(),
                "{key}"
            );
            assert_eq!(
                client.private_key().der(),
                PrivateKeyDer::from_pem_slice(fixture(key))
                    .unwrap()
                    .secret_der(),
                "{key}"
            );
        }
    }

    #[test]
    fn handshakes_with_the_server_and_presents_the_client_certificate() {
        for (cert, key) in [
            ("test-client-rsa.crt", "test-client-rsa-pkcs1.key"),
            ("test-client-ec.crt", "test-client-ec-pkcs8.key"),
        ] {
            for versions in [TLS13, TLS12] {
                let cfg = client_config(Some("test-ca.crt"), false, client_cert(cert, key));
                let server = handshake(tls_config(&cfg).unwrap(), server_config(versions)).unwrap();
                let presented = server.peer_certificates().unwrap();
                assert_eq!(
                    presented[0],
                    CertificateDer::from_pem_slice(fixture(cert)).unwrap()
                );
            }
        }
    }

    #[test]
    fn a_server_signed_by_another_ca_is_refused() {
        let cfg = client_config(Some("test-other-ca.crt"), false, Identity::Anonymous);
        let err = handshake(tls_config(&cfg).unwrap(), server_config(TLS13)).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn without_a_ca_nothing_is_trusted() {
        let cfg = client_config(None, false, Identity::Token("t".to_string()));
        let err = handshake(tls_config(&cfg).unwrap(), server_config(TLS13)).unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{err:?}"
        );
        let ureq = ureq_tls_config(&cfg).unwrap();
        assert!(matches!(ureq.root_certs(), ureq::tls::RootCerts::Specific(c) if c.is_empty()));
    }

    #[test]
    fn insecure_accepts_any_server_certificate() {
        for versions in [TLS13, TLS12] {
            let cfg = client_config(None, true, Identity::Anonymous);
            assert!(handshake(tls_config(&cfg).unwrap(), server_config(versions)).is_ok());
        }
    }

    /// A server that sends the test server certificate but signs with another key.
    #[derive(Debug)]
    struct WrongKey(Arc<CertifiedKey>);

    impl ResolvesServerCert for WrongKey {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[test]
    fn insecure_still_checks_handshake_signatures() {
        let other_key = PrivateKeyDer::from_pem_slice(fixture("test-client-ec-sec1.key")).unwrap();
        let signer = provider().key_provider.load_private_key(other_key).unwrap();
        let resolver = Arc::new(WrongKey(Arc::new(CertifiedKey::new(
            server_chain(),
            signer,
        ))));
        for versions in [TLS13, TLS12] {
            let server = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(resolver.clone());
            let cfg = client_config(None, true, Identity::Anonymous);
            let err = handshake(tls_config(&cfg).unwrap(), Arc::new(server)).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn ureq_config_uses_ring_roots_and_verification_switch() {
        let cfg = client_config(Some("test-ca.crt"), false, Identity::Anonymous);
        let ureq = ureq_tls_config(&cfg).unwrap();
        assert!(ureq.unversioned_rustls_crypto_provider().is_some());
        assert!(!ureq.disable_verification());
        assert!(ureq.client_cert().is_none());
        match ureq.root_certs() {
            ureq::tls::RootCerts::Specific(certs) => {
                assert_eq!(certs.len(), 1);
                assert_eq!(
                    certs[0].der(),
                    CertificateDer::from_pem_slice(fixture("test-ca.crt"))
                        .unwrap()
                        .as_ref()
                );
            }
            _ => panic!("expected the CA as the only root"),
        }
        let insecure = ureq_tls_config(&client_config(None, true, Identity::Anonymous)).unwrap();
        assert!(insecure.disable_verification());
    }

    #[test]
    fn unusable_material_is_an_error_not_a_panic() {
        let mismatched = client_config(
            Some("test-ca.crt"),
            false,
            client_cert("test-client-rsa.crt", "test-client-ec-sec1.key"),
        );
        for err in [
            tls_config(&mismatched).map(|_| ()).unwrap_err(),
            ureq_tls_config(&mismatched).map(|_| ()).unwrap_err(),
        ] {
            assert_eq!(
                err.to_string(),
                "invalid TLS material: the client key does not match the client certificate"
            );
        }
        let bad_ca = ClientConfig {
            ca_pem: Some(fixture("test-client-ec-sec1.key").to_vec()),
            ..client_config(None, false, Identity::Anonymous)
        };
        assert_eq!(
            tls_config(&bad_ca).map(|_| ()).unwrap_err().to_string(),
            "invalid TLS material: ca_pem: no certificate (expected a PEM \"CERTIFICATE\" block)"
        );
    }
}
