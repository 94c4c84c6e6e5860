//! The node's own resource usage for `/stats/summary` and `/metrics/resource`, read from the
//! host as cAdvisor reads it for the kubelet: cumulative cpu from /proc/stat, memory from
//! /proc/meminfo and /proc/vmstat, filesystems by statvfs(2), network from /proc/net/dev, process
//! counts from /proc/sys/kernel/pid_max and /proc/loadavg, and the pods' cgroup (vk-cri's
//! `--cgroup-root`) from its cgroup v2 files (`cpu.stat`, `memory.current`, `memory.stat`) or,
//! on a cgroup v1 host, from the `cpuacct` and `memory` hierarchies.
//!
//! Owns [`HostSample`], [`PodCgroupSample`] (a pod's cgroup under the cgroup root, found by QoS
//! class as `pod::translate::cgroup_parent` makes it: cpu, memory, process count and the
//! interfaces of its first process's network namespace, as cAdvisor gives the kubelet) and the
//! [`HostStats`] trait with its real [`ProcStats`] and a fixed [`FakeStats`], the pure parsers of those files (unit-tested on samples) and [`CpuRate`],
//! which turns cumulative cpu time into `usageNanoCores` by keeping the last sample as cAdvisor
//! does. Building the summary document from a sample is `server::stats`'s job; this module must
//! not log.
//!
//! Definitions, as cAdvisor's root cgroup gives them: memory usage is `MemTotal - MemFree`,
//! the working set is the usage minus `Inactive(file)`, rss is `AnonPages`, and available is
//! `MemTotal` minus the working set (the kubelet's `memory.available`). Cpu is every non-idle
//! column of the `cpu` line (user, nice, system, irq, softirq, steal) in nanoseconds.

use std::fs;
use std::path::{Path, PathBuf};

use super::host::HostFiles;
use super::NodeError;

/// Memory of the node or a cgroup, bytes (faults are counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemorySample {
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    /// Only for the node: `MemTotal - working_set`.
    pub available: Option<u64>,
    pub page_faults: u64,
    pub major_page_faults: u64,
}

/// One filesystem by statvfs(2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsSample {
    pub capacity: u64,
    pub available: u64,
    pub used: u64,
    pub inodes: u64,
    pub inodes_free: u64,
}

/// One network interface's cumulative counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceSample {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// Cpu and memory of a cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupSample {
    /// Cumulative, nanoseconds.
    pub cpu_usage_ns: u64,
    pub memory: MemorySample,
}

/// What the host looked like at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSample {
    /// Wall clock of the sample, nanoseconds since the epoch.
    pub at_ns: i64,
    /// Cumulative non-idle cpu time of the whole node, nanoseconds.
    pub cpu_usage_ns: u64,
    /// When the host booted (/proc/stat `btime`), seconds since the epoch.
    pub boot_time_s: Option<i64>,
    pub memory: MemorySample,
    /// The filesystem of the pods directory (the node's `fs`).
    pub fs: Option<FsSample>,
    /// Every interface but loopback, in /proc/net/dev's order.
    pub interfaces: Vec<InterfaceSample>,
    /// `maxpid` and `curproc`.
    pub rlimit: Option<(u64, u64)>,
    /// vk-cri's `--cgroup-root`, the kubelet's `pods` system container.
    pub pods_cgroup: Option<CgroupSample>,
    /// This daemon's own process (the `kubelet` system container), and when it started,
    /// nanoseconds since the epoch.
    pub daemon: Option<(CgroupSample, Option<i64>)>,
}

/// One pod's cgroup, as cAdvisor reports it to the kubelet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodCgroupSample {
    /// Wall clock of the sample, nanoseconds since the epoch.
    pub at_ns: i64,
    pub usage: CgroupSample,
    /// Processes in the pod's cgroup and its containers' cgroups.
    pub process_count: u64,
    /// The interfaces of the pod's network namespace (of one of its processes), loopback aside.
    pub interfaces: Vec<InterfaceSample>,
}

