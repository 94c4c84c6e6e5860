//! Socket-level tests of the server: keep-alive, framing, limits, timeouts, streaming,
//! upgrades (plain and TLS, with traffic in both directions at once), client certificates,
//! the connection bound and shutdown. Every connection goes to 127.0.0.1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::request::ChunkedDecoder;
use super::*;
use crate::certs::{Ca, CertKeyPem};

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A handler that echoes the request in a small text body.
fn echo() -> Arc<dyn Handler> {
    Arc::new(|req: Request, resp: Responder<'_>| {
        let body = format!(
            "{} {} q={:?} body={} len={}",
            req.method,
            req.path,
            req.query,
            String::from_utf8_lossy(&req.body),
            req.body.len()
        );
        let _ = resp.send(Response::text(200, &body).header("X-Test", "1"));
    })
}

fn plain_server(config: ServerConfig, handler: Arc<dyn Handler>) -> Server {
    let mut s = Server::bind_plain(localhost()).unwrap().with_config(config);
    s.serve(handler).unwrap();
    s
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        request::header_value(&self.headers, name)
    }
}

/// A client side stream plus the bytes read past the last response (pipelined responses,
/// or upgraded bytes that arrived together with the 101).
struct Client<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    fn new(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "eof; have {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Reads one response (Content-Length, chunked, or no body for HEAD/1xx/204).
    fn read_response(&mut self, head_request: bool) -> Resp {
        let (status, headers, used) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let Ok(httparse::Status::Complete(n)) = r.parse(&self.buf) {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (r.code.unwrap(), headers, n);
            }
            self.fill();
        };
        self.buf.drain(..used);
        let mut body = Vec::new();
        if head_request || status == 204 || (100..200).contains(&status) {
            return Resp {
                status,
                headers,
                body,
            };
        }
        if let Some(len) = request::header_value(&headers, "content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                self.fill();
            }
            body = self.buf.drain(..len).collect();
        } else {
            let mut d = ChunkedDecoder::new(usize::MAX);
            loop {
                let used = d.feed(&self.buf, &mut body).unwrap();
                self.buf.drain(..used);
                if d.is_done() {
                    break;
                }
                self.fill();
            }
        }
        Resp {
            status,
            headers,
            body,
        }
    }
}

impl<S: Read> Read for Client<S> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            return self.stream.read(out);
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        self.buf.drain(..n);
        Ok(n)
    }
}

impl<S: Write> Write for Client<S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.stream.write(data)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

fn read_response<S: Read + Write>(c: &mut Client<S>, head_request: bool) -> Resp {
    c.read_response(head_request)
}

/// True when the server closed the connection (EOF or reset) within a second.
fn closed_by_server(c: &mut Client<TcpStream>) -> bool {
    c.stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut b = [0u8; 64];
    matches!(c.read(&mut b), Ok(0) | Err(_))
}

fn connect_tcp(s: &Server) -> TcpStream {
    let c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn connect(s: &Server) -> Client<TcpStream> {
    Client::new(connect_tcp(s))
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let s = plain_server(ServerConfig::default(), echo());
    let mut c = connect(&s);
    c.write_all(b"GET /a?x=1&x=2 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-test"), Some("1"));
    assert!(r.header("date").is_some());
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"GET /a q=[("x", "1"), ("x", "2")] body= len=0"#
    );
    // Pipelined: both requests in one write.
    c.write_all(b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /c HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "POST /b q=[] body=abc len=3"
    );
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "GET /c q=[] body= len=0"
    );
}

#[test]
fn connection_close_and_http10_close_after_the_response() {
    let s = plain_server(ServerConfig::default(), echo());
    let mut c = connect(&s);
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(closed_by_server(&mut c));

    let mut c = connect(&s);
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 200);
    assert!(closed_by_server(&mut c));
}

#[test]
fn head_gets_headers_and_length_but_no_body() {
    let s = plain_server(ServerConfig::default(), echo());
    let mut c = connect(&s);
    c.write_all(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("24")); // "HEAD /x q=[] body= len=0"
                                                        // The next response starts right away: no body bytes were sent for HEAD.
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "GET /y q=[] body= len=0"
    );
}

#[test]
fn chunked_request_bodies_are_decoded() {
    let s = plain_server(ServerConfig::default(), echo());
    let mut c = connect(&s);
    c.write_all(b"PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    c.write_all(b"2\r\nde\r\n0\r\n\r\n").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "PUT /c q=[] body=abcde len=5"
    );
}

#[test]
fn expect_continue_gets_an_interim_response() {
    let s = plain_server(ServerConfig::default(), echo());
    let mut c = connect(&s);
    c.write_all(
        b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 100);
    c.write_all(b"hi").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "POST /e q=[] body=hi len=2"
    );
}

