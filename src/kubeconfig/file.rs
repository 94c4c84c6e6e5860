//! The kubeconfig file: its schema ([`Kubeconfig::from_yaml`]) and turning one context of it into
//! a [`ClientConfig`] ([`Kubeconfig::resolve`]). Pure: files the kubeconfig refers to are read
//! through the reader passed in, and nothing here knows the kubeconfig's own path (`load` adds it
//! to errors).
//!
//! What is supported, and where it departs from kubectl (client-go's `clientcmd`, which the
//! kubelet uses):
//! - clusters: `server`, `certificate-authority`, `certificate-authority-data`,
//!   `insecure-skip-tls-verify`. `proxy-url` and `tls-server-name` are refused: ureq cannot honour
//!   them, and ignoring them would connect somewhere else, or fail later with a confusing error.
//!   A cluster needs a certificate authority or `insecure-skip-tls-verify` (system roots are not
//!   used; kubectl would fall back to them). Both together are refused, as kubectl does.
//! - `server` must be `https://`; as in client-go, one without a scheme is taken as `https://`.
//!   Plain `http://` is accepted only to a loopback address (`kubectl proxy`, test servers):
//!   kubectl accepts it anywhere, but credentials would cross the network in clear.
//! - users: `client-certificate(-data)` + `client-key(-data)`, `token`, `tokenFile`, or nothing
//!   (anonymous). `exec`, `auth-provider`, `username`/`password` and impersonation (`as`...) are
//!   refused with a message that names them. A client certificate together with a token is
//!   refused (kubectl sends both; we have one identity). `tokenFile` wins over `token`, as in
//!   client-go, which re-reads the file; it is read once here to fail early.
//! - a `-data` field and its file form both set is refused. client-go's messages say "-data will
//!   override", but its `ConfirmUsable` reports them as errors, so kubectl and the kubelet refuse.
//! - relative paths are resolved against the kubeconfig's directory, as kubectl does.
//! - `preferences`, `extensions` and all unknown keys are ignored. Duplicate names are refused
//!   (client-go's conversion refuses them too).

use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::error::{KubeconfigError, Origin, Problem, Scope};
use super::{tls, ClientConfig, Identity};

/// A parsed kubeconfig. Only [`from_yaml`](Self::from_yaml) makes one; use
/// [`resolve`](Self::resolve) to get a [`ClientConfig`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    #[serde(default, deserialize_with = "null_as_default")]
    clusters: Vec<Named<Cluster>>,
    #[serde(default, deserialize_with = "null_as_default")]
    users: Vec<Named<User>>,
    #[serde(default, deserialize_with = "null_as_default")]
    contexts: Vec<Named<Context>>,
    #[serde(default)]
    current_context: Option<String>,
}

/// An entry of `clusters`, `users` or `contexts`: `{name: ..., cluster|user|context: {...}}`.
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Default + Deserialize<'de>"))]
struct Named<T> {
    name: String,
    #[serde(
        alias = "cluster",
        alias = "user",
        alias = "context",
        default,
        deserialize_with = "null_as_default"
    )]
    body: T,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    tls_server_name: Option<String>,
    proxy_url: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct User {
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<Secret>,
    token: Option<Secret>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
    #[serde(rename = "as")]
    impersonate: Option<String>,
    #[serde(rename = "as-uid")]
    impersonate_uid: Option<String>,
    #[serde(rename = "as-groups")]
    impersonate_groups: Option<Vec<String>>,
    exec: Option<Exec>,
    auth_provider: Option<AuthProvider>,
}

#[derive(Debug, Default, Deserialize)]
struct Exec {
    command: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthProvider {
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct Context {
    cluster: Option<String>,
    user: Option<String>,
    namespace: Option<String>,
}

/// A string that must not be printed: `Debug` shows only whether it is empty.
#[derive(Default, Deserialize)]
#[serde(transparent)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(\"\")"
        } else {
            "Secret(..)"
        })
    }
}

/// `key: ~` means the same as a missing key, as in Go.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A reader of the files a kubeconfig refers to.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> io::Result<Vec<u8>>;

impl Kubeconfig {
    /// Parses a kubeconfig. Errors carry the line and column; they never quote the input.
    pub fn from_yaml(text: &str) -> Result<Kubeconfig, KubeconfigError> {
        let config: Kubeconfig = serde_saphyr::from_str(text).map_err(|e| {
            // Without snippets: a snippet would quote the line, which may hold a key or token.
            KubeconfigError::Syntax(e.render_with_options(serde_saphyr::render_options! {
                snippets: serde_saphyr::SnippetMode::Off,
            }))
        })?;
        unique(config.clusters.iter().map(|c| &c.name), "cluster")?;
        unique(config.users.iter().map(|u| &u.name), "user")?;
        unique(config.contexts.iter().map(|c| &c.name), "context")?;
        Ok(config)
    }

