//! The host facts the Node reports: who the machine is, and how much memory, disk and PIDs it
//! has left.
//!
//! Owns [`HostFacts`] ([`HostIdentity`], read once at start, and [`HostUsage`], read again before
//! every status report), the [`HostProbe`] trait that gathers them, its real implementation
//! [`ProcHost`] (/proc, /etc, /sys, statvfs(2), uname(2)) and a fixed [`FakeHost`] for tests.
//! The parsers of /proc and /etc texts are pure functions, unit-tested on samples. Deciding what
//! the facts mean (pressure, capacity) is `spec`'s job; this module must not log.
//!
//! Sources, as cAdvisor and the kubelet read them: memory capacity is `MemTotal` of
//! /proc/meminfo; CPU capacity is the number of `processor` entries of /proc/cpuinfo (falling back
//! to the available parallelism); ephemeral-storage is statvfs of the root directory; the PID
//! limit is the smaller of /proc/sys/kernel/pid_max and threads-max and the running tasks are the
//! total of /proc/loadavg's fourth field (the kubelet's `pidlimit.Stats`). `memory.available` is
//! approximated by `MemAvailable` (the kubelet uses capacity minus the root cgroup's working
//! set, which needs cgroup accounting we do not read).

use std::fs;
use std::path::PathBuf;

use super::NodeError;

/// Facts about the machine that do not change while the daemon runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// uname nodename.
    pub hostname: String,
    /// /etc/machine-id (or /var/lib/dbus/machine-id); empty if neither exists.
    pub machine_id: String,
    /// /sys/class/dmi/id/product_uuid if readable (root only), else the machine id.
    pub system_uuid: String,
    /// /proc/sys/kernel/random/boot_id; empty if unreadable.
    pub boot_id: String,
    /// uname release, e.g. `6.1.0-18-amd64`.
    pub kernel_version: String,
    /// /etc/os-release PRETTY_NAME, e.g. `Debian GNU/Linux 12 (bookworm)`; `Linux` without one.
    pub os_image: String,
    /// Go's GOOS: always `linux`.
    pub operating_system: String,
    /// Go's GOARCH for the architecture this binary was built for: `amd64`, `arm64`…
    pub architecture: String,
    /// Logical CPUs.
    pub cpu_count: u32,
}

/// Facts that change: read before every status report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostUsage {
    /// MemTotal, bytes.
    pub memory_total: u64,
    /// MemAvailable (MemFree on kernels before 3.14), bytes.
    pub memory_available: u64,
    /// Size of the filesystem holding the root dir, bytes.
    pub fs_capacity: u64,
    /// Bytes available to unprivileged users on it.
    pub fs_available: u64,
    /// Inodes on it (0 if the filesystem does not count them).
    pub fs_inodes: u64,
    /// Inodes available to unprivileged users.
    pub fs_inodes_free: u64,
    /// min(pid_max, threads-max), if readable.
    pub pid_max: Option<u64>,
    /// Tasks (threads) that exist now, if readable.
    pub pids_running: Option<u64>,
}

/// Everything the Node builders need to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub identity: HostIdentity,
    pub usage: HostUsage,
}

/// Where host facts come from.
pub trait HostProbe {
    /// The facts that do not change; read once at start.
    fn identity(&self) -> Result<HostIdentity, NodeError>;
    /// The facts that change; read before every status report.
    fn usage(&self) -> Result<HostUsage, NodeError>;
}

impl HostFacts {
    /// Reads both halves.
    pub fn gather(probe: &dyn HostProbe) -> Result<HostFacts, NodeError> {
        Ok(HostFacts {
            identity: probe.identity()?,
            usage: probe.usage()?,
        })
    }

    /// Re-reads the usage half; on error the old facts stay as they were.
    pub fn refresh(&mut self, probe: &dyn HostProbe) -> Result<(), NodeError> {
        self.usage = probe.usage()?;
        Ok(())
    }
}

/// Host files (/proc, /sys, /etc) read under a prefix: `/`, or a test directory. Errors name
/// the file. Shared by [`ProcHost`] and the node's usage sampler (`node::stats`).
#[derive(Clone, Debug)]
pub struct HostFiles {
    prefix: PathBuf,
}

