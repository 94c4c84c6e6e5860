//! The scale series: the daemon's node grown to each level (0, 100, 250, 500 pause-like pods by
//! default) by a burst, with a floor burst of the same size on the same loaded containerd just
//! before it; at each level a few pods started one by one (floor and daemon in turn: start
//! latency under load) and the idle cost (RSS halves, CPU, CRI calls, API requests, threads)
//! once the daemon is quiet; at the end every pod deleted at once.
//!
//! Owns the growth and the order of the measurements at each level. The latency parts talk
//! to containerd directly; the daemon is restarted onto the counting CRI proxy for each idle
//! period (which also proves it adopts every pod) and back for the next growth.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::floor::Floor;
use crate::latency::pair;
use crate::measure::{measure_idle, Idle, Series};
use crate::support::cri_proxy;
use crate::support::daemon::Daemon;
use crate::vk::{restart, with_log, VkBench};

/// A growth step: `size` pods at once onto a node holding `from`.
pub struct Grow {
    pub from: usize,
    pub size: usize,
    pub vk: Series,
    pub floor: Series,
}

pub struct Level {
    pub pods: usize,
    pub grow: Option<Grow>,
    /// Pods started one by one while the node holds `pods` (daemon, floor).
    pub under_load: (Series, Series),
    pub idle: Idle,
}

pub struct Scale {
    pub levels: Vec<Level>,
    pub delete_all: Option<Series>,
}

pub struct Setup<'a> {
    pub socket: &'a Path,
    pub proxy: &'a cri_proxy::Proxy,
    pub settle_secs: u64,
    pub idle_secs: u64,
    /// Pods started one by one at each level, on each side.
    pub probe: usize,
    /// Whether the floor runs its side (bursts and pods one by one) at all.
    pub floor: bool,
}

/// Grows the daemon's node through `levels` (ascending) and measures each; `d` runs on
/// `setup.socket` when called and is left stopped.
pub fn run(
    setup: &Setup<'_>,
    floor: &Floor,
    vk: &mut VkBench<'_>,
    d: &mut Daemon,
    levels: &[usize],
) -> Result<Scale, String> {
    let mut held: Vec<String> = Vec::new();
    let mut out = Scale {
        levels: Vec::new(),
        delete_all: None,
    };
    let mut on_proxy = false;
    for &level in levels {
        if on_proxy {
            restart(d, setup.socket, setup.settle_secs)?;
        }
        let grow = if level > held.len() {
            let (from, size) = (held.len(), level - held.len());
            let floor_up = if setup.floor {
                eprintln!("bench: scale: CRI floor, {size} at once onto {from} pods");
                floor.burst(size)?.0
            } else {
                Series::new(Vec::new(), None)
            };
            eprintln!("bench: scale: vk-cri, {size} at once onto {from} pods");
            let (names, vk_up) = vk.burst_create(size).map_err(|e| with_log(d, e))?;
            held.extend(names);
            eprintln!(
                "bench: scale: start wall {:.0} ms vs floor {:.0} ms ({:.2}x)",
                vk_up.wall(),
                floor_up.wall(),
                vk_up.wall() / floor_up.wall()
            );
            Some(Grow {
                from,
                size,
                vk: vk_up,
                floor: floor_up,
            })
        } else {
            None
        };
        eprintln!(
            "bench: scale: {} pods one by one on each side at {} pods",
            setup.probe,
            held.len()
        );
        let (mut vk_lat, mut fl_lat) = (Vec::new(), Vec::new());
        for i in 0..setup.probe {
            for floor_turn in [i % 2 == 0, i % 2 == 1] {
                if floor_turn && !setup.floor {
                    continue;
                }
                if floor_turn {
                    fl_lat.push(floor.one()?.0);
                } else {
                    vk_lat.push(vk.one().map_err(|e| with_log(d, e))?.0);
                }
            }
        }
        restart(d, &setup.proxy.path, setup.settle_secs)?;
        on_proxy = true;
        quiet(vk, d)?;
        let idle = measure_idle(vk.f, d, setup.proxy, held.len(), setup.idle_secs)?;
        out.levels.push(Level {
            pods: held.len(),
            grow,
            under_load: (Series::new(vk_lat, None), Series::new(fl_lat, None)),
            idle,
        });
    }
    if !held.is_empty() {
        restart(d, setup.socket, setup.settle_secs)?;
        eprintln!("bench: scale: vk-cri, {} deleted at once", held.len());
        out.delete_all = Some(vk.burst_delete(&held).map_err(|e| with_log(d, e))?);
    }
    d.kill();
    Ok(out)
}

/// Waits (up to 2 minutes) until the restarted daemon's API requests fall to its idle rate
/// (at most 2 in 4 s): a daemon adopting hundreds of pods may still be writing their status
/// when the settle time ends.
fn quiet(vk: &VkBench<'_>, d: &mut Daemon) -> Result<(), String> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let before = vk.f.request_count();
        std::thread::sleep(Duration::from_secs(4));
        d.check_alive()?;
        let n = vk.f.request_count() - before;
        if n <= 2 {
            return Ok(());
        }
        if Instant::now() > until {
            eprintln!("bench: scale: the daemon still makes {n} API requests in 4 s; measuring");
            return Ok(());
        }
    }
}

impl Scale {
    pub fn json(&self) -> Value {
        json!({
            "levels": self.levels.iter().map(|l| json!({
                "pods": l.pods,
                "grow": l.grow.as_ref().map(|g| {
                    let mut v = pair(&g.vk, &g.floor);
                    v["from"] = json!(g.from);
                    v["size"] = json!(g.size);
                    v
                }),
                "start_under_load": pair(&l.under_load.0, &l.under_load.1),
                "idle": l.idle.json(),
            })).collect::<Vec<_>>(),
            "delete_all": self.delete_all.as_ref().map(Series::json),
        })
    }

    /// The level with the most pods.
    pub fn top(&self) -> Option<&Level> {
        self.levels.iter().max_by_key(|l| l.pods)
    }

    pub fn at(&self, pods: usize) -> Option<&Level> {
        self.levels.iter().find(|l| l.pods == pods)
    }
}
