//! A faithful fake kube-apiserver (v1.28 semantics, as recorded in tests/fixtures/apiserver)
//! running in-process on 127.0.0.1 with TLS and client-certificate identities, on the crate's
//! own `httpd` server. Tests point the daemon at [`FakeApiServer::url`] with the node
//! credentials ([`FakeApiServer::node_cert`], CN=system:node:<node>, O=system:nodes) and set up
//! state through the Rust admin API below (no HTTP needed), or over HTTP with
//! [`FakeApiServer::admin_cert`] (CN=admin, O=system:masters).
//!
//! Owns: the fake's public API, identities, fault injection and the request log. Must not
//! depend on containerd or on the crate's `kube` client.

pub mod api;
pub mod authz;
pub mod defaults;
pub mod patch;
pub mod routes;
pub mod status;
pub mod store;
pub mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use vk_cri::certs::{Ca, CertKeyPem};
use vk_cri::httpd::{
    ClientAuth, Handler, Request, Responder, Response, Server, ServerConfig, ServingCert, TlsSetup,
};

pub use authz::Identity;
pub use store::Res;

use api::Reply;
use store::Store;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The node the default node credentials are for.
    pub node_name: String,
    /// Period of watch-cache bookmarks (the real cache: about 60 s).
    pub bookmark_interval: Duration,
    /// Watch events kept; older resourceVersions become "too old".
    pub history_limit: usize,
    /// The first resourceVersion; anything below is too old from the start.
    pub initial_rv: u64,
    /// Inject the `kube-api-access-xxxxx` projected volume into new pods (ServiceAccount
    /// admission does this on a real cluster).
    pub inject_service_account_volume: bool,
    /// How long a list with a future resourceVersion waits before its 504.
    pub too_large_rv_wait: Duration,
    /// Tokens are issued for at most this long (kube-apiserver's
    /// `--service-account-max-token-expiration`, which also shortens `spec.expirationSeconds`);
    /// tests set seconds to see tokens refreshed.
    pub max_token_expiration: Option<Duration>,
    pub server: ServerConfig,
}

impl Default for FakeConfig {
    fn default() -> FakeConfig {
        FakeConfig {
            node_name: "vk-node".to_string(),
            bookmark_interval: Duration::from_secs(60),
            history_limit: 1000,
            initial_rv: 1000,
            inject_service_account_volume: true,
            too_large_rv_wait: Duration::from_secs(3),
            max_token_expiration: None,
            server: ServerConfig::default(),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub user: String,
    pub groups: Vec<String>,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The status answered (200 for watches).
    pub status: u16,
    /// The verified client certificate the connection was made with (leaf, DER).
    pub client_cert: Option<Vec<u8>>,
    /// When it was answered.
    pub at: Instant,
}

#[derive(Debug, Default)]
pub struct Faults {
    fail_next: u32,
    fail_next_status: u16,
    fail_prefixes: Vec<(String, u16)>,
    delay: Duration,
    /// Requests wait unanswered while set (an API server that stopped answering).
    silent: bool,
    /// Every request is refused with kube-apiserver's 429 and this `Retry-After` (seconds).
    throttle: Option<u64>,
    pub watch_epoch: u64,
}

/// Decides SubjectAccessReviews: `(allowed, reason)` for a review's `spec`.
pub type SarPolicy = Arc<dyn Fn(&Value) -> (bool, String) + Send + Sync>;

pub struct Inner {
    pub store: Store,
    pub faults: Faults,
    log: Vec<LoggedRequest>,
    /// Bearer tokens the fake accepts as credentials.
    tokens: HashMap<String, Identity>,
    /// Tokens TokenReview reports as authenticated.
    pub token_reviews: HashMap<String, Identity>,
    pub sar_policy: SarPolicy,
    pub ca_pem: String,
}

pub struct Shared {
    inner: Mutex<Inner>,
    changed: Condvar,
    pub config: FakeConfig,
    addr: SocketAddr,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a change notification (or the timeout) with the lock released.
    pub fn wait<'a>(
        &self,
        guard: MutexGuard<'a, Inner>,
        timeout: Duration,
    ) -> MutexGuard<'a, Inner> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    pub fn notify(&self) {
        self.changed.notify_all();
    }

