//! The bench's figures and how they are read: latency series (nearest-rank percentiles, the
//! wall of a burst), medians with their spread over rounds, a process's RSS halves, CPU ticks
//! and threads from /proc, the idle cost of the daemon over a period.
//!
//! Owns the arithmetic and the /proc reading; nothing here starts pods or daemons.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::cri_proxy;
use crate::support::daemon::Daemon;
use crate::support::fake_apiserver::FakeApiServer;

/// Latencies of one series, in milliseconds.
#[derive(Clone, Debug)]
pub struct Series {
    pub samples: Vec<f64>,
    /// Start of the first to end of the last (bursts).
    pub wall_ms: Option<f64>,
}

impl Series {
    pub fn new(samples: Vec<Duration>, wall: Option<Duration>) -> Series {
        let mut s: Vec<f64> = samples.iter().map(ms).collect();
        s.sort_by(f64::total_cmp);
        Series {
            samples: s,
            wall_ms: wall.as_ref().map(ms),
        }
    }

    /// Nearest-rank percentile.
    pub fn p(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((q / 100.0) * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }

    pub fn wall(&self) -> f64 {
        self.wall_ms.unwrap_or(f64::NAN)
    }

    pub fn json(&self) -> Value {
        let mean = self.samples.iter().sum::<f64>() / self.samples.len().max(1) as f64;
        let mut v = json!({
            "n": self.samples.len(),
            "p50_ms": r2(self.p(50.0)),
            "p90_ms": r2(self.p(90.0)),
            "p99_ms": r2(self.p(99.0)),
            "mean_ms": r2(mean),
            "max_ms": r2(self.samples.last().copied().unwrap_or(f64::NAN)),
        });
        if let Some(w) = self.wall_ms {
            v["wall_ms"] = json!(r2(w));
        }
        v
    }
}

/// The median of a few figures (rounds), with the smallest and the largest.
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return Spread {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    pub fn json(&self) -> Value {
        json!({"median": r2(self.median), "min": r2(self.min), "max": r2(self.max)})
    }
}

pub fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// utime + stime of a process, in clock ticks.
pub fn proc_cpu_ticks(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15.
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    match (get(11), get(12)) {
        (Some(u), Some(s)) => Ok(u + s),
        _ => Err(format!("cannot parse /proc/{pid}/stat")),
    }
}

/// A `... kB` line of /proc/PID/status, e.g. `VmRSS:`, `RssAnon:`, `RssFile:`.
pub fn proc_status_kib(pid: u32, key: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

pub fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

pub fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The 1-minute load average (NaN if /proc/loadavg cannot be read).
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The daemon's cost over an idle period.
#[derive(Clone, Debug)]
pub struct Idle {
    pub pods: usize,
    pub secs: f64,
    pub rss_mean_mib: f64,
    pub rss_max_mib: f64,
    /// The two halves of RSS at the end: anonymous memory (heap, stacks) and the pages of the
    /// binary mapped from the page cache (which grow with the binary's size).
    pub rss_anon_mib: f64,
    pub rss_file_mib: f64,
    pub cpu_pct: f64,
    pub api_rps: f64,
    pub cri_cps: f64,
    /// The daemon's threads at the end (idle pods have none of their own).
    pub threads: usize,
}

impl Idle {
    pub fn json(&self) -> Value {
        json!({
            "pods": self.pods,
            "secs": r2(self.secs),
            "rss_mean_mib": r2(self.rss_mean_mib),
            "rss_max_mib": r2(self.rss_max_mib),
            "rss_anon_mib": r2(self.rss_anon_mib),
            "rss_file_mib": r2(self.rss_file_mib),
            "cpu_pct_of_one_core": r3(self.cpu_pct),
            "api_requests_per_s": r2(self.api_rps),
            "cri_calls_per_s": r2(self.cri_cps),
            "threads": self.threads,
        })
    }
}

/// The daemon's RSS, CPU, API requests and CRI calls over `secs`, sampled every second. The
/// daemon's pid is printed as the period starts (for `perf record -p`, heaptrack…).
pub fn measure_idle(
    f: &FakeApiServer,
    d: &mut Daemon,
    proxy: &cri_proxy::Proxy,
    pods: usize,
    secs: u64,
) -> Result<Idle, String> {
    let pid = d.pid()?;
    eprintln!("bench: idle period of {secs} s with {pods} pods starts, daemon pid {pid}");
    let (ticks0, api0, cri0, t0) = (
        proc_cpu_ticks(pid)?,
        f.request_count(),
        proxy.calls(),
        Instant::now(),
    );
    let mut rss = Vec::new();
    for i in 1..=secs {
        let next = t0 + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        d.check_alive()?;
        rss.push(proc_status_kib(pid, "VmRSS:")? as f64 / 1024.0);
    }
    let wall = t0.elapsed().as_secs_f64();
    let ticks = proc_cpu_ticks(pid)? - ticks0;
    let api = f.request_count() - api0;
    let cri = proxy.calls() - cri0;
    Ok(Idle {
        pods,
        secs: wall,
        rss_mean_mib: rss.iter().sum::<f64>() / rss.len().max(1) as f64,
        rss_max_mib: rss.iter().copied().fold(0.0, f64::max),
        rss_anon_mib: proc_status_kib(pid, "RssAnon:")? as f64 / 1024.0,
        rss_file_mib: proc_status_kib(pid, "RssFile:")? as f64 / 1024.0,
        cpu_pct: ticks as f64 / clk_tck() / wall * 100.0,
        api_rps: api as f64 / wall,
        cri_cps: cri as f64 / wall,
        threads: d.threads()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Spread::of(&[]).median.is_nan());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = Series::new((1..=10).map(Duration::from_millis).collect(), None);
        assert_eq!((s.p(50.0), s.p(90.0), s.p(99.0)), (5.0, 9.0, 10.0));
    }
}
