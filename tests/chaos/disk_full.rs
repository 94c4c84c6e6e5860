//! Scenario **disk full**: the daemon's log and volume directories are small tmpfs mounts
//! (root only), filled to the last byte before the pods come. A pod with a ConfigMap volume
//! cannot get its files written: it must wait with the kubelet's `FailedMount` event naming the
//! cause, while pods without volumes (one of them writing to its log without pause) start and
//! run as usual. Once space is freed the waiting pod must start.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::support::fake_apiserver::Res;
use super::{
    pod_json, running_and_ready, wait_all_running, wait_until, Check, Ctx, Outcome, Stage, NS,
};

const TMPFS_SIZE: &str = "size=2m";

fn mount_tmpfs(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount tmpfs on {} (the scenario needs root): {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn umount(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).status();
}

/// Writes a filler file until the filesystem refuses; returns its path.
fn fill(dir: &Path) -> Result<std::path::PathBuf, String> {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    let _ = f.sync_all();
    Ok(path)
}

fn events_of(stage: &Stage, pod: &str) -> Vec<Value> {
    stage
        .fake
        .list(Res::Events, Some(NS))
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .collect()
}

pub fn run(ctx: &Ctx) -> Result<Outcome, String> {
    let mut stage = Stage::new(ctx, "disk-full")?;
    let logs = stage.daemon.dir.join("logs");
    let volumes = stage.daemon.dir.join("volumes");
    let result = mount_tmpfs(&logs)
        .and_then(|()| mount_tmpfs(&volumes))
        .and_then(|()| full(ctx, &mut stage, &logs, &volumes));
    stage.finish(ctx, "disk-full");
    umount(&logs);
    umount(&volumes);
    result
}

fn full(ctx: &Ctx, stage: &mut Stage, logs: &Path, volumes: &Path) -> Result<Outcome, String> {
    let node = stage.daemon.node.clone();
    let filler_logs = fill(logs)?;
    let filler_volumes = fill(volumes)?;
    stage
        .fake
        .put_configmap(NS, "big", &[("data", &"x".repeat(256 << 10))]);
    let mut cm = pod_json("with-configmap", &node, &ctx.image, super::SLEEPER);
    cm["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "big"}}]);
    cm["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/cfg"}]);
    stage.fake.create_pod(cm);
    let mut plain = stage.sleepers(ctx, "plain", 3);
    stage.fake.create_pod(pod_json(
        "chatty",
        &node,
        &ctx.image,
        "while true; do echo 'a line for a full disk'; done",
    ));
    plain.insert("chatty".to_string());
    stage.daemon.start(&ctx.socket)?;

    let plain_took = wait_all_running(&stage.fake, &plain, Duration::from_secs(60));
    let mut event_seen = None;
    let event_took = wait_until(Duration::from_secs(60), || {
        event_seen = events_of(stage, "with-configmap")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount");
        event_seen.is_some()
    });
    let waiting = stage.fake.get_pod(NS, "with-configmap").map(|p| {
        (
            p["status"]["phase"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    });
    let message = event_seen
        .as_ref()
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string();
    // The plain pods kept running while the disk stayed full.
    std::thread::sleep(Duration::from_secs(5));
    let plain_still = plain
        .iter()
        .filter(|n| {
            stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
        })
        .count();
    stage.daemon.check_alive()?;

    let _ = std::fs::remove_file(&filler_volumes);
    let _ = std::fs::remove_file(&filler_logs);
    let names: BTreeSet<String> = ["with-configmap".to_string()].into();
    let recovered = wait_all_running(&stage.fake, &names, Duration::from_secs(60));
    stage.daemon.check_alive()?;
    let (phase, reason) = waiting.unwrap_or_default();
    Ok(Outcome {
        title: format!("log and volume dirs on full {TMPFS_SIZE} tmpfs mounts"),
        checks: vec![
            Check::within(
                "pods without volumes (one logging nonstop) running",
                plain_took,
                Duration::from_secs(20),
            ),
            Check::holds(
                "pods without volumes still running 5 s later",
                format!("{plain_still} of {}", plain.len()),
                "all",
                plain_still == plain.len(),
            ),
            Check::within(
                "FailedMount event for the ConfigMap pod",
                event_took,
                Duration::from_secs(20),
            ),
            Check::holds(
                "its message names the cause",
                message.clone(),
                "… no space left on device",
                message.contains("no space left on device"),
            ),
            Check::holds(
                "the ConfigMap pod while the disk is full",
                format!("{phase} / {reason}"),
                "Pending / ContainerCreating",
                phase == "Pending" && reason == "ContainerCreating",
            ),
            Check::within(
                "the ConfigMap pod running once space is freed",
                recovered,
                Duration::from_secs(30),
            ),
        ],
        detail: json!({"event": event_seen}),
    })
}
