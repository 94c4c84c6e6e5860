//! The daemon's side of the bench: the daemon started with the bench's flags, its pods created
//! and deleted through the fake API server, one by one or many at once, and the times at which
//! the API server saw each Running with every container ready, or gone.
//!
//! Owns the daemon's pods and the waits on the fake's store.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::measure::Series;
use crate::shape::{PodShape, CGROUP_ROOT, NS};
use crate::support::daemon::Daemon;
use crate::support::fake_apiserver::{self, FakeApiServer, Res};
use crate::CLEANUP;

const POD_TIMEOUT: Duration = Duration::from_secs(300);

/// The daemon as `fake`'s node, with the bench's cgroup root, this `RUST_LOG` and room for
/// `max_pods`.
pub fn bench_daemon(
    bin: &Path,
    fake: &FakeApiServer,
    dir: &Path,
    log_level: &str,
    max_pods: usize,
) -> Result<Daemon, String> {
    let mut d = Daemon::new(bin, fake, dir)?;
    d.args(["--max-pods", &max_pods.to_string()]);
    d.args(["--cgroup-root", CGROUP_ROOT]);
    d.log_level = log_level.to_string();
    d.pid_slot = CLEANUP.get().map(|c| &c.daemon_pid);
    Ok(d)
}

pub fn node_ready(v: &fake_apiserver::View<'_>, node: &str) -> bool {
    v.get(Res::Nodes, "", node)
        .and_then(|n| n.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub fn running_and_ready(p: Option<&Value>) -> bool {
    let Some(p) = p else { return false };
    p.pointer("/status/phase") == Some(&json!("Running"))
        && p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
}

pub fn gone(p: Option<&Value>) -> bool {
    p.is_none()
}

/// Waits until every named pod satisfies `pred`, noting when each first did (checked on every
/// change of the fake's store).
fn wait_pods(
    f: &FakeApiServer,
    names: &[String],
    what: &str,
    pred: impl Fn(Option<&Value>) -> bool,
) -> Result<HashMap<String, Instant>, String> {
    let done: RefCell<HashMap<String, Instant>> = RefCell::new(HashMap::new());
    let ok = f.wait_for(POD_TIMEOUT, |v| {
        let mut d = done.borrow_mut();
        for n in names {
            if !d.contains_key(n) && pred(v.get(Res::Pods, NS, n)) {
                d.insert(n.clone(), Instant::now());
            }
        }
        d.len() == names.len()
    });
    let done = done.into_inner();
    if ok {
        Ok(done)
    } else {
        let missing: Vec<&String> = names.iter().filter(|n| !done.contains_key(*n)).collect();
        Err(format!(
            "{} of {} pods not {what} after {POD_TIMEOUT:?}: {:?}",
            missing.len(),
            names.len(),
            &missing[..missing.len().min(5)]
        ))
    }
}

pub struct VkBench<'a> {
    pub f: &'a FakeApiServer,
    pub shape: PodShape,
    n: usize,
}

impl<'a> VkBench<'a> {
    pub fn new(f: &'a FakeApiServer, shape: PodShape) -> VkBench<'a> {
        VkBench { f, shape, n: 0 }
    }

    fn names(&mut self, count: usize, tag: &str) -> Vec<String> {
        let start = self.n;
        self.n += count;
        (start..start + count)
            .map(|i| format!("bench-{tag}-{i}"))
            .collect()
    }

    fn create(&self, name: &str) {
        self.f.create_pod(self.shape.pod(name, self.f.node_name()));
    }

    /// One pod created → Running and ready, then admin DELETE (grace 1) → gone: (start,
    /// delete) latencies.
    pub fn one(&mut self) -> Result<(Duration, Duration), String> {
        let name = self.names(1, "seq").remove(0);
        let one = std::slice::from_ref(&name);
        let t = Instant::now();
        self.create(&name);
        let at = wait_pods(self.f, one, "running", running_and_ready)?;
        let up = at[&name] - t;
        let t = Instant::now();
        self.f.delete_pod(NS, &name, Some(1));
        let at = wait_pods(self.f, one, "deleted", gone)?;
        Ok((up, at[&name] - t))
    }

    /// `n` pods created at once; returns their names and the start series.
    pub fn burst_create(&mut self, n: usize) -> Result<(Vec<String>, Series), String> {
        let names = self.names(n, "burst");
        let (created, at) = self.at_once(&names, "running", running_and_ready, |name| {
            self.create(name);
        })?;
        Ok((names, series(&created, &at)))
    }

    pub fn burst_delete(&self, names: &[String]) -> Result<Series, String> {
        let (deleted, at) = self.at_once(names, "deleted", gone, |name| {
            self.f.delete_pod(NS, name, Some(1));
        })?;
        Ok(series(&deleted, &at))
    }

    /// Does `act` on every pod as fast as it goes while a monitor notes when each satisfies
    /// `pred`; returns when each was acted on and when each was done.
    #[allow(clippy::type_complexity)]
    fn at_once(
        &self,
        names: &[String],
        what: &str,
        pred: fn(Option<&Value>) -> bool,
        act: impl Fn(&str),
    ) -> Result<(HashMap<String, Instant>, HashMap<String, Instant>), String> {
        std::thread::scope(|s| {
            let monitor = s.spawn(|| wait_pods(self.f, names, what, pred));
            let mut acted = HashMap::new();
            for name in names {
                acted.insert(name.clone(), Instant::now());
                act(name);
            }
            let at = monitor
                .join()
                .unwrap_or_else(|_| Err("monitor panicked".into()))?;
            Ok((acted, at))
        })
    }
}

fn series(from: &HashMap<String, Instant>, to: &HashMap<String, Instant>) -> Series {
    let lat: Vec<Duration> = from.iter().map(|(n, t)| to[n] - *t).collect();
    let first = from.values().min().copied();
    let last = to.values().max().copied();
    let wall = first.zip(last).map(|(a, b)| b - a);
    Series::new(lat, wall)
}

/// Restarts the daemon on `socket` (containerd, or the counting proxy in front of it) and lets
/// it adopt its pods.
pub fn restart(d: &mut Daemon, socket: &Path, settle: u64) -> Result<(), String> {
    d.kill();
    d.start(socket)?;
    std::thread::sleep(Duration::from_secs(settle));
    d.check_alive()
}

/// An error with the tail of the daemon's log.
pub fn with_log(d: &Daemon, e: String) -> String {
    format!("{e}\n--- daemon log (tail) ---\n{}", d.log_tail())
}
