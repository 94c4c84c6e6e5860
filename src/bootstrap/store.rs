//! The certificate directory and the kubeconfig that TLS bootstrap writes, as the kubelet's
//! certificate file store lays them out.
//!
//! Owns the files: `kubelet-client-<UTC time>.pem` (the certificate chain, then the key; mode
//! 0600) with the `kubelet-client-current.pem` symlink switched to it atomically (through
//! `kubelet-client-updated.pem` and a rename; a regular file where the link belongs is an
//! error, never overwritten); `kubelet-client.key.tmp`, the key kept until a request succeeds so
//! that a restart asks under the same name; the kubeconfig pointing at the current pair
//! (written as JSON, which every kubeconfig reader takes); and the kubelet's
//! `isClientConfigStillValid` (the kubeconfig loads, has a client certificate, and none of it
//! has expired).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use k8s_openapi::jiff::Timestamp;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::BootstrapError;
use crate::kubeconfig::{self, Identity};

/// Which pair: the files of each are named after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pair {
    /// `kubelet-client-*.pem`.
    Client,
    /// `kubelet-server-*.pem`, the serving pair (`--rotate-server-certificates`).
    Server,
}

impl Pair {
    fn prefix(self) -> &'static str {
        match self {
            Pair::Client => "kubelet-client",
            Pair::Server => "kubelet-server",
        }
    }
}

/// The key kept while a bootstrap request is pending.
pub const TMP_KEY: &str = "kubelet-client.key.tmp";

/// `kubelet-client-current.pem` (or `kubelet-server-`) in `dir`.
pub fn current_path(dir: &Path, pair: Pair) -> PathBuf {
    dir.join(format!("{}-current.pem", pair.prefix()))
}

fn io<'a>(
    path: &'a Path,
    what: &'static str,
) -> impl FnOnce(std::io::Error) -> BootstrapError + 'a {
    move |e| BootstrapError::Io {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes a 0600 file (replacing one there), creating its directory.
fn write_private(path: &Path, content: &[u8], what: &'static str) -> Result<(), BootstrapError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir, "create the directory"))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path, what))?;
    // An existing file keeps its mode on open: make it private too.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(io(path, what))?;
    f.write_all(content).map_err(io(path, what))
}

/// The key in `dir`'s `kubelet-client.key.tmp`, or a new EC P-256 key written there.
pub fn load_or_generate_key(dir: &Path) -> Result<rcgen::KeyPair, BootstrapError> {
    let path = dir.join(TMP_KEY);
    if let Ok(pem) = std::fs::read_to_string(&path) {
        if let Ok(key) = rcgen::KeyPair::from_pem(&pem) {
            return Ok(key);
        }
        log::warn!(
            "{}: not a private key; generating a new one",
            path.display()
        );
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| {
        BootstrapError::Key {
            message: e.to_string(),
        }
    })?;
    write_private(
        &path,
        key.serialize_pem().as_bytes(),
        "write the private key",
    )?;
    Ok(key)
}

/// The key of the current pair in `dir`, if there is one that parses (its certificate may have
/// expired: the kubelet asks again with the same key).
pub fn current_key(dir: &Path) -> Option<rcgen::KeyPair> {
    let pem = std::fs::read(current_path(dir, Pair::Client)).ok()?;
    let key = PrivateKeyDer::from_pem_slice(&pem).ok()?;
    rcgen::KeyPair::try_from(&key).ok()
}

/// Removes the pending key (the request succeeded).
pub fn remove_tmp_key(dir: &Path) {
    let path = dir.join(TMP_KEY);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::info!("failed to remove {}: {e}", path.display());
        }
    }
}

