//! One accepted connection's byte transport: plain TCP or rustls over TCP, driven with the socket
//! in non-blocking mode and `poll(2)` (nix) for waiting, so that every read and write has a
//! deadline and so that one thread can read while another writes.
//!
//! Design: the rustls `ServerConnection` sits behind a `Mutex` that is held only for the
//! non-blocking steps (feed received records, drain plaintext, encrypt, push records to the
//! socket); waiting happens in `poll` with the lock released. A reader blocked waiting for the
//! peer therefore never blocks a writer, which is what upgraded (exec/attach/port-forward)
//! connections need. Plain TCP needs no lock at all.
//!
//! Owns: the socket and TLS state of one connection, and the upgraded halves. Must not parse
//! HTTP or know about handlers.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustls::ServerConnection;

/// How long one `poll` waits at most when a stop flag must be checked.
const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Called when the transport is dropped (the server's connection accounting).
pub(crate) trait DropHook: Send + Sync {
    fn closed(&self, id: u64);
}

pub(crate) struct Transport {
    sock: TcpStream,
    tls: Option<Mutex<ServerConnection>>,
    id: u64,
    hook: Option<Arc<dyn DropHook>>,
}

impl Drop for Transport {
    fn drop(&mut self) {
        if let Some(hook) = &self.hook {
            hook.closed(self.id);
        }
    }
}

fn lock(m: &Mutex<ServerConnection>) -> MutexGuard<'_, ServerConnection> {
    // A panic on another thread while holding the lock leaves rustls state intact enough to
    // fail the connection cleanly; do not propagate the poison as a panic.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for the peer")
}

fn stopping() -> io::Error {
    io::Error::new(io::ErrorKind::Interrupted, "server is shutting down")
}

enum Step {
    Data(usize),
    Wait(PollFlags),
}

impl Transport {
    pub(crate) fn new(
        sock: TcpStream,
        tls: Option<ServerConnection>,
        id: u64,
        hook: Option<Arc<dyn DropHook>>,
    ) -> io::Result<Transport> {
        sock.set_nonblocking(true)?;
        // Small writes (chunks, SPDY frames) must leave at once.
        sock.set_nodelay(true)?;
        Ok(Transport {
            sock,
            tls: tls.map(Mutex::new),
            id,
            hook,
        })
    }

    /// The verified client chain (DER, leaf first) once the handshake is done.
    pub(crate) fn peer_chain(&self) -> Vec<Vec<u8>> {
        match &self.tls {
            None => Vec::new(),
            Some(m) => lock(m)
                .peer_certificates()
                .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
                .unwrap_or_default(),
        }
    }

    /// Shuts the socket down in both directions; blocked waits wake up and fail.
    pub(crate) fn force_close(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }

