//! Pod volumes and environments against the fake API server and the real containerd: every
//! volume type's files read inside the container with their names, contents and modes (exec
//! `cat`/`stat`), secrets and tokens on tmpfs, a token bound to the pod, ConfigMap and Secret
//! changes reaching a running container, subPath escapes and unsupported volume types failing
//! only their pod, env from every source, and the volume directory gone with the pod.

use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use vk_cri::cri::Runtime;

use crate::daemon::{runtime, wait_for, Daemon};
use crate::env;
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};

fn fake() -> FakeApiServer {
    FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("vol-node"),
        // The ServiceAccount admission plugin's kube-api-access volume, as on a real cluster.
        inject_service_account_volume: true,
        bookmark_interval: Duration::from_secs(2),
        ..FakeConfig::default()
    })
}

const SLEEP: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

fn pod(name: &str, node: &str, container: Value, volumes: Value) -> Value {
    let mut c = container;
    c["image"] = json!(env::var("VKCRI_BUSYBOX_IMAGE"));
    c["command"] = json!(["sh", "-c", SLEEP]);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name, "tier": "web"}},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": 2,
            "tolerations": [{"operator": "Exists"}],
            "containers": [c],
            "volumes": volumes
        }
    })
}

/// Runs `script` in the running container named `name`; its stdout (the exit code must be 0).
fn sh(d: &Daemon, name: &str, script: &str) -> String {
    let id = d.wait_running(name, Duration::from_secs(60)).id;
    let cmd: Vec<String> = ["sh", "-c", script].iter().map(|s| s.to_string()).collect();
    let out = runtime()
        .exec_sync(&id, &cmd, Duration::from_secs(20))
        .expect("exec");
    assert_eq!(
        out.exit_code,
        0,
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pod_field(f: &FakeApiServer, name: &str, path: &str) -> Value {
    f.get_pod("default", name)
        .and_then(|p| p.pointer(path).cloned())
        .unwrap_or(Value::Null)
}

fn events_of(f: &FakeApiServer, pod: &str) -> Vec<Value> {
    f.list(Res::Events, Some("default"))
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .collect()
}

/// The container's waiting state once it has `reason`.
fn wait_waiting(f: &FakeApiServer, pod: &str, reason: &str) -> Value {
    wait_for(
        &format!("{pod} waiting with {reason}"),
        Duration::from_secs(60),
        || {
            let w = pod_field(f, pod, "/status/containerStatuses/0/state/waiting");
            (w["reason"] == reason).then_some(w)
        },
    )
}

/// The tmpfs mounts the host has under `dir`.
fn host_tmpfs_under(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&*dir.to_string_lossy()))
        .collect()
}

