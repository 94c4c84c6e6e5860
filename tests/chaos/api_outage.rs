//! Scenario **API server outage**: with the pods running, the fake API server stops answering
//! (its watches closed, every request left waiting), then answers every request with a 500,
//! then with kube-apiserver's 429 and `Retry-After: 1`, `--api-phase` seconds each. Meanwhile
//! the node changes under it: some pods' containers exit, pods are created and deleted through
//! the (in-process, unaffected) admin API, and at the end the node is marked Unknown as the
//! node lifecycle controller does after 40 s without heartbeats. Counted: relists (the watches should resume from
//! their resourceVersion: the fake keeps enough history), containers replaced, stale status
//! writes landing after the newest (a pod shown Running again after it was written Failed);
//! figures: the Lease renewed, the exited pods' statuses, the created pods running and the
//! deleted pods gone, each measured from the server's return. A watch that failed all through
//! the outage has backed off to its cap (30 s + jitter); it must still resume within a
//! heartbeat, as the first answered request ends its pause.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::support::fake_apiserver::{LoggedRequest, Res};
use super::{
    node_ready, observe, pod_json, running_and_ready, runtime, uid_of, Check, Ctx, Outcome, Stage,
    NS,
};

/// A container that exits 3 once the trigger file appears in its hostPath volume.
const FINISHER: &str = "while [ ! -e /trigger/go ]; do sleep 0.2; done; exit 3";