impl HostFiles {
    pub fn new(prefix: impl Into<PathBuf>) -> HostFiles {
        HostFiles {
            prefix: prefix.into(),
        }
    }

    /// Where the host's absolute path `abs` is read from.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.prefix.join(abs.trim_start_matches('/'))
    }

    pub fn read(&self, abs: &str) -> Result<String, NodeError> {
        let path = self.path(abs);
        fs::read_to_string(&path).map_err(|source| NodeError::ReadHostFile { path, source })
    }

    pub fn read_optional(&self, abs: &str) -> Option<String> {
        fs::read_to_string(self.path(abs)).ok()
    }
}

/// The real host: files under `/` (or under a test prefix) and statvfs of the root dir.
#[derive(Clone, Debug)]
pub struct ProcHost {
    files: HostFiles,
    root_dir: PathBuf,
}

impl ProcHost {
    /// Reads the live system; `root_dir` is the directory whose filesystem is the node's
    /// ephemeral storage (the volumes/log root).
    pub fn new(root_dir: impl Into<PathBuf>) -> ProcHost {
        ProcHost {
            files: HostFiles::new("/"),
            root_dir: root_dir.into(),
        }
    }

    /// Reads /proc, /etc and /sys files under `prefix` instead of `/` (for tests); statvfs and
    /// uname still ask the kernel.
    pub fn with_prefix(prefix: impl Into<PathBuf>, root_dir: impl Into<PathBuf>) -> ProcHost {
        ProcHost {
            files: HostFiles::new(prefix),
            root_dir: root_dir.into(),
        }
    }
}

impl HostProbe for ProcHost {
    fn identity(&self) -> Result<HostIdentity, NodeError> {
        let uts = nix::sys::utsname::uname().map_err(NodeError::Uname)?;
        let machine_id = self
            .files
            .read_optional("/etc/machine-id")
            .or_else(|| self.files.read_optional("/var/lib/dbus/machine-id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let system_uuid = self
            .files
            .read_optional("/sys/class/dmi/id/product_uuid")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| machine_id.clone());
        let boot_id = self
            .files
            .read_optional("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let os_image = self
            .files
            .read_optional("/etc/os-release")
            .or_else(|| self.files.read_optional("/usr/lib/os-release"))
            .and_then(|s| parse_os_release_pretty_name(&s))
            .unwrap_or_else(|| "Linux".to_string());
        let cpu_count = self
            .files
            .read_optional("/proc/cpuinfo")
            .map(|s| parse_cpuinfo_count(&s))
            .filter(|n| *n > 0)
            .or_else(|| {
                std::thread::available_parallelism()
                    .ok()
                    .and_then(|n| u32::try_from(n.get()).ok())
            })
            .unwrap_or(1);
        Ok(HostIdentity {
            hostname: uts.nodename().to_string_lossy().into_owned(),
            machine_id,
            system_uuid,
            boot_id,
            kernel_version: uts.release().to_string_lossy().into_owned(),
            os_image,
            operating_system: "linux".to_string(),
            architecture: go_arch(std::env::consts::ARCH, cfg!(target_endian = "little"))
                .to_string(),
            cpu_count,
        })
    }

    // fsblkcnt_t and c_ulong are u32 on some targets, u64 on others.
    #[allow(clippy::useless_conversion)]
    fn usage(&self) -> Result<HostUsage, NodeError> {
        let meminfo_path = "/proc/meminfo";
        let mem = parse_meminfo(&self.files.read(meminfo_path)?).map_err(|reason| {
            NodeError::ParseHostFile {
                path: self.files.path(meminfo_path),
                reason,
            }
        })?;
        let st =
            nix::sys::statvfs::statvfs(&self.root_dir).map_err(|source| NodeError::Statvfs {
                path: self.root_dir.clone(),
                source,
            })?;
        let frag = u64::from(st.fragment_size());
        let pid_max = ["/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"]
            .iter()
            .map(|p| {
                self.files
                    .read_optional(p)
                    .and_then(|s| s.trim().parse::<u64>().ok())
            })
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| v.into_iter().min());
        let pids_running = self
            .files
            .read_optional("/proc/loadavg")
            .and_then(|s| parse_loadavg_tasks(&s));
        Ok(HostUsage {
            memory_total: mem.total,
            memory_available: mem.available,
            fs_capacity: u64::from(st.blocks()).saturating_mul(frag),
            fs_available: u64::from(st.blocks_available()).saturating_mul(frag),
            fs_inodes: u64::from(st.files()),
            fs_inodes_free: u64::from(st.files_available()),
            pid_max,
            pids_running,
        })
    }
}

/// A host with fixed facts, for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeHost {
    pub facts: HostFacts,
}