#[test]
fn every_volume_type_is_read_in_the_container_with_its_names_contents_and_modes_then_goes_with_the_pod(
) {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-all");
    d.start();
    let node = f.node_name().to_string();
    f.put_configmap(
        "default",
        "cfg",
        &[("app.conf", "mode=fast\n"), ("other", "x")],
    );
    f.put_secret("default", "creds", &[("user", "admin"), ("pass", "s3cret")]);
    let host_dir = d.dir.0.join("host-data");
    let created = f.create_pod(pod(
        "all",
        &node,
        json!({
            "name": "all",
            "resources": {"limits": {"cpu": "250m", "memory": "64Mi"}},
            "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "cfg-items", "mountPath": "/etc/items"},
                {"name": "creds", "mountPath": "/etc/creds"},
                {"name": "info", "mountPath": "/etc/info"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "mem", "mountPath": "/mem"},
                {"name": "host", "mountPath": "/host"},
                {"name": "cfg", "mountPath": "/single.conf", "subPath": "app.conf"},
                {"name": "scratch", "mountPath": "/sub", "subPathExpr": "$(POD_NAME)/dir"}
            ],
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        }),
        json!([
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "cfg-items", "configMap": {"name": "cfg", "defaultMode": 0o640,
                "items": [{"key": "app.conf", "path": "nested/app.conf", "mode": 0o600}]}},
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "cpu", "resourceFieldRef": {"containerName": "all", "resource": "limits.cpu", "divisor": "1m"}},
                {"path": "mem", "resourceFieldRef": {"containerName": "all", "resource": "limits.memory", "divisor": "1Mi"}}
            ]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": "host", "hostPath": {"path": host_dir.to_string_lossy(), "type": "DirectoryOrCreate"}}
        ]),
    ));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();

    // configMap: every key, 0644 by default, through the ..data links.
    assert_eq!(sh(&d, "all", "cat /etc/cfg/app.conf"), "mode=fast\n");
    assert_eq!(sh(&d, "all", "cat /etc/cfg/other"), "x");
    assert_eq!(sh(&d, "all", "stat -L -c %a /etc/cfg/app.conf"), "644\n");
    assert_eq!(
        sh(
            &d,
            "all",
            "readlink /etc/cfg/app.conf; readlink /etc/cfg/..data | cut -c1-3"
        ),
        "..data/app.conf\n..2\n"
    );
    // items: only the chosen key, at its path, with its own mode.
    assert_eq!(sh(&d, "all", "ls /etc/items"), "nested\n");
    assert_eq!(
        sh(&d, "all", "cat /etc/items/nested/app.conf"),
        "mode=fast\n"
    );
    assert_eq!(
        sh(&d, "all", "stat -L -c %a /etc/items/nested/app.conf"),
        "600\n"
    );
    // secret: decoded, defaultMode exactly, on a tmpfs, read-only.
    assert_eq!(
        sh(&d, "all", "cat /etc/creds/user /etc/creds/pass"),
        "admins3cret"
    );
    assert_eq!(sh(&d, "all", "stat -L -c %a /etc/creds/pass"), "400\n");
    let mounts = sh(&d, "all", "cat /proc/mounts");
    let mount_of = |path: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(path))
            .unwrap_or_else(|| panic!("{path} not mounted:\n{mounts}"))
            .to_string()
    };
    assert!(mount_of("/etc/creds").starts_with("tmpfs "), "{mounts}");
    assert!(mount_of("/etc/creds").contains(" ro,"), "{mounts}");
    assert!(
        !mount_of("/etc/cfg").starts_with("tmpfs "),
        "configMaps on disk: {mounts}"
    );
    // Memory emptyDir: a tmpfs of its sizeLimit, writable.
    let mem = mount_of("/mem");
    assert!(
        mem.starts_with("tmpfs ") && mem.contains("size=8192k"),
        "{mem}"
    );
    sh(&d, "all", "echo hi > /mem/f && echo hi > /scratch/f");
    // downwardAPI.
    assert_eq!(sh(&d, "all", "cat /etc/info/name"), "all");
    assert_eq!(
        sh(&d, "all", "cat /etc/info/labels"),
        "app=\"all\"\ntier=\"web\""
    );
    assert_eq!(sh(&d, "all", "cat /etc/info/cpu /etc/info/mem"), "25064");
    // kube-api-access: a token bound to this pod, the cluster CA and the namespace.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(
        sh(&d, "all", &format!("ls {sa}")),
        "ca.crt\nnamespace\ntoken\n"
    );
    assert_eq!(sh(&d, "all", &format!("cat {sa}/namespace")), "default");
    assert!(mount_of(sa).starts_with("tmpfs "), "{mounts}");
    let token = sh(&d, "all", &format!("cat {sa}/token"));
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').nth(1).expect("a JWT"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["kubernetes.io"]["pod"]["uid"],
        uid.as_str(),
        "{claims}"
    );
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    // hostPath created as a directory, shared with the host.
    sh(&d, "all", "echo from-pod > /host/f");
    assert_eq!(
        std::fs::read_to_string(host_dir.join("f")).unwrap(),
        "from-pod\n"
    );
    // subPath: one file of the configMap; subPathExpr made as a directory in the emptyDir.
    assert_eq!(sh(&d, "all", "cat /single.conf"), "mode=fast\n");
    sh(&d, "all", "echo deep > /sub/f");
    assert_eq!(sh(&d, "all", "cat /scratch/all/dir/f"), "deep\n");

    // Only referenced objects were read, and all as the node.
    let reads: Vec<String> = f
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/configmaps/") || r.path.contains("/secrets/"))
        .map(|r| r.path)
        .collect();
    assert!(
        reads.iter().all(|p| p.ends_with("/configmaps/cfg")
            || p.ends_with("/configmaps/kube-root-ca.crt")
            || p.ends_with("/secrets/creds")),
        "{reads:?}"
    );

    // Deleted: the pod's volume directory and its tmpfs mounts are gone.
    let vol_dir = d.dir.0.join("volumes").join(&uid);
    assert!(vol_dir.is_dir());
    assert!(host_tmpfs_under(&vol_dir).len() >= 4);
    f.delete_pod("default", "all", Some(2))
        .expect("pod existed");
    wait_for(
        "the pod's volumes to be removed",
        Duration::from_secs(60),
        || (!vol_dir.exists()).then_some(()),
    );
    assert!(host_tmpfs_under(&vol_dir).is_empty());
    assert!(host_dir.join("f").exists(), "hostPath contents stay");
}

#[test]
fn configmap_and_secret_changes_reach_the_running_container_within_60s() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-live");
    d.start();
    let node = f.node_name().to_string();
    f.put_configmap("default", "live-cfg", &[("k", "one")]);
    f.put_secret("default", "live-sec", &[("s", "first")]);
    f.create_pod(pod(
        "live",
        &node,
        json!({"name": "live", "volumeMounts": [
            {"name": "c", "mountPath": "/c"},
            {"name": "s", "mountPath": "/s"},
            {"name": "p", "mountPath": "/p"},
            {"name": "c", "mountPath": "/pinned", "subPath": "k"}
        ]}),
        json!([
            {"name": "c", "configMap": {"name": "live-cfg"}},
            {"name": "s", "secret": {"secretName": "live-sec"}},
            {"name": "p", "projected": {"sources": [
                {"configMap": {"name": "live-cfg"}}, {"secret": {"name": "live-sec"}}]}}
        ]),
    ));
    assert_eq!(
        sh(&d, "live", "cat /c/k /s/s /p/k /p/s"),
        "onefirstonefirst"
    );
    f.put_configmap("default", "live-cfg", &[("k", "two"), ("added", "new")]);
    f.put_secret("default", "live-sec", &[("s", "second")]);
    wait_for(
        "the changes in the container",
        Duration::from_secs(60),
        || {
            (sh(
                &d,
                "live",
                "cat /c/k /c/added /s/s /p/k /p/s 2>/dev/null; true",
            ) == "twonewsecondtwosecond")
                .then_some(())
        },
    );
    // subPath mounts keep what they mounted, as in the kubelet.
    assert_eq!(sh(&d, "live", "cat /pinned"), "one");
    // A key that goes away goes from the volume too.
    f.put_configmap("default", "live-cfg", &[("added", "new")]);
    wait_for("k removed", Duration::from_secs(60), || {
        (sh(&d, "live", "ls /c") == "added\n").then_some(())
    });
}