/// Where node samples come from.
pub trait HostStats: Send + Sync {
    /// Reads the host now. The cpu and memory figures are required; the rest is best effort.
    fn sample(&self) -> Result<HostSample, NodeError>;
    /// What the eviction manager reads every 10 s: memory, the pods directory's filesystem and
    /// the pid limit; the rest of the sample may be left empty.
    fn pressure_sample(&self) -> Result<HostSample, NodeError> {
        self.sample()
    }
    /// The cgroup of the pod with this uid under the cgroup root, if there is one.
    fn pod_cgroup(&self, uid: &str) -> Option<PodCgroupSample>;
}

/// Fixed samples, for tests.
#[derive(Default)]
pub struct FakeStats {
    pub host: std::sync::Mutex<HostSample>,
    pub pods: std::sync::Mutex<std::collections::BTreeMap<String, PodCgroupSample>>,
}

impl HostStats for FakeStats {
    fn sample(&self) -> Result<HostSample, NodeError> {
        Ok(self.host.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn pod_cgroup(&self, uid: &str) -> Option<PodCgroupSample> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .cloned()
    }
}

/// The real host: files under `/` (or a test prefix) and statvfs of the pods directory.
#[derive(Clone, Debug)]
pub struct ProcStats {
    files: HostFiles,
    pods_dir: PathBuf,
    cgroup_root: String,
    /// `USER_HZ`: /proc/stat's unit.
    clock_ticks: u64,
}

impl ProcStats {
    pub fn new(pods_dir: impl Into<PathBuf>, cgroup_root: &str) -> ProcStats {
        ProcStats::with_prefix("/", pods_dir, cgroup_root)
    }

    /// Reads /proc and /sys under `prefix` instead of `/` (for tests).
    pub fn with_prefix(
        prefix: impl Into<PathBuf>,
        pods_dir: impl Into<PathBuf>,
        cgroup_root: &str,
    ) -> ProcStats {
        let clock_ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(100);
        ProcStats {
            files: HostFiles::new(prefix),
            pods_dir: pods_dir.into(),
            cgroup_root: cgroup_root.trim_matches('/').to_string(),
            clock_ticks,
        }
    }

    fn parse_error(&self, abs: &str) -> impl FnOnce(String) -> NodeError {
        let path = self.files.path(abs);
        move |reason| NodeError::ParseHostFile { path, reason }
    }

    /// This process from /proc/self/stat and /proc/self/statm: cpu, resident memory (as both
    /// usage and working set) and page faults.
    fn daemon(&self, boot_time_s: Option<i64>) -> Option<(CgroupSample, Option<i64>)> {
        let st = parse_proc_pid_stat(&self.files.read_optional("/proc/self/stat")?)?;
        let resident_pages: u64 = self
            .files
            .read_optional("/proc/self/statm")?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .unwrap_or(4096);
        let rss = resident_pages.saturating_mul(page);
        let tick_ns = 1_000_000_000 / self.clock_ticks;
        let started = boot_time_s.map(|b| {
            b.saturating_mul(1_000_000_000)
                .saturating_add(i64::try_from(st.start_ticks.saturating_mul(tick_ns)).unwrap_or(0))
        });
        Some((
            CgroupSample {
                cpu_usage_ns: st.cpu_ticks.saturating_mul(tick_ns),
                memory: MemorySample {
                    usage: rss,
                    working_set: rss,
                    rss,
                    available: None,
                    page_faults: st.minor_faults,
                    major_page_faults: st.major_faults,
                },
            },
            started,
        ))
    }

    fn unified(&self) -> bool {
        self.files
            .path("/sys/fs/cgroup/cgroup.controllers")
            .exists()
    }

    /// `pid_max` and the tasks that exist (/proc/loadavg).
    fn rlimit(&self) -> Option<(u64, u64)> {
        self.files
            .read_optional("/proc/sys/kernel/pid_max")
            .and_then(|s| s.trim().parse::<u64>().ok())
            .zip(
                self.files
                    .read_optional("/proc/loadavg")
                    .and_then(|s| super::host::parse_loadavg_tasks(&s)),
            )
    }

    /// The pods' cgroup (`--cgroup-root`).
    fn pods_cgroup(&self) -> Option<CgroupSample> {
        if self.cgroup_root.is_empty() {
            return None;
        }
        self.cgroup(&self.cgroup_root)
    }