    /// The `current-context`, if set.
    pub fn current_context(&self) -> Option<&str> {
        self.current_context.as_deref().filter(|c| !c.is_empty())
    }

    /// The [`ClientConfig`] of `context` (else of `current-context`). Relative paths are
    /// resolved against `base_dir`, the kubeconfig's directory, and read with `read`; all
    /// certificates and keys are checked, and the key against its certificate.
    pub fn resolve(
        &self,
        context: Option<&str>,
        base_dir: &Path,
        read: ReadFile<'_>,
    ) -> Result<ClientConfig, KubeconfigError> {
        let context_names = || self.contexts.iter().map(|c| c.name.clone()).collect();
        let Some(context_name) = context.filter(|c| !c.is_empty()).or(self.current_context())
        else {
            return Err(KubeconfigError::NoContext {
                available: context_names(),
            });
        };
        let Some(ctx) = self.contexts.iter().find(|c| c.name == context_name) else {
            return Err(KubeconfigError::ContextNotFound {
                name: context_name.to_string(),
                available: context_names(),
            });
        };
        let ctx = &ctx.body;

        let Some(cluster_name) = ctx.cluster.as_deref().filter(|c| !c.is_empty()) else {
            return Err(KubeconfigError::ContextWithoutCluster {
                context: context_name.to_string(),
            });
        };
        let cluster = find(&self.clusters, context_name, "cluster", cluster_name)?;
        // A context without a user authenticates as nobody.
        let no_user = User::default();
        let (user_name, user) = match ctx.user.as_deref().filter(|u| !u.is_empty()) {
            Some(name) => (name, find(&self.users, context_name, "user", name)?),
            None => ("", &no_user),
        };
        let namespace = match ctx.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) if !is_dns_label(ns) => {
                return Err(KubeconfigError::InvalidNamespace {
                    context: context_name.to_string(),
                    namespace: ns.to_string(),
                })
            }
            ns => ns.map(str::to_string),
        };

        let cluster_scope = Scope::Cluster(cluster_name.to_string());
        let (server, ca_pem, insecure_skip_tls_verify) = cluster
            .resolve(base_dir, read)
            .map_err(|p| p.at(&cluster_scope))?;
        let identity = user
            .resolve(base_dir, read)
            .map_err(|p| p.at(&Scope::User(user_name.to_string())))?;
        Ok(ClientConfig {
            server,
            ca_pem,
            insecure_skip_tls_verify,
            identity,
            namespace,
        })
    }
}

impl Cluster {
    fn resolve(
        &self,
        base_dir: &Path,
        read: ReadFile<'_>,
    ) -> Result<(String, Option<Vec<u8>>, bool), Problem> {
        if is_set(&self.proxy_url) {
            return Err(Problem::ProxyUrl);
        }
        if is_set(&self.tls_server_name) {
            return Err(Problem::TlsServerName);
        }
        let Some(server) = self.server.as_deref().filter(|s| !s.is_empty()) else {
            return Err(Problem::NoServer);
        };
        let (server, https) =
            normalize_server(server).map_err(|reason| Problem::InvalidServer {
                server: server.to_string(),
                reason,
            })?;
        let ca = data_or_file(
            self.certificate_authority_data.as_deref(),
            "certificate-authority-data",
            self.certificate_authority.as_deref(),
            "certificate-authority",
            base_dir,
            read,
        )?;
        if let Some((ca_pem, origin)) = &ca {
            tls::root_store(ca_pem, origin)?;
        }
        match (&ca, self.insecure_skip_tls_verify) {
            (Some(_), true) => return Err(Problem::InsecureWithCertificateAuthority),
            (None, false) if https => return Err(Problem::NoCertificateAuthority),
            _ => {}
        }
        Ok((
            server,
            ca.map(|(pem, _)| pem),
            self.insecure_skip_tls_verify,
        ))
    }
}

