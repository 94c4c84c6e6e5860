//! Scenario **containerd outage**: with the pods running, the dev environment's containerd is
//! stopped (`SIGTERM`; the shims keep the containers) for `--runtime-outage` seconds and started
//! again with up.sh. Counted: containers restarted (an id or restart count changed), pods shown
//! other than Running and Ready meanwhile; figures: the node's Ready condition during the outage
//! (the kubelet's `KubeletNotReady` / `container runtime is down`, 30 s after the last healthy
//! answer), how long after containerd's return the node is Ready again and the statuses right.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    node_ready, observe, running_and_ready, runtime, uid_of, wait_until, Check, Ctx, Outcome,
    Stage, NS,
};

/// The dev environment's containerd, as up.sh recorded it (`BASE/run/daemons`).
fn containerd_pids() -> Result<Vec<String>, String> {
    let base = std::env::var("VKCRI_DEV_BASE").map_err(|_| "VKCRI_DEV_BASE unset")?;
    let daemons = PathBuf::from(&base).join("run/daemons");
    let text =
        std::fs::read_to_string(&daemons).map_err(|e| format!("{}: {e}", daemons.display()))?;
    let regex = text
        .lines()
        .find_map(|l| l.strip_prefix("containerd "))
        .ok_or_else(|| format!("{}: no containerd line", daemons.display()))?;
    let out = Command::new("pgrep")
        .args(["-f", "--", regex])
        .output()
        .map_err(|e| format!("pgrep: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

fn stop_containerd() -> Result<(), String> {
    let pids = containerd_pids()?;
    if pids.is_empty() {
        return Err("the dev environment's containerd is not running".into());
    }
    for pid in &pids {
        let _ = Command::new("kill").args(["-TERM", pid]).status();
    }
    wait_until(Duration::from_secs(20), || {
        containerd_pids().is_ok_and(|p| p.is_empty())
    })
    .map(|_| ())
    .ok_or_else(|| "containerd did not stop within 20 s".to_string())
}

fn start_containerd(ctx: &Ctx) -> Result<(), String> {
    let base = std::env::var("VKCRI_DEV_BASE").map_err(|_| "VKCRI_DEV_BASE unset")?;
    let out = Command::new(&ctx.args.dev_env)
        .arg(&base)
        .output()
        .map_err(|e| format!("{}: {e}", ctx.args.dev_env.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}",
            ctx.args.dev_env.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn restart_counts(stage: &Stage, names: &BTreeSet<String>) -> BTreeMap<String, i64> {
    names
        .iter()
        .filter_map(|n| {
            let p = stage.fake.get_pod(NS, n)?;
            let c = p["status"]["containerStatuses"][0]["restartCount"].as_i64()?;
            Some((n.clone(), c))
        })
        .collect()
}

pub fn run(ctx: &Ctx) -> Result<Outcome, String> {
    let mut stage = Stage::new(ctx, "runtime")?;
    let result = outage(ctx, &mut stage);
    // containerd must be back whatever happened: the next scenarios need it.
    if containerd_pids().is_ok_and(|p| p.is_empty()) {
        if let Err(e) = start_containerd(ctx) {
            eprintln!("chaos: could not start containerd again: {e}");
        }
    }
    stage.finish(ctx, "runtime");
    result
}

fn outage(ctx: &Ctx, stage: &mut Stage) -> Result<Outcome, String> {
    let names = stage.sleepers(ctx, "rt", ctx.args.pods);
    let node = stage.daemon.node.clone();
    stage.start_until_running(&ctx.socket, &names)?;
    let rt = runtime(&ctx.socket);
    let before = observe(&rt, &node)?;
    let counts_before = restart_counts(stage, &names);

    stop_containerd()?;
    let stopped = Instant::now();
    let outage = Duration::from_secs(ctx.args.runtime_outage);
    let mut not_ready: Option<(Duration, Value)> = None;
    let mut flapped: BTreeSet<String> = BTreeSet::new();
    while stopped.elapsed() < outage {
        if not_ready.is_none() {
            if let Some(c) = node_ready(&stage.fake, &node).filter(|c| c["status"] == "False") {
                not_ready = Some((stopped.elapsed(), c));
            }
        }
        for n in &names {
            if !stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
            {
                flapped.insert(n.clone());
            }
        }
        stage.daemon.check_alive()?;
        std::thread::sleep(Duration::from_millis(500));
    }
    start_containerd(ctx)?;
    let ready_again = wait_until(Duration::from_secs(60), || {
        node_ready(&stage.fake, &node).is_some_and(|c| c["status"] == "True")
    });
    let statuses = wait_until(Duration::from_secs(60), || {
        names.iter().all(|n| {
            stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
        })
    });
    let after = observe(&rt, &node)?;
    let counts_after = restart_counts(stage, &names);
    let uids: Vec<String> = names
        .iter()
        .filter_map(|n| stage.fake.get_pod(NS, n))
        .map(|p| uid_of(&p))
        .collect();
    let replaced = uids
        .iter()
        .filter(|u| before.containers.get(*u) != after.containers.get(*u))
        .count() as u64;
    let recounted = names
        .iter()
        .filter(|n| counts_before.get(*n) != counts_after.get(*n))
        .count() as u64;
    let (seen, ok) = match &not_ready {
        Some((t, c)) => (
            format!(
                "{} {}: {} (at +{} s)",
                c["status"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default(),
                t.as_secs()
            ),
            c["reason"] == "KubeletNotReady" && c["message"] == "container runtime is down",
        ),
        None => ("stayed True".to_string(), false),
    };
    Ok(Outcome {
        title: format!(
            "containerd stopped for {} s ({} pods)",
            ctx.args.runtime_outage, ctx.args.pods
        ),
        checks: vec![
            Check::holds(
                "node Ready while containerd is down",
                seen,
                "False KubeletNotReady: container runtime is down (from +30 s)",
                ok,
            ),
            Check::within(
                "node Ready again after containerd's return",
                ready_again,
                Duration::from_secs(10),
            ),
            Check::within(
                "every pod Running and Ready after the return",
                statuses,
                Duration::from_secs(10),
            ),
            Check::zero("containers replaced", replaced),
            Check::zero("restart counts changed", recounted),
            Check::zero(
                "pods shown not Running/Ready during the outage",
                flapped.len() as u64,
            ),
        ],
        detail: json!({
            "outage_seconds": ctx.args.runtime_outage,
            "not_ready_after_seconds": not_ready.as_ref().map(|(t, _)| t.as_secs_f64()),
            "ready_again_seconds": ready_again.map(|t| t.as_secs_f64()),
            "flapped": flapped,
        }),
    })
}
