//! The CRI client against the real containerd of the dev environment: version and status,
//! image status and pulls (open and basic-auth registries), sandboxes on the host and the pod
//! network, a container's whole life (log file, exec, stop with a grace period, removal) and
//! label-filtered listing.
//!
//! Network rule: pods on the CNI bridge get 10.88.x addresses; these tests read them, never
//! connect to them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use protobuf::EnumOrUnknown;
use vk_cri::cri::api::{self, ContainerState, NamespaceMode, PodSandboxState};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{Code, GrpcRuntime, Labels, PullAuth, Runtime};

use crate::env::{self, Scratch};

const TEST_LABEL: &str = "vk-cri.test/case";

fn runtime() -> Arc<GrpcRuntime> {
    Arc::new(GrpcRuntime::new(
        &env::cri_socket(),
        Deadlines {
            call: Duration::from_secs(30),
            pull: Duration::from_secs(120),
        },
    ))
}

/// Tests that remove and pull the pulltest image must not interleave: CRI RemoveImage removes
/// every tag of the image id, in both registries' names.
fn image_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Stops and removes the sandboxes a test created, even when it fails.
struct Cleanup {
    rt: Arc<GrpcRuntime>,
    sandboxes: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.sandboxes {
            let _ = self.rt.stop_pod_sandbox(id);
            let _ = self.rt.remove_pod_sandbox(id);
        }
    }
}

pub(crate) fn sandbox_config(
    name: &str,
    case: &str,
    host_network: bool,
    log_dir: &std::path::Path,
) -> api::PodSandboxConfig {
    let uid = env::unique("uid");
    let mode = if host_network {
        NamespaceMode::NODE
    } else {
        NamespaceMode::POD
    };
    let mut labels = Labels::new();
    labels.insert("io.kubernetes.pod.name".into(), name.into());
    labels.insert("io.kubernetes.pod.namespace".into(), "it".into());
    labels.insert("io.kubernetes.pod.uid".into(), uid.clone());
    labels.insert(TEST_LABEL.into(), case.into());
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.into(),
            uid,
            namespace: "it".into(),
            attempt: 0,
            ..Default::default()
        })
        .into(),
        // runc refuses a hostname without a private UTS namespace (host network).
        hostname: if host_network {
            String::new()
        } else {
            name.into()
        },
        log_directory: log_dir.to_string_lossy().into_owned(),
        labels,
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: EnumOrUnknown::new(mode),
                    pid: EnumOrUnknown::new(NamespaceMode::CONTAINER),
                    ipc: EnumOrUnknown::new(NamespaceMode::POD),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

pub(crate) fn container_config(
    name: &str,
    case: &str,
    host_network: bool,
    cmd: &[&str],
) -> api::ContainerConfig {
    let mode = if host_network {
        NamespaceMode::NODE
    } else {
        NamespaceMode::POD
    };
    let mut labels = Labels::new();
    labels.insert("io.kubernetes.container.name".into(), name.into());
    labels.insert(TEST_LABEL.into(), case.into());
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.into(),
            attempt: 0,
            ..Default::default()
        })
        .into(),
        image: Some(api::ImageSpec {
            image: env::var("VKCRI_BUSYBOX_IMAGE"),
            ..Default::default()
        })
        .into(),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels,
        // A container carries its own namespace options; without them its PID namespace
        // would default to the sandbox's whatever the sandbox config says.
        linux: Some(api::LinuxContainerConfig {
            security_context: Some(api::LinuxContainerSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: EnumOrUnknown::new(mode),
                    pid: EnumOrUnknown::new(NamespaceMode::CONTAINER),
                    ipc: EnumOrUnknown::new(NamespaceMode::POD),
                    ..Default::default()
                })
                .into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn version_and_status_report_a_ready_containerd() {
    let rt = runtime();
    let v = rt.version().expect("CRI Version");
    assert_eq!(v.runtime_name, "containerd");
    assert_eq!(v.runtime_api_version, "v1");
    assert!(
        v.node_runtime_version().starts_with("containerd://1."),
        "{v:?}"
    );
    let status = rt.status().expect("CRI Status");
    for wanted in ["RuntimeReady", "NetworkReady"] {
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == wanted)
            .unwrap_or_else(|| panic!("no {wanted} condition in {status:?}"));
        assert!(c.status, "{wanted} is false: {} {}", c.reason, c.message);
    }
}

