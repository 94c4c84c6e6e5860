//! Running the `virtual-kubelet` binary in tests: a daemon with its own node name and its own
//! scratch directories on the dev environment's containerd, killed when dropped.
//!
//! Owns starting and stopping the daemon, reading its log, and looking at what it made in the
//! runtime (by its owner label), so each test reads as the behaviour it proves.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vk_cri::cri::api::{self, ContainerState};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Labels, Runtime};

use base64::Engine;

use crate::env::{self, Scratch};
use crate::support::fake_apiserver::FakeApiServer;

/// The runtime client tests use to look at what the daemon did.
pub fn runtime() -> GrpcRuntime {
    GrpcRuntime::new(
        &env::cri_socket(),
        Deadlines {
            call: Duration::from_secs(30),
            pull: Duration::from_secs(120),
        },
    )
}

/// Waits until `f` returns something, or fails the test naming `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port nothing listens on right now (the kernel's pick), for the kubelet API.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port")
        .port()
}

/// A running daemon.
pub struct Daemon {
    pub node: String,
    pub dir: Scratch,
    child: Option<Child>,
    log: PathBuf,
    /// API server mode: the kubeconfig to pass.
    kubeconfig: Option<PathBuf>,
    /// The kubelet API's port (on 127.0.0.1), free when the daemon was made.
    pub port: u16,
    args: Vec<String>,
    /// `--cri-socket`, when not the dev environment's containerd.
    cri_socket: Option<PathBuf>,
    /// Where the pods, logs and volumes directories go (the scratch directory unless a test
    /// puts them on a filesystem of its own).
    data: Option<PathBuf>,
}

impl Daemon {
    /// A daemon for a new node name with an empty manifest directory, not started yet.
    pub fn new(tag: &str) -> Daemon {
        let dir = Scratch::new(tag);
        std::fs::create_dir_all(dir.0.join("manifests")).expect("manifest dir");
        Daemon {
            node: env::unique(tag),
            log: dir.0.join("daemon.log"),
            dir,
            child: None,
            kubeconfig: None,
            port: free_port(),
            args: Vec::new(),
            cri_socket: None,
            data: None,
        }
    }

    /// A daemon registered as the fake API server's node, with the node's credentials.
    pub fn with_api(fake: &FakeApiServer, tag: &str) -> Daemon {
        let mut d = Daemon::new(tag);
        d.node = fake.node_name().to_string();
        let kubeconfig = fake.node_kubeconfig();
        let path = d.dir.0.join("kubeconfig");
        std::fs::write(&path, kubeconfig).expect("write kubeconfig");
        d.kubeconfig = Some(path);
        d.args = vec!["--node-ip".into(), "127.0.0.1".into()];
        d
    }

