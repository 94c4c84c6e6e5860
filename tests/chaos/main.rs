//! `make chaos`: vk-cri under faults, against the project's containerd and the fake API
//! server, each scenario repeated and its failures counted. A measurement, like `make bench`:
//! it fails only when something breaks (containerd missing, a pod that never runs), never on a
//! count; the counts go to the JSON report and the table.
//!
//! Owns the scenarios. Now: **kill during churn** — pods are created and deleted while the
//! daemon is `SIGKILL`ed at a random moment, then started again; 10 s after each restart it
//! counts pods restarted needlessly (a container of an untouched pod replaced), orphan
//! sandboxes (of pods the API server no longer has), duplicate sandboxes (two ready for one
//! pod), pods whose status is wrong (not Running and Ready) and deletions never finished (the
//! pod still in the API server). Every count should be 0. Built as an example (`cargo test`
//! compiles it, never runs it).

#[path = "../support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};

use support::fake_apiserver::{FakeApiServer, FakeConfig, Res};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{api, GrpcRuntime, Labels, Runtime};

const NS: &str = "default";
const OWNER_LABEL: &str = "vk-cri.io/node";
const UID_LABEL: &str = "io.kubernetes.pod.uid";
const SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

/// `chaos --daemon <binary> --out <json>`; run with the dev environment's env.sh sourced.
#[derive(Parser, Debug)]
struct Args {
    /// The virtual-kubelet binary
    #[arg(long)]
    daemon: PathBuf,
    /// Where the JSON report goes
    #[arg(long)]
    out: PathBuf,
    /// Kills in the churn scenario
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// Pods kept running
    #[arg(long, default_value_t = 30)]
    pods: usize,
    /// Seed of the kill moments and of which pods go
    #[arg(long, default_value_t = 19)]
    seed: u64,
}

/// xorshift64*, seeded: the same run twice.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn runtime() -> GrpcRuntime {
    let socket = std::env::var("VKCRI_CRI_SOCKET").unwrap_or_default();
    GrpcRuntime::new(
        Path::new(&socket),
        Deadlines {
            call: Duration::from_secs(60),
            pull: Duration::from_secs(300),
        },
    )
}

fn pod_json(name: &str, node: &str, image: &str) -> Value {
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
                "command": ["sh", "-c", SCRIPT],
            }]
        }
    })
}

struct Daemon {
    bin: PathBuf,
    node: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn new(bin: &Path, fake: &FakeApiServer, dir: &Path) -> Result<Daemon, String> {
        let kubeconfig = fake.node_kubeconfig();
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig).map_err(|e| format!("kubeconfig: {e}"))?;
        Ok(Daemon {
            bin: bin.to_path_buf(),
            node: fake.node_name().to_string(),
            dir: dir.to_path_buf(),
            kubeconfig: path,
            child: None,
        })
    }

    fn start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .map_err(|e| format!("daemon log: {e}"))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let socket = std::env::var("VKCRI_CRI_SOCKET").unwrap_or_default();
        let child = Command::new(&self.bin)
            .args(["--nodename", &self.node])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--cri-socket", &socket])
            .arg("--log-dir")
            .arg(self.dir.join("logs"))
            .arg("--pods-dir")
            .arg(self.dir.join("pods"))
            .arg("--volumes-dir")
            .arg(self.dir.join("volumes"))
            .args(["--node-ip", "127.0.0.1", "--address", "127.0.0.1"])
            .args(["--healthz-port", "0", "--port", &port.to_string()])
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn running_and_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The node's sandboxes and containers as CRI has them: ready sandboxes per pod uid, and the
/// running container id per pod uid.
struct Runtime2 {
    ready_sandboxes: BTreeMap<String, usize>,
    any_sandboxes: BTreeSet<String>,
    containers: BTreeMap<String, String>,
}

fn observe(rt: &GrpcRuntime, node: &str) -> Result<Runtime2, String> {
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
    Ok(Runtime2 {
        ready_sandboxes,
        any_sandboxes,
        containers,
    })
}