    /// Cpu and memory of the cgroup `rel` (a cgroupfs path without the leading `/`): v2 when
    /// the unified hierarchy is mounted at /sys/fs/cgroup, else the v1 cpuacct and memory
    /// hierarchies.
    fn cgroup(&self, rel: &str) -> Option<CgroupSample> {
        let num =
            |abs: String| -> Option<u64> { self.files.read_optional(&abs)?.trim().parse().ok() };
        if self.unified() {
            let dir = format!("/sys/fs/cgroup/{rel}");
            let cpu = parse_flat_keyed(&self.files.read_optional(&format!("{dir}/cpu.stat"))?);
            let usage = num(format!("{dir}/memory.current"))?;
            let stat = parse_flat_keyed(&self.files.read_optional(&format!("{dir}/memory.stat"))?);
            let get = |m: &std::collections::HashMap<String, u64>, k: &str| {
                m.get(k).copied().unwrap_or(0)
            };
            Some(CgroupSample {
                cpu_usage_ns: get(&cpu, "usage_usec").saturating_mul(1000),
                memory: MemorySample {
                    usage,
                    working_set: usage.saturating_sub(get(&stat, "inactive_file")),
                    rss: get(&stat, "anon"),
                    available: None,
                    page_faults: get(&stat, "pgfault"),
                    major_page_faults: get(&stat, "pgmajfault"),
                },
            })
        } else {
            let cpu = num(format!("/sys/fs/cgroup/cpuacct/{rel}/cpuacct.usage"))?;
            let dir = format!("/sys/fs/cgroup/memory/{rel}");
            let usage = num(format!("{dir}/memory.usage_in_bytes"))?;
            let stat = parse_flat_keyed(&self.files.read_optional(&format!("{dir}/memory.stat"))?);
            let get = |k: &str| stat.get(k).copied().unwrap_or(0);
            Some(CgroupSample {
                cpu_usage_ns: cpu,
                memory: MemorySample {
                    usage,
                    working_set: usage.saturating_sub(get("total_inactive_file")),
                    rss: get("total_rss"),
                    available: None,
                    page_faults: get("total_pgfault"),
                    major_page_faults: get("total_pgmajfault"),
                },
            })
        }
    }

    /// The pids in the cgroup `rel` and its children (a pod's containers are its children).
    fn pids(&self, rel: &str) -> Vec<u64> {
        let dir = if self.unified() {
            format!("/sys/fs/cgroup/{rel}")
        } else {
            format!("/sys/fs/cgroup/memory/{rel}")
        };
        let procs = |d: &str| -> Vec<u64> {
            self.files
                .read_optional(&format!("{d}/cgroup.procs"))
                .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
                .unwrap_or_default()
        };
        let mut pids = procs(&dir);
        if let Ok(children) = fs::read_dir(self.files.path(&dir)) {
            for child in children.flatten().filter(|c| c.path().is_dir()) {
                let name = child.file_name().to_string_lossy().into_owned();
                pids.extend(procs(&format!("{dir}/{name}")));
            }
        }
        pids
    }
}

impl HostStats for ProcStats {
    fn pod_cgroup(&self, uid: &str) -> Option<PodCgroupSample> {
        if self.cgroup_root.is_empty() || uid.is_empty() || uid.contains('/') {
            return None;
        }
        let root = &self.cgroup_root;
        // Where `pod::translate::cgroup_parent` put it: by QoS class.
        let (rel, usage) = [
            format!("{root}/pod{uid}"),
            format!("{root}/burstable/pod{uid}"),
            format!("{root}/besteffort/pod{uid}"),
        ]
        .into_iter()
        .find_map(|rel| self.cgroup(&rel).map(|u| (rel, u)))?;
        let pids = self.pids(&rel);
        // The first process that is still there (any process of the pod shares its netns).
        let interfaces = pids
            .iter()
            .find_map(|pid| self.files.read_optional(&format!("/proc/{pid}/net/dev")))
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default();
        Some(PodCgroupSample {
            at_ns: now_ns(),
            usage,
            process_count: pids.len() as u64,
            interfaces,
        })
    }