/// Stores the issued `cert_pem` with `key_pem` as `kubelet-client-<now>.pem` (or
/// `kubelet-server-`) and points `kubelet-client-current.pem` at it; the current path.
pub fn update(
    dir: &Path,
    which: Pair,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: Timestamp,
) -> Result<PathBuf, BootstrapError> {
    let certs = certificates(cert_pem).ok_or_else(|| BootstrapError::Issued {
        message: "status.certificate holds no PEM certificate".into(),
    })?;
    let mut content = String::new();
    for der in &certs {
        content.push_str(&pem_block("CERTIFICATE", der.as_ref()));
    }
    content.push_str(std::str::from_utf8(key_pem).unwrap_or_default().trim_end());
    content.push('\n');
    let stamp = now.strftime("%Y-%m-%d-%H-%M-%S").to_string();
    let pair = dir.join(format!("{}-{stamp}.pem", which.prefix()));
    write_private(&pair, content.as_bytes(), "write the certificate")?;
    let pair = std::fs::canonicalize(&pair).map_err(io(&pair, "resolve the certificate"))?;
    let current = current_path(dir, which);
    let updated = dir.join(format!("{}-updated.pem", which.prefix()));
    for link in [&current, &updated] {
        match std::fs::symlink_metadata(link) {
            Ok(m) if !m.file_type().is_symlink() => {
                return Err(BootstrapError::NotALink { path: link.clone() })
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_file(&updated);
    std::os::unix::fs::symlink(&pair, &updated).map_err(io(&updated, "link the certificate"))?;
    std::fs::rename(&updated, &current).map_err(io(&current, "switch the current certificate"))?;
    Ok(current)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes the kubeconfig at `path`: the bootstrap kubeconfig's server and CA, the pair at
/// `pem_path` as the client certificate and key (the kubelet's `writeKubeconfigFromBootstrapping`).
pub fn write_kubeconfig(
    path: &Path,
    bootstrap: &kubeconfig::ClientConfig,
    pem_path: &Path,
) -> Result<(), BootstrapError> {
    let mut cluster = serde_json::json!({ "server": bootstrap.server });
    if bootstrap.insecure_skip_tls_verify {
        cluster["insecure-skip-tls-verify"] = serde_json::json!(true);
    }
    if let Some(ca) = &bootstrap.ca_pem {
        cluster["certificate-authority-data"] =
            serde_json::json!(base64::engine::general_purpose::STANDARD.encode(ca));
    }
    let pem = pem_path.display().to_string();
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "default-cluster", "cluster": cluster }],
        "users": [{ "name": "default-auth", "user": {
            "client-certificate": pem, "client-key": pem } }],
        "contexts": [{ "name": "default-context", "context": {
            "cluster": "default-cluster", "user": "default-auth", "namespace": "default" } }],
        "current-context": "default-context",
    });
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    write_private(path, text.as_bytes(), "write the kubeconfig")
}

/// Whether the kubeconfig at `path` can be used as it is: it exists, loads, has a client
/// certificate, and no certificate of it has expired at `now`. A kubeconfig that does not load
/// is logged and answered `false` (bootstrap replaces it), as the kubelet does.
pub fn still_valid(path: &Path, now: Timestamp) -> bool {
    if !path.exists() {
        return false;
    }
    let config = match kubeconfig::load(path, None) {
        Ok(c) => c,
        Err(e) => {
            log::warn!("unable to read existing kubeconfig {}: {e}", path.display());
            return false;
        }
    };
    let Identity::ClientCert { cert_pem, .. } = &config.identity else {
        log::info!(
            "{} has no client certificate: bootstrapping",
            path.display()
        );
        return false;
    };
    match not_after(cert_pem) {
        Some(expiry) if expiry > now => true,
        Some(expiry) => {
            log::info!(
                "part of the existing bootstrap client certificate in {} is expired: {expiry}",
                path.display()
            );
            false
        }
        None => {
            log::warn!(
                "unable to read the client certificate of {}",
                path.display()
            );
            false
        }
    }
}

