//! A Unix-socket proxy between the daemon and containerd: it counts the CRI calls the daemon
//! makes (the bench's idle phases) and, on demand, delays or holds calls (the chaos harness's
//! slow and hanging runtime).
//!
//! Owns reading the client→server half of HTTP/2 frame by frame: after the 24-byte connection
//! preface the stream is a sequence of frames, each a 9-byte header (24-bit payload length,
//! type, flags, 31-bit stream id) and its payload; every gRPC call opens a new client-initiated
//! (odd) stream with a HEADERS frame. A slowed call is slowed by holding its DATA frames (the
//! request message) back: HEADERS always pass at once and in order, so both ends' HPACK tables
//! stay in step, and the runtime simply waits for the message. A held call the daemon gives up
//! on (its deadline) is reset by the daemon; its held frames are then dropped, never sent on a
//! closed stream. The server→client half is copied untouched.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const FRAME_DATA: u8 = 0x0;
const FRAME_HEADERS: u8 = 0x1;
const FRAME_RST_STREAM: u8 = 0x3;

/// What happens to the calls that match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Every call passes at once.
    None,
    /// Matching calls reach the runtime this much later.
    Delay { matching: Match, by: Duration },
    /// Matching calls never reach the runtime until the fault is cleared (the caller's
    /// deadline ends them first).
    Hold { matching: Match },
}

/// Which calls a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    All,
    /// Calls whose request message contains these bytes (a pod's name appears in its
    /// RunPodSandbox, CreateContainer and PullImage requests).
    Containing(Vec<u8>),
}

impl Fault {
    fn hold_until(&self, payload: &[u8], now: Instant) -> Option<Option<Instant>> {
        let (matching, until) = match self {
            Fault::None => return None,
            Fault::Delay { matching, by } => (matching, Some(now + *by)),
            Fault::Hold { matching } => (matching, None),
        };
        let hit = match matching {
            Match::All => true,
            Match::Containing(m) => payload.windows(m.len().max(1)).any(|w| w == m.as_slice()),
        };
        hit.then_some(until)
    }
}

/// One complete piece of the client→server stream.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Preface(Vec<u8>),
    Frame { ty: u8, stream: u32, bytes: Vec<u8> },
}

/// Cuts the client→server bytes, fed in any chunks, into the preface and whole frames.
#[derive(Debug)]
struct Splitter {
    preface_left: usize,
    buf: Vec<u8>,
}

impl Default for Splitter {
    fn default() -> Splitter {
        Splitter {
            preface_left: PREFACE_LEN,
            buf: Vec::new(),
        }
    }
}

impl Splitter {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<Piece>) {
        self.buf.extend_from_slice(bytes);
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.buf.len());
            self.preface_left -= n;
            out.push(Piece::Preface(self.buf.drain(..n).collect()));
        }
        while self.preface_left == 0 && self.buf.len() >= FRAME_HEADER_LEN {
            let h = &self.buf;
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if self.buf.len() < FRAME_HEADER_LEN + len {
                break;
            }
            let ty = h[3];
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let bytes = self.buf.drain(..FRAME_HEADER_LEN + len).collect();
            out.push(Piece::Frame { ty, stream, bytes });
        }
    }
}

/// Whether this frame opens a call: a HEADERS frame on a new client-initiated stream (a
/// stream's trailers come on the same stream).
fn opens_call(ty: u8, stream: u32, max_stream: &mut u32) -> bool {
    let opens = ty == FRAME_HEADERS && stream % 2 == 1 && stream > *max_stream;
    if opens {
        *max_stream = stream;
    }
    opens
}

/// A frame held back, with when it may go (`None`: when the fault is cleared).
struct Held {
    stream: u32,
    until: Option<Instant>,
    bytes: Vec<u8>,
}

/// What the proxy shares with its connections.
struct State {
    calls: AtomicU64,
    held_calls: AtomicU64,
    fault: Mutex<Fault>,
}

/// A running proxy; it lives until the process ends.
pub struct Proxy {
    pub path: PathBuf,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on `listen` and forwards every connection to `upstream`.
    pub fn start(listen: &Path, upstream: &Path) -> std::io::Result<Proxy> {
        let _ = std::fs::remove_file(listen);
        let listener = UnixListener::bind(listen)?;
        let state = Arc::new(State {
            calls: AtomicU64::new(0),
            held_calls: AtomicU64::new(0),
            fault: Mutex::new(Fault::None),
        });
        let upstream = upstream.to_path_buf();
        let shared = state.clone();
        std::thread::Builder::new()
            .name("cri-proxy".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    match UnixStream::connect(&upstream) {
                        Ok(server) => relay(client, server, shared.clone()),
                        Err(e) => eprintln!(
                            "cri proxy: failed to connect to {}: {e}",
                            upstream.display()
                        ),
                    }
                }
            })?;
        Ok(Proxy {
            path: listen.to_path_buf(),
            state,
        })
    }

    /// CRI calls seen so far.
    pub fn calls(&self) -> u64 {
        self.state.calls.load(Ordering::Relaxed)
    }

    /// Calls a fault has slowed or held so far.
    pub fn held_calls(&self) -> u64 {
        self.state.held_calls.load(Ordering::Relaxed)
    }

    /// Applies to calls whose message arrives from now on; [`Fault::None`] also lets every
    /// held call go.
    pub fn set_fault(&self, fault: Fault) {
        *self
            .state
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }
}

