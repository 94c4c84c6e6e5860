//! The per-connection loop: read a head within its deadline, check framing, read the body within
//! its limit and deadline, hand the request to the handler, then keep the connection alive or
//! close it. Also the short refusal path (503) for connections over the limit.
//!
//! Owns: mapping protocol failures to 400/408/413/417/431/500/501/503 and the keep-alive loop.
//! Must not interpret requests beyond HTTP framing.

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::request::{
    body_framing, connection_has, header_value, parse_head, parse_query, split_target, BodyFraming,
    ChunkError, ChunkedDecoder, FramingError, Head, HeadError, Request,
};
use super::response::{http_date, serialize_head, Exchange, Framing, Outcome, Responder};
use super::tls::PeerIdentity;
use super::transport::Transport;
use super::{Handler, ServerConfig};

const READ_CHUNK: usize = 16 * 1024;

/// A failure answered by the server itself, then the connection closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reject {
    status: u16,
    message: &'static str,
}

fn reject(status: u16, message: &'static str) -> Reject {
    Reject { status, message }
}

/// How reading the next head ended without a head.
enum NoHead {
    /// Clean end: EOF, idle timeout or shutdown between requests.
    Closed,
    Reject(Reject),
}

fn read_head(
    transport: &Transport,
    buf: &mut Vec<u8>,
    config: &ServerConfig,
    first: bool,
    stopping: &AtomicBool,
) -> Result<Head, NoHead> {
    let now = Instant::now();
    // The first request's wait also covers the TLS handshake, so it gets the header timeout.
    let idle_deadline = now
        + if first {
            config.header_timeout
        } else {
            config.idle_timeout
        };
    let mut head_deadline = (!buf.is_empty()).then(|| now + config.header_timeout);
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        if !buf.is_empty() {
            match parse_head(buf, config.max_headers) {
                Ok(Some(head)) => return Ok(head),
                Ok(None) if buf.len() > config.max_header_bytes => {
                    return Err(NoHead::Reject(reject(431, "request header too large")));
                }
                Ok(None) => {}
                Err(HeadError::TooManyHeaders) => {
                    return Err(NoHead::Reject(reject(431, "too many header fields")));
                }
                Err(HeadError::Malformed(m)) => return Err(NoHead::Reject(reject(400, m))),
            }
        }
        let (deadline, stop) = match head_deadline {
            Some(d) => (d, None),
            None => (idle_deadline, Some(stopping)),
        };
        match transport.read(&mut chunk, Some(deadline), stop) {
            Ok(0) => return Err(NoHead::Closed),
            Ok(n) => {
                if head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + config.header_timeout);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut && head_deadline.is_some() => {
                return Err(NoHead::Reject(reject(
                    408,
                    "timed out reading the request head",
                )));
            }
            Err(_) => return Err(NoHead::Closed),
        }
    }
}

/// Reads more bytes into `buf` before `deadline`; `Err(None)` on EOF or I/O failure,
/// `Err(Some(408))` on timeout.
fn read_more(
    transport: &Transport,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), Option<Reject>> {
    let mut chunk = vec![0u8; READ_CHUNK];
    match transport.read(&mut chunk, Some(deadline), None) {
        Ok(0) => Err(None),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            Err(Some(reject(408, "timed out reading the request body")))
        }
        Err(_) => Err(None),
    }
}

fn send_continue(transport: &Transport, config: &ServerConfig) -> Result<(), Option<Reject>> {
    transport
        .write_all(
            b"HTTP/1.1 100 Continue\r\n\r\n",
            Some(Instant::now() + config.write_timeout),
        )
        .map_err(|_| None)
}

/// Reads the body the head announces. On success `buf` holds only bytes after the body.
fn read_body(
    transport: &Transport,
    head: &Head,
    buf: &mut Vec<u8>,
    config: &ServerConfig,
) -> Result<Vec<u8>, Option<Reject>> {
    let framing = body_framing(&head.headers).map_err(|e| {
        Some(match e {
            FramingError::Invalid(m) => reject(400, m),
            FramingError::UnsupportedCoding => reject(501, "unsupported transfer-encoding"),
        })
    })?;
    let expect_continue = match header_value(&head.headers, "expect") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("100-continue") => true,
        Some(_) => return Err(Some(reject(417, "unsupported expectation"))),
    };
    let deadline = Instant::now() + config.body_timeout;
    match framing {
        BodyFraming::None => Ok(Vec::new()),
        BodyFraming::Length(n) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|n| *n <= config.max_body_bytes)
                .ok_or(Some(reject(413, "request body too large")))?;
            if expect_continue && buf.len() < n {
                send_continue(transport, config)?;
            }
            while buf.len() < n {
                read_more(transport, buf, deadline)?;
            }
            Ok(buf.drain(..n).collect())
        }
        BodyFraming::Chunked => {
            if expect_continue && buf.is_empty() {
                send_continue(transport, config)?;
            }
            let mut decoder = ChunkedDecoder::new(config.max_body_bytes);
            let mut body = Vec::new();
            loop {
                let used = decoder.feed(buf, &mut body).map_err(|e| {
                    Some(match e {
                        ChunkError::TooLarge => reject(413, "request body too large"),
                        ChunkError::Malformed(m) => reject(400, m),
                    })
                })?;
                buf.drain(..used);
                if decoder.is_done() {
                    return Ok(body);
                }
                read_more(transport, buf, deadline)?;
            }
        }
    }
}

