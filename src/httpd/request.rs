//! The request side of the HTTP/1.1 server, as pure code over byte buffers: the head parse
//! (through `httparse`), target and query splitting, body framing rules and an incremental
//! chunked-body decoder, plus the `Request` the handler sees.
//!
//! Owns: turning bytes into a `Request` or a precise reason why not. Must not do I/O, know about
//! TLS or sockets, or decide status codes beyond naming the failure (`conn.rs` maps failures to
//! 400/413/431/501).

use std::net::SocketAddr;

use super::tls::PeerIdentity;

/// One parsed HTTP request with its whole body, as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method as sent (`GET`, `POST`, ...); methods are case-sensitive in HTTP.
    pub method: String,
    /// The request-target exactly as sent (origin form: path plus optional `?query`).
    pub target: String,
    /// The path part of the target, still percent-encoded as sent.
    pub path: String,
    /// The query part of the target without the `?`, still encoded; empty when there is none.
    pub raw_query: String,
    /// The decoded query pairs in order; repeated keys are kept (`command=a&command=b`).
    pub query: Vec<(String, String)>,
    /// The header fields in order, names as sent; look them up with [`Request::header`].
    pub headers: Vec<(String, String)>,
    /// The de-framed body (Content-Length or chunked); empty when there is none.
    pub body: Vec<u8>,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor_version: u8,
    /// The verified client certificate chain, if the peer presented one.
    pub peer: PeerIdentity,
    /// The TCP peer address.
    pub remote_addr: SocketAddr,
}

impl Request {
    /// The first header value with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// Every value of this header (case-insensitive), in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first query value for this key, decoded.
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every query value for this key, decoded, in order.
    pub fn query_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.query
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when a `Connection` header lists this token (case-insensitive).
    pub fn connection_has(&self, token: &str) -> bool {
        connection_has(&self.headers, token)
    }
}

pub(crate) fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn connection_has(headers: &[(String, String)], token: &str) -> bool {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A parsed request head, before the body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: String,
    pub target: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// How many bytes of the buffer the head took, including the blank line.
    pub len: usize,
}

/// Why a head could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// Malformed syntax (400).
    Malformed(&'static str),
    /// More header fields than allowed (431).
    TooManyHeaders,
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_head(buf: &[u8], max_headers: usize) -> Result<Option<Head>, HeadError> {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers.max(1)];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let method = req.method.ok_or(HeadError::Malformed("missing method"))?;
    let target = req.path.ok_or(HeadError::Malformed("missing target"))?;
    let minor_version = req.version.ok_or(HeadError::Malformed("missing version"))?;
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Malformed("header value is not utf-8"))?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head {
        method: method.to_string(),
        target: target.to_string(),
        minor_version,
        headers,
        len,
    }))
}

/// Splits an origin-form target into `(path, raw_query)`. Only origin form (`/path?query`) is
/// served; absolute form and `*` are rejected.
pub(crate) fn split_target(target: &str) -> Result<(&str, &str), HeadError> {
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("request target is not in origin form"));
    }
    let without_fragment = target.split('#').next().unwrap_or(target);
    Ok(match without_fragment.split_once('?') {
        Some((p, q)) => (p, q),
        None => (without_fragment, ""),
    })
}

/// Decodes a query string the way Go's `url.ParseQuery` does (`+` is a space, `%XX` escapes),
/// keeping repeated keys and their order. Invalid escapes are kept literally.
pub fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    None,
    Length(u64),
    Chunked,
}

/// Why the body framing is unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Conflicting or invalid framing headers (400): both Content-Length and Transfer-Encoding,
    /// differing Content-Length values, or a non-numeric length.
    Invalid(&'static str),
    /// A transfer coding other than `chunked` (501).
    UnsupportedCoding,
}

