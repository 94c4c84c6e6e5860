//! Container logs as the kubelet serves them, from the CRI log files containerd writes
//! (`<RFC3339Nano timestamp> <stdout|stderr> <P|F> <message>` per line).
//!
//! Pure parts: [`parse_line`], the [`LogFilter`] that applies `sinceSeconds`/`sinceTime`,
//! `timestamps` and `limitBytes` to parsed lines (a partial `P` line keeps no newline so it joins
//! the next one; a full `F` line gets its newline back; the timestamp prefix goes only at the
//! start of a joined line), and [`tail_offset`], which finds where the last N lines start by
//! reading the file backwards from the end (never the whole file). The I/O part, [`stream`],
//! reads from that offset to the end and, with `follow`, keeps reading as the file grows, across
//! rotation (the path gets a new inode: finish the old file, then read the new one from its
//! start), until the container stops, the client goes away or the server stops.
//!
//! Owns: the log file format and its reading. Must not find pods or answer HTTP.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// The timestamp as written (RFC3339Nano).
    pub raw_time: &'a str,
    pub time: Timestamp,
    pub stream: Stream,
    /// `P`: the message continues in the next line.
    pub partial: bool,
    /// The message without the line's newline.
    pub message: &'a [u8],
}

/// Parses one line of a CRI log file (with or without its trailing newline).
pub fn parse_line(line: &[u8]) -> Option<LogLine<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let raw_time = std::str::from_utf8(parts.next()?).ok()?;
    let time: Timestamp = raw_time.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(LogLine {
        raw_time,
        time,
        stream,
        partial,
        message: parts.next().unwrap_or(b""),
    })
}

/// Applies `since`, `timestamps` and `limitBytes` to lines in file order.
#[derive(Debug, Clone)]
pub struct LogFilter {
    since: Option<Timestamp>,
    timestamps: bool,
    remaining: Option<u64>,
    /// The previous line written was complete: the next one starts a new line.
    at_line_start: bool,
}

impl LogFilter {
    pub fn new(since: Option<Timestamp>, timestamps: bool, limit_bytes: Option<u64>) -> LogFilter {
        LogFilter {
            since,
            timestamps,
            remaining: limit_bytes,
            at_line_start: true,
        }
    }

    /// True once `limitBytes` bytes were written.
    pub fn exhausted(&self) -> bool {
        self.remaining == Some(0)
    }

    /// Appends what this raw file line contributes to `out`.
    pub fn push(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        if self.exhausted() {
            return;
        }
        let Some(line) = parse_line(raw) else {
            // The kubelet skips lines it cannot parse.
            return;
        };
        if self.since.is_some_and(|s| line.time < s) {
            return;
        }
        let start = out.len();
        if self.timestamps && self.at_line_start {
            out.extend_from_slice(line.raw_time.as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(line.message);
        if !line.partial {
            out.push(b'\n');
        }
        self.at_line_start = !line.partial;
        if let Some(rem) = self.remaining.as_mut() {
            let written = (out.len() - start) as u64;
            if written >= *rem {
                out.truncate(start + *rem as usize);
                *rem = 0;
            } else {
                *rem -= written;
            }
        }
    }
}

const BLOCK: u64 = 8192;

/// The offset where the last `n` lines of a CRI log start, reading backwards from the end.
/// Lines are counted as the user sees them: partial `P` lines belong to the line their `F`
/// ends, and an unfinished line at the end counts as a line.
pub fn tail_offset<F: Read + Seek>(f: &mut F, n: u64) -> io::Result<u64> {
    let size = f.seek(SeekFrom::End(0))?;
    if n == 0 {
        return Ok(size);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = size;
    let mut count = 0u64;
    let mut result = size;
    loop {
        // The raw line at the end of `buf` (which ends with its newline, or at EOF).
        let search_end = buf.len().saturating_sub(1);
        let line_start = match buf[..search_end].iter().rposition(|&b| b == b'\n') {
            Some(i) => Some(i + 1),
            None if buf_start == 0 => Some(0),
            None => None,
        };
        let Some(i) = line_start else {
            let from = buf_start.saturating_sub(BLOCK);
            let mut block = vec![0u8; (buf_start - from) as usize];
            f.seek(SeekFrom::Start(from))?;
            f.read_exact(&mut block)?;
            block.extend_from_slice(&buf);
            buf = block;
            buf_start = from;
            continue;
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let s = buf_start + i as u64;
        let partial = parse_line(&buf[i..]).is_some_and(|l| l.partial);
        if count == 0 {
            count = 1;
        } else if !partial {
            count += 1;
            if count > n {
                return Ok(result);
            }
        }
        result = s;
        buf.truncate(i);
        if s == 0 {
            return Ok(0);
        }
    }
}

/// Where the output goes (the chunked HTTP response).
pub trait LogSink {
    /// Sends bytes now; `Err` when the client is gone.
    fn send(&mut self, data: &[u8]) -> io::Result<()>;
    /// True when the client went away or the server is stopping.
    fn done(&self) -> bool;
}

/// What to read and how.
pub struct StreamRequest<'a> {
    pub path: &'a Path,
    pub tail_lines: Option<u64>,
    pub filter: LogFilter,
    pub follow: bool,
    /// Asked about once a second while following at the end of the file.
    pub still_running: &'a dyn Fn() -> bool,
    /// How often to look for new data while following.
    pub poll: Duration,
}

/// Why logs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to open log file {path}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to read log file {path}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

struct Reader {
    file: File,
    inode: u64,
    /// An unfinished raw line (no newline yet).
    pending: Vec<u8>,
}

impl Reader {
    /// Reads what is there now, feeding whole raw lines to the filter; returns the output and
    /// whether anything was read.
    fn drain(&mut self, filter: &mut LogFilter, out: &mut Vec<u8>) -> io::Result<bool> {
        let mut any = false;
        let mut chunk = [0u8; 32 * 1024];
        loop {
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(any);
            }
            any = true;
            let mut data = &chunk[..n];
            while let Some(i) = data.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&data[..=i]);
                filter.push(&self.pending, out);
                self.pending.clear();
                data = &data[i + 1..];
            }
            self.pending.extend_from_slice(data);
            if out.len() >= 32 * 1024 || filter.exhausted() {
                return Ok(true);
            }
        }
    }
}