impl FakeHost {
    /// An 8-CPU, 16 GiB, 100 GiB amd64 Debian host with plenty of everything left.
    pub fn new() -> FakeHost {
        FakeHost {
            facts: HostFacts {
                identity: HostIdentity {
                    hostname: "fake-host".to_string(),
                    machine_id: "0123456789abcdef0123456789abcdef".to_string(),
                    system_uuid: "4c4c4544-0042-3510-8052-b4c04f4e3332".to_string(),
                    boot_id: "a9b1c8e2-5d0e-4e55-9f3b-2c1f0e7d6a10".to_string(),
                    kernel_version: "6.1.0-18-amd64".to_string(),
                    os_image: "Debian GNU/Linux 12 (bookworm)".to_string(),
                    operating_system: "linux".to_string(),
                    architecture: "amd64".to_string(),
                    cpu_count: 8,
                },
                usage: HostUsage {
                    memory_total: 16 << 30,
                    memory_available: 12 << 30,
                    fs_capacity: 100 << 30,
                    fs_available: 60 << 30,
                    fs_inodes: 6_553_600,
                    fs_inodes_free: 6_000_000,
                    pid_max: Some(4_194_304),
                    pids_running: Some(812),
                },
            },
        }
    }
}

impl Default for FakeHost {
    fn default() -> Self {
        FakeHost::new()
    }
}

impl HostProbe for FakeHost {
    fn identity(&self) -> Result<HostIdentity, NodeError> {
        Ok(self.facts.identity.clone())
    }

    fn usage(&self) -> Result<HostUsage, NodeError> {
        Ok(self.facts.usage.clone())
    }
}

/// The two figures of /proc/meminfo we use, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

/// Parses /proc/meminfo: `MemTotal` is required; `MemAvailable` falls back to `MemFree`.
pub fn parse_meminfo(text: &str) -> Result<MemInfo, String> {
    let field = |name: &str| -> Result<Option<u64>, String> {
        for line in text.lines() {
            let Some((key, rest)) = line.split_once(':') else {
                continue;
            };
            if key.trim() != name {
                continue;
            }
            let mut parts = rest.split_whitespace();
            let number: u64 = parts
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{name} is not a number"))?;
            let factor = match parts.next() {
                Some("kB") => 1024,
                None => 1,
                Some(unit) => return Err(format!("{name} has unknown unit {unit:?}")),
            };
            return Ok(Some(number.saturating_mul(factor)));
        }
        Ok(None)
    };
    let total = field("MemTotal")?.ok_or("no MemTotal line")?;
    let available = match field("MemAvailable")? {
        Some(v) => v,
        None => field("MemFree")?.ok_or("neither MemAvailable nor MemFree")?,
    };
    Ok(MemInfo { total, available })
}

/// Counts the `processor` entries of /proc/cpuinfo.
pub fn parse_cpuinfo_count(text: &str) -> u32 {
    let n = text
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// PRETTY_NAME of an os-release file, unquoted (`"…"` or `'…'`, with `\` escapes in double
/// quotes, as os-release(5) allows).
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    let raw = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("PRETTY_NAME="))
        .next_back()?;
    let value = if let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if let Some(inner) = raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        inner.to_string()
    } else {
        raw.to_string()
    };
    Some(value).filter(|v| !v.is_empty())
}

