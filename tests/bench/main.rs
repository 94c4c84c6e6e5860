//! `make bench`: vk-cri against the CRI floor on the project's containerd and the fake API
//! server. A measurement, not a test: it never fails on a missed target, only when something
//! breaks (containerd missing, a pod that never runs).
//!
//! Owns the order of the phases and the report. The phases: latency (pods one by one, then
//! rounds of bursts, the floor's and the daemon's in turn: latency.rs), scale (the node grown
//! to 0, 100, 250 and 500 pods, each level's burst, start latency and idle cost: scale.rs) and
//! nodes (1, 10 and 50 daemons on one API server, per-node requests and bytes against the
//! kubelet's: nodes.rs). The CRI floor is floor.rs, the pods shape.rs, the daemon's side vk.rs,
//! the figures measure.rs, targets and tables report.rs, the SVG charts chart.rs. Built as an
//! example: `cargo test` compiles it and runs its unit tests, never the measurement.

#[path = "../support/mod.rs"]
mod support;

mod chart;
mod floor;
mod latency;
mod measure;
mod nodes;
mod report;
mod scale;
mod shape;
mod vk;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use clap::Parser;
use serde_json::{json, Value};

use floor::Floor;
use measure::{loadavg, meminfo_kib, r2};
use shape::{PodShape, CGROUP_ROOT};
use support::cri_proxy;
use support::fake_apiserver::{FakeApiServer, FakeConfig};
use vk::{bench_daemon, node_ready, VkBench};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Labels, Runtime};

const OWNER_LABEL: &str = "vk-cri.io/node";

/// `bench --daemon <static binary> --out <json>`; run with the dev environment's env.sh sourced
/// (`VKCRI_BENCH_DAEMON_LOG` sets the daemons' `RUST_LOG`, `info` by default).
#[derive(Parser, Debug)]
struct Args {
    /// The virtual-kubelet binary to measure (the static release build)
    #[arg(long)]
    daemon: Option<PathBuf>,
    /// Where the JSON report goes; the SVG charts are written next to it
    #[arg(long, required_unless_present = "charts_from")]
    out: Option<PathBuf>,
    /// The phases to run, of latency, scale, nodes (`--phases scale` runs the scale series
    /// alone)
    #[arg(long, value_delimiter = ',', default_value = "latency,scale,nodes")]
    phases: Vec<String>,
    /// Sequential pods per latency series
    #[arg(long, default_value_t = 20)]
    seq: usize,
    /// Pods created (and deleted) at once in each burst round
    #[arg(long, default_value_t = 100)]
    burst: usize,
    /// Burst rounds (the floor's and the daemon's in turn, the order alternating)
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The scale series' levels: pods on the node
    #[arg(long, value_delimiter = ',', default_value = "0,100,250,500")]
    scale_levels: Vec<usize>,
    /// Pods started one by one on each side at each scale level
    #[arg(long, default_value_t = 10)]
    probe: usize,
    /// The scale series without the floor's bursts and pods (for profiling the daemon at a
    /// level: its pid is printed as each idle period starts, for `perf record -p`)
    #[arg(long)]
    no_scale_floor: bool,
    /// How many daemons on one API server, for each run of the nodes phase
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    nodes: Vec<usize>,
    /// Length of each idle measurement (and of each nodes window), in seconds
    #[arg(long, default_value_t = 60)]
    idle_secs: u64,
    /// Time a (re)started daemon gets to adopt its pods before an idle measurement, in seconds
    #[arg(long, default_value_t = 10)]
    settle_secs: u64,
    /// Skip the SVG charts
    #[arg(long)]
    no_charts: bool,
    /// Only redraw the charts (and print the tables) of a saved report; nothing runs
    #[arg(long)]
    charts_from: Option<PathBuf>,
}

impl Args {
    fn phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p == name)
    }
}

/// What to remove whatever happens (also from the panic hook: release builds abort on panic).
pub struct Cleanup {
    nodes: Vec<String>,
    scratch: PathBuf,
    socket: PathBuf,
    pub daemon_pid: AtomicU32,
}

