//! Clients of the kubelet API for the tests: HTTPS/1.1 over rustls with an optional client
//! certificate (every connection goes to 127.0.0.1), a SPDY/3.1 client speaking the
//! remotecommand and portforward protocols as kubectl 1.28 does, and a WebSocket client
//! (v4.channel.k8s.io). The SPDY header blocks are sent as stored (uncompressed) deflate
//! blocks, each sync-flushed, in one zlib stream, which every zlib reader accepts; the server's SYN_REPLY headers
//! are not needed and are skipped, so no compressor is involved.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use vk_cri::certs::CertKeyPem;

pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connects to the kubelet API on 127.0.0.1:port, trusting `ca_pem`, presenting `client`.
pub fn connect(port: u16, ca_pem: &str, client: Option<&CertKeyPem>) -> Tls {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(c) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
    )
    .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to the kubelet API");
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    sock.set_nodelay(true).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// A response; `body` is de-chunked.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads bytes until `buf` holds a complete response head; returns (status, headers, len).
pub fn read_head<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> (u16, Vec<(String, String)>, usize) {
    let mut chunk = [0u8; 8192];
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            return (r.code.unwrap(), headers, n);
        }
        let n = s.read(&mut chunk).expect("read response head");
        assert!(n > 0, "eof before the response head");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes the complete chunks at the start of `raw`: (data, bytes used, saw the last chunk).
pub fn dechunk(raw: &[u8]) -> (Vec<u8>, usize, bool) {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = raw[pos..].windows(2).position(|w| w == b"\r\n") else {
            return (out, pos, false);
        };
        let size_str = std::str::from_utf8(&raw[pos..pos + eol]).unwrap();
        let size = usize::from_str_radix(size_str.split(';').next().unwrap().trim(), 16).unwrap();
        let start = pos + eol + 2;
        if size == 0 {
            return (out, pos, true);
        }
        if raw.len() < start + size + 2 {
            return (out, pos, false);
        }
        out.extend_from_slice(&raw[start..start + size]);
        pos = start + size + 2;
    }
}

