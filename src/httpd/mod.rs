//! A small blocking HTTP/1.1 server on rustls 0.23 (ring) and `httparse`: one accept thread and
//! one thread per connection (bounded; `503` beyond the bound), keep-alive, deadlines on every
//! read and write (a slow header trickle cannot hold a thread: slowloris), request bodies with a
//! size limit (Content-Length and chunked), streamed chunked responses flushed per chunk, and
//! protocol upgrades handing back a full-duplex connection split into reader and writer halves.
//!
//! It serves both the fake API server in the tests and the kubelet API on :10250.
//!
//! Owns: sockets, TLS, HTTP/1.1 framing and connection lifetime. Must not route, authenticate
//! beyond TLS client-certificate verification, or know Kubernetes: that is the handler's job.
//!
//! ```text
//!  accept thread ──(bound ok)──▶ connection thread: [read head ─▶ read body ─▶ handler ─▶ answer]*
//!        │                                                  │ send / chunked / upgrade (101)
//!        └──(over the bound)──▶ short refusal thread: 503    └─▶ keep-alive? loop : close
//! ```

mod conn;
pub(crate) mod request;
mod response;
mod tls;
mod transport;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub use request::{parse_query, Request};
pub use response::{reason_phrase, ChunkedWriter, Responder, Response};
pub use tls::{ClientAuth, PeerIdentity, ServingCert, TlsSetup};
pub use transport::{Upgraded, UpgradedReader, UpgradedWriter};

use transport::{DropHook, Transport};

/// Errors of the HTTP server and of answering through it.
#[derive(Debug, thiserror::Error)]
pub enum HttpdError {
    #[error("failed to bind {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("failed to load {what}: {reason}")]
    Certificate { what: String, reason: String },
    #[error("failed to configure tls {what}")]
    Tls {
        what: String,
        #[source]
        source: rustls::Error,
    },
    #[error("failed to start accepting on {addr}")]
    Accept {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("server on {addr} is already serving")]
    AlreadyServing { addr: SocketAddr },
    #[error("invalid response header {name}")]
    InvalidHeader { name: String },
    #[error("invalid response status {status}")]
    InvalidStatus { status: u16 },
    #[error("peer went away")]
    PeerGone {
        #[source]
        source: io::Error,
    },
    #[error("timed out writing to the peer")]
    WriteTimeout,
    #[error("connection i/o failed")]
    Io {
        #[source]
        source: io::Error,
    },
}

impl HttpdError {
    pub(crate) fn from_io(e: io::Error) -> HttpdError {
        use io::ErrorKind::*;
        match e.kind() {
            TimedOut => HttpdError::WriteTimeout,
            BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | WriteZero
            | NotConnected => HttpdError::PeerGone { source: e },
            _ => HttpdError::Io { source: e },
        }
    }
}

/// What serves the requests. Called on the connection's own thread; it may block (streaming,
/// upgraded connections) for as long as it needs.
pub trait Handler: Send + Sync {
    fn handle(&self, request: Request, responder: Responder<'_>);
}

impl<F> Handler for F
where
    F: Fn(Request, Responder<'_>) + Send + Sync,
{
    fn handle(&self, request: Request, responder: Responder<'_>) {
        self(request, responder);
    }
}

/// Limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Connections served at once (upgraded ones included); more get `503`.
    pub max_connections: usize,
    /// From the first byte of a request (or the TLS handshake) to the end of its head.
    pub header_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// How long one write may wait for the client to read.
    pub write_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_body_bytes: usize,
    /// How long `shutdown` waits for connections to finish before closing them.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            // kube-apiserver's own request body limit.
            max_body_bytes: 3 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// Refusals (503) run on their own short-lived threads; at most this many at once, beyond
/// which extra connections are closed without an answer.
const MAX_REFUSALS: usize = 16;

struct Shared {
    stopping: Arc<AtomicBool>,
    active: AtomicUsize,
    refusing: AtomicUsize,
    conns: Mutex<HashMap<u64, Weak<Transport>>>,
}

struct Accounting {
    shared: Arc<Shared>,
    refusal: bool,
}

impl DropHook for Accounting {
    fn closed(&self, id: u64) {
        if self.refusal {
            self.shared.refusing.fetch_sub(1, Ordering::SeqCst);
        } else {
            self.shared.active.fetch_sub(1, Ordering::SeqCst);
        }
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }
}

/// A bound server. Call [`Server::serve`] to start it and [`Server::shutdown`] (or drop it) to
/// stop it.
pub struct Server {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: ServerConfig,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// The write end of the accept thread's wake-up pipe: closing it wakes the thread (it waits
    /// for a connection or this, with no timeout, so an idle server costs no wake-ups).
    wake: Option<OwnedFd>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// Binds a TLS server.
    pub fn bind(addr: SocketAddr, tls: TlsSetup) -> Result<Server, HttpdError> {
        let config = tls::server_config(&tls)?;
        Server::bind_inner(addr, Some(config))
    }

    /// Binds a plain-HTTP server (tests; never for the kubelet API).
    pub fn bind_plain(addr: SocketAddr) -> Result<Server, HttpdError> {
        Server::bind_inner(addr, None)
    }

    fn bind_inner(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, HttpdError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| HttpdError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpdError::Bind { addr, source })?;
        Ok(Server {
            listener: Some(listener),
            local_addr,
            tls,
            config: ServerConfig::default(),
            shared: Arc::new(Shared {
                stopping: Arc::new(AtomicBool::new(false)),
                active: AtomicUsize::new(0),
                refusing: AtomicUsize::new(0),
                conns: Mutex::new(HashMap::new()),
            }),
            accept_thread: None,
            wake: None,
        })
    }

    /// Replaces the limits and timeouts; takes effect for `serve`.
    pub fn with_config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections currently open (upgraded ones included).
    pub fn active_connections(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Starts the accept thread; each connection gets its own thread calling `handler`.
    pub fn serve(&mut self, handler: Arc<dyn Handler>) -> Result<(), HttpdError> {
        let addr = self.local_addr;
        let listener = self
            .listener
            .take()
            .ok_or(HttpdError::AlreadyServing { addr })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpdError::Accept { addr, source })?;
        let (woken, wake) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| HttpdError::Accept {
                addr,
                source: e.into(),
            })?;
        let acceptor = Acceptor {
            listener,
            woken,
            tls: self.tls.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
            handler,
            next_id: AtomicU64::new(1),
        };
        let handle = std::thread::Builder::new()
            .name(format!("httpd-accept-{}", addr.port()))
            .spawn(move || acceptor.run())
            .map_err(|source| HttpdError::Accept { addr, source })?;
        self.accept_thread = Some(handle);
        self.wake = Some(wake);
        Ok(())
    }