pub static CLEANUP: std::sync::OnceLock<Cleanup> = std::sync::OnceLock::new();

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

/// The floor's client, with the daemon's own deadlines: 250 RunPodSandbox calls at once on a
/// containerd already holding 250 pods can take longer than a minute each.
fn runtime(socket: &Path) -> GrpcRuntime {
    GrpcRuntime::new(socket, Deadlines::default())
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
// The run.

struct Env {
    socket: PathBuf,
    busybox: String,
    pause: String,
}

fn env() -> Result<Env, String> {
    let socket = PathBuf::from(env_var("VKCRI_CRI_SOCKET")?);
    if !socket.exists() {
        return Err(format!(
            "no containerd socket at {}: run `make env-up`",
            socket.display()
        ));
    }
    Ok(Env {
        socket,
        busybox: env_var("VKCRI_BUSYBOX_IMAGE")?,
        pause: env_var("VKCRI_PAUSE_IMAGE")?,
    })
}

fn run(
    args: &Args,
    bin: &Path,
    scratch: &Path,
    floor_node: &str,
    fake: &FakeApiServer,
) -> Result<Value, String> {
    cri_proxy::self_check()?;
    let env = env()?;
    for p in &args.phases {
        if !["latency", "scale", "nodes"].contains(&p.as_str()) {
            return Err(format!(
                "--phases {p}: the phases are latency, scale and nodes"
            ));
        }
    }
    let mut levels = args.scale_levels.clone();
    levels.sort_unstable();
    levels.dedup();
    let mut node_counts = args.nodes.clone();
    node_counts.sort_unstable();
    node_counts.dedup();
    node_counts.retain(|n| *n > 0);
    let size = std::fs::metadata(bin)
        .map_err(|e| format!("{}: {e}", bin.display()))?
        .len();
    let load_before = loadavg();
    let rt = runtime(&env.socket);
    let version = rt.version().map_err(|e| {
        format!(
            "containerd at {} does not answer: {e}",
            env.socket.display()
        )
    })?;
    let log_level = std::env::var("VKCRI_BENCH_DAEMON_LOG").unwrap_or_else(|_| "info".into());

    // The daemon, on containerd directly; it idles while the floor runs (it lists only the
    // sandboxes with its own node's owner label, and the floor's carry another node's).
    let max_pods = levels.last().copied().unwrap_or(0).max(args.burst) + args.probe + 10;
    let mut d = bench_daemon(bin, fake, &scratch.join("daemon"), &log_level, max_pods)?;
    let (mut lat, mut sc, mut nodes_runs) = (None, None, Vec::new());
    if args.phase("latency") || args.phase("scale") {
        d.start(&env.socket)?;
        let node = fake.node_name().to_string();
        if !fake.wait_for(Duration::from_secs(60), |v| node_ready(v, &node)) {
            d.check_alive()?;
            return Err(format!(
                "node {node} not Ready after 60 s:\n{}",
                d.log_tail()
            ));
        }
    }
    if args.phase("latency") {
        let shape = PodShape::busybox(&env.busybox);
        let floor = Floor::new(rt.clone(), floor_node, scratch, shape.clone())?;
        let mut vk = VkBench::new(fake, shape);
        lat = Some(latency::run(
            &floor,
            &mut vk,
            &d,
            args.seq,
            args.burst,
            args.rounds,
        )?);
    }
    if args.phase("scale") {
        let shape = PodShape::pause(&env.pause);
        let floor = Floor::new(rt.clone(), floor_node, scratch, shape.clone())?;
        let mut vk = VkBench::new(fake, shape);
        let proxy = cri_proxy::Proxy::start(&scratch.join("cri-proxy.sock"), &env.socket)
            .map_err(|e| format!("cri proxy: {e}"))?;
        let setup = scale::Setup {
            socket: &env.socket,
            proxy: &proxy,
            settle_secs: args.settle_secs,
            idle_secs: args.idle_secs,
            probe: args.probe,
            floor: !args.no_scale_floor,
        };
        sc = Some(scale::run(&setup, &floor, &mut vk, &mut d, &levels)?);
    }
    d.kill();
    if args.phase("nodes") {
        let setup = nodes::Setup {
            bin,
            socket: &env.socket,
            scratch,
            settle_secs: args.settle_secs,
            window_secs: args.idle_secs,
            log_level: log_level.clone(),
            tag: fake.node_name().to_string(),
        };
        for n in &node_counts {
            nodes_runs.push(nodes::run(&setup, fake, *n)?);
        }
    }

    let targets = report::targets(lat.as_ref(), sc.as_ref(), &nodes_runs, size);
    let mut out = json!({
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
            "phases": args.phases, "sequential": args.seq, "burst": args.burst,
            "rounds": args.rounds, "scale_levels": levels, "probe": args.probe,
            "nodes": node_counts, "idle_secs": args.idle_secs, "settle_secs": args.settle_secs,
            "daemon": bin.display().to_string(),
            "pod": PodShape::busybox(&env.busybox).pod("<name>", "<node>"),
            "scale_pod": PodShape::pause(&env.pause).pod("<name>", "<node>"),
        },
        "binary_bytes": size,
        "targets": targets.iter().map(report::Target::json).collect::<Vec<_>>(),
    });
    if let Some(l) = &lat {
        out["start_sequential"] = latency::pair(&l.seq_up.0, &l.seq_up.1);
        out["delete_sequential"] = latency::pair(&l.seq_down.0, &l.seq_down.1);
        out["start_burst"] = l.bursts_json(latency::Phase::Start);
        out["delete_burst"] = l.bursts_json(latency::Phase::Delete);
    }
    if let Some(s) = &sc {
        out["scale"] = s.json();
    }
    if !nodes_runs.is_empty() {
        out["nodes"] = json!({
            "runs": nodes_runs.iter().map(nodes::Nodes::json).collect::<Vec<_>>(),
            "kubelet_reference": nodes::KubeletReference::json(),
        });
    }
    Ok(out)
}

fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Writes the report and its charts, prints the tables.
fn publish(args: &Args, out: &Path, report: &Value, write_json: bool) -> Result<(), String> {
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if write_json {
        let text = serde_json::to_string_pretty(report).unwrap_or_default();
        std::fs::write(out, text + "\n")
            .map_err(|e| format!("failed to write {}: {e}", out.display()))?;
    }
    print!("{}", report::table(report));
    if write_json {
        println!("\nJSON: {}", out.display());
    }
    if !args.no_charts {
        for f in chart::write_all(report, out)? {
            println!("chart: {}", f.display());
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Some(saved) = args.charts_from.clone() {
        let report = std::fs::read_to_string(&saved)
            .map_err(|e| format!("{}: {e}", saved.display()))
            .and_then(|s| {
                serde_json::from_str::<Value>(&s).map_err(|e| format!("{}: {e}", saved.display()))
            });
        let done = report.and_then(|r| publish(&args, &saved, &r, false));
        return match done {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let (Some(bin), Some(out)) = (args.daemon.clone(), args.out.clone()) else {
        eprintln!("bench: --daemon <virtual-kubelet binary> and --out <json> are required");
        return std::process::ExitCode::FAILURE;
    };
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
    // The nodes phase's daemons hold a few watches each.
    let server = vk_cri::httpd::ServerConfig {
        max_connections: 4096,
        ..Default::default()
    };
    let mut fake = FakeApiServer::start_with(FakeConfig {
        node_name: node,
        inject_service_account_volume: false,
        server,
        ..FakeConfig::default()
    });
    let result = run(&args, &bin, &scratch, &floor_node, &fake);
    eprintln!("bench: cleaning up");
    cleanup();
    fake.shutdown();
    match result.and_then(|report| publish(&args, &out, &report, true)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
