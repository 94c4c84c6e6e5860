//! TLS bootstrap: how a node with only a bootstrap token gets its client certificate, as the
//! kubelet's `LoadClientCert` does it.
//!
//! Owns the sequence: if `--kubeconfig` already holds an unexpired client certificate, nothing
//! happens; otherwise, with the `--bootstrap-kubeconfig` identity (a bootstrap token in group
//! `system:bootstrappers`), take the key kept from an earlier try or make an EC P-256 one
//! ([`store`]), ask for `system:node:NAME`'s certificate with a CertificateSigningRequest
//! ([`csr`]), wait up to an hour for it to be approved and issued (list, then watch, by name;
//! the log says what to approve), store the pair in `--cert-dir` and write `--kubeconfig`
//! pointing at it. The daemon then starts with that kubeconfig as without bootstrap. The wait
//! is [`request_certificate`] over [`CsrApi`] and the [`Clock`], tested with fakes; the files
//! are `store`'s.

pub mod csr;
pub mod rotate;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;

use crate::clock::Clock;
use crate::kube::client::{ApiClient, ClientOptions};
use crate::kube::request::{self, ListOptions, WatchOptions};
use crate::kube::{ApiError, CsrApi, WatchEvent};
use crate::kubeconfig::{self, KubeconfigError};
use csr::{CsrState, Refusal};

/// How long the kubelet waits for its request to be issued.
pub const WAIT: Duration = Duration::from_secs(3600);
/// How long one watch of the request lasts before it is listed again (and a stop is seen).
const WATCH_WINDOW: u32 = 30;
/// The pause after a failed list, as the kubelet's `WaitForCertificate` takes.
const LIST_RETRY: Duration = Duration::from_secs(1);

/// The files bootstrap reads and writes.
#[derive(Clone, Debug)]
pub struct Paths {
    /// `--kubeconfig`: read if valid, else written.
    pub kubeconfig: PathBuf,
    /// `--bootstrap-kubeconfig`.
    pub bootstrap_kubeconfig: PathBuf,
    /// `--cert-dir`.
    pub cert_dir: PathBuf,
}

/// Why bootstrap failed; the daemon does not start.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("unable to load bootstrap kubeconfig: {0}")]
    BootstrapKubeconfig(KubeconfigError),
    #[error("failed to {what} {}: {message}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("expected {} to be a symlink but it is a file", path.display())]
    NotALink { path: PathBuf },
    #[error("failed to generate a private key: {message}")]
    Key { message: String },
    #[error("unable to generate certificate request: {message}")]
    Request { message: String },
    #[error("cannot create certificate signing request: {0}")]
    Create(ApiError),
    #[error("retrieved csr {name:?} is not compatible: {message}")]
    Incompatible { name: String, message: String },
    #[error(transparent)]
    Refused(Refusal),
    #[error("invalid certificate data: {message}")]
    Issued { message: String },
    #[error("timed out after {}s waiting for certificate signing request {name} to be issued", waited.as_secs())]
    Timeout { name: String, waited: Duration },
    #[error("stopped while waiting for certificate signing request {name}")]
    Stopped { name: String },
}

impl BootstrapError {
    /// Whether the bootstrap kubeconfig was at fault (the daemon's kubeconfig exit code).
    pub fn is_kubeconfig(&self) -> bool {
        matches!(self, BootstrapError::BootstrapKubeconfig(_))
    }
}

