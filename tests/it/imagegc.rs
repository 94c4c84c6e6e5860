//! Image garbage collection against a real containerd: a private one, started by the test with
//! the dev environment's configuration but its root on a small tmpfs, so that the image
//! filesystem's usage is the test's to set and removing images cannot touch what the other
//! tests (on the shared containerd) use.
//!
//! Owns [`PrivateContainerd`] (start, the CRI client, clean stop and unmount) and the image GC
//! tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Labels, Runtime};

use crate::cri::{container_config, sandbox_config};
use crate::daemon::{wait_for, Daemon};
use crate::env;
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};

/// A containerd of the test's own: the dev environment's config with its root on a tmpfs of
/// `size_mib`, its state and socket under a directory of its own.
struct PrivateContainerd {
    dir: PathBuf,
    /// Its root, the image filesystem; unmounted after containerd stopped (field order).
    root: env::Tmpfs,
    socket: PathBuf,
    child: Child,
    rt: GrpcRuntime,
}

impl PrivateContainerd {
    fn start(tag: &str, size_mib: u32) -> PrivateContainerd {
        let base = PathBuf::from(env::var("VKCRI_DEV_BASE"));
        let dev_socket = env::cri_socket();
        let dir = base.join("private").join(env::unique(tag));
        std::fs::create_dir_all(&dir).expect("private containerd dir");
        let root_fs = env::Tmpfs::mount(tag, size_mib);
        let root = root_fs.path().to_path_buf();
        let socket = dir.join("containerd.sock");
        let config = std::fs::read_to_string(base.join("etc/containerd/config.toml"))
            .expect("the dev environment's containerd config");
        let dev = dev_socket.display().to_string();
        let config: String = config
            .lines()
            .map(|l| {
                if l.starts_with("root = ") {
                    format!("root = {:?}", root.display().to_string())
                } else if l.starts_with("state = ") {
                    format!("state = {:?}", dir.join("state").display().to_string())
                } else if l.trim() == format!("address = {dev:?}") {
                    format!("  address = {:?}", socket.display().to_string())
                } else if l.trim() == format!("address = \"{dev}.ttrpc\"") {
                    format!("  address = \"{}.ttrpc\"", socket.display())
                } else {
                    l.to_string()
                }
            })
            .map(|l| l + "\n")
            .collect();
        assert!(
            config.contains(&socket.display().to_string()),
            "the dev config names its socket as expected:\n{config}"
        );
        std::fs::write(dir.join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("containerd log");
        // As up.sh starts the dev containerd: every pull through the egress guard but loopback.
        let guard = format!("http://{}", env::var("VKCRI_EGRESS_GUARD"));
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .envs([("HTTP_PROXY", &guard), ("HTTPS_PROXY", &guard)])
            .env("NO_PROXY", "localhost,127.0.0.0/8,::1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let rt = GrpcRuntime::new(
            &socket,
            Deadlines {
                call: Duration::from_secs(30),
                pull: Duration::from_secs(120),
            },
        );
        let mut c = PrivateContainerd {
            dir,
            root: root_fs,
            socket,
            child,
            rt,
        };
        wait_for(
            "the private containerd's CRI",
            Duration::from_secs(30),
            || {
                assert!(
                    c.child.try_wait().ok().flatten().is_none(),
                    "containerd exited: {}",
                    c.log()
                );
                c.rt.status().ok().map(|_| ())
            },
        );
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Bytes used and capacity of its image filesystem (the tmpfs).
    fn root_fs(&self) -> (u64, u64) {
        let st = nix::sys::statvfs::statvfs(self.root.path()).expect("statvfs");
        let frag = st.fragment_size();
        ((st.blocks() - st.blocks_free()) * frag, st.blocks() * frag)
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        if let Ok(sandboxes) = self.rt.list_pod_sandboxes(&Labels::new()) {
            for sb in sandboxes {
                let _ = self.rt.stop_pod_sandbox(&sb.id);
                let _ = self.rt.remove_pod_sandbox(&sb.id);
            }
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Over the high threshold, the unused image goes; the image a container uses (any
/// container on the runtime, not only this node's) and the runtime's sandbox image stay, and
/// the Node gets the kubelet's FreeDiskSpaceFailed when too little could be freed.
#[test]
fn over_the_high_threshold_unused_images_go_and_images_in_use_stay() {
    let ctd = PrivateContainerd::start("imagegc", 64);
    let busybox = env::var("VKCRI_BUSYBOX_IMAGE");
    let pulltest = env::var("VKCRI_PULLTEST_IMAGE");
    let pause = env::var("VKCRI_SANDBOX_IMAGE");
    for image in [&busybox, &pulltest, &pause] {
        ctd.rt.pull_image(image, None, None).expect("pull");
    }
    // A container that is not vk-cri's holds busybox.
    let logs = env::Scratch::new("imagegc-logs");
    let sb_config = sandbox_config("holder", "imagegc", true, &logs.0);
    let sb = ctd.rt.run_pod_sandbox(&sb_config, "").expect("sandbox");
    let c = ctd
        .rt
        .create_container(
            &sb,
            &container_config("holder", "imagegc", true, &["sleep", "3600"]),
            &sb_config,
        )
        .expect("container");
    ctd.rt.start_container(&c).expect("start");
    let id_of = |image: &str| ctd.rt.image_status(image).unwrap().map(|i| i.id);
    let pulltest_size = ctd
        .rt
        .list_images()
        .unwrap()
        .into_iter()
        .find(|i| Some(&i.id) == id_of(&pulltest).as_ref())
        .map(|i| i.size)
        .expect("pulltest listed");
    let (used, capacity) = ctd.root_fs();
    assert!(
        used * 100 / capacity >= 1,
        "the images use at least 1% of the tmpfs: {used}/{capacity}"
    );

    let fake = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("imagegc-node"),
        ..FakeConfig::default()
    });
    // Usage is over 1 %; down to 0 % cannot be reached: everything eligible goes, then the
    // event. The default --pod-infra-container-image is not on this runtime: the sandbox image
    // stays because containerd names it in its config.
    let mut d = Daemon::with_api(&fake, "imagegc")
        .cri_socket(&ctd.socket)
        .arg("--image-gc-high-threshold=1")
        .arg("--image-gc-low-threshold=0");
    d.start();
    let event = wait_for(
        "the FreeDiskSpaceFailed event",
        Duration::from_secs(30),
        || {
            fake.list(Res::Events, Some("default"))
                .into_iter()
                .find(|e| e["reason"] == "FreeDiskSpaceFailed")
        },
    );
    assert_eq!(event["involvedObject"]["kind"], "Node");
    assert_eq!(event["involvedObject"]["name"], fake.node_name());
    assert_eq!(event["type"], "Warning");
    let message = event["message"].as_str().unwrap();
    let wanted: u64 = message
        .strip_prefix("Failed to garbage collect required amount of images. Attempted to free ")
        .and_then(|m| m.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the kubelet's message: {message}"));
    assert!(wanted > pulltest_size && wanted <= capacity, "{message}");
    assert!(
        message.ends_with(&format!(
            " bytes, but only found {pulltest_size} bytes eligible to free."
        )),
        "{message}"
    );
    assert_eq!(id_of(&pulltest), None, "the unused image was removed");
    assert!(id_of(&busybox).is_some(), "the image in use stays");
    assert!(id_of(&pause).is_some(), "the runtime's sandbox image stays");
    let status = ctd.rt.container_status(&c).unwrap();
    assert_eq!(
        status.state.enum_value_or_default(),
        vk_cri::cri::api::ContainerState::CONTAINER_RUNNING,
        "the container holding its image runs on"
    );
    let log = d.log();
    assert!(
        log.contains("removing image") && log.contains("image garbage collection failed once"),
        "{log}"
    );
    drop(d);
}
