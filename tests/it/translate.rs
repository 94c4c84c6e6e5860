//! The translator's configs against the real containerd: the recorded fixture pod `p1` (busybox
//! from the dev registry, runAsUser/runAsGroup, Burstable resources), on the pod network and on
//! the host network, becomes a running container whose identity, hostname, /etc/hosts, DNS,
//! cgroup, OOM score and termination-log mount are what the translation asked for, and whose
//! labels read back from ListPodSandbox/ListContainers parse into the expected infos.
//!
//! Network rule: the pod IP is read and written into /etc/hosts, never connected to. The cluster
//! DNS address is a placeholder that nothing queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodSecurityContext, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use vk_cri::cri::api::{ContainerState, PodSandboxState};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Runtime};
use vk_cri::pod::labels::{self, ContainerInfo, ContainerKind, SandboxInfo};
use vk_cri::pod::translate::{self, ContainerInputs, ImageUser, NodeContext};

use crate::env::{self, Scratch};

const GIB: i64 = 1 << 30;

fn runtime() -> Arc<GrpcRuntime> {
    Arc::new(GrpcRuntime::new(
        &env::cri_socket(),
        Deadlines {
            call: Duration::from_secs(30),
            pull: Duration::from_secs(120),
        },
    ))
}

/// Stops and removes the sandboxes a test created and the cgroups runc made for them, even
/// when the test fails.
struct Cleanup {
    rt: Arc<GrpcRuntime>,
    sandboxes: Vec<String>,
    cgroup_root: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for id in &self.sandboxes {
            let _ = self.rt.stop_pod_sandbox(id);
            let _ = self.rt.remove_pod_sandbox(id);
        }
        // runc removes the containers' cgroups but not the parents it created on the way:
        // remove our root under every hierarchy (cgroup v1 controllers, or the v2 root).
        let rel = self.cgroup_root.trim_start_matches('/');
        let base = Path::new("/sys/fs/cgroup");
        let mut hierarchies = vec![base.to_path_buf()];
        if let Ok(entries) = std::fs::read_dir(base) {
            hierarchies.extend(entries.flatten().map(|e| e.path()));
        }
        for h in hierarchies {
            rmdir_tree(&h.join(rel));
        }
    }
}

fn rmdir_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
        let _ = std::fs::remove_dir(dir);
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

/// The recorded pod p1, made runnable here: the dev registry's busybox, no volumes or secret
/// env, a command that uses `$(VAR)` expansion, a non-root user and Burstable resources.
fn fixture_pod(name: &str, host_network: bool) -> Pod {
    let mut pod: Pod = serde_json::from_str(include_str!(
        "../fixtures/apiserver/00f-admin-create-pod-p1/response-body.json"
    ))
    .expect("fixture pod");
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some("it".into());
    pod.metadata.uid = Some(env::unique("uid"));
    let spec = pod.spec.as_mut().expect("spec");
    spec.host_network = Some(host_network);
    spec.volumes = None;
    spec.security_context = Some(PodSecurityContext {
        run_as_user: Some(1000),
        run_as_group: Some(3000),
        supplemental_groups: Some(vec![4000]),
        run_as_non_root: Some(true),
        ..Default::default()
    });
    let c = &mut spec.containers[0];
    c.image = Some(env::var("VKCRI_BUSYBOX_IMAGE"));
    c.volume_mounts = None;
    c.env = None;
    c.command = Some(vec![
        "sh".into(),
        "-c".into(),
        "echo $(GREETING) from $(POD_NAME) $$0; while true; do sleep 1; done".into(),
    ]);
    let q = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect::<BTreeMap<_, _>>(),
        )
    };
    c.resources = Some(ResourceRequirements {
        requests: q(&[("cpu", "250m"), ("memory", "32Mi")]),
        limits: q(&[("cpu", "500m"), ("memory", "64Mi")]),
        ..Default::default()
    });
    pod.status.as_mut().expect("status").qos_class = Some("Burstable".into());
    pod
}

