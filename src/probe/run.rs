//! Running an [`Action`]: the I/O edge behind the [`Handlers`] trait, and the kubelet's reading
//! of what came back, for probes ([`probe`]) and for lifecycle hooks ([`hook`]).
//!
//! Owns the handler semantics: exec through CRI ExecSync with the probe's timeout (exit 0 is
//! success, the output is the message, a timeout fails with `command "..." timed out`); httpGet
//! with `User-Agent: kube-probe/1.28` (`kube-lifecycle/1.28` for hooks) and `Accept: */*` unless
//! the spec sets them, redirects followed on the same host up to 10 and a redirect elsewhere
//! returned as a success with a warning, 2xx and 3xx as success, at most 10 KiB of body read,
//! TLS not verified, no proxy; tcpSocket as a connect within the timeout; grpc as the standard
//! health check. Messages follow the Go kubelet's (`dial tcp 127.0.0.1:80: connect: connection
//! refused`, `HTTP probe failed with statuscode: 500`). A probe that errors is run again up to
//! [`MAX_PROBE_RETRIES`] times ([`with_retries`]); an HTTPS hook answered in plain HTTP is
//! retried over HTTP ([`hook`]). [`RealHandlers`] is the real edge; tests use a fake
//! [`Handlers`].

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::grpc::{GrpcError, Serving};
use super::spec::{Action, HttpGet, Scheme, SpecError};
use super::state::Outcome;
use crate::cri::{Code, CriError, ExecOutput, Runtime};

/// The kubelet version probes and hooks announce (`kube-probe/1.28`).
pub const KUBE_MINOR: &str = "1.28";
/// The kubelet reads at most this much of an exec's output or an HTTP body.
const MAX_OUTPUT: usize = 10 * 1024;
/// The Go client's limit on followed redirects.
const MAX_REDIRECTS: usize = 10;

/// An HTTP answer (the last one, when redirects were followed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// An HTTP request that got no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// Go's wording: `Get "URL": dial tcp …: connect: connection refused`.
    pub message: String,
    /// An `https` request that the server answered in plain HTTP (Go's "server gave HTTP
    /// response to HTTPS client"): lifecycle hooks retry it over `http`.
    pub plain_http_answer: bool,
}

impl From<String> for HttpError {
    fn from(message: String) -> HttpError {
        HttpError {
            message,
            plain_http_answer: false,
        }
    }
}

impl From<&str> for HttpError {
    fn from(message: &str) -> HttpError {
        HttpError::from(message.to_string())
    }
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// A TCP dial that failed, in Go's words: `dial tcp 127.0.0.1:80: connect: connection refused`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("dial tcp {addr}: {cause}")]
pub struct DialError {
    /// `host:port` (`[v6]:port`).
    pub addr: String,
    pub cause: DialCause,
}

/// Why a dial failed (Go's `net.OpError` texts).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DialCause {
    #[error("connect: connection refused")]
    Refused,
    #[error("i/o timeout")]
    Timeout,
    #[error("connect: no route to host")]
    HostUnreachable,
    #[error("connect: network is unreachable")]
    NetworkUnreachable,
    #[error("lookup {host}: {reason}")]
    Lookup { host: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Why a lifecycle hook failed, in the kubelet's words (the container's waiting message, and
/// the log's; its event says only `PostStartHook failed` / `PreStopHook failed`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The hook's spec cannot be run.
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("Exec lifecycle hook ([{command}]) for Container {container:?} in Pod {pod:?} failed - error: {cause}, message: {output:?}")]
    Exec {
        command: String,
        container: String,
        /// `name_namespace(uid)`.
        pod: String,
        cause: Box<ExecHookCause>,
        /// The command's output (stdout then stderr, at most 10 KiB).
        output: String,
    },
    #[error("HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {cause}")]
    Http {
        path: String,
        container: String,
        pod: String,
        cause: HttpError,
    },
    #[error("unsupported lifecycle hook handler for Container {container:?} in Pod {pod:?}")]
    Unsupported { container: String, pod: String },
}

