//! exec, attach and port-forward: the kubelet's "proxy the stream" mode. The client's upgrade
//! request (SPDY/3.1 or WebSocket) is replayed to the runtime's streaming server at the URL CRI
//! gave (`Exec`/`Attach`/`PortForward`), the streaming server's answer is relayed verbatim
//! (its `101` with the negotiated `X-Stream-Protocol-Version`, or its error), and then the two
//! connections are spliced byte for byte in both directions until both sides are done. vk-cri
//! never parses SPDY or WebSocket frames: stdin, tty resize, the error stream with the exit
//! code, and port-forward data streams all pass through untouched.
//!
//! ```text
//!  client ──TLS──▶ vk-cri ──TCP (127.0.0.1)──▶ containerd streaming server
//!     ▲  thread: client → backend; EOF ⇒ shutdown(backend, write)
//!     └─ connection thread: backend → client; EOF ⇒ close_notify/FIN to the client,
//!        then wait (bounded) for the client side to finish
//! ```
//!
//! Owns: the backend connection and the splice. Must not decide who may stream (auth runs
//! before) or find containers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::httpd::{Request, Responder, Response};

/// How long to wait for the streaming server to answer the upgrade.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(30);
/// After the streaming server closed, how long the client may take to close its side.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
const MAX_HEAD: usize = 64 * 1024;
const MAX_ERROR_BODY: usize = 1024 * 1024;

/// Why a stream could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("failed to use streaming url {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("failed to connect to the streaming server {addr}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to talk to the streaming server {addr}")]
    Backend {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("streaming server {addr} sent an invalid response head")]
    BadHead { addr: String },
}

/// Host, port and path of an `http://host:port/path` URL.
pub fn split_url(url: &str) -> Result<(String, String), StreamError> {
    let bad = |reason: &str| StreamError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// streaming servers are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    Ok((authority.to_string(), path.to_string()))
}

