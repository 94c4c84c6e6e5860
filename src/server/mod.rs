//! The kubelet API on :10250, served by [`crate::httpd`] (rustls 0.23 + httparse, full-duplex
//! upgrades; tiny_http's TLS could neither verify client certificates nor proxy an upgraded
//! stream full duplex, see README).
//!
//! Every request except `/healthz` is authenticated and authorized ([`auth`]) before its path
//! is even parsed ([`route`]); then it is answered: container logs ([`logs`]), exec, attach and
//! port-forward proxied to the runtime's streaming server ([`stream`]), the pods this node was
//! given (`/pods`, from the pod index the caller passes in) and the pods the runtime runs
//! (`/runningpods/`), `/stats/summary` and `/metrics/resource` from the runtime's and the host's
//! stats ([`stats`]), and vk-cri's own `/metrics` ([`crate::metrics`]). Pods and containers are
//! found through the runtime's labels ([`pods`]).
//!
//! Owns: the handler that ties these together, and the serving TLS material (given files or a
//! generated self-signed pair). Must not keep pod state of its own.

pub mod auth;
pub mod healthz;
pub mod logs;
pub mod pods;
pub mod route;
pub mod stats;
pub mod stream;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::cri::{api, Code, CriError, Runtime};
use crate::httpd::{
    ChunkedWriter, ClientAuth, Handler, HttpdError, Request, Responder, Response, Server,
    ServingCert, TlsSetup,
};
use crate::node::stats::{CpuRate, HostSample, HostStats};

use auth::{Auth, Verdict};
use route::{LogOptions, PodRef, Route, StreamOpts};

/// Why the kubelet API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to read {what} {path}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to generate the self-signed serving certificate")]
    Generate(#[from] crate::certs::CertError),
    #[error("unusable serving certificate and key {path}")]
    Pair {
        path: String,
        #[source]
        source: HttpdError,
    },
    #[error("failed to serve the kubelet API on {addr}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: HttpdError,
    },
}

/// Where the serving certificate came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertSource {
    Files,
    SelfSigned {
        sans: Vec<String>,
    },
    /// `--rotate-server-certificates`: the pair in `--cert-dir` (`kubelet-server-current.pem`),
    /// else the given files, else none until the first is issued.
    Rotated {
        from: Option<PathBuf>,
    },
}