/// Why an exec hook failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecHookCause {
    #[error("command '{command}' exited with {code}: {stderr}")]
    Exited {
        command: String,
        code: i32,
        stderr: String,
    },
    #[error(transparent)]
    Runtime(#[from] CriError),
}

/// The prober's `maxProbeRetries`: a probe that errors (could not be run, as opposed to
/// failed) is run again, up to this many times in all, within the same period.
pub const MAX_PROBE_RETRIES: u32 = 3;

/// Runs `run` until it does not error, at most `retries` times; the last outcome (the
/// kubelet's `runProbeWithRetries`).
pub fn with_retries(retries: u32, mut run: impl FnMut() -> Outcome) -> Outcome {
    let mut outcome = run();
    for _ in 1..retries {
        if !matches!(outcome, Outcome::Error(_)) {
            break;
        }
        outcome = run();
    }
    outcome
}

/// What a hook that succeeded has to say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookDone {
    /// `host:port` of an HTTPS hook that got a plain HTTP answer and then succeeded over HTTP
    /// (the kubelet's LifecycleHTTPFallback event).
    pub http_fallback: Option<String>,
}

/// The network and runtime operations behind probes and hooks.
pub trait Handlers: Send + Sync {
    /// CRI ExecSync (a zero timeout means none).
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, CriError>;
    /// GET with redirects handled as the kubelet's probe client does; `Err` is the Go-style
    /// message of a request that got no answer.
    fn http_get(
        &self,
        req: &HttpGet,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError>;
    /// A TCP connect.
    fn tcp(&self, host: &str, port: u16, timeout: Duration) -> Result<(), DialError>;
    /// grpc.health.v1.Health/Check; `Err` is why there is no answer.
    fn grpc(
        &self,
        host: &str,
        port: u16,
        service: &str,
        timeout: Duration,
    ) -> Result<Serving, GrpcError>;
}

fn output_of(out: &ExecOutput) -> String {
    let mut bytes = out.stdout.clone();
    bytes.extend_from_slice(&out.stderr);
    bytes.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn timed_out(e: &CriError) -> bool {
    e.code() == Some(Code::DeadlineExceeded)
}

/// Runs a probe's action against container `container_id`.
pub fn probe(h: &dyn Handlers, container_id: &str, action: &Action, timeout: Duration) -> Outcome {
    match action {
        Action::Exec { command } => match h.exec(container_id, command, timeout) {
            Ok(out) if out.exit_code == 0 => Outcome::Success(output_of(&out)),
            Ok(out) => Outcome::Failure(output_of(&out)),
            Err(e) if timed_out(&e) => {
                Outcome::Failure(format!("command {:?} timed out", command.join(" ")))
            }
            Err(e) => Outcome::Error(e.to_string()),
        },
        Action::HttpGet(req) => {
            match h.http_get(req, &format!("kube-probe/{KUBE_MINOR}"), timeout) {
                Ok(r) if (200..300).contains(&r.status) => Outcome::Success(r.body),
                Ok(r) if (300..400).contains(&r.status) => Outcome::Warning(format!(
                    "Probe terminated redirects, Response body: {}",
                    r.body
                )),
                Ok(r) => {
                    Outcome::Failure(format!("HTTP probe failed with statuscode: {}", r.status))
                }
                Err(e) => Outcome::Failure(e.message),
            }
        }
        Action::TcpSocket { host, port } => match h.tcp(host, *port, timeout) {
            Ok(()) => Outcome::Success(String::new()),
            Err(e) => Outcome::Failure(e.to_string()),
        },
        Action::Grpc {
            host,
            port,
            service,
        } => match h.grpc(host, *port, service, timeout) {
            Ok(Serving::Serving) => Outcome::Success(String::new()),
            Ok(s) => Outcome::Failure(format!(
                "service unhealthy (responded with \"{}\")",
                match s {
                    Serving::Unknown => "UNKNOWN",
                    Serving::NotServing => "NOT_SERVING",
                    Serving::ServiceUnknown => "SERVICE_UNKNOWN",
                    Serving::Serving => "SERVING",
                }
            )),
            Err(e) => Outcome::Failure(e.to_string()),
        },
    }
}

/// `name_namespace(uid)`, as the kubelet names a pod in hook messages.
fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        crate::pod::uid(pod)
    )
}