    pub fn config_addr(&self) -> String {
        self.addr.to_string()
    }
}

/// The fake API server. Stops when dropped.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    server: Server,
    ca: Ca,
    node: CertKeyPem,
    admin: CertKeyPem,
}

fn admin() -> Identity {
    Identity {
        user: "admin".to_string(),
        groups: vec![
            "system:masters".to_string(),
            "system:authenticated".to_string(),
        ],
    }
}

struct Api {
    shared: Arc<Shared>,
}

/// kube-apiserver's bootstrap token authenticator (`--enable-bootstrap-token-auth`): token
/// `ID.SECRET` is user `system:bootstrap:ID` when Secret `kube-system/bootstrap-token-ID` of
/// type `bootstrap.kubernetes.io/token` holds that secret, allows authentication and has not
/// expired; groups `system:bootstrappers`, then its `auth-extra-groups`, then
/// `system:authenticated`.
fn bootstrap_identity(store: &store::Store, token: &str) -> Option<Identity> {
    use base64::Engine as _;
    let (id, secret) = token.split_once('.')?;
    let object = store.get(
        Res::Secrets,
        "kube-system",
        &format!("bootstrap-token-{id}"),
    )?;
    if object["type"] != "bootstrap.kubernetes.io/token" {
        return None;
    }
    let data = |key: &str| -> Option<String> {
        let b = base64::engine::general_purpose::STANDARD
            .decode(object["data"][key].as_str()?)
            .ok()?;
        String::from_utf8(b).ok()
    };
    if data("token-secret")? != secret || data("usage-bootstrap-authentication")? != "true" {
        return None;
    }
    if let Some(exp) = data("expiration") {
        let exp: k8s_openapi::jiff::Timestamp = exp.parse().ok()?;
        if exp <= k8s_openapi::jiff::Timestamp::now() {
            return None;
        }
    }
    let mut groups = vec!["system:bootstrappers".to_string()];
    for g in data("auth-extra-groups").unwrap_or_default().split(',') {
        let g = g.trim();
        if !g.is_empty() {
            groups.push(g.to_string());
        }
    }
    groups.push("system:authenticated".to_string());
    Some(Identity {
        user: format!("system:bootstrap:{id}"),
        groups,
    })
}

fn identify(req: &Request, tokens: &HashMap<String, Identity>, store: &store::Store) -> Identity {
    if let Some(token) = req
        .header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
    {
        if let Some(id) = tokens.get(token.trim()) {
            return id.clone();
        }
        if let Some(id) = bootstrap_identity(store, token.trim()) {
            return id;
        }
    }
    match req.peer.subject() {
        (Some(cn), orgs) if req.peer.is_authenticated() => {
            let mut groups = orgs;
            groups.push("system:authenticated".to_string());
            Identity { user: cn, groups }
        }
        _ => Identity::anonymous(),
    }
}

impl Api {
    fn log(&self, req: &Request, who: &Identity, status: u16) {
        self.shared.lock().log.push(LoggedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.raw_query.clone(),
            user: who.user.clone(),
            groups: who.groups.clone(),
            content_type: req.header("content-type").map(str::to_string),
            user_agent: req.header("user-agent").map(str::to_string),
            status,
            client_cert: req.peer.chain_der().first().cloned(),
            at: Instant::now(),
        });
    }
}

