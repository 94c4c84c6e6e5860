//! The latency phases: pods one by one, a floor pod and a daemon pod in turn, then rounds of
//! bursts (many pods created at once, then deleted at once), a floor burst and a daemon burst
//! in turn with the order alternating, reported as the median over rounds with its spread.
//!
//! Owns the order of the measurements: containerd's speed drifts over a run (by tens of
//! milliseconds a pod between runs, and a burst's wall by a second from one round to the
//! next), and measured in turn, the drift lands on both sides alike.

use serde_json::{json, Value};

use crate::floor::Floor;
use crate::measure::{clk_tck, proc_cpu_ticks, r2, Series, Spread};
use crate::support::daemon::Daemon;
use crate::vk::{with_log, VkBench};

/// One burst round: the floor's and the daemon's bursts of the same size, back to back.
pub struct Round {
    pub floor_first: bool,
    pub vk_up: Series,
    pub vk_down: Series,
    pub floor_up: Series,
    pub floor_down: Series,
    /// CPU seconds during each side's start burst: the daemon's, and the harness's own (the
    /// fake API server and the pod monitor on the daemon's side, the floor's CRI client on the
    /// floor's): what the two sides need besides containerd, on the same CPUs.
    pub vk_daemon_cpu_s: f64,
    pub vk_harness_cpu_s: f64,
    pub floor_harness_cpu_s: f64,
}

/// CPU seconds of `pid` so far (0 if /proc cannot be read: a figure, never a failure).
fn cpu_s(pid: u32) -> f64 {
    proc_cpu_ticks(pid).map_or(0.0, |t| t as f64 / clk_tck())
}

pub struct Latency {
    pub seq_up: (Series, Series),
    pub seq_down: (Series, Series),
    pub rounds: Vec<Round>,
}

/// `seq` pods one by one on each side, in turn; `rounds` rounds of `burst` at once.
pub fn run(
    floor: &Floor,
    vk: &mut VkBench<'_>,
    d: &Daemon,
    seq: usize,
    burst: usize,
    rounds: usize,
) -> Result<Latency, String> {
    eprintln!("bench: CRI floor and vk-cri in turn, {seq} sequential each");
    let (mut fl, mut vks) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    for i in 0..seq {
        for floor_turn in [i % 2 == 0, i % 2 == 1] {
            let ((up, down), into) = if floor_turn {
                (floor.one()?, &mut fl)
            } else {
                (vk.one().map_err(|e| with_log(d, e))?, &mut vks)
            };
            into.0.push(up);
            into.1.push(down);
        }
    }
    let mut out = Latency {
        seq_up: (Series::new(vks.0, None), Series::new(fl.0, None)),
        seq_down: (Series::new(vks.1, None), Series::new(fl.1, None)),
        rounds: Vec::new(),
    };
    for r in 0..rounds {
        let floor_first = r % 2 == 0;
        eprintln!(
            "bench: burst round {} of {rounds}: {burst} at once, {} first",
            r + 1,
            if floor_first { "CRI floor" } else { "vk-cri" }
        );
        let mut floor_side = None;
        let mut vk_side = None;
        let (me, daemon) = (std::process::id(), d.pid()?);
        let (mut floor_cpu, mut vk_cpu) = (0.0, (0.0, 0.0));
        for floor_turn in [floor_first, !floor_first] {
            if floor_turn {
                let t0 = cpu_s(me);
                let (up, down) = floor.burst_timed(burst, || floor_cpu = cpu_s(me) - t0)?;
                floor_side = Some((up, down));
            } else {
                let (h0, d0) = (cpu_s(me), cpu_s(daemon));
                let (names, up) = vk.burst_create(burst).map_err(|e| with_log(d, e))?;
                vk_cpu = (cpu_s(daemon) - d0, cpu_s(me) - h0);
                let down = vk.burst_delete(&names).map_err(|e| with_log(d, e))?;
                vk_side = Some((up, down));
            }
        }
        let ((floor_up, floor_down), (vk_up, vk_down)) = (
            floor_side.ok_or("no floor burst")?,
            vk_side.ok_or("no vk-cri burst")?,
        );
        eprintln!(
            "bench: round {}: start wall {:.0} ms vs floor {:.0} ms ({:.2}x); CPU s during the \
             start: daemon {:.1} + harness {:.1}, floor's harness {:.1}",
            r + 1,
            vk_up.wall(),
            floor_up.wall(),
            vk_up.wall() / floor_up.wall(),
            vk_cpu.0,
            vk_cpu.1,
            floor_cpu
        );
        out.rounds.push(Round {
            floor_first,
            vk_up,
            vk_down,
            floor_up,
            floor_down,
            vk_daemon_cpu_s: vk_cpu.0,
            vk_harness_cpu_s: vk_cpu.1,
            floor_harness_cpu_s: floor_cpu,
        });
    }
    Ok(out)
}