    fn pressure_sample(&self) -> Result<HostSample, NodeError> {
        let meminfo = "/proc/meminfo";
        let memory =
            parse_node_memory(&self.files.read(meminfo)?).map_err(self.parse_error(meminfo))?;
        Ok(HostSample {
            at_ns: now_ns(),
            memory,
            fs: statvfs(&self.pods_dir),
            rlimit: self.rlimit(),
            ..HostSample::default()
        })
    }

    fn sample(&self) -> Result<HostSample, NodeError> {
        let at_ns = now_ns();
        let stat = "/proc/stat";
        let stat_text = self.files.read(stat)?;
        let ticks = parse_proc_stat_busy_ticks(&stat_text).map_err(self.parse_error(stat))?;
        let boot_time_s = stat_text
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<i64>().ok());
        let meminfo = "/proc/meminfo";
        let vmstat = self
            .files
            .read_optional("/proc/vmstat")
            .map(|t| parse_flat_keyed(&t))
            .unwrap_or_default();
        let mut memory =
            parse_node_memory(&self.files.read(meminfo)?).map_err(self.parse_error(meminfo))?;
        memory.page_faults = vmstat.get("pgfault").copied().unwrap_or(0);
        memory.major_page_faults = vmstat.get("pgmajfault").copied().unwrap_or(0);
        let rlimit = self.rlimit();
        Ok(HostSample {
            at_ns,
            cpu_usage_ns: ticks.saturating_mul(1_000_000_000 / self.clock_ticks),
            boot_time_s,
            memory,
            fs: statvfs(&self.pods_dir),
            interfaces: self
                .files
                .read_optional("/proc/net/dev")
                .map(|t| parse_net_dev(&t))
                .unwrap_or_default(),
            rlimit,
            pods_cgroup: self.pods_cgroup(),
            daemon: self.daemon(boot_time_s),
        })
    }
}

fn now_ns() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    )
    .unwrap_or(i64::MAX)
}

/// One filesystem by statvfs(2); `None` when the call fails.
// The statvfs field types differ between libcs (u32 on some 32-bit targets).
#[allow(clippy::useless_conversion)]
pub fn statvfs(dir: &Path) -> Option<FsSample> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = u64::from(st.fragment_size());
    let blocks = |n: u64| n.saturating_mul(frag);
    let capacity = blocks(u64::from(st.blocks()));
    Some(FsSample {
        capacity,
        available: blocks(u64::from(st.blocks_available())),
        used: capacity.saturating_sub(blocks(u64::from(st.blocks_free()))),
        inodes: u64::from(st.files()),
        inodes_free: u64::from(st.files_free()),
    })
}

/// What /proc/<pid>/stat says about a process's usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PidStat {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub minor_faults: u64,
    pub major_faults: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
}

/// Parses /proc/<pid>/stat (fields counted after the parenthesised command, which may hold
/// spaces and parentheses itself).
pub fn parse_proc_pid_stat(text: &str) -> Option<PidStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // rest starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |field: usize| -> Option<u64> { f.get(field - 3)?.parse().ok() };
    Some(PidStat {
        cpu_ticks: n(14)?.saturating_add(n(15)?),
        minor_faults: n(10)?,
        major_faults: n(12)?,
        start_ticks: n(22)?,
    })
}

/// The non-idle ticks of /proc/stat's aggregate `cpu` line: user + nice + system + irq +
/// softirq + steal (guest time is already inside user and nice).
pub fn parse_proc_stat_busy_ticks(text: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("no aggregate cpu line")?;
    let cols: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|c| {
            c.parse::<u64>()
                .map_err(|_| format!("bad cpu column {c:?}"))
        })
        .collect::<Result<_, _>>()?;
    if cols.len() < 4 {
        return Err(format!("the cpu line has {} columns", cols.len()));
    }
    let col = |i: usize| cols.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal
    Ok(col(0) + col(1) + col(2) + col(5) + col(6) + col(7))
}