#[test]
fn subpath_escapes_and_unsupported_volumes_fail_only_their_pod() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-bad");
    d.start();
    let node = f.node_name().to_string();
    let host_dir = d.dir.0.join("escape");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::os::unix::fs::symlink("/etc", host_dir.join("link")).unwrap();
    let hp = json!([{"name": "h", "hostPath": {"path": host_dir.to_string_lossy()}}]);
    f.create_pod(pod(
        "dotdot",
        &node,
        json!({"name": "dotdot", "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "../../etc"}]}),
        hp.clone(),
    ));
    f.create_pod(pod(
        "symlink",
        &node,
        json!({"name": "symlink", "volumeMounts": [{"name": "h", "mountPath": "/x", "subPath": "link"}]}),
        hp,
    ));
    f.create_pod(pod(
        "nfs",
        &node,
        json!({"name": "nfs", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        json!([{"name": "data", "nfs": {"server": "127.0.0.1", "path": "/"}}]),
    ));
    f.create_pod(pod(
        "evilkey",
        &node,
        json!({"name": "evilkey", "volumeMounts": [{"name": "c", "mountPath": "/c"}]}),
        json!([{"name": "c", "configMap": {"name": "plain", "items": [{"key": "k", "path": "../../escaped"}]}}]),
    ));
    f.put_configmap("default", "plain", &[("k", "v")]);
    f.create_pod(pod("good", &node, json!({"name": "good"}), json!([])));

    let w = wait_waiting(&f, "dotdot", "CreateContainerConfigError");
    assert_eq!(
        w["message"],
        "unable to provision SubPath `../../etc`: must not contain '..'"
    );
    let w = wait_waiting(&f, "symlink", "CreateContainerConfigError");
    assert_eq!(
        w["message"],
        "failed to prepare subPath for volumeMount \"h\" of container \"symlink\""
    );
    let w = wait_waiting(&f, "nfs", "UnsupportedVolume");
    assert_eq!(
        w["message"],
        "MountVolume.SetUp failed for volume \"data\" : nfs volumes are not supported by vk-cri"
    );
    let w = wait_waiting(&f, "evilkey", "UnsupportedVolume");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("must not contain '..'"),
        "{w}"
    );
    assert!(
        events_of(&f, "nfs")
            .iter()
            .any(|e| e["reason"] == "FailedMount" && e["type"] == "Warning"),
        "{:?}",
        events_of(&f, "nfs")
    );
    assert!(events_of(&f, "symlink")
        .iter()
        .any(|e| e["reason"] == "Failed"
            && e["message"].as_str().unwrap_or("").starts_with("Error: ")));
    assert!(!d.dir.0.join("escaped").exists());
    assert!(d.containers("dotdot").is_empty() && d.containers("symlink").is_empty());
    // The good pod runs all along.
    d.wait_running("good", Duration::from_secs(30));
    assert_eq!(sh(&d, "good", "echo ok"), "ok\n");
}

#[test]
fn env_from_every_source_is_seen_in_the_container_and_missing_required_references_fail() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-env");
    d.start();
    let node = f.node_name().to_string();
    f.put_configmap("default", "env-cfg", &[("MODE", "fast"), ("1bad", "x")]);
    f.put_secret("default", "env-sec", &[("PASSWORD", "s3cret")]);
    f.create_pod(pod(
        "env",
        &node,
        json!({
            "name": "env",
            "resources": {"limits": {"memory": "64Mi"}},
            "envFrom": [{"configMapRef": {"name": "env-cfg"}, "prefix": "CFG_"},
                        {"secretRef": {"name": "env-sec"}},
                        {"configMapRef": {"name": "nowhere", "optional": true}}],
            "env": [
                {"name": "LITERAL", "value": "$(CFG_MODE)-$$(CFG_MODE)"},
                {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "env-cfg", "key": "MODE"}}},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "env-sec", "key": "PASSWORD"}}},
                {"name": "OPTIONAL", "valueFrom": {"secretKeyRef": {"name": "nowhere", "key": "k", "optional": true}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
                {"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ]
        }),
        json!([]),
    ));
    let env = sh(&d, "env", "env");
    for want in [
        "CFG_MODE=fast",
        "CFG_1bad=x",
        "PASSWORD=s3cret",
        "LITERAL=fast-$(CFG_MODE)",
        "FROM_CM=fast",
        "FROM_SECRET=s3cret",
        "POD_NAME=env",
        &format!("NODE={node}"),
        "SA=default",
        "HOST_IP=127.0.0.1",
        "MEM_MI=64",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    assert!(!env.contains("OPTIONAL="), "{env}");

    // An invalid key under envFrom without a prefix is skipped with the kubelet's event.
    f.create_pod(pod(
        "badkeys",
        &node,
        json!({"name": "badkeys", "envFrom": [{"configMapRef": {"name": "env-cfg"}}]}),
        json!([]),
    ));
    assert!(sh(&d, "badkeys", "env").lines().any(|l| l == "MODE=fast"));
    let evs = wait_for("the invalid keys event", Duration::from_secs(20), || {
        let evs = events_of(&f, "badkeys");
        evs.iter()
            .any(|e| e["reason"] == "InvalidEnvironmentVariableNames")
            .then_some(evs)
    });
    let e = evs
        .iter()
        .find(|e| e["reason"] == "InvalidEnvironmentVariableNames")
        .unwrap();
    assert_eq!(
        e["message"],
        "Keys [1bad] from the EnvFrom configMap default/env-cfg were skipped since they are considered invalid environment variable names."
    );

    // Required references that are missing: CreateContainerConfigError with the kubelet's words.
    f.create_pod(pod(
        "nocm",
        &node,
        json!({"name": "nocm", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k"}}}]}),
        json!([]),
    ));
    f.create_pod(pod(
        "nokey",
        &node,
        json!({"name": "nokey", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "env-sec", "key": "nope"}}}]}),
        json!([]),
    ));
    let w = wait_waiting(&f, "nocm", "CreateContainerConfigError");
    assert_eq!(w["message"], "configmap \"missing\" not found");
    let w = wait_waiting(&f, "nokey", "CreateContainerConfigError");
    assert_eq!(
        w["message"],
        "couldn't find key nope in Secret default/env-sec"
    );
    // Events are posted by their own thread: the waiting status may land first.
    wait_for("the Failed event", Duration::from_secs(30), || {
        events_of(&f, "nocm").into_iter().find(|e| {
            e["reason"] == "Failed" && e["message"] == "Error: configmap \"missing\" not found"
        })
    });
}

