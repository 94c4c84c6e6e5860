//! Kubeconfig and in-cluster configuration: where the API server is and who we are to it.
//!
//! Owns turning a kubeconfig (YAML) or the in-cluster service-account files into a
//! [`ClientConfig`], and that into a TLS client configuration. Parsing is pure; reading files
//! goes through a reader passed in, except in the thin wrappers [`load`] and [`discover`]. It
//! does not open connections (see `kube::client`).
//!
//! - `file`: the kubeconfig schema and resolving a context ([`Kubeconfig`]);
//! - `in_cluster`: the service account files ([`in_cluster`]);
//! - `tls`: [`tls_config`] (rustls) and [`ureq_tls_config`];
//! - `pem`: checking certificates and keys; `error`: [`KubeconfigError`].

mod error;
mod file;
mod in_cluster;
mod pem;
mod tls;

use std::path::{Path, PathBuf};

pub use error::{KubeconfigError, Origin, Problem, Scope};
pub use file::{Kubeconfig, ReadFile};
pub use in_cluster::{in_cluster, SERVICE_ACCOUNT_DIR};
pub use tls::{tls_config, ureq_tls_config};

/// Where and how to reach the API server: the result of resolving a kubeconfig context or the
/// in-cluster configuration. All referenced files have been read already, except a token file,
/// which is re-read on use because it rotates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// `https://host:port`, without a trailing slash. It may carry a path prefix
    /// (`https://host/k8s/clusters/c-1`), and may be `http://` to a loopback address only
    /// (`kubectl proxy`, test servers).
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

/// Loads the kubeconfig at `path` and resolves `context` (else its `current-context`). Relative
/// paths in it are resolved against its directory; errors name the file.
pub fn load(path: &Path, context: Option<&str>) -> Result<ClientConfig, KubeconfigError> {
    // Absolute, so that a token file path stays valid whatever the working directory later is.
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    load_with(&path, context, &|p| std::fs::read(p))
}

/// [`load`], reading every file (the kubeconfig included) with `read`.
pub fn load_with(
    path: &Path,
    context: Option<&str>,
    read: ReadFile<'_>,
) -> Result<ClientConfig, KubeconfigError> {
    let bytes = read(path).map_err(|error| KubeconfigError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    let in_file = |error| KubeconfigError::InFile {
        file: path.to_path_buf(),
        error: Box::new(error),
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| in_file(KubeconfigError::Syntax("not valid UTF-8".to_string())))?;
    let kubeconfig = Kubeconfig::from_yaml(text).map_err(in_file)?;
    let base_dir = path.parent().unwrap_or(Path::new(""));
    kubeconfig.resolve(context, base_dir, read).map_err(in_file)
}

/// Where the daemon's API server configuration comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Kubeconfig(PathBuf),
    InCluster,
}

