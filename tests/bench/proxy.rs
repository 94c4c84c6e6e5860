//! A counting Unix-socket proxy between the daemon and containerd, for the idle phases: it
//! copies bytes both ways untouched and counts the CRI calls the daemon makes.
//!
//! Owns parsing the client→server half of HTTP/2 just enough to count calls: after the 24-byte
//! connection preface the stream is a sequence of frames, each a 9-byte header (24-bit payload
//! length, type, flags, 31-bit stream id) and its payload; every gRPC call opens a new
//! client-initiated (odd) stream with a HEADERS frame.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_HEADERS: u8 = 0x1;

/// Counts the calls (new streams) in one connection's client→server bytes, fed in any chunks.
#[derive(Debug)]
pub struct CallCounter {
    preface_left: usize,
    header: Vec<u8>,
    payload_left: usize,
    max_stream: u32,
}

impl Default for CallCounter {
    fn default() -> CallCounter {
        CallCounter {
            preface_left: PREFACE_LEN,
            header: Vec::with_capacity(FRAME_HEADER_LEN),
            payload_left: 0,
            max_stream: 0,
        }
    }
}

impl CallCounter {
    /// Consumes the next bytes of the stream; returns how many calls they opened.
    pub fn feed(&mut self, mut buf: &[u8]) -> u64 {
        let mut calls = 0;
        while !buf.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(buf.len());
                self.preface_left -= n;
                buf = &buf[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(buf.len());
                self.payload_left -= n;
                buf = &buf[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.header.len()).min(buf.len());
                self.header.extend_from_slice(&buf[..n]);
                buf = &buf[n..];
                if self.header.len() == FRAME_HEADER_LEN {
                    let h = &self.header;
                    let len =
                        (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                    if h[3] == FRAME_HEADERS && stream % 2 == 1 && stream > self.max_stream {
                        self.max_stream = stream;
                        calls += 1;
                    }
                    self.payload_left = len;
                    self.header.clear();
                }
            }
        }
        calls
    }
}

/// A running proxy; it lives until the process ends.
pub struct Proxy {
    pub path: PathBuf,
    calls: Arc<AtomicU64>,
}

impl Proxy {
    /// Listens on `listen` and forwards every connection to `upstream`.
    pub fn start(listen: &Path, upstream: &Path) -> std::io::Result<Proxy> {
        let _ = std::fs::remove_file(listen);
        let listener = UnixListener::bind(listen)?;
        let calls = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_path_buf();
        let counter = calls.clone();
        std::thread::Builder::new()
            .name("cri-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    match UnixStream::connect(&upstream) {
                        Ok(server) => relay(client, server, counter.clone()),
                        Err(e) => eprintln!(
                            "bench: cri proxy: failed to connect to {}: {e}",
                            upstream.display()
                        ),
                    }
                }
            })?;
        Ok(Proxy {
            path: listen.to_path_buf(),
            calls,
        })
    }

    /// CRI calls seen so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// Copies both directions on two threads, counting calls on the way in.
fn relay(client: UnixStream, server: UnixStream, calls: Arc<AtomicU64>) {
    let (Ok(client_w), Ok(server_r)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let mut client_r = client;
    let mut server_w = server;
    std::thread::spawn(move || {
        let mut counter = CallCounter::default();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match client_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    calls.fetch_add(counter.feed(&buf[..n]), Ordering::Relaxed);
                    if server_w.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = server_w.shutdown(std::net::Shutdown::Both);
        let _ = client_r.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let mut r = server_r;
        let mut w = client_w;
        let _ = std::io::copy(&mut r, &mut w);
        let _ = w.shutdown(std::net::Shutdown::Both);
        let _ = r.shutdown(std::net::Shutdown::Both);
    });
}

/// Checks the counter on a hand-made stream (run at start-up: the bench has no test harness).
pub fn self_check() -> Result<(), String> {
    let frame = |ty: u8, stream: u32, payload: &[u8]| -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend(frame(0x4, 0, &[0; 6])); // SETTINGS
    bytes.extend(frame(FRAME_HEADERS, 1, &[1; 40]));
    bytes.extend(frame(0x0, 1, &[0; 100])); // DATA
    bytes.extend(frame(FRAME_HEADERS, 1, &[2; 5])); // trailers: same stream
    bytes.extend(frame(FRAME_HEADERS, 3, &[3; 7]));
    bytes.extend(frame(0x8, 0, &[0; 4])); // WINDOW_UPDATE
    bytes.extend(frame(FRAME_HEADERS, 5, &[]));
    let mut c = CallCounter::default();
    let got: u64 = bytes.chunks(5).map(|ch| c.feed(ch)).sum();
    if got == 3 {
        Ok(())
    } else {
        Err(format!("cri proxy self-check: counted {got} calls, want 3"))
    }
}
