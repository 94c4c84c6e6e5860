//! `make bench`: vk-cri against the CRI floor on the project's containerd and the fake API
//! server. A measurement, not a test: it never fails on a missed target, only when something
//! breaks (containerd missing, a pod that never runs).
//!
//! Owns the bench phases and their figures: the CRI floor (vk-cri's own grpcio client with the
//! daemon's own translator and pod cgroup), the daemon's start and delete latencies through the API server,
//! its idle cost (RSS, CPU, API requests and CRI calls per second) and the static binary's size;
//! the JSON report and the table. Built as an example (`cargo test` compiles it, never runs it).

#[path = "../support/mod.rs"]
mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use support::cri_proxy;
use support::daemon::Daemon;
use support::fake_apiserver::{FakeApiServer, FakeConfig, Res};
use vk_cri::cri::api;
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Labels, Runtime};
use vk_cri::pod::translate::{self, ContainerInputs, ContainerKind, ImageUser, NodeContext};

const CGROUP_ROOT: &str = "/vk-cri-bench";
const NS: &str = "default";
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
const OWNER_LABEL: &str = "vk-cri.io/node";
const POD_TIMEOUT: Duration = Duration::from_secs(180);

/// `bench --daemon <static binary> --out <json>`; run with the dev environment's env.sh sourced
/// (`VKCRI_BENCH_DAEMON_LOG` sets the daemon's `RUST_LOG`, `info` by default).
#[derive(Parser, Debug)]
struct Args {
    /// The virtual-kubelet binary to measure (the static release build)
    #[arg(long)]
    daemon: PathBuf,
    /// Where the JSON report goes
    #[arg(long)]
    out: PathBuf,
    /// Sequential pods per latency series
    #[arg(long, default_value_t = 20)]
    seq: usize,
    /// Pods created (and deleted) at once
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// Length of each idle measurement, in seconds
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Time the restarted daemon gets to adopt its pods before an idle measurement, in seconds
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// Only the idle measurements (with the pods, then without): for profiling the idle cost.
    /// The daemon's pid is printed when each idle period starts (attach perf, heaptrack…)
    #[arg(long)]
    idle_only: bool,
}

/// What to remove whatever happens (also from the panic hook: release builds abort on panic).
struct Cleanup {
    nodes: Vec<String>,
    scratch: PathBuf,
    socket: PathBuf,
    daemon_pid: AtomicU32,
}

static CLEANUP: std::sync::OnceLock<Cleanup> = std::sync::OnceLock::new();