/// Decides the body framing from the headers (RFC 9112 §6.3), rejecting anything ambiguous so
/// that no request can be smuggled past a proxy that reads it differently.
pub(crate) fn body_framing(headers: &[(String, String)]) -> Result<BodyFraming, FramingError> {
    let mut length: Option<u64> = None;
    let mut te: Option<String> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            for piece in value.split(',') {
                let piece = piece.trim();
                if piece.is_empty() || !piece.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(FramingError::Invalid("invalid content-length"));
                }
                let n: u64 = piece
                    .parse()
                    .map_err(|_| FramingError::Invalid("invalid content-length"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(FramingError::Invalid("conflicting content-length"));
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let joined = match te.take() {
                Some(prev) => format!("{prev},{value}"),
                None => value.clone(),
            };
            te = Some(joined);
        }
    }
    match (te, length) {
        (Some(_), Some(_)) => Err(FramingError::Invalid(
            "both content-length and transfer-encoding",
        )),
        (Some(te), None) => {
            let codings: Vec<String> = te
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .filter(|c| !c.is_empty())
                .collect();
            if codings.len() == 1 && codings[0] == "chunked" {
                Ok(BodyFraming::Chunked)
            } else {
                Err(FramingError::UnsupportedCoding)
            }
        }
        (None, Some(0) | None) => Ok(BodyFraming::None),
        (None, Some(n)) => Ok(BodyFraming::Length(n)),
    }
}

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkError {
    Malformed(&'static str),
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Waiting for a chunk-size line.
    Size,
    /// Inside chunk data; this many bytes are left.
    Data(u64),
    /// After chunk data: expecting CRLF.
    DataEnd,
    /// After the last (zero) chunk: trailer lines until an empty line.
    Trailer,
    Done,
}

/// An incremental decoder for a chunked request body. Feed it the bytes that arrive; it appends
/// the de-chunked data to `out` and says how much input it consumed.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    limit: usize,
    trailer_bytes: usize,
}

/// Trailer lines beyond this many bytes make the body malformed.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