#[test]
fn a_projected_token_is_bound_to_the_pod_and_refreshed_before_it_expires() {
    // Tokens live 20 s here: refreshed past 16 s, so a new one must show up well within 60 s.
    let f = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("vol-token"),
        inject_service_account_volume: true,
        max_token_expiration: Some(Duration::from_secs(20)),
        bookmark_interval: Duration::from_secs(2),
        ..FakeConfig::default()
    });
    let mut d = Daemon::with_api(&f, "vol-token");
    d.start();
    let node = f.node_name().to_string();
    let created = f.create_pod(pod(
        "tok",
        &node,
        json!({"name": "tok", "volumeMounts": [{"name": "vault", "mountPath": "/vault"}]}),
        json!([{"name": "vault", "projected": {"sources": [
            {"serviceAccountToken": {"path": "token", "audience": "vault", "expirationSeconds": 3600}}]}}]),
    ));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let claims = |token: &str| -> Value {
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("a JWT"))
                .unwrap(),
        )
        .unwrap()
    };
    let first = sh(&d, "tok", "cat /vault/token");
    let c = claims(&first);
    assert_eq!(c["aud"], json!(["vault"]));
    assert_eq!(c["kubernetes.io"]["pod"]["uid"], uid.as_str());
    let second = wait_for("a refreshed token", Duration::from_secs(60), || {
        let t = sh(&d, "tok", "cat /vault/token");
        (t != first).then_some(t)
    });
    let c2 = claims(&second);
    assert_eq!(c2["kubernetes.io"]["pod"]["uid"], uid.as_str());
    assert!(c2["iat"].as_i64() > c["iat"].as_i64(), "{c} then {c2}");
    let requests = f
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/serviceaccounts/default/token"))
        .count();
    // Two tokens (kube-api-access and vault), each requested again about every 16 s: a few
    // requests, not one per sync or per refresh pass.
    assert!((2..=8).contains(&requests), "{requests} token requests");
}

#[test]
fn a_static_pod_shares_emptydirs_between_containers_and_its_tmpfs_goes_with_it_across_a_restart() {
    let mut d = Daemon::new("vol-static");
    d.start();
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: shared\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  initContainers:\n  - name: writer\n    image: {image}\n    command: [sh, -c, 'echo from-init > /disk/f && echo in-memory > /mem/f']\n    volumeMounts:\n    - {{name: disk, mountPath: /disk}}\n    - {{name: mem, mountPath: /mem}}\n  containers:\n  - name: reader\n    image: {image}\n    command: [sh, -c, {SLEEP:?}]\n    volumeMounts:\n    - {{name: disk, mountPath: /disk, readOnly: true}}\n    - {{name: mem, mountPath: /mem}}\n  volumes:\n  - {{name: disk, emptyDir: {{}}}}\n  - name: mem\n    emptyDir: {{medium: Memory, sizeLimit: 4Mi}}\n"
    );
    d.put_manifest("shared.yaml", &manifest);
    assert_eq!(
        sh(&d, "reader", "cat /disk/f /mem/f"),
        "from-init\nin-memory\n"
    );
    assert_eq!(sh(&d, "reader", "stat -c %a /disk"), "777\n");
    assert_eq!(sh(&d, "reader", "stat -c %a /mem"), "1777\n");
    let ro = runtime()
        .exec_sync(
            &d.wait_running("reader", Duration::from_secs(5)).id,
            &["sh".to_string(), "-c".into(), "echo x > /disk/g".into()],
            Duration::from_secs(10),
        )
        .expect("exec");
    assert_ne!(ro.exit_code, 0, "a readOnly mount is read-only");

    // A restarted daemon finds its tmpfs mount again and removes it with the pod.
    let volumes = d.dir.0.join("volumes");
    let pod_dir = wait_for("the pod's volume directory", Duration::from_secs(5), || {
        std::fs::read_dir(&volumes)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .next()
    });
    assert_eq!(host_tmpfs_under(&pod_dir).len(), 1);
    d.kill();
    d.start();
    d.remove_manifest("shared.yaml");
    d.wait_no_sandboxes(Duration::from_secs(60));
    wait_for("the pod's volumes removed", Duration::from_secs(30), || {
        (!pod_dir.exists()).then_some(())
    });
    assert!(host_tmpfs_under(&pod_dir).is_empty());
}

#[test]
fn a_restarted_daemon_keeps_the_volumes_of_the_pods_it_adopts_up_to_date() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-adopt");
    d.start();
    let node = f.node_name().to_string();
    f.put_configmap("default", "adopt-cfg", &[("k", "before")]);
    f.create_pod(pod(
        "adopt",
        &node,
        json!({"name": "adopt", "volumeMounts": [{"name": "c", "mountPath": "/c"}]}),
        json!([{"name": "c", "configMap": {"name": "adopt-cfg"}}]),
    ));
    assert_eq!(sh(&d, "adopt", "cat /c/k"), "before");
    let id = d.wait_running("adopt", Duration::from_secs(5)).id;
    d.kill();
    f.clear_requests();
    d.start();
    // The restarted daemon takes the running pod's volumes over (it reads the ConfigMap)...
    wait_for("the ConfigMap read again", Duration::from_secs(30), || {
        f.requests()
            .iter()
            .any(|r| r.path.ends_with("/configmaps/adopt-cfg"))
            .then_some(())
    });
    // ...and from then on keeps them current.
    f.put_configmap("default", "adopt-cfg", &[("k", "after")]);
    wait_for(
        "the change after the restart",
        Duration::from_secs(60),
        || (sh(&d, "adopt", "cat /c/k") == "after").then_some(()),
    );
    assert_eq!(
        d.wait_running("adopt", Duration::from_secs(5)).id,
        id,
        "the container was adopted, not restarted"
    );
}

