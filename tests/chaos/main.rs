//! `make chaos`: vk-cri under faults, against the project's containerd and the fake API
//! server, each scenario's failures counted. A measurement, like `make bench`, with the counts
//! and figures in the JSON report and the table; it exits non-zero when a count is not 0 or a
//! figure misses its target, so a regression fails the run. Built as an example (`cargo test`
//! compiles it, never runs it).
//!
//! Owns the run: the arguments, what the scenarios share (pods, the runtime's view of a node,
//! waiting), the report. The scenarios, one file each: `churn` (SIGKILL during pod churn),
//! `runtime_outage` (containerd stopped and started), `api_outage` (the API server silent, then
//! 500, then 429), `slow_cri` (a proxy delaying and holding CRI calls), `disk_full` (a full
//! tmpfs under the log and volume dirs).

#[path = "../support/mod.rs"]
mod support;

mod api_outage;
mod churn;
mod disk_full;
mod runtime_outage;
mod slow_cri;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use support::daemon::Daemon;
use support::fake_apiserver::{FakeApiServer, FakeConfig};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{api, GrpcRuntime, Labels, Runtime};

pub const NS: &str = "default";
pub const OWNER_LABEL: &str = "vk-cri.io/node";
pub const UID_LABEL: &str = "io.kubernetes.pod.uid";
/// A container that runs until stopped.
pub const SLEEPER: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

const SCENARIOS: [&str; 5] = ["churn", "runtime", "api", "slow-cri", "disk-full"];

/// `chaos --daemon <binary> --out <json>`; run with the dev environment's env.sh sourced.
#[derive(Parser, Debug)]
pub struct Args {
    /// The virtual-kubelet binary
    #[arg(long)]
    daemon: PathBuf,
    /// Where the JSON report goes
    #[arg(long)]
    out: PathBuf,
    /// Scenarios to run, comma-separated: churn, runtime, api, slow-cri, disk-full
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "churn,runtime,api,slow-cri,disk-full"
    )]
    scenarios: Vec<String>,
    /// Kills in the churn scenario
    #[arg(long, default_value_t = 20)]
    pub kills: usize,
    /// Pods kept running in the churn scenario
    #[arg(long, default_value_t = 50)]
    pub churn_pods: usize,
    /// Pods kept running in the other scenarios
    #[arg(long, default_value_t = 30)]
    pub pods: usize,
    /// Seconds containerd stays stopped (more than the kubelet's 30 s before it reports the
    /// runtime down)
    #[arg(long, default_value_t = 45)]
    pub runtime_outage: u64,
    /// Seconds of each API server outage phase: silent, 500, 429
    #[arg(long, default_value_t = 20)]
    pub api_phase: u64,
    /// The dev environment's up.sh, to start containerd again
    #[arg(long, default_value = "contrib/dev-env/up.sh")]
    pub dev_env: PathBuf,
    /// Seed of the kill moments and of which pods go
    #[arg(long, default_value_t = 19)]
    pub seed: u64,
}

/// What every scenario gets.
pub struct Ctx {
    pub args: Args,
    pub image: String,
    pub socket: PathBuf,
    pub scratch: PathBuf,
}

/// One line of a scenario's table: a count or figure and what it should be.
#[derive(Debug)]
pub struct Check {
    pub what: String,
    pub got: String,
    pub want: String,
    pub ok: bool,
}

impl Check {
    /// A count that should be 0.
    pub fn zero(what: &str, n: u64) -> Check {
        Check {
            what: what.to_string(),
            got: n.to_string(),
            want: "0".to_string(),
            ok: n == 0,
        }
    }