fn read_more<S: Read>(s: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match s.read(&mut chunk) {
        Ok(0) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => panic!("read failed: {e}"),
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(s: &mut Tls, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut buf = Vec::new();
    let (status, headers, n) = read_head(s, &mut buf);
    buf.drain(..n);
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse::<usize>().unwrap());
    let body = if chunked {
        loop {
            let (data, _, done) = dechunk(&buf);
            if done {
                break data;
            }
            assert!(read_more(s, &mut buf), "eof inside a chunked body");
        }
    } else {
        let len = len.unwrap_or(0);
        while buf.len() < len {
            assert!(read_more(s, &mut buf), "eof inside a body");
        }
        buf.truncate(len);
        buf
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// GET over a new connection.
pub fn get(port: u16, ca: &str, client: Option<&CertKeyPem>, target: &str) -> Resp {
    let mut s = connect(port, ca, client);
    request(&mut s, "GET", target, &[])
}

/// A streamed (chunked) GET: the body so far, read on demand.
pub struct Follow {
    s: Tls,
    raw: Vec<u8>,
    pub status: u16,
}

impl Follow {
    pub fn start(port: u16, ca: &str, client: &CertKeyPem, target: &str) -> Follow {
        let mut s = connect(port, ca, Some(client));
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut raw = Vec::new();
        let (status, _, n) = read_head(&mut s, &mut raw);
        raw.drain(..n);
        Follow { s, raw, status }
    }

    /// Reads until the body contains `needle`; returns the body so far.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&dechunk(&self.raw).0).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {needle:?} in {text:?}"
            );
            assert!(read_more(&mut self.s, &mut self.raw), "eof: {text:?}");
        }
    }

    /// Reads to the end of the chunked body; returns the whole body.
    pub fn finish(&mut self) -> String {
        loop {
            let (data, _, done) = dechunk(&self.raw);
            if done {
                return String::from_utf8_lossy(&data).into_owned();
            }
            assert!(
                read_more(&mut self.s, &mut self.raw),
                "eof before the end of the body"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SPDY/3.1

const SYN_STREAM: u16 = 1;
const RST_STREAM: u16 = 3;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 1;

/// A SPDY/3.1 session over an upgraded kubelet API connection.
pub struct Spdy {
    s: Tls,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
    zlib_started: bool,
    /// Data per stream id, and which streams the server finished.
    pub data: HashMap<u32, Vec<u8>>,
    pub fin: HashMap<u32, bool>,
    pub closed: bool,
}

/// The 101 (or error) answer to an upgrade request.
pub struct Upgrade {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Sends a SPDY/3.1 upgrade request; on 101 returns the session.
pub fn spdy_upgrade(
    port: u16,
    ca: &str,
    client: &CertKeyPem,
    target: &str,
    protocols: &[&str],
) -> (Upgrade, Option<Spdy>) {
    let mut s = connect(port, ca, Some(client));
    let mut head = format!(
        "POST {target} HTTP/1.1\r\nHost: 127.0.0.1:6443\r\nContent-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for p in protocols {
        head.push_str(&format!("X-Stream-Protocol-Version: {p}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let (status, headers, n) = read_head(&mut s, &mut buf);
    buf.drain(..n);
    if status != 101 {
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap())
            .unwrap_or(0);
        while buf.len() < len && read_more(&mut s, &mut buf) {}
        return (
            Upgrade {
                status,
                headers,
                body: buf,
            },
            None,
        );
    }
    (
        Upgrade {
            status,
            headers,
            body: Vec::new(),
        },
        Some(Spdy {
            s,
            buf,
            zlib_started: false,
            data: HashMap::new(),
            fin: HashMap::new(),
            closed: false,
        }),
    )
}

impl Spdy {
    fn control(&mut self, kind: u16, flags: u8, payload: &[u8]) {
        let mut f = vec![0x80, 0x03];
        f.extend_from_slice(&kind.to_be_bytes());
        f.push(flags);
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(payload);
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    /// Opens a stream with these headers.
    pub fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        let mut block = (headers.len() as u32).to_be_bytes().to_vec();
        for (n, v) in headers {
            block.extend_from_slice(&(n.len() as u32).to_be_bytes());
            block.extend_from_slice(n.as_bytes());
            block.extend_from_slice(&(v.len() as u32).to_be_bytes());
            block.extend_from_slice(v.as_bytes());
        }
        // One stored deflate block (BFINAL=0, BTYPE=00) in the session's zlib stream.
        let mut z = Vec::new();
        if !self.zlib_started {
            z.extend_from_slice(&[0x78, 0x01]);
            self.zlib_started = true;
        }
        let len = block.len() as u16;
        z.push(0x00);
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(&block);
        // An empty stored block, as a zlib sync flush ends with: a reader returns the data
        // above once it sees this, without waiting for the next frame's bytes.
        z.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&z);
        self.control(SYN_STREAM, 0, &p);
    }

    /// Sends data on a stream (with FIN when `fin`).
    pub fn send(&mut self, id: u32, data: &[u8], fin: bool) {
        let mut f = id.to_be_bytes().to_vec();
        f.push(if fin { FLAG_FIN } else { 0 });
        f.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(data);
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    /// Parses frames until `done` holds or the connection ends.
    pub fn run_until(&mut self, timeout: Duration, done: impl Fn(&Spdy) -> bool) {
        let end = Instant::now() + timeout;
        while !done(self) {
            assert!(
                Instant::now() < end,
                "spdy: timed out; data so far {:?}",
                self.data
            );
            if !self.parse_one() && (self.closed || !read_more(&mut self.s, &mut self.buf)) {
                self.closed = true;
                return;
            }
        }
    }

    fn parse_one(&mut self) -> bool {
        if self.buf.len() < 8 {
            return false;
        }
        let len = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if self.buf.len() < 8 + len {
            return false;
        }
        let frame: Vec<u8> = self.buf.drain(..8 + len).collect();
        let flags = frame[4];
        if frame[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            self.data
                .entry(id)
                .or_default()
                .extend_from_slice(&frame[8..]);
            if flags & FLAG_FIN != 0 {
                self.fin.insert(id, true);
            }
        } else {
            let kind = u16::from_be_bytes([frame[2], frame[3]]);
            if kind == RST_STREAM {
                let id =
                    u32::from_be_bytes([frame[8], frame[9], frame[10], frame[11]]) & 0x7fff_ffff;
                self.fin.insert(id, true);
            }
            if kind == GOAWAY {
                self.closed = true;
            }
            // SYN_REPLY (its headers are not needed), SETTINGS, PING, WINDOW_UPDATE: skipped.
        }
        true
    }

    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.data.get(&id).map(Vec::as_slice).unwrap_or(&[])).into_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// WebSocket (v4.channel.k8s.io): each binary message starts with its channel byte.

pub struct Ws {
    s: Tls,
    buf: Vec<u8>,
    pub channels: HashMap<u8, Vec<u8>>,
    pub closed: bool,
}

pub fn ws_upgrade(port: u16, ca: &str, client: &CertKeyPem, target: &str) -> (u16, Option<Ws>) {
    let mut s = connect(port, ca, Some(client));
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let (status, _, n) = read_head(&mut s, &mut buf);
    buf.drain(..n);
    if status != 101 {
        return (status, None);
    }
    (
        status,
        Some(Ws {
            s,
            buf,
            channels: HashMap::new(),
            closed: false,
        }),
    )
}

impl Ws {
    /// Sends a masked binary message on `channel`.
    pub fn send(&mut self, channel: u8, data: &[u8]) {
        let mut payload = vec![channel];
        payload.extend_from_slice(data);
        let mask = [0x12, 0x34, 0x56, 0x78];
        let mut f = vec![0x82];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
        self.s.flush().unwrap();
    }

    fn parse_one(&mut self) -> bool {
        let b = &self.buf;
        if b.len() < 2 {
            return false;
        }
        let (len, mut off) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return false,
            n => (n as usize, 2),
        };
        let masked = b[1] & 0x80 != 0;
        let mask: Option<[u8; 4]> = if masked {
            if b.len() < off + 4 {
                return false;
            }
            let m = [b[off], b[off + 1], b[off + 2], b[off + 3]];
            off += 4;
            Some(m)
        } else {
            None
        };
        if b.len() < off + len {
            return false;
        }
        let opcode = b[0] & 0x0f;
        let mut payload: Vec<u8> = b[off..off + len].to_vec();
        if let Some(m) = mask {
            for (i, x) in payload.iter_mut().enumerate() {
                *x ^= m[i % 4];
            }
        }
        self.buf.drain(..off + len);
        match opcode {
            0x8 => self.closed = true,
            0x1 | 0x2 if !payload.is_empty() => {
                self.channels
                    .entry(payload[0])
                    .or_default()
                    .extend_from_slice(&payload[1..]);
            }
            _ => {}
        }
        true
    }

    /// Reads until the server closes (close frame or EOF).
    pub fn run_to_close(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.closed {
            assert!(Instant::now() < end, "ws: timed out; {:?}", self.channels);
            if !self.parse_one() && !read_more(&mut self.s, &mut self.buf) {
                self.closed = true;
            }
        }
    }

    pub fn text(&self, channel: u8) -> String {
        String::from_utf8_lossy(
            self.channels
                .get(&channel)
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        )
        .into_owned()
    }
}
