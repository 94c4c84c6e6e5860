//! Client certificate rotation, as client-go's certificate manager does it for the kubelet
//! (`--rotate-certificates`).
//!
//! Owns when and how the node's client pair is renewed: at a jittered 70–90 % of the current
//! certificate's lifetime ([`deadline`], the manager's `nextRotationDeadline`), a new EC P-256
//! key asks for a new certificate as the node itself (a CSR with `generateName: csr-`, which the
//! controller manager approves for nodes bound to `selfnodeclient`); once it is issued the pair
//! is stored in `--cert-dir` (the `-current` link moves; the kubeconfig points at the link and
//! does not change) and the API client makes its new connections with it. A failed attempt is
//! logged and tried again after a back-off (30 s doubling to 5 min, as the manager's). The
//! deadline is pure; the thread is [`spawn`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{request_certificate, store, BootstrapError, Naming};
use crate::clock::Clock;
use crate::kube::client::ApiClient;
use crate::kubeconfig::{self, ClientConfig, Identity};

/// The first pause after a failed rotation; it doubles up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(30);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// When a certificate valid from `not_before` to `not_after` is renewed: at `0.7 + 0.2 ×
/// jitter` of its lifetime (`jitter` in [0, 1)).
pub fn deadline(not_before: Timestamp, not_after: Timestamp, jitter: f64) -> Timestamp {
    let total = not_after.as_second() - not_before.as_second();
    let fraction = 0.7 + 0.2 * jitter.clamp(0.0, 1.0);
    // Whole seconds are precise enough for a renewal.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let offset = (total as f64 * fraction).round() as i64;
    Timestamp::from_second(not_before.as_second() + offset).unwrap_or(not_after)
}

/// The validity of the first certificate in `pem`.
fn validity(pem: &[u8]) -> Option<(Timestamp, Timestamp)> {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((
        Timestamp::from_second(v.not_before.timestamp()).ok()?,
        Timestamp::from_second(v.not_after.timestamp()).ok()?,
    ))
}

/// What rotation needs to know.
pub struct Rotation {
    /// The client whose connections use the pair.
    pub client: Arc<ApiClient>,
    /// The kubeconfig's server and CA (its identity is replaced by each new pair).
    pub config: ClientConfig,
    pub cert_dir: PathBuf,
    pub node: String,
    pub clock: Arc<dyn Clock>,
}

impl Rotation {
    /// One renewal: a new key, its certificate, the store, the client.
    fn rotate(&self) -> Result<Timestamp, BootstrapError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            BootstrapError::Key {
                message: e.to_string(),
            }
        })?;
        let never = || false;
        let cert = request_certificate(
            self.client.as_ref(),
            &key,
            &self.node,
            Naming::Generated,
            self.clock.as_ref(),
            &never,
        )?;
        let key_pem = key.serialize_pem();
        let current = store::update(
            &self.cert_dir,
            &cert,
            key_pem.as_bytes(),
            self.clock.timestamp(),
        )?;
        let mut config = self.config.clone();
        config.identity = Identity::ClientCert {
            cert_pem: cert.clone(),
            key_pem: key_pem.into_bytes(),
        };
        let tls = kubeconfig::ureq_tls_config(&config).map_err(|e| BootstrapError::Issued {
            message: e.to_string(),
        })?;
        self.client.set_tls(tls);
        let expiry = store::not_after(&cert).unwrap_or(Timestamp::MAX);
        log::info!(
            "client certificate rotated: {} (expires {expiry}); new connections use it",
            current.display()
        );
        Ok(expiry)
    }

    /// The current pair's rotation deadline; `None` if it cannot be read.
    fn next_deadline(&self) -> Option<Timestamp> {
        let pem = std::fs::read(store::current_path(&self.cert_dir)).ok()?;
        let (from, to) = validity(&pem)?;
        Some(deadline(from, to, crate::random::fraction()))
    }
}

/// Starts the rotation thread for the pair in `rotation.cert_dir`.
pub fn spawn(rotation: Rotation) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("cert-rotation".into())
        .spawn(move || {
            loop {
                // One deadline per pair: the jitter is drawn once, not at every wake-up.
                let Some(at) = rotation.next_deadline() else {
                    log::warn!(
                        "cannot read the client certificate in {}: not rotating it",
                        rotation.cert_dir.display()
                    );
                    return;
                };
                log::info!("client certificate rotation at {at}");
                loop {
                    let now = rotation.clock.timestamp();
                    let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
                    if wait.is_zero() {
                        break;
                    }
                    rotation.clock.sleep(wait);
                }
                let mut retry = FIRST_RETRY;
                while let Err(e) = rotation.rotate() {
                    log::warn!(
                        "client certificate rotation failed: {e}; trying again in {}s",
                        retry.as_secs()
                    );
                    rotation.clock.sleep(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_falls_between_70_and_90_percent_of_the_lifetime() {
        let from: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let to: Timestamp = "2026-01-11T00:00:00Z".parse().unwrap();
        assert_eq!(deadline(from, to, 0.0).to_string(), "2026-01-08T00:00:00Z");
        assert_eq!(deadline(from, to, 0.5).to_string(), "2026-01-09T00:00:00Z");
        assert_eq!(deadline(from, to, 0.75).to_string(), "2026-01-09T12:00:00Z");
        assert_eq!(
            deadline(from, to, 7.0).to_string(),
            "2026-01-10T00:00:00Z",
            "clamped"
        );
    }
}
