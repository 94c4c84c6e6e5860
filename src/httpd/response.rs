//! The response side: the `Response` value, the `Responder` a handler answers through (a whole
//! response, a streamed chunked response, or a protocol upgrade), and pure serialization of the
//! response head and chunk framing.
//!
//! Owns: HTTP/1.1 response framing (Content-Length, chunked, 101) and the keep-alive decision
//! for one exchange. Must not parse requests or route; the server owns framing headers, so the
//! handler's `Content-Length`/`Transfer-Encoding` are ignored.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::transport::{Transport, Upgraded};
use super::HttpdError;

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        self.body = body.into();
        self
    }

    /// A `text/plain; charset=utf-8` response.
    pub fn text(status: u16, body: &str) -> Response {
        Response::new(status).body("text/plain; charset=utf-8", body.as_bytes().to_vec())
    }
}

/// The standard reason phrase for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// How the body after the head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Length(usize),
    Chunked,
    /// 1xx and 204: no body and no length.
    NoBody,
    /// 101: exactly the handler's headers plus `Date`.
    Upgrade,
}

/// Serializes a response head. `Connection: close` is added when `keep_alive` is false.
pub(crate) fn serialize_head(
    status: u16,
    headers: &[(String, String)],
    framing: Framing,
    keep_alive: bool,
    date: &str,
) -> Result<Vec<u8>, HttpdError> {
    if !(100..=999).contains(&status) {
        return Err(HttpdError::InvalidStatus { status });
    }
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).into_bytes();
    let mut has_date = false;
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(HttpdError::InvalidHeader { name: name.clone() });
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(HttpdError::InvalidHeader { name: name.clone() });
        }
        let lower = name.to_ascii_lowercase();
        if framing != Framing::Upgrade
            && matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "connection"
            )
        {
            continue;
        }
        has_date |= lower == "date";
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    match framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::NoBody | Framing::Upgrade => {}
    }
    if !keep_alive && framing != Framing::Upgrade {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// One chunk of a chunked body: `<hex len>\r\n<data>\r\n`.
pub(crate) fn encode_chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The terminating chunk (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The IMF-fixdate for `Date` headers.
pub(crate) fn http_date() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// What came of one exchange, for the connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler returned without answering.
    Unanswered,
    /// A response was fully sent; the connection may carry another request if `keep_alive`.
    Complete { keep_alive: bool },
    /// Something was sent but the response did not end cleanly: the connection must close.
    Broken,
    /// The connection now belongs to the upgraded halves.
    Upgraded,
}

/// The state of one request/response exchange, owned by the connection loop.
pub(crate) struct Exchange {
    pub transport: Arc<Transport>,
    /// Bytes that arrived after this request's body.
    pub leftover: Vec<u8>,
    pub head_only: bool,
    /// The client or the server wants the connection closed after this exchange.
    pub close_after: bool,
    pub outcome: Outcome,
    pub write_timeout: Duration,
    pub stopping: Arc<AtomicBool>,
}

impl Exchange {
    fn write(&mut self, data: &[u8]) -> Result<(), HttpdError> {
        let deadline = Instant::now() + self.write_timeout;
        self.transport
            .write_all(data, deadline.into())
            .map_err(|e| {
                self.outcome = Outcome::Broken;
                HttpdError::from_io(e)
            })
    }
}

/// How a handler answers one request: exactly one of [`Responder::send`],
/// [`Responder::start_chunked`] or [`Responder::upgrade`]. Dropping it without answering makes
/// the server send `500`.
pub struct Responder<'a> {
    ex: &'a mut Exchange,
}

impl<'a> Responder<'a> {
    pub(crate) fn new(ex: &'a mut Exchange) -> Responder<'a> {
        Responder { ex }
    }

    /// True when the server is shutting down.
    pub fn server_stopping(&self) -> bool {
        self.ex.stopping.load(Ordering::SeqCst)
    }

    /// Sends a complete response. A handler `Connection: close` header closes the connection.
    pub fn send(self, response: Response) -> Result<(), HttpdError> {
        let keep_alive =
            !self.ex.close_after && !super::request::connection_has(&response.headers, "close");
        let status = response.status;
        let no_body = (100..200).contains(&status) || status == 204 || status == 304;
        let framing = if (100..200).contains(&status) || status == 204 {
            Framing::NoBody
        } else {
            Framing::Length(response.body.len())
        };
        let mut bytes =
            serialize_head(status, &response.headers, framing, keep_alive, &http_date())?;
        if !self.ex.head_only && !no_body {
            bytes.extend_from_slice(&response.body);
        }
        self.ex.write(&bytes)?;
        self.ex.outcome = Outcome::Complete { keep_alive };
        Ok(())
    }

    /// Starts a chunked response: the head goes out now, then each
    /// [`ChunkedWriter::write_chunk`] is one flushed chunk.
    pub fn start_chunked(
        self,
        status: u16,
        headers: &[(String, String)],
    ) -> Result<ChunkedWriter<'a>, HttpdError> {
        let keep_alive = !self.ex.close_after && !super::request::connection_has(headers, "close");
        let head = serialize_head(status, headers, Framing::Chunked, keep_alive, &http_date())?;
        self.ex.write(&head)?;
        // Until `finish`, the exchange is unfinished: a dropped writer closes the connection.
        self.ex.outcome = Outcome::Broken;
        Ok(ChunkedWriter {
            ex: self.ex,
            keep_alive,
        })
    }