/// Runs a lifecycle hook. HTTP hooks fail only when no answer came (any status is fine); an
/// `https` hook answered in plain HTTP is retried over `http` without its `Authorization`
/// header, and succeeds if that does (the kubelet's ConsistentHTTPGetHandlers, on in 1.28),
/// else fails with the first error.
pub fn hook(
    h: &dyn Handlers,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    action: &Action,
    timeout: Duration,
) -> Result<HookDone, HookError> {
    match action {
        Action::Exec { command: argv } => {
            let command = argv.join(" ");
            let (cause, output) = match h.exec(container_id, argv, timeout) {
                Ok(out) if out.exit_code == 0 => return Ok(HookDone::default()),
                Ok(out) => (
                    ExecHookCause::Exited {
                        command: command.clone(),
                        code: out.exit_code,
                        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                    },
                    output_of(&out),
                ),
                Err(e) => (ExecHookCause::Runtime(e), String::new()),
            };
            Err(HookError::Exec {
                command,
                container: c.name.clone(),
                pod: pod_ref(pod),
                cause: Box::new(cause),
                output,
            })
        }
        Action::HttpGet(req) => {
            let ua = format!("kube-lifecycle/{KUBE_MINOR}");
            let failed = |cause: HttpError| HookError::Http {
                path: req.path.clone(),
                container: c.name.clone(),
                pod: pod_ref(pod),
                cause,
            };
            match h.http_get(req, &ua, timeout) {
                Ok(_) => Ok(HookDone::default()),
                Err(e) if e.plain_http_answer && req.scheme == Scheme::Https => {
                    let mut plain = req.clone();
                    plain.scheme = Scheme::Http;
                    plain
                        .headers
                        .retain(|(k, _)| !k.eq_ignore_ascii_case("authorization"));
                    match h.http_get(&plain, &ua, timeout) {
                        Ok(_) => Ok(HookDone {
                            http_fallback: Some(join_host_port(&req.host, req.port)),
                        }),
                        Err(_) => Err(failed(e)),
                    }
                }
                Err(e) => Err(failed(e)),
            }
        }
        Action::TcpSocket { .. } | Action::Grpc { .. } => Err(HookError::Unsupported {
            container: c.name.clone(),
            pod: pod_ref(pod),
        }),
    }
}

/// The real handlers: CRI for exec, ureq for HTTP, std for TCP, grpcio for grpc.
pub struct RealHandlers {
    runtime: Arc<dyn Runtime>,
    agent: ureq::Agent,
}

impl RealHandlers {
    pub fn new(runtime: Arc<dyn Runtime>) -> RealHandlers {
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            // The kubelet's probes never verify certificates.
            .disable_verification(true)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .proxy(None)
            // The kubelet's probe transport disables keep-alives.
            .max_idle_connections(0)
            .max_idle_connections_per_host(0)
            .build();
        RealHandlers {
            runtime,
            agent: ureq::Agent::new_with_config(config),
        }
    }
}