fn open(path: &Path) -> Result<Reader, LogError> {
    let file = File::open(path).map_err(|source| LogError::Open {
        path: path.display().to_string(),
        source,
    })?;
    let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
    Ok(Reader {
        file,
        inode,
        pending: Vec::new(),
    })
}

/// Streams a log file to `sink`. Returns when the output is complete: at the end of the file
/// (no follow), at `limitBytes`, or when following stops. Write failures (the client went
/// away) end it quietly.
pub fn stream(mut req: StreamRequest<'_>, sink: &mut dyn LogSink) -> Result<(), LogError> {
    let read_err = |source| LogError::Read {
        path: req.path.display().to_string(),
        source,
    };
    let mut r = open(req.path)?;
    if let Some(n) = req.tail_lines {
        let off = tail_offset(&mut r.file, n).map_err(read_err)?;
        r.file.seek(SeekFrom::Start(off)).map_err(read_err)?;
    }
    let mut out = Vec::new();
    let mut last_check = Instant::now();
    let mut running = req.follow && (req.still_running)();
    loop {
        let got = r.drain(&mut req.filter, &mut out).map_err(read_err)?;
        if !out.is_empty() {
            if sink.send(&out).is_err() {
                return Ok(());
            }
            out.clear();
        }
        if req.filter.exhausted() {
            return Ok(());
        }
        if got {
            continue;
        }
        // At the end of the file.
        if !running || sink.done() {
            return Ok(());
        }
        // Rotated: the path now names another file. The runtime creates the new file before
        // it stops writing to the old one (ReopenContainerLog), so the old one is read to its
        // end once more, a poll later, before switching.
        if let Ok(meta) = std::fs::metadata(req.path) {
            if meta.ino() != r.inode {
                std::thread::sleep(req.poll);
                if r.drain(&mut req.filter, &mut out).map_err(read_err)? {
                    continue;
                }
                if let Ok(next) = open(req.path) {
                    r = next;
                    continue;
                }
            }
        }
        if last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            if !(req.still_running)() {
                // One last read for what the runtime wrote before the exit.
                running = false;
                std::thread::sleep(req.poll);
                continue;
            }
        }
        std::thread::sleep(req.poll);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    const T1: &str = "2026-11-22T12:00:01.000000001Z";
    const T2: &str = "2026-11-22T12:00:02Z";
    const T3: &str = "2026-11-22T12:00:03.5Z";

    fn run(lines: &str, filter: LogFilter) -> String {
        let mut f = filter;
        let mut out = Vec::new();
        for l in lines.split_inclusive('\n') {
            f.push(l.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    fn sample() -> String {
        format!(
            "{T1} stdout F one\n{T1} stderr F err one\n{T2} stdout P par\n{T2} stdout P ti\n{T2} stdout F al\n{T3} stdout F \n{T3} stderr F last\n"
        )
    }

    #[test]
    fn parses_cri_lines() {
        let raw = format!("{T1} stderr P a b  c\n");
        let l = parse_line(raw.as_bytes()).unwrap();
        assert_eq!(l.raw_time, T1);
        assert_eq!(l.stream, Stream::Stderr);
        assert!(l.partial);
        assert_eq!(l.message, b"a b  c");
        let raw_empty = format!("{T1} stdout F");
        let empty = parse_line(raw_empty.as_bytes()).unwrap();
        assert_eq!(empty.message, b"");
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(format!("{T1} stdin F x").as_bytes()).is_none());
        assert!(parse_line(format!("{T1} stdout X x").as_bytes()).is_none());
        assert!(parse_line(b"yesterday stdout F x").is_none());
    }

    #[test]
    fn partial_lines_join_newlines_are_kept_and_streams_interleave_in_order() {
        assert_eq!(
            run(&sample(), LogFilter::new(None, false, None)),
            "one\nerr one\npartial\n\nlast\n"
        );
    }

    #[test]
    fn timestamps_prefix_each_joined_line_once() {
        assert_eq!(
            run(&sample(), LogFilter::new(None, true, None)),
            format!("{T1} one\n{T1} err one\n{T2} partial\n{T3} \n{T3} last\n")
        );
    }

    #[test]
    fn since_drops_older_lines() {
        let since: Timestamp = T2.parse().unwrap();
        assert_eq!(
            run(&sample(), LogFilter::new(Some(since), false, None)),
            "partial\n\nlast\n"
        );
    }

    #[test]
    fn limit_bytes_cuts_mid_line() {
        let mut f = LogFilter::new(None, false, Some(6));
        let mut out = Vec::new();
        for l in sample().split_inclusive('\n') {
            f.push(l.as_bytes(), &mut out);
        }
        assert_eq!(out, b"one\ner");
        assert!(f.exhausted());
    }

    #[test]
    fn unparseable_lines_are_skipped() {
        assert_eq!(
            run(
                &format!("junk\n{T1} stdout F ok\n"),
                LogFilter::new(None, false, None)
            ),
            "ok\n"
        );
    }

    fn tail(content: &str, n: u64) -> String {
        let mut c = Cursor::new(content.as_bytes().to_vec());
        let off = tail_offset(&mut c, n).unwrap() as usize;
        run(&content[off..], LogFilter::new(None, false, None))
    }

    #[test]
    fn tail_counts_joined_lines_from_the_end() {
        let s = sample();
        assert_eq!(tail(&s, 0), "");
        assert_eq!(tail(&s, 1), "last\n");
        assert_eq!(tail(&s, 2), "\nlast\n");
        assert_eq!(tail(&s, 3), "partial\n\nlast\n");
        assert_eq!(tail(&s, 4), "err one\npartial\n\nlast\n");
        assert_eq!(tail(&s, 5), "one\nerr one\npartial\n\nlast\n");
        assert_eq!(tail(&s, 100), "one\nerr one\npartial\n\nlast\n");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn tail_reads_backwards_across_blocks_and_long_lines() {
        let long = "x".repeat(20_000);
        let mut s = String::new();
        for i in 0..2000 {
            s.push_str(&format!("{T1} stdout F line {i}\n"));
        }
        s.push_str(&format!("{T2} stdout P {long}\n{T2} stdout F {long}\n"));
        s.push_str(&format!("{T3} stdout F end\n"));
        assert_eq!(tail(&s, 3), format!("line 1999\n{long}{long}\nend\n"));
    }

    struct VecSink {
        out: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl LogSink for VecSink {
        fn send(&mut self, data: &[u8]) -> io::Result<()> {
            self.out.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn done(&self) -> bool {
            false
        }
    }

    #[test]
    fn follow_sees_new_lines_survives_rotation_and_ends_when_the_container_stops() {
        let dir = std::env::temp_dir().join(format!("vk-cri-logs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("0.log");
        std::fs::write(&path, format!("{T1} stdout F before\n")).unwrap();
        let running = Arc::new(AtomicBool::new(true));
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p2, r2, o2) = (path.clone(), running.clone(), out.clone());
        let h = std::thread::spawn(move || {
            let still = move || r2.load(Ordering::SeqCst);
            stream(
                StreamRequest {
                    path: &p2,
                    tail_lines: None,
                    filter: LogFilter::new(None, false, None),
                    follow: true,
                    still_running: &still,
                    poll: Duration::from_millis(20),
                },
                &mut VecSink { out: o2 },
            )
            .unwrap();
        });
        let wait_for = |want: &str| {
            let end = Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(&out.lock().unwrap()).ends_with(want) {
                assert!(Instant::now() < end, "waiting for {want:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        wait_for("before\n");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        write!(f, "{T2} stdout P after-").unwrap();
        f.flush().unwrap();
        write!(f, "\n{T2} stdout F request\n").unwrap();
        wait_for("after-request\n");
        // Rotation: the file moves away and a new one takes its name.
        writeln!(f, "{T2} stdout F old tail").unwrap();
        std::fs::rename(&path, dir.join("0.log.1")).unwrap();
        std::fs::write(&path, format!("{T3} stdout F rotated\n")).unwrap();
        wait_for("old tail\nrotated\n");
        running.store(false, Ordering::SeqCst);
        h.join().unwrap();
        assert_eq!(
            String::from_utf8(out.lock().unwrap().clone()).unwrap(),
            "before\nafter-request\nold tail\nrotated\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