fn read(what: &'static str, path: &Path) -> Result<String, ServerError> {
    std::fs::read_to_string(path).map_err(|source| ServerError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn pair_from_files(cert: &Path, key: &Path) -> Result<ServingCert, ServerError> {
    ServingCert::from_pem(
        &read("serving certificate", cert)?,
        &read("serving key", key)?,
    )
    .map_err(|source| ServerError::Pair {
        path: cert.display().to_string(),
        source,
    })
}

/// The TLS setup: with `rotated` (the cert dir, `--rotate-server-certificates`) the rotated pair
/// kept there, else the given pair, else none yet; without it the given certificate and key,
/// else a self-signed pair for the node's name and addresses. Client certificates are asked for
/// (and verified) when a client CA is given.
pub fn tls_setup(
    cert_and_key: Option<(&Path, &Path)>,
    client_ca: Option<&Path>,
    node_name: &str,
    node_ip: IpAddr,
    rotated: Option<&Path>,
) -> Result<(TlsSetup, CertSource), ServerError> {
    let client_auth = match client_ca {
        Some(p) => ClientAuth::Optional {
            ca_pem: read("client CA file", p)?,
        },
        None => ClientAuth::None,
    };
    if let Some(dir) = rotated {
        let current =
            crate::bootstrap::store::current_path(dir, crate::bootstrap::store::Pair::Server);
        let kept = std::fs::read_to_string(&current).ok().and_then(|pem| {
            ServingCert::from_pem(&pem, &pem)
                .map_err(|e| log::warn!("{}: {e}: asking for a new one", current.display()))
                .ok()
        });
        let (cert, from) = match (kept, cert_and_key) {
            (Some(cert), _) => (cert, Some(current)),
            (None, Some((cert, key))) => (pair_from_files(cert, key)?, Some(cert.to_path_buf())),
            (None, None) => (ServingCert::pending(), None),
        };
        return Ok((TlsSetup { cert, client_auth }, CertSource::Rotated { from }));
    }
    if let Some((cert, key)) = cert_and_key {
        return Ok((
            TlsSetup {
                cert: pair_from_files(cert, key)?,
                client_auth,
            },
            CertSource::Files,
        ));
    }
    let mut sans = vec![node_name.to_string(), node_ip.to_string()];
    for extra in ["localhost", "127.0.0.1"] {
        if !sans.iter().any(|s| s == extra) {
            sans.push(extra.to_string());
        }
    }
    let refs: Vec<&str> = sans.iter().map(String::as_str).collect();
    let pair = crate::certs::self_signed_server(node_name, &refs)?;
    let cert = ServingCert::from_pem(&pair.cert_pem, &pair.key_pem).map_err(|source| {
        ServerError::Pair {
            path: "(generated)".into(),
            source,
        }
    })?;
    Ok((
        TlsSetup { cert, client_auth },
        CertSource::SelfSigned { sans },
    ))
}

/// Binds and starts the kubelet API.
pub fn start(addr: SocketAddr, tls: TlsSetup, api: KubeletApi) -> Result<Server, ServerError> {
    let serve_err = |source| ServerError::Serve { addr, source };
    let mut server = Server::bind(addr, tls).map_err(serve_err)?;
    server.serve(Arc::new(api)).map_err(serve_err)?;
    Ok(server)
}

/// The request handler.
/// The pods this node has been given, with their latest statuses (for `/pods`).
pub type PodLister = Arc<dyn Fn() -> Vec<k8s_openapi::api::core::v1::Pod> + Send + Sync>;

pub struct KubeletApi {
    auth: Auth,
    runtime: Arc<dyn Runtime>,
    pods: PodLister,
    node: String,
    /// How often a followed log looks for new lines.
    log_poll: Duration,
    /// The node's own usage, for the summary's `node` and `/metrics/resource`.
    host: Option<Arc<dyn HostStats>>,
    /// The last cpu samples of the node, the pods' cgroup and each pod (cAdvisor's rate).
    rates: Mutex<Rates>,
    /// When the sync loop last went round, for `/healthz`'s `syncloop` check.
    sync_loop: Option<SyncLoopProbe>,
    /// The effective configuration `/configz` serves, as JSON.
    configz: Option<Vec<u8>>,
}

/// When the sync loop last went round (`None`: not yet).
pub type SyncLoopProbe = Arc<dyn Fn() -> Option<Instant> + Send + Sync>;

/// A healthz answer as Go's handler sends it.
fn healthz_response(a: &healthz::Answer) -> Response {
    Response::new(a.status)
        .body("text/plain; charset=utf-8", a.body.clone().into_bytes())
        .header("X-Content-Type-Options", "nosniff")
}

/// The healthz port (`--healthz-port`, plain HTTP): `/healthz` and `/healthz/ping`, with the
/// ping check only, as the kubelet's; anything else is Go's `404 page not found`.
pub struct HealthzPort;

impl Handler for HealthzPort {
    fn handle(&self, req: Request, resp: Responder<'_>) {
        let checks = [("ping", Ok(()))];
        let verbose = req.query_param("verbose").is_some();
        let path = req.path.trim_end_matches('/');
        // Any method, as Go's mux routes them all to the handler.
        let answer = match path.strip_prefix("/healthz") {
            Some("") => Some(healthz::root(&checks, verbose, &[])),
            Some(rest) => rest
                .strip_prefix('/')
                .and_then(|name| healthz::one(&checks, name)),
            None => None,
        };
        let _ = match answer {
            Some(a) => resp.send(healthz_response(&a)),
            None => resp.send(Response::text(404, "404 page not found\n")),
        };
    }
}

#[derive(Default)]
struct Rates {
    node: CpuRate,
    pods_root: CpuRate,
    daemon: CpuRate,
    /// By pod uid; pods that are gone are dropped on the next read.
    pods: std::collections::HashMap<String, CpuRate>,
}

impl KubeletApi {
    pub fn new(auth: Auth, runtime: Arc<dyn Runtime>, pods: PodLister, node: &str) -> KubeletApi {
        KubeletApi {
            auth,
            runtime,
            pods,
            node: node.to_string(),
            log_poll: Duration::from_millis(100),
            host: None,
            rates: Mutex::default(),
            sync_loop: None,
            configz: None,
        }
    }

    /// `/configz` answers this effective configuration (JSON).
    pub fn with_configz(mut self, config: serde_json::Value) -> KubeletApi {
        self.configz = Some(config.to_string().into_bytes());
        self
    }

    /// The `syncloop` check reads when the sync loop (the relist) last went round.
    pub fn with_sync_loop(mut self, last: SyncLoopProbe) -> KubeletApi {
        self.sync_loop = Some(last);
        self
    }

    /// Reports the node's usage from `host`.
    pub fn with_host_stats(mut self, host: Arc<dyn HostStats>) -> KubeletApi {
        self.host = Some(host);
        self
    }

    /// A host sample and the cpu rates it gives; `None` (logged) when the host cannot be read.
    fn host_sample(&self) -> (Option<HostSample>, stats::NodeRates) {
        let Some(host) = &self.host else {
            return (None, stats::NodeRates::default());
        };
        match host.sample() {
            Ok(sample) => {
                let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
                let node = rates.node.update(sample.at_ns, sample.cpu_usage_ns);
                let pods = sample
                    .pods_cgroup
                    .and_then(|p| rates.pods_root.update(sample.at_ns, p.cpu_usage_ns));
                let daemon = sample
                    .daemon
                    .and_then(|(d, _)| rates.daemon.update(sample.at_ns, d.cpu_usage_ns));
                (Some(sample), stats::NodeRates { node, pods, daemon })
            }
            Err(e) => {
                log::warn!("failed to read the node's usage: {e}");
                (None, stats::NodeRates::default())
            }
        }
    }
}

/// An error answer: status and text (the kubelet answers errors as text/plain).
#[derive(Debug)]
struct Failure(u16, String);

impl From<route::RouteError> for Failure {
    fn from(e: route::RouteError) -> Failure {
        Failure(e.status, e.message)
    }
}

/// A runtime error as the kubelet's streaming handlers map it to HTTP.
fn cri_failure(e: &CriError) -> Failure {
    let status = match e.code() {
        Some(Code::NotFound) => 404,
        Some(Code::InvalidArgument | Code::FailedPrecondition) => 400,
        Some(Code::Unavailable) => 503,
        Some(Code::DeadlineExceeded) => 504,
        _ => 500,
    };
    Failure(status, e.to_string())
}

impl Handler for KubeletApi {
    fn handle(&self, req: Request, resp: Responder<'_>) {
        // The one place served requests are counted, as the kubelet's `kubelet_http_requests_*`.
        let started = Instant::now();
        let (path, long_running) = route::metrics_labels(&req.path);
        let method = match req.method.as_str() {
            m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
            _ => "other",
        }
        .to_string();
        let labels = [
            if long_running { "true" } else { "false" },
            method.as_str(),
            path,
            "readwrite",
        ];
        crate::metrics::HTTP_REQUESTS.inc(&labels);
        self.handle_request(req, resp);
        crate::metrics::HTTP_REQUEST_DURATION.observe_duration(&labels, started.elapsed());
    }
}

impl KubeletApi {
    /// `/healthz` (or `/healthz/NAME`): ping, log and the sync loop, the kubelet's checks.
    fn healthz(&self, check: Option<&str>, verbose: bool, exclude: &[&str], resp: Responder<'_>) {
        let last = self.sync_loop.as_ref().and_then(|f| f());
        let checks = [
            ("ping", Ok(())),
            ("log", Ok(())),
            ("syncloop", healthz::sync_loop(last, Instant::now())),
        ];
        let answer = match check {
            None => Some(healthz::root(&checks, verbose, exclude)),
            Some(name) => healthz::one(&checks, name),
        };
        let _ = match answer {
            Some(a) => {
                if a.status != 200 {
                    log::debug!("healthz check failed: {}", a.body.trim_end());
                }
                resp.send(healthz_response(&a))
            }
            None => resp.send(Response::text(404, "404 page not found\n")),
        };
    }

    fn handle_request(&self, req: Request, resp: Responder<'_>) {
        // `/healthz` itself is open (its reasons are withheld); its sub-checks are not.
        if req.path == "/healthz" && (req.method == "GET" || req.method == "HEAD") {
            let exclude: Vec<&str> = req.query_all("exclude").collect();
            self.healthz(None, req.query_param("verbose").is_some(), &exclude, resp);
            return;
        }
        let verdict = self.auth.check(
            &req.peer,
            req.header("authorization"),
            &req.method,
            &req.path,
            &self.node,
            Instant::now(),
        );
        match verdict {
            Verdict::Allowed(_) => {}
            Verdict::Unauthenticated => {
                let _ = resp.send(Response::text(401, "Unauthorized"));
                return;
            }
            Verdict::Forbidden(m) => {
                log::debug!("kubelet API request forbidden path={} {m}", req.path);
                let _ = resp.send(Response::text(403, &m));
                return;
            }
            Verdict::Failed(m) => {
                let _ = resp.send(Response::text(500, &m));
                return;
            }
        }
        let route = match route::parse(&req.method, &req.path, &req.query) {
            Ok(r) => r,
            Err(e) => {
                let _ = resp.send(Response::text(e.status, &e.message));
                return;
            }
        };
        if let Err(Failure(status, message)) = self.serve(route, &req, resp) {
            log::debug!(
                "kubelet API request failed path={} status={status}: {message}",
                req.path
            );
        }
    }
}

/// The content type of Prometheus's text exposition format, as the kubelet answers it.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The result of serving a route: `Err` carries an error that was already answered.
type Served = Result<(), Failure>;

impl KubeletApi {
    fn serve(&self, route: Route, req: &Request, resp: Responder<'_>) -> Served {
        let answer = |resp: Responder<'_>, f: Failure| -> Served {
            let _ = resp.send(Response::text(f.0, &f.1));
            Err(f)
        };
        match route {
            Route::Healthz {
                check,
                verbose,
                exclude,
            } => {
                let exclude: Vec<&str> = exclude.iter().map(String::as_str).collect();
                self.healthz(check.as_deref(), verbose, &exclude, resp);
                Ok(())
            }
            Route::ContainerLogs {
                pod,
                container,
                options,
            } => match self.log_target(&pod, &container, options.previous) {
                Ok((path, id)) => self.stream_logs(&path, &id, options, resp),
                Err(f) => answer(resp, f),
            },
            Route::Exec {
                pod,
                container,
                command,
                streams,
            } => {
                let url = self.require_upgrade(req).and_then(|_| {
                    let id = self.container_id(&pod, &container)?;
                    self.runtime
                        .exec(&api::ExecRequest {
                            container_id: id,
                            cmd: command,
                            tty: streams.tty,
                            stdin: streams.stdin,
                            stdout: streams.stdout,
                            stderr: streams.stderr,
                            ..Default::default()
                        })
                        .map_err(|e| cri_failure(&e))
                });
                self.proxy(url, req, resp)
            }
            Route::Attach {
                pod,
                container,
                streams:
                    StreamOpts {
                        stdin,
                        stdout,
                        stderr,
                        tty,
                    },
            } => {
                let url = self.require_upgrade(req).and_then(|_| {
                    let id = self.container_id(&pod, &container)?;
                    self.runtime
                        .attach(&api::AttachRequest {
                            container_id: id,
                            stdin,
                            tty,
                            stdout,
                            stderr,
                            ..Default::default()
                        })
                        .map_err(|e| cri_failure(&e))
                });
                self.proxy(url, req, resp)
            }
            Route::PortForward { pod, ports } => {
                let url = self.require_upgrade(req).and_then(|_| {
                    let found = self.pod(&pod)?;
                    let ports: Vec<i32> = ports.iter().map(|p| i32::from(*p)).collect();
                    self.runtime
                        .port_forward(&found.sandbox_id, &ports)
                        .map_err(|e| cri_failure(&e))
                });
                self.proxy(url, req, resp)
            }
            Route::Metrics => {
                let _ = resp.send(
                    Response::new(200).body(PROMETHEUS_TEXT, crate::metrics::render().into_bytes()),
                );
                Ok(())
            }
            Route::MetricsResource => {
                let _ =
                    resp.send(Response::new(200).body(PROMETHEUS_TEXT, self.resource_metrics()));
                Ok(())
            }
            Route::StatsSummary => match self.stats_summary() {
                Ok(body) => {
                    let _ = resp.send(Response::new(200).body("application/json", body));
                    Ok(())
                }
                Err(f) => answer(resp, f),
            },
            Route::Configz => {
                let resp_ = match &self.configz {
                    Some(body) => Response::new(200).body("application/json", body.clone()),
                    None => Response::new(404).body(
                        "text/plain; charset=utf-8",
                        b"404 page not found\n".to_vec(),
                    ),
                };
                let _ = resp.send(resp_);
                Ok(())
            }
            Route::Pods => match self.pod_list() {
                Ok(body) => {
                    let _ = resp.send(Response::new(200).body("application/json", body));
                    Ok(())
                }
                Err(f) => answer(resp, f),
            },
            Route::RunningPods => match self.running_pods() {
                Ok(body) => {
                    let _ = resp.send(Response::new(200).body("application/json", body));
                    Ok(())
                }
                Err(f) => answer(resp, f),
            },
        }
    }

    fn require_upgrade(&self, req: &Request) -> Result<(), Failure> {
        if req.connection_has("upgrade") && req.header("upgrade").is_some() {
            Ok(())
        } else {
            Err(Failure(400, "Upgrade request required".into()))
        }
    }

    fn proxy(&self, url: Result<String, Failure>, req: &Request, resp: Responder<'_>) -> Served {
        let url = match url {
            Ok(u) => u,
            Err(f) => {
                let _ = resp.send(Response::text(f.0, &f.1));
                return Err(f);
            }
        };
        stream::proxy(&url, req, resp).map_err(|e| {
            log::warn!("failed to proxy a stream path={}: {e}", req.path);
            Failure(502, e.to_string())
        })
    }

    fn pod(&self, pod: &PodRef) -> Result<pods::FoundPod, Failure> {
        match pods::find_pod(self.runtime.as_ref(), &self.node, pod) {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(Failure(404, format!("pod {:?} does not exist", pod.name))),
            Err(e) => Err(cri_failure(&e)),
        }
    }

    fn container_id(&self, pod: &PodRef, container: &str) -> Result<String, Failure> {
        let found = self.pod(pod)?;
        pods::pick_container(&found, container, false)
            .map(|c| c.id.clone())
            .ok_or_else(|| {
                Failure(
                    404,
                    format!("container {container:?} not found in pod {:?}", pod.name),
                )
            })
    }

    /// The log file and container id a logs request reads.
    fn log_target(
        &self,
        pod: &PodRef,
        container: &str,
        previous: bool,
    ) -> Result<(String, String), Failure> {
        let found = self.pod(pod)?;
        if !pods::has_container(&found, container) {
            return Err(Failure(
                404,
                format!("container {container:?} not found in pod {:?}", pod.name),
            ));
        }
        let Some(c) = pods::pick_container(&found, container, previous) else {
            return Err(Failure(
                400,
                format!(
                    "previous terminated container {container:?} in pod {:?} not found",
                    pod.name
                ),
            ));
        };
        let status = self
            .runtime
            .container_status(&c.id)
            .map_err(|e| cri_failure(&e))?;
        if status.log_path.is_empty() {
            return Err(Failure(
                400,
                format!(
                    "container {container:?} in pod {:?} has no log file",
                    pod.name
                ),
            ));
        }
        Ok((status.log_path, c.id.clone()))
    }

    fn stream_logs(
        &self,
        path: &str,
        container_id: &str,
        options: LogOptions,
        resp: Responder<'_>,
    ) -> Served {
        let since = match (options.since_time, options.since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(s)) => Timestamp::now()
                .checked_sub(SignedDuration::from_secs(s.min(i64::MAX as u64) as i64))
                .ok(),
            (None, None) => None,
        };
        // Open before answering, so that a missing file is still an error status.
        if let Err(e) = std::fs::metadata(path) {
            let f = Failure(400, format!("failed to open log file {path}: {e}"));
            let _ = resp.send(Response::text(f.0, &f.1));
            return Err(f);
        }
        let headers = [(
            "Content-Type".to_string(),
            "text/plain; charset=utf-8".to_string(),
        )];
        let Ok(writer) = resp.start_chunked(200, &headers) else {
            return Ok(());
        };
        let runtime = self.runtime.clone();
        let id = container_id.to_string();
        let still_running = move || {
            runtime.container_status(&id).is_ok_and(|s| {
                s.state.enum_value_or_default() == api::ContainerState::CONTAINER_RUNNING
            })
        };
        let mut sink = ChunkSink(writer);
        let result = logs::stream(
            logs::StreamRequest {
                path: Path::new(path),
                tail_lines: options.tail_lines,
                filter: logs::LogFilter::new(since, options.timestamps, options.limit_bytes),
                follow: options.follow,
                still_running: &still_running,
                poll: self.log_poll,
            },
            &mut sink,
        );
        match result {
            Ok(()) => {
                let _ = sink.0.finish();
                Ok(())
            }
            // The head is out: the client sees a truncated body.
            Err(e) => Err(Failure(500, e.to_string())),
        }
    }

    /// The runtime's stats of this node's containers and their start times.
    #[allow(clippy::type_complexity)]
    fn container_stats(
        &self,
    ) -> Result<
        (
            Vec<api::ContainerStats>,
            std::collections::BTreeMap<String, i64>,
        ),
        CriError,
    > {
        let owner = crate::pod::labels::owner_selector(&self.node);
        let stats = self.runtime.list_container_stats(&owner)?;
        let started = self
            .runtime
            .list_containers(&owner, None)?
            .into_iter()
            .map(|c| (c.id, c.created_at))
            .collect();
        Ok((stats, started))
    }

    /// Pod-level stats for the pods of `stats`: each pod's cgroup read from the host, as
    /// cAdvisor gives them to the kubelet (cheap: a few files per pod), and for pods whose
    /// cgroup is not found (no --cgroup-root, say) the runtime's ListPodSandboxStats (one call
    /// for them all, 10-20 ms per pod on containerd 1.6). A runtime that cannot answer leaves
    /// those pods with the sums of their containers, logged at debug level only since it would
    /// be every scrape.
    fn pod_stats(&self, stats: &[api::ContainerStats]) -> Vec<api::PodSandboxStats> {
        use crate::pod::labels::POD_UID;
        let uids: std::collections::BTreeSet<String> = stats
            .iter()
            .filter_map(|s| s.attributes.as_ref()?.labels.get(POD_UID).cloned())
            .collect();
        let mut out = Vec::new();
        let mut missing = std::collections::BTreeSet::new();
        {
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            rates.pods.retain(|uid, _| uids.contains(uid));
            for uid in &uids {
                match self.host.as_ref().and_then(|h| h.pod_cgroup(uid)) {
                    Some(p) => {
                        let rate = rates
                            .pods
                            .entry(uid.clone())
                            .or_default()
                            .update(p.at_ns, p.usage.cpu_usage_ns);
                        out.push(stats::pod_cgroup_stats(uid, &p, rate));
                    }
                    None => {
                        missing.insert(uid.clone());
                    }
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let owner = crate::pod::labels::owner_selector(&self.node);
        match self.runtime.list_pod_sandbox_stats(&owner) {
            Ok(sandboxes) => out.extend(sandboxes.into_iter().filter(|sb| {
                sb.attributes
                    .as_ref()
                    .and_then(|a| a.metadata.as_ref())
                    .is_some_and(|m| missing.contains(&m.uid))
            })),
            Err(e) => log::debug!("pod stats from the containers: {e}"),
        }
        out
    }

    /// `/stats/summary` from the host and the runtime's container and sandbox stats.
    fn stats_summary(&self) -> Result<Vec<u8>, Failure> {
        let (stats, started) = self.container_stats().map_err(|e| cri_failure(&e))?;
        let (sample, rates) = self.host_sample();
        let node = stats::node_summary(&self.node, sample.as_ref(), rates);
        let pods = self.pod_stats(&stats);
        serde_json::to_vec(&stats::summary(node, &stats, &pods, &started))
            .map_err(|e| Failure(500, e.to_string()))
    }

    /// `/metrics/resource`: a runtime failure is the kubelet's scrape error, not a 500.
    fn resource_metrics(&self) -> Vec<u8> {
        let (sample, _) = self.host_sample();
        let text = match self.container_stats() {
            Ok((stats, started)) => {
                let pods = self.pod_stats(&stats);
                stats::resource_metrics(sample.as_ref(), Some(&stats), &pods, &started)
            }
            Err(e) => {
                log::warn!("failed to get container stats for /metrics/resource: {e}");
                stats::resource_metrics(sample.as_ref(), None, &[], &Default::default())
            }
        };
        text.into_bytes()
    }

    /// `/pods`: the pods this node has been given, as the kubelet's pod manager lists them.
    fn pod_list(&self) -> Result<Vec<u8>, Failure> {
        let list = serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": (self.pods)(),
        });
        serde_json::to_vec(&list).map_err(|e| Failure(500, e.to_string()))
    }

    /// `/runningpods/`: the pods with a ready sandbox in the runtime, and their running
    /// containers, as the kubelet's runtime cache shows them.
    fn running_pods(&self) -> Result<Vec<u8>, Failure> {
        use crate::pod::labels::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID};
        let owner = crate::pod::labels::owner_selector(&self.node);
        let sandboxes = self
            .runtime
            .list_pod_sandboxes(&owner)
            .map_err(|e| cri_failure(&e))?;
        let containers = self
            .runtime
            .list_containers(&owner, None)
            .map_err(|e| cri_failure(&e))?;
        let mut items = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for sb in sandboxes
            .iter()
            .filter(|s| s.state.enum_value_or_default() == api::PodSandboxState::SANDBOX_READY)
        {
            let Some(uid) = sb.labels.get(POD_UID) else {
                continue;
            };
            if !seen.insert(uid.clone()) {
                continue;
            }
            let ctrs: Vec<serde_json::Value> = containers
                .iter()
                .filter(|c| c.labels.get(POD_UID) == Some(uid))
                .filter(|c| {
                    c.state.enum_value_or_default() == api::ContainerState::CONTAINER_RUNNING
                })
                .map(|c| {
                    serde_json::json!({
                        "name": c.labels.get(CONTAINER_NAME).cloned().unwrap_or_default(),
                        "image": c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                        "resources": {},
                    })
                })
                .collect();
            items.push(serde_json::json!({
                "metadata": {
                    "name": sb.labels.get(POD_NAME).cloned().unwrap_or_default(),
                    "namespace": sb.labels.get(POD_NAMESPACE).cloned().unwrap_or_default(),
                    "uid": uid,
                    "creationTimestamp": null,
                },
                "spec": {"containers": ctrs},
                "status": {},
            }));
        }
        let list = serde_json::json!({
            "kind": "PodList",
            "apiVersion": "v1",
            "metadata": {},
            "items": items,
        });
        serde_json::to_vec(&list).map_err(|e| Failure(500, e.to_string()))
    }
}

struct ChunkSink<'a>(ChunkedWriter<'a>);

impl logs::LogSink for ChunkSink<'_> {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.0
            .write_chunk(data)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }

    fn done(&self) -> bool {
        self.0.peer_closed() || self.0.server_stopping()
    }
}