    /// Reads at least one byte (or returns 0 at a clean end of stream). Waits until `deadline`
    /// (forever when `None`); when `stop` is given and becomes true, fails with `Interrupted`.
    pub(crate) fn read(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
    ) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let step = match &self.tls {
                None => match (&self.sock).read(buf) {
                    Ok(n) => Step::Data(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Step::Wait(PollFlags::POLLIN)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                },
                Some(m) => self.tls_read_step(&mut lock(m), buf)?,
            };
            match step {
                Step::Data(n) => return Ok(n),
                Step::Wait(flags) => self.wait(flags, deadline, stop)?,
            }
        }
    }

    fn tls_read_step(&self, conn: &mut ServerConnection, buf: &mut [u8]) -> io::Result<Step> {
        loop {
            match conn.reader().read(buf) {
                // Ok(0) is a clean close_notify; Err(UnexpectedEof) a TCP close without one.
                Ok(n) => return Ok(Step::Data(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            self.flush_tls(conn)?;
            match conn.read_tls(&mut &self.sock) {
                Ok(_) => {
                    // Ok(0) is EOF: rustls records it and the reader reports it next round.
                    if let Err(e) = conn.process_new_packets() {
                        // Best effort: send the alert rustls queued, then fail.
                        let _ = self.flush_tls(conn);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    self.flush_tls(conn)?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut flags = PollFlags::POLLIN;
                    if conn.wants_write() {
                        flags |= PollFlags::POLLOUT;
                    }
                    return Ok(Step::Wait(flags));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Pushes queued TLS records to the socket without blocking. `Ok(true)` when nothing is
    /// left queued.
    fn flush_tls(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut &self.sock) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Writes all of `data` to the peer and flushes it to the socket before returning.
    pub(crate) fn write_all(&self, data: &[u8], deadline: Option<Instant>) -> io::Result<()> {
        let mut rest = data;
        loop {
            match &self.tls {
                None => {
                    if rest.is_empty() {
                        return Ok(());
                    }
                    match (&self.sock).write(rest) {
                        Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                        Ok(n) => {
                            rest = &rest[n..];
                            continue;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(m) => {
                    let mut conn = lock(m);
                    while !rest.is_empty() {
                        let n = conn.writer().write(rest)?;
                        if n == 0 {
                            break;
                        }
                        rest = &rest[n..];
                    }
                    let flushed = self.flush_tls(&mut conn)?;
                    if flushed {
                        if rest.is_empty() {
                            return Ok(());
                        }
                        continue;
                    }
                }
            }
            self.wait(PollFlags::POLLOUT, deadline, None)?;
        }
    }

    /// Ends our direction: a TLS close_notify (when TLS) and a TCP write shutdown.
    pub(crate) fn shutdown_write(&self, deadline: Option<Instant>) -> io::Result<()> {
        if let Some(m) = &self.tls {
            lock(m).send_close_notify();
            self.write_all(&[], deadline)?;
        }
        match self.sock.shutdown(Shutdown::Write) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// True when the peer has closed its side (FIN, close_notify, reset) while we are not
    /// expecting input, e.g. a watch client that went away. Never blocks.
    pub(crate) fn peer_closed(&self) -> bool {
        let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
        let revents = fds[0].revents().unwrap_or(PollFlags::empty());
        if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
            return true;
        }
        match &self.tls {
            None => {
                let mut one = [0u8; 1];
                match self.sock.peek(&mut one) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
                    Err(_) => true,
                }
            }
            Some(m) => {
                let mut conn = lock(m);
                loop {
                    match conn.read_tls(&mut &self.sock) {
                        Ok(0) => return true,
                        Ok(_) => match conn.process_new_packets() {
                            Ok(state) if state.peer_has_closed() => return true,
                            Ok(_) => {}
                            Err(_) => return true,
                        },
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        // rustls refuses more input while unread plaintext is buffered: the
                        // peer is talking, not gone.
                        Err(e) if e.kind() == io::ErrorKind::Other => return false,
                        Err(_) => return true,
                    }
                }
            }
        }
    }

    fn wait(
        &self,
        flags: PollFlags,
        deadline: Option<Instant>,
        stop: Option<&AtomicBool>,
    ) -> io::Result<()> {
        loop {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                return Err(stopping());
            }
            let now = Instant::now();
            let mut slice = Duration::from_secs(60);
            if let Some(d) = deadline {
                if now >= d {
                    return Err(timed_out());
                }
                slice = slice.min(d - now);
            }
            if stop.is_some() {
                slice = slice.min(STOP_CHECK_INTERVAL);
            }
            // Round up so that a sub-millisecond remainder does not spin.
            let ms = u16::try_from(slice.as_millis().saturating_add(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.sock.as_fd(), flags)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

/// An upgraded connection (after `101 Switching Protocols`), splittable into halves that can
/// be used from two threads at once.
pub struct Upgraded {
    pub reader: UpgradedReader,
    pub writer: UpgradedWriter,
}

impl Upgraded {
    pub(crate) fn new(transport: Arc<Transport>, leftover: Vec<u8>) -> Upgraded {
        Upgraded {
            reader: UpgradedReader {
                transport: transport.clone(),
                leftover,
                pos: 0,
                timeout: None,
            },
            writer: UpgradedWriter {
                transport,
                timeout: None,
            },
        }
    }

    /// The two halves.
    pub fn into_split(self) -> (UpgradedReader, UpgradedWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of an upgraded connection. `read` blocks until data arrives, the peer
/// closes (returns 0) or the optional idle timeout passes (`TimedOut`).
pub struct UpgradedReader {
    transport: Arc<Transport>,
    /// Bytes that arrived after the request head, before the upgrade.
    leftover: Vec<u8>,
    pos: usize,
    timeout: Option<Duration>,
}

impl UpgradedReader {
    /// Fails a `read` that waits longer than this for the peer (`None`: wait forever).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Shuts the whole connection down; the other half's blocked calls fail at once.
    pub fn close(&self) {
        self.transport.force_close();
    }
}

impl Read for UpgradedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.leftover.len() {
            let n = buf.len().min(self.leftover.len() - self.pos);
            buf[..n].copy_from_slice(&self.leftover[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        self.transport.read(buf, deadline, None)
    }
}

/// The sending half of an upgraded connection. Every `write` is flushed to the socket before
/// it returns.
pub struct UpgradedWriter {
    transport: Arc<Transport>,
    timeout: Option<Duration>,
}

impl UpgradedWriter {
    /// Fails a `write` that cannot make progress for this long (`None`: wait forever).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Ends our direction (TLS close_notify, then TCP FIN); the peer can still send.
    pub fn shutdown(&mut self) -> io::Result<()> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        self.transport.shutdown_write(deadline)
    }

    /// Shuts the whole connection down; the other half's blocked calls fail at once.
    pub fn close(&self) {
        self.transport.force_close();
    }
}

impl Write for UpgradedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        self.transport.write_all(buf, deadline)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (Transport, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (Transport::new(server, None, 1, None).unwrap(), client)
    }

    #[test]
    fn plain_read_times_out_at_the_deadline() {
        let (t, _client) = pair();
        let start = Instant::now();
        let err = t
            .read(
                &mut [0u8; 8],
                Some(Instant::now() + Duration::from_millis(150)),
                None,
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(140));
    }

    #[test]
    fn plain_read_stops_when_asked() {
        let (t, _client) = pair();
        let stop = AtomicBool::new(true);
        let err = t.read(&mut [0u8; 8], None, Some(&stop)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn plain_round_trip_and_peer_close_detection() {
        let (t, mut client) = pair();
        client.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        let n = t.read(&mut buf, None, None).unwrap();
        assert_eq!(&buf[..n], b"hello");
        t.write_all(b"back", None).unwrap();
        let mut got = [0u8; 4];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"back");
        assert!(!t.peer_closed());
        drop(client);
        std::thread::sleep(Duration::from_millis(50));
        assert!(t.peer_closed());
        assert_eq!(t.read(&mut buf, None, None).unwrap(), 0);
    }
}