    /// A daemon that joins the fake API server with only a bootstrap token (TLS bootstrap):
    /// `--kubeconfig` names a file that does not exist yet, `--cert-dir` is its own.
    pub fn with_bootstrap(fake: &FakeApiServer, tag: &str, token: &str) -> Daemon {
        let mut d = Daemon::new(tag);
        d.node = fake.node_name().to_string();
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let bootstrap = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: kubelet-bootstrap\n  user:\n    token: {token}\ncontexts:\n- name: bootstrap\n  context:\n    cluster: fake\n    user: kubelet-bootstrap\ncurrent-context: bootstrap\n",
            fake.url(),
            b64(&fake.ca_pem()),
        );
        let path = d.dir.0.join("bootstrap-kubelet.conf");
        std::fs::write(&path, bootstrap).expect("write bootstrap kubeconfig");
        d.kubeconfig = Some(d.dir.0.join("kubelet.conf"));
        d.args = vec![
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--bootstrap-kubeconfig".into(),
            path.display().to_string(),
            "--cert-dir".into(),
            d.cert_dir().display().to_string(),
        ];
        d
    }

    /// `--cert-dir` of a bootstrap daemon.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.0.join("pki")
    }

    /// The `--kubeconfig` path, if any.
    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.kubeconfig.as_deref()
    }

    /// Extra command-line arguments.
    pub fn arg(mut self, a: &str) -> Daemon {
        self.args.push(a.to_string());
        self
    }

    /// Keeps its pods, logs and volumes directories under `dir` (a filesystem of the test's).
    pub fn data_dir(mut self, dir: &std::path::Path) -> Daemon {
        self.data = Some(dir.to_path_buf());
        self
    }

    fn data(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| self.dir.0.clone())
    }

    /// Runs on another containerd than the dev environment's.
    pub fn cri_socket(mut self, socket: &std::path::Path) -> Daemon {
        self.cri_socket = Some(socket.to_path_buf());
        self
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.0.join("manifests")
    }

    pub fn log_root(&self) -> PathBuf {
        self.data().join("logs")
    }

    /// Starts (or starts again) the daemon; its output is appended to its log.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log");
        let child = Command::new(env!("CARGO_BIN_EXE_virtual-kubelet"))
            .arg("--nodename")
            .arg(&self.node)
            .arg("--cri-socket")
            .arg(self.cri_socket.clone().unwrap_or_else(env::cri_socket))
            .arg("--pod-manifest-path")
            .arg(self.manifests())
            .arg("--log-dir")
            .arg(self.log_root())
            .arg("--pods-dir")
            .arg(self.data().join("pods"))
            .arg("--volumes-dir")
            .arg(self.data().join("volumes"))
            .args(
                self.kubeconfig
                    .iter()
                    .flat_map(|k| [std::ffi::OsString::from("--kubeconfig"), k.clone().into()]),
            )
            .args(["--address", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .args(&self.args)
            // Daemons run side by side: no shared default healthz port unless a test asks.
            .args(
                (!self.args.iter().any(|a| a == "--healthz-port"))
                    .then_some(["--healthz-port", "0"])
                    .into_iter()
                    .flatten(),
            )
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start virtual-kubelet");
        self.child = Some(child);
    }

    /// Runs the daemon to its exit (for start-up failures); its exit code and log.
    pub fn run_to_exit(&mut self, timeout: Duration) -> (Option<i32>, String) {
        self.start();
        let code = self.wait_exit(timeout, "");
        (code, self.log())
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (SIGTERM, SIGINT) and waits for the daemon to exit; its exit code.
    pub fn stop_with(
        &mut self,
        signal: nix::sys::signal::Signal,
        timeout: Duration,
    ) -> Option<i32> {
        let pid = self.pid().expect("started");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
            .expect("signal the daemon");
        self.wait_exit(timeout, &format!(" of {signal}"))
    }

    /// Waits for the started daemon to exit by itself; its exit code.
    pub fn wait_exit_code(&mut self, timeout: Duration) -> Option<i32> {
        self.wait_exit(timeout, "")
    }

    /// Waits for the started daemon to exit; its exit code. Killed, and the test failed, after
    /// `timeout`.
    fn wait_exit(&mut self, timeout: Duration, after: &str) -> Option<i32> {
        let mut child = self.child.take().expect("started");
        let end = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the daemon did not exit within {timeout:?}{after}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, like a crash: nothing is cleaned up.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits for a line in the daemon's log containing `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        self.wait_log_since(0, needle, timeout);
    }

    /// Waits for a standalone status line of this node's static pod `name`:
    /// `pod default/NAME-NODE (UID): REST...`.
    pub fn wait_pod_log(&self, name: &str, rest: &str, timeout: Duration) {
        let prefix = format!("pod default/{name}-{} (", self.node);
        let matches = |log: &str| {
            log.lines().any(|l| {
                l.find(&prefix).is_some_and(|i| {
                    let after = &l[i + prefix.len()..];
                    after
                        .find("): ")
                        .is_some_and(|j| after[j + 3..].starts_with(rest))
                })
            })
        };
        let end = Instant::now() + timeout;
        while !matches(&self.log()) {
            assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for {prefix}...): {rest:?} in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `needle` in what the daemon logged after the first `offset` bytes of its log
    /// (`log().len()` before a restart: the log spans every run).
    pub fn wait_log_since(&self, offset: usize, needle: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        while !self.log().get(offset..).unwrap_or("").contains(needle) {
            assert!(
                Instant::now() < end,
                "timed out after {timeout:?} waiting for {needle:?} in the daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes a manifest file.
    pub fn put_manifest(&self, file: &str, yaml: &str) {
        let tmp = self.dir.0.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, yaml).expect("write manifest");
        std::fs::rename(&tmp, self.manifests().join(file)).expect("move manifest");
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests().join(file)).expect("remove manifest");
    }

    fn owner(&self) -> Labels {
        [("vk-cri.io/node".to_string(), self.node.clone())]
            .into_iter()
            .collect()
    }

    /// This node's sandboxes.
    pub fn sandboxes(&self) -> Vec<api::PodSandbox> {
        runtime()
            .list_pod_sandboxes(&self.owner())
            .expect("list sandboxes")
    }

    /// This node's containers with the given container name, newest attempt first, with
    /// their statuses.
    pub fn containers(&self, name: &str) -> Vec<api::ContainerStatus> {
        let rt = runtime();
        let mut out: Vec<api::ContainerStatus> = rt
            .list_containers(&self.owner(), None)
            .expect("list containers")
            .into_iter()
            .filter(|c| c.metadata.name == name)
            .filter_map(|c| rt.container_status(&c.id).ok())
            .collect();
        out.sort_by_key(|c| std::cmp::Reverse(c.metadata.attempt));
        out
    }

    /// Waits for a running container with this name; its status.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> api::ContainerStatus {
        wait_for(
            &format!("container {name} running on {}", self.node),
            timeout,
            || {
                self.containers(name)
                    .into_iter()
                    .find(|c| c.state.enum_value_or_default() == ContainerState::CONTAINER_RUNNING)
            },
        )
    }

    /// Waits until this node has no sandbox left.
    pub fn wait_no_sandboxes(&self, timeout: Duration) {
        wait_for(
            &format!("no sandbox left on {}", self.node),
            timeout,
            || self.sandboxes().is_empty().then_some(()),
        );
    }

    /// Removes whatever this node left in the runtime (used on drop, also after failures).
    fn cleanup_runtime(&self) {
        let rt = runtime();
        for sb in rt.list_pod_sandboxes(&self.owner()).unwrap_or_default() {
            let _ = rt.stop_pod_sandbox(&sb.id);
            let _ = rt.remove_pod_sandbox(&sb.id);
        }
    }
}

/// Detaches the tmpfs mounts a killed daemon left under `dir` (pod volumes), deepest first, so
/// the scratch directory can be removed and no mount outlives the test.
fn unmount_under(dir: &std::path::Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| std::path::Path::new(m).starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        self.cleanup_runtime();
        unmount_under(&self.dir.0);
        if std::thread::panicking() {
            eprintln!("--- daemon log of {} ---\n{}", self.node, self.log());
        }
    }
}