/// Headers not copied to the backend: we set `Host` and framing ourselves, credentials stay
/// with us.
fn skipped(name: &str) -> bool {
    [
        "host",
        "content-length",
        "transfer-encoding",
        "authorization",
        "x-forwarded-for",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The request head sent to the streaming server.
pub fn backend_head(req: &Request, authority: &str, path: &str) -> Vec<u8> {
    let mut head = format!("{} {path} HTTP/1.1\r\nHost: {authority}\r\n", req.method);
    for (name, value) in &req.headers {
        if !skipped(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let mut forwarded: Vec<&str> = req.header_all("x-forwarded-for").collect();
    let remote = req.remote_addr.ip().to_string();
    forwarded.push(&remote);
    head.push_str(&format!("X-Forwarded-For: {}\r\n", forwarded.join(", ")));
    if req.method == "POST" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    len: usize,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, ()> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut r = httparse::Response::new(&mut slots);
    match r.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            status: r.code.unwrap_or(502),
            headers: r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Proxies one upgrade request to the streaming server at `url` and splices the connections
/// until both sides are done. Answers the client in every case; `Err` only describes why the
/// stream could not be set up (the client got a 502 for it).
pub fn proxy(url: &str, req: &Request, responder: Responder<'_>) -> Result<(), StreamError> {
    match connect(url, req) {
        Ok((backend, head, buf)) => relay(backend, head, buf, responder),
        Err(e) => {
            let _ = responder.send(Response::text(502, &e.to_string()));
            Err(e)
        }
    }
}

fn connect(url: &str, req: &Request) -> Result<(TcpStream, Head, Vec<u8>), StreamError> {
    let (authority, path) = split_url(url)?;
    let addrs: Vec<SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|source| StreamError::Connect {
            addr: authority.clone(),
            source,
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut conn = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, BACKEND_TIMEOUT) {
            Ok(s) => {
                conn = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut backend = conn.ok_or(StreamError::Connect {
        addr: authority.clone(),
        source: last,
    })?;
    let io_err = |source| StreamError::Backend {
        addr: authority.clone(),
        source,
    };
    backend.set_nodelay(true).map_err(io_err)?;
    backend
        .set_read_timeout(Some(BACKEND_TIMEOUT))
        .map_err(io_err)?;
    backend
        .write_all(&backend_head(req, &authority, &path))
        .map_err(io_err)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = backend.read(&mut chunk).map_err(io_err)?;
        if n == 0 {
            return Err(io_err(io::Error::from(io::ErrorKind::UnexpectedEof)));
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(head)) => return Ok((backend, head, buf)),
            Ok(None) if buf.len() < MAX_HEAD => {}
            _ => {
                return Err(StreamError::BadHead {
                    addr: authority.clone(),
                })
            }
        }
    }
}

fn relay(
    mut backend: TcpStream,
    head: Head,
    mut buf: Vec<u8>,
    responder: Responder<'_>,
) -> Result<(), StreamError> {
    let addr = backend
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let rest = buf.split_off(head.len);
    if head.status != 101 {
        // The runtime refused (expired token, bad request): its answer goes to the client.
        let len = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_ERROR_BODY);
        let mut body = rest;
        let mut chunk = [0u8; 8192];
        while body.len() < len {
            match backend.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        body.truncate(len);
        let mut resp = Response::new(head.status).header("Connection", "close");
        for (n, v) in &head.headers {
            if n.eq_ignore_ascii_case("content-type") {
                resp = resp.header(n, v);
            }
        }
        resp.body = body;
        let _ = responder.send(resp);
        return Ok(());
    }
    // The client went away before the 101 reached it.
    let Ok(upgraded) = responder.upgrade(&head.headers) else {
        return Ok(());
    };
    let io_err = |source| StreamError::Backend {
        addr: addr.clone(),
        source,
    };
    backend.set_read_timeout(None).map_err(io_err)?;
    let (mut client_r, mut client_w) = upgraded.into_split();
    if !rest.is_empty() && client_w.write_all(&rest).is_err() {
        return Ok(());
    }
    let mut backend_w = backend.try_clone().map_err(io_err)?;
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let up = std::thread::Builder::new()
        .name("kubelet-stream-up".into())
        .spawn(move || {
            let up = io::copy(&mut client_r, &mut backend_w);
            let _ = backend_w.shutdown(Shutdown::Write);
            let _ = done_tx.send(());
            (client_r, up)
        })
        .map_err(io_err)?;
    let mut chunk = vec![0u8; 32 * 1024];
    let mut down = 0u64;
    loop {
        match backend.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if client_w.write_all(&chunk[..n]).is_err() {
                    break;
                }
                down += n as u64;
            }
        }
    }
    let _ = client_w.shutdown();
    if done_rx.recv_timeout(CLOSE_GRACE).is_err() {
        // The client keeps its side open after the stream ended: close it.
        client_w.close();
        let _ = backend.shutdown(Shutdown::Both);
    }
    let up = up.join().map(|(_, up)| up);
    log::debug!("stream ended backend={addr} down={down} up={up:?}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::httpd::PeerIdentity;

    #[test]
    fn streaming_urls_split_into_authority_and_path() {
        let (a, p) = split_url("http://127.0.0.1:40417/exec/AbCd").unwrap();
        assert_eq!(a, "127.0.0.1:40417");
        assert_eq!(p, "/exec/AbCd");
        assert_eq!(split_url("http://[::1]:1").unwrap().1, "/");
        assert!(split_url("https://127.0.0.1:1/exec/x")
            .unwrap_err()
            .to_string()
            .contains("only http://"));
    }

    #[test]
    fn the_backend_request_keeps_the_upgrade_headers_and_drops_credentials() {
        // The request head kube-apiserver sent (fixture 12g), plus a bearer token.
        let req = Request {
            method: "POST".into(),
            target: "/exec/fixtures/p1/c?command=echo&command=hi&error=1&output=1".into(),
            path: "/exec/fixtures/p1/c".into(),
            raw_query: "command=echo&command=hi&error=1&output=1".into(),
            query: vec![],
            headers: [
                ("Host", "127.0.0.1:6443"),
                ("Content-Length", "0"),
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("Authorization", "Bearer secret"),
                ("X-Forwarded-For", "10.1.2.3"),
                ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
                ("X-Stream-Protocol-Version", "channel.k8s.io"),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
            body: vec![],
            minor_version: 1,
            peer: PeerIdentity::anonymous(),
            remote_addr: "127.0.0.1:5555".parse().unwrap(),
        };
        let head = String::from_utf8(backend_head(&req, "127.0.0.1:40417", "/exec/T")).unwrap();
        assert_eq!(
            head,
            "POST /exec/T HTTP/1.1\r\nHost: 127.0.0.1:40417\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\nX-Forwarded-For: 10.1.2.3, 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