/// The daemon's series against the floor's.
pub fn pair(vk: &Series, fl: &Series) -> Value {
    json!({
        "vk_cri": vk.json(),
        "floor": fl.json(),
        "ratio_p50": r2(vk.p(50.0) / fl.p(50.0)),
        "ratio_p90": r2(vk.p(90.0) / fl.p(90.0)),
        "ratio_p99": r2(vk.p(99.0) / fl.p(99.0)),
        "ratio_wall": match (vk.wall_ms, fl.wall_ms) {
            (Some(a), Some(b)) => json!(r2(a / b)),
            _ => Value::Null,
        },
    })
}

/// Which half of a round.
#[derive(Clone, Copy)]
pub enum Phase {
    Start,
    Delete,
}

impl Latency {
    fn sides(r: &Round, phase: Phase) -> (&Series, &Series) {
        match phase {
            Phase::Start => (&r.vk_up, &r.floor_up),
            Phase::Delete => (&r.vk_down, &r.floor_down),
        }
    }

    /// The daemon's burst wall over the floor's, round by round.
    pub fn wall_ratio(&self, phase: Phase) -> Spread {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| {
                let (vk, fl) = Latency::sides(r, phase);
                vk.wall() / fl.wall()
            })
            .collect();
        Spread::of(&v)
    }

    fn spread(&self, phase: Phase, vk_side: bool, f: impl Fn(&Series) -> f64) -> Spread {
        let v: Vec<f64> = self
            .rounds
            .iter()
            .map(|r| {
                let (vk, fl) = Latency::sides(r, phase);
                f(if vk_side { vk } else { fl })
            })
            .collect();
        Spread::of(&v)
    }

    /// The rounds of one phase: each round's pair, and the medians over rounds with their
    /// spread.
    pub fn bursts_json(&self, phase: Phase) -> Value {
        let side = |vk_side: bool| {
            json!({
                "wall_ms": self.spread(phase, vk_side, Series::wall).json(),
                "p50_ms": self.spread(phase, vk_side, |s| s.p(50.0)).json(),
                "p99_ms": self.spread(phase, vk_side, |s| s.p(99.0)).json(),
            })
        };
        json!({
            "rounds": self.rounds.iter().map(|r| {
                let (vk, fl) = Latency::sides(r, phase);
                let mut v = pair(vk, fl);
                v["floor_first"] = json!(r.floor_first);
                if matches!(phase, Phase::Start) {
                    v["cpu_s"] = json!({
                        "vk_daemon": r2(r.vk_daemon_cpu_s),
                        "vk_harness": r2(r.vk_harness_cpu_s),
                        "floor_harness": r2(r.floor_harness_cpu_s),
                    });
                }
                v
            }).collect::<Vec<_>>(),
            "ratio_wall": self.wall_ratio(phase).json(),
            "vk_cri": side(true),
            "floor": side(false),
        })
    }
}
