//! Certificate rotation, as client-go's certificate manager does it for the kubelet: the client
//! pair (`--rotate-certificates`) and the kubelet API's serving pair
//! (`--rotate-server-certificates`).
//!
//! Owns when and how a pair is renewed: at a jittered 70–90 % of the current certificate's
//! lifetime ([`deadline`], the manager's `nextRotationDeadline`), or at once when there is no
//! current certificate or it does not name what the node asks for (`certSatisfiesTemplate`: a
//! serving certificate whose SANs are not the node's addresses), a new EC P-256 key asks for a
//! new certificate as the node itself (a CSR with `generateName: csr-`: the controller manager
//! approves client requests for nodes bound to `selfnodeclient`; serving requests wait for an
//! approver or a person), waited for up to 15 min; once it is issued the pair is stored in
//! `--cert-dir` (the `-current` link moves; the kubeconfig points at the link and does not
//! change) and put into use ([`Install`]: the API client makes its new connections with it, or
//! the kubelet API serves its new handshakes with it). A failed attempt is logged and tried
//! again after a back-off (30 s doubling to 5 min). The deadline is pure; the thread is
//! [`spawn`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::{csr, request_certificate, store, Ask, BootstrapError, Naming, MANAGER_WAIT};
use crate::clock::Clock;
use crate::kube::client::ApiClient;
use crate::kube::CsrApi;
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

/// Puts a newly issued pair (certificate chain PEM, key PEM) into use.
pub type Install = Box<dyn Fn(&[u8], &str) -> Result<(), String> + Send>;

/// What rotation needs to know.
pub struct Rotation {
    /// Who asks: the node's API client.
    pub api: Arc<dyn CsrApi>,
    pub pair: store::Pair,
    pub kind: csr::Kind,
    pub install: Install,
    pub cert_dir: PathBuf,
    pub node: String,
    pub clock: Arc<dyn Clock>,
}

impl Rotation {
    /// The client pair's rotation: the API client `client` (set up from `config`, whose server
    /// and CA stay) switches to each new pair.
    pub fn client(
        client: Arc<ApiClient>,
        config: ClientConfig,
        cert_dir: PathBuf,
        node: String,
        clock: Arc<dyn Clock>,
    ) -> Rotation {
        let user = client.clone();
        let install: Install = Box::new(move |cert, key| {
            let mut config = config.clone();
            config.identity = Identity::ClientCert {
                cert_pem: cert.to_vec(),
                key_pem: key.as_bytes().to_vec(),
            };
            let tls = kubeconfig::ureq_tls_config(&config).map_err(|e| e.to_string())?;
            user.set_tls(tls);
            Ok(())
        });
        Rotation {
            api: client,
            pair: store::Pair::Client,
            kind: csr::Kind::Client,
            install,
            cert_dir,
            node,
            clock,
        }
    }

    /// One renewal: a new key, its certificate, the store, the install; the new expiry.
    fn rotate(&self) -> Result<Timestamp, BootstrapError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
            BootstrapError::Key {
                message: e.to_string(),
            }
        })?;
        let never = || false;
        let ask = Ask {
            node: &self.node,
            kind: &self.kind,
            naming: Naming::Generated,
            wait: MANAGER_WAIT,
        };
        let cert = request_certificate(self.api.as_ref(), &key, &ask, self.clock.as_ref(), &never)?;
        let key_pem = key.serialize_pem();
        let current = store::update(
            &self.cert_dir,
            self.pair,
            &cert,
            key_pem.as_bytes(),
            self.clock.timestamp(),
        )?;
        (self.install)(&cert, &key_pem).map_err(|message| BootstrapError::Issued { message })?;
        let expiry = store::not_after(&cert).unwrap_or(Timestamp::MAX);
        let user = match self.pair {
            store::Pair::Client => "new connections to the API server use it",
            store::Pair::Server => "the kubelet API serves new connections with it",
        };
        log::info!(
            "{} certificate rotated: {} (expires {expiry}); {user}",
            self.kind.noun(),
            current.display()
        );
        Ok(expiry)
    }

    /// When the current pair is renewed: now if there is none or it is not what the node asks
    /// for (unless it was just issued so: then it is used, and logged, until its deadline).
    fn next_deadline(&self, just_issued: bool) -> Timestamp {
        let now = self.clock.timestamp();
        let pem = std::fs::read(store::current_path(&self.cert_dir, self.pair)).ok();
        let Some((der, from, to)) = pem.as_deref().and_then(store::leaf) else {
            return now;
        };
        if !csr::satisfies(&der, &self.node, &self.kind) {
            if !just_issued {
                return now;
            }
            log::warn!(
                "the issued {} certificate does not name what was asked for ({:?}): using it until it is renewed",
                self.kind.noun(),
                self.kind
            );
        }
        deadline(from, to, crate::random::fraction())
    }
}

/// Starts the rotation thread for `rotation`'s pair.
pub fn spawn(rotation: Rotation) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("{}-cert-rotation", rotation.kind.noun()))
        .spawn(move || {
            let mut just_issued = false;
            loop {
                // One deadline per pair: the jitter is drawn once, not at every wake-up.
                let at = rotation.next_deadline(just_issued);
                log::info!("{} certificate rotation at {at}", rotation.kind.noun());
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
                        "{} certificate rotation failed: {e}; trying again in {}s",
                        rotation.kind.noun(),
                        retry.as_secs()
                    );
                    rotation.clock.sleep(retry);
                    retry = (retry * 2).min(MAX_RETRY);
                }
                just_issued = true;
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