impl ChunkedDecoder {
    pub(crate) fn new(limit: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: ChunkState::Size,
            limit,
            trailer_bytes: 0,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes as much of `input` as possible; returns the number of bytes consumed. Stops at
    /// the end of the body so that pipelined bytes after it stay with the caller.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                ChunkState::Done => return Ok(pos),
                ChunkState::Size => match httparse::parse_chunk_size(rest) {
                    Ok(httparse::Status::Complete((used, size))) => {
                        pos += used;
                        if size == 0 {
                            self.state = ChunkState::Trailer;
                        } else {
                            let room = self.limit.saturating_sub(out.len()) as u64;
                            if size > room {
                                return Err(ChunkError::TooLarge);
                            }
                            self.state = ChunkState::Data(size);
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if rest.len() > 1024 {
                            return Err(ChunkError::Malformed("chunk-size line too long"));
                        }
                        return Ok(pos);
                    }
                    Err(_) => return Err(ChunkError::Malformed("invalid chunk size")),
                },
                ChunkState::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(rest.len());
                    out.extend_from_slice(&rest[..take]);
                    pos += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                }
                ChunkState::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(pos);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::Malformed("missing crlf after chunk data"));
                    }
                    pos += 2;
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailer => {
                    let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                        if self.trailer_bytes + rest.len() > MAX_TRAILER_BYTES {
                            return Err(ChunkError::Malformed("trailer too large"));
                        }
                        return Ok(pos);
                    };
                    pos += eol + 2;
                    self.trailer_bytes += eol + 2;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(ChunkError::Malformed("trailer too large"));
                    }
                    if eol == 0 {
                        self.state = ChunkState::Done;
                    }
                }
            }
        }
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
    fn parses_a_complete_head_and_reports_its_length() {
        let raw = b"GET /api/v1/pods?watch=true HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\nrest";
        let head = parse_head(raw, 16).unwrap().unwrap();
        assert_eq!(head.method, "GET");
        assert_eq!(head.target, "/api/v1/pods?watch=true");
        assert_eq!(head.minor_version, 1);
        assert_eq!(head.headers, h(&[("Host", "x"), ("Accept", "*/*")]));
        assert_eq!(&raw[head.len..], b"rest");
    }

    #[test]
    fn partial_head_needs_more_bytes() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n", 16), Ok(None));
    }

    #[test]
    fn garbage_and_too_many_headers_are_errors() {
        assert!(matches!(
            parse_head(b"\x00\x01 nonsense\r\n\r\n", 16),
            Err(HeadError::Malformed(_))
        ));
        let many = b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        assert_eq!(parse_head(many, 2), Err(HeadError::TooManyHeaders));
    }

    #[test]
    fn non_utf8_header_values_are_malformed() {
        let raw = b"GET / HTTP/1.1\r\nX: \xff\xfe\r\n\r\n";
        assert!(matches!(parse_head(raw, 8), Err(HeadError::Malformed(_))));
    }

    #[test]
    fn split_target_separates_path_and_query() {
        assert_eq!(split_target("/a/b?x=1&y=2"), Ok(("/a/b", "x=1&y=2")));
        assert_eq!(split_target("/a"), Ok(("/a", "")));
        assert!(split_target("http://h/a").is_err());
        assert!(split_target("*").is_err());
    }

    #[test]
    fn query_keeps_repeated_keys_and_decodes() {
        let q = parse_query(
            "command=echo&command=hi%20there&fieldSelector=spec.nodeName%3Dvk-node&a+b=c+d&flag",
        );
        assert_eq!(
            q,
            vec![
                ("command".to_string(), "echo".to_string()),
                ("command".to_string(), "hi there".to_string()),
                (
                    "fieldSelector".to_string(),
                    "spec.nodeName=vk-node".to_string()
                ),
                ("a b".to_string(), "c d".to_string()),
                ("flag".to_string(), String::new()),
            ]
        );
        assert_eq!(
            parse_query("x=%zz"),
            vec![("x".to_string(), "%zz".to_string())]
        );
    }

    #[test]
    fn framing_rules() {
        assert_eq!(body_framing(&h(&[])), Ok(BodyFraming::None));
        assert_eq!(
            body_framing(&h(&[("Content-Length", "12")])),
            Ok(BodyFraming::Length(12))
        );
        assert_eq!(
            body_framing(&h(&[("content-length", "5, 5")])),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            body_framing(&h(&[("Transfer-Encoding", "chunked")])),
            Ok(BodyFraming::Chunked)
        );
        assert!(matches!(
            body_framing(&h(&[("Content-Length", "5"), ("Content-Length", "6")])),
            Err(FramingError::Invalid(_))
        ));
        assert!(matches!(
            body_framing(&h(&[("Content-Length", "-1")])),
            Err(FramingError::Invalid(_))
        ));
        assert!(matches!(
            body_framing(&h(&[
                ("Content-Length", "5"),
                ("Transfer-Encoding", "chunked")
            ])),
            Err(FramingError::Invalid(_))
        ));
        assert_eq!(
            body_framing(&h(&[("Transfer-Encoding", "gzip, chunked")])),
            Err(FramingError::UnsupportedCoding)
        );
    }

    #[test]
    fn chunked_decoder_handles_split_input_and_stops_at_the_end() {
        let raw = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        for split in 0..raw.len() {
            let mut d = ChunkedDecoder::new(1024);
            let mut out = Vec::new();
            let mut buf = raw[..split].to_vec();
            let used = d.feed(&buf, &mut out).unwrap();
            buf.drain(..used);
            buf.extend_from_slice(&raw[split..]);
            let used = d.feed(&buf, &mut out).unwrap();
            assert!(d.is_done(), "split at {split}");
            assert_eq!(out, b"Wikipedia");
            assert_eq!(&buf[used..], b"NEXT");
        }
    }

    #[test]
    fn chunked_decoder_enforces_limit_and_syntax() {
        let mut d = ChunkedDecoder::new(3);
        assert_eq!(
            d.feed(b"4\r\nWiki\r\n0\r\n\r\n", &mut Vec::new()),
            Err(ChunkError::TooLarge)
        );
        let mut d = ChunkedDecoder::new(100);
        assert!(matches!(
            d.feed(b"zz\r\n", &mut Vec::new()),
            Err(ChunkError::Malformed(_))
        ));
        let mut d = ChunkedDecoder::new(100);
        assert!(matches!(
            d.feed(b"1\r\nab\r\n", &mut Vec::new()),
            Err(ChunkError::Malformed(_))
        ));
    }

    #[test]
    fn connection_tokens_are_case_insensitive_lists() {
        let headers = h(&[("Connection", "keep-alive, Upgrade")]);
        assert!(connection_has(&headers, "upgrade"));
        assert!(!connection_has(&headers, "close"));
    }
}