impl User {
    fn resolve(&self, base_dir: &Path, read: ReadFile<'_>) -> Result<Identity, Problem> {
        if let Some(exec) = &self.exec {
            return Err(Problem::Exec {
                command: exec.command.clone().unwrap_or_default(),
            });
        }
        if let Some(provider) = &self.auth_provider {
            return Err(Problem::AuthProvider {
                name: provider.name.clone().unwrap_or_default(),
            });
        }
        if is_set(&self.username) || self.password.as_ref().is_some_and(|p| !p.0.is_empty()) {
            return Err(Problem::BasicAuth);
        }
        if is_set(&self.impersonate)
            || is_set(&self.impersonate_uid)
            || self
                .impersonate_groups
                .as_ref()
                .is_some_and(|g| !g.is_empty())
        {
            return Err(Problem::Impersonation);
        }

        let cert = data_or_file(
            self.client_certificate_data.as_deref(),
            "client-certificate-data",
            self.client_certificate.as_deref(),
            "client-certificate",
            base_dir,
            read,
        )?;
        let key = data_or_file(
            self.client_key_data.as_ref().map(|s| s.0.as_str()),
            "client-key-data",
            self.client_key.as_deref(),
            "client-key",
            base_dir,
            read,
        )?;
        let token = self.token.as_ref().filter(|t| !t.0.is_empty());
        let token_file = self.token_file.as_deref().filter(|t| !t.is_empty());
        let has_token = token.is_some() || token_file.is_some();

        match (cert, key) {
            (Some(_), Some(_)) if has_token => Err(Problem::CertAndToken),
            (Some((cert_pem, cert_origin)), Some((key_pem, key_origin))) => {
                tls::client_auth_parts(&cert_pem, &key_pem, &cert_origin, &key_origin)?;
                Ok(Identity::ClientCert { cert_pem, key_pem })
            }
            (Some(_), None) => Err(Problem::CertWithoutKey),
            (None, Some(_)) => Err(Problem::KeyWithoutCert),
            (None, None) => match (token_file, token) {
                (Some(file), _) => {
                    let path = base_dir.join(file);
                    let origin = Origin::File("tokenFile", path.clone());
                    let content = read(&path).map_err(|error| Problem::ReadFile {
                        origin: origin.clone(),
                        error,
                    })?;
                    if content.trim_ascii().is_empty() {
                        return Err(Problem::EmptyToken { origin });
                    }
                    Ok(Identity::TokenFile(path))
                }
                (None, Some(token)) => Ok(Identity::Token(token.0.clone())),
                (None, None) => Ok(Identity::Anonymous),
            },
        }
    }
}

/// The bytes of a `*-data` field (base64) or of the file its sibling names, and where they came
/// from; `None` when neither is set.
fn data_or_file(
    data: Option<&str>,
    data_field: &'static str,
    file: Option<&str>,
    file_field: &'static str,
    base_dir: &Path,
    read: ReadFile<'_>,
) -> Result<Option<(Vec<u8>, Origin)>, Problem> {
    let data = data.filter(|d| !d.is_empty());
    let file = file.filter(|f| !f.is_empty());
    match (data, file) {
        (Some(_), Some(_)) => Err(Problem::DataAndFile {
            data: data_field,
            file: file_field,
        }),
        (Some(data), None) => {
            // Go's base64 decoder skips newlines; YAML folding can leave spaces.
            let compact: String = data.split_ascii_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(compact)
                .map_err(|_| Problem::InvalidBase64 { field: data_field })?;
            Ok(Some((bytes, Origin::Data(data_field))))
        }
        (None, Some(file)) => {
            // `join` keeps an absolute `file` as it is.
            let path = base_dir.join(file);
            let origin = Origin::File(file_field, path.clone());
            match read(&path) {
                Ok(bytes) => Ok(Some((bytes, origin))),
                Err(error) => Err(Problem::ReadFile { origin, error }),
            }
        }
        (None, None) => Ok(None),
    }
}

/// `server` without a trailing slash, and whether it is https. See the module docs for what is
/// accepted.
pub(crate) fn normalize_server(server: &str) -> Result<(String, bool), &'static str> {
    use ureq::http::uri::{Scheme, Uri};

    let uri: Uri = server.parse().map_err(|_| "not a valid URL")?;
    let Some(authority) = uri.authority() else {
        return Err("has no host");
    };
    if authority.as_str().contains('@') {
        return Err("must not contain credentials");
    }
    if uri.query().is_some() {
        return Err("must not have a query");
    }
    let https = match uri.scheme() {
        None => true,
        Some(s) if *s == Scheme::HTTPS => true,
        Some(s) if *s == Scheme::HTTP => false,
        Some(_) => return Err("the scheme must be https"),
    };
    if !https && !is_loopback(authority.host()) {
        return Err("plain http is only allowed to a loopback address; use https");
    }
    // An authority-only `server` has the path "" or "/".
    let path = uri.path().trim_end_matches('/');
    let scheme = if https { "https" } else { "http" };
    Ok((format!("{scheme}://{authority}{path}"), https))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Kubernetes' DNS-1123 label: what a namespace name must be.