#[test]
fn oversize_bodies_get_413() {
    let config = ServerConfig {
        max_body_bytes: 10,
        ..ServerConfig::default()
    };
    let s = plain_server(config, echo());
    let mut c = connect(&s);
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n01234567890")
        .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));

    let mut c = connect(&s);
    c.write_all(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).status, 413);
}

#[test]
fn malformed_requests_get_4xx_and_never_kill_the_server() {
    let config = ServerConfig {
        max_headers: 4,
        max_header_bytes: 1024,
        ..ServerConfig::default()
    };
    let s = plain_server(config, echo());
    let cases: &[(&[u8], u16)] = &[
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"GET http://x/ HTTP/1.1\r\nHost: h\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
            431,
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 2\r\nExpect: magic\r\n\r\nhi",
            417,
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
            400,
        ),
        (b"GET / HTTP/2.0\r\n\r\n", 400),
    ];
    for (raw, status) in cases {
        let mut c = connect(&s);
        c.write_all(raw).unwrap();
        let r = read_response(&mut c, false);
        assert_eq!(r.status, *status, "for {:?}", String::from_utf8_lossy(raw));
    }
    let mut c = connect(&s);
    let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 4096));
    c.write_all(&huge).unwrap();
    assert_eq!(read_response(&mut c, false).status, 431);

    // Pseudo-random junk, many shapes: the server must survive and keep serving.
    let mut seed: u32 = 0x1234_5678;
    for _ in 0..40 {
        let mut junk = Vec::new();
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let b = (seed & 0xff) as u8;
            junk.push(if seed & 0x300 == 0 { b'\n' } else { b });
        }
        let mut c = connect(&s);
        let _ = c.write_all(&junk);
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        c.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = c.read_to_end(&mut sink);
    }
    let mut c = connect(&s);
    c.write_all(b"GET /alive HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut c, false).status, 200);
}

#[test]
fn slow_heads_time_out_with_408_and_idle_connections_close() {
    let config = ServerConfig {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let s = plain_server(config, echo());
    let mut c = connect(&s);
    let start = Instant::now();
    c.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    // Trickle bytes: they must not extend the head deadline.
    for b in b"st: x\r\n" {
        std::thread::sleep(Duration::from_millis(50));
        c.write_all(&[*b]).unwrap();
    }
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 408);
    assert!(start.elapsed() < Duration::from_secs(2));

    // A connection that never sends anything is closed silently.
    let mut c = connect(&s);
    let start = Instant::now();
    let mut b = [0u8; 8];
    assert_eq!(c.read(&mut b).unwrap(), 0);
    assert!(start.elapsed() >= Duration::from_millis(250));

    // A kept-alive connection is closed after the idle timeout.
    let mut c = connect(&s);
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).status, 200);
    assert_eq!(c.read(&mut b).unwrap(), 0);
}

#[test]
fn unanswered_and_panicking_handlers_get_500() {
    let s = plain_server(
        ServerConfig::default(),
        Arc::new(|req: Request, resp: Responder<'_>| {
            if req.path == "/panic" {
                panic!("handler bug");
            }
            let _ = resp;
        }),
    );
    for path in ["/silent", "/panic"] {
        let mut c = connect(&s);
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
            .unwrap();
        assert_eq!(read_response(&mut c, false).status, 500);
    }
}

#[test]
fn chunked_responses_arrive_chunk_by_chunk_and_notice_a_gone_client() {
    let (gone_tx, gone_rx) = mpsc::channel::<bool>();
    let gone_tx = std::sync::Mutex::new(gone_tx);
    let s = plain_server(
        ServerConfig::default(),
        Arc::new(move |req: Request, resp: Responder<'_>| {
            let mut w = resp
                .start_chunked(200, &[("Content-Type".into(), "application/json".into())])
                .unwrap();
            if req.path == "/stream" {
                for i in 0..3 {
                    w.write_chunk(format!("{{\"n\":{i}}}\n").as_bytes())
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                }
                w.finish().unwrap();
            } else {
                // Stream until the client leaves.
                let start = Instant::now();
                let mut gone = false;
                while start.elapsed() < Duration::from_secs(5) {
                    if w.peer_closed() {
                        gone = true;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = gone_tx.lock().unwrap().send(gone);
            }
        }),
    );
    let mut c = connect(&s);
    c.write_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    // The first chunk must arrive well before the handler is done (600 ms).
    let start = Instant::now();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("{\"n\":0}") {
        let n = c.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        start.elapsed() < Duration::from_millis(150),
        "{:?}",
        start.elapsed()
    );
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.contains("Transfer-Encoding: chunked\r\n"), "{text}");
    assert!(text.ends_with("8\r\n{\"n\":0}\n\r\n"), "{text}");
    // The rest, then the same connection is reusable.
    let mut all = got;
    while !all.ends_with(b"0\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0);
        all.extend_from_slice(&buf[..n]);
    }
    c.write_all(b"GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));
    drop(c);
    assert!(gone_rx.recv_timeout(Duration::from_secs(5)).unwrap());
}

/// Server side of the duplex test: a reader thread counts everything the client sends while
/// this thread writes `to_send` bytes; then it reports the count and closes.
fn duplex_handler(to_send: usize) -> Arc<dyn Handler> {
    Arc::new(move |_req: Request, resp: Responder<'_>| {
        let up = resp
            .upgrade(&[
                ("Connection".into(), "Upgrade".into()),
                ("Upgrade".into(), "test/1".into()),
            ])
            .unwrap();
        let (mut r, mut w) = up.into_split();
        let reader = std::thread::spawn(move || {
            let mut total = 0usize;
            let mut buf = vec![0u8; 8192];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        total += n;
                        if buf[..n].contains(&b'!') {
                            break;
                        }
                    }
                }
            }
            total
        });
        // Written while the reader is blocked waiting for the client.
        let piece = vec![b'x'; 16 * 1024];
        let mut sent = 0;
        while sent < to_send {
            let n = piece.len().min(to_send - sent);
            w.write_all(&piece[..n]).unwrap();
            sent += n;
        }
        let total = reader.join().unwrap();
        w.write_all(format!("|{total}|").as_bytes()).unwrap();
        w.shutdown().unwrap();
    })
}