#[test]
fn a_pod_writing_past_its_emptydir_size_limit_is_evicted() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-evict");
    d.start();
    let node = f.node_name().to_string();
    let mut p = pod(
        "hog",
        &node,
        json!({"name": "hog", "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}),
        json!([{"name": "scratch", "emptyDir": {"sizeLimit": "1Mi"}}]),
    );
    p["spec"]["restartPolicy"] = json!("Always");
    f.create_pod(p);
    f.create_pod(pod(
        "neighbour",
        &node,
        json!({"name": "neighbour"}),
        json!([]),
    ));
    sh(
        &d,
        "hog",
        "dd if=/dev/zero of=/scratch/fill bs=1M count=3 2>/dev/null; sync",
    );
    let status = wait_for("the pod evicted", Duration::from_secs(60), || {
        let s = pod_field(&f, "hog", "/status");
        (s["phase"] == "Failed").then_some(s)
    });
    assert_eq!(status["reason"], "Evicted", "{status}");
    assert_eq!(
        status["message"],
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\". "
    );
    assert!(events_of(&f, "hog")
        .iter()
        .any(|e| e["reason"] == "Evicted" && e["type"] == "Warning"));
    wait_for("hog stopped", Duration::from_secs(30), || {
        d.containers("hog")
            .iter()
            .all(|c| {
                c.state.enum_value_or_default()
                    != vk_cri::cri::api::ContainerState::CONTAINER_RUNNING
            })
            .then_some(())
    });
    // Only that pod.
    assert_eq!(sh(&d, "neighbour", "echo ok"), "ok\n");
}

#[test]
fn an_fs_group_owns_the_pods_volumes_with_the_kubelets_group_bits() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-fsgroup");
    d.start();
    let node = f.node_name().to_string();
    f.put_secret("default", "grp", &[("key", "v")]);
    let mut p = pod(
        "grp",
        &node,
        json!({"name": "grp", "volumeMounts": [
            {"name": "s", "mountPath": "/s"}, {"name": "e", "mountPath": "/e"}]}),
        json!([
            {"name": "s", "secret": {"secretName": "grp", "defaultMode": 0o400}},
            {"name": "e", "emptyDir": {}}
        ]),
    );
    p["spec"]["securityContext"] = json!({"fsGroup": 2345});
    f.create_pod(p);
    assert_eq!(sh(&d, "grp", "stat -L -c '%a %g' /s/key"), "440 2345\n");
    assert_eq!(sh(&d, "grp", "stat -c '%a %g' /e"), "2777 2345\n");
    // The kube-api-access token: 0600 plus the group's read bit.
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(
        sh(
            &d,
            "grp",
            &format!("stat -L -c '%a %g' {sa}/token {sa}/ca.crt")
        ),
        "640 2345\n644 2345\n"
    );
}