fn uid_of(p: &Value) -> String {
    p["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[derive(Default, Debug)]
struct Counts {
    needless_restarts: u64,
    orphan_sandboxes: u64,
    duplicate_sandboxes: u64,
    wrong_status: u64,
    missed_deletes: u64,
}

fn wait_all_running(fake: &FakeApiServer, names: &BTreeSet<String>, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if names
            .iter()
            .all(|n| fake.get_pod(NS, n).is_some_and(|p| running_and_ready(&p)))
        {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn churn(
    args: &Args,
    fake: &FakeApiServer,
    d: &mut Daemon,
) -> Result<(Counts, Vec<Value>), String> {
    let image = std::env::var("VKCRI_BUSYBOX_IMAGE")
        .map_err(|_| "VKCRI_BUSYBOX_IMAGE unset (source the dev env)")?;
    let rt = runtime();
    let mut rng = Rng(args.seed | 1);
    let node = d.node.clone();
    let mut next = 0usize;
    let mut live: BTreeSet<String> = BTreeSet::new();
    let mut new_pod = |live: &mut BTreeSet<String>| {
        let name = format!("chaos-{next}");
        next += 1;
        fake.create_pod(pod_json(&name, &node, &image));
        live.insert(name);
    };
    for _ in 0..args.pods {
        new_pod(&mut live);
    }
    d.start()?;
    if !wait_all_running(fake, &live, Duration::from_secs(180)) {
        return Err("the first pods never all ran".into());
    }
    let mut total = Counts::default();
    let mut rounds = Vec::new();
    for kill in 0..args.kills {
        // Untouched pods and their containers before the churn.
        let before = observe(&rt, &node)?;
        let untouched_before: BTreeMap<String, String> = live
            .iter()
            .filter_map(|n| fake.get_pod(NS, n))
            .map(|p| uid_of(&p))
            .filter_map(|u| before.containers.get(&u).map(|c| (u, c.clone())))
            .collect();
        // Churn: three pods go, three come; the kill lands somewhere in it.
        let mut deleted = Vec::new();
        for _ in 0..3 {
            let names: Vec<&String> = live.iter().collect();
            let victim = names[rng.below(names.len() as u64) as usize].clone();
            live.remove(&victim);
            if let Some(p) = fake.get_pod(NS, &victim) {
                deleted.push((victim.clone(), uid_of(&p)));
            }
            fake.delete_pod(NS, &victim, Some(1));
        }
        for _ in 0..3 {
            new_pod(&mut live);
        }
        let at = Duration::from_millis(rng.below(2500));
        std::thread::sleep(at);
        d.kill();
        d.start()?;
        std::thread::sleep(Duration::from_secs(10));
        // The counts, 10 s after the restart.
        let after = observe(&rt, &node)?;
        let api_uids: BTreeSet<String> =
            fake.list(Res::Pods, Some(NS)).iter().map(uid_of).collect();
        let mut c = Counts::default();
        for (uid, id) in &untouched_before {
            if deleted.iter().any(|(_, u)| u == uid) {
                continue;
            }
            if after.containers.get(uid).is_some_and(|now| now != id) {
                c.needless_restarts += 1;
            }
        }
        c.orphan_sandboxes = after
            .any_sandboxes
            .iter()
            .filter(|u| !api_uids.contains(*u))
            .count() as u64;
        c.duplicate_sandboxes = after.ready_sandboxes.values().filter(|n| **n > 1).count() as u64;
        let wrong: Vec<Value> = live
            .iter()
            .filter_map(|n| match fake.get_pod(NS, n) {
                Some(p) if running_and_ready(&p) => None,
                Some(p) => Some(json!({
                    "pod": n,
                    "phase": p["status"]["phase"],
                    "containers": p["status"]["containerStatuses"],
                })),
                None => Some(json!({"pod": n, "phase": "missing"})),
            })
            .collect();
        c.wrong_status = wrong.len() as u64;
        c.missed_deletes = deleted
            .iter()
            .filter(|(n, _)| fake.get_pod(NS, n).is_some())
            .count() as u64;
        eprintln!(
            "chaos: kill {} at +{} ms: restarts {}, orphans {}, duplicates {}, wrong status {}, missed deletes {}",
            kill + 1,
            at.as_millis(),
            c.needless_restarts,
            c.orphan_sandboxes,
            c.duplicate_sandboxes,
            c.wrong_status,
            c.missed_deletes
        );
        rounds.push(json!({
            "kill_after_ms": at.as_millis() as u64,
            "needless_restarts": c.needless_restarts,
            "orphan_sandboxes": c.orphan_sandboxes,
            "duplicate_sandboxes": c.duplicate_sandboxes,
            "wrong_status": c.wrong_status,
            "missed_deletes": c.missed_deletes,
            "wrong": wrong,
        }));
        total.needless_restarts += c.needless_restarts;
        total.orphan_sandboxes += c.orphan_sandboxes;
        total.duplicate_sandboxes += c.duplicate_sandboxes;
        total.wrong_status += c.wrong_status;
        total.missed_deletes += c.missed_deletes;
        // Let the next round start from a settled node.
        wait_all_running(fake, &live, Duration::from_secs(60));
    }
    Ok((total, rounds))
}

fn cleanup(node: &str) {
    let rt = runtime();
    let owner: Labels = [(OWNER_LABEL.to_string(), node.to_string())].into();
    for sb in rt.list_pod_sandboxes(&owner).unwrap_or_default() {
        let _ = rt.stop_pod_sandbox(&sb.id);
        let _ = rt.remove_pod_sandbox(&sb.id);
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let pid = std::process::id();
    let scratch = std::env::temp_dir().join(format!("vk-cri-chaos-{pid}"));
    let node = format!("vk-chaos-{pid}");
    let mut fake = FakeApiServer::start_with(FakeConfig {
        node_name: node.clone(),
        inject_service_account_volume: false,
        ..FakeConfig::default()
    });
    let started = Instant::now();
    let result = Daemon::new(&args.daemon, &fake, &scratch).and_then(|mut d| {
        let r = churn(&args, &fake, &mut d);
        d.kill();
        r
    });
    cleanup(&node);
    fake.shutdown();
    // The daemon's log stays next to the report, for the rounds that went wrong.
    if let Some(dir) = args.out.parent() {
        let _ = std::fs::create_dir_all(dir);
        let _ = std::fs::copy(scratch.join("daemon.log"), dir.join("daemon.log"));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    match result {
        Ok((c, rounds)) => {
            let report = json!({
                "scenario": "kill during churn",
                "kills": args.kills,
                "pods": args.pods,
                "seed": args.seed,
                "seconds": started.elapsed().as_secs(),
                "needless_restarts": c.needless_restarts,
                "orphan_sandboxes": c.orphan_sandboxes,
                "duplicate_sandboxes": c.duplicate_sandboxes,
                "wrong_status_after_10s": c.wrong_status,
                "missed_final_deletes": c.missed_deletes,
                "rounds": rounds,
            });
            if let Some(dir) = args.out.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(
                &args.out,
                serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
            );
            println!(
                "\n| kill during churn ({} kills, {} pods) | count | wanted |",
                args.kills, args.pods
            );
            println!("|---|---|---|");
            for (k, v) in [
                ("pods restarted needlessly", c.needless_restarts),
                ("orphan sandboxes", c.orphan_sandboxes),
                ("duplicate sandboxes", c.duplicate_sandboxes),
                ("status wrong 10 s after the restart", c.wrong_status),
                ("final deletes missed", c.missed_deletes),
            ] {
                println!("| {k} | {v} | 0 |");
            }
            println!("\nJSON: {}", args.out.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("chaos: FAILED: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