#[test]
fn absent_image_is_pulled_from_the_local_registry_and_then_present() {
    let _guard = image_lock();
    let rt = runtime();
    let image = env::var("VKCRI_PULLTEST_IMAGE");
    match rt.remove_image(&image) {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => panic!("{e}"),
    }
    assert_eq!(
        rt.image_status(&image).expect("ImageStatus"),
        None,
        "{image} still present"
    );
    let image_ref = rt
        .pull_image(&image, None, None)
        .expect("pull from the open registry");
    let present = rt
        .image_status(&image)
        .expect("ImageStatus")
        .expect("present after pull");
    assert_eq!(present.id, image_ref);
    assert!(
        present.repo_tags.contains(&image),
        "{:?}",
        present.repo_tags
    );
    assert!(rt
        .list_images()
        .expect("ListImages")
        .iter()
        .any(|i| i.id == image_ref));
}

#[test]
fn auth_registry_refuses_anonymous_pulls_and_accepts_credentials() {
    let _guard = image_lock();
    let rt = runtime();
    let image = env::var("VKCRI_AUTH_PULLTEST_IMAGE");
    let err = rt
        .pull_image(&image, None, None)
        .expect_err("anonymous pull must fail");
    let text = err.to_string();
    assert!(text.contains("401"), "error does not name 401: {text}");
    assert!(
        text.contains(&image),
        "error does not name the image: {text}"
    );
    let wrong = PullAuth {
        username: env::var("VKCRI_AUTH_USER"),
        password: "not-the-password".into(),
        ..Default::default()
    };
    assert!(rt
        .pull_image(&image, Some(&wrong), None)
        .expect_err("wrong password")
        .to_string()
        .contains("401"));
    let auth = PullAuth {
        username: env::var("VKCRI_AUTH_USER"),
        password: env::var("VKCRI_AUTH_PASS"),
        ..Default::default()
    };
    let image_ref = rt
        .pull_image(&image, Some(&auth), None)
        .expect("pull with credentials");
    assert_eq!(
        rt.image_status(&image).unwrap().map(|i| i.id),
        Some(image_ref)
    );
}

#[test]
fn missing_image_is_not_found() {
    let rt = runtime();
    let image = format!("{}/vk-cri/does-not-exist:1", env::var("VKCRI_REGISTRY"));
    let err = rt
        .pull_image(&image, None, None)
        .expect_err("pull of a missing image");
    assert_eq!(err.code(), Some(Code::NotFound), "{err}");
}

#[test]
fn host_network_sandbox_has_no_pod_ip_and_pod_network_sandbox_has_one() {
    let rt = runtime();
    let logs = Scratch::new("sandboxes");
    let case = env::unique("sandboxes");
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandboxes: vec![],
    };

    let host = sandbox_config("host-net", &case, true, &logs.0);
    let host_id = rt
        .run_pod_sandbox(&host, "")
        .expect("run host-network sandbox");
    cleanup.sandboxes.push(host_id.clone());
    let st = rt.pod_sandbox_status(&host_id).expect("status");
    assert_eq!(
        st.state.enum_value_or_default(),
        PodSandboxState::SANDBOX_READY
    );
    assert_eq!(st.network.ip, "", "a host-network sandbox has no pod IP");
    assert_eq!(st.metadata.name, "host-net");

    let pod = sandbox_config("pod-net", &case, false, &logs.0);
    let pod_id = rt
        .run_pod_sandbox(&pod, "")
        .expect("run pod-network sandbox");
    cleanup.sandboxes.push(pod_id.clone());
    let st = rt.pod_sandbox_status(&pod_id).expect("status");
    assert_eq!(
        st.state.enum_value_or_default(),
        PodSandboxState::SANDBOX_READY
    );
    let ip: std::net::Ipv4Addr = st
        .network
        .ip
        .parse()
        .unwrap_or_else(|_| panic!("pod IP {:?}", st.network.ip));
    let subnet = std::env::var("VKCRI_CNI_SUBNET").unwrap_or_else(|_| "10.88.0.0/16".into());
    let prefix = subnet.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(
        ip.to_string().starts_with(&format!("{prefix}.")),
        "pod IP {ip} outside {subnet}"
    );

    rt.stop_pod_sandbox(&pod_id).expect("stop");
    let st = rt.pod_sandbox_status(&pod_id).expect("status after stop");
    assert_eq!(
        st.state.enum_value_or_default(),
        PodSandboxState::SANDBOX_NOTREADY
    );
    rt.remove_pod_sandbox(&pod_id).expect("remove");
    let gone = rt
        .pod_sandbox_status(&pod_id)
        .expect_err("status of a removed sandbox");
    assert!(gone.is_not_found(), "{gone}");
}