/// Sends the server's own error answer and closes the connection gracefully, draining what the
/// client still sends so that the answer is not lost to a TCP reset.
fn answer_and_close(transport: &Transport, config: &ServerConfig, r: Reject) {
    let body = format!(
        "{} {}: {}",
        r.status,
        super::reason_phrase(r.status),
        r.message
    );
    let mut headers = vec![(
        "Content-Type".to_string(),
        "text/plain; charset=utf-8".to_string(),
    )];
    if r.status == 503 {
        headers.push(("Retry-After".to_string(), "1".to_string()));
    }
    let Ok(mut bytes) = serialize_head(
        r.status,
        &headers,
        Framing::Length(body.len()),
        false,
        &http_date(),
    ) else {
        return;
    };
    bytes.extend_from_slice(body.as_bytes());
    let deadline = Instant::now() + config.write_timeout.min(Duration::from_secs(5));
    if transport.write_all(&bytes, Some(deadline)).is_err() {
        return;
    }
    lingering_close(transport);
}

fn lingering_close(transport: &Transport) {
    let deadline = Instant::now() + Duration::from_millis(500);
    if transport.shutdown_write(Some(deadline)).is_err() {
        return;
    }
    let mut sink = vec![0u8; READ_CHUNK];
    let mut drained = 0usize;
    while drained < 256 * 1024 {
        match transport.read(&mut sink, Some(deadline), None) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Serves requests on one connection until it closes, times out, is upgraded or the server
/// stops.
pub(crate) fn serve_connection(
    transport: Arc<Transport>,
    remote_addr: SocketAddr,
    handler: &dyn Handler,
    config: &ServerConfig,
    stopping: &Arc<AtomicBool>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut peer: Option<PeerIdentity> = None;
    let mut first = true;
    loop {
        let head = match read_head(&transport, &mut buf, config, first, stopping) {
            Ok(head) => head,
            Err(NoHead::Closed) => return,
            Err(NoHead::Reject(r)) => {
                log::debug!(
                    "rejecting request remote={remote_addr} status={}: {}",
                    r.status,
                    r.message
                );
                answer_and_close(&transport, config, r);
                return;
            }
        };
        first = false;
        buf.drain(..head.len);
        let (path, raw_query) = match split_target(&head.target) {
            Ok((p, q)) => (p.to_string(), q.to_string()),
            Err(HeadError::Malformed(m)) => {
                answer_and_close(&transport, config, reject(400, m));
                return;
            }
            Err(HeadError::TooManyHeaders) => {
                answer_and_close(&transport, config, reject(431, "too many header fields"));
                return;
            }
        };
        let body = match read_body(&transport, &head, &mut buf, config) {
            Ok(body) => body,
            Err(Some(r)) => {
                log::debug!(
                    "rejecting request remote={remote_addr} status={}: {}",
                    r.status,
                    r.message
                );
                answer_and_close(&transport, config, r);
                return;
            }
            Err(None) => return,
        };
        let close_after = connection_has(&head.headers, "close")
            || (head.minor_version == 0 && !connection_has(&head.headers, "keep-alive"))
            || stopping.load(Ordering::SeqCst);
        let peer = peer
            .get_or_insert_with(|| PeerIdentity::from_verified_chain(transport.peer_chain()))
            .clone();
        let request = Request {
            method: head.method,
            target: head.target,
            path,
            query: parse_query(&raw_query),
            raw_query,
            headers: head.headers,
            body,
            minor_version: head.minor_version,
            peer,
            remote_addr,
        };
        let mut ex = Exchange {
            transport: transport.clone(),
            leftover: std::mem::take(&mut buf),
            head_only: request.method == "HEAD",
            close_after,
            outcome: Outcome::Unanswered,
            write_timeout: config.write_timeout,
            stopping: stopping.clone(),
        };
        // Unwinding builds (debug, tests) keep a handler's panic to this connection; the release
        // build aborts instead (Cargo.toml's profile says why).
        let ran = catch_unwind(AssertUnwindSafe(|| {
            handler.handle(request, Responder::new(&mut ex));
        }));
        if ran.is_err() {
            log::error!("request handler panicked remote={remote_addr}");
        }
        match ex.outcome {
            Outcome::Unanswered => {
                answer_and_close(
                    &transport,
                    config,
                    reject(500, "the handler sent no response"),
                );
                return;
            }
            Outcome::Complete { keep_alive: true } if ran.is_ok() => {
                buf = std::mem::take(&mut ex.leftover);
            }
            Outcome::Complete { .. } => {
                lingering_close(&transport);
                return;
            }
            Outcome::Broken | Outcome::Upgraded => return,
        }
    }
}

/// Answers a connection over the limit with 503 after reading (at most) its head.
pub(crate) fn refuse(transport: &Transport, config: &ServerConfig) {
    let short = ServerConfig {
        header_timeout: config.header_timeout.min(Duration::from_secs(2)),
        ..config.clone()
    };
    let never = AtomicBool::new(false);
    let mut buf = Vec::new();
    match read_head(transport, &mut buf, &short, true, &never) {
        Ok(_) | Err(NoHead::Reject(_)) => {
            answer_and_close(transport, &short, reject(503, "too many connections"));
        }
        Err(NoHead::Closed) => {}
    }
}