/// Makes sure `paths.kubeconfig` holds a valid client certificate for node `node`, through TLS
/// bootstrap if it does not. `stopped` is asked between waits (a SIGTERM ends the wait).
pub fn load_client_cert(
    paths: &Paths,
    node: &str,
    clock: &dyn Clock,
    stopped: &dyn Fn() -> bool,
) -> Result<(), BootstrapError> {
    if store::still_valid(&paths.kubeconfig, clock.timestamp()) {
        log::info!(
            "kubeconfig {} exists and is valid, skipping bootstrap",
            paths.kubeconfig.display()
        );
        return Ok(());
    }
    let bootstrap = kubeconfig::load(&paths.bootstrap_kubeconfig, None)
        .map_err(BootstrapError::BootstrapKubeconfig)?;
    let tls =
        kubeconfig::ureq_tls_config(&bootstrap).map_err(BootstrapError::BootstrapKubeconfig)?;
    log::info!(
        "bootstrapping: requesting a client certificate for node {node} from {} with {}",
        bootstrap.server,
        paths.bootstrap_kubeconfig.display()
    );
    let api = ApiClient::new(
        &bootstrap.server,
        tls,
        &bootstrap.identity,
        ClientOptions::new(node),
    );
    let key = match store::current_key(&paths.cert_dir) {
        Some(key) => key,
        None => store::load_or_generate_key(&paths.cert_dir)?,
    };
    let ask = Ask {
        node,
        kind: &csr::Kind::Client,
        naming: Naming::Digest,
        wait: WAIT,
    };
    let cert = request_certificate(&api, &key, &ask, clock, stopped)?;
    let current = store::update(
        &paths.cert_dir,
        store::Pair::Client,
        &cert,
        key.serialize_pem().as_bytes(),
        clock.timestamp(),
    )?;
    store::remove_tmp_key(&paths.cert_dir);
    store::write_kubeconfig(&paths.kubeconfig, &bootstrap, &current)?;
    log::info!(
        "bootstrap done: client certificate {} (expires {}), kubeconfig {}",
        current.display(),
        store::not_after(&cert).map_or_else(|| "?".into(), |t| t.to_string()),
        paths.kubeconfig.display()
    );
    Ok(())
}

/// How a request is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `node-csr-<digest>`, as bootstrap names it (a restart finds its earlier request).
    Digest,
    /// `generateName: csr-`, as the certificate manager names a rotation's request.
    Generated,
}

/// One request: what the node asks for, how it is named, how long it is waited for.
#[derive(Clone, Debug)]
pub struct Ask<'a> {
    pub node: &'a str,
    pub kind: &'a csr::Kind,
    pub naming: Naming,
    /// [`WAIT`] at bootstrap; the certificate manager's [`MANAGER_WAIT`] when rotating.
    pub wait: Duration,
}

/// How long the certificate manager waits for a rotation's request.
pub const MANAGER_WAIT: Duration = Duration::from_secs(15 * 60);

/// Asks for the certificate `ask` names for `key` and waits for it (the kubelet's
/// `requestNodeCertificate` + `WaitForCertificate`); the issued PEM.
pub fn request_certificate(
    api: &dyn CsrApi,
    key: &rcgen::KeyPair,
    ask: &Ask<'_>,
    clock: &dyn Clock,
    stopped: &dyn Fn() -> bool,
) -> Result<Vec<u8>, BootstrapError> {
    use rcgen::PublicKeyData as _;
    let pem = csr::request_pem(key, ask.node, ask.kind).map_err(|e| BootstrapError::Request {
        message: e.to_string(),
    })?;
    let name = csr::request_name(
        &key.subject_public_key_info(),
        &csr::node_user(ask.node),
        &[csr::NODES_GROUP],
        ask.kind.usages(),
    );
    let mut object = csr::request_object(&name, &pem, ask.kind);
    if ask.naming == Naming::Generated {
        object.metadata.name = None;
        object.metadata.generate_name = Some("csr-".into());
    }
    let (name, uid) = match api.create_csr(&object) {
        Ok(created) => (created.metadata.name.clone().unwrap_or(name), uid(&created)),
        Err(ApiError::AlreadyExists { .. }) => {
            // The name digests the key, subject and usages: an earlier run's request.
            log::info!("certificate signing request {name} already exists, reusing it");
            let found = first_by_name(api, &name).map_err(BootstrapError::Create)?;
            let found = found
                .ok_or_else(|| BootstrapError::Refused(Refusal::Deleted { name: name.clone() }))?;
            if found.spec.signer_name != ask.kind.signer() {
                return Err(BootstrapError::Incompatible {
                    name,
                    message: format!("signer {:?}", found.spec.signer_name),
                });
            }
            let uid = uid(&found);
            (name, uid)
        }
        Err(e) => return Err(BootstrapError::Create(e)),
    };
    let approver = match (ask.kind, ask.naming) {
        (csr::Kind::Serving { .. }, _) => {
            "the controller manager never approves kubelet-serving requests: an approver or a person must".to_string()
        }
        (csr::Kind::Client, Naming::Digest) => "or let the csrapprover approve it: bind system:bootstrappers to system:certificates.k8s.io:certificatesigningrequests:nodeclient".to_string(),
        (csr::Kind::Client, Naming::Generated) => "or let the csrapprover approve it: bind system:nodes to system:certificates.k8s.io:certificatesigningrequests:selfnodeclient".to_string(),
    };
    log::info!(
        "waiting for {} certificate signing request {name} to be approved and issued \
         (kubectl certificate approve {name}; {approver})",
        ask.kind.noun()
    );
    wait_for_certificate(api, &name, &uid, ask.wait, clock, stopped)
}