#[test]
fn container_logs_execs_stops_after_grace_period_and_is_removed() {
    let rt = runtime();
    let logs = Scratch::new("lifecycle");
    let case = env::unique("lifecycle");
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandboxes: vec![],
    };
    let sb_config = sandbox_config("lifecycle", &case, true, &logs.0);
    let sb = rt.run_pod_sandbox(&sb_config, "").expect("run sandbox");
    cleanup.sandboxes.push(sb.clone());

    // PID 1 that ignores SIGTERM, so that only the SIGKILL after the timeout stops it.
    let cfg = container_config(
        "stubborn",
        &case,
        true,
        &[
            "sh",
            "-c",
            "trap '' TERM; echo hello from vk-cri; while true; do sleep 1; done",
        ],
    );
    let id = rt
        .create_container(&sb, &cfg, &sb_config)
        .expect("create container");
    let st = rt.container_status(&id).expect("status");
    assert_eq!(
        st.state.enum_value_or_default(),
        ContainerState::CONTAINER_CREATED
    );
    rt.start_container(&id).expect("start container");
    let st = rt.container_status(&id).expect("status");
    assert_eq!(
        st.state.enum_value_or_default(),
        ContainerState::CONTAINER_RUNNING
    );

    let log_path = logs.0.join("stubborn/0.log");
    assert_eq!(std::path::Path::new(&st.log_path), log_path, "CRI log path");
    let log = wait_for(
        "the container's line in its CRI log",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|s| s.contains("hello from vk-cri"))
        },
    );
    // CRI log format: RFC3339Nano timestamp, stream, P/F tag, message.
    let line = log.lines().next().expect("one line");
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(parts[1..], ["stdout", "F", "hello from vk-cri"], "{line}");
    assert!(
        parts[0].ends_with('Z') && parts[0].contains('T'),
        "timestamp {:?}",
        parts[0]
    );

    let cmd: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = rt
        .exec_sync(&id, &cmd, Duration::from_secs(10))
        .expect("exec sync");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 3);

    let start = Instant::now();
    rt.stop_container(&id, Duration::from_secs(2))
        .expect("stop container");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "stop with a 2 s timeout took {took:?}"
    );
    let st = rt.container_status(&id).expect("status after stop");
    assert_eq!(
        st.state.enum_value_or_default(),
        ContainerState::CONTAINER_EXITED
    );
    assert_eq!(st.exit_code, 137, "killed by SIGKILL: {st:?}");
    assert!(st.finished_at > st.started_at);

    rt.remove_container(&id).expect("remove container");
    let gone = rt
        .container_status(&id)
        .expect_err("status of a removed container");
    assert!(gone.is_not_found(), "{gone}");
    assert!(
        gone.to_string().contains(&id[..13]),
        "error names the container: {gone}"
    );
}