#[test]
fn service_links_reach_the_container_after_the_first_service_list_with_the_kubelets_precedence() {
    let f = fake();
    // The services informer cannot list yet: API pods' containers wait for it, as the kubelet's.
    f.fail_path_prefix("/api/v1/services", 500);
    let mut d = Daemon::with_api(&f, "vol-svc");
    d.start();
    let node = f.node_name().to_string();
    f.create_service(
        "default",
        "my-db",
        json!({"ports": [{"name": "sql", "port": 5432}, {"name": "stats", "port": 9125, "protocol": "UDP"}]}),
    );
    f.create_service("default", "headless", json!({"clusterIP": "None"}));
    f.create_service(
        "default",
        "ext",
        json!({"type": "ExternalName", "externalName": "example.invalid"}),
    );
    f.create_service("elsewhere", "far", json!({"ports": [{"port": 80}]}));
    let db_ip = f
        .get(Res::Services, "default", "my-db")
        .and_then(|s| s["spec"]["clusterIP"].as_str().map(str::to_string))
        .expect("my-db's cluster IP");
    f.create_pod(pod(
        "svc-env",
        &node,
        json!({
            "name": "svc-env",
            "env": [
                {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
                {"name": "MY_DB_SERVICE_PORT", "value": "mine"}
            ]
        }),
        json!([]),
    ));
    let w = wait_waiting(&f, "svc-env", "CreateContainerConfigError");
    assert_eq!(
        w["message"],
        "services have not yet been read at least once, cannot construct envvars"
    );
    f.clear_faults();
    let env = sh(&d, "svc-env", "env");
    for want in [
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_SERVICE_PORT_HTTPS=443",
        "KUBERNETES_PORT=tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_PROTO=tcp",
        "KUBERNETES_PORT_443_TCP_PORT=443",
        "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
        "API=https://10.96.0.1:443",
        &format!("MY_DB_SERVICE_HOST={db_ip}"),
        "MY_DB_SERVICE_PORT=mine",
        "MY_DB_SERVICE_PORT_SQL=5432",
        "MY_DB_SERVICE_PORT_STATS=9125",
        &format!("MY_DB_PORT=tcp://{db_ip}:5432"),
        &format!("MY_DB_PORT_9125_UDP=udp://{db_ip}:9125"),
        "MY_DB_PORT_9125_UDP_PROTO=udp",
        &format!("MY_DB_PORT_5432_TCP_ADDR={db_ip}"),
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in:\n{env}");
    }
    for absent in ["HEADLESS_", "EXT_", "FAR_"] {
        assert!(!env.contains(absent), "{absent} in:\n{env}");
    }
    assert_eq!(
        env.lines()
            .filter(|l| l.starts_with("MY_DB_SERVICE_PORT="))
            .count(),
        1
    );

    // A service created while the daemon runs is seen by the next container (the watch), and
    // enableServiceLinks: false leaves only the master service.
    f.create_service("default", "late", json!({"ports": [{"port": 8080}]}));
    let mut later = pod("svc-late", &node, json!({"name": "svc-late"}), json!([]));
    f.create_pod(later.clone());
    wait_for("LATE_SERVICE_HOST", Duration::from_secs(30), || {
        sh(&d, "svc-late", "env")
            .lines()
            .any(|l| l.starts_with("LATE_SERVICE_HOST=10.96."))
            .then_some(())
    });
    later["metadata"]["name"] = json!("svc-nolinks");
    later["spec"]["containers"][0]["name"] = json!("svc-nolinks");
    later["spec"]["enableServiceLinks"] = json!(false);
    f.create_pod(later);
    let env = sh(&d, "svc-nolinks", "env");
    assert!(
        env.lines()
            .any(|l| l == "KUBERNETES_SERVICE_HOST=10.96.0.1"),
        "{env}"
    );
    assert!(!env.contains("MY_DB_") && !env.contains("LATE_"), "{env}");
}

/// A pod that runs once and exits 0, with a secret (tmpfs) and an emptyDir.
fn one_shot(name: &str, node: &str) -> Value {
    let mut p = pod(
        name,
        node,
        json!({"name": name, "volumeMounts": [
            {"name": "sec", "mountPath": "/sec"}, {"name": "scratch", "mountPath": "/scratch"}
        ]}),
        json!([{"name": "sec", "secret": {"secretName": "once"}}, {"name": "scratch", "emptyDir": {}}]),
    );
    p["spec"]["restartPolicy"] = json!("Never");
    p["spec"]["containers"][0]["command"] =
        json!(["sh", "-c", "cat /sec/token; echo done > /scratch/f"]);
    p
}

#[test]
fn a_finished_pods_volumes_are_torn_down_while_its_container_and_logs_stay_until_deletion() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-done");
    d.start();
    let node = f.node_name().to_string();
    f.put_secret("default", "once", &[("token", "t0k3n")]);
    let created = f.create_pod(one_shot("once", &node));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let vol_dir = d.dir.0.join("volumes").join(&uid);
    wait_for("the pod to succeed", Duration::from_secs(60), || {
        (pod_field(&f, "once", "/status/phase") == "Succeeded").then_some(())
    });
    // Terminated: the volumes (the secret's tmpfs with them) are gone at once...
    wait_for(
        "the finished pod's volumes torn down",
        Duration::from_secs(30),
        || (!vol_dir.exists()).then_some(()),
    );
    assert!(host_tmpfs_under(&vol_dir).is_empty());
    // ...while the pod, its exited container and its log stay until it is deleted.
    std::thread::sleep(Duration::from_secs(2));
    assert!(f.get_pod("default", "once").is_some());
    let exited = d.containers("once");
    assert_eq!(exited.len(), 1, "{exited:?}");
    assert_eq!(
        exited[0].state.enum_value_or_default(),
        vk_cri::cri::api::ContainerState::CONTAINER_EXITED
    );
    let log = std::fs::read_to_string(&exited[0].log_path).expect("the container's log");
    assert!(log.contains("t0k3n"), "{log}");
    f.delete_pod("default", "once", Some(0));
    wait_for(
        "the deleted pod's container removed",
        Duration::from_secs(30),
        || d.containers("once").is_empty().then_some(()),
    );

    // With --keep-terminated-pod-volumes they stay until the pod is deleted.
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-keep").arg("--keep-terminated-pod-volumes");
    d.start();
    let node = f.node_name().to_string();
    f.put_secret("default", "once", &[("token", "t0k3n")]);
    let created = f.create_pod(one_shot("kept", &node));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let vol_dir = d.dir.0.join("volumes").join(&uid);
    wait_for("the pod to succeed", Duration::from_secs(60), || {
        (pod_field(&f, "kept", "/status/phase") == "Succeeded").then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(vol_dir.join("sec").is_dir(), "kept: {}", vol_dir.display());
    assert!(
        !host_tmpfs_under(&vol_dir).is_empty(),
        "the secret's tmpfs is kept"
    );
    f.delete_pod("default", "kept", Some(0));
    wait_for(
        "the kept volumes removed on deletion",
        Duration::from_secs(30),
        || (!vol_dir.exists()).then_some(()),
    );
}

/// A quantity as the Node's status prints it (`7500m`, `8`, `16318412Ki`, `89Gi`), in milli-units.
fn milli_of(q: &str) -> i128 {
    let (num, mul): (&str, i128) = if let Some(n) = q.strip_suffix('m') {
        (n, 1)
    } else if let Some(n) = q.strip_suffix("Ki") {
        (n, 1000 << 10)
    } else if let Some(n) = q.strip_suffix("Mi") {
        (n, 1000 << 20)
    } else if let Some(n) = q.strip_suffix("Gi") {
        (n, 1000 << 30)
    } else {
        (q, 1000)
    };
    num.parse::<i128>()
        .unwrap_or_else(|_| panic!("quantity {q:?}"))
        * mul
}

#[test]
fn resource_field_refs_without_limits_read_the_nodes_allocatable_with_reservations_held_back() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-alloc")
        .arg("--kube-reserved")
        .arg("cpu=100m,memory=128Mi")
        .arg("--system-reserved")
        .arg("cpu=150m,memory=64Mi,ephemeral-storage=1Gi");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod(
        "alloc",
        &node,
        json!({"name": "alloc", "env": [
            {"name": "CPU_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {"name": "DISK", "valueFrom": {"resourceFieldRef": {"resource": "limits.ephemeral-storage"}}}
        ]}),
        json!([]),
    ));
    let env = sh(&d, "alloc", "env");
    let get = |k: &str| -> i128 {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} not in:\n{env}"))
            .parse()
            .unwrap()
    };
    let n = f.get_node(&node).expect("the node");
    let alloc = &n["status"]["allocatable"];
    let cap = &n["status"]["capacity"];
    let q = |v: &Value| milli_of(v.as_str().unwrap());
    assert_eq!(get("CPU_M"), q(&alloc["cpu"]), "{alloc}");
    assert_eq!(get("MEM") * 1000, q(&alloc["memory"]), "{alloc}");
    assert_eq!(
        get("DISK") * 1000,
        q(&alloc["ephemeral-storage"]),
        "{alloc}"
    );
    // And that is capacity with the reservations held back, not capacity.
    assert_eq!(q(&cap["cpu"]) - q(&alloc["cpu"]), 250);
    assert!(q(&cap["memory"]) - q(&alloc["memory"]) >= (192i128 << 20) * 1000);
}