fn uid(csr: &CertificateSigningRequest) -> String {
    csr.metadata.uid.clone().unwrap_or_default()
}

fn first_by_name(
    api: &dyn CsrApi,
    name: &str,
) -> Result<Option<CertificateSigningRequest>, ApiError> {
    let page = api.list_csrs_page(&request::list_csr_by_name(name, &ListOptions::default()))?;
    Ok(page.items.into_iter().next())
}

/// What one look at the request says: the certificate, the end, or wait on.
fn settle(
    csr: &CertificateSigningRequest,
    name: &str,
    uid: &str,
    approved_seen: &mut bool,
) -> Option<Result<Vec<u8>, BootstrapError>> {
    match csr::state(csr, uid) {
        CsrState::Issued(cert) => {
            log::info!("certificate signing request {name} is issued");
            Some(Ok(cert))
        }
        CsrState::Refused(r) => Some(Err(BootstrapError::Refused(r))),
        CsrState::Approved => {
            if !*approved_seen {
                log::info!("certificate signing request {name} is approved, waiting to be issued");
                *approved_seen = true;
            }
            None
        }
        CsrState::Pending => None,
    }
}

/// List the request, then watch it from there, until it is issued or refused, [`WAIT`] passed,
/// or `stopped`.
fn wait_for_certificate(
    api: &dyn CsrApi,
    name: &str,
    uid: &str,
    wait: Duration,
    clock: &dyn Clock,
    stopped: &dyn Fn() -> bool,
) -> Result<Vec<u8>, BootstrapError> {
    let deadline = clock.monotonic() + wait;
    let mut approved_seen = false;
    loop {
        if stopped() {
            return Err(BootstrapError::Stopped { name: name.into() });
        }
        if clock.monotonic() >= deadline {
            return Err(BootstrapError::Timeout {
                name: name.into(),
                waited: wait,
            });
        }
        let page =
            match api.list_csrs_page(&request::list_csr_by_name(name, &ListOptions::default())) {
                Ok(p) => p,
                Err(e) => {
                    log::info!("error fetching certificate signing request {name}: {e}");
                    clock.sleep(LIST_RETRY);
                    continue;
                }
            };
        let Some(csr) = page.items.first() else {
            return Err(BootstrapError::Refused(Refusal::Deleted {
                name: name.into(),
            }));
        };
        if let Some(done) = settle(csr, name, uid, &mut approved_seen) {
            return done;
        }
        let opts = WatchOptions {
            resource_version: Some(page.resource_version.clone()),
            allow_bookmarks: false,
            timeout_seconds: Some(WATCH_WINDOW),
        };
        let events = match api.watch_csrs(&request::watch_csr_by_name(name, &opts)) {
            Ok(events) => events,
            Err(e) => {
                log::info!("cannot watch certificate signing request {name}: {e}");
                clock.sleep(LIST_RETRY);
                continue;
            }
        };
        for event in events {
            match event {
                Ok(WatchEvent::Added(csr) | WatchEvent::Modified(csr)) => {
                    if let Some(done) = settle(&csr, name, uid, &mut approved_seen) {
                        return done;
                    }
                }
                Ok(WatchEvent::Deleted(_)) => {
                    return Err(BootstrapError::Refused(Refusal::Deleted {
                        name: name.into(),
                    }))
                }
                // An ERROR event (410 Expired) or a broken stream: list again.
                Ok(WatchEvent::Error(_)) | Err(_) => break,
                Ok(WatchEvent::Bookmark { .. } | WatchEvent::Undecodable(_)) => {}
            }
            if stopped() {
                return Err(BootstrapError::Stopped { name: name.into() });
            }
        }
    }
}

#[cfg(test)]
mod tests;