const DUPLEX_BYTES: usize = 2 * 1024 * 1024;

/// Client side of the duplex test over any stream that can be read with a short timeout: it
/// waits before sending (so the server's reader is blocked while its writer streams), then
/// sends and receives at the same time.
fn duplex_client(stream: &mut (impl Read + Write)) -> (usize, String) {
    let mut received = 0;
    let mut tail = Vec::new();
    let mut sent = 0;
    let piece = vec![b'y'; 16 * 1024];
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut done_sending = false;
    loop {
        if start.elapsed() > Duration::from_millis(300) && !done_sending {
            if sent < DUPLEX_BYTES {
                stream.write_all(&piece).unwrap();
                sent += piece.len();
            } else {
                stream.write_all(b"!").unwrap();
                sent += 1;
                done_sending = true;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                received += n;
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 64 {
                    tail.drain(..tail.len() - 64);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("client read failed: {e}"),
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "duplex test stuck"
        );
    }
    (received, String::from_utf8_lossy(&tail).into_owned())
}

fn upgrade_request() -> &'static [u8] {
    b"POST /exec HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: test/1\r\nContent-Length: 0\r\n\r\n"
}

#[test]
fn plain_upgrade_is_full_duplex() {
    let s = plain_server(ServerConfig::default(), duplex_handler(DUPLEX_BYTES));
    let mut c = connect(&s);
    c.write_all(upgrade_request()).unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("test/1"));
    c.stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (received, tail) = duplex_client(&mut c);
    let count = format!("|{}|", DUPLEX_BYTES + 1);
    assert!(tail.ends_with(&count), "{tail}");
    assert_eq!(received, DUPLEX_BYTES + count.len());
}

struct Pki {
    ca: Ca,
    server: CertKeyPem,
}

fn pki() -> Pki {
    let ca = Ca::generate("httpd-test-ca").unwrap();
    let server = ca
        .issue_server("localhost", &["127.0.0.1", "localhost"])
        .unwrap();
    Pki { ca, server }
}

fn tls_server(p: &Pki, auth: ClientAuth, handler: Arc<dyn Handler>) -> Server {
    let setup = TlsSetup {
        cert: ServingCert::from_pem(&p.server.cert_pem, &p.server.key_pem).unwrap(),
        client_auth: auth,
    };
    let mut s = Server::bind(localhost(), setup).unwrap();
    s.serve(handler).unwrap();
    s
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_client(p: &Pki, s: &Server, client: Option<&CertKeyPem>) -> Client<TlsStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(p.ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    Client::new(rustls::StreamOwned::new(conn, connect_tcp(s)))
}

fn whoami() -> Arc<dyn Handler> {
    Arc::new(|req: Request, resp: Responder<'_>| {
        let (cn, orgs) = req.peer.subject();
        let body = format!(
            "cn={cn:?} orgs={orgs:?} auth={}",
            req.peer.is_authenticated()
        );
        let _ = resp.send(Response::text(200, &body));
    })
}