    /// Stops accepting, lets open exchanges finish for up to `shutdown_grace` (idle kept-alive
    /// connections close at once; streaming handlers see `server_stopping()`), then closes
    /// whatever is left and returns.
    pub fn shutdown(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.wake = None;
        if let Some(handle) = self.accept_thread.take() {
            let _ = handle.join();
        }
        self.listener = None;
        let deadline = Instant::now() + self.config.shutdown_grace;
        while self.open_transports() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left: Vec<Arc<Transport>> = self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        if !left.is_empty() {
            log::debug!(
                "closing connections after the shutdown grace period count={}",
                left.len()
            );
        }
        for t in left {
            t.force_close();
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.open_transports() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn open_transports(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst) + self.shared.refusing.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.shared.stopping.load(Ordering::SeqCst) {
            self.shutdown();
        }
    }
}

struct Acceptor {
    listener: TcpListener,
    /// The read end of the wake-up pipe (hung up when the server stops).
    woken: OwnedFd,
    tls: Option<Arc<rustls::ServerConfig>>,
    config: ServerConfig,
    shared: Arc<Shared>,
    handler: Arc<dyn Handler>,
    next_id: AtomicU64,
}

impl Acceptor {
    fn run(self) {
        while !self.shared.stopping.load(Ordering::SeqCst) {
            match self.listener.accept() {
                Ok((sock, remote)) => self.admit(sock, remote),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut fds = [
                        PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                        PollFd::new(self.woken.as_fd(), PollFlags::POLLIN),
                    ];
                    let _ = poll(&mut fds, PollTimeout::NONE);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("failed to accept a connection: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn admit(&self, sock: std::net::TcpStream, remote: SocketAddr) {
        let refusal = if self.shared.active.load(Ordering::SeqCst) < self.config.max_connections {
            self.shared.active.fetch_add(1, Ordering::SeqCst);
            false
        } else if self.shared.refusing.load(Ordering::SeqCst) < MAX_REFUSALS {
            self.shared.refusing.fetch_add(1, Ordering::SeqCst);
            true
        } else {
            log::debug!("dropping connection over the limit remote={remote}");
            return;
        };
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let hook: Arc<dyn DropHook> = Arc::new(Accounting {
            shared: self.shared.clone(),
            refusal,
        });
        let tls = match &self.tls {
            None => None,
            Some(cfg) => match rustls::ServerConnection::new(cfg.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    hook.closed(id);
                    log::warn!("failed to start tls for connection remote={remote}: {e}");
                    return;
                }
            },
        };
        let transport = match Transport::new(sock, tls, id, Some(hook.clone())) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                // Transport::new failed before taking ownership of the hook's accounting.
                hook.closed(id);
                log::debug!("failed to set up connection remote={remote}: {e}");
                return;
            }
        };
        self.shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::downgrade(&transport));
        let config = self.config.clone();
        let stopping = self.shared.stopping.clone();
        let handler = self.handler.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("httpd-conn-{id}"))
            .spawn(move || {
                if refusal {
                    conn::refuse(&transport, &config);
                } else {
                    conn::serve_connection(transport, remote, handler.as_ref(), &config, &stopping);
                }
            });
        if let Err(e) = spawned {
            // The closure (and the transport in it) was dropped: accounting already ran.
            log::warn!("failed to spawn a connection thread remote={remote}: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
