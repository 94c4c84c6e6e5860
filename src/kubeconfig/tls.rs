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