fn cleanup() {
    let Some(c) = CLEANUP.get() else { return };
    let pid = c.daemon_pid.swap(0, Ordering::SeqCst);
    if pid != 0 {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = runtime(&c.socket);
    for node in &c.nodes {
        let owner: Labels = [(OWNER_LABEL.to_string(), node.clone())].into();
        for sb in rt.list_pod_sandboxes(&owner).unwrap_or_default() {
            let _ = rt.stop_pod_sandbox(&sb.id);
            let _ = rt.remove_pod_sandbox(&sb.id);
        }
    }
    remove_cgroups();
    let _ = std::fs::remove_dir_all(&c.scratch);
}

/// Removes the bench's cgroup tree in every hierarchy, leaves first.
fn remove_cgroups() {
    fn rmdir_tree(dir: &Path) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rmdir_tree(&e.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    let base = Path::new("/sys/fs/cgroup");
    let rel = CGROUP_ROOT.trim_start_matches('/');
    rmdir_tree(&base.join(rel));
    if let Ok(rd) = std::fs::read_dir(base) {
        for e in rd.flatten() {
            rmdir_tree(&e.path().join(rel));
        }
    }
}

fn runtime(socket: &Path) -> GrpcRuntime {
    GrpcRuntime::new(
        socket,
        Deadlines {
            call: Duration::from_secs(60),
            pull: Duration::from_secs(300),
        },
    )
}

fn env_var(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v),
        _ => Err(format!(
            "{name} is not set: run `make bench`, or source /var/tmp/vk-cri-dev/env.sh after \
             contrib/dev-env/up.sh"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Figures.

/// Latencies of one series, in milliseconds.
#[derive(Clone, Debug)]
struct Series {
    samples: Vec<f64>,
    /// Start of the first to end of the last (bursts).
    wall_ms: Option<f64>,
}

impl Series {
    fn new(samples: Vec<Duration>, wall: Option<Duration>) -> Series {
        let mut s: Vec<f64> = samples.iter().map(ms).collect();
        s.sort_by(f64::total_cmp);
        Series {
            samples: s,
            wall_ms: wall.as_ref().map(ms),
        }
    }

    /// Nearest-rank percentile.
    fn p(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((q / 100.0) * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1]
    }

    fn json(&self) -> Value {
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

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The daemon's cost over an idle period.
#[derive(Clone, Debug)]
struct Idle {
    pods: usize,
    secs: f64,
    rss_mean_mib: f64,
    rss_max_mib: f64,
    /// The two halves of RSS at the end: anonymous memory (heap, stacks) and the pages of the
    /// binary mapped from the page cache (which grow with the binary's size).
    rss_anon_mib: f64,
    rss_file_mib: f64,
    cpu_pct: f64,
    api_rps: f64,
    cri_cps: f64,
}

impl Idle {
    fn json(&self) -> Value {
        json!({
            "pods": self.pods,
            "secs": r2(self.secs),
            "rss_mean_mib": r2(self.rss_mean_mib),
            "rss_max_mib": r2(self.rss_max_mib),
            "rss_anon_mib": r2(self.rss_anon_mib),
            "rss_file_mib": r2(self.rss_file_mib),
            "cpu_pct_of_one_core": (self.cpu_pct * 1000.0).round() / 1000.0,
            "api_requests_per_s": r2(self.api_rps),
            "cri_calls_per_s": r2(self.cri_cps),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The pod shape.

fn pod_json(name: &str, node: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": "vk-cri-bench"}},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "c",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", SCRIPT],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "100m", "memory": "32Mi"}
                }
            }]
        }
    })
}

// ---------------------------------------------------------------------------------------------
// The CRI floor.

/// The floor: vk-cri's CRI client and translator with nothing around them.
struct Floor {
    rt: GrpcRuntime,
    node: NodeContext,
    image: String,
    image_ref: String,
    image_user: ImageUser,
    pods_dir: PathBuf,
    n: AtomicU32,
}

/// Configs ready to run, made before the clock starts.
struct Prepared {
    sandbox: api::PodSandboxConfig,
    container: api::ContainerConfig,
    /// The pod cgroup the kubelet (and the daemon) makes before the sandbox, with its limits.
    cgroup: vk_cri::pod::resources::PodCgroupConfig,
}

/// A started floor pod.
struct Started {
    sandbox: String,
    container: String,
}

impl Floor {
    fn new(rt: GrpcRuntime, node_name: &str, scratch: &Path, image: &str) -> Result<Floor, String> {
        let mut node = NodeContext::new(node_name);
        node.log_root = scratch.join("floor-logs");
        node.cgroup_root = CGROUP_ROOT.to_string();
        // As the daemon does with its defaults (--resolv-conf /etc/resolv.conf, cgroup probe).
        node.host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").ok();
        node.cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if let Some(kib) = meminfo_kib("MemTotal") {
            node.memory_capacity = (kib * 1024) as i64;
        }
        let found = rt
            .image_status(image)
            .map_err(|e| format!("image status {image}: {e}"))?
            .ok_or_else(|| format!("image {image} is not in containerd: run `make env-up`"))?;
        Ok(Floor {
            rt,
            node,
            image: image.to_string(),
            image_ref: found.id.clone(),
            image_user: ImageUser::from_image(Some(&found)),
            pods_dir: scratch.join("floor-pods"),
            n: AtomicU32::new(0),
        })
    }

    /// The same pod as the daemon's, defaulted and translated by the daemon's code, with the
    /// files the daemon would write in place.
    fn prepare(&self) -> Result<Prepared, String> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let name = format!("floor-{n}");
        let mut pod: Pod =
            serde_json::from_value(pod_json(&name, &self.node.node_name, &self.image))
                .map_err(|e| format!("floor pod: {e}"))?;
        pod.metadata.uid = Some(format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            n
        ));
        vk_cri::pod::defaults::apply_defaults(&mut pod);
        let sandbox = translate::sandbox_config(&pod, &self.node, 0).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(Path::new(&sandbox.log_directory).join("c"))
            .map_err(|e| format!("floor log dir: {e}"))?;
        let dir = self.pods_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("floor pod dir: {e}"))?;
        let hosts = vk_cri::pod::dns::etc_hosts(&pod, &[], &self.node.cluster_domain)
            .map_err(|e| e.to_string())?;
        let hosts_path = dir.join("etc-hosts");
        std::fs::write(&hosts_path, hosts).map_err(|e| format!("floor hosts: {e}"))?;
        let term = dir.join("termination-log");
        std::fs::write(&term, "").map_err(|e| format!("floor termination log: {e}"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| format!("floor termination log: {e}"))?;
        }
        let spec = pod.spec.as_ref().ok_or("floor pod without spec")?;
        let c = &spec.containers[0];
        let objects = vk_cri::volume::Objects::default();
        let node = vk_cri::volume::NodeAllocatable {
            memory: self.node.memory_capacity,
            ..Default::default()
        };
        let sources = vk_cri::pod::env::EnvSources {
            objects: &objects,
            node: &node,
            services: vk_cri::pod::env::Services::NoApiServer,
        };
        let env = vk_cri::pod::env::resolve(&pod, c, &self.node.node_name, &[], &[], &sources)
            .map_err(|e| e.to_string())?;
        let inputs = ContainerInputs {
            env: env.env,
            mounts: Vec::new(),
            etc_hosts_path: Some(hosts_path.to_string_lossy().into_owned()),
            termination_log_path: Some(term.to_string_lossy().into_owned()),
            image_ref: self.image_ref.clone(),
            image_user: self.image_user.clone(),
        };
        let container =
            translate::container_config(&pod, c, ContainerKind::App, 0, &inputs, &self.node)
                .map_err(|e| e.to_string())?;
        let cgroup = vk_cri::pod::resources::pod_cgroup_config(&pod);
        Ok(Prepared {
            sandbox,
            container,
            cgroup,
        })
    }

    /// The pod cgroup with its limits (what enforcing them costs, as the kubelet pays it:
    /// the sandbox and container then start under the pod's cpu quota) + RunPodSandbox +
    /// CreateContainer + StartContainer.
    fn start(&self, p: &Prepared) -> Result<Started, String> {
        let parent = p
            .sandbox
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        vk_cri::executor::cgroups::ensure_pod_cgroup(
            Path::new(vk_cri::executor::cgroups::CGROUP_FS),
            &parent,
            &p.cgroup,
        )
        .map_err(|e| format!("floor: pod cgroup: {e}"))?;
        let sandbox = self
            .rt
            .run_pod_sandbox(&p.sandbox, "")
            .map_err(|e| format!("floor: run sandbox: {e}"))?;
        let container = self
            .rt
            .create_container(&sandbox, &p.container, &p.sandbox)
            .map_err(|e| format!("floor: create container: {e}"))?;
        self.rt
            .start_container(&container)
            .map_err(|e| format!("floor: start container: {e}"))?;
        Ok(Started { sandbox, container })
    }

    /// StopContainer (1 s) + StopPodSandbox + RemovePodSandbox.
    fn delete(&self, s: &Started) -> Result<(), String> {
        if let Err(first) = self.rt.stop_container(&s.container, Duration::from_secs(1)) {
            // containerd 1.6 can lose its shim's ttrpc connection while the task exits on the
            // SIGTERM ("ttrpc: closed"): the daemon retries a failed stop, so the floor does
            // too, once, or a burst of 100 fails now and then.
            self.rt
                .stop_container(&s.container, Duration::from_secs(1))
                .map_err(|e| format!("floor: stop container: {first}; again: {e}"))?;
        }
        self.rt
            .stop_pod_sandbox(&s.sandbox)
            .map_err(|e| format!("floor: stop sandbox: {e}"))?;
        self.rt
            .remove_pod_sandbox(&s.sandbox)
            .map_err(|e| format!("floor: remove sandbox: {e}"))
    }

    /// One pod started, then deleted: (start, delete) latencies.
    fn one(&self) -> Result<(Duration, Duration), String> {
        let p = self.prepare()?;
        let t = Instant::now();
        let s = self.start(&p)?;
        let up = t.elapsed();
        let t = Instant::now();
        self.delete(&s)?;
        Ok((up, t.elapsed()))
    }

    /// `n` pods started at once from `n` threads, then deleted at once.
    fn burst(&self, n: usize) -> Result<(Series, Series), String> {
        let prepared: Vec<Prepared> = (0..n).map(|_| self.prepare()).collect::<Result<_, _>>()?;
        let started: Mutex<Vec<Started>> = Mutex::new(Vec::new());
        let up = self.at_once(&prepared, |p| {
            let s = self.start(p)?;
            started.lock().expect("started").push(s);
            Ok(())
        });
        let started = started.into_inner().expect("started");
        let up = match up {
            Ok(up) => up,
            Err(e) => {
                for s in &started {
                    let _ = self.delete(s);
                }
                return Err(e);
            }
        };
        let down = self.at_once(&started, |s| self.delete(s))?;
        Ok((up, down))
    }

    /// Runs `f` on every item from its own thread, all released together.
    fn at_once<T: Sync>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<(), String> + Sync,
    ) -> Result<Series, String> {
        let barrier = Barrier::new(items.len() + 1);
        let results: Vec<Result<Duration, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = items
                .iter()
                .map(|item| {
                    let (barrier, f) = (&barrier, &f);
                    s.spawn(move || {
                        barrier.wait();
                        let t = Instant::now();
                        f(item).map(|()| t.elapsed())
                    })
                })
                .collect();
            barrier.wait();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        let lat: Vec<Duration> = results.into_iter().collect::<Result<_, _>>()?;
        // All start at the barrier: the wall time is the slowest one.
        let wall = lat.iter().max().copied();
        Ok(Series::new(lat, wall))
    }
}