/// Copies both directions: the client's frames through the fault, the server's untouched.
fn relay(client: UnixStream, server: UnixStream, state: Arc<State>) {
    let (Ok(client_w), Ok(server_r), Ok(server_w)) =
        (client.try_clone(), server.try_clone(), server.try_clone())
    else {
        return;
    };
    let server_w = Arc::new(Mutex::new(server_w));
    let pending: Arc<Mutex<Vec<Held>>> = Arc::default();
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (server_w, pending, closed, state) = (
            server_w.clone(),
            pending.clone(),
            closed.clone(),
            state.clone(),
        );
        std::thread::spawn(move || release(&server_w, &pending, &closed, &state));
    }
    let mut client_r = client;
    std::thread::spawn(move || {
        let mut splitter = Splitter::default();
        let mut pieces = Vec::new();
        let mut max_stream = 0u32;
        let mut slowed: HashSet<u32> = HashSet::new();
        let mut buf = vec![0u8; 64 << 10];
        'conn: loop {
            let n = match client_r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            splitter.feed(&buf[..n], &mut pieces);
            for piece in pieces.drain(..) {
                let bytes = match piece {
                    Piece::Preface(b) => b,
                    Piece::Frame { ty, stream, bytes } => {
                        if opens_call(ty, stream, &mut max_stream) {
                            state.calls.fetch_add(1, Ordering::Relaxed);
                        }
                        let mut queue = pending.lock().unwrap_or_else(PoisonError::into_inner);
                        if ty == FRAME_RST_STREAM {
                            queue.retain(|h| h.stream != stream);
                        } else if ty == FRAME_DATA {
                            let fault = state
                                .fault
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .clone();
                            let behind = queue.iter().any(|h| h.stream == stream);
                            let until = fault
                                .hold_until(&bytes[FRAME_HEADER_LEN..], Instant::now())
                                .or_else(|| {
                                    (behind || slowed.contains(&stream))
                                        .then_some(Some(Instant::now()))
                                });
                            if let Some(until) = until {
                                if slowed.insert(stream) {
                                    state.held_calls.fetch_add(1, Ordering::Relaxed);
                                }
                                queue.push(Held {
                                    stream,
                                    until,
                                    bytes,
                                });
                                continue;
                            }
                        }
                        bytes
                    }
                };
                let mut w = server_w.lock().unwrap_or_else(PoisonError::into_inner);
                if w.write_all(&bytes).is_err() {
                    break 'conn;
                }
            }
        }
        closed.store(true, Ordering::SeqCst);
        let w = server_w.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = w.shutdown(std::net::Shutdown::Both);
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

/// Sends held frames whose time came, each stream's in order, until the connection closes.
fn release(
    server_w: &Mutex<UnixStream>,
    pending: &Mutex<Vec<Held>>,
    closed: &AtomicBool,
    state: &State,
) {
    while !closed.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
        let cleared = *state.fault.lock().unwrap_or_else(PoisonError::into_inner) == Fault::None;
        let now = Instant::now();
        let mut queue = pending.lock().unwrap_or_else(PoisonError::into_inner);
        let mut blocked: HashSet<u32> = HashSet::new();
        let mut due = Vec::new();
        let mut i = 0;
        while i < queue.len() {
            let h = &queue[i];
            let ready = cleared || h.until.is_some_and(|t| t <= now);
            if ready && !blocked.contains(&h.stream) {
                due.push(queue.remove(i));
            } else {
                blocked.insert(h.stream);
                i += 1;
            }
        }
        // Written under the queue's lock: a frame of the same stream the relay forwards next
        // must not overtake these.
        let mut w = server_w.lock().unwrap_or_else(PoisonError::into_inner);
        for h in due {
            if w.write_all(&h.bytes).is_err() {
                return;
            }
        }
    }
}

/// Checks the frame reader and the call count on a hand-made stream (run at start-up: the
/// harnesses have no test runner).
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
    bytes.extend(frame(FRAME_DATA, 1, b"..slow-pod.."));
    bytes.extend(frame(FRAME_HEADERS, 1, &[2; 5])); // trailers: same stream
    bytes.extend(frame(FRAME_HEADERS, 3, &[3; 7]));
    bytes.extend(frame(0x8, 0, &[0; 4])); // WINDOW_UPDATE
    bytes.extend(frame(FRAME_HEADERS, 5, &[]));
    let mut s = Splitter::default();
    let mut pieces = Vec::new();
    for chunk in bytes.chunks(5) {
        s.feed(chunk, &mut pieces);
    }
    let preface: usize = pieces
        .iter()
        .map(|p| match p {
            Piece::Preface(b) => b.len(),
            Piece::Frame { .. } => 0,
        })
        .sum();
    let mut max_stream = 0;
    let calls = pieces
        .iter()
        .filter(|p| match p {
            Piece::Frame { ty, stream, .. } => opens_call(*ty, *stream, &mut max_stream),
            Piece::Preface(_) => false,
        })
        .count();
    let frames = pieces
        .iter()
        .filter(|p| matches!(p, Piece::Frame { .. }))
        .count();
    let data = pieces.iter().find_map(|p| match p {
        Piece::Frame {
            ty: FRAME_DATA,
            bytes,
            ..
        } => Some(&bytes[FRAME_HEADER_LEN..]),
        _ => None,
    });
    let hold = Fault::Hold {
        matching: Match::Containing(b"slow-".to_vec()),
    };
    let other = Fault::Hold {
        matching: Match::Containing(b"fast-".to_vec()),
    };
    let now = Instant::now();
    let ok = preface == PREFACE_LEN
        && frames == 7
        && calls == 3
        && data.is_some_and(|d| {
            hold.hold_until(d, now) == Some(None) && other.hold_until(d, now).is_none()
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cri proxy self-check: preface {preface}, frames {frames}, calls {calls}, data {data:?}"
        ))
    }
}