#[test]
fn a_subpath_is_bound_from_a_safe_open_and_a_symlink_out_of_the_volume_is_refused() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-subpath");
    d.start();
    let node = f.node_name().to_string();
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let make = |name: &str, sub: &str| {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": node,
                "hostNetwork": true,
                "terminationGracePeriodSeconds": 2,
                "tolerations": [{"operator": "Exists"}],
                "initContainers": [{
                    "name": "mk", "image": image,
                    "command": ["sh", "-c", "mkdir -p /data/real && echo inside > /data/real/f && ln -s real /data/in && ln -s /etc /data/out"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "containers": [{
                    "name": "reader", "image": image, "command": ["sh", "-c", SLEEP],
                    "volumeMounts": [{"name": "data", "mountPath": "/sub", "subPath": sub}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }
        })
    };
    let inside = f.create_pod(make("sp-in", "in"));
    f.create_pod(make("sp-out", "out"));

    // A symlink that stays inside the volume is followed once, then bound.
    assert_eq!(sh(&d, "reader", "cat /sub/f"), "inside\n");
    let uid = inside["metadata"]["uid"].as_str().unwrap().to_string();
    let pod_dir = d.dir.0.join("volumes").join(&uid);
    let target = pod_dir.join(".volume-subpaths/data/reader/0");
    let reader = d
        .containers("reader")
        .into_iter()
        .find(|c| c.labels.get("io.kubernetes.pod.uid") == Some(&uid))
        .expect("the reader of sp-in");
    let sources: Vec<&str> = reader.mounts.iter().map(|m| m.host_path.as_str()).collect();
    assert!(
        sources.contains(&&*target.to_string_lossy()),
        "the runtime mounts the bind target, not a path it would look up again: {sources:?}"
    );
    assert!(
        host_tmpfs_under(&pod_dir).contains(&target.to_string_lossy().into_owned()),
        "the target is a mount"
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(&target).unwrap(),
        std::fs::metadata(pod_dir.join("data/real")).unwrap(),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "bound to the checked directory"
    );

    // A symlink out of the volume: the kubelet's error, nothing of /etc exposed.
    let w = wait_waiting(&f, "sp-out", "CreateContainerConfigError");
    assert_eq!(
        w["message"],
        "failed to prepare subPath for volumeMount \"data\" of container \"reader\""
    );
    assert!(
        d.log().contains("not within volume path"),
        "the detail is logged"
    );

    // Deleted: the bind is unmounted and the target removed with the volumes.
    f.delete_pod("default", "sp-in", Some(0));
    wait_for("the pod's volumes removed", Duration::from_secs(60), || {
        (!pod_dir.exists()).then_some(())
    });
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounted.contains(&*pod_dir.to_string_lossy()));
}

#[test]
fn static_pods_never_wait_for_services_and_standalone_pods_have_no_service_variables() {
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stat\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: stat\n    image: {image}\n    command: [sh, -c, {SLEEP:?}]\n"
    );
    // With an API server whose services cannot be listed: a static pod starts anyway (the
    // kubelet waits only for API pods), with what is known: no service yet.
    let f = fake();
    f.fail_path_prefix("/api/v1/services", 500);
    let mut d = Daemon::with_api(&f, "vol-svc-static");
    d.start();
    d.put_manifest("stat.yaml", &manifest);
    let env = sh(&d, "stat", "env");
    assert!(!env.contains("KUBERNETES_SERVICE_HOST"), "{env}");
    assert!(
        f.requests()
            .iter()
            .any(|r| r.path == "/api/v1/services" && r.status == 500),
        "the services were asked for"
    );
    drop(d);

    // Standalone: no API server, no service variables, as a kubelet without one.
    let mut d = Daemon::new("vol-svc-standalone");
    d.start();
    d.put_manifest("stat.yaml", &manifest);
    let env = sh(&d, "stat", "env");
    assert!(!env.contains("_SERVICE_HOST"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
}

#[test]
fn a_volume_failure_retried_every_two_seconds_is_logged_once_and_its_recovery_once() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-logonce");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod(
        "later",
        &node,
        json!({"name": "later", "volumeMounts": [{"name": "cm", "mountPath": "/cm"}]}),
        json!([{"name": "cm", "configMap": {"name": "arrives-later"}}]),
    ));
    let failed_mounts = || -> u64 {
        events_of(&f, "later")
            .iter()
            .filter(|e| e["reason"] == "FailedMount")
            .map(|e| e["count"].as_u64().unwrap_or(1))
            .sum()
    };
    wait_for("the mount to be retried", Duration::from_secs(30), || {
        (failed_mounts() >= 3).then_some(())
    });
    let logged = |needle: &str| d.log().lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        logged("configmap \"arrives-later\" not found"),
        1,
        "{} retries, logged once:\n{}",
        failed_mounts(),
        d.log()
    );
    f.put_configmap("default", "arrives-later", &[("k", "v")]);
    d.wait_running("later", Duration::from_secs(30));
    assert_eq!(sh(&d, "later", "cat /cm/k"), "v");
    assert_eq!(
        logged("setting up its volumes works again"),
        1,
        "{}",
        d.log()
    );
}