fn finisher(name: &str, node: &str, image: &str, dir: &str) -> Value {
    let mut p = pod_json(name, node, image, FINISHER);
    p["spec"]["restartPolicy"] = json!("Never");
    p["spec"]["volumes"] =
        json!([{"name": "trigger", "hostPath": {"path": dir, "type": "Directory"}}]);
    p["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "trigger", "mountPath": "/trigger"}]);
    p
}

fn failed_with_3(p: &Value) -> bool {
    p["status"]["phase"] == "Failed"
        && p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3
}

/// A list of a watched collection: a GET of a path the daemon also watches, without
/// `watch=true`.
fn lists_after(requests: &[LoggedRequest], since: Instant) -> Vec<String> {
    let watched: BTreeSet<&str> = requests
        .iter()
        .filter(|r| r.query.contains("watch=true"))
        .map(|r| r.path.as_str())
        .collect();
    requests
        .iter()
        .filter(|r| {
            r.at >= since
                && r.method == "GET"
                && !r.query.contains("watch=true")
                && watched.contains(r.path.as_str())
                && r.status == 200
        })
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

fn lease_renewed(stage: &Stage) -> Option<String> {
    stage
        .fake
        .get(Res::Leases, "kube-node-lease", &stage.daemon.node)?["spec"]["renewTime"]
        .as_str()
        .map(str::to_string)
}

pub fn run(ctx: &Ctx) -> Result<Outcome, String> {
    let mut stage = Stage::new(ctx, "api")?;
    let result = outage(ctx, &mut stage);
    stage.fake.clear_faults();
    stage.finish(ctx, "api");
    result
}

fn outage(ctx: &Ctx, stage: &mut Stage) -> Result<Outcome, String> {
    let node = stage.daemon.node.clone();
    let trigger = stage.daemon.dir.join("trigger");
    std::fs::create_dir_all(&trigger).map_err(|e| format!("{}: {e}", trigger.display()))?;
    let steady = stage.sleepers(ctx, "api", ctx.args.pods);
    let finishers: BTreeSet<String> = (0..3)
        .map(|i| {
            let name = format!("fin-{i}");
            stage.fake.create_pod(finisher(
                &name,
                &node,
                &ctx.image,
                &trigger.display().to_string(),
            ));
            name
        })
        .collect();
    let all: BTreeSet<String> = steady.union(&finishers).cloned().collect();
    stage.start_until_running(&ctx.socket, &all)?;
    let rt = runtime(&ctx.socket);
    let before = observe(&rt, &node)?;
    let threads_before = stage.daemon.threads()?;
    let phase = Duration::from_secs(ctx.args.api_phase);
    let doomed: Vec<String> = steady.iter().take(3).cloned().collect();

    // 1. Silent: the finishers exit meanwhile.
    let began = Instant::now();
    stage.fake.set_silent(true);
    std::thread::sleep(phase / 4);
    std::fs::write(trigger.join("go"), "").map_err(|e| format!("trigger: {e}"))?;
    std::thread::sleep(phase - phase / 4);
    // 2. 500 for everything; pods created and deleted meanwhile.
    stage.fake.fail_path_prefix("/", 500);
    stage.fake.set_silent(false);
    let created: BTreeSet<String> = (0..3)
        .map(|i| {
            let name = format!("late-{i}");
            stage
                .fake
                .create_pod(pod_json(&name, &node, &ctx.image, super::SLEEPER));
            name
        })
        .collect();
    for n in &doomed {
        stage.fake.delete_pod(NS, n, Some(1));
    }
    std::thread::sleep(phase);
    // 3. 429 with Retry-After.
    stage.fake.set_throttle(Some(1));
    std::thread::sleep(phase);
    let threads_during = stage.daemon.threads()?;
    let lease_at_return = lease_renewed(stage);
    // Past its 40 s grace, kube-controller-manager has marked the node Unknown (fixture 15a).
    stage.fake.mark_node_unknown(&node);
    stage.fake.clear_faults();
    let back = Instant::now();

    // Each figure is the time from the return until it first held.
    let mut firsts: [Option<Duration>; 5] = [None; 5];
    while back.elapsed() < Duration::from_secs(60) && firsts.iter().any(Option::is_none) {
        let held = [
            lease_renewed(stage) != lease_at_return,
            finishers
                .iter()
                .all(|n| stage.fake.get_pod(NS, n).is_some_and(|p| failed_with_3(&p))),
            created.iter().all(|n| {
                stage
                    .fake
                    .get_pod(NS, n)
                    .is_some_and(|p| running_and_ready(&p))
            }),
            doomed.iter().all(|n| stage.fake.get_pod(NS, n).is_none()),
            node_ready(&stage.fake, &node).is_some_and(|c| c["status"] == "True"),
        ];
        for (first, now) in firsts.iter_mut().zip(held) {
            if first.is_none() && now {
                *first = Some(back.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let [lease, exited, started, gone, ready] = firsts;
    stage.daemon.check_alive()?;

    let lists = lists_after(&stage.fake.requests(), began);
    let after = observe(&rt, &node)?;
    let kept: Vec<String> = steady
        .iter()
        .filter(|n| !doomed.contains(n))
        .filter_map(|n| stage.fake.get_pod(NS, n))
        .map(|p| uid_of(&p))
        .collect();
    let replaced = kept
        .iter()
        .filter(|u| before.containers.get(*u) != after.containers.get(*u))
        .count() as u64;
    // Once a finisher was written Failed, no later version may show it otherwise.
    let stale: u64 = finishers
        .iter()
        .map(|n| {
            let versions = stage.fake.versions(Res::Pods, NS, n);
            let first_failed = versions
                .iter()
                .position(|p| p["status"]["phase"] == "Failed");
            first_failed.map_or(0, |i| {
                versions[i..]
                    .iter()
                    .filter(|p| p["status"]["phase"] != "Failed")
                    .count() as u64
            })
        })
        .sum();
    let ten = Duration::from_secs(10);
    Ok(Outcome {
        title: format!(
            "API server silent, then 500, then 429 (Retry-After: 1), {} s each ({} pods)",
            ctx.args.api_phase, ctx.args.pods
        ),
        checks: vec![
            Check::zero(
                "relists (watches resumed from their resourceVersion)",
                lists.len() as u64,
            ),
            Check::zero("containers replaced", replaced),
            Check::zero("stale status writes after the newest", stale),
            Check::within("Lease renewed after the return", lease, ten),
            Check::within(
                "node Ready again after the controller's Unknown",
                ready,
                ten,
            ),
            Check::within(
                "exited pods' statuses written after the return",
                exited,
                ten,
            ),
            Check::within(
                "pods created during the outage running after the return",
                started,
                ten,
            ),
            Check::within(
                "pods deleted during the outage gone after the return",
                gone,
                ten,
            ),
            Check::holds(
                "daemon threads before / at the end of the outage",
                format!("{threads_before} / {threads_during}"),
                "no growth",
                threads_during <= threads_before + 2,
            ),
        ],
        detail: json!({
            "phase_seconds": ctx.args.api_phase,
            "lists": lists,
            "threads_before": threads_before,
            "threads_during": threads_during,
        }),
    })
}