/// The certificates of a PEM bundle; `None` if it has none or one does not decode.
fn certificates(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

/// The first certificate in `pem` (the leaf) with its validity.
pub fn leaf(pem: &[u8]) -> Option<(Vec<u8>, Timestamp, Timestamp)> {
    let der = certificates(pem)?.into_iter().next()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = cert.validity();
    Some((
        der.to_vec(),
        Timestamp::from_second(v.not_before.timestamp()).ok()?,
        Timestamp::from_second(v.not_after.timestamp()).ok()?,
    ))
}

/// The earliest expiry of the certificates in `pem`.
pub fn not_after(pem: &[u8]) -> Option<Timestamp> {
    certificates(pem)?
        .iter()
        .map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
            Timestamp::from_second(cert.validity().not_after.timestamp()).ok()
        })
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vk-cri-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A certificate for `key` from a throwaway CA, valid for `days` from now (negative:
    /// expired).
    fn issue(key: &rcgen::KeyPair, days: i64) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n");
        let now = std::time::SystemTime::now();
        let at = |d: i64| {
            let secs = d * 86_400;
            if secs >= 0 {
                now + std::time::Duration::from_secs(secs as u64)
            } else {
                now - std::time::Duration::from_secs((-secs) as u64)
            }
        };
        params.not_before = at(days.min(0) - 2).into();
        params.not_after = at(days).into();
        params.self_signed(key).unwrap().pem()
    }

    #[test]
    fn the_pair_is_stored_private_and_current_switches_by_link() {
        let d = dir("pair");
        let key = load_or_generate_key(&d).unwrap();
        let again = load_or_generate_key(&d).unwrap();
        assert_eq!(
            key.serialize_pem(),
            again.serialize_pem(),
            "the pending key is reused"
        );
        let mode = std::fs::metadata(d.join(TMP_KEY))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let cert = issue(&key, 365);
        let t1: Timestamp = "2026-12-07T05:06:07Z".parse().unwrap();
        let current = update(
            &d,
            Pair::Client,
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
            t1,
        )
        .unwrap();
        assert_eq!(current, d.join("kubelet-client-current.pem"));
        let target = std::fs::read_link(&current).unwrap();
        assert_eq!(
            target.file_name().unwrap(),
            "kubelet-client-2026-12-07-05-06-07.pem"
        );
        assert!(target.is_absolute());
        let content = std::fs::read_to_string(&current).unwrap();
        assert!(
            content.starts_with("-----BEGIN CERTIFICATE-----\n"),
            "{content}"
        );
        assert!(content.contains("-----BEGIN PRIVATE KEY-----"), "{content}");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second pair: the link moves, the first file stays.
        let t2: Timestamp = "2026-12-08T00:00:00Z".parse().unwrap();
        update(
            &d,
            Pair::Client,
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
            t2,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_link(&current).unwrap().file_name().unwrap(),
            "kubelet-client-2026-12-08-00-00-00.pem"
        );
        assert!(d.join("kubelet-client-2026-12-07-05-06-07.pem").exists());
        assert!(!d.join("kubelet-client-updated.pem").exists());
        // The serving pair sits beside it under its own names.
        let server = update(
            &d,
            Pair::Server,
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
            t2,
        )
        .unwrap();
        assert_eq!(server, d.join("kubelet-server-current.pem"));
        assert_eq!(
            std::fs::read_link(&server).unwrap().file_name().unwrap(),
            "kubelet-server-2026-12-08-00-00-00.pem"
        );
        assert_eq!(
            std::fs::read_link(&current).unwrap().file_name().unwrap(),
            "kubelet-client-2026-12-08-00-00-00.pem"
        );
        // A regular file where the link belongs is never replaced.
        std::fs::remove_file(&current).unwrap();
        std::fs::write(&current, "mine").unwrap();
        let err = update(
            &d,
            Pair::Client,
            cert.as_bytes(),
            key.serialize_pem().as_bytes(),
            t2,
        )
        .unwrap_err();
        assert!(matches!(err, BootstrapError::NotALink { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&current).unwrap(), "mine");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_written_kubeconfig_loads_and_is_valid_until_its_certificate_expires() {
        let d = dir("kubeconfig");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let kc = d.join("kubelet.conf");
        let now = Timestamp::from_second(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        )
        .unwrap();
        assert!(!still_valid(&kc, now), "no file");
        let bootstrap = kubeconfig::ClientConfig {
            server: "https://127.0.0.1:6443".into(),
            ca_pem: Some(issue(&key, 10).into_bytes()),
            insecure_skip_tls_verify: false,
            identity: Identity::Token("abcdef.0123456789abcdef".into()),
            namespace: None,
        };
        for (days, valid) in [(30, true), (-1, false)] {
            let cert = issue(&key, days);
            let pem = update(
                &d,
                Pair::Client,
                cert.as_bytes(),
                key.serialize_pem().as_bytes(),
                now,
            )
            .unwrap();
            write_kubeconfig(&kc, &bootstrap, &pem).unwrap();
            let loaded = kubeconfig::load(&kc, None).unwrap();
            assert_eq!(loaded.server, "https://127.0.0.1:6443");
            assert_eq!(loaded.ca_pem, bootstrap.ca_pem);
            assert_eq!(loaded.namespace.as_deref(), Some("default"));
            assert!(
                matches!(&loaded.identity, Identity::ClientCert { cert_pem, .. } if cert_pem.starts_with(b"-----BEGIN CERTIFICATE")),
                "{:?}",
                loaded.identity
            );
            assert_eq!(still_valid(&kc, now), valid, "{days} days");
        }
        // A token kubeconfig is not a node's: bootstrap.
        std::fs::write(
            &kc,
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
             users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n\
             current-context: x\n",
        )
        .unwrap();
        assert!(!still_valid(&kc, now));
        std::fs::write(&kc, "not: [a kubeconfig").unwrap();
        assert!(!still_valid(&kc, now));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
