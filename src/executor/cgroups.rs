//! Pod cgroups after the pod: `<cgroup-root>/pod<uid>`, `<cgroup-root>/burstable/pod<uid>` or
//! `<cgroup-root>/besteffort/pod<uid>` are made by runc when the sandbox starts (the layout of
//! [`crate::pod::translate::cgroup_parent`]), and left behind by it when the sandbox goes. The kubelet's
//! pod container manager destroys them; so does this, in every hierarchy (cgroup v2, or each
//! v1 controller and named hierarchy).
//!
//! Before the sandbox starts, the pod's cgroup is made with the kubelet's pod-level settings
//! ([`ensure_pod_cgroup`], its pod container manager's `EnsureExists`): shares from the pod's
//! requests, a cpu quota and a memory limit from its limits, a RuntimeClass's overhead
//! included (`pod::resources::pod_cgroup_config`).
//!
//! Owns: making a pod's cgroup with its settings; finding a pod's cgroup directories and
//! removing them, deepest first. Must not remove a cgroup that still has processes: the kernel
//! refuses (EBUSY), and that is reported.

use std::io;
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to set {path}: {source}")]
    Set {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl CgroupError {
    /// The cgroup directory or file it is about.
    pub fn path(&self) -> &Path {
        match self {
            CgroupError::Remove { path, .. } | CgroupError::Set { path, .. } => path,
        }
    }
}

/// The hierarchies under `fs`: `fs` itself on cgroup v2 (it has `cgroup.controllers`), else
/// each directory in it (v1 controllers, `systemd`, `unified`).
fn hierarchies(fs: &Path) -> Vec<PathBuf> {
    if fs.join("cgroup.controllers").exists() {
        return vec![fs.to_path_buf()];
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fs)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// Removes `dir` and the cgroups under it, deepest first; a missing one is already done.
fn remove_tree(dir: &Path) -> Result<bool, CgroupError> {
    let err = |path: &Path, source| CgroupError::Remove {
        path: path.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err(dir, e)),
    }
}

/// Removes the cgroups of pod `uid` under `cgroup_root` from every hierarchy in `fs` (every QoS
/// class is tried: an orphan's class is not known). The number of directories removed.
pub fn remove_pod_cgroups(fs: &Path, cgroup_root: &str, uid: &str) -> Result<usize, CgroupError> {
    let root = cgroup_root.trim_matches('/');
    if root.is_empty() || uid.is_empty() || uid.contains('/') {
        return Ok(0);
    }
    let mut removed = 0;
    for h in hierarchies(fs) {
        for qos in ["", "burstable/", "besteffort/"] {
            if remove_tree(&h.join(format!("{root}/{qos}pod{uid}")))? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// cgroup v1 shares as a cgroup v2 `cpu.weight` (runc's `ConvertCPUSharesToCgroupV2Value`).
pub fn shares_to_weight(shares: i64) -> i64 {
    if shares <= 0 {
        return 0;
    }
    1 + (shares - 2) * 9999 / 262_142
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    std::fs::write(&path, value).map_err(|source| CgroupError::Set { path, source })
}

fn mkdir(path: PathBuf) -> Result<PathBuf, CgroupError> {
    std::fs::create_dir_all(&path)
        .map(|()| path.clone())
        .map_err(|source| CgroupError::Set { path, source })
}

/// Makes the pod's cgroup `parent` (its sandbox's cgroup parent, e.g.
/// `/vk-cri/burstable/pod<uid>`) in `fs` with `config`, as the kubelet's cgroupfs pod container
/// manager does before the sandbox starts. cgroup v2: the cpu and memory controllers are
/// enabled on the way down, then `cpu.weight`, `cpu.max` and `memory.max` are written; v1: the
/// `cpu` and `memory` hierarchies' directories with `cpu.shares`, `cpu.cfs_period_us`,
/// `cpu.cfs_quota_us` and `memory.limit_in_bytes`. An empty parent (the runtime's choice) is
/// left alone.
pub fn ensure_pod_cgroup(
    fs: &Path,
    parent: &str,
    config: &crate::pod::resources::PodCgroupConfig,
) -> Result<(), CgroupError> {
    let rel = parent.trim_matches('/');
    if rel.is_empty() || rel.split('/').any(|p| p == ".." || p.is_empty()) {
        return Ok(());
    }
    let memory = config.memory_limit.filter(|m| *m > 0);
    if fs.join("cgroup.controllers").exists() {
        // Every level above the pod's must hand cpu and memory down to its children.
        let mut level = fs.to_path_buf();
        for part in rel.split('/') {
            let have =
                std::fs::read_to_string(level.join("cgroup.controllers")).unwrap_or_default();
            let want: Vec<String> = ["cpu", "memory"]
                .iter()
                .filter(|c| have.split_whitespace().any(|h| h == **c))
                .map(|c| format!("+{c}"))
                .collect();
            if !want.is_empty() {
                write(level.join("cgroup.subtree_control"), &want.join(" "))?;
            }
            level = mkdir(level.join(part))?;
        }
        write(
            level.join("cpu.weight"),
            &shares_to_weight(config.cpu_shares).to_string(),
        )?;
        if config.cpu_quota.is_some() || config.cpu_period.is_some() {
            let quota = config
                .cpu_quota
                .filter(|q| *q > 0)
                .map_or_else(|| "max".to_string(), |q| q.to_string());
            let period = config
                .cpu_period
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            write(level.join("cpu.max"), &format!("{quota}{period}"))?;
        }
        if let Some(m) = memory {
            write(level.join("memory.max"), &m.to_string())?;
        }
        return Ok(());
    }
    let cpu = mkdir(fs.join("cpu").join(rel))?;
    write(cpu.join("cpu.shares"), &config.cpu_shares.to_string())?;
    if let Some(p) = config.cpu_period {
        write(cpu.join("cpu.cfs_period_us"), &p.to_string())?;
    }
    if let Some(q) = config.cpu_quota.filter(|q| *q != 0) {
        write(cpu.join("cpu.cfs_quota_us"), &q.to_string())?;
    }
    let mem = mkdir(fs.join("memory").join(rel))?;
    if let Some(m) = memory {
        write(mem.join("memory.limit_in_bytes"), &m.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory tree standing in for /sys/fs/cgroup, removed after the test.
    struct Tree(PathBuf);

    impl Tree {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tree(paths: &[&str]) -> Tree {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let t =
            Tree(std::env::temp_dir().join(format!("vk-cri-cgroups-{}-{n}", std::process::id())));
        std::fs::create_dir_all(t.path()).unwrap();
        for p in paths {
            std::fs::create_dir_all(t.path().join(p)).unwrap();
        }
        t
    }

    #[test]
    fn a_pods_cgroups_go_from_every_v1_hierarchy_and_no_other_pods() {
        let t = tree(&[
            "memory/vk/burstable/podA/ctr1",
            "memory/vk/burstable/podB",
            "cpu/vk/burstable/podA",
            "pids/vk/podA",
            "systemd/other/podA",
        ]);
        assert_eq!(remove_pod_cgroups(t.path(), "/vk", "A").unwrap(), 3);
        for gone in [
            "memory/vk/burstable/podA",
            "cpu/vk/burstable/podA",
            "pids/vk/podA",
        ] {
            assert!(!t.path().join(gone).exists(), "{gone}");
        }
        for kept in [
            "memory/vk/burstable/podB",
            "systemd/other/podA",
            "memory/vk/burstable",
        ] {
            assert!(t.path().join(kept).exists(), "{kept}");
        }
        assert_eq!(remove_pod_cgroups(t.path(), "/vk", "A").unwrap(), 0);
    }

    #[test]
    fn cgroup_v2_is_one_hierarchy() {
        let t = tree(&["vk/besteffort/podA", "memory/vk/besteffort/podA"]);
        std::fs::write(t.path().join("cgroup.controllers"), "cpu memory").unwrap();
        assert_eq!(remove_pod_cgroups(t.path(), "vk", "A").unwrap(), 1);
        assert!(!t.path().join("vk/besteffort/podA").exists());
        assert!(t.path().join("memory/vk/besteffort/podA").exists());
    }

    #[test]
    fn nothing_is_removed_without_a_root_or_with_a_strange_uid() {
        let t = tree(&["memory/podA", "memory/vk/x/podA"]);
        assert_eq!(remove_pod_cgroups(t.path(), "", "A").unwrap(), 0);
        assert_eq!(remove_pod_cgroups(t.path(), "/vk", "../x/podA").unwrap(), 0);
        assert!(t.path().join("memory/podA").exists());
        assert!(t.path().join("memory/vk/x/podA").exists());
    }

    fn read(t: &Tree, rel: &str) -> String {
        std::fs::read_to_string(t.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    #[test]
    fn a_pod_cgroup_gets_the_kubelets_settings_on_v1_and_v2() {
        use crate::pod::resources::PodCgroupConfig;
        let guaranteed = PodCgroupConfig {
            cpu_shares: 614,
            cpu_quota: Some(60_000),
            cpu_period: Some(100_000),
            memory_limit: Some(80 << 20),
        };
        let t = tree(&["cpu", "memory"]);
        ensure_pod_cgroup(t.path(), "/vk/podA", &guaranteed).unwrap();
        assert_eq!(read(&t, "cpu/vk/podA/cpu.shares"), "614");
        assert_eq!(read(&t, "cpu/vk/podA/cpu.cfs_period_us"), "100000");
        assert_eq!(read(&t, "cpu/vk/podA/cpu.cfs_quota_us"), "60000");
        assert_eq!(read(&t, "memory/vk/podA/memory.limit_in_bytes"), "83886080");

        let t = tree(&[]);
        std::fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let burstable = PodCgroupConfig {
            cpu_shares: 102,
            cpu_quota: None,
            cpu_period: None,
            memory_limit: None,
        };
        ensure_pod_cgroup(t.path(), "/vk/burstable/podB", &burstable).unwrap();
        assert_eq!(read(&t, "cgroup.subtree_control"), "+cpu +memory");
        assert_eq!(read(&t, "vk/burstable/podB/cpu.weight"), "4");
        assert!(!t.path().join("vk/burstable/podB/cpu.max").exists());
        assert!(!t.path().join("vk/burstable/podB/memory.max").exists());
        ensure_pod_cgroup(t.path(), "/vk/podA", &guaranteed).unwrap();
        assert_eq!(read(&t, "vk/podA/cpu.max"), "60000 100000");
        assert_eq!(read(&t, "vk/podA/memory.max"), "83886080");
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);

        // The runtime's choice, or a path that leaves the hierarchy: nothing is made.
        ensure_pod_cgroup(t.path(), "", &guaranteed).unwrap();
        ensure_pod_cgroup(t.path(), "/vk/../../x", &guaranteed).unwrap();
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn a_directory_that_cannot_go_is_named() {
        let t = tree(&["memory/vk/podA"]);
        std::fs::write(t.path().join("memory/vk/podA/cgroup.procs"), "42").unwrap();
        let e = remove_pod_cgroups(t.path(), "vk", "A").unwrap_err();
        assert_eq!(e.path(), t.path().join("memory/vk/podA"));
        assert!(e.to_string().starts_with("failed to remove cgroup "), "{e}");
    }
}