impl Handler for Api {
    fn handle(&self, req: Request, resp: Responder<'_>) {
        while self.shared.lock().faults.silent && !resp.server_stopping() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let (who, delay, injected) = {
            let mut inner = self.shared.lock();
            let who = identify(&req, &inner.tokens, &inner.store);
            let f = &mut inner.faults;
            let injected = if f.fail_next > 0 {
                f.fail_next -= 1;
                Some(f.fail_next_status)
            } else {
                f.fail_prefixes
                    .iter()
                    .find(|(p, _)| req.path.starts_with(p.as_str()))
                    .map(|(_, code)| *code)
            };
            (who, f.delay, injected)
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let throttle = self.shared.lock().faults.throttle;
        if let Some(secs) = throttle {
            self.log(&req, &who, 429);
            // kube-apiserver's tooManyRequests (priority and fairness, max-in-flight): Go's
            // http.Error, plain text.
            let _ = resp.send(
                Response::new(429)
                    .body(
                        "text/plain; charset=utf-8",
                        "Too many requests, please try again later.\n",
                    )
                    .header("Retry-After", &secs.to_string())
                    .header("X-Content-Type-Options", "nosniff"),
            );
            return;
        }
        let reply = match injected {
            Some(code) => {
                let mut s = status::internal_error("fake apiserver: injected failure");
                s.code = Some(code);
                api::status_reply(&s)
            }
            None => api::handle(&self.shared, &who, &req),
        };
        self.log(&req, &who, reply.status());
        let _ = match reply {
            Reply::Json {
                status,
                body,
                headers,
            } => {
                let mut r = Response::new(status).body("application/json", body);
                for (k, v) in headers {
                    r = r.header(&k, &v);
                }
                resp.send(r.header("Cache-Control", "no-cache, private"))
            }
            Reply::Text { status, body } => resp.send(Response::text(status, &body)),
            Reply::Watch(plan) => {
                let headers = [
                    ("Content-Type".to_string(), "application/json".to_string()),
                    ("Cache-Control".to_string(), "no-cache, private".to_string()),
                ];
                match resp.start_chunked(200, &headers) {
                    Ok(w) => {
                        watch::stream(&self.shared, *plan, w);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
    }
}

/// A snapshot view for [`FakeApiServer::wait_for`] predicates.
pub struct View<'a> {
    store: &'a Store,
}

impl View<'_> {
    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<&Value> {
        self.store.get(res, ns, name)
    }

    pub fn list<'s>(&'s self, res: Res, ns: Option<&'s str>) -> Vec<&'s Value> {
        self.store.list(res, ns).collect()
    }

    pub fn resource_version(&self) -> u64 {
        self.store.rv
    }

    /// Every version of one object still in the watch history, oldest first.
    pub fn versions(&self, res: Res, ns: &str, name: &str) -> Vec<&Value> {
        self.store
            .history
            .iter()
            .filter(|c| c.res == res)
            .map(|c| &c.object)
            .filter(|o| o["metadata"]["namespace"] == ns && o["metadata"]["name"] == name)
            .collect()
    }
}

impl FakeApiServer {
    /// Starts with the defaults on a random port of 127.0.0.1.
    pub fn start() -> FakeApiServer {
        FakeApiServer::start_with(FakeConfig::default())
    }

    /// Starts with this configuration. Panics if it cannot (test support).
    pub fn start_with(config: FakeConfig) -> FakeApiServer {
        let ca = Ca::generate("fake-apiserver-ca").expect("generate ca");
        let serving = ca
            .issue_server("kube-apiserver", &["127.0.0.1", "localhost"])
            .expect("issue serving certificate");
        let node = ca
            .issue_client(
                &format!("system:node:{}", config.node_name),
                Some("system:nodes"),
            )
            .expect("issue node certificate");
        let admin_cert = ca
            .issue_client("admin", Some("system:masters"))
            .expect("issue admin certificate");
        let setup = TlsSetup {
            cert: ServingCert::from_pem(&serving.cert_pem, &serving.key_pem).expect("serving pair"),
            client_auth: ClientAuth::Optional {
                ca_pem: ca.cert_pem(),
            },
        };
        let localhost: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let mut server = Server::bind(localhost, setup)
            .expect("bind fake apiserver")
            .with_config(config.server.clone());
        let deny_all: SarPolicy = Arc::new(|_spec: &Value| (false, String::new()));
        let mut store = Store::new(config.initial_rv, config.history_limit);
        api::seed_kubernetes_service(&mut store);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                store,
                faults: Faults::default(),
                log: Vec::new(),
                tokens: HashMap::new(),
                token_reviews: HashMap::new(),
                sar_policy: deny_all,
                ca_pem: ca.cert_pem(),
            }),
            changed: Condvar::new(),
            config,
            addr: server.local_addr(),
        });
        server
            .serve(Arc::new(Api {
                shared: shared.clone(),
            }))
            .expect("serve fake apiserver");
        FakeApiServer {
            shared,
            server,
            ca,
            node,
            admin: admin_cert,
        }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.server.local_addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The CA that signed the serving and client certificates.
    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// CN=system:node:<node_name>, O=system:nodes.
    pub fn node_cert(&self) -> CertKeyPem {
        self.node.clone()
    }