    /// Accepts a protocol upgrade: sends `101 Switching Protocols` with exactly these headers
    /// (plus `Date`) and hands back the raw full-duplex connection. Bytes the client sent after
    /// the request head are delivered first by the reader half.
    pub fn upgrade(self, headers: &[(String, String)]) -> Result<Upgraded, HttpdError> {
        let head = serialize_head(101, headers, Framing::Upgrade, true, &http_date())?;
        self.ex.write(&head)?;
        self.ex.outcome = Outcome::Upgraded;
        let leftover = std::mem::take(&mut self.ex.leftover);
        Ok(Upgraded::new(self.ex.transport.clone(), leftover))
    }
}

/// A streaming chunked response in progress. Call [`ChunkedWriter::finish`] to end it cleanly;
/// dropping it instead closes the connection (the client sees a truncated body).
pub struct ChunkedWriter<'a> {
    ex: &'a mut Exchange,
    keep_alive: bool,
}

impl ChunkedWriter<'_> {
    /// Sends one chunk and flushes it to the socket. Empty data sends nothing (an empty chunk
    /// would end the body). Fails when the client went away or stopped reading for longer than
    /// the write timeout.
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), HttpdError> {
        if data.is_empty() || self.ex.head_only {
            return Ok(());
        }
        let framed = encode_chunk(data);
        self.ex.write(&framed)
    }

    /// Ends the body with the last chunk.
    pub fn finish(self) -> Result<(), HttpdError> {
        if !self.ex.head_only {
            self.ex.write(LAST_CHUNK)?;
        }
        self.ex.outcome = Outcome::Complete {
            keep_alive: self.keep_alive,
        };
        Ok(())
    }

    /// True when the client has closed its side of the connection (it will not read more).
    pub fn peer_closed(&self) -> bool {
        self.ex.transport.peer_closed()
    }

    /// True when the server is shutting down; long streams should finish.
    pub fn server_stopping(&self) -> bool {
        self.ex.stopping.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn head_with_length_and_close() {
        let head = serialize_head(
            404,
            &h(&[
                ("Content-Type", "application/json"),
                ("Content-Length", "999"),
            ]),
            Framing::Length(12),
            false,
            "D",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nDate: D\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn chunked_head_keeps_alive() {
        let head = serialize_head(200, &[], Framing::Chunked, true, "D").unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 200 OK\r\nDate: D\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_head_is_verbatim() {
        let head = serialize_head(
            101,
            &h(&[
                ("Connection", "Upgrade"),
                ("Upgrade", "SPDY/3.1"),
                ("Date", "X"),
            ]),
            Framing::Upgrade,
            true,
            "D",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nDate: X\r\n\r\n"
        );
    }

    #[test]
    fn header_injection_is_refused() {
        let bad_value = serialize_head(
            200,
            &h(&[("X", "a\r\nEvil: 1")]),
            Framing::NoBody,
            true,
            "D",
        );
        assert!(matches!(bad_value, Err(HttpdError::InvalidHeader { .. })));
        let bad_name = serialize_head(200, &h(&[("X Y", "a")]), Framing::NoBody, true, "D");
        assert!(matches!(bad_name, Err(HttpdError::InvalidHeader { .. })));
        assert!(matches!(
            serialize_head(7, &[], Framing::NoBody, true, "D"),
            Err(HttpdError::InvalidStatus { status: 7 })
        ));
    }

    #[test]
    fn chunks_are_hex_framed() {
        assert_eq!(
            encode_chunk(b"0123456789abcdef!"),
            b"11\r\n0123456789abcdef!\r\n"
        );
    }

    #[test]
    fn http_date_looks_like_imf_fixdate() {
        let d = http_date();
        assert!(d.ends_with(" GMT"), "{d}");
        assert_eq!(d.len(), "Sun, 22 Nov 2026 12:53:06 GMT".len(), "{d}");
    }
}