/// The task total of /proc/loadavg (`0.10 0.20 0.30 2/812 4242` → 812).
pub fn parse_loadavg_tasks(text: &str) -> Option<u64> {
    let field = text.split_whitespace().nth(3)?;
    let (_, total) = field.split_once('/')?;
    total.parse().ok()
}

/// Go's GOARCH for a Rust `target_arch`; unknown ones pass through.
pub fn go_arch(rust_arch: &str, little_endian: bool) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" if little_endian => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if little_endian => "mips64le",
        "mips64" => "mips64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const MEMINFO: &str = "MemTotal:       16318412 kB\n\
MemFree:         1234567 kB\n\
MemAvailable:   10240000 kB\n\
Buffers:          345678 kB\n\
HugePages_Total:       0\n";

    #[test]
    fn meminfo_total_and_available_in_bytes() {
        assert_eq!(
            parse_meminfo(MEMINFO).unwrap(),
            MemInfo {
                total: 16_318_412 * 1024,
                available: 10_240_000 * 1024
            }
        );
    }

    #[test]
    fn meminfo_without_memavailable_falls_back_to_memfree() {
        let old = "MemTotal: 2048 kB\nMemFree: 1024 kB\n";
        assert_eq!(
            parse_meminfo(old).unwrap(),
            MemInfo {
                total: 2048 * 1024,
                available: 1024 * 1024
            }
        );
    }

    #[test]
    fn meminfo_errors_say_what_is_missing() {
        assert_eq!(
            parse_meminfo("MemFree: 1 kB\n").unwrap_err(),
            "no MemTotal line"
        );
        assert_eq!(
            parse_meminfo("MemTotal: x kB\n").unwrap_err(),
            "MemTotal is not a number"
        );
        assert_eq!(
            parse_meminfo("MemTotal: 1 MB\n").unwrap_err(),
            "MemTotal has unknown unit \"MB\""
        );
        assert_eq!(
            parse_meminfo("MemTotal: 1 kB\n").unwrap_err(),
            "neither MemAvailable nor MemFree"
        );
    }

    #[test]
    fn cpuinfo_counts_processors() {
        let x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: x\n\n\
processor\t: 1\nvendor_id\t: GenuineIntel\n\n";
        assert_eq!(parse_cpuinfo_count(x86), 2);
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\n\nprocessor\t: 2\n\n\
processor\t: 3\n\nHardware\t: BCM2835\n";
        assert_eq!(parse_cpuinfo_count(arm), 4);
        assert_eq!(parse_cpuinfo_count("model name : processor 9000\n"), 0);
    }

    #[test]
    fn os_release_pretty_name_unquoted() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n";
        assert_eq!(
            parse_os_release_pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME='Alpine Linux v3.19'\n").as_deref(),
            Some("Alpine Linux v3.19")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME=Plain\n").as_deref(),
            Some("Plain")
        );
        assert_eq!(
            parse_os_release_pretty_name("PRETTY_NAME=\"Say \\\"hi\\\" \\\\o/\"\n").as_deref(),
            Some("Say \"hi\" \\o/")
        );
        assert_eq!(parse_os_release_pretty_name("NAME=x\n"), None);
        assert_eq!(parse_os_release_pretty_name("PRETTY_NAME=\"\"\n"), None);
    }

    #[test]
    fn loadavg_total_tasks() {
        assert_eq!(
            parse_loadavg_tasks("1.36 3.49 4.53 2/3518 3715089\n"),
            Some(3518)
        );
        assert_eq!(parse_loadavg_tasks("1.36 3.49 4.53\n"), None);
        assert_eq!(parse_loadavg_tasks("1 2 3 x/y 4\n"), None);
    }

    #[test]
    fn go_arch_names() {
        assert_eq!(go_arch("x86_64", true), "amd64");
        assert_eq!(go_arch("aarch64", true), "arm64");
        assert_eq!(go_arch("powerpc64", true), "ppc64le");
        assert_eq!(go_arch("powerpc64", false), "ppc64");
        assert_eq!(go_arch("x86", true), "386");
        assert_eq!(go_arch("s390x", false), "s390x");
        assert_eq!(go_arch("sparc64", false), "sparc64");
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn temp_tree(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vk-cri-host-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn proc_host_reads_a_prepared_tree() {
        let root = temp_tree("full");
        write(&root, "proc/meminfo", MEMINFO);
        write(
            &root,
            "proc/cpuinfo",
            "processor : 0\n\nprocessor : 1\n\nprocessor : 2\n",
        );
        write(
            &root,
            "etc/machine-id",
            "abcdef0123456789abcdef0123456789\n",
        );
        write(
            &root,
            "proc/sys/kernel/random/boot_id",
            "11111111-2222-3333-4444-555555555555\n",
        );
        write(&root, "etc/os-release", "PRETTY_NAME=\"Test OS 1\"\n");
        write(&root, "proc/sys/kernel/pid_max", "4194304\n");
        write(&root, "proc/sys/kernel/threads-max", "126000\n");
        write(&root, "proc/loadavg", "0.00 0.01 0.05 1/345 999\n");
        let host = ProcHost::with_prefix(&root, &root);
        let facts = HostFacts::gather(&host).unwrap();
        let id = &facts.identity;
        assert_eq!(id.machine_id, "abcdef0123456789abcdef0123456789");
        assert_eq!(
            id.system_uuid, id.machine_id,
            "no DMI in the tree: falls back"
        );
        assert_eq!(id.boot_id, "11111111-2222-3333-4444-555555555555");
        assert_eq!(id.os_image, "Test OS 1");
        assert_eq!(id.cpu_count, 3);
        assert_eq!(id.operating_system, "linux");
        assert_eq!(
            id.architecture,
            go_arch(std::env::consts::ARCH, cfg!(target_endian = "little"))
        );
        assert!(!id.kernel_version.is_empty());
        let u = &facts.usage;
        assert_eq!(u.memory_total, 16_318_412 * 1024);
        assert_eq!(u.memory_available, 10_240_000 * 1024);
        assert_eq!(
            u.pid_max,
            Some(126_000),
            "the smaller of pid_max and threads-max"
        );
        assert_eq!(u.pids_running, Some(345));
        assert!(u.fs_capacity > 0 && u.fs_available <= u.fs_capacity);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn proc_host_tolerates_missing_optional_files() {
        let root = temp_tree("sparse");
        write(&root, "proc/meminfo", MEMINFO);
        write(&root, "var/lib/dbus/machine-id", "fedcba\n");
        let host = ProcHost::with_prefix(&root, &root);
        let id = host.identity().unwrap();
        assert_eq!(id.machine_id, "fedcba");
        assert_eq!(id.boot_id, "");
        assert_eq!(id.os_image, "Linux");
        assert!(id.cpu_count >= 1, "falls back to available parallelism");
        let u = host.usage().unwrap();
        assert_eq!((u.pid_max, u.pids_running), (None, None));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn proc_host_errors_name_the_path() {
        let root = temp_tree("empty");
        let host = ProcHost::with_prefix(&root, &root);
        let msg = host.usage().unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!(
                "failed to read {}",
                root.join("proc/meminfo").display()
            )),
            "{msg}"
        );
        write(&root, "proc/meminfo", "nothing\n");
        let msg = host.usage().unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "failed to parse {}: no MemTotal line",
                root.join("proc/meminfo").display()
            )
        );
        write(&root, "proc/meminfo", MEMINFO);
        let missing = root.join("no-such-dir");
        let msg = ProcHost::with_prefix(&root, &missing)
            .usage()
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!("failed to statvfs {}: ", missing.display())),
            "{msg}"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn fake_host_refreshes_usage_only() {
        let mut fake = FakeHost::new();
        let mut facts = HostFacts::gather(&fake).unwrap();
        fake.facts.usage.memory_available = 1;
        fake.facts.identity.hostname = "changed".to_string();
        facts.refresh(&fake).unwrap();
        assert_eq!(facts.usage.memory_available, 1);
        assert_eq!(facts.identity.hostname, "fake-host");
    }
}
