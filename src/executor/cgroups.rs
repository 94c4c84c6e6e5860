//! Pod cgroups after the pod: `<cgroup-root>/pod<uid>`, `<cgroup-root>/burstable/pod<uid>` or
//! `<cgroup-root>/besteffort/pod<uid>` are made by runc when the sandbox starts (the layout of
//! [`crate::pod::translate::cgroup_parent`]), and left behind by it when the sandbox goes. The kubelet's
//! pod container manager destroys them; so does this, in every hierarchy (cgroup v2, or each
//! v1 controller and named hierarchy).
//!
//! Owns: finding a pod's cgroup directories and removing them, deepest first. Must not remove
//! a cgroup that still has processes: the kernel refuses (EBUSY), and that is reported.

use std::io;
use std::path::{Path, PathBuf};

/// Where the cgroup hierarchies are mounted.
pub const CGROUP_FS: &str = "/sys/fs/cgroup";

#[derive(Debug, thiserror::Error)]
#[error("failed to remove cgroup {path}: {source}")]
pub struct CgroupError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
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
    let err = |path: &Path, source| CgroupError {
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

    #[test]
    fn a_directory_that_cannot_go_is_named() {
        let t = tree(&["memory/vk/podA"]);
        std::fs::write(t.path().join("memory/vk/podA/cgroup.procs"), "42").unwrap();
        let e = remove_pod_cgroups(t.path(), "vk", "A").unwrap_err();
        assert_eq!(e.path, t.path().join("memory/vk/podA"));
        assert!(e.to_string().starts_with("failed to remove cgroup "), "{e}");
    }
}