fn meminfo_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    s.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// The daemon (support::daemon), started with the bench's cgroup root and log level.

fn bench_daemon(bin: &Path, fake: &FakeApiServer, dir: &Path) -> Result<Daemon, String> {
    let mut d = Daemon::new(bin, fake, dir)?;
    d.args(["--cgroup-root", CGROUP_ROOT]);
    d.log_level = std::env::var("VKCRI_BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into());
    d.pid_slot = CLEANUP.get().map(|c| &c.daemon_pid);
    Ok(d)
}

fn node_ready(v: &support::fake_apiserver::View<'_>, node: &str) -> bool {
    v.get(Res::Nodes, "", node)
        .and_then(|n| n.pointer("/status/conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn running_and_ready(p: Option<&Value>) -> bool {
    let Some(p) = p else { return false };
    p.pointer("/status/phase") == Some(&json!("Running"))
        && p.pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
}

fn gone(p: Option<&Value>) -> bool {
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

struct VkBench<'a> {
    f: &'a FakeApiServer,
    image: String,
    n: usize,
}

impl VkBench<'_> {
    fn names(&mut self, count: usize, tag: &str) -> Vec<String> {
        let start = self.n;
        self.n += count;
        (start..start + count)
            .map(|i| format!("bench-{tag}-{i}"))
            .collect()
    }

    fn create(&self, name: &str) {
        self.f
            .create_pod(pod_json(name, self.f.node_name(), &self.image));
    }

    /// One pod created → Running and ready, then admin DELETE (grace 1) → gone: (start,
    /// delete) latencies.
    fn one(&mut self) -> Result<(Duration, Duration), String> {
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
    fn burst_create(&mut self, n: usize) -> Result<(Vec<String>, Series), String> {
        let names = self.names(n, "burst");
        let (created, at) = self.at_once(&names, "running", running_and_ready, |name| {
            self.create(name);
        })?;
        Ok((names, series(&created, &at)))
    }

    fn burst_delete(&self, names: &[String]) -> Result<Series, String> {
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

// ---------------------------------------------------------------------------------------------
// Idle cost.

fn proc_cpu_ticks(pid: u32) -> Result<u64, String> {
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

fn proc_rss_kib(pid: u32) -> Result<u64, String> {
    proc_status_kib(pid, "VmRSS:")
}

/// A `... kB` line of /proc/PID/status, e.g. `VmRSS:`, `RssAnon:`, `RssFile:`.
fn proc_status_kib(pid: u32, key: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

fn clk_tck() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |v| v as f64)
}

fn measure_idle(
    f: &FakeApiServer,
    d: &mut Daemon,
    proxy: &cri_proxy::Proxy,
    pods: usize,
    secs: u64,
) -> Result<Idle, String> {
    let pid = d.pid()?;
    eprintln!("bench: idle period of {secs} s starts, daemon pid {pid}");
    let (ticks0, api0, cri0, t0) = (
        proc_cpu_ticks(pid)?,
        f.requests().len(),
        proxy.calls(),
        Instant::now(),
    );
    let mut rss = Vec::new();
    for i in 1..=secs {
        let next = t0 + Duration::from_secs(i);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        d.check_alive()?;
        rss.push(proc_rss_kib(pid)? as f64 / 1024.0);
    }
    let wall = t0.elapsed().as_secs_f64();
    let ticks = proc_cpu_ticks(pid)? - ticks0;
    let api = f.requests().len() - api0;
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
    })
}

/// Restarts the daemon on `socket` and lets it adopt its pods.
fn restart(d: &mut Daemon, socket: &Path, settle: u64) -> Result<(), String> {
    d.kill();
    d.start(socket)?;
    std::thread::sleep(Duration::from_secs(settle));
    d.check_alive()
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Target {
    name: &'static str,
    want: String,
    value: f64,
    limit: f64,
    unit: &'static str,
}

impl Target {
    fn met(&self) -> bool {
        self.value <= self.limit
    }
}

fn run(
    args: &Args,
    scratch: &Path,
    floor_node: &str,
    fake: &FakeApiServer,
) -> Result<Value, String> {
    cri_proxy::self_check()?;
    let socket = PathBuf::from(env_var("VKCRI_CRI_SOCKET")?);
    if !socket.exists() {
        return Err(format!(
            "no containerd socket at {}: run `make env-up`",
            socket.display()
        ));
    }
    let image = env_var("VKCRI_BUSYBOX_IMAGE")?;
    let size = std::fs::metadata(&args.daemon)
        .map_err(|e| format!("{}: {e}", args.daemon.display()))?
        .len();
    let load_before = loadavg();
    let rt = runtime(&socket);
    let version = rt
        .version()
        .map_err(|e| format!("containerd at {} does not answer: {e}", socket.display()))?;

    if args.idle_only {
        return idle_only(args, fake, &socket, scratch, image);
    }

    // 1. The daemon, on containerd directly; it idles while the floor runs (it lists only the
    // sandboxes with its own node's owner label, and the floor's carry another node's).
    let floor = Floor::new(rt.clone(), floor_node, scratch, &image)?;
    let mut d = bench_daemon(&args.daemon, fake, &scratch.join("daemon"))?;
    d.start(&socket)?;
    let node = fake.node_name().to_string();
    if !fake.wait_for(Duration::from_secs(60), |v| node_ready(v, &node)) {
        d.check_alive()?;
        return Err(format!(
            "node {node} not Ready after 60 s:\n{}",
            d.log_tail()
        ));
    }
    let mut vk = VkBench {
        f: fake,
        image,
        n: 0,
    };
    // 2. One by one, a floor pod and a vk-cri pod in turn (which of the two goes first
    // alternates): containerd's speed drifts over a run (by tens of milliseconds a pod between
    // runs), and measured in turn the drift lands on both series alike.
    eprintln!(
        "bench: CRI floor and vk-cri in turn, {} sequential each",
        args.seq
    );
    let (mut fl, mut vks) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for i in 0..args.seq {
        for floor_turn in [i % 2 == 0, i % 2 == 1] {
            let ((up, down), into) = if floor_turn {
                (floor.one()?, &mut fl)
            } else {
                (vk.one().map_err(|e| with_log(&d, e))?, &mut vks)
            };
            into.0.push(up);
            into.1.push(down);
        }
    }
    let (floor_up, floor_down) = (Series::new(fl.0, None), Series::new(fl.1, None));
    let (vk_up, vk_down) = (Series::new(vks.0, None), Series::new(vks.1, None));

    // 3. At once: the floor's pods, then the daemon's.
    eprintln!("bench: CRI floor, {} at once", args.burst);
    let (floor_burst_up, floor_burst_down) = floor.burst(args.burst)?;
    eprintln!("bench: vk-cri, {} at once", args.burst);
    let (names, vk_burst_up) = vk.burst_create(args.burst).map_err(|e| with_log(&d, e))?;

    // 4. Idle with the pods, then without, through the counting proxy.
    let (idle_full, vk_burst_down, idle_empty) =
        idle_and_delete(args, &mut d, &vk, &names, &socket, scratch)?;

    // 5. The report.
    let ratio = |a: f64, b: f64| r2(a / b);
    let targets = [
        Target {
            name: "single-pod start p50",
            want: "<= 1.2x floor".into(),
            value: vk_up.p(50.0) / floor_up.p(50.0),
            limit: 1.2,
            unit: "x",
        },
        Target {
            name: "burst start wall",
            want: "<= 1.2x floor".into(),
            value: vk_burst_up.wall_ms.unwrap_or(f64::NAN)
                / floor_burst_up.wall_ms.unwrap_or(f64::NAN),
            limit: 1.2,
            unit: "x",
        },
        Target {
            name: "delete p50 (sequential)",
            want: "<= 1.3x floor".into(),
            value: vk_down.p(50.0) / floor_down.p(50.0),
            limit: 1.3,
            unit: "x",
        },
        Target {
            name: "delete wall (at once)",
            want: "<= 1.3x floor".into(),
            value: vk_burst_down.wall_ms.unwrap_or(f64::NAN)
                / floor_burst_down.wall_ms.unwrap_or(f64::NAN),
            limit: 1.3,
            unit: "x",
        },
        Target {
            name: "RSS, pods idle",
            want: "<= 12 MiB".into(),
            value: idle_full.rss_max_mib,
            limit: 12.0,
            unit: "MiB",
        },
        Target {
            name: "CPU, pods idle",
            want: "<= 0.5 % of a core".into(),
            value: idle_full.cpu_pct,
            limit: 0.5,
            unit: "%",
        },
        Target {
            name: "static binary",
            want: "<= 10 MB".into(),
            value: size as f64 / 1e6,
            limit: 10.0,
            unit: "MB",
        },
    ];
    let pair = |vk: &Series, fl: &Series| {
        json!({
            "vk_cri": vk.json(),
            "floor": fl.json(),
            "ratio_p50": ratio(vk.p(50.0), fl.p(50.0)),
            "ratio_p90": ratio(vk.p(90.0), fl.p(90.0)),
            "ratio_p99": ratio(vk.p(99.0), fl.p(99.0)),
            "ratio_wall": match (vk.wall_ms, fl.wall_ms) {
                (Some(a), Some(b)) => json!(ratio(a, b)),
                _ => Value::Null,
            },
        })
    };
    Ok(json!({
        "date": date_utc(),
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "memory_gib": r2(meminfo_kib("MemTotal").unwrap_or(0) as f64 / (1 << 20) as f64),
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
            "runtime": version.node_runtime_version(),
            // Other work on the machine skews the figures: the 1-minute load average when the
            // run started and when it ended (ratios against the floor of the same run hold up
            // better than absolute times).
            "loadavg_1m": [load_before, loadavg()],
        },
        "parameters": {
            "sequential": args.seq, "burst": args.burst, "idle_secs": args.idle_secs,
            "settle_secs": args.settle_secs, "daemon": args.daemon.display().to_string(),
            "pod": pod_json("<name>", "<node>", &vk.image),
        },
        "start_sequential": pair(&vk_up, &floor_up),
        "start_burst": pair(&vk_burst_up, &floor_burst_up),
        "delete_sequential": pair(&vk_down, &floor_down),
        "delete_burst": pair(&vk_burst_down, &floor_burst_down),
        "idle": [idle_full.json(), idle_empty.json()],
        "binary_bytes": size,
        "targets": targets.iter().map(|t| json!({
            "name": t.name, "target": t.want, "value": r2(t.value), "unit": t.unit, "met": t.met(),
        })).collect::<Vec<_>>(),
    }))
}

/// An error with the tail of the daemon's log.
fn with_log(d: &Daemon, e: String) -> String {
    format!("{e}\n--- daemon log (tail) ---\n{}", d.log_tail())
}

/// The idle cost with the `names` pods running, their deletion all at once, and the idle cost
/// with none. The daemon is restarted onto the counting CRI proxy for each idle period (and
/// lets its pods settle first), and onto containerd itself for the deletion.
fn idle_and_delete(
    args: &Args,
    d: &mut Daemon,
    vk: &VkBench<'_>,
    names: &[String],
    socket: &Path,
    scratch: &Path,
) -> Result<(Idle, Series, Idle), String> {
    let proxy = cri_proxy::Proxy::start(&scratch.join("cri-proxy.sock"), socket)
        .map_err(|e| format!("cri proxy: {e}"))?;
    eprintln!("bench: idle with {} pods, {} s", args.burst, args.idle_secs);
    restart(d, &proxy.path, args.settle_secs)?;
    let full = measure_idle(vk.f, d, &proxy, args.burst, args.idle_secs)?;
    eprintln!("bench: vk-cri, {} deleted at once", args.burst);
    restart(d, socket, args.settle_secs)?;
    let deleted = vk.burst_delete(names).map_err(|e| with_log(d, e))?;
    eprintln!("bench: idle with 0 pods, {} s", args.idle_secs);
    restart(d, &proxy.path, args.settle_secs)?;
    let empty = measure_idle(vk.f, d, &proxy, 0, args.idle_secs)?;
    d.kill();
    Ok((full, deleted, empty))
}

/// `--idle-only`: the daemon starts the pods, then the two idle measurements of the full run.
fn idle_only(
    args: &Args,
    fake: &FakeApiServer,
    socket: &Path,
    scratch: &Path,
    image: String,
) -> Result<Value, String> {
    let mut d = bench_daemon(&args.daemon, fake, &scratch.join("daemon"))?;
    d.start(socket)?;
    let mut vk = VkBench {
        f: fake,
        image,
        n: 0,
    };
    eprintln!("bench: vk-cri, {} at once", args.burst);
    let (names, _) = vk.burst_create(args.burst).map_err(|e| with_log(&d, e))?;
    let (full, _, empty) = idle_and_delete(args, &mut d, &vk, &names, socket, scratch)?;
    Ok(json!({
        "date": date_utc(),
        "parameters": {"burst": args.burst, "idle_secs": args.idle_secs, "idle_only": true},
        "idle": [full.json(), empty.json()],
    }))
}

/// The 1-minute load average (NaN if /proc/loadavg cannot be read).
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(f64::NAN)
}

fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The short table on stdout.
fn table(r: &Value) -> String {
    let mut out = String::new();
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
    let load = &r["machine"]["loadavg_1m"];
    out.push_str(&format!(
        "vk-cri bench {}: {} CPUs, {} GiB, kernel {}, {}, load average {:.2} → {:.2}\n\n",
        r["date"].as_str().unwrap_or(""),
        r["machine"]["cpus"],
        r["machine"]["memory_gib"],
        r["machine"]["kernel"].as_str().unwrap_or(""),
        r["machine"]["runtime"].as_str().unwrap_or(""),
        load[0].as_f64().unwrap_or(f64::NAN),
        load[1].as_f64().unwrap_or(f64::NAN),
    ));
    out.push_str(&format!(
        "| {:<30} | {:>9} | {:>9} | {:>9} | {:>10} | {:>6} |\n",
        "latency (ms)", "vk p50", "vk p90", "vk p99", "vk wall", "×floor"
    ));
    out.push_str(&format!(
        "|{:-<32}|{:->11}|{:->11}|{:->11}|{:->12}|{:->8}|\n",
        "", "", "", "", "", ""
    ));
    for (key, label) in [
        ("start_sequential", "start, sequential"),
        ("start_burst", "start, at once"),
        ("delete_sequential", "delete, sequential"),
        ("delete_burst", "delete, at once"),
    ] {
        let e = &r[key];
        if e.is_null() {
            continue; // --idle-only
        }
        let ratio = if e["ratio_wall"].is_null() {
            &e["ratio_p50"]
        } else {
            &e["ratio_wall"]
        };
        for (who, v) in [("vk-cri", &e["vk_cri"]), ("CRI floor", &e["floor"])] {
            out.push_str(&format!(
                "| {:<30} | {:>9} | {:>9} | {:>9} | {:>10} | {:>6} |\n",
                format!("{label} ({who})"),
                num(&v["p50_ms"]),
                num(&v["p90_ms"]),
                num(&v["p99_ms"]),
                num(&v["wall_ms"]),
                if who == "vk-cri" {
                    format!("{:.2}", ratio.as_f64().unwrap_or(f64::NAN))
                } else {
                    String::new()
                },
            ));
        }
    }
    out.push('\n');
    out.push_str(
        "| idle          | RSS mean MiB | RSS max MiB | anon MiB | file MiB | CPU % core | API req/s | CRI calls/s |\n",
    );
    out.push_str(
        "|---------------|--------------|-------------|----------|----------|------------|-----------|-------------|\n",
    );
    for i in r["idle"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {:<13} | {:>12} | {:>11} | {:>8} | {:>8} | {:>10} | {:>9} | {:>11} |\n",
            format!("{} pods", i["pods"]),
            num(&i["rss_mean_mib"]),
            num(&i["rss_max_mib"]),
            num(&i["rss_anon_mib"]),
            num(&i["rss_file_mib"]),
            i["cpu_pct_of_one_core"]
                .as_f64()
                .map_or("-".into(), |x| format!("{x:.3}")),
            format!(
                "{:.2}",
                i["api_requests_per_s"].as_f64().unwrap_or(f64::NAN)
            ),
            format!("{:.2}", i["cri_calls_per_s"].as_f64().unwrap_or(f64::NAN)),
        ));
    }
    out.push('\n');
    out.push_str("| target                   | wanted             | measured   | met    |\n");
    out.push_str("|--------------------------|--------------------|------------|--------|\n");
    for t in r["targets"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {:<24} | {:<18} | {:>10} | {:<6} |\n",
            t["name"].as_str().unwrap_or(""),
            t["target"].as_str().unwrap_or(""),
            format!(
                "{:.2} {}",
                t["value"].as_f64().unwrap_or(f64::NAN),
                t["unit"].as_str().unwrap_or("")
            ),
            if t["met"] == true { "met" } else { "MISSED" },
        ));
    }
    out
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let pid = std::process::id();
    let scratch = std::env::temp_dir().join(format!("vk-cri-bench-{pid}"));
    let node = format!("vk-bench-{pid}");
    let floor_node = format!("vk-bench-floor-{pid}");
    let socket = PathBuf::from(std::env::var("VKCRI_CRI_SOCKET").unwrap_or_default());
    let _ = CLEANUP.set(Cleanup {
        nodes: vec![node.clone(), floor_node.clone()],
        scratch: scratch.clone(),
        socket,
        daemon_pid: AtomicU32::new(0),
    });
    // Release builds abort on panic: clean up from the hook, before the abort.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        cleanup();
    }));
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        eprintln!("bench: {}: {e}", scratch.display());
        return std::process::ExitCode::FAILURE;
    }
    let mut fake = FakeApiServer::start_with(FakeConfig {
        node_name: node,
        inject_service_account_volume: false,
        ..FakeConfig::default()
    });
    let result = run(&args, &scratch, &floor_node, &fake);
    eprintln!("bench: cleaning up");
    cleanup();
    fake.shutdown();
    match result {
        Ok(report) => {
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Some(dir) = args.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if let Err(e) = std::fs::write(&args.out, text + "\n") {
                eprintln!("bench: failed to write {}: {e}", args.out.display());
                return std::process::ExitCode::FAILURE;
            }
            print!("{}", table(&report));
            println!("\nJSON: {}", args.out.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