/// Go's reading of a failed dial to `addr`.
fn dial_error(addr: &str, e: &std::io::Error) -> DialError {
    use std::io::ErrorKind as K;
    let cause = match e.kind() {
        K::ConnectionRefused => DialCause::Refused,
        K::TimedOut | K::WouldBlock => DialCause::Timeout,
        K::HostUnreachable => DialCause::HostUnreachable,
        K::NetworkUnreachable => DialCause::NetworkUnreachable,
        _ => DialCause::Other(e.to_string()),
    };
    DialError {
        addr: addr.to_string(),
        cause,
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Whether a TLS request failed because the server spoke plain HTTP: rustls reads the answer's
/// first bytes (`HTTP/`) as a record of an invalid content type, where Go's client checks that
/// the record header is `HTTP/`.
fn plain_http_answer(e: &ureq::Error) -> bool {
    let tls = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    matches!(
        tls,
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

/// `scheme://authority` and the host of an absolute URL.
fn origin(url: &str) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default().to_string()
    } else {
        authority.split(':').next().unwrap_or_default().to_string()
    };
    (format!("{scheme}://{authority}"), host.to_ascii_lowercase())
}

/// A Location header resolved against the URL it came from.
fn resolve_location(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (root, _) = origin(base);
    if let Some(rest) = location.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("http");
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{root}{location}");
    }
    let path = &base[root.len()..];
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{root}{dir}/{location}")
}

impl Handlers for RealHandlers {
    fn exec(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        self.runtime.exec_sync(container_id, cmd, timeout)
    }

    fn http_get(
        &self,
        req: &HttpGet,
        user_agent: &str,
        timeout: Duration,
    ) -> Result<HttpReply, HttpError> {
        let deadline = Instant::now() + timeout;
        let first = req.url();
        let (_, first_host) = origin(&first);
        let has = |name: &str| {
            req.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
        };
        let mut url = first.clone();
        let mut hops = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let deadline_error = || {
                format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
            };
            if left.is_zero() {
                return Err(deadline_error().into());
            }
            let mut b = self.agent.get(&url);
            let mut host_set = false;
            for (k, v) in &req.headers {
                // An empty Accept removes the default one.
                if k.eq_ignore_ascii_case("accept") && v.is_empty() {
                    continue;
                }
                // Go sends the first Host header as the request's host, and only that one.
                if k.eq_ignore_ascii_case("host") {
                    if host_set {
                        continue;
                    }
                    host_set = true;
                }
                b = b.header(k.as_str(), v.as_str());
            }
            if !has("user-agent") {
                b = b.header("User-Agent", user_agent);
            }
            if !has("accept") {
                b = b.header("Accept", "*/*");
            }
            let result = b.config().timeout_global(Some(left)).build().call();
            let mut resp = match result {
                Ok(r) => r,
                Err(e) if url.starts_with("https://") && plain_http_answer(&e) => {
                    return Err(HttpError {
                        message: format!(
                            "Get {url:?}: http: server gave HTTP response to HTTPS client"
                        ),
                        plain_http_answer: true,
                    });
                }
                Err(ureq::Error::Io(e)) => {
                    let (_, host) = origin(&url);
                    let port = url
                        .split("://")
                        .nth(1)
                        .and_then(|r| r.split(['/', '?']).next())
                        .and_then(|a| a.rsplit(':').next())
                        .unwrap_or_default()
                        .to_string();
                    return Err(format!(
                        "Get {url:?}: {}",
                        dial_error(&join_host_port(&host, port.parse().unwrap_or(0)), &e)
                    )
                    .into());
                }
                Err(ureq::Error::Timeout(_)) => return Err(deadline_error().into()),
                Err(e) => return Err(format!("Get {url:?}: {e}").into()),
            };
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            if let (true, Some(loc)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location) {
                let next = resolve_location(&url, &loc);
                if origin(&next).1 == first_host {
                    hops += 1;
                    if hops > MAX_REDIRECTS {
                        return Err(format!("Get {next:?}: stopped after 10 redirects").into());
                    }
                    url = next;
                    continue;
                }
                // A redirect to another host is not followed: this answer is the result.
            }
            let mut body = Vec::new();
            let _ = resp
                .body_mut()
                .as_reader()
                .take(MAX_OUTPUT as u64)
                .read_to_end(&mut body);
            return Ok(HttpReply {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
    }

    fn tcp(&self, host: &str, port: u16, timeout: Duration) -> Result<(), DialError> {
        let addr = join_host_port(host, port);
        let lookup = |reason: String| DialError {
            addr: addr.clone(),
            cause: DialCause::Lookup {
                host: host.to_string(),
                reason,
            },
        };
        let target = (host, port)
            .to_socket_addrs()
            .map_err(|e| lookup(e.to_string()))?
            .next()
            .ok_or_else(|| lookup("no such host".into()))?;
        TcpStream::connect_timeout(&target, timeout)
            .map(drop)
            .map_err(|e| dial_error(&addr, &e))
    }

    fn grpc(
        &self,
        host: &str,
        port: u16,
        service: &str,
        timeout: Duration,
    ) -> Result<Serving, GrpcError> {
        super::grpc::check(&join_host_port(host, port), service, timeout)
    }
}

#[cfg(test)]
pub mod fake {
    //! A scripted [`Handlers`]: answers from queues, records what was asked.
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakeHandlers {
        pub exec: Mutex<VecDeque<Result<ExecOutput, CriError>>>,
        pub http: Mutex<VecDeque<Result<HttpReply, HttpError>>>,
        pub tcp: Mutex<VecDeque<Result<(), DialError>>>,
        pub calls: Mutex<Vec<String>>,
    }

    impl FakeHandlers {
        fn log(&self, s: String) {
            self.calls.lock().unwrap().push(s);
        }
    }

    impl Handlers for FakeHandlers {
        fn exec(&self, id: &str, cmd: &[String], t: Duration) -> Result<ExecOutput, CriError> {
            self.log(format!("exec {id} {} {}s", cmd.join(" "), t.as_secs()));
            self.exec
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(ExecOutput {
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                    exit_code: 0,
                }))
        }
        fn http_get(&self, req: &HttpGet, ua: &str, _: Duration) -> Result<HttpReply, HttpError> {
            self.log(format!("get {} {ua}", req.url()));
            self.http
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Ok(HttpReply {
                    status: 200,
                    body: String::new(),
                }))
        }
        fn tcp(&self, host: &str, port: u16, _: Duration) -> Result<(), DialError> {
            self.log(format!("tcp {host}:{port}"));
            self.tcp.lock().unwrap().pop_front().unwrap_or(Ok(()))
        }
        fn grpc(
            &self,
            host: &str,
            port: u16,
            svc: &str,
            _: Duration,
        ) -> Result<Serving, GrpcError> {
            self.log(format!("grpc {host}:{port} {svc}"));
            Ok(Serving::Serving)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeHandlers;
    use super::*;
    use crate::cri::Target;

    fn get(port: u16) -> Action {
        Action::HttpGet(HttpGet {
            scheme: super::super::spec::Scheme::Http,
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: Vec::new(),
        })
    }

    fn exec_out(code: i32, out: &str, err: &str) -> Result<ExecOutput, CriError> {
        Ok(ExecOutput {
            stdout: out.as_bytes().to_vec(),
            stderr: err.as_bytes().to_vec(),
            exit_code: code,
        })
    }

    #[test]
    fn exec_probes_read_exit_codes_output_and_timeouts() {
        let h = FakeHandlers::default();
        let cmd = Action::Exec {
            command: vec!["cat".into(), "/tmp/ready".into()],
        };
        h.exec.lock().unwrap().extend([
            exec_out(0, "ok\n", ""),
            exec_out(
                1,
                "",
                "cat: can't open '/tmp/ready': No such file or directory\n",
            ),
            Err(CriError::Rpc {
                op: "exec in",
                target: Target::Container("c1".into()),
                code: Code::DeadlineExceeded,
                message: "timeout 1s exceeded".into(),
            }),
            Err(CriError::Rpc {
                op: "exec in",
                target: Target::Container("c1".into()),
                code: Code::NotFound,
                message: "gone".into(),
            }),
        ]);
        let t = Duration::from_secs(1);
        assert_eq!(probe(&h, "c1", &cmd, t), Outcome::Success("ok\n".into()));
        assert_eq!(
            probe(&h, "c1", &cmd, t),
            Outcome::Failure("cat: can't open '/tmp/ready': No such file or directory\n".into())
        );
        assert_eq!(
            probe(&h, "c1", &cmd, t),
            Outcome::Failure("command \"cat /tmp/ready\" timed out".into())
        );
        assert!(matches!(probe(&h, "c1", &cmd, t), Outcome::Error(_)));
        assert_eq!(h.calls.lock().unwrap()[0], "exec c1 cat /tmp/ready 1s");
    }

    #[test]
    fn http_probes_take_2xx_and_3xx_and_name_other_codes() {
        let h = FakeHandlers::default();
        h.http.lock().unwrap().extend([
            Ok(HttpReply { status: 204, body: "fine".into() }),
            Ok(HttpReply { status: 302, body: "elsewhere".into() }),
            Ok(HttpReply { status: 503, body: "secret".into() }),
            Err("Get \"http://127.0.0.1:1/healthz\": dial tcp 127.0.0.1:1: connect: connection refused".into()),
        ]);
        let t = Duration::from_secs(1);
        assert_eq!(probe(&h, "c", &get(80), t), Outcome::Success("fine".into()));
        assert_eq!(
            probe(&h, "c", &get(80), t),
            Outcome::Warning("Probe terminated redirects, Response body: elsewhere".into())
        );
        assert_eq!(
            probe(&h, "c", &get(80), t),
            Outcome::Failure("HTTP probe failed with statuscode: 503".into()),
            "the body never reaches the message"
        );
        assert!(
            matches!(probe(&h, "c", &get(1), t), Outcome::Failure(m) if m.contains("connection refused"))
        );
        assert_eq!(
            h.calls.lock().unwrap()[0],
            "get http://127.0.0.1:80/healthz kube-probe/1.28"
        );
    }

    #[test]
    fn hooks_fail_with_the_kubelets_messages() {
        let h = FakeHandlers::default();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}
        }))
        .unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        h.exec.lock().unwrap().push_back(exec_out(2, "out", "bad"));
        let cmd = Action::Exec {
            command: vec!["sh".into(), "-c".into(), "exit 2".into()],
        };
        assert_eq!(
            hook(&h, &pod, &c, "id", &cmd, Duration::ZERO).map_err(|e| e.to_string()),
            Err("Exec lifecycle hook ([sh -c exit 2]) for Container \"c\" in Pod \"p_ns(u1)\" failed - error: command 'sh -c exit 2' exited with 2: bad, message: \"outbad\"".into())
        );
        h.http.lock().unwrap().extend([
            Ok(HttpReply { status: 500, body: String::new() }),
            Err("Get \"http://127.0.0.1:80/healthz\": dial tcp 127.0.0.1:80: connect: connection refused".into()),
        ]);
        assert_eq!(
            hook(&h, &pod, &c, "id", &get(80), Duration::ZERO),
            Ok(HookDone::default()),
            "any answer will do"
        );
        assert_eq!(
            hook(&h, &pod, &c, "id", &get(80), Duration::ZERO).map_err(|e| e.to_string()),
            Err("HTTP lifecycle hook (/healthz) for Container \"c\" in Pod \"p_ns(u1)\" failed - error: Get \"http://127.0.0.1:80/healthz\": dial tcp 127.0.0.1:80: connect: connection refused".into())
        );
        assert!(h
            .calls
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .ends_with("kube-lifecycle/1.28"));
    }

    /// Serves scripted answers on 127.0.0.1, one connection each; the request heads it got.
    fn serve(answers: Vec<String>) -> (u16, std::sync::mpsc::Receiver<String>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((conn, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let _ = tx.send(head);
                let mut conn = conn;
                let answer = answer.replace("{port}", &port.to_string());
                let _ = conn.write_all(answer.as_bytes());
            }
        });
        (port, rx)
    }

    fn answer(status: &str, extra: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn real() -> RealHandlers {
        RealHandlers::new(Arc::new(crate::cri::FakeRuntime::new()))
    }

    fn http(port: u16, path: &str, headers: &[(&str, &str)]) -> HttpGet {
        HttpGet {
            scheme: super::super::spec::Scheme::Http,
            host: "127.0.0.1".into(),
            port,
            path: path.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn real_http_gets_send_the_kubelets_headers_and_follow_local_redirects() {
        let (port, heads) = serve(vec![
            answer("302 Found", "Location: /next\r\n", ""),
            answer("200 OK", "", "healthy"),
        ]);
        let reply = real()
            .http_get(
                &http(
                    port,
                    "/start?a=1",
                    &[
                        ("X-Probe", "1"),
                        ("X-Probe", "2"),
                        ("Host", "web.example"),
                        ("Host", "ignored.example"),
                    ],
                ),
                "kube-probe/1.28",
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(
            reply,
            HttpReply {
                status: 200,
                body: "healthy".into()
            }
        );
        let first = heads.recv().unwrap().to_ascii_lowercase();
        assert!(first.starts_with("get /start?a=1 http/1.1\r\n"), "{first}");
        assert!(!first.contains("ignored.example"), "{first}");
        for h in [
            "user-agent: kube-probe/1.28",
            "accept: */*",
            "x-probe: 1",
            "x-probe: 2",
            "host: web.example",
        ] {
            assert!(first.contains(h), "{h} in {first}");
        }
        let second = heads.recv().unwrap().to_ascii_lowercase();
        assert!(second.starts_with("get /next http/1.1\r\n"), "{second}");
    }

    #[test]
    fn real_http_gets_stop_at_a_redirect_elsewhere_and_after_ten() {
        let (port, _) = serve(vec![answer(
            "301 Moved Permanently",
            "Location: http://elsewhere.invalid/\r\n",
            "moved",
        )]);
        let reply = real()
            .http_get(
                &http(port, "/", &[]),
                "kube-probe/1.28",
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (301, "moved"));

        let (port, _) = serve(vec![answer("302 Found", "Location: /again\r\n", ""); 11]);
        let err = real()
            .http_get(
                &http(port, "/", &[]),
                "kube-probe/1.28",
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("Get \"http://127.0.0.1:{port}/again\": stopped after 10 redirects")
        );
    }

    #[test]
    fn real_http_and_tcp_name_a_refused_connection_like_go() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let err = real()
            .http_get(
                &http(port, "/x", &[]),
                "kube-probe/1.28",
                Duration::from_secs(2),
            )
            .unwrap_err();
        assert_eq!(
            err.message,
            format!("Get \"http://127.0.0.1:{port}/x\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        let err = real()
            .tcp("127.0.0.1", port, Duration::from_secs(2))
            .unwrap_err();
        assert_eq!(err.cause, DialCause::Refused);
        assert_eq!(
            err.to_string(),
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:8080/a/b?x=1";
        assert_eq!(resolve_location(base, "/c"), "http://127.0.0.1:8080/c");
        assert_eq!(resolve_location(base, "c"), "http://127.0.0.1:8080/a/c");
        assert_eq!(resolve_location(base, "//other/x"), "http://other/x");
        assert_eq!(resolve_location(base, "https://h:1/"), "https://h:1/");
        assert_eq!(origin("http://[::1]:80/x").1, "::1");
        assert_eq!(origin("http://Example.com:80/x").1, "example.com");
    }

    fn https(port: u16, headers: &[(&str, &str)]) -> Action {
        Action::HttpGet(HttpGet {
            scheme: Scheme::Https,
            host: "127.0.0.1".into(),
            port,
            path: "/hook".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    fn plain_answer(port: u16) -> HttpError {
        HttpError {
            message: format!(
                "Get \"https://127.0.0.1:{port}/hook\": http: server gave HTTP response to HTTPS client"
            ),
            plain_http_answer: true,
        }
    }

    #[test]
    fn an_https_hook_answered_in_plain_http_falls_back_to_http_without_authorization() {
        let h = FakeHandlers::default();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}
        }))
        .unwrap();
        let c: Container = serde_json::from_value(serde_json::json!({"name": "c"})).unwrap();
        let action = https(8443, &[("Authorization", "Bearer x"), ("X-A", "1")]);
        h.http.lock().unwrap().extend([
            Err(plain_answer(8443)),
            Ok(HttpReply {
                status: 500,
                body: String::new(),
            }),
        ]);
        assert_eq!(
            hook(&h, &pod, &c, "id", &action, Duration::ZERO),
            Ok(HookDone {
                http_fallback: Some("127.0.0.1:8443".into())
            })
        );
        let calls = h.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            [
                "get https://127.0.0.1:8443/hook kube-lifecycle/1.28",
                "get http://127.0.0.1:8443/hook kube-lifecycle/1.28"
            ]
        );
        // The fallback fails too: the first error is the hook's.
        h.http.lock().unwrap().extend([
            Err(plain_answer(8443)),
            Err("Get \"http://127.0.0.1:8443/hook\": EOF".into()),
        ]);
        let err = hook(&h, &pod, &c, "id", &action, Duration::ZERO)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("error: Get \"https://127.0.0.1:8443/hook\": http: server gave HTTP response to HTTPS client"),
            "{err}"
        );
        // Another TLS failure is not retried; neither is a plain-http answer to a probe.
        h.http.lock().unwrap().clear();
        h.calls.lock().unwrap().clear();
        h.http.lock().unwrap().push_back(Err(
            "Get \"https://127.0.0.1:8443/hook\": tls: bad certificate".into(),
        ));
        assert!(hook(&h, &pod, &c, "id", &action, Duration::ZERO).is_err());
        h.http.lock().unwrap().push_back(Err(plain_answer(8443)));
        assert!(matches!(
            probe(&h, "id", &action, Duration::from_secs(1)),
            Outcome::Failure(m) if m.ends_with("server gave HTTP response to HTTPS client")
        ));
        assert_eq!(h.calls.lock().unwrap().len(), 2);
    }

    #[test]
    fn real_https_gets_to_a_plain_http_server_are_told_apart_from_other_failures() {
        // A plain HTTP server answers a TLS ClientHello with 400, as Go's and most do.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        let Action::HttpGet(req) = https(port, &[]) else {
            unreachable!()
        };
        let err = real()
            .http_get(&req, "kube-lifecycle/1.28", Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err, plain_answer(port));
        // Nothing listening: a dial error, not a plain-http answer.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let Action::HttpGet(req) = https(closed, &[]) else {
            unreachable!()
        };
        let err = real()
            .http_get(&req, "kube-lifecycle/1.28", Duration::from_secs(2))
            .unwrap_err();
        assert!(!err.plain_http_answer, "{err:?}");
    }

    #[test]
    fn an_erroring_probe_is_run_up_to_three_times_a_failing_one_once() {
        let runs = std::cell::Cell::new(0);
        let out = with_retries(MAX_PROBE_RETRIES, || {
            runs.set(runs.get() + 1);
            Outcome::Error(format!("boom {}", runs.get()))
        });
        assert_eq!((runs.get(), out), (3, Outcome::Error("boom 3".into())));
        runs.set(0);
        let out = with_retries(MAX_PROBE_RETRIES, || {
            runs.set(runs.get() + 1);
            if runs.get() < 2 {
                Outcome::Error("transient".into())
            } else {
                Outcome::Failure("down".into())
            }
        });
        assert_eq!((runs.get(), out), (2, Outcome::Failure("down".into())));
        runs.set(0);
        let out = with_retries(MAX_PROBE_RETRIES, || {
            runs.set(runs.get() + 1);
            Outcome::Failure("down".into())
        });
        assert_eq!((runs.get(), out), (1, Outcome::Failure("down".into())));
    }
}