    /// A kubeconfig (YAML) for this server as its node: the CA and the node's pair inline.
    pub fn node_kubeconfig(&self) -> String {
        self.kubeconfig_for(&self.url(), &self.node_cert())
    }

    /// A kubeconfig (YAML) for `server` (this server's URL, or a proxy in front of it) with
    /// the CA and `cert` inline.
    pub fn kubeconfig_for(&self, server: &str, cert: &CertKeyPem) -> String {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: node\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: node@fake\n  context:\n    cluster: fake\n    user: node\ncurrent-context: node@fake\n",
            server,
            b64(&self.ca_pem()),
            b64(&cert.cert_pem),
            b64(&cert.key_pem)
        )
    }

    /// CN=admin, O=system:masters.
    pub fn admin_cert(&self) -> CertKeyPem {
        self.admin.clone()
    }

    /// Any other client identity signed by the fake's CA.
    pub fn client_cert(&self, user: &str, group: Option<&str>) -> CertKeyPem {
        self.ca
            .issue_client(user, group)
            .expect("issue client certificate")
    }

    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    fn with_store<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.shared.lock());
        self.shared.notify();
        out
    }

    fn admin_create(&self, res: Res, ns: &str, obj: Value) -> Value {
        let config = self.shared.config.clone();
        self.with_store(|inner| api::create(inner, &config, &admin(), res, ns, obj))
            .unwrap_or_else(|s| panic!("fake apiserver: create {res:?} failed: {}", s.message))
    }

    /// Creates any object as admin (defaulting and admission as over HTTP).
    pub fn create(&self, res: Res, ns: &str, obj: Value) -> Value {
        self.admin_create(res, ns, obj)
    }

    /// Creates a pod as admin; the namespace comes from `metadata.namespace` ("default" if
    /// unset). Returns the stored pod (uid, resourceVersion, defaults).
    pub fn create_pod(&self, pod: Value) -> Value {
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        self.admin_create(Res::Pods, &ns, pod)
    }

    /// Creates a pod as admin; a refusal comes back as its Status (JSON).
    pub fn try_create_pod(&self, pod: Value) -> Result<Value, Value> {
        let ns = pod
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let config = self.shared.config.clone();
        self.with_store(|inner| api::create(inner, &config, &admin(), Res::Pods, &ns, pod))
            .map_err(|s| serde_json::to_value(&s).unwrap_or_default())
    }

    /// Deletes a pod as admin with this grace period (`None`: the pod's own). Returns the pod
    /// as the DELETE answered it, or `None` if it did not exist.
    pub fn delete_pod(&self, ns: &str, name: &str, grace: Option<i64>) -> Option<Value> {
        let reply = self.with_store(|inner| {
            api::delete(
                &mut inner.store,
                &admin(),
                Res::Pods,
                ns,
                name,
                grace,
                &json!({}),
            )
        });
        match reply {
            Ok(Reply::Json { body, .. }) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<Value> {
        self.shared.lock().store.get(res, ns, name).cloned()
    }

    pub fn get_pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.get(Res::Pods, ns, name)
    }

    pub fn get_node(&self, name: &str) -> Option<Value> {
        self.get(Res::Nodes, "", name)
    }

    pub fn list(&self, res: Res, ns: Option<&str>) -> Vec<Value> {
        self.shared.lock().store.list(res, ns).cloned().collect()
    }

    fn put(&self, res: Res, ns: &str, name: &str, body: Value) -> Value {
        let exists = self.get(res, ns, name).is_some();
        if !exists {
            return self.admin_create(res, ns, body);
        }
        self.with_store(|inner| {
            api::update(&mut inner.store, &admin(), res, ns, name, "", body, false)
        })
        .unwrap_or_else(|s| {
            panic!(
                "fake apiserver: update {res:?} {ns}/{name} failed: {}",
                s.message
            )
        })
    }

    /// Creates or replaces a ConfigMap with this data.
    pub fn put_configmap(&self, ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        self.put(
            Res::ConfigMaps,
            ns,
            name,
            json!({"metadata": {"name": name, "namespace": ns}, "data": data}),
        )
    }

    /// Creates or replaces an Opaque Secret with this data (plain text; stored base64).
    pub fn put_secret(&self, ns: &str, name: &str, data: &[(&str, &str)]) -> Value {
        use base64::Engine as _;
        let data: serde_json::Map<String, Value> = data
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    json!(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        self.put(
            Res::Secrets,
            ns,
            name,
            json!({"metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": data}),
        )
    }

    /// Creates a Service as admin (defaulted: type ClusterIP, a cluster IP allocated unless one
    /// is given or it is headless, TCP ports); `spec` is the Service's spec.
    pub fn create_service(&self, ns: &str, name: &str, spec: Value) -> Value {
        self.admin_create(
            Res::Services,
            ns,
            json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
        )
    }

    /// Deletes a Node as admin. Returns whether it existed.
    /// Deletes any object as admin (no grace period); false if it was not there.
    pub fn delete(&self, res: Res, ns: &str, name: &str) -> bool {
        self.with_store(|inner| {
            api::delete(&mut inner.store, &admin(), res, ns, name, None, &json!({}))
        })
        .is_ok()
    }

    pub fn delete_node(&self, name: &str) -> bool {
        self.with_store(|inner| {
            api::delete(
                &mut inner.store,
                &admin(),
                Res::Nodes,
                "",
                name,
                None,
                &json!({}),
            )
        })
        .is_ok()
    }

    /// Changes a stored object in place as a controller would (no admission), bumping its
    /// resourceVersion and notifying watches. Returns the new object, or `None` if missing.
    pub fn modify(
        &self,
        res: Res,
        ns: &str,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        self.with_store(|inner| {
            let mut obj = inner.store.get(res, ns, name)?.clone();
            f(&mut obj);
            Some(inner.store.write(res, obj, store::EventType::Modified))
        })
    }

    /// What kube-controller-manager's node lifecycle controller does when a node's heartbeats
    /// stopped for its grace period (40 s; fixture 15a): every condition the kubelet posts
    /// turns `Unknown`, reason `NodeStatusUnknown`, message `Kubelet stopped posting node
    /// status.`, with a new lastTransitionTime and the old lastHeartbeatTime; the node gets the
    /// `node.kubernetes.io/unreachable:NoSchedule` taint.
    pub fn mark_node_unknown(&self, name: &str) -> Option<Value> {
        let now = store::timestamp(0);
        self.modify(Res::Nodes, "", name, |n| {
            if let Some(cs) = n["status"]["conditions"].as_array_mut() {
                for c in cs {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                }
            }
            let taint = json!({
                "key": "node.kubernetes.io/unreachable",
                "effect": "NoSchedule",
                "timeAdded": now,
            });
            match n["spec"]["taints"].as_array_mut() {
                Some(ts) => ts.push(taint),
                None => n["spec"]["taints"] = json!([taint]),
            }
        })
    }

    /// Waits until `pred` holds on the current state, re-checking on every change. Returns
    /// false on timeout.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&View<'_>) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.shared.lock();
        loop {
            if pred(&View {
                store: &inner.store,
            }) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self.shared.wait(inner, deadline - now);
        }
    }

    /// Every version of one object still in the watch history, oldest first.
    pub fn versions(&self, res: Res, ns: &str, name: &str) -> Vec<Value> {
        let inner = self.shared.lock();
        View {
            store: &inner.store,
        }
        .versions(res, ns, name)
        .into_iter()
        .cloned()
        .collect()
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.rv
    }

    /// Forgets the watch history: any older resourceVersion is now too old (410).
    pub fn compact_history(&self) {
        self.with_store(|inner| inner.store.compact());
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// How many requests the fake has answered (cheaper than `requests().len()`).
    pub fn request_count(&self) -> usize {
        self.shared.lock().log.len()
    }

    /// The requests answered after the first `n`.
    pub fn requests_since(&self, n: usize) -> Vec<LoggedRequest> {
        let inner = self.shared.lock();
        inner.log.get(n..).map(<[_]>::to_vec).unwrap_or_default()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Closes every open watch now, abruptly (no terminating chunk).
    pub fn drop_watches(&self) {
        self.with_store(|inner| inner.faults.watch_epoch += 1);
    }

    /// Answers the next `n` requests with a 500 InternalError Status.
    pub fn fail_next(&self, n: u32) {
        self.fail_next_with(n, 500);
    }

    /// Answers the next `n` requests with this status code.
    pub fn fail_next_with(&self, n: u32, status: u16) {
        let mut inner = self.shared.lock();
        inner.faults.fail_next = n;
        inner.faults.fail_next_status = status;
    }

    /// Answers every request whose path starts with `prefix` with `status` until cleared.
    pub fn fail_path_prefix(&self, prefix: &str, status: u16) {
        self.shared
            .lock()
            .faults
            .fail_prefixes
            .push((prefix.to_string(), status));
    }

    /// Delays every response by this much (zero: no delay).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.lock().faults.delay = delay;
    }

    /// While `on`, requests wait unanswered (then go on as whatever fault holds at the end);
    /// turning it on also closes every open watch, as a server that went away.
    pub fn set_silent(&self, on: bool) {
        self.with_store(|inner| {
            inner.faults.silent = on;
            if on {
                inner.faults.watch_epoch += 1;
            }
        });
    }

    /// Refuses every request with a 429 and `Retry-After: secs` (`None`: stop).
    pub fn set_throttle(&self, secs: Option<u64>) {
        self.shared.lock().faults.throttle = secs;
    }

    /// Removes injected failures, delays, silence and throttling.
    pub fn clear_faults(&self) {
        let mut inner = self.shared.lock();
        inner.faults.fail_next = 0;
        inner.faults.fail_prefixes.clear();
        inner.faults.delay = Duration::ZERO;
        inner.faults.silent = false;
        inner.faults.throttle = None;
    }

    /// Accept `Authorization: Bearer <token>` as this identity.
    pub fn add_bearer_token(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared.lock().tokens.insert(
            token.to_string(),
            Identity {
                user: user.to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    /// Accept bootstrap token `id.secret` as kube-apiserver's bootstrap authenticator does
    /// (`system:bootstrap:<id>`, groups `system:bootstrappers`, kubeadm's
    /// `system:bootstrappers:kubeadm:default-node-token` and `system:authenticated`).
    pub fn add_bootstrap_token(&self, token: &str) {
        let id = token.split('.').next().unwrap_or_default();
        self.add_bearer_token(
            token,
            &format!("system:bootstrap:{id}"),
            &[
                "system:bootstrappers",
                "system:bootstrappers:kubeadm:default-node-token",
                "system:authenticated",
            ],
        );
    }

    /// What kube-controller-manager's csrapprover and csrsigning controllers do for a node
    /// client CSR (and `kubectl certificate approve` then the signer for a serving one): the
    /// Approved condition, then `status.certificate` signed by the fake's CA for `lifetime`, or
    /// the signer's `Failed` condition when the request is not what its signer issues. Two
    /// changes, as watchers see them; the final object.
    pub fn approve_and_issue_csr(&self, name: &str, lifetime: Duration) -> Value {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut csr = self
            .get(Res::Csrs, "", name)
            .unwrap_or_else(|| panic!("fake apiserver: no csr {name}"));
        let now = store::timestamp(0);
        // The controller manager approves client requests; serving ones wait for a person.
        let signer = csr["spec"]["signerName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let serving = signer == "kubernetes.io/kubelet-serving";
        let (reason, message, usage) = if serving {
            (
                "KubectlApprove",
                "This CSR was approved by kubectl certificate approve.",
                vk_cri::certs::Usage::Server,
            )
        } else {
            (
                "AutoApproved",
                "Auto approving kubelet client certificate after SubjectAccessReview.",
                vk_cri::certs::Usage::Client,
            )
        };
        csr["status"]["conditions"] = json!([{
            "type": "Approved", "status": "True", "reason": reason,
            "message": message,
            "lastUpdateTime": now, "lastTransitionTime": now,
        }]);
        let request = b64
            .decode(csr["spec"]["request"].as_str().unwrap_or_default())
            .expect("csr request is base64");
        let usages: Vec<String> = csr["spec"]["usages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect();
        if let Err(failure) = signer_check(&signer, &request, &usages) {
            // The approval, then the signer's verdict: Failed, nothing issued (14l).
            self.with_store(|inner| {
                inner
                    .store
                    .write(Res::Csrs, csr.clone(), store::EventType::Modified)
            });
            csr["status"]["conditions"]
                .as_array_mut()
                .expect("conditions")
                .push(json!({
                    "type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                    "message": failure,
                    "lastUpdateTime": now, "lastTransitionTime": now,
                }));
            return self.with_store(|inner| {
                inner
                    .store
                    .write(Res::Csrs, csr, store::EventType::Modified)
            });
        }
        let cert = self
            .ca
            .sign_request(&request, lifetime, usage)
            .expect("sign the csr");
        self.with_store(|inner| {
            inner
                .store
                .write(Res::Csrs, csr.clone(), store::EventType::Modified)
        });
        csr["status"]["certificate"] = json!(b64.encode(cert));
        self.with_store(|inner| {
            inner
                .store
                .write(Res::Csrs, csr, store::EventType::Modified)
        })
    }

    /// Make TokenReview report this token as authenticated for this user.
    pub fn allow_token_review(&self, token: &str, user: &str, groups: &[&str]) {
        self.shared.lock().token_reviews.insert(
            token.to_string(),
            Identity {
                user: user.to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
    }

    /// Decide SubjectAccessReviews with this policy (default: deny everything).
    pub fn set_sar_policy(
        &self,
        policy: impl Fn(&Value) -> (bool, String) + Send + Sync + 'static,
    ) {
        self.shared.lock().sar_policy = Arc::new(policy);
    }

    /// Stops the server (also done on drop).
    pub fn shutdown(&mut self) {
        self.server.shutdown();
    }
}

/// kube-controller-manager's check of a request before its signer issues it
/// (`ValidateKubeletServingCSR` / `ValidateKubeletClientCSR`, in their order and words).
fn signer_check(signer: &str, request_pem: &[u8], usages: &[String]) -> Result<(), String> {
    use std::collections::BTreeSet;
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer as _;
    let (_, block) = x509_parser::pem::parse_x509_pem(request_pem).map_err(|e| e.to_string())?;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| e.to_string())?;
    let subject = &req.certification_request_info.subject;
    let orgs: Vec<&str> = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .collect();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default();
    let (mut dns, mut ips, mut emails, mut uris) = (0, 0, 0, 0);
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(_) => dns += 1,
                    GeneralName::IPAddress(_) => ips += 1,
                    GeneralName::RFC822Name(_) => emails += 1,
                    GeneralName::URI(_) => uris += 1,
                    _ => {}
                }
            }
        }
    }
    let usages: BTreeSet<&str> = usages.iter().map(String::as_str).collect();
    let matches = |wanted: &[&str]| {
        let with_rsa: BTreeSet<&str> = wanted.iter().copied().collect();
        let mut no_rsa = with_rsa.clone();
        no_rsa.remove("key encipherment");
        usages == with_rsa || usages == no_rsa
    };
    if orgs != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    match signer {
        "kubernetes.io/kubelet-serving" => {
            let wanted = ["digital signature", "key encipherment", "server auth"];
            if dns == 0 && ips == 0 {
                return Err("DNS or IP subjectAltName is required".into());
            }
            if emails > 0 {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if uris > 0 {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if !matches(&wanted) {
                return Err(format!("usages did not match [{}]", wanted.join(" ")));
            }
            if !cn.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
        }
        _ => {
            let wanted = ["client auth", "digital signature", "key encipherment"];
            if dns > 0 {
                return Err("DNS subjectAltNames are not allowed".into());
            }
            if emails > 0 {
                return Err("Email subjectAltNames are not allowed".into());
            }
            if ips > 0 {
                return Err("IP subjectAltNames are not allowed".into());
            }
            if uris > 0 {
                return Err("URI subjectAltNames are not allowed".into());
            }
            if !cn.starts_with("system:node:") {
                return Err("subject common name does not begin with system:node:".into());
            }
            if !matches(&wanted) {
                return Err(format!("usages did not match [{}]", wanted.join(" ")));
            }
        }
    }
    Ok(())
}