fn is_dns_label(s: &str) -> bool {
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let bytes = s.as_bytes();
    matches!((bytes.first(), bytes.last()), (Some(&a), Some(&z)) if alnum(a) && alnum(z))
        && bytes.len() <= 63
        && bytes.iter().all(|&c| alnum(c) || c == b'-')
}

fn is_set(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|s| !s.is_empty())
}

fn find<'a, T>(
    list: &'a [Named<T>],
    context: &str,
    kind: &'static str,
    name: &str,
) -> Result<&'a T, KubeconfigError> {
    match list.iter().find(|entry| entry.name == name) {
        Some(entry) => Ok(&entry.body),
        None => Err(KubeconfigError::NotFound {
            context: context.to_string(),
            kind,
            name: name.to_string(),
            available: list.iter().map(|e| e.name.clone()).collect(),
        }),
    }
}

fn unique<'a>(
    names: impl Iterator<Item = &'a String>,
    kind: &'static str,
) -> Result<(), KubeconfigError> {
    let mut seen = HashSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(KubeconfigError::DuplicateName {
                kind,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::kubeconfig::testing::{base64, fixture, fixture_text, FakeFs};
    use crate::kubeconfig::tls_config;

    /// Resolves `yaml`, with every fixture in /etc/vk, the kubeconfig's directory.
    fn resolve(yaml: &str, context: Option<&str>) -> Result<ClientConfig, String> {
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        Kubeconfig::from_yaml(yaml)
            .and_then(|k| k.resolve(context, Path::new("/etc/vk"), &|p| fs.read(p)))
            .map_err(|e| e.to_string())
    }

    /// The golden kubeconfig of the table tests: one context, with this cluster and user.
    fn config(cluster: &str, user: &str) -> String {
        format!(
            "current-context: c\nclusters:\n- name: k\n  cluster: {cluster}\nusers:\n- name: \
             node\n  user: {user}\ncontexts:\n- name: c\n  context: {{cluster: k, user: node}}\n"
        )
    }

    const CLUSTER: &str = "{server: 'https://10.0.0.1:6443', insecure-skip-tls-verify: true}";
    const TOKEN: &str = "{token: t0ken}";

    fn cluster_err(cluster: &str) -> String {
        resolve(&config(cluster, TOKEN), None).unwrap_err()
    }

    fn user_err(user: &str) -> String {
        resolve(&config(CLUSTER, user), None).unwrap_err()
    }

    #[test]
    fn data_fields_and_current_context() {
        let fs = FakeFs::default();
        let kubeconfig = Kubeconfig::from_yaml(fixture_text("data.kubeconfig")).unwrap();
        assert_eq!(kubeconfig.current_context(), Some("ec-sec1"));
        let cfg = kubeconfig
            .resolve(None, Path::new("/etc/vk"), &|p| fs.read(p))
            .unwrap();
        assert_eq!(
            cfg,
            ClientConfig {
                server: "https://127.0.0.1:6443".to_string(),
                ca_pem: Some(fixture("test-ca.crt").to_vec()),
                insecure_skip_tls_verify: false,
                identity: Identity::ClientCert {
                    cert_pem: fixture("test-client-ec.crt").to_vec(),
                    key_pem: fixture("test-client-ec-sec1.key").to_vec(),
                },
                namespace: Some("vk-system".to_string()),
            }
        );
        assert!(fs.reads.borrow().is_empty(), "-data fields need no files");
    }

    #[test]
    fn each_key_form_by_data_builds_a_tls_config() {
        let kubeconfig = Kubeconfig::from_yaml(fixture_text("data.kubeconfig")).unwrap();
        for (context, cert, key) in [
            (
                "rsa-pkcs1",
                "test-client-rsa.crt",
                "test-client-rsa-pkcs1.key",
            ),
            (
                "rsa-pkcs8",
                "test-client-rsa.crt",
                "test-client-rsa-pkcs8.key",
            ),
            ("ec-sec1", "test-client-ec.crt", "test-client-ec-sec1.key"),
            ("ec-pkcs8", "test-client-ec.crt", "test-client-ec-pkcs8.key"),
        ] {
            let cfg = kubeconfig
                .resolve(Some(context), Path::new("/"), &|_| unreachable!())
                .unwrap();
            let expected = Identity::ClientCert {
                cert_pem: fixture(cert).to_vec(),
                key_pem: fixture(key).to_vec(),
            };
            assert_eq!(cfg.identity, expected, "context {context}");
            let tls = tls_config(&cfg).unwrap();
            assert!(
                tls.client_auth_cert_resolver.has_certs(),
                "context {context}"
            );
        }
    }

    #[test]
    fn explicit_context_wins_over_current_context() {
        let cfg = resolve(fixture_text("data.kubeconfig"), Some("insecure-token")).unwrap();
        assert_eq!(cfg.server, "https://10.0.0.1:6443");
        assert_eq!(cfg.ca_pem, None);
        assert!(cfg.insecure_skip_tls_verify);
        assert_eq!(
            cfg.identity,
            Identity::Token("test-only-token-not-a-secret".to_string())
        );
        assert_eq!(cfg.namespace, None);
    }

    #[test]
    fn relative_paths_are_resolved_against_the_kubeconfig_directory() {
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        let kubeconfig = Kubeconfig::from_yaml(fixture_text("files.kubeconfig")).unwrap();
        let cfg = kubeconfig
            .resolve(None, Path::new("/etc/vk"), &|p| fs.read(p))
            .unwrap();
        assert_eq!(cfg.server, "https://localhost:6443");
        assert_eq!(cfg.ca_pem.as_deref(), Some(fixture("test-ca.crt")));
        assert_eq!(
            cfg.identity,
            Identity::ClientCert {
                cert_pem: fixture("test-client-ec.crt").to_vec(),
                key_pem: fixture("test-client-ec-pkcs8.key").to_vec(),
            }
        );
        assert_eq!(
            *fs.reads.borrow(),
            [
                "test-ca.crt",
                "test-client-ec.crt",
                "test-client-ec-pkcs8.key"
            ]
            .map(|f| PathBuf::from("/etc/vk").join(f))
        );

        let rsa = kubeconfig
            .resolve(Some("rsa"), Path::new("/etc/vk"), &|p| fs.read(p))
            .unwrap();
        assert!(matches!(rsa.identity, Identity::ClientCert { .. }));
    }

    #[test]
    fn token_file_is_kept_as_a_path() {
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        let kubeconfig = Kubeconfig::from_yaml(fixture_text("files.kubeconfig")).unwrap();
        let cfg = kubeconfig
            .resolve(Some("token-file"), Path::new("/etc/vk"), &|p| fs.read(p))
            .unwrap();
        assert_eq!(
            cfg.identity,
            Identity::TokenFile("/etc/vk/test-token".into())
        );
    }

    #[test]
    fn token_file_wins_over_token_as_in_client_go() {
        let cfg = resolve(
            &config(CLUSTER, "{token: t0ken, tokenFile: test-token}"),
            None,
        );
        assert_eq!(
            cfg.unwrap().identity,
            Identity::TokenFile("/etc/vk/test-token".into())
        );
    }

    #[test]
    fn absolute_paths_are_kept() {
        let cluster = "{server: 'https://k:6443', certificate-authority: /etc/vk/test-ca.crt}";
        let yaml = config(cluster, "{client-certificate: /etc/vk/test-client-rsa.crt, client-key: /etc/vk/test-client-rsa-pkcs1.key}");
        let fs = FakeFs::with_fixtures_in("/etc/vk");
        let kubeconfig = Kubeconfig::from_yaml(&yaml).unwrap();
        let cfg = kubeconfig
            .resolve(None, Path::new("/elsewhere"), &|p| fs.read(p))
            .unwrap();
        assert_eq!(cfg.ca_pem.as_deref(), Some(fixture("test-ca.crt")));
    }

    #[test]
    fn user_without_credentials_and_context_without_user_are_anonymous() {
        let cfg = resolve(&config(CLUSTER, "{}"), None).unwrap();
        assert_eq!(cfg.identity, Identity::Anonymous);
        let yaml = "current-context: c\nclusters: [{name: k, cluster: {server: 'http://127.0.0.1:8001'}}]\ncontexts: [{name: c, context: {cluster: k}}]\n";
        assert_eq!(resolve(yaml, None).unwrap().identity, Identity::Anonymous);
    }

    #[test]
    fn context_errors_list_what_exists() {
        let data = fixture_text("data.kubeconfig");
        assert_eq!(
            resolve(data, Some("nope")).unwrap_err(),
            "context \"nope\" not found (contexts: rsa-pkcs1, rsa-pkcs8, ec-sec1, ec-pkcs8, \
             insecure-token)"
        );
        let no_current = data.replace("current-context: ec-sec1", "");
        assert_eq!(
            resolve(&no_current, None).unwrap_err(),
            "no context given and current-context is not set (contexts: rsa-pkcs1, rsa-pkcs8, \
             ec-sec1, ec-pkcs8, insecure-token)"
        );
        assert_eq!(
            resolve("", None).unwrap_err(),
            "no context given and current-context is not set (contexts: none)"
        );
        let missing_current = data.replace("current-context: ec-sec1", "current-context: gone");
        assert_eq!(
            resolve(&missing_current, None).unwrap_err(),
            "context \"gone\" not found (contexts: rsa-pkcs1, rsa-pkcs8, ec-sec1, ec-pkcs8, \
             insecure-token)"
        );
    }

    #[test]
    fn missing_cluster_or_user() {
        let yaml = config(CLUSTER, TOKEN);
        assert_eq!(
            resolve(&yaml.replace("{cluster: k,", "{cluster: x,"), None).unwrap_err(),
            "context \"c\": cluster \"x\" not found (clusters: k)"
        );
        assert_eq!(
            resolve(&yaml.replace("user: node}", "user: nobody}"), None).unwrap_err(),
            "context \"c\": user \"nobody\" not found (users: node)"
        );
        assert_eq!(
            resolve(&yaml.replace("{cluster: k, ", "{"), None).unwrap_err(),
            "context \"c\" names no cluster"
        );
    }

    #[test]
    fn namespace_must_be_a_dns_label() {
        let yaml =
            config(CLUSTER, TOKEN).replace("user: node}", "user: node, namespace: Kube_System}");
        assert_eq!(
            resolve(&yaml, None).unwrap_err(),
            "context \"c\": namespace \"Kube_System\" is not a valid namespace name (lowercase \
             letters, digits and '-', at most 63)"
        );
        assert!(is_dns_label("kube-system") && is_dns_label("a1"));
        assert!(!is_dns_label("-a") && !is_dns_label("a-") && !is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn bad_base64_is_named() {
        let err = user_err(&format!(
            "{{client-certificate-data: {}, client-key-data: '%%%not base64'}}",
            base64(fixture("test-client-ec.crt"))
        ));
        assert_eq!(err, "user \"node\": client-key-data is not valid base64");
        assert!(!err.contains("%%%"));
    }

    #[test]
    fn base64_may_be_wrapped_like_go_accepts() {
        let wrapped: String = base64(fixture("test-ca.crt"))
            .as_bytes()
            .chunks(64)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        let yaml = format!(
            "current-context: c\nclusters:\n- name: k\n  cluster:\n    server: https://k\n    \
             certificate-authority-data: |\n{}contexts: [{{name: c, context: {{cluster: k}}}}]\n",
            wrapped
                .lines()
                .map(|l| format!("      {l}\n"))
                .collect::<String>()
        );
        let cfg = resolve(&yaml, None).unwrap();
        assert_eq!(cfg.ca_pem.as_deref(), Some(fixture("test-ca.crt")));
    }

    #[test]
    fn a_certificate_given_as_key_is_refused() {
        let cert = base64(fixture("test-client-ec.crt"));
        let err = user_err(&format!(
            "{{client-certificate-data: {cert}, client-key-data: {cert}}}"
        ));
        assert_eq!(
            err,
            "user \"node\": client-key-data: no private key, only a certificate (expected \
             PKCS#1, PKCS#8 or SEC1 PEM)"
        );
    }

    #[test]
    fn a_key_file_without_a_key_names_the_file() {
        let err = user_err("{client-certificate: test-client-ec.crt, client-key: test-token}");
        assert_eq!(
            err,
            "user \"node\": client-key /etc/vk/test-token: no private key (expected PKCS#1, \
             PKCS#8 or SEC1 PEM)"
        );
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let err = user_err(
            "{client-certificate: test-client-rsa.crt, client-key: test-client-ec-sec1.key}",
        );
        assert_eq!(
            err,
            "user \"node\": the client key does not match the client certificate"
        );
    }

    #[test]
    fn a_ca_without_certificates_is_refused() {
        let err = cluster_err(&format!(
            "{{server: 'https://k', certificate-authority-data: {}}}",
            base64(b"not pem")
        ));
        assert_eq!(
            err,
            "cluster \"k\": certificate-authority-data: no certificate (expected a PEM \
             \"CERTIFICATE\" block)"
        );
    }

    #[test]
    fn missing_files_are_named() {
        assert_eq!(
            cluster_err("{server: 'https://k', certificate-authority: ca/missing.crt}"),
            "cluster \"k\": failed to read certificate-authority /etc/vk/ca/missing.crt: entity \
             not found"
        );
        assert_eq!(
            user_err("{tokenFile: /run/missing-token}"),
            "user \"node\": failed to read tokenFile /run/missing-token: entity not found"
        );
    }

    #[test]
    fn an_empty_token_file_is_refused() {
        let mut fs = FakeFs::with_fixtures_in("/etc/vk");
        fs.add("/etc/vk/empty-token", b" \n");
        let kubeconfig =
            Kubeconfig::from_yaml(&config(CLUSTER, "{tokenFile: empty-token}")).unwrap();
        let err = kubeconfig
            .resolve(None, Path::new("/etc/vk"), &|p| fs.read(p))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "user \"node\": tokenFile /etc/vk/empty-token: the file is empty"
        );
    }

    #[test]
    fn refused_user_settings_are_named() {
        let cases = [
            (
                "{exec: {command: kubelogin, apiVersion: client.authentication.k8s.io/v1}}",
                "exec credential plugins are not supported (command \"kubelogin\"); use a \
                 client certificate or a token",
            ),
            (
                "{auth-provider: {name: oidc, config: {id-token: x}}}",
                "auth-provider \"oidc\" is not supported; use a client certificate or a token",
            ),
            (
                "{username: admin, password: hunter2}",
                "username/password (basic auth) is not supported: Kubernetes removed it in \
                 v1.19; use a client certificate or a token",
            ),
            (
                "{token: t, as: system:admin}",
                "impersonation (as, as-uid, as-groups) is not supported",
            ),
            (
                "{client-certificate: test-client-ec.crt, client-key: test-client-ec-sec1.key, \
                 client-key-data: eA==}",
                "both client-key and client-key-data are set (kubectl refuses this too); keep \
                 one",
            ),
            (
                "{client-certificate: test-client-ec.crt}",
                "client-certificate is set but client-key is not",
            ),
            (
                "{client-key: test-client-ec-sec1.key}",
                "client-key is set but client-certificate is not",
            ),
            (
                "{client-certificate: test-client-ec.crt, client-key: test-client-ec-sec1.key, \
                 token: t}",
                "both a client certificate and a token are set; vk-cri authenticates with one, \
                 keep one",
            ),
        ];
        for (user, expected) in cases {
            let err = user_err(user);
            assert_eq!(err, format!("user \"node\": {expected}"), "user {user}");
            assert!(!err.contains("hunter2"));
        }
    }

    #[test]
    fn data_and_file_together_are_refused_as_kubectl_does() {
        let cert = base64(fixture("test-client-ec.crt"));
        assert_eq!(
            user_err(&format!(
                "{{client-certificate-data: {cert}, client-certificate: test-client-ec.crt, \
                 client-key: test-client-ec-sec1.key}}"
            )),
            "user \"node\": both client-certificate and client-certificate-data are set \
             (kubectl refuses this too); keep one"
        );
        assert_eq!(
            cluster_err(&format!(
                "{{server: 'https://k', certificate-authority: test-ca.crt, \
                 certificate-authority-data: {}}}",
                base64(fixture("test-ca.crt"))
            )),
            "cluster \"k\": both certificate-authority and certificate-authority-data are set \
             (kubectl refuses this too); keep one"
        );
    }

    #[test]
    fn refused_cluster_settings_are_named() {
        let ca = "certificate-authority: test-ca.crt";
        let cases = [
            (
                format!("{{server: 'https://k', {ca}, proxy-url: 'http://proxy:3128'}}"),
                "proxy-url is not supported; connect to the API server directly",
            ),
            (
                format!("{{server: 'https://10.0.0.1', {ca}, tls-server-name: kubernetes}}"),
                "tls-server-name is not supported; put a name the server certificate is valid \
                 for in server instead",
            ),
            (
                "{server: 'https://k'}".to_string(),
                "neither certificate-authority nor certificate-authority-data is set and system \
                 roots are not used; set one (or insecure-skip-tls-verify: true)",
            ),
            (
                format!("{{server: 'https://k', {ca}, insecure-skip-tls-verify: true}}"),
                "insecure-skip-tls-verify is set together with a certificate authority (kubectl \
                 refuses this too); keep one",
            ),
            (format!("{{{ca}}}"), "server is not set"),
            (
                format!("{{server: 'http://10.0.0.1:8080', {ca}}}"),
                "server \"http://10.0.0.1:8080\": plain http is only allowed to a loopback \
                 address; use https",
            ),
            (
                format!("{{server: 'ftp://k', {ca}}}"),
                "server \"ftp://k\": the scheme must be https",
            ),
            (
                format!("{{server: 'https://admin:pw@k', {ca}}}"),
                "server \"https://admin:pw@k\": must not contain credentials",
            ),
            (
                format!("{{server: 'https://k/?watch=1', {ca}}}"),
                "server \"https://k/?watch=1\": must not have a query",
            ),
            (
                format!("{{server: 'https://', {ca}}}"),
                "server \"https://\": not a valid URL",
            ),
        ];
        for (cluster, expected) in cases {
            assert_eq!(
                cluster_err(&cluster),
                format!("cluster \"k\": {expected}"),
                "cluster {cluster}"
            );
        }
    }

    #[test]
    fn server_forms() {
        for (server, expected) in [
            ("https://10.0.0.1:6443/", "https://10.0.0.1:6443"),
            ("https://[fd00::1]:6443", "https://[fd00::1]:6443"),
            ("10.0.0.1:6443", "https://10.0.0.1:6443"),
            (
                "https://rancher.example/k8s/clusters/c-1/",
                "https://rancher.example/k8s/clusters/c-1",
            ),
            ("http://127.0.0.1:8001", "http://127.0.0.1:8001"),
            ("http://localhost:8001", "http://localhost:8001"),
            ("http://[::1]:8001", "http://[::1]:8001"),
        ] {
            let cluster = format!("{{server: '{server}', insecure-skip-tls-verify: true}}");
            let cfg = resolve(&config(&cluster, TOKEN), None).unwrap();
            assert_eq!(cfg.server, expected, "server {server}");
        }
    }

    #[test]
    fn plain_http_to_loopback_needs_no_certificate_authority() {
        let cfg = resolve(&config("{server: 'http://127.0.0.1:8001'}", "{}"), None).unwrap();
        assert_eq!(cfg.server, "http://127.0.0.1:8001");
        assert_eq!(cfg.ca_pem, None);
    }

    #[test]
    fn yaml_errors_have_line_and_column_and_no_snippet() {
        let err = Kubeconfig::from_yaml("users:\n- name: node\n  user: {token: \"s3cret\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid kubeconfig: unclosed quote at line 3, column 17"
        );
        assert_eq!(err.lines().count(), 1);
        let err = Kubeconfig::from_yaml("clusters:\n- cluster: {server: https://k}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid kubeconfig: missing field `name` at line 2, column 3"
        );
        let err = Kubeconfig::from_yaml("clusters: {server: https://k}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid kubeconfig: ") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn nulls_and_unknown_keys_are_ignored() {
        let yaml = "apiVersion: v1\nkind: Config\nclusters: ~\nusers:\ncontexts: []\n\
                    current-context: ''\npreferences: {}\nfuture-field: {a: [1]}\n";
        let kubeconfig = Kubeconfig::from_yaml(yaml).unwrap();
        assert_eq!(kubeconfig.current_context(), None);
        let yaml = config(
            "{server: 'https://k', insecure-skip-tls-verify: true, future: 1}",
            "~",
        );
        assert_eq!(resolve(&yaml, None).unwrap().identity, Identity::Anonymous);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let yaml = config(CLUSTER, TOKEN) + "- name: c\n  context: {cluster: k}\n";
        assert_eq!(
            resolve(&yaml, None).unwrap_err(),
            "duplicate context name \"c\""
        );
    }

    #[test]
    fn debug_shows_no_secrets() {
        let yaml = fixture_text("data.kubeconfig");
        let debug = format!("{:?}", Kubeconfig::from_yaml(yaml).unwrap());
        assert!(!debug.contains("test-only-token"), "{debug}");
        let key = base64(fixture("test-client-ec-sec1.key"));
        assert!(!debug.contains(&key[..40]), "{debug}");
        assert!(debug.contains("Secret(..)"));
        let basic = Kubeconfig::from_yaml(&config(CLUSTER, "{password: hunter2}")).unwrap();
        assert!(!format!("{basic:?}").contains("hunter2"));
    }
}