/// The node's memory from /proc/meminfo (faults are filled in from /proc/vmstat).
pub fn parse_node_memory(text: &str) -> Result<MemorySample, String> {
    let kb = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let (k, rest) = l.split_once(':')?;
            (k.trim() == name).then(|| {
                rest.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .map(|n| n.saturating_mul(1024))
            })?
        })
    };
    let total = kb("MemTotal").ok_or("no MemTotal line")?;
    let free = kb("MemFree").ok_or("no MemFree line")?;
    let usage = total.saturating_sub(free);
    let working_set = usage.saturating_sub(kb("Inactive(file)").unwrap_or(0));
    Ok(MemorySample {
        usage,
        working_set,
        rss: kb("AnonPages").unwrap_or(0),
        available: Some(total.saturating_sub(working_set)),
        page_faults: 0,
        major_page_faults: 0,
    })
}

/// `key value` lines (cgroup `cpu.stat`/`memory.stat`, /proc/vmstat) into a map; other lines
/// are skipped.
pub fn parse_flat_keyed(text: &str) -> std::collections::HashMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse::<u64>().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// /proc/net/dev: every interface but `lo`, with its receive and transmit bytes and errors.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceSample> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let n: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse::<u64>().unwrap_or(0))
                .collect();
            if n.len() < 11 {
                return None;
            }
            Some(InterfaceSample {
                name: name.to_string(),
                rx_bytes: n[0],
                rx_errors: n[2],
                tx_bytes: n[8],
                tx_errors: n[10],
            })
        })
        .collect()
}

/// `usageNanoCores` from cumulative cpu time, as cAdvisor computes it: the rate between the
/// last kept sample and this one. A sample less than `min_interval_ns` after the kept one
/// does not replace it (two scrapes in a row would give a rate over microseconds); the rate of
/// the last full interval is answered instead.
#[derive(Clone, Debug, Default)]
pub struct CpuRate {
    last: Option<(i64, u64)>,
    rate: Option<u64>,
}

impl CpuRate {
    /// One second, cAdvisor's housekeeping is coarser; a scrape is at least this far apart.
    pub const MIN_INTERVAL_NS: i64 = 1_000_000_000;

