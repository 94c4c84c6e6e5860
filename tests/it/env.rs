//! The test environment: where the project's containerd and registries are, read from the
//! variables that contrib/dev-env/up.sh writes to `$BASE/env.sh` (`make test` sources it).
//!
//! Owns failing loudly: a test that needs containerd panics with instructions when the
//! environment is missing, instead of passing vacuously.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Reads a variable the dev environment must have set.
pub fn var(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: these tests need the project's containerd and registries. \
             Run them with `make test` (it starts contrib/dev-env/up.sh), or \
             `source /var/tmp/vk-cri-dev/env.sh` after running up.sh yourself"
        ),
    }
}

/// The CRI socket of the test containerd; panics when it is not there.
pub fn cri_socket() -> PathBuf {
    let p = PathBuf::from(var("VKCRI_CRI_SOCKET"));
    assert!(
        p.exists(),
        "no containerd socket at {}: run contrib/dev-env/up.sh (or `make test`)",
        p.display()
    );
    p
}

/// A fresh, unique scratch directory for one test (removed by [`Scratch`]'s drop).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "vk-cri-it-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A label value unique to this test run and test, so parallel tests never see each other's
/// sandboxes.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A tmpfs of `size_mib` mounted on a fresh scratch directory (root needed), unmounted and
/// removed when dropped: a small filesystem whose fullness a test controls.
pub struct Tmpfs(pub Scratch);

impl Tmpfs {
    pub fn mount(tag: &str, size_mib: u32) -> Tmpfs {
        let dir = Scratch::new(tag);
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size_mib}m"))
            .arg("tmpfs")
            .arg(&dir.0)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount a tmpfs at {} (root needed)",
            dir.0.display()
        );
        Tmpfs(dir)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0 .0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0 .0)
            .status();
    }
}
