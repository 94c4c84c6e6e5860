//! Scenario **slow and hanging CRI**: the daemon talks to containerd through the CRI proxy
//! (support::cri_proxy) with `--runtime-request-timeout 10s`. First the calls of three pods
//! (every request naming `slowpoke-`) are held — they never reach containerd until let go, so
//! each ends at its deadline — while other pods are created: those must start as usual and the
//! running ones stay as they are. Then the held calls are let go and the slow pods must start.
//! Last, every call is delayed by 300 ms while more pods start. The daemon's threads are
//! sampled throughout: a hung call must not pile threads up (gRPC core's own threads, which
//! come and go by themselves, are left out of the count).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::support::cri_proxy::{Fault, Match, Proxy};
use super::{observe, running_and_ready, runtime, uid_of, Check, Ctx, Outcome, Stage, NS};

/// Threads gRPC core starts and stops by itself (their number moves by one or two).
const GRPC_CORE: [&str; 5] = [
    "event_engine",
    "grpc_global_tim",
    "timer_manager",
    "resolver-execut",
    "default-executo",
];

/// The daemon's own threads (not gRPC core's).
fn own_threads(stage: &Stage) -> Result<usize, String> {
    Ok(stage
        .daemon
        .thread_names()?
        .iter()
        .filter(|(name, _)| !GRPC_CORE.contains(&name.as_str()))
        .map(|(_, n)| n)
        .sum())
}

pub fn run(ctx: &Ctx) -> Result<Outcome, String> {
    let mut stage = Stage::new(ctx, "slow-cri")?;
    let result = slow(ctx, &mut stage);
    stage.finish(ctx, "slow-cri");
    result
}

/// Waits for `names` to run while sampling the daemon's threads; returns (took, peak).
fn run_sampling(
    stage: &mut Stage,
    names: &BTreeSet<String>,
    timeout: Duration,
) -> Result<(Option<Duration>, usize), String> {
    let start = Instant::now();
    let mut peak = 0;
    let mut took = None;
    while start.elapsed() < timeout {
        peak = peak.max(stage.daemon.threads()?);
        if names.iter().all(|n| {
            stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
        }) {
            took = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((took, peak))
}

fn slow(ctx: &Ctx, stage: &mut Stage) -> Result<Outcome, String> {
    let proxy = Proxy::start(&stage.daemon.dir.join("cri-proxy.sock"), &ctx.socket)
        .map_err(|e| format!("cri proxy: {e}"))?;
    stage.daemon.args(["--runtime-request-timeout", "10s"]);
    let node = stage.daemon.node.clone();
    let steady = stage.sleepers(ctx, "steady", ctx.args.pods);
    stage.start_until_running(&proxy.path, &steady)?;
    let rt = runtime(&ctx.socket);
    let before = observe(&rt, &node)?;
    let threads_idle = own_threads(stage)?;

    // 1. Three pods' calls held for 30 s; five others created meanwhile.
    proxy.set_fault(Fault::Hold {
        matching: Match::Containing(b"slowpoke-".to_vec()),
    });
    let held_before = proxy.held_calls();
    let slow = stage.sleepers(ctx, "slowpoke", 3);
    let quick = stage.sleepers(ctx, "quick", 5);
    let (quick_took, mut peak) = run_sampling(stage, &quick, Duration::from_secs(30))?;
    // The rest of the 30 s: the held pods' calls reach their deadlines and are retried; the
    // threads must not grow with the retries.
    let hold_start = Instant::now();
    let mut hold_peak = 0;
    let mut hold_names = Default::default();
    while hold_start.elapsed() < Duration::from_secs(30) - quick_took.unwrap_or_default() {
        let n = own_threads(stage)?;
        if n > hold_peak {
            hold_peak = n;
            hold_names = stage.daemon.thread_names()?;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    peak = peak.max(stage.daemon.threads()?);
    let held = proxy.held_calls() - held_before;
    let slow_ran_while_held = slow
        .iter()
        .filter(|n| {
            stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
        })
        .count() as u64;
    let steady_flapped = steady
        .iter()
        .filter(|n| {
            !stage
                .fake
                .get_pod(NS, n)
                .is_some_and(|p| running_and_ready(&p))
        })
        .count() as u64;

    // 2. Let them go.
    proxy.set_fault(Fault::None);
    let (slow_took, p) = run_sampling(stage, &slow, Duration::from_secs(60))?;
    peak = peak.max(p);

    // 3. Every call 300 ms late.
    proxy.set_fault(Fault::Delay {
        matching: Match::All,
        by: Duration::from_millis(300),
    });
    let lagging = stage.sleepers(ctx, "lag", 5);
    let (lag_took, p) = run_sampling(stage, &lagging, Duration::from_secs(60))?;
    peak = peak.max(p);
    proxy.set_fault(Fault::None);
    std::thread::sleep(Duration::from_secs(5));
    let threads_end = own_threads(stage)?;
    stage.daemon.check_alive()?;

    let after = observe(&rt, &node)?;
    let replaced = steady
        .iter()
        .filter_map(|n| stage.fake.get_pod(NS, n))
        .map(|p| uid_of(&p))
        .filter(|u| before.containers.get(u) != after.containers.get(u))
        .count() as u64;
    Ok(Outcome {
        title: format!(
            "CRI calls held (3 pods, 30 s, deadline 10 s), then all delayed 300 ms ({} pods running)",
            ctx.args.pods
        ),
        checks: vec![
            Check::holds(
                "calls held by the proxy",
                held.to_string(),
                "> 0",
                held > 0,
            ),
            Check::zero("held pods running while held", slow_ran_while_held),
            Check::within(
                "5 other pods running while 3 are held",
                quick_took,
                Duration::from_secs(10),
            ),
            Check::zero("running pods not Running/Ready meanwhile", steady_flapped),
            Check::zero("running pods' containers replaced", replaced),
            Check::within(
                "held pods running once let go",
                slow_took,
                Duration::from_secs(25),
            ),
            Check::within(
                "5 pods running with every call 300 ms late",
                lag_took,
                Duration::from_secs(15),
            ),
            Check::holds(
                "daemon's own threads: idle / most while calls hang / end",
                format!("{threads_idle} / {hold_peak} / {threads_end}"),
                "most ≤ idle + 3 (a worker per hung pod)",
                hold_peak <= threads_idle + 3,
            ),
        ],
        detail: json!({
            "held_calls": held,
            "threads": {
                "idle": threads_idle,
                "hold_peak": hold_peak,
                "hold_peak_names": hold_names,
                "peak": peak,
                "end": threads_end,
            },
            "quick_seconds": quick_took.map(|t| t.as_secs_f64()),
            "slow_seconds": slow_took.map(|t| t.as_secs_f64()),
            "lag_seconds": lag_took.map(|t| t.as_secs_f64()),
        }),
    })
}
