//! The daemon binary as a child process, for the bench and the chaos harness: started as the
//! fake API server's node with every path under one scratch directory, its output appended to
//! `daemon.log` there, killed with `SIGKILL` (nothing cleaned up, its pods keep running) and
//! started again on the same directories.
//!
//! Owns the flag list both harnesses start the daemon with; each adds its own flags.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::fake_apiserver::FakeApiServer;

pub struct Daemon {
    bin: PathBuf,
    pub node: String,
    pub dir: PathBuf,
    kubeconfig: PathBuf,
    pub log: PathBuf,
    /// The daemon's `RUST_LOG`.
    pub log_level: String,
    /// Flags added after the common ones.
    pub extra: Vec<OsString>,
    /// Where the running child's pid is published (0 when none), for a cleanup hook.
    pub pid_slot: Option<&'static AtomicU32>,
    child: Option<Child>,
}

impl Daemon {
    /// A daemon for `fake`'s node, its kubeconfig written into `dir`.
    pub fn new(bin: &Path, fake: &FakeApiServer, dir: &Path) -> Result<Daemon, String> {
        Daemon::for_node(bin, fake.node_name(), &fake.node_kubeconfig(), dir)
    }

    /// A daemon for any `node` with this `kubeconfig` (YAML), written into `dir`.
    pub fn for_node(
        bin: &Path,
        node: &str,
        kubeconfig: &str,
        dir: &Path,
    ) -> Result<Daemon, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join("kubeconfig");
        std::fs::write(&path, kubeconfig).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Daemon {
            bin: bin.to_path_buf(),
            node: node.to_string(),
            dir: dir.to_path_buf(),
            kubeconfig: path,
            log: dir.join("daemon.log"),
            log_level: "info".to_string(),
            extra: Vec::new(),
            pid_slot: None,
            child: None,
        })
    }

    /// Adds flags to every start.
    pub fn args<I, S>(&mut self, args: I) -> &mut Daemon
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the daemon on `socket`, the kubelet API on a free loopback port.
    pub fn start(&mut self, socket: &Path) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let child = Command::new(&self.bin)
            .args(["--nodename", &self.node])
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cri-socket")
            .arg(socket)
            .arg("--log-dir")
            .arg(self.dir.join("logs"))
            .arg("--pods-dir")
            .arg(self.dir.join("pods"))
            .arg("--volumes-dir")
            .arg(self.dir.join("volumes"))
            .args(["--node-ip", "127.0.0.1", "--address", "127.0.0.1"])
            .args(["--healthz-port", "0", "--port", &port.to_string()])
            .args(&self.extra)
            .env("RUST_LOG", &self.log_level)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| format!("daemon log: {e}"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("failed to start {}: {e}", self.bin.display()))?;
        if let Some(slot) = self.pid_slot {
            slot.store(child.id(), Ordering::SeqCst);
        }
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Result<u32, String> {
        self.child
            .as_ref()
            .map(Child::id)
            .ok_or_else(|| "the daemon is not running".to_string())
    }

    /// Fails when the daemon exited by itself.
    pub fn check_alive(&mut self) -> Result<(), String> {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(status)) = c.try_wait() {
                return Err(format!("the daemon exited: {status}\n{}", self.log_tail()));
            }
        }
        Ok(())
    }

    /// SIGKILL: nothing is cleaned up, its pods keep running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(slot) = self.pid_slot {
            slot.store(0, Ordering::SeqCst);
        }
    }

    /// The daemon's threads now (`/proc/<pid>/task`).
    pub fn threads(&self) -> Result<usize, String> {
        let pid = self.pid()?;
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(Iterator::count)
            .map_err(|e| format!("threads of {pid}: {e}"))
    }

    /// The daemon's threads by name (`/proc/<pid>/task/*/comm`), with how many bear each.
    pub fn thread_names(&self) -> Result<std::collections::BTreeMap<String, usize>, String> {
        let pid = self.pid()?;
        let dir = format!("/proc/{pid}/task");
        let mut names = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(&dir)
            .map_err(|e| format!("{dir}: {e}"))?
            .flatten()
        {
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            *names.entry(comm.trim().to_string()).or_insert(0) += 1;
        }
        Ok(names)
    }

    /// The log's last 40 lines.
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
