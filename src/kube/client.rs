//! The one place HTTP happens: sends [`Request`]s to kube-apiserver with ureq.
//!
//! Owns the ureq `Agent` (one per API server, so connections are reused), the headers every
//! request carries (User-Agent, Accept, bearer token), per-request timeouts, retries with
//! backoff for what is safe to retry, reading watch streams line by line as events arrive, and
//! turning non-2xx answers into [`ApiError`]s, and counting every exchange in [`crate::metrics`]. It takes a ready TLS configuration (built from
//! the kubeconfig elsewhere) and never builds one. No other module may use ureq.

use std::io::{BufRead, BufReader, Read};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};
use serde::de::DeserializeOwned;

use crate::kubeconfig::Identity;

use super::backoff::BackoffPolicy;
use super::error::{ApiError, RequestRef, TransportPhase};
use super::request::{Request, RequestKind};
use super::watch::{decode_watch_line, WatchEvent};

/// At most this much of a response body is read (a full PodList of a busy node fits easily).
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;
/// At most this long a single watch line may be (etcd limits objects to 1.5 MiB).
const MAX_WATCH_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// Tunables of an [`ApiClient`].
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// Our node name, for the User-Agent.
    pub node_name: String,
    /// Whole-exchange timeout of a non-watch request, including reading the body.
    pub request_timeout: Duration,
    /// Timeout of connecting (TCP and TLS handshake).
    pub connect_timeout: Duration,
    /// A watch that receives no byte for this long is considered dead. The watch cache sends a
    /// bookmark about every minute (fixture 02e), so this should be well above that.
    pub watch_idle_timeout: Duration,
    /// Attempts per request, the first included (1 = never retry).
    pub max_attempts: u32,
    pub backoff: BackoffPolicy,
    /// How long a token read from a token file is used before the file is read again.
    pub token_file_ttl: Duration,
}

impl ClientOptions {
    /// Defaults: 30s requests, 10s connect, 2 min watch idle, 4 attempts, 1 min token cache.
    pub fn new(node_name: &str) -> ClientOptions {
        ClientOptions {
            node_name: node_name.to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            watch_idle_timeout: Duration::from_secs(120),
            max_attempts: 4,
            backoff: BackoffPolicy::default(),
            token_file_ttl: Duration::from_secs(60),
        }
    }
}

/// A 2xx answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// `vk-cri/VERSION (OS/ARCH) node/NAME`, with Go's architecture names. A User-Agent that does
/// not start with `curl`, `Wget` or `Mozilla/5.0` gets compact JSON (fixture 11d).
pub fn user_agent(version: &str, os: &str, arch: &str, node: &str) -> String {
    let arch = match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("vk-cri/{version} ({os}/{arch}) node/{node}")
}

/// Whether a failed request should be tried again: attempts remain, the error may go away, and
/// either repeating the request is harmless or the server certainly did not process it.
pub fn should_retry(
    kind: RequestKind,
    error: &ApiError,
    attempts_made: u32,
    max_attempts: u32,
) -> bool {
    attempts_made < max_attempts
        && error.is_retryable()
        && (kind.is_idempotent() || error.request_not_processed())
}

/// Whether a token read at `read_at` may still be used at `now`.
fn is_fresh(read_at: Instant, now: Instant, ttl: Duration) -> bool {
    now.saturating_duration_since(read_at) < ttl
}

struct CachedToken {
    token: String,
    read_at: Instant,
    /// Set after a 401: read the file again on next use, whatever its age.
    stale: bool,
}

struct TokenFile {
    path: PathBuf,
    ttl: Duration,
    cached: Mutex<Option<CachedToken>>,
}

impl TokenFile {
    fn lock(&self) -> MutexGuard<'_, Option<CachedToken>> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn token(&self, request: &RequestRef) -> Result<String, ApiError> {
        let now = Instant::now();
        let mut cached = self.lock();
        if let Some(c) = cached.as_ref() {
            if !c.stale && is_fresh(c.read_at, now, self.ttl) {
                return Ok(c.token.clone());
            }
        }
        let read = std::fs::read_to_string(&self.path).map_err(|e| e.to_string());
        let message = match read.map(|t| t.trim().to_string()) {
            Ok(token) if !token.is_empty() => {
                *cached = Some(CachedToken {
                    token: token.clone(),
                    read_at: now,
                    stale: false,
                });
                return Ok(token);
            }
            Ok(_) => "the file is empty".to_string(),
            Err(e) => e,
        };
        match cached.as_mut() {
            // A rotation in progress must not take the node down: keep the previous token, and
            // look at the file again after another TTL (so this is logged once per TTL).
            Some(c) => {
                warn!(
                    "token file unreadable, using the previous token path={} error={message}",
                    self.path.display()
                );
                c.read_at = now;
                c.stale = false;
                Ok(c.token.clone())
            }
            None => Err(ApiError::Credentials {
                request: request.clone(),
                path: self.path.clone(),
                message,
            }),
        }
    }

    fn invalidate(&self) {
        if let Some(c) = self.lock().as_mut() {
            c.stale = true;
        }
    }
}

enum Auth {
    /// No header: anonymous, or a client certificate inside the TLS configuration.
    None,
    Token(String),
    File(TokenFile),
}

/// The size of each input and output buffer of a connection, and the largest response header.
const HTTP_BUFFER: usize = 16 * 1024;