    /// A time that should be at most `max` (`None`: it never happened).
    pub fn within(what: &str, took: Option<Duration>, max: Duration) -> Check {
        Check {
            what: what.to_string(),
            got: took.map_or("never".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
            want: format!("≤ {} s", max.as_secs()),
            ok: took.is_some_and(|t| t <= max),
        }
    }

    /// Something that should hold, shown as what was seen.
    pub fn holds(what: &str, seen: String, want: &str, ok: bool) -> Check {
        Check {
            what: what.to_string(),
            got: seen,
            want: want.to_string(),
            ok,
        }
    }
}

/// A scenario's result: its table and its raw figures.
pub struct Outcome {
    pub title: String,
    pub checks: Vec<Check>,
    pub detail: Value,
}

/// xorshift64*, seeded: the same run twice.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

pub fn runtime(socket: &Path) -> GrpcRuntime {
    GrpcRuntime::new(
        socket,
        Deadlines {
            call: Duration::from_secs(60),
            pull: Duration::from_secs(300),
        },
    )
}

/// A host-network pod of one busybox container running `script`.
pub fn pod_json(name: &str, node: &str, image: &str, script: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 1,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "c", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
            }]
        }
    })
}

pub fn running_and_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub fn uid_of(p: &Value) -> String {
    p["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The node's Ready condition as the API server has it.
pub fn node_ready(fake: &FakeApiServer, node: &str) -> Option<Value> {
    fake.get_node(node)?["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
}

/// A node's sandboxes and containers as CRI has them.
pub struct Observed {
    /// Ready sandboxes per pod uid.
    pub ready_sandboxes: BTreeMap<String, usize>,
    /// Pod uids with any sandbox.
    pub any_sandboxes: BTreeSet<String>,
    /// The running container's id per pod uid.
    pub containers: BTreeMap<String, String>,
}

pub fn observe(rt: &GrpcRuntime, node: &str) -> Result<Observed, String> {
    let owner: Labels = [(OWNER_LABEL.to_string(), node.to_string())].into();
    let mut ready_sandboxes = BTreeMap::new();
    let mut any_sandboxes = BTreeSet::new();
    for sb in rt.list_pod_sandboxes(&owner).map_err(|e| e.to_string())? {
        let uid = sb.labels.get(UID_LABEL).cloned().unwrap_or_default();
        any_sandboxes.insert(uid.clone());
        if sb.state.enum_value_or_default() == api::PodSandboxState::SANDBOX_READY {
            *ready_sandboxes.entry(uid).or_insert(0) += 1;
        }
    }
    let mut containers = BTreeMap::new();
    for c in rt
        .list_containers(&owner, None)
        .map_err(|e| e.to_string())?
    {
        if c.state.enum_value_or_default() == api::ContainerState::CONTAINER_RUNNING {
            let uid = c.labels.get(UID_LABEL).cloned().unwrap_or_default();
            containers.insert(uid, c.id.clone());
        }
    }
    Ok(Observed {
        ready_sandboxes,
        any_sandboxes,
        containers,
    })
}

/// Waits until every named pod is Running and Ready; returns how long that took.
pub fn wait_all_running(
    fake: &FakeApiServer,
    names: &BTreeSet<String>,
    timeout: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if names
            .iter()
            .all(|n| fake.get_pod(NS, n).is_some_and(|p| running_and_ready(&p)))
        {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Polls `pred` every 200 ms for up to `timeout`; returns how long until it held.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if pred() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A scenario's own fake API server, node and daemon directory.
pub struct Stage {
    pub fake: FakeApiServer,
    pub daemon: Daemon,
}

impl Stage {
    pub fn new(ctx: &Ctx, name: &str) -> Result<Stage, String> {
        let node = format!("vk-chaos-{name}-{}", std::process::id());
        let fake = FakeApiServer::start_with(FakeConfig {
            node_name: node,
            inject_service_account_volume: false,
            ..FakeConfig::default()
        });
        let daemon = Daemon::new(&ctx.args.daemon, &fake, &ctx.scratch.join(name))?;
        Ok(Stage { fake, daemon })
    }

    /// Creates `n` sleeper pods named `<prefix>-<i>` and returns their names.
    pub fn sleepers(&self, ctx: &Ctx, prefix: &str, n: usize) -> BTreeSet<String> {
        (0..n)
            .map(|i| {
                let name = format!("{prefix}-{i}");
                self.fake
                    .create_pod(pod_json(&name, &self.daemon.node, &ctx.image, SLEEPER));
                name
            })
            .collect()
    }

    /// Starts the daemon on `socket` and waits until every named pod runs (3 min).
    pub fn start_until_running(
        &mut self,
        socket: &Path,
        names: &BTreeSet<String>,
    ) -> Result<(), String> {
        self.daemon.start(socket)?;
        match wait_all_running(&self.fake, names, Duration::from_secs(180)) {
            Some(_) => Ok(()),
            None => Err(format!(
                "the pods never all ran\n{}",
                self.daemon.log_tail()
            )),
        }
    }

    /// Kills the daemon, removes the node's sandboxes, keeps the daemon's log next to the
    /// report as `<scenario>.log`, stops the fake.
    pub fn finish(mut self, ctx: &Ctx, name: &str) {
        self.daemon.kill();
        let rt = runtime(&ctx.socket);
        let owner: Labels = [(OWNER_LABEL.to_string(), self.daemon.node.clone())].into();
        for sb in rt.list_pod_sandboxes(&owner).unwrap_or_default() {
            let _ = rt.stop_pod_sandbox(&sb.id);
            let _ = rt.remove_pod_sandbox(&sb.id);
        }
        if let Some(dir) = ctx.args.out.parent() {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::fs::copy(&self.daemon.log, dir.join(format!("{name}.log")));
        }
        self.fake.shutdown();
    }
}

fn run_one(ctx: &Ctx, name: &str) -> Result<Outcome, String> {
    match name {
        "churn" => churn::run(ctx),
        "runtime" => runtime_outage::run(ctx),
        "api" => api_outage::run(ctx),
        "slow-cri" => slow_cri::run(ctx),
        "disk-full" => disk_full::run(ctx),
        other => Err(format!(
            "unknown scenario {other:?} (known: {})",
            SCENARIOS.join(", ")
        )),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if let Err(e) = support::cri_proxy::self_check() {
        eprintln!("chaos: FAILED: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let Ok(image) = std::env::var("VKCRI_BUSYBOX_IMAGE") else {
        eprintln!("chaos: FAILED: VKCRI_BUSYBOX_IMAGE unset (source the dev env's env.sh)");
        return std::process::ExitCode::FAILURE;
    };
    let socket = PathBuf::from(std::env::var("VKCRI_CRI_SOCKET").unwrap_or_default());
    if let Err(e) = runtime(&socket).version() {
        eprintln!(
            "chaos: FAILED: containerd on {} does not answer ({e}): run make env-up",
            socket.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let scratch = std::env::temp_dir().join(format!("vk-cri-chaos-{}", std::process::id()));
    let names = args.scenarios.clone();
    let ctx = Ctx {
        args,
        image,
        socket,
        scratch,
    };
    let started = Instant::now();
    let mut report = Vec::new();
    let mut failed = Vec::new();
    for name in &names {
        eprintln!("chaos: scenario {name}");
        let t = Instant::now();
        match run_one(&ctx, name) {
            Ok(o) => {
                println!("\n| {} | got | wanted |\n|---|---|---|", o.title);
                for c in &o.checks {
                    let mark = if c.ok { "" } else { " ✗" };
                    println!("| {} | {}{mark} | {} |", c.what, c.got, c.want);
                    if !c.ok {
                        failed.push(format!("{name}: {} = {}", c.what, c.got));
                    }
                }
                report.push(json!({
                    "scenario": name,
                    "title": o.title,
                    "seconds": t.elapsed().as_secs(),
                    "checks": o.checks.iter().map(|c| json!({
                        "what": c.what, "got": c.got, "want": c.want, "ok": c.ok,
                    })).collect::<Vec<_>>(),
                    "detail": o.detail,
                }));
            }
            Err(e) => {
                eprintln!("chaos: {name} FAILED: {e}");
                failed.push(format!("{name}: {e}"));
                report.push(json!({"scenario": name, "error": e}));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&ctx.scratch);
    if let Some(dir) = ctx.args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = json!({
        "seed": ctx.args.seed,
        "seconds": started.elapsed().as_secs(),
        "scenarios": report,
        "failed": failed,
    });
    let _ = std::fs::write(
        &ctx.args.out,
        serde_json::to_string_pretty(&json).unwrap_or_default() + "\n",
    );
    println!("\nJSON: {} (daemon logs beside it)", ctx.args.out.display());
    if failed.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("chaos: {} check(s) failed:", failed.len());
        for f in &failed {
            eprintln!("  {f}");
        }
        std::process::ExitCode::FAILURE
    }
}