#[test]
fn listing_by_our_labels_returns_only_what_this_test_created() {
    let rt = runtime();
    let logs = Scratch::new("listing");
    let mine = env::unique("listing-mine");
    let other = env::unique("listing-other");
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandboxes: vec![],
    };

    let mut my_ids = Vec::new();
    for n in 0..2 {
        let cfg = sandbox_config(&format!("mine-{n}"), &mine, true, &logs.0);
        let id = rt.run_pod_sandbox(&cfg, "").expect("run");
        cleanup.sandboxes.push(id.clone());
        let c = rt
            .create_container(
                &id,
                &container_config("c", &mine, true, &["sleep", "60"]),
                &cfg,
            )
            .expect("create");
        my_ids.push((id, c));
    }
    let other_cfg = sandbox_config("other", &other, true, &logs.0);
    let other_id = rt.run_pod_sandbox(&other_cfg, "").expect("run");
    cleanup.sandboxes.push(other_id.clone());
    rt.create_container(
        &other_id,
        &container_config("c", &other, true, &["sleep", "60"]),
        &other_cfg,
    )
    .expect("create");

    let sel: Labels = [(TEST_LABEL.to_string(), mine.clone())]
        .into_iter()
        .collect();
    let mut sandboxes: Vec<String> = rt
        .list_pod_sandboxes(&sel)
        .expect("list")
        .into_iter()
        .map(|s| s.id)
        .collect();
    sandboxes.sort();
    let mut want: Vec<String> = my_ids.iter().map(|(s, _)| s.clone()).collect();
    want.sort();
    assert_eq!(sandboxes, want);

    let mut containers: Vec<String> = rt
        .list_containers(&sel, None)
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    containers.sort();
    let mut want: Vec<String> = my_ids.iter().map(|(_, c)| c.clone()).collect();
    want.sort();
    assert_eq!(containers, want);

    let in_first = rt
        .list_containers(&sel, Some(&my_ids[0].0))
        .expect("list by sandbox");
    assert_eq!(in_first.len(), 1);
    assert_eq!(in_first[0].id, my_ids[0].1);
    assert_eq!(in_first[0].metadata.name, "c");
    assert_eq!(in_first[0].labels.get(TEST_LABEL), Some(&mine));

    let nobody: Labels = [(TEST_LABEL.to_string(), env::unique("nobody"))]
        .into_iter()
        .collect();
    assert!(rt.list_pod_sandboxes(&nobody).expect("list").is_empty());
    assert!(rt.list_containers(&nobody, None).expect("list").is_empty());
}

/// Reads share a few lanes (`cri/lanes.rs`); many at once all get answered, a failed read gives
/// its lane back, and a pod sandbox can still be run while reads queue.
#[test]
fn many_reads_at_once_are_all_answered_and_failed_reads_free_their_lane() {
    let rt = runtime();
    let lanes = vk_cri::cri::client::READ_LANES;
    // Failed reads, more than there are lanes: each must give its lane back (a lane kept
    // would make the later ones wait forever; the test gives up after 30 s and says so).
    let (done, finished) = std::sync::mpsc::channel();
    let failing = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            for _ in 0..3 * lanes {
                let err = rt
                    .pod_sandbox_status("no-such-sandbox")
                    .expect_err("no such sandbox");
                assert_eq!(err.code(), Some(Code::NotFound), "{err}");
            }
            let _ = done.send(());
        })
    };
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("failed reads did not give their lanes back");
    failing.join().expect("failed reads");
    let case = env::unique("lanes");
    let selector: Labels = [(TEST_LABEL.to_string(), case.clone())].into();
    let threads: Vec<_> = (0..8 * lanes)
        .map(|_| {
            let (rt, selector) = (rt.clone(), selector.clone());
            std::thread::spawn(move || {
                let version = rt.version().expect("CRI Version");
                let sandboxes = rt.list_pod_sandboxes(&selector).expect("ListPodSandbox");
                (version.runtime_name, sandboxes.len())
            })
        })
        .collect();
    // A write while the reads queue: not held back behind them.
    let logs = Scratch::new("lanes");
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandboxes: Vec::new(),
    };
    let id = rt
        .run_pod_sandbox(&sandbox_config("lanes", &case, true, &logs.0), "")
        .expect("RunPodSandbox while reads queue");
    cleanup.sandboxes.push(id.clone());
    for t in threads {
        let (name, listed) = t.join().expect("a reader panicked");
        assert_eq!(name, "containerd");
        assert!(listed <= 1, "{listed} sandboxes carry this test's label");
    }
    let listed = rt.list_pod_sandboxes(&selector).expect("ListPodSandbox");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
}

#[test]
fn a_runtime_that_is_not_there_fails_fast_and_says_so() {
    let missing = Scratch::new("no-runtime");
    let rt = GrpcRuntime::new(&missing.0.join("containerd.sock"), Deadlines::default());
    let start = Instant::now();
    let err = rt.version().expect_err("no runtime listens there");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(err.code(), Some(Code::Unavailable), "{err}");
    assert!(
        err.to_string()
            .starts_with("failed to get the version of runtime: Unavailable"),
        "{err}"
    );
}