/// A claim as the user makes it, and the PV controller's binding of it to `pv`.
fn claim(f: &FakeApiServer, name: &str, read_only_mode: bool) -> Value {
    let modes = if read_only_mode {
        json!(["ReadOnlyMany"])
    } else {
        json!(["ReadWriteOnce"])
    };
    f.create(
        Res::PersistentVolumeClaims,
        "default",
        json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": ""},
            "status": {"phase": "Pending"}
        }),
    )
}

fn bind(f: &FakeApiServer, claim: &Value, pv: &str, source: Value, affinity_host: Option<&str>) {
    let name = claim["metadata"]["name"].as_str().unwrap().to_string();
    let mut spec = json!({
        "capacity": {"storage": "1Gi"},
        "accessModes": claim["spec"]["accessModes"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "volumeMode": "Filesystem",
        "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "default", "name": name,
                     "uid": claim["metadata"]["uid"]},
    });
    for (k, v) in source.as_object().unwrap() {
        spec[k] = v.clone();
    }
    if let Some(host) = affinity_host {
        spec["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}});
    }
    f.create(
        Res::PersistentVolumes,
        "",
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv}, "spec": spec,
               "status": {"phase": "Bound"}}),
    );
    f.modify(Res::PersistentVolumeClaims, "default", &name, |c| {
        c["spec"]["volumeName"] = json!(pv);
        c["status"] = json!({"phase": "Bound", "accessModes": c["spec"]["accessModes"],
                             "capacity": {"storage": "1Gi"}});
    });
}

#[test]
fn a_claim_waits_unbound_with_the_kubelets_event_then_its_hostpath_volume_is_mounted() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-claim");
    d.start();
    let node = f.node_name().to_string();
    let disk = d.dir.0.join("disk-a");
    let c = claim(&f, "data", false);
    f.create_pod(pod(
        "claimer",
        &node,
        json!({"name": "claimer", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
    ));
    // Unbound: Pending, ContainerCreating, and the kubelet's FailedMount.
    wait_waiting(&f, "claimer", "ContainerCreating");
    let event = wait_for("the FailedMount event", Duration::from_secs(30), || {
        events_of(&f, "claimer")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount")
    });
    assert_eq!(
        event["message"],
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], \
         failed to process volumes=[data]: error processing PVC default/data: PVC is not bound"
    );
    assert_eq!(pod_field(&f, "claimer", "/status/phase"), "Pending");
    // The PV controller binds it to a hostPath volume: the pod starts, and writes reach the disk.
    bind(
        &f,
        &c,
        "pv-host-a",
        json!({"hostPath": {"path": disk.to_string_lossy(), "type": "DirectoryOrCreate"}}),
        None,
    );
    assert_eq!(
        sh(&d, "claimer", "echo persisted > /data/out && cat /data/out"),
        "persisted\n"
    );
    assert_eq!(
        std::fs::read_to_string(disk.join("out")).unwrap(),
        "persisted\n"
    );
}

#[test]
fn local_volumes_follow_node_affinity_read_only_and_fs_group() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "vol-local");
    d.start();
    let node = f.node_name().to_string();
    let mk = |n: &str| {
        let p = d.dir.0.join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let (rw, ro, far) = (mk("local-rw"), mk("local-ro"), mk("local-far"));
    std::fs::write(ro.join("seed"), "seed\n").unwrap();
    let local = |p: &std::path::Path| json!({"local": {"path": p.to_string_lossy()}});

    // Read-write on this node, with the pod's fsGroup.
    let c = claim(&f, "rw", false);
    bind(&f, &c, "pv-local-rw", local(&rw), Some(&node));
    let mut p = pod(
        "local-rw",
        &node,
        json!({"name": "local-rw", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "rw"}}]),
    );
    p["spec"]["securityContext"] = json!({"fsGroup": 4321});
    f.create_pod(p);
    assert_eq!(
        sh(&d, "local-rw", "touch /data/x && stat -c %g /data"),
        "4321\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&rw).unwrap().gid(), 4321);

    // Read-only through the claim: the seed is read, writes fail.
    let c = claim(&f, "ro", true);
    bind(&f, &c, "pv-local-ro", local(&ro), Some(&node));
    f.create_pod(pod(
        "local-ro",
        &node,
        json!({"name": "local-ro", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "ro", "readOnly": true}}]),
    ));
    assert_eq!(
        sh(
            &d,
            "local-ro",
            "cat /data/seed; touch /data/y 2>/dev/null || echo refused"
        ),
        "seed\nrefused\n"
    );

    // Another node's volume: never mounted, with the kubelet's NodeAffinity message.
    let c = claim(&f, "far", false);
    bind(&f, &c, "pv-local-far", local(&far), Some("some-other-node"));
    f.create_pod(pod(
        "local-far",
        &node,
        json!({"name": "local-far", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}),
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "far"}}]),
    ));
    let event = wait_for("the FailedMount event", Duration::from_secs(30), || {
        events_of(&f, "local-far")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount")
    });
    assert_eq!(
        event["message"],
        "MountVolume.NodeAffinity check failed for volume \"pv-local-far\" : no matching NodeSelectorTerms"
    );
    wait_waiting(&f, "local-far", "ContainerCreating");
    assert!(d.containers("local-far").is_empty());

    // Local volumes are not attachable (the kubelet's local plugin has no Attacher): the
    // kubelet reports no volumesInUse for them, and neither does vk-cri.
    let node_obj = f.get(Res::Nodes, "", &node).expect("the Node");
    assert_eq!(node_obj["status"].get("volumesInUse"), None, "{node_obj}");
}