#[test]
fn tls_required_client_auth_exposes_the_subject() {
    let p = pki();
    let s = tls_server(
        &p,
        ClientAuth::Required {
            ca_pem: p.ca.cert_pem(),
        },
        whoami(),
    );
    let node =
        p.ca.issue_client("system:node:vk-node", Some("system:nodes"))
            .unwrap();
    let mut c = tls_client(&p, &s, Some(&node));
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        r#"cn=Some("system:node:vk-node") orgs=["system:nodes"] auth=true"#
    );
    // Keep-alive over TLS.
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut c, false).status, 200);

    // No certificate: the handshake fails, nothing is served.
    let mut anon = tls_client(&p, &s, None);
    let res = anon
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .and_then(|_| anon.read(&mut [0u8; 16]));
    assert!(!matches!(res, Ok(n) if n > 0), "anonymous peer was served");

    // A certificate from another CA is refused too.
    let other = Ca::generate("other").unwrap();
    let stranger = other.issue_client("admin", Some("system:masters")).unwrap();
    let mut bad = tls_client(&p, &s, Some(&stranger));
    let res = bad
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .and_then(|_| bad.read(&mut [0u8; 16]));
    assert!(
        !matches!(res, Ok(n) if n > 0),
        "foreign certificate was accepted"
    );
}

#[test]
fn tls_optional_client_auth_serves_anonymous_peers() {
    let p = pki();
    let s = tls_server(
        &p,
        ClientAuth::Optional {
            ca_pem: p.ca.cert_pem(),
        },
        whoami(),
    );
    let mut c = tls_client(&p, &s, None);
    c.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "cn=None orgs=[] auth=false"
    );
}

#[test]
fn tls_upgrade_is_full_duplex() {
    let p = pki();
    let s = tls_server(&p, ClientAuth::None, duplex_handler(DUPLEX_BYTES));
    let mut c = tls_client(&p, &s, None);
    // Send the request and the first upgraded bytes together: the server must hand the early
    // bytes to the reader half.
    let mut first = upgrade_request().to_vec();
    first.extend_from_slice(b"early");
    c.write_all(&first).unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(r.status, 101);
    c.stream
        .sock
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let (received, tail) = duplex_client(&mut c);
    let count = format!("|{}|", DUPLEX_BYTES + 1 + "early".len());
    assert!(tail.ends_with(&count), "{tail}");
    assert_eq!(received, DUPLEX_BYTES + count.len());
}

#[test]
fn tls_streaming_and_garbage_handshakes() {
    let p = pki();
    let s = tls_server(
        &p,
        ClientAuth::None,
        Arc::new(|_req: Request, resp: Responder<'_>| {
            let mut w = resp.start_chunked(200, &[]).unwrap();
            for i in 0..3 {
                w.write_chunk(format!("line {i}\n").as_bytes()).unwrap();
            }
            w.finish().unwrap();
        }),
    );
    // Plain HTTP to a TLS port, and truncated handshakes, must not disturb the server.
    for junk in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"\x16\x03\x01\x00\x05hello",
        b"\x16",
    ] {
        let mut c = connect(&s);
        c.write_all(junk).unwrap();
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_end(&mut Vec::new());
    }
    let mut c = tls_client(&p, &s, None);
    c.write_all(b"GET /logs HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = read_response(&mut c, false);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        "line 0\nline 1\nline 2\n"
    );
}

#[test]
fn connections_beyond_the_bound_get_503() {
    let config = ServerConfig {
        max_connections: 1,
        ..ServerConfig::default()
    };
    let s = plain_server(config, echo());
    let mut first = connect(&s);
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut first, false).status, 200);
    assert_eq!(s.active_connections(), 1);
    let mut second = connect(&s);
    second
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let r = read_response(&mut second, false);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    drop(first);
    let start = Instant::now();
    while s.active_connections() > 0 {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut third = connect(&s);
    third
        .write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut third, false).status, 200);
}

#[test]
fn shutdown_closes_idle_connections_and_stops_streams() {
    let saw_stop = Arc::new(AtomicBool::new(false));
    let saw = saw_stop.clone();
    let mut s = plain_server(
        ServerConfig::default(),
        Arc::new(move |req: Request, resp: Responder<'_>| {
            if req.path == "/stream" {
                let w = resp.start_chunked(200, &[]).unwrap();
                while !w.server_stopping() {
                    std::thread::sleep(Duration::from_millis(10));
                }
                saw.store(true, Ordering::SeqCst);
                let _ = w.finish();
            } else {
                let _ = resp.send(Response::text(200, "ok"));
            }
        }),
    );
    let mut idle = connect(&s);
    idle.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut idle, false).status, 200);
    let mut stream = connect(&s);
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let addr = s.local_addr();
    let start = Instant::now();
    s.shutdown();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(saw_stop.load(Ordering::SeqCst));
    assert_eq!(s.active_connections(), 0);
    assert!(closed_by_server(&mut idle));
    let r = read_response(&mut stream, false);
    assert_eq!(r.header("connection"), None);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}

#[test]
fn serve_twice_is_an_error() {
    let mut s = Server::bind_plain(localhost()).unwrap();
    s.serve(echo()).unwrap();
    assert!(matches!(
        s.serve(echo()),
        Err(HttpdError::AlreadyServing { .. })
    ));
}