    /// Feeds the cumulative usage at `at_ns`; returns nanocores, once there are two samples.
    pub fn update(&mut self, at_ns: i64, usage_ns: u64) -> Option<u64> {
        match self.last {
            None => self.last = Some((at_ns, usage_ns)),
            Some((t0, u0)) if at_ns - t0 >= Self::MIN_INTERVAL_NS => {
                // A counter that went backwards (a cgroup re-created) restarts the series.
                self.rate = (usage_ns >= u0).then(|| {
                    let rate =
                        u128::from(usage_ns - u0) * 1_000_000_000 / u128::from((at_ns - t0) as u64);
                    u64::try_from(rate).unwrap_or(u64::MAX)
                });
                self.last = Some((at_ns, usage_ns));
            }
            Some(_) => {}
        }
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_STAT: &str = "cpu  552526 180781 163184 2809437 4780 0 1324 9342 0 0\n\
                             cpu0 276263 90390 81592 1404718 2390 0 662 4671 0 0\nintr 1 2\nbtime 1700000000\n";

    const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         4000000 kB\n\
                           MemAvailable:   10000000 kB\nActive(file):    3000000 kB\n\
                           Inactive(file):  2000000 kB\nAnonPages:       5000000 kB\n";

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit\n \
         face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
         lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  \
         eth0: 5000 40 2 0 0 0 0 0 7000 50 3 0 0 0 0 0\n";

    #[test]
    fn proc_stat_busy_ticks_leave_idle_and_iowait_out() {
        assert_eq!(
            parse_proc_stat_busy_ticks(PROC_STAT),
            Ok(552526 + 180781 + 163184 + 1324 + 9342)
        );
        assert!(parse_proc_stat_busy_ticks("intr 1\n").is_err());
        assert!(parse_proc_stat_busy_ticks("cpu  1 x 3 4\n").is_err());
    }

    #[test]
    fn node_memory_is_cadvisors_root_cgroup_view() {
        let m = parse_node_memory(MEMINFO).unwrap();
        assert_eq!(m.usage, 12_000_000 * 1024);
        assert_eq!(m.working_set, 10_000_000 * 1024);
        assert_eq!(m.rss, 5_000_000 * 1024);
        assert_eq!(m.available, Some(6_000_000 * 1024));
        assert!(parse_node_memory("MemFree: 1 kB\n").is_err());
    }

    #[test]
    fn net_dev_skips_loopback_and_reads_bytes_and_errors() {
        assert_eq!(
            parse_net_dev(NET_DEV),
            vec![InterfaceSample {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_errors: 2,
                tx_bytes: 7000,
                tx_errors: 3,
            }]
        );
    }

    #[test]
    fn pid_stat_fields_after_a_command_with_spaces_and_parentheses() {
        let text =
            "4242 (virtual (kube) let) S 1 4242 4242 0 -1 4194560 1500 0 3 0 250 50 0 0 20 0 \
                    9 0 123456 1000000 2000 18446744073709551615\n";
        assert_eq!(
            parse_proc_pid_stat(text),
            Some(PidStat {
                cpu_ticks: 300,
                minor_faults: 1500,
                major_faults: 3,
                start_ticks: 123456,
            })
        );
        assert_eq!(parse_proc_pid_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn flat_keyed_files() {
        let m = parse_flat_keyed("usage_usec 1500\nuser_usec 1000\nbad\nx y\n");
        assert_eq!(m.get("usage_usec"), Some(&1500));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn cpu_rate_needs_two_samples_a_second_apart_and_keeps_the_last_rate() {
        let mut r = CpuRate::default();
        assert_eq!(r.update(0, 0), None);
        // Too soon: no rate yet, and the first sample is kept.
        assert_eq!(r.update(500_000_000, 400_000_000), None);
        // 2 s after the first: 1.5 cores.
        assert_eq!(r.update(2_000_000_000, 3_000_000_000), Some(1_500_000_000));
        // Too soon after that: the last rate again.
        assert_eq!(r.update(2_100_000_000, 3_900_000_000), Some(1_500_000_000));
        // 1 s later: half a core.
        assert_eq!(r.update(3_000_000_000, 3_500_000_000), Some(500_000_000));
        // Backwards: no rate until the next interval.
        assert_eq!(r.update(4_000_000_000, 10), None);
        assert_eq!(r.update(5_000_000_000, 250_000_010), Some(250_000_000));
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vkcri-stats-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write(&dir, "proc/stat", PROC_STAT);
        write(&dir, "proc/meminfo", MEMINFO);
        write(&dir, "proc/vmstat", "pgfault 77\npgmajfault 5\n");
        write(&dir, "proc/net/dev", NET_DEV);
        write(&dir, "proc/sys/kernel/pid_max", "4194304\n");
        write(&dir, "proc/loadavg", "0.10 0.20 0.30 2/345 6789\n");
        write(
            &dir,
            "proc/self/stat",
            "7 (virtual-kubelet) S 1 7 7 0 -1 0 1500 0 3 0 250 50 0 0 20 0 9 0 1000 0 0\n",
        );
        write(&dir, "proc/self/statm", "5000 300 100 1 0 400 0\n");
        dir
    }

    #[test]
    fn proc_stats_reads_a_cgroup_v2_tree() {
        let dir = tree("v2");
        write(&dir, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        write(
            &dir,
            "sys/fs/cgroup/vk-cri/cpu.stat",
            "usage_usec 2500\nuser_usec 2000\n",
        );
        write(&dir, "sys/fs/cgroup/vk-cri/memory.current", "9000\n");
        write(
            &dir,
            "sys/fs/cgroup/vk-cri/memory.stat",
            "anon 4000\ninactive_file 1000\npgfault 9\npgmajfault 1\n",
        );
        let s = ProcStats::with_prefix(&dir, &dir, "/vk-cri")
            .sample()
            .unwrap();
        let ticks = 552526 + 180781 + 163184 + 1324 + 9342;
        assert_eq!(
            s.cpu_usage_ns,
            ticks * (1_000_000_000 / ProcStats::new("/", "").clock_ticks)
        );
        assert_eq!(s.memory.working_set, 10_000_000 * 1024);
        assert_eq!((s.memory.page_faults, s.memory.major_page_faults), (77, 5));
        assert_eq!(s.rlimit, Some((4194304, 345)));
        assert_eq!(s.boot_time_s, Some(1_700_000_000));
        let (daemon, started) = s.daemon.unwrap();
        let tick = 1_000_000_000 / ProcStats::new("/", "").clock_ticks;
        assert_eq!(daemon.cpu_usage_ns, 300 * tick);
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .unwrap()
            .unwrap() as u64;
        assert_eq!(daemon.memory.working_set, 300 * page);
        assert_eq!(daemon.memory.rss, 300 * page);
        assert_eq!(
            (daemon.memory.page_faults, daemon.memory.major_page_faults),
            (1500, 3)
        );
        assert_eq!(
            started,
            Some(1_700_000_000 * 1_000_000_000 + 1000 * tick as i64)
        );
        assert_eq!(s.interfaces.len(), 1);
        assert!(s.fs.is_some_and(|f| f.capacity > 0));
        assert_eq!(
            s.pods_cgroup,
            Some(CgroupSample {
                cpu_usage_ns: 2_500_000,
                memory: MemorySample {
                    usage: 9000,
                    working_set: 8000,
                    rss: 4000,
                    available: None,
                    page_faults: 9,
                    major_page_faults: 1,
                },
            })
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn proc_stats_reads_a_cgroup_v1_tree_and_names_a_missing_file() {
        let dir = tree("v1");
        write(
            &dir,
            "sys/fs/cgroup/cpuacct/vk-cri/cpuacct.usage",
            "123456\n",
        );
        write(
            &dir,
            "sys/fs/cgroup/memory/vk-cri/memory.usage_in_bytes",
            "5000\n",
        );
        write(
            &dir,
            "sys/fs/cgroup/memory/vk-cri/memory.stat",
            "cache 10\ntotal_rss 3000\ntotal_inactive_file 500\ntotal_pgfault 4\ntotal_pgmajfault 0\n",
        );
        let s = ProcStats::with_prefix(&dir, &dir, "vk-cri")
            .sample()
            .unwrap();
        let cg = s.pods_cgroup.unwrap();
        assert_eq!(cg.cpu_usage_ns, 123456);
        assert_eq!(
            (cg.memory.usage, cg.memory.working_set, cg.memory.rss),
            (5000, 4500, 3000)
        );
        // A besteffort pod: its cgroup, the pids of its containers and their network.
        let pod = "sys/fs/cgroup/memory/vk-cri/besteffort/podu1";
        write(
            &dir,
            "sys/fs/cgroup/cpuacct/vk-cri/besteffort/podu1/cpuacct.usage",
            "777\n",
        );
        write(&dir, &format!("{pod}/memory.usage_in_bytes"), "100\n");
        write(
            &dir,
            &format!("{pod}/memory.stat"),
            "total_inactive_file 10\n",
        );
        write(&dir, &format!("{pod}/cgroup.procs"), "");
        write(&dir, &format!("{pod}/ctr1/cgroup.procs"), "41\n42\n");
        write(&dir, &format!("{pod}/ctr2/cgroup.procs"), "43\n");
        write(&dir, "proc/41/net/dev", NET_DEV);
        let ps = ProcStats::with_prefix(&dir, &dir, "vk-cri");
        let p = ps.pod_cgroup("u1").unwrap();
        assert_eq!(p.usage.cpu_usage_ns, 777);
        assert_eq!(p.usage.memory.working_set, 90);
        assert_eq!(p.process_count, 3);
        assert_eq!(p.interfaces[0].name, "eth0");
        assert!(p.at_ns > 0);
        assert_eq!(ps.pod_cgroup("u2"), None);
        assert_eq!(ps.pod_cgroup("../u1"), None);
        // No cgroup root: no pods container.
        let s = ProcStats::with_prefix(&dir, &dir, "").sample().unwrap();
        assert_eq!(s.pods_cgroup, None);
        fs::remove_file(dir.join("proc/stat")).unwrap();
        let e = ProcStats::with_prefix(&dir, &dir, "vk-cri")
            .sample()
            .unwrap_err();
        assert!(e.to_string().contains("proc/stat"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}