fn run_fixture_pod(host_network: bool) {
    let rt = runtime();
    let scratch = Scratch::new("translate");
    let node_name = env::unique("vk-it-node");
    let mut cleanup = Cleanup {
        rt: rt.clone(),
        sandboxes: vec![],
        cgroup_root: format!("/{}", env::unique("vk-cri-it")),
    };
    let mut node = NodeContext::new(&node_name);
    node.log_root = scratch.0.join("logs");
    node.cluster_dns = vec!["10.96.0.10".into()];
    node.host_resolv_conf = Some("nameserver 10.0.0.53\nsearch example.test\n".into());
    node.cgroup_root = cleanup.cgroup_root.clone();
    node.memory_capacity = 8 * GIB;
    let pod_name = if host_network { "p1-host" } else { "p1-podnet" };
    let pod = fixture_pod(pod_name, host_network);
    let uid = pod.metadata.uid.clone().unwrap_or_default();

    // The sandbox.
    let sb_cfg = translate::sandbox_config(&pod, &node, 0).expect("sandbox config");
    std::fs::create_dir_all(&sb_cfg.log_directory).expect("pod log dir");
    let sb = rt.run_pod_sandbox(&sb_cfg, "").expect("run sandbox");
    cleanup.sandboxes.push(sb.clone());
    let sb_status = rt.pod_sandbox_status(&sb).expect("sandbox status");
    let pod_ip = sb_status.network.ip.clone();
    assert_eq!(pod_ip.is_empty(), host_network, "pod IP {pod_ip:?}");

    // What the pod worker and the volume manager would provide.
    let hosts_content = translate::etc_hosts(&pod, std::slice::from_ref(&pod_ip), "cluster.local")
        .expect("hosts file");
    let etc_hosts_path = if host_network {
        None
    } else {
        let p = scratch.0.join("etc-hosts");
        std::fs::write(&p, &hosts_content).expect("write hosts");
        Some(p.to_string_lossy().into_owned())
    };
    let termination_log: PathBuf = scratch.0.join("termination-log");
    std::fs::write(&termination_log, "").expect("termination log");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
            .expect("chmod termination log");
    }
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let image_ref = rt
        .pull_image(&image, None, Some(&sb_cfg))
        .expect("pull busybox");
    let image_user = ImageUser::from_image(rt.image_status(&image).expect("image status").as_ref());
    let inputs = ContainerInputs {
        env: vec![
            ("GREETING".into(), "hello".into()),
            ("POD_NAME".into(), pod_name.into()),
        ],
        mounts: vec![],
        etc_hosts_path,
        termination_log_path: Some(termination_log.to_string_lossy().into_owned()),
        image_ref: image_ref.clone(),
        image_user,
    };

    // The container.
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    let cfg = translate::container_config(&pod, &container, ContainerKind::App, 0, &inputs, &node)
        .expect("container config");
    std::fs::create_dir_all(Path::new(&sb_cfg.log_directory).join("c")).expect("container log dir");
    let id = rt
        .create_container(&sb, &cfg, &sb_cfg)
        .expect("create container");
    rt.start_container(&id).expect("start container");

    let exec = |script: &str| -> String {
        let cmd: Vec<String> = vec!["sh".into(), "-c".into(), script.into()];
        let out = rt
            .exec_sync(&id, &cmd, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("exec {script:?}: {e}"));
        assert_eq!(
            out.exit_code,
            0,
            "{script:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // The command ran with $(VAR) expanded and $$ unescaped.
    let log_path = Path::new(&sb_cfg.log_directory).join("c/0.log");
    wait_for(
        "the container's first line",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|s| s.contains(&format!("hello from {pod_name} sh")))
        },
    );

    // runAsUser, runAsGroup and supplementalGroups.
    assert_eq!(exec("id -u"), "1000\n");
    assert_eq!(exec("id -g"), "3000\n");
    assert!(exec("id -G").split_whitespace().any(|g| g == "4000"));
    let status = exec("cat /proc/1/status");
    assert!(status.contains("Uid:\t1000\t1000\t1000\t1000"), "{status}");
    assert!(status.contains("Gid:\t3000\t3000\t3000\t3000"), "{status}");

    // Resources, OOM score and the cgroup parent.
    let res = cfg.linux.resources.clone();
    assert_eq!(res.memory_limit_in_bytes, 64 << 20);
    assert_eq!(
        exec("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
            .trim(),
        (64i64 << 20).to_string()
    );
    assert_eq!(res.oom_score_adj, 1000 - (1000 * (32i64 << 20)) / (8 * GIB));
    assert_eq!(
        exec("cat /proc/1/oom_score_adj").trim(),
        res.oom_score_adj.to_string()
    );
    let cgroups = exec("cat /proc/1/cgroup");
    let parent = format!("{}/burstable/pod{uid}/", cleanup.cgroup_root);
    assert!(cgroups.contains(&parent), "{parent} not in {cgroups}");

    // Name, hosts and DNS.
    let resolv = exec("cat /etc/resolv.conf");
    if host_network {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert_eq!(exec("hostname").trim(), host.trim());
        assert!(resolv.contains("nameserver 10.0.0.53"), "{resolv}");
        assert!(!resolv.contains("ndots"), "{resolv}");
    } else {
        assert_eq!(exec("hostname"), format!("{pod_name}\n"));
        assert_eq!(exec("cat /etc/hosts"), hosts_content);
        assert!(hosts_content.ends_with(&format!("{pod_ip}\t{pod_name}\n")));
        assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
        assert!(
            resolv.contains(
                "search it.svc.cluster.local svc.cluster.local cluster.local example.test"
            ),
            "{resolv}"
        );
        assert!(resolv.contains("options ndots:5"), "{resolv}");
    }

    // The termination-log mount is the file we gave.
    exec("echo bye > /dev/termination-log");
    assert_eq!(
        std::fs::read_to_string(&termination_log).expect("read termination log"),
        "bye\n"
    );

    // The runtime is the source of truth: labels read back into the same infos.
    let sandboxes = rt
        .list_pod_sandboxes(&labels::owner_selector(&node_name))
        .expect("list sandboxes");
    assert_eq!(sandboxes.len(), 1, "{sandboxes:?}");
    let info = SandboxInfo::from_sandbox(&sandboxes[0]).expect("sandbox info");
    assert_eq!(
        info,
        SandboxInfo::from_status(&sb_status).expect("sandbox info from status")
    );
    assert_eq!(
        (
            info.id.as_str(),
            info.pod_uid.as_str(),
            info.pod_name.as_str(),
            info.pod_namespace.as_str(),
            info.attempt,
            info.state
        ),
        (
            sb.as_str(),
            uid.as_str(),
            pod_name,
            "it",
            0,
            PodSandboxState::SANDBOX_READY
        )
    );
    assert_eq!(info.pod_labels, vk_cri::cri::labels([("app", "fixture")]));
    assert_eq!(
        rt.list_pod_sandboxes(&labels::pod_selector(&node_name, &uid))
            .expect("list by pod")
            .len(),
        1
    );
    assert!(rt
        .list_pod_sandboxes(&labels::pod_selector(&env::unique("other-node"), &uid))
        .expect("list for another node")
        .is_empty());

    let containers = rt
        .list_containers(&labels::owner_selector(&node_name), None)
        .expect("list containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    let c_status = rt.container_status(&id).expect("container status");
    let cinfo =
        ContainerInfo::from_runtime(&containers[0], Some(&c_status)).expect("container info");
    let listed =
        ContainerInfo::from_runtime(&containers[0], None).expect("container info from list");
    let expected_hash = labels::container_hash(&container).expect("hash");
    for i in [&cinfo, &listed] {
        assert_eq!(i.id, id);
        assert_eq!(i.sandbox_id, sb);
        assert_eq!(
            (
                i.pod_uid.as_str(),
                i.pod_name.as_str(),
                i.pod_namespace.as_str(),
                i.name.as_str()
            ),
            (uid.as_str(), pod_name, "it", "c")
        );
        assert_eq!(
            (i.kind, i.attempt, i.restart_count),
            (ContainerKind::App, 0, 0)
        );
        assert_eq!(i.hash, expected_hash);
        assert_eq!(i.state, ContainerState::CONTAINER_RUNNING);
        assert_eq!(i.termination_message_path, "/dev/termination-log");
        assert_eq!(i.termination_message_policy, "File");
        assert_eq!(i.termination_grace_period, Some(30));
        assert_eq!(i.ports, container.ports.clone().unwrap_or_default());
        assert_eq!(i.image, image_ref);
    }
    assert!(cinfo.started_at > 0 && cinfo.finished_at == 0, "{cinfo:?}");
    assert_eq!(Path::new(&cinfo.log_path), log_path);
}

#[test]
fn fixture_pod_runs_on_the_pod_network_as_translated() {
    run_fixture_pod(false);
}

#[test]
fn fixture_pod_runs_on_the_host_network_as_translated() {
    run_fixture_pod(true);
}