/// The daemon's lookup order: the `--kubeconfig` flag, else the first existing file listed in
/// `KUBECONFIG` (colon-separated), else the in-cluster configuration.
///
/// kubectl merges every file of `KUBECONFIG`; we take the first that exists, which is the same
/// whenever that file holds the whole configuration (the usual case). `KUBECONFIG` listing only
/// missing files is an error rather than a silent fall back to in-cluster. Like the kubelet, the
/// daemon does not look at `~/.kube/config`.
pub fn choose_source(
    kubeconfig_flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Source, KubeconfigError> {
    if let Some(path) = kubeconfig_flag {
        return Ok(Source::Kubeconfig(path.to_path_buf()));
    }
    match env("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(value) => std::env::split_paths(&value)
            .filter(|p| !p.as_os_str().is_empty())
            .find(|p| exists(p))
            .map(Source::Kubeconfig)
            .ok_or(KubeconfigError::NoKubeconfigInEnv { value }),
        None => {
            let set = |var| env(var).is_some_and(|v| !v.is_empty());
            if set("KUBERNETES_SERVICE_HOST") || set("KUBERNETES_SERVICE_PORT") {
                Ok(Source::InCluster)
            } else {
                Err(KubeconfigError::NotInCluster)
            }
        }
    }
}

/// The daemon's [`ClientConfig`], from the source [`choose_source`] picks in the real
/// environment and file system. `context` needs a kubeconfig.
pub fn discover(
    kubeconfig_flag: Option<&Path>,
    context: Option<&str>,
) -> Result<ClientConfig, KubeconfigError> {
    let env = |var: &str| std::env::var(var).ok();
    match choose_source(kubeconfig_flag, &env, &|p| p.is_file())? {
        Source::Kubeconfig(path) => {
            log::info!("api server config from kubeconfig path={}", path.display());
            load(&path, context)
        }
        Source::InCluster => match context {
            Some(context) => Err(KubeconfigError::ContextWithoutKubeconfig {
                context: context.to_string(),
            }),
            None => {
                log::info!("api server config from the in-cluster service account");
                in_cluster(&env, &|p| std::fs::read(p))
            }
        },
    }
}

/// Fixtures and a fake file system for the tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::io;
    use std::path::{Path, PathBuf};

    /// The files of tests/fixtures/kubeconfig (test-only keys; see the README there).
    const FIXTURES: &[(&str, &[u8])] = &[
        (
            "data.kubeconfig",
            include_bytes!("../../tests/fixtures/kubeconfig/data.kubeconfig"),
        ),
        (
            "files.kubeconfig",
            include_bytes!("../../tests/fixtures/kubeconfig/files.kubeconfig"),
        ),
        (
            "exec.kubeconfig",
            include_bytes!("../../tests/fixtures/kubeconfig/exec.kubeconfig"),
        ),
        (
            "test-ca.crt",
            include_bytes!("../../tests/fixtures/kubeconfig/test-ca.crt"),
        ),
        (
            "test-other-ca.crt",
            include_bytes!("../../tests/fixtures/kubeconfig/test-other-ca.crt"),
        ),
        (
            "test-server.crt",
            include_bytes!("../../tests/fixtures/kubeconfig/test-server.crt"),
        ),
        (
            "test-server.key",
            include_bytes!("../../tests/fixtures/kubeconfig/test-server.key"),
        ),
        (
            "test-client-rsa.crt",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-rsa.crt"),
        ),
        (
            "test-client-rsa-pkcs1.key",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-rsa-pkcs1.key"),
        ),
        (
            "test-client-rsa-pkcs8.key",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-rsa-pkcs8.key"),
        ),
        (
            "test-client-ec.crt",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-ec.crt"),
        ),
        (
            "test-client-ec-sec1.key",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-ec-sec1.key"),
        ),
        (
            "test-client-ec-pkcs8.key",
            include_bytes!("../../tests/fixtures/kubeconfig/test-client-ec-pkcs8.key"),
        ),
        (
            "test-token",
            include_bytes!("../../tests/fixtures/kubeconfig/test-token"),
        ),
    ];

    pub(crate) fn fixture(name: &str) -> &'static [u8] {
        match FIXTURES.iter().find(|(n, _)| *n == name) {
            Some((_, bytes)) => bytes,
            None => panic!("no fixture {name}"),
        }
    }

    pub(crate) fn fixture_text(name: &str) -> &'static str {
        std::str::from_utf8(fixture(name)).unwrap()
    }

    pub(crate) fn base64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    /// An in-memory file system that records what was read; a missing file is `NotFound`.
    #[derive(Default)]
    pub(crate) struct FakeFs {
        files: HashMap<PathBuf, Vec<u8>>,
        pub(crate) reads: RefCell<Vec<PathBuf>>,
    }

    impl FakeFs {
        /// Every fixture, as if it were in `dir`.
        pub(crate) fn with_fixtures_in(dir: &str) -> FakeFs {
            let mut fs = FakeFs::default();
            for (name, bytes) in FIXTURES {
                fs.add(&format!("{dir}/{name}"), bytes);
            }
            fs
        }

        pub(crate) fn add(&mut self, path: &str, bytes: &[u8]) {
            self.files.insert(PathBuf::from(path), bytes.to_vec());
        }

        pub(crate) fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.reads.borrow_mut().push(path.to_path_buf());
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{fixture, FakeFs};
    use super::*;

    #[test]
    fn load_names_the_file_and_resolves_relative_to_it() {
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        let cfg = load_with(Path::new("/etc/vk/files.kubeconfig"), None, &|p| fs.read(p)).unwrap();
        assert_eq!(cfg.ca_pem.as_deref(), Some(fixture("test-ca.crt")));

        let err = load_with(Path::new("/etc/vk/data.kubeconfig"), Some("x"), &|p| {
            fs.read(p)
        });
        assert_eq!(
            err.unwrap_err().to_string(),
            "kubeconfig /etc/vk/data.kubeconfig: context \"x\" not found (contexts: rsa-pkcs1, \
             rsa-pkcs8, ec-sec1, ec-pkcs8, insecure-token)"
        );
    }

    #[test]
    fn exec_plugin_is_refused_naming_file_and_user() {
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        let err = load_with(Path::new("/etc/vk/exec.kubeconfig"), None, &|p| fs.read(p));
        assert_eq!(
            err.unwrap_err().to_string(),
            "kubeconfig /etc/vk/exec.kubeconfig: user \"eks-user\": exec credential plugins are \
             not supported (command \"aws\"); use a client certificate or a token"
        );
    }

    #[test]
    fn load_errors_are_one_line_naming_the_file() {
        let mut fs = FakeFs::default();
        fs.add(
            "/etc/vk/bad.conf",
            b"clusters:\n  - name: a\n    cluster: [\n",
        );
        fs.add("/etc/vk/binary.conf", &[0xff, 0xfe, 0x00]);
        let load = |path: &str| {
            load_with(Path::new(path), None, &|p| fs.read(p))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            load("/etc/vk/missing.conf"),
            "failed to read kubeconfig /etc/vk/missing.conf: entity not found"
        );
        assert_eq!(
            load("/etc/vk/binary.conf"),
            "kubeconfig /etc/vk/binary.conf: invalid kubeconfig: not valid UTF-8"
        );
        assert_eq!(
            load("/etc/vk/bad.conf"),
            "kubeconfig /etc/vk/bad.conf: invalid kubeconfig: expected mapping start at line 3, \
             column 14"
        );
    }

    #[test]
    fn load_reads_a_real_file() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/kubeconfig");
        let cfg = load(&Path::new(dir).join("files.kubeconfig"), Some("token-file")).unwrap();
        assert_eq!(
            cfg.identity,
            Identity::TokenFile(Path::new(dir).join("test-token"))
        );
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn lookup_order() {
        let exists = |p: &Path| p == Path::new("/b") || p == Path::new("/c");
        let in_cluster = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
        ];
        let all = [("KUBECONFIG", "/a::/b:/c"), in_cluster[0], in_cluster[1]];
        let choose = |flag: Option<&str>, vars: &[(&str, &str)]| {
            choose_source(flag.map(Path::new), &env(vars), &exists).map_err(|e| e.to_string())
        };

        assert_eq!(
            choose(Some("/flag"), &all),
            Ok(Source::Kubeconfig("/flag".into())),
            "the flag wins, whether its file exists or not"
        );
        assert_eq!(
            choose(None, &all),
            Ok(Source::Kubeconfig("/b".into())),
            "then the first existing file of KUBECONFIG"
        );
        assert_eq!(choose(None, &in_cluster), Ok(Source::InCluster));
        assert_eq!(
            choose(None, &[("KUBECONFIG", ""), in_cluster[0], in_cluster[1]]),
            Ok(Source::InCluster),
            "an empty KUBECONFIG is unset"
        );
        assert_eq!(
            choose(
                None,
                &[("KUBECONFIG", "/x:/y"), in_cluster[0], in_cluster[1]]
            ),
            Err("KUBECONFIG=\"/x:/y\": none of the listed files exists".to_string())
        );
        assert_eq!(
            choose(None, &[]),
            Err(
                "no kubeconfig (neither --kubeconfig nor KUBECONFIG is set) and not running in \
                 a cluster (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set)"
                    .to_string()
            )
        );
    }
}