/// The API server client: one connection pool, one identity.
pub struct ApiClient {
    /// Replaced whole when the client certificate rotates ([`ApiClient::set_tls`]): requests
    /// already under way finish on the old one.
    agent: std::sync::RwLock<ureq::Agent>,
    /// Counts the agents: a watch opened under an older one ends at its next event.
    generation: Arc<std::sync::atomic::AtomicU64>,
    server: String,
    auth: Auth,
    options: ClientOptions,
    /// Tells waiting watches the server answers again.
    recovery: Recovery,
}

/// Whether the server is failing, and how often it came back: a watch backing off after an
/// outage retries as soon as any other request (the Lease, a status write) gets an answer,
/// rather than at the end of a backoff that grew to its cap during the outage.
#[derive(Debug, Default)]
struct Recovery {
    /// (failing, recoveries so far)
    state: std::sync::Mutex<(bool, u64)>,
    back: std::sync::Condvar,
}

impl Recovery {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, u64)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An answer came (`up`: one the server gave of its own accord, not a 5xx or 429), or
    /// none did.
    fn saw(&self, up: bool) {
        let mut s = self.lock();
        if !up {
            s.0 = true;
        } else if s.0 {
            *s = (false, s.1 + 1);
            self.back.notify_all();
        }
    }

    /// Sleeps `pause`, or until the server next comes back.
    fn pause(&self, pause: Duration) {
        let s = self.lock();
        let seen = s.1;
        let _ = self
            .back
            .wait_timeout_while(s, pause, |s| s.1 == seen)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

impl ApiClient {
    /// Sleeps `pause`, or less: until a request succeeds after others failed (the server is
    /// back). For a backoff that should end with the outage it waits out.
    pub fn pause_unless_recovered(&self, pause: Duration) {
        self.recovery.pause(pause);
    }

    /// A client for `server` (`https://host:port`, a path prefix allowed). `tls` comes from
    /// the kubeconfig (CA, client certificate for [`Identity::ClientCert`]); `identity` decides
    /// the `Authorization` header (a [`Identity::TokenFile`] is re-read every
    /// `options.token_file_ttl`, and at once after a 401).
    pub fn new(
        server: &str,
        tls: ureq::tls::TlsConfig,
        identity: &Identity,
        options: ClientOptions,
    ) -> ApiClient {
        let auth = match identity {
            Identity::Anonymous | Identity::ClientCert { .. } => Auth::None,
            Identity::Token(t) => Auth::Token(t.clone()),
            Identity::TokenFile(path) => Auth::File(TokenFile {
                path: path.clone(),
                ttl: options.token_file_ttl,
                cached: Mutex::new(None),
            }),
        };
        ApiClient {
            agent: std::sync::RwLock::new(agent(tls, &options)),
            generation: Arc::default(),
            server: server.trim_end_matches('/').to_string(),
            auth,
            options,
            recovery: Recovery::default(),
        }
    }

    /// New connections use `tls` from now on (a rotated client certificate). Requests under
    /// way finish on the old pair; an open watch ends cleanly at its next event or bookmark
    /// (its caller resumes it from its resourceVersion on a new connection), where the
    /// kubelet closes every connection at once.
    pub fn set_tls(&self, tls: ureq::tls::TlsConfig) {
        let next = agent(tls, &self.options);
        *self.agent.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn current_agent(&self) -> ureq::Agent {
        self.agent.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The agent of a client with this TLS configuration.
fn agent(tls: ureq::tls::TlsConfig, options: &ClientOptions) -> ureq::Agent {
    let agent_config = ureq::Agent::config_builder()
        .tls_config(tls)
        // Non-2xx answers carry a Status body that we decode ourselves.
        .http_status_as_error(false)
        .user_agent(user_agent(
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::env::consts::ARCH,
            &options.node_name,
        ))
        .accept("application/json")
        // kube-apiserver does not redirect; following one could leak the bearer token.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(options.connect_timeout))
        // ureq gives each connection 128 KiB in and 128 KiB out, twice over TLS (the socket
        // and the TLS layer): 512 KiB per connection, 1.5 MiB of an idle daemon's heap for
        // its three watches and its pool. The API server's headers are a few hundred bytes
        // and bodies stream through, so 16 KiB buffers cost nothing in speed (a header must fit
        // in half, so that a longer one is an error that says so).
        .input_buffer_size(HTTP_BUFFER)
        .output_buffer_size(HTTP_BUFFER)
        .max_response_header_size(HTTP_BUFFER / 2)
        .build();
    ureq::Agent::new_with_config(agent_config)
}

impl ApiClient {
    /// The server URL requests go to.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends `request` and returns its 2xx answer, retrying retryable failures with backoff
    /// (honouring `Retry-After`) up to `max_attempts`. A request that is not idempotent is only
    /// retried when the server certainly did not process it (connect failure, 429). After a 401
    /// a token file is re-read and the request sent once more.
    pub fn send(&self, request: &Request) -> Result<Response, ApiError> {
        let mut failures = 0u32;
        let mut reauthenticated = false;
        loop {
            let error = match self
                .exchange(request, false)
                .and_then(|r| read_answer(request, r))
            {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            if matches!(error, ApiError::Unauthorized { .. })
                && !reauthenticated
                && self.invalidate_token()
            {
                reauthenticated = true;
                continue;
            }
            failures += 1;
            if !should_retry(request.kind, &error, failures, self.options.max_attempts) {
                return Err(error);
            }
            let delay = self.options.backoff.delay(
                failures - 1,
                crate::random::fraction(),
                error.retry_after(),
            );
            debug!(
                "retrying API request kind={} attempt={} delay_ms={} error={error}",
                request.kind,
                failures + 1,
                delay.as_millis()
            );
            std::thread::sleep(delay);
        }
    }

    /// Opens a watch and returns its events as they arrive. Not retried: the caller's
    /// [`super::watch::Watcher`] decides how to resume. A non-2xx answer is an error here; a
    /// 410 during the stream arrives as an `ERROR` event instead (fixture 03a).
    pub fn watch<K: DeserializeOwned>(
        &self,
        request: &Request,
    ) -> Result<WatchStream<K>, ApiError> {
        let born = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let response = self.exchange(request, true)?;
        if !response.status().is_success() {
            let error = match read_answer(request, response) {
                Err(e) => e,
                Ok(r) => ApiError::Unexpected {
                    request: request.describe(),
                    code: r.status,
                    reason: None,
                    message: "unexpected answer to a watch".into(),
                },
            };
            if matches!(error, ApiError::Unauthorized { .. }) {
                self.invalidate_token();
            }
            return Err(error);
        }
        Ok(WatchStream {
            reader: BufReader::new(response.into_body().into_reader()),
            request: request.describe(),
            done: false,
            generation: Some((self.generation.clone(), born)),
            _object: PhantomData,
        })
    }

    fn invalidate_token(&self) -> bool {
        match &self.auth {
            Auth::File(f) => {
                f.invalidate();
                true
            }
            Auth::None | Auth::Token(_) => false,
        }
    }

    fn bearer(&self, request: &Request) -> Result<Option<String>, ApiError> {
        match &self.auth {
            Auth::None => Ok(None),
            Auth::Token(t) => Ok(Some(t.clone())),
            Auth::File(f) => f.token(&request.describe()).map(Some),
        }
    }

    /// One HTTP exchange, up to the response head.
    fn exchange(
        &self,
        request: &Request,
        watch: bool,
    ) -> Result<ureq::http::Response<ureq::Body>, ApiError> {
        let url = request.url(&self.server);
        let mut builder = ureq::http::Request::builder()
            .method(request.method.as_str())
            .uri(url.as_str());
        if let Some(content_type) = request.content_type {
            builder = builder.header("content-type", content_type);
        }
        if let Some(token) = self.bearer(request)? {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let encode = |e: ureq::http::Error| ApiError::Encode {
            request: request.describe(),
            message: e.to_string(),
        };
        let started = Instant::now();
        let result = match &request.body {
            Some(body) => {
                let req = builder.body(body.clone()).map_err(encode)?;
                let agent = self.current_agent();
                agent.run(self.configure(&agent, req, watch))
            }
            None => {
                let req = builder.body(()).map_err(encode)?;
                let agent = self.current_agent();
                agent.run(self.configure(&agent, req, watch))
            }
        };
        // The one place API requests are counted: every attempt, as client-go counts them
        // (`<error>` when no answer came back; a watch up to its response head).
        let code = match &result {
            Ok(r) => r.status().as_u16().to_string(),
            Err(_) => "<error>".to_string(),
        };
        crate::metrics::record_rest_request(
            metrics_host(&self.server),
            request.method.as_str(),
            &code,
            started.elapsed(),
        );
        self.recovery.saw(result.as_ref().is_ok_and(|r| {
            let status = r.status().as_u16();
            status < 500 && status != 429
        }));
        result.map_err(|e| transport_error(request, e, false))
    }

    fn configure<S: ureq::AsSendBody>(
        &self,
        agent: &ureq::Agent,
        req: ureq::http::Request<S>,
        watch: bool,
    ) -> ureq::http::Request<S> {
        let config = agent.configure_request(req);
        if watch {
            // A watch lasts as long as the server keeps it open (timeoutSeconds); only silence
            // means trouble.
            config
                .timeout_recv_response(Some(self.options.request_timeout))
                .timeout_per_read(Some(self.options.watch_idle_timeout))
                .build()
        } else {
            config
                .timeout_global(Some(self.options.request_timeout))
                .build()
        }
    }
}

/// The `host` label of the request metrics: `host:port` of the server URL, as client-go uses.
fn metrics_host(server: &str) -> &str {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Reads the body; a 2xx is a [`Response`], anything else the [`ApiError`] its Status says.
fn read_answer(
    request: &Request,
    response: ureq::http::Response<ureq::Body>,
) -> Result<Response, ApiError> {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .into_body()
        .into_with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_vec()
        .map_err(|e| transport_error(request, e, true))?;
    if (200..300).contains(&status) {
        Ok(Response { status, body })
    } else {
        Err(ApiError::from_response(
            request.describe(),
            status,
            &body,
            retry_after.as_deref(),
        ))
    }
}

/// Classifies a ureq failure: did the request certainly not reach the server (connect phase)?
fn transport_error(request: &Request, error: ureq::Error, after_head: bool) -> ApiError {
    use std::io::ErrorKind;
    let message = error.to_string();
    let phase = match &error {
        _ if after_head => TransportPhase::Exchange,
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::RequireHttpsOnly(_) => {
            return ApiError::Encode {
                request: request.describe(),
                message,
            }
        }
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::ConnectProxyFailed(_)
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            TransportPhase::Connect
        }
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            ) =>
        {
            TransportPhase::Connect
        }
        _ => TransportPhase::Exchange,
    };
    ApiError::Transport {
        request: request.describe(),
        phase,
        message,
    }
}

/// A watch response, read one NDJSON line (one event) at a time as the server flushes them.
/// Ends with `None` on a clean end of the stream; yields one `Err` and then `None` when the
/// connection breaks, goes idle for too long, or sends something that is not a watch event.
pub struct WatchStream<K> {
    reader: BufReader<ureq::BodyReader<'static>>,
    request: RequestRef,
    done: bool,
    /// The client's agent generation and the one this watch was opened under: once they
    /// differ (the certificate rotated), the stream ends before reading further.
    generation: Option<(Arc<std::sync::atomic::AtomicU64>, u64)>,
    _object: PhantomData<fn() -> K>,
}

impl<K: DeserializeOwned> Iterator for WatchStream<K> {
    type Item = Result<WatchEvent<K>, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some((now, born)) = &self.generation {
            if now.load(std::sync::atomic::Ordering::SeqCst) != *born {
                self.done = true;
            }
        }
        while !self.done {
            let mut line = Vec::new();
            let read = (&mut self.reader)
                .take(MAX_WATCH_LINE_BYTES)
                .read_until(b'\n', &mut line);
            match read {
                Ok(0) => self.done = true,
                Ok(_) if !line.ends_with(b"\n") && line.len() as u64 >= MAX_WATCH_LINE_BYTES => {
                    self.done = true;
                    return Some(Err(ApiError::Decode {
                        request: self.request.clone(),
                        what: "watch event",
                        message: format!("line longer than {MAX_WATCH_LINE_BYTES} bytes"),
                    }));
                }
                Ok(_) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let event = decode_watch_line(&line).map_err(|e| ApiError::Decode {
                        request: self.request.clone(),
                        what: "watch event",
                        message: e.to_string(),
                    });
                    if event.is_err() {
                        self.done = true;
                    }
                    return Some(event);
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(ApiError::Transport {
                        request: self.request.clone(),
                        phase: TransportPhase::Exchange,
                        message: e.to_string(),
                    }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::api::KubeApi;
    use crate::kube::request;
    use k8s_openapi::api::core::v1::{Event, Node, Pod};
    use std::collections::VecDeque;
    use std::io::Write;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::path::Path;
    use std::sync::mpsc;
    use std::sync::{Arc, Mutex};
    use std::thread;

    fn fixture(dir: &str, file: &str) -> Vec<u8> {
        std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/apiserver")
                .join(dir)
                .join(file),
        )
        .unwrap()
    }

    /// What the loopback server saw.
    #[derive(Clone, Debug)]
    struct Seen {
        head: String,
        body: Vec<u8>,
        connection: usize,
    }

    impl Seen {
        fn request_line(&self) -> &str {
            self.head.lines().next().unwrap_or("")
        }
        fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        }
    }

    /// What the server does with the next request.
    enum Act {
        /// Write these bytes; keep the connection for more requests if `keep`.
        Reply { bytes: Vec<u8>, keep: bool },
        /// Write the bytes in parts, waiting for a signal before each part after the first.
        Parts {
            parts: Vec<Vec<u8>>,
            go: mpsc::Receiver<()>,
        },
        /// Close the connection without answering.
        Close,
    }

    fn reply(status: &str, body: &[u8], extra: &str) -> Act {
        let mut bytes = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Act::Reply { bytes, keep: true }
    }

    fn chunked_head() -> Vec<u8> {
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec()
    }

    fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => buf.push(byte[0]),
                _ => return None,
            }
        }
        let head = String::from_utf8_lossy(&buf).to_string();
        let len = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        Some((head, body))
    }

    /// A scripted HTTP/1.1 server on 127.0.0.1: one action per request, in order.
    struct Server {
        addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        fn start(acts: Vec<Act>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let acts = Arc::new(Mutex::new(VecDeque::from(acts)));
            let seen2 = seen.clone();
            thread::spawn(move || {
                for (connection, stream) in listener.incoming().enumerate() {
                    let Ok(mut stream) = stream else { return };
                    let acts = acts.clone();
                    let seen = seen2.clone();
                    thread::spawn(move || loop {
                        let Some((head, body)) = read_request(&mut stream) else {
                            return;
                        };
                        seen.lock().unwrap().push(Seen {
                            head,
                            body,
                            connection,
                        });
                        let act = acts.lock().unwrap().pop_front();
                        match act {
                            Some(Act::Reply { bytes, keep }) => {
                                if stream.write_all(&bytes).is_err() || !keep {
                                    return;
                                }
                            }
                            Some(Act::Parts { parts, go }) => {
                                for (i, part) in parts.iter().enumerate() {
                                    if i > 0 && go.recv().is_err() {
                                        return;
                                    }
                                    if stream.write_all(part).is_err() {
                                        return;
                                    }
                                    let _ = stream.flush();
                                }
                                return;
                            }
                            Some(Act::Close) | None => return,
                        }
                    });
                }
            });
            Server { addr, seen }
        }

        fn url(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn options() -> ClientOptions {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            watch_idle_timeout: Duration::from_secs(5),
            max_attempts: 3,
            backoff: BackoffPolicy {
                initial: Duration::from_millis(5),
                max: Duration::from_secs(2),
                jitter: 0.0,
            },
            ..ClientOptions::new("vk-node")
        }
    }

    fn client(server: &Server, identity: Identity) -> ApiClient {
        ApiClient::new(
            &server.url(),
            ureq::tls::TlsConfig::default(),
            &identity,
            options(),
        )
    }

    #[test]
    fn metrics_host_is_host_and_port() {
        assert_eq!(metrics_host("https://10.0.0.1:6443"), "10.0.0.1:6443");
        assert_eq!(metrics_host("https://api.example/prefix"), "api.example");
    }

    #[test]
    fn user_agent_names_version_platform_and_node() {
        assert_eq!(
            user_agent("0.1.0", "linux", "x86_64", "vk-node"),
            "vk-cri/0.1.0 (linux/amd64) node/vk-node"
        );
        assert_eq!(
            user_agent("1.2.3", "linux", "aarch64", "n"),
            "vk-cri/1.2.3 (linux/arm64) node/n"
        );
    }

    #[test]
    fn a_backoff_pause_ends_when_the_server_answers_again() {
        let r = Arc::new(Recovery::default());
        // No outage: the pause is slept whole, and answers while healthy wake nobody.
        let t = Instant::now();
        r.saw(true);
        r.pause(Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(50));
        // A failure, then an answer from another thread: the long pause ends early.
        r.saw(false);
        let waker = r.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.saw(false);
            waker.saw(true);
        });
        let t = Instant::now();
        r.pause(Duration::from_secs(30));
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        h.join().unwrap();
    }

    #[test]
    fn retry_decision_table() {
        let r = request::get_node("n").describe();
        let server = ApiError::ServerError {
            request: r.clone(),
            code: 500,
            reason: None,
            message: String::new(),
            retry_after: None,
        };
        let throttled = ApiError::TooManyRequests {
            request: r.clone(),
            message: String::new(),
            retry_after: None,
        };
        let refused = ApiError::Transport {
            request: r.clone(),
            phase: TransportPhase::Connect,
            message: String::new(),
        };
        let reset = ApiError::Transport {
            request: r.clone(),
            phase: TransportPhase::Exchange,
            message: String::new(),
        };
        let forbidden = ApiError::Forbidden {
            request: r,
            message: String::new(),
        };
        use RequestKind::*;
        let cases = [
            (GetNode, &server, 1, true),
            (GetNode, &server, 3, false),
            (GetNode, &reset, 1, true),
            (GetNode, &forbidden, 1, false),
            (CreateNode, &server, 1, false),
            (CreateNode, &reset, 1, false),
            (CreateNode, &refused, 1, true),
            (CreateEvent, &throttled, 1, true),
            (CreateLease, &forbidden, 1, false),
            (UpdateLease, &server, 2, true),
            (CreateToken, &server, 1, true),
        ];
        for (kind, error, attempts, want) in cases {
            assert_eq!(
                should_retry(kind, error, attempts, 3),
                want,
                "{kind} after {attempts}: {error:?}"
            );
        }
    }

    #[test]
    fn token_freshness() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(60);
        assert!(is_fresh(t0, t0, ttl));
        assert!(is_fresh(t0, t0 + Duration::from_secs(59), ttl));
        assert!(!is_fresh(t0, t0 + Duration::from_secs(60), ttl));
        // A clock that appears to go backwards is still fresh, never a panic.
        assert!(is_fresh(t0 + Duration::from_secs(5), t0, ttl));
    }

    #[test]
    fn random_fraction_is_in_range() {
        for _ in 0..100 {
            let r = crate::random::fraction();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }

    #[test]
    fn get_sends_headers_and_decodes() {
        let server = Server::start(vec![reply(
            "200 OK",
            &fixture("04d-node-get", "response-body.json"),
            "",
        )]);
        let node = client(&server, Identity::Anonymous)
            .get_node("vk-node")
            .unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("vk-node"));
        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].request_line(), "GET /api/v1/nodes/vk-node HTTP/1.1");
        assert_eq!(
            seen[0].header("accept").as_deref(),
            Some("application/json")
        );
        let ua = seen[0].header("user-agent").unwrap();
        assert!(ua.starts_with("vk-cri/0.1.0 (linux/"), "{ua}");
        assert!(ua.ends_with(") node/vk-node"), "{ua}");
        assert_eq!(seen[0].header("authorization"), None);
    }

    #[test]
    fn connections_are_reused() {
        let body = fixture("04d-node-get", "response-body.json");
        let server = Server::start(vec![
            reply("200 OK", &body, ""),
            reply("200 OK", &body, ""),
            reply("200 OK", &body, ""),
        ]);
        let api = client(&server, Identity::Anonymous);
        for _ in 0..3 {
            api.get_node("vk-node").unwrap();
        }
        let seen = server.seen();
        assert_eq!(seen.len(), 3);
        assert!(seen.iter().all(|s| s.connection == 0), "{seen:?}");
    }

    #[test]
    fn body_and_content_type_are_sent() {
        let server = Server::start(vec![reply(
            "200 OK",
            &fixture(
                "02d-node-delete-pod-w1-grace0-uid-precondition",
                "response-body.json",
            ),
            "",
        )]);
        let pod: Pod = client(&server, Identity::Token("secret-token".into()))
            .delete_pod("fixtures", "w1", "c07afab5-5f4d-4c4a-98c4-269e16c533d3", 0)
            .unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("w1"));
        let seen = &server.seen()[0];
        assert_eq!(
            seen.request_line(),
            "DELETE /api/v1/namespaces/fixtures/pods/w1 HTTP/1.1"
        );
        assert_eq!(
            seen.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            seen.header("authorization").as_deref(),
            Some("Bearer secret-token")
        );
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(
            body["preconditions"]["uid"],
            "c07afab5-5f4d-4c4a-98c4-269e16c533d3"
        );
        assert_eq!(body["gracePeriodSeconds"], 0);
    }

    #[test]
    fn server_error_then_success_is_retried() {
        let status500 = fixture(
            "12a-admin-pod-log-nothing-listening-on-10250",
            "response-body.json",
        );
        let server = Server::start(vec![
            reply("500 Internal Server Error", &status500, ""),
            reply("200 OK", &fixture("04d-node-get", "response-body.json"), ""),
        ]);
        let node = client(&server, Identity::Anonymous).get_node("vk-node");
        assert!(node.is_ok(), "{node:?}");
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn connection_closed_without_answer_is_retried_for_get() {
        let server = Server::start(vec![
            Act::Close,
            reply("200 OK", &fixture("04d-node-get", "response-body.json"), ""),
        ]);
        let node = client(&server, Identity::Anonymous).get_node("vk-node");
        assert!(node.is_ok(), "{node:?}");
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn connection_closed_without_answer_is_not_retried_for_create() {
        let server = Server::start(vec![
            Act::Close,
            reply(
                "201 Created",
                &fixture("04b-node-create-201", "response-body.json"),
                "",
            ),
        ]);
        let node: Node =
            serde_json::from_slice(&fixture("04b-node-create-201", "response-body.json")).unwrap();
        let err = client(&server, Identity::Anonymous)
            .create_node(&node)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Transport {
                    phase: TransportPhase::Exchange,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn retries_are_bounded() {
        let status500 = fixture(
            "12a-admin-pod-log-nothing-listening-on-10250",
            "response-body.json",
        );
        let server = Server::start(vec![
            reply("500 Internal Server Error", &status500, ""),
            reply("500 Internal Server Error", &status500, ""),
            reply("500 Internal Server Error", &status500, ""),
            reply("200 OK", b"{}", ""),
        ]);
        let err = client(&server, Identity::Anonymous)
            .get_node("vk-node")
            .unwrap_err();
        assert!(
            matches!(err, ApiError::ServerError { code: 500, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), 3, "max_attempts = 3");
    }

    #[test]
    fn non_idempotent_post_is_not_retried_after_a_server_error() {
        let status500 = fixture(
            "12a-admin-pod-log-nothing-listening-on-10250",
            "response-body.json",
        );
        let server = Server::start(vec![
            reply("500 Internal Server Error", &status500, ""),
            reply(
                "201 Created",
                &fixture("04b-node-create-201", "response-body.json"),
                "",
            ),
        ]);
        let node: Node =
            serde_json::from_slice(&fixture("04b-node-create-201", "response-body.json")).unwrap();
        let err = client(&server, Identity::Anonymous)
            .create_node(&node)
            .unwrap_err();
        assert!(
            matches!(err, ApiError::ServerError { code: 500, .. }),
            "{err:?}"
        );
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn too_many_requests_honours_retry_after_even_for_post() {
        let throttled = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#;
        let server = Server::start(vec![
            reply("429 Too Many Requests", throttled, "Retry-After: 1\r\n"),
            reply(
                "201 Created",
                &fixture("08a-event-core-v1-create-201", "response-body.json"),
                "",
            ),
        ]);
        let event: Event = serde_json::from_slice(&fixture(
            "08a-event-core-v1-create-201",
            "response-body.json",
        ))
        .unwrap();
        let started = Instant::now();
        let created = client(&server, Identity::Anonymous)
            .create_event("fixtures", &event)
            .unwrap();
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After: 1"
        );
        assert_eq!(created.reason.as_deref(), Some("Started"));
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn connect_failure_is_retried_even_for_post() {
        // Find a free port, then start listening on it only after the first attempt failed.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let mut opts = options();
        opts.backoff.initial = Duration::from_millis(300);
        opts.max_attempts = 4;
        let api = ApiClient::new(
            &url,
            ureq::tls::TlsConfig::default(),
            &Identity::Anonymous,
            opts,
        );
        let body = fixture("05a-lease-create-201", "response-body.json");
        let late = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
            let (mut stream, _) = listener.accept().unwrap();
            let (head, _) = read_request(&mut stream).unwrap();
            let Act::Reply { bytes, .. } = reply("201 Created", &body, "") else {
                unreachable!()
            };
            stream.write_all(&bytes).unwrap();
            head
        });
        let lease: k8s_openapi::api::coordination::v1::Lease =
            serde_json::from_slice(&fixture("05a-lease-create-201", "response-body.json")).unwrap();
        let created = api.create_lease(&lease);
        assert!(created.is_ok(), "{created:?}");
        let head = late.join().unwrap();
        assert!(head
            .starts_with("POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases "));
    }

    #[test]
    fn connection_refused_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut opts = options();
        opts.max_attempts = 1;
        let api = ApiClient::new(
            &format!("http://127.0.0.1:{port}"),
            ureq::tls::TlsConfig::default(),
            &Identity::Anonymous,
            opts,
        );
        let err = api.get_node("vk-node").unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::Transport {
                    phase: TransportPhase::Connect,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .starts_with("failed to GET /api/v1/nodes/vk-node: cannot connect"));
    }

    #[test]
    fn client_errors_are_decoded_and_not_retried() {
        let server = Server::start(vec![
            reply(
                "403 Forbidden",
                &fixture("07e-configmap-get-unreferenced-403", "response-body.json"),
                "",
            ),
            reply(
                "404 Not Found",
                &fixture("07a-pod-get-missing-404", "response-body.json"),
                "",
            ),
        ]);
        let api = client(&server, Identity::Anonymous);
        let err = api.get_configmap("fixtures", "cm-unused").unwrap_err();
        match &err {
            ApiError::Forbidden { request, message } => {
                assert_eq!(
                    request.to_string(),
                    "GET /api/v1/namespaces/fixtures/configmaps/cm-unused"
                );
                assert!(message
                    .ends_with("no relationship found between node 'vk-node' and this object"));
            }
            other => panic!("{other:?}"),
        }
        let err = api.get_pod("fixtures", "does-not-exist").unwrap_err();
        assert!(matches!(err, ApiError::NotFound { .. }), "{err:?}");
        assert_eq!(server.seen().len(), 2);
    }

    #[test]
    fn token_file_is_cached_and_reread_after_401() {
        let dir = std::env::temp_dir().join(format!("vk-cri-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "t1\n").unwrap();
        let unauthorized = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;
        let node = fixture("04d-node-get", "response-body.json");
        let server = Server::start(vec![
            reply("200 OK", &node, ""),
            reply("200 OK", &node, ""),
            reply("401 Unauthorized", unauthorized, ""),
            reply("200 OK", &node, ""),
        ]);
        let api = client(&server, Identity::TokenFile(path.clone()));
        api.get_node("vk-node").unwrap();
        std::fs::write(&path, "t2\n").unwrap();
        // Within the TTL the cached token is used.
        api.get_node("vk-node").unwrap();
        // A 401 makes the client re-read the file and try once more.
        api.get_node("vk-node").unwrap();
        let tokens: Vec<Option<String>> = server
            .seen()
            .iter()
            .map(|s| s.header("authorization"))
            .collect();
        assert_eq!(
            tokens,
            [
                Some("Bearer t1".to_string()),
                Some("Bearer t1".to_string()),
                Some("Bearer t1".to_string()),
                Some("Bearer t2".to_string())
            ]
        );
        // A missing file without a cached token is a credentials error.
        let missing = ApiClient::new(
            &server.url(),
            ureq::tls::TlsConfig::default(),
            &Identity::TokenFile(dir.join("nope")),
            options(),
        );
        let err = missing.get_node("vk-node").unwrap_err();
        assert!(matches!(err, ApiError::Credentials { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn token_file_rotation_and_fallback() {
        let dir = std::env::temp_dir().join(format!("vk-cri-token-rot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "t1").unwrap();
        let node = fixture("04d-node-get", "response-body.json");
        let server = Server::start(vec![
            reply("200 OK", &node, ""),
            reply("200 OK", &node, ""),
            reply("200 OK", &node, ""),
        ]);
        let mut opts = options();
        opts.token_file_ttl = Duration::ZERO;
        let api = ApiClient::new(
            &server.url(),
            ureq::tls::TlsConfig::default(),
            &Identity::TokenFile(path.clone()),
            opts,
        );
        api.get_node("vk-node").unwrap();
        // Expired cache: the rotated token is picked up.
        std::fs::write(&path, "t2").unwrap();
        api.get_node("vk-node").unwrap();
        // The file vanished mid-rotation: the previous token is still used.
        std::fs::remove_file(&path).unwrap();
        api.get_node("vk-node").unwrap();
        let tokens: Vec<Option<String>> = server
            .seen()
            .iter()
            .map(|s| s.header("authorization"))
            .collect();
        assert_eq!(
            tokens,
            [
                Some("Bearer t1".to_string()),
                Some("Bearer t2".to_string()),
                Some("Bearer t2".to_string())
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A server answering fixture 02's watch: its first event, then the rest once `tx` sends.
    fn watch_in_two_parts() -> (Server, mpsc::Sender<()>) {
        let raw = fixture("02-pods-watch", "response-body.raw");
        // Split after the first chunk ("945\r\n{…}\n\r\n").
        let size_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..size_end]).unwrap(), 16).unwrap();
        let first_len = size_end + 2 + size + 2;
        let (tx, rx) = mpsc::channel();
        let mut first = chunked_head();
        first.extend_from_slice(&raw[..first_len]);
        let server = Server::start(vec![Act::Parts {
            parts: vec![first, raw[first_len..].to_vec()],
            go: rx,
        }]);
        (server, tx)
    }

    #[test]
    fn watch_reads_events_as_they_arrive() {
        let (server, tx) = watch_in_two_parts();
        let api = client(&server, Identity::Anonymous);
        let req = request::watch_pods_on_node(
            "vk-node",
            &request::WatchOptions {
                resource_version: Some("2691".into()),
                allow_bookmarks: true,
                timeout_seconds: Some(20),
            },
        );
        let mut stream = api.watch_pods(&req).unwrap();
        // The first event is delivered before the server has sent anything else.
        match stream.next() {
            Some(Ok(WatchEvent::Added(p))) => assert_eq!(p.metadata.name.as_deref(), Some("w1")),
            other => panic!("{other:?}"),
        }
        tx.send(()).unwrap();
        let rest: Vec<_> = stream.by_ref().collect::<Result<_, _>>().unwrap();
        assert_eq!(rest.len(), 6);
        assert_eq!(
            rest[5],
            WatchEvent::Bookmark {
                resource_version: "2700".into()
            }
        );
        assert!(stream.next().is_none(), "clean end stays ended");
        assert_eq!(
            server.seen()[0].request_line(),
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&resourceVersion=2691&allowWatchBookmarks=true&timeoutSeconds=20 HTTP/1.1"
        );
    }

    #[test]
    fn a_watch_opened_before_the_certificate_rotated_ends_at_its_next_event() {
        let (server, tx) = watch_in_two_parts();
        let api = client(&server, Identity::Anonymous);
        let req = request::watch_pods_on_node("vk-node", &request::WatchOptions::default());
        let mut stream = api.watch_pods(&req).unwrap();
        assert!(matches!(stream.next(), Some(Ok(WatchEvent::Added(_)))));
        // The pair rotates: what was read is kept, the stream ends cleanly for the caller to
        // resume on a new connection with the new pair.
        api.set_tls(ureq::tls::TlsConfig::default());
        tx.send(()).unwrap();
        assert!(stream.next().is_none());
        assert!(stream.next().is_none());
        // A watch opened after the rotation reads on.
        assert_eq!(api.generation.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    fn watch_raw(raw: Vec<u8>, idle: Duration) -> Vec<Result<WatchEvent<Pod>, ApiError>> {
        let (_tx, rx) = mpsc::channel();
        let mut bytes = chunked_head();
        bytes.extend_from_slice(&raw);
        let server = Server::start(vec![Act::Parts {
            parts: vec![bytes],
            go: rx,
        }]);
        let mut opts = options();
        opts.watch_idle_timeout = idle;
        let api = ApiClient::new(
            &server.url(),
            ureq::tls::TlsConfig::default(),
            &Identity::Anonymous,
            opts,
        );
        let req = request::watch_pods_on_node("vk-node", &Default::default());
        let stream = api.watch::<Pod>(&req).unwrap();
        stream.collect()
    }

    #[test]
    fn watch_error_event_then_end() {
        let events = watch_raw(
            fixture(
                "03a-pods-watch-rv1-too-old-410-error-event",
                "response-body.raw",
            ),
            Duration::from_secs(5),
        );
        assert_eq!(events.len(), 1);
        let Ok(WatchEvent::Error(status)) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(status["reason"], "Expired");
    }

    #[test]
    fn watch_with_no_events_ends_cleanly() {
        let events = watch_raw(
            fixture("03g-pods-watch-rv-too-large", "response-body.raw"),
            Duration::from_secs(5),
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn watch_replays_02e_split_across_reads() {
        let events = watch_raw(
            fixture(
                "02e-pods-watch-rv0-long-periodic-bookmark",
                "response-body.raw",
            ),
            Duration::from_secs(5),
        );
        assert_eq!(events.len(), 12);
        assert!(events.iter().all(Result::is_ok));
    }

    #[test]
    fn dropped_connection_mid_stream_is_an_error() {
        let raw = fixture("02-pods-watch", "response-body.raw");
        // The first event and half of the second chunk, then the server goes away.
        let cut = raw.windows(4).position(|w| w == b"968\r").unwrap() + 200;
        let events = watch_raw(raw[..cut].to_vec(), Duration::from_secs(5));
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(events[0], Ok(WatchEvent::Added(_))));
        assert!(
            matches!(
                &events[1],
                Err(ApiError::Transport {
                    phase: TransportPhase::Exchange,
                    ..
                })
            ),
            "{:?}",
            events[1]
        );
    }

    #[test]
    fn silent_watch_times_out() {
        let (_tx, rx) = mpsc::channel::<()>();
        let server = Server::start(vec![Act::Parts {
            parts: vec![chunked_head(), Vec::new()],
            go: rx,
        }]);
        let mut opts = options();
        opts.watch_idle_timeout = Duration::from_millis(300);
        let api = ApiClient::new(
            &server.url(),
            ureq::tls::TlsConfig::default(),
            &Identity::Anonymous,
            opts,
        );
        let req = request::watch_pods_on_node("vk-node", &Default::default());
        let started = Instant::now();
        let events: Vec<_> = api.watch::<Pod>(&req).unwrap().collect();
        assert_eq!(events.len(), 1);
        assert!(
            matches!(events[0], Err(ApiError::Transport { .. })),
            "{events:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
        drop(_tx);
    }

    #[test]
    fn watch_http_errors_fail_the_open() {
        let server = Server::start(vec![reply(
            "422 Unprocessable Entity",
            &fixture("03e-pods-watch-with-rvmatch-invalid", "response-body.json"),
            "",
        )]);
        let api = client(&server, Identity::Anonymous);
        let req = request::watch_pods_on_node("vk-node", &Default::default());
        let err = api.watch_pods(&req).err().unwrap();
        assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn garbage_line_ends_the_stream_with_a_decode_error() {
        let events = watch_raw(
            b"6\r\nhello\n\r\n0\r\n\r\n".to_vec(),
            Duration::from_secs(5),
        );
        assert_eq!(events.len(), 1);
        assert!(matches!(
            events[0],
            Err(ApiError::Decode {
                what: "watch event",
                ..
            })
        ));
    }

    #[test]
    fn list_page_over_http() {
        let server = Server::start(vec![reply(
            "200 OK",
            &fixture("01c-pods-list-by-node-limit1-page1", "response-body.json"),
            "",
        )]);
        let api = client(&server, Identity::Anonymous);
        let req = request::list_pods_on_node(
            "vk-node",
            &request::ListOptions {
                limit: Some(1),
                ..Default::default()
            },
        );
        let page = api.list_pods_page(&req).unwrap();
        assert_eq!(page.items.len(), 1);
        assert!(page.continue_token.is_some());
        assert_eq!(
            server.seen()[0].request_line(),
            "GET /api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=1 HTTP/1.1"
        );
    }
}
