//! The daemon against the project's fake API server (which answers as kube-apiserver v1.28.7 does,
//! per the recorded fixtures) and the real containerd: Node registration with its fields, the
//! Lease, a deleted Node coming back, the pod watch surviving dropped connections and a 410
//! without losing or doubling a pod, NodeRestriction-forbidden labels refused before any request,
//! only node credentials used; and pods: Running with the kubelet's status fields written back,
//! events, graceful deletion ending with the pod gone from the API and nothing left in containerd,
//! and a pod deleted while vk-cri was down cleaned up.

use std::time::Duration;

use serde_json::{json, Value};
use vk_cri::cri::api::ContainerState;

use crate::daemon::{wait_for, Daemon};
use crate::env;
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};

fn fake() -> FakeApiServer {
    FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("api-node"),
        // Every pod gets the kube-api-access projected volume, as on a real cluster.
        inject_service_account_volume: true,
        bookmark_interval: Duration::from_secs(2),
        ..FakeConfig::default()
    })
}

fn pod(name: &str, node: &str, script: &str, grace: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": grace,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "c",
                "image": env::var("VKCRI_BUSYBOX_IMAGE"),
                "command": ["sh", "-c", script],
                "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}}
            }]
        }
    })
}

const COOPERATIVE: &str = "trap 'exit 0' TERM; echo up; while true; do sleep 0.2; done";

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    v.pointer(path).unwrap_or(&Value::Null)
}

fn wait_pod(f: &FakeApiServer, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(40), || {
        f.get_pod("default", name).filter(|p| pred(p))
    })
}

fn running_and_ready(p: &Value) -> bool {
    field(p, "/status/phase") == "Running"
        && p.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

#[test]
fn the_node_registers_with_its_labels_taint_capacity_addresses_and_runtime() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-reg");
    d.start();
    let name = f.node_name().to_string();
    let node = wait_for("the node to be Ready", Duration::from_secs(30), || {
        f.get_node(&name).filter(|n| {
            n.pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
        })
    });
    // The kubelet's events of a start and a first registration, about the Node (checked
    // against kube-apiserver v1.28.7 with NodeRestriction: all accepted).
    let expected = [
        ("Starting", "Starting kubelet.".to_string()),
        (
            "NodeHasSufficientMemory",
            format!("Node {name} status is now: NodeHasSufficientMemory"),
        ),
        (
            "NodeHasNoDiskPressure",
            format!("Node {name} status is now: NodeHasNoDiskPressure"),
        ),
        (
            "NodeHasSufficientPID",
            format!("Node {name} status is now: NodeHasSufficientPID"),
        ),
    ];
    let events = wait_for("the node's events", Duration::from_secs(10), || {
        let events: Vec<Value> = f
            .list(Res::Events, Some("default"))
            .into_iter()
            .filter(|e| e["involvedObject"]["kind"] == "Node")
            .collect();
        (events.len() >= expected.len()).then_some(events)
    });
    for (reason, message) in &expected {
        let e = events
            .iter()
            .find(|e| e["reason"] == *reason)
            .unwrap_or_else(|| panic!("{reason} in {events:?}"));
        assert_eq!(e["message"], message.as_str());
        assert_eq!(e["type"], "Normal");
        assert_eq!(e["involvedObject"]["name"], name.as_str());
        assert_eq!(e["source"]["component"], "kubelet");
    }
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["type"], "virtual-kubelet");
    let taints = node["spec"]["taints"].as_array().expect("taints");
    assert!(
        taints
            .iter()
            .any(|t| t["key"] == "virtual-kubelet.io/provider"
                && t["value"] == "cri"
                && t["effect"] == "NoSchedule"),
        "{taints:?}"
    );
    let status = &node["status"];
    assert_eq!(status["capacity"]["pods"], "110");
    for r in ["cpu", "memory", "ephemeral-storage"] {
        assert!(
            status["capacity"][r].is_string() && status["allocatable"][r].is_string(),
            "{r}: {status}"
        );
    }
    let addresses = status["addresses"].as_array().expect("addresses");
    assert!(
        addresses
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"),
        "{addresses:?}"
    );
    assert!(
        addresses.iter().any(|a| a["type"] == "Hostname"),
        "{addresses:?}"
    );
    // The kubelet API's port (each test daemon gets a free one).
    assert_eq!(status["daemonEndpoints"]["kubeletEndpoint"]["Port"], d.port);
    let info = &status["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("containerd://1."),
        "{info}"
    );
    assert!(
        info["kubeletVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("v1."),
        "{info}"
    );
    assert_eq!(info["operatingSystem"], "linux");
    for c in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == c)
            .cloned();
        assert!(cond.is_some(), "condition {c} missing");
    }

    // Every request used the node's own identity.
    let requests = f.requests();
    assert!(!requests.is_empty());
    for r in &requests {
        assert_eq!(
            r.user,
            format!("system:node:{name}"),
            "{} {} as {}",
            r.method,
            r.path,
            r.user
        );
    }
}

#[test]
fn the_lease_is_created_owned_by_the_node_and_renewed() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-lease");
    d.start();
    let name = f.node_name().to_string();
    let first = wait_for("the lease", Duration::from_secs(30), || {
        f.get(Res::Leases, "kube-node-lease", &name)
    });
    assert_eq!(first["spec"]["holderIdentity"], name.as_str());
    assert_eq!(first["spec"]["leaseDurationSeconds"], 40);
    let node = f.get_node(&name).expect("node");
    let owner = &first["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("Node"), node["metadata"]["uid"].as_str())
    );
    let renewed = wait_for("a renewal", Duration::from_secs(25), || {
        f.get(Res::Leases, "kube-node-lease", &name)
            .filter(|l| l["spec"]["renewTime"] != first["spec"]["renewTime"])
    });
    assert_ne!(
        renewed["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
}

#[test]
fn a_deleted_node_comes_back() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-renode");
    d.start();
    let name = f.node_name().to_string();
    let before = wait_for("the node", Duration::from_secs(30), || f.get_node(&name));
    assert!(f.delete_node(&name));
    let after = wait_for(
        "the node to be registered again",
        Duration::from_secs(30),
        || f.get_node(&name),
    );
    assert_ne!(after["metadata"]["uid"], before["metadata"]["uid"]);
    d.wait_log("was deleted: registering it again", Duration::from_secs(5));
}

fn condition_of<'a>(node: &'a Value, t: &str) -> Option<&'a Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

#[test]
fn conditions_the_node_controller_marked_unknown_are_written_over_at_the_next_heartbeat() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-unknown");
    d.start();
    let name = f.node_name().to_string();
    wait_for("the node Ready", Duration::from_secs(30), || {
        f.get_node(&name)
            .filter(|n| condition_of(n, "Ready").is_some_and(|c| c["status"] == "True"))
    });
    // As kube-controller-manager after 40 s without heartbeats (fixture 15a).
    let marked = f.mark_node_unknown(&name).expect("the node");
    let marked_at = condition_of(&marked, "Ready").unwrap()["lastTransitionTime"].clone();
    // The kubelet compares with the Node it reads every 10 s, so it writes over at once.
    let node = wait_for("Ready True again", Duration::from_secs(15), || {
        f.get_node(&name)
            .filter(|n| condition_of(n, "Ready").is_some_and(|c| c["status"] == "True"))
    });
    for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = condition_of(&node, t).unwrap_or_else(|| panic!("{t} in {node}"));
        assert_ne!(c["status"], "Unknown", "{t}: {c}");
        assert_ne!(c["reason"], "NodeStatusUnknown", "{t}: {c}");
        // A change of status is a transition, at or after the controller's.
        assert!(
            c["lastTransitionTime"].as_str() >= marked_at.as_str(),
            "{t}: {c}"
        );
    }
    assert_eq!(
        condition_of(&node, "Ready").unwrap()["reason"],
        "KubeletReady"
    );
    // Every condition that left Unknown is an event, as the kubelet's setters record them.
    let expected = [
        "NodeHasSufficientMemory",
        "NodeHasNoDiskPressure",
        "NodeHasSufficientPID",
        "NodeReady",
    ];
    wait_for("the condition events", Duration::from_secs(10), || {
        let events = f.list(Res::Events, Some("default"));
        let count = |reason: &str| {
            events
                .iter()
                .filter(|e| e["involvedObject"]["kind"] == "Node" && e["reason"] == reason)
                .map(|e| e["count"].as_u64().unwrap_or(1))
                .sum::<u64>()
        };
        // The pressure events came once at registration and again now; NodeReady only now.
        (expected[..3].iter().all(|r| count(r) >= 2) && count("NodeReady") == 1).then_some(())
    });
}

#[test]
fn forbidden_node_labels_are_refused_before_any_request() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-labels")
        .arg("--node-labels")
        .arg("kubernetes.io/role=agent,team=a");
    let (code, log) = d.run_to_exit(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("--node-labels") && log.contains("kubernetes.io/role"),
        "{log}"
    );
    assert!(
        f.requests().is_empty(),
        "a request was sent: {:?}",
        f.requests()
    );
}

#[test]
fn a_pod_runs_and_its_status_is_written_back_like_the_kubelets() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-pod");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod("web", &node, COOPERATIVE, 5));
    let p = wait_pod(&f, "web", "web Running and Ready", running_and_ready);
    let s = &p["status"];
    assert_eq!(s["hostIP"], "127.0.0.1");
    assert_eq!(
        s["podIP"], "127.0.0.1",
        "a hostNetwork pod has the node's IP"
    );
    assert_eq!(s["qosClass"], "Burstable");
    assert!(s["startTime"].is_string());
    let types: Vec<&str> = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    for t in [
        "PodScheduled",
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
    ] {
        assert!(types.contains(&t), "condition {t} missing: {types:?}");
    }
    let cs = &s["containerStatuses"][0];
    assert_eq!(cs["name"], "c");
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["started"], true);
    assert_eq!(cs["restartCount"], 0);
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap_or("")
            .starts_with("containerd://"),
        "{cs}"
    );
    assert!(
        cs["imageID"].as_str().unwrap_or("").contains("sha256:"),
        "{cs}"
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    let id = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    let running = d.wait_running("c", Duration::from_secs(5));
    assert_eq!(running.id, id);

    // The kubelet's events, posted as core/v1 events by the node.
    let events = wait_for("Started event", Duration::from_secs(10), || {
        let evs = f.list(Res::Events, Some("default"));
        evs.iter().any(|e| e["reason"] == "Started").then_some(evs)
    });
    // The image is there already (tagged: IfNotPresent): Pulled says so, before Created.
    let mut at = Vec::new();
    for reason in ["Pulled", "Created", "Started"] {
        let i = events
            .iter()
            .position(|e| e["reason"] == reason)
            .unwrap_or_else(|| panic!("no {reason} event: {events:#?}"));
        let e = &events[i];
        assert_eq!(e["involvedObject"]["name"], "web");
        assert_eq!(e["involvedObject"]["fieldPath"], "spec.containers{c}");
        assert_eq!(e["source"]["component"], "kubelet");
        assert_eq!(e["source"]["host"], node.as_str());
        at.push(rv_of(e));
    }
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{events:#?}");
    let pulled = events.iter().find(|e| e["reason"] == "Pulled").unwrap();
    assert_eq!(
        pulled["message"],
        format!(
            "Container image \"{}\" already present on machine",
            env::var("VKCRI_BUSYBOX_IMAGE")
        )
    );
    assert_eq!(pulled["type"], "Normal");
    // Status writes were the kubelet's strategic merge patches of /status only, as the node.
    assert!(f
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/pods/web/status"))
        .all(|r| r.method == "PATCH"
            && r.content_type.as_deref() == Some("application/strategic-merge-patch+json")));
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

fn condition<'a>(p: &'a Value, t: &str) -> Option<&'a Value> {
    p["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

#[test]
fn a_resource_field_ref_without_a_divisor_divides_by_one() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "divisor");
    d.start();
    let mut p = pod(
        "divisor",
        f.node_name(),
        &format!("echo MEM=$MEM; {COOPERATIVE}"),
        1,
    );
    // No divisor: the API server stores "0", which the kubelet reads as 1.
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}}]);
    f.create_pod(p);
    let stored = f.get_pod("default", "divisor").unwrap();
    assert_eq!(
        stored["spec"]["containers"][0]["env"][0]["valueFrom"]["resourceFieldRef"]["divisor"],
        "0"
    );
    let running = wait_pod(
        &f,
        "divisor",
        "divisor Running and Ready",
        running_and_ready,
    );
    // The env var from limits.memory (32Mi).
    let uid = field(&running, "/metadata/uid")
        .as_str()
        .unwrap()
        .to_string();
    let log = d.log_root().join(format!("default_divisor_{uid}/c/0.log"));
    let text = wait_for(
        "the container's first line",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("MEM="))
        },
    );
    assert!(text.contains(" stdout F MEM=33554432\n"), "{text}");
}

#[test]
fn readiness_gates_hold_ready_until_their_conditions_are_true() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "gates");
    d.start();
    let mut p = pod("gated", f.node_name(), COOPERATIVE, 1);
    p["spec"]["readinessGates"] = json!([{"conditionType": "example.com/gate"}]);
    f.create_pod(p);
    let held = wait_pod(&f, "gated", "running, Ready held by its gate", |p| {
        field(p, "/status/containerStatuses/0/ready") == true
            && condition(p, "ContainersReady").is_some_and(|c| c["status"] == "True")
    });
    let ready = condition(&held, "Ready").unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ReadinessGatesNotReady")),
        "{held:#}"
    );
    assert_eq!(
        ready["message"],
        "corresponding condition of pod readiness gate \"example.com/gate\" does not exist."
    );

    // A controller sets the gate's condition through the status.
    f.modify(Res::Pods, "default", "gated", |p| {
        p["status"]["conditions"].as_array_mut().unwrap().push(
            json!({"type": "example.com/gate", "status": "True", "lastProbeTime": null,
                   "lastTransitionTime": "2026-12-06T20:50:05Z"}),
        );
    });
    let now_ready = wait_pod(&f, "gated", "Ready once the gate is True", |p| {
        condition(p, "Ready").is_some_and(|c| c["status"] == "True")
    });
    assert_eq!(
        condition(&now_ready, "example.com/gate").unwrap()["status"],
        "True",
        "the gate's condition survived the status write:\n{now_ready:#}"
    );
    // The gate goes False again: so does Ready.
    f.modify(Res::Pods, "default", "gated", |p| {
        for c in p["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "example.com/gate" {
                c["status"] = json!("False");
            }
        }
    });
    let again = wait_pod(&f, "gated", "Ready False with the gate", |p| {
        condition(p, "Ready").is_some_and(|c| c["status"] == "False")
    });
    assert_eq!(
        condition(&again, "Ready").unwrap()["message"],
        "the status of pod readiness gate \"example.com/gate\" is not \"True\", but False",
        "{}",
        d.log()
    );
}

#[test]
fn conditions_written_by_other_clients_survive_the_daemons_status_writes() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "foreign");
    d.start();
    // A container that exits after a while: every restart is a status write.
    f.create_pod(pod("foreign", f.node_name(), "sleep 1; exit 1", 1));
    wait_pod(&f, "foreign", "foreign Running", |p| {
        field(p, "/status/phase") == "Running"
    });
    f.modify(Res::Pods, "default", "foreign", |p| {
        p["status"]["conditions"].as_array_mut().unwrap().push(
            json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                   "lastProbeTime": null, "lastTransitionTime": "2026-12-06T20:50:05Z"}),
        );
    });
    let later = wait_pod(&f, "foreign", "a restart written", |p| {
        field(p, "/status/containerStatuses/0/restartCount")
            .as_u64()
            .is_some_and(|n| n >= 1)
    });
    let kept = condition(&later, "DisruptionTarget");
    assert_eq!(
        kept.map(|c| c["reason"].clone()),
        Some(json!("EvictionByEvictionAPI")),
        "erased by the daemon's status write:\n{later:#}\n{}",
        d.log()
    );
}

#[test]
fn terminal_pods_carry_the_kubelets_condition_reasons() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "terminal");
    d.start();
    for (name, script) in [("fails", "exit 3"), ("succeeds", "exit 0")] {
        let mut p = pod(name, f.node_name(), script, 1);
        p["spec"]["restartPolicy"] = json!("Never");
        f.create_pod(p);
    }
    for (name, phase, reason) in [
        ("fails", "Failed", "PodFailed"),
        ("succeeds", "Succeeded", "PodCompleted"),
    ] {
        let p = wait_pod(&f, name, phase, |p| field(p, "/status/phase") == phase);
        for t in ["Ready", "ContainersReady"] {
            let c = condition(&p, t).unwrap();
            assert_eq!(
                (c["status"].as_str(), c["reason"].as_str()),
                (Some("False"), Some(reason)),
                "{name} {t}:\n{p:#}\n{}",
                d.log()
            );
            assert!(c.get("message").is_none_or(Value::is_null), "{c}");
        }
        if phase == "Succeeded" {
            assert_eq!(
                condition(&p, "Initialized").unwrap()["reason"],
                "PodCompleted"
            );
        }
    }
}

#[test]
fn a_deleted_pod_is_stopped_gracefully_then_removed_from_the_api_and_the_runtime() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-del");
    d.start();
    let node = f.node_name().to_string();
    let created = f.create_pod(pod("gone", &node, COOPERATIVE, 30));
    wait_pod(&f, "gone", "gone Running", running_and_ready);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    // The pod's cgroup, in every hierarchy that has one (cgroup v2 or each v1 controller).
    let pod_cgroups = || -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from("/sys/fs/cgroup")];
        while let Some(dir) = dirs.pop() {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = e.path();
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                if e.file_name().to_string_lossy() == format!("pod{uid}") {
                    found.push(path);
                } else if path.components().count() < 8 {
                    dirs.push(path);
                }
            }
        }
        found
    };
    assert!(!pod_cgroups().is_empty(), "the running pod has a cgroup");
    f.delete_pod("default", "gone", Some(30))
        .expect("pod existed");
    wait_for(
        "the pod to be gone from the API",
        Duration::from_secs(30),
        || f.get_pod("default", "gone").is_none().then_some(()),
    );
    d.wait_no_sandboxes(Duration::from_secs(10));
    let deletes: Vec<_> = f
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.ends_with("/pods/gone"))
        .collect();
    assert_eq!(
        deletes.len(),
        1,
        "one final delete by the node: {deletes:?}"
    );
    assert!(deletes[0].user.starts_with("system:node:"));
    assert!(
        !std::fs::read_dir(d.log_root())
            .map(|mut r| r.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().contains(&uid))))
            .unwrap_or(false),
        "logs removed"
    );
    // Removed right after the final delete (as the kubelet's housekeeping does, off the path).
    wait_for(
        "the pod's cgroups to be removed",
        Duration::from_secs(10),
        || pod_cgroups().is_empty().then_some(()),
    );
}

#[test]
fn the_watch_survives_dropped_connections_and_a_410_without_losing_or_doubling_a_pod() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-watch");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod("one", &node, COOPERATIVE, 2));
    wait_pod(&f, "one", "one Running", running_and_ready);

    f.drop_watches();
    f.create_pod(pod("two", &node, COOPERATIVE, 2));
    wait_pod(
        &f,
        "two",
        "two Running after a dropped watch",
        running_and_ready,
    );

    // While the reflector cannot reach the watch, pod three is created and the history
    // compacted: its resumed watch gets the 410 ERROR event, and the relist finds three.
    f.fail_path_prefix("/api/v1/pods", 500);
    f.drop_watches();
    f.create_pod(pod("three", &node, COOPERATIVE, 2));
    f.compact_history();
    std::thread::sleep(Duration::from_millis(500));
    f.clear_faults();
    wait_pod(&f, "three", "three Running after a 410", running_and_ready);
    f.delete_pod("default", "one", Some(0));
    wait_for("one gone", Duration::from_secs(30), || {
        f.get_pod("default", "one").is_none().then_some(())
    });

    std::thread::sleep(Duration::from_secs(2));
    let rt = crate::daemon::runtime();
    use vk_cri::cri::Runtime;
    let sandboxes = d.sandboxes();
    let mut names: Vec<String> = sandboxes.iter().map(|s| s.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        ["three", "two"],
        "each pod once, the deleted one gone"
    );
    let containers = d.containers("c");
    assert_eq!(
        containers.len(),
        2,
        "no container started twice: {containers:?}"
    );
    assert!(containers
        .iter()
        .all(|c| c.state.enum_value_or_default() == ContainerState::CONTAINER_RUNNING));
    assert!(rt.version().is_ok());
    let lists = f
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/pods" && !r.query.contains("watch=true")
        })
        .count();
    assert!(
        lists >= 2,
        "the 410 made the reflector list again ({lists} lists)"
    );
}

#[test]
fn a_crash_looping_container_is_never_written_ready_after_a_restart() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "crashloop");
    d.start();
    f.create_pod(pod("crash", f.node_name(), "exit 1", 1));
    // Back-off 10 s, 20 s: the third start is ~30 s in.
    wait_for("two restarts", Duration::from_secs(60), || {
        f.get_pod("default", "crash").filter(|p| {
            field(p, "/status/containerStatuses/0/restartCount")
                .as_u64()
                .is_some_and(|n| n >= 2)
        })
    });
    let versions = f.versions(Res::Pods, "default", "crash");
    let mut restarted = false;
    for p in &versions {
        let restarts = field(p, "/status/containerStatuses/0/restartCount").as_u64();
        restarted |= restarts.is_some_and(|n| n >= 1);
        if !restarted {
            continue;
        }
        let ready = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(
            !ready && field(p, "/status/containerStatuses/0/ready") != true,
            "a restarted container that exits at once was written Ready:\n{p:#}\n{}",
            d.log()
        );
    }
    assert!(restarted && versions.len() > 3, "{versions:#?}");
}

#[test]
fn sigterm_writes_what_is_queued_and_leaves_the_pods_running() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-stop");
    d.start();
    f.create_pod(pod("stays", f.node_name(), COOPERATIVE, 2));
    wait_pod(&f, "stays", "stays Running and Ready", running_and_ready);
    let code = d.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15));
    let log = d.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("stopping: 1 pods keep running in the runtime; the next start adopts them"),
        "{log}"
    );
    let c = d.wait_running("c", Duration::from_secs(1));
    // Nothing was undone in the API server: the pod is Running and Ready, the node is there.
    assert!(running_and_ready(&f.get_pod("default", "stays").unwrap()));
    assert!(f.get_node(f.node_name()).is_some());

    let before = d.log().len();
    d.start();
    d.wait_log_since(before, "adopted from the runtime", Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        d.wait_running("c", Duration::from_secs(1)).id,
        c.id,
        "not restarted"
    );
}

#[test]
fn a_pod_deleted_while_the_daemon_was_down_is_cleaned_up() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-down");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod("lost", &node, COOPERATIVE, 2));
    wait_pod(&f, "lost", "lost Running", running_and_ready);
    d.kill();
    // Forced deletion while nobody runs the node: gone at once.
    f.delete_pod("default", "lost", Some(0));
    assert!(f.get_pod("default", "lost").is_none());
    d.start();
    d.wait_no_sandboxes(Duration::from_secs(30));
}

#[test]
fn a_restarted_daemon_does_not_rewrite_the_status_the_api_server_has() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-again");
    d.start();
    let node = f.node_name().to_string();
    f.create_pod(pod("kept", &node, COOPERATIVE, 2));
    wait_pod(&f, "kept", "kept Running", running_and_ready);
    let status_patches = |f: &FakeApiServer| {
        f.requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with("/pods/kept/status"))
            .count()
    };
    let lists = |f: &FakeApiServer| {
        f.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == "/api/v1/pods")
            .count()
    };
    d.kill();
    let before = status_patches(&f);
    let lists_before = lists(&f);
    d.start();
    // The restarted daemon lists the pod, adopts its running container and computes the same
    // status as the one it wrote before: the kubelet's status manager writes nothing then.
    wait_for(
        "the restarted daemon's pod list",
        Duration::from_secs(30),
        || (lists(&f) > lists_before).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        status_patches(&f),
        before,
        "no status write after the restart"
    );
    assert!(running_and_ready(&f.get_pod("default", "kept").unwrap()));
    // It still manages the pod: a deletion is carried out and its statuses written.
    f.delete_pod("default", "kept", Some(2));
    assert!(
        f.wait_for(Duration::from_secs(60), |v| v
            .get(Res::Pods, "default", "kept")
            .is_none()),
        "kept never went"
    );
    assert!(status_patches(&f) > before);
}

#[test]
fn image_pull_secrets_authenticate_the_pull_and_their_absence_gives_err_image_pull() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-auth");
    d.start();
    let node = f.node_name().to_string();
    let registry = env::var("VKCRI_AUTH_REGISTRY");
    let config = json!({"auths": {registry.clone(): {
        "username": env::var("VKCRI_AUTH_USER"), "password": env::var("VKCRI_AUTH_PASS")}}});
    use base64::Engine;
    f.create(
        Res::Secrets,
        "default",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "regcred", "namespace": "default"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config.to_string())}
        }),
    );
    let private = |name: &str, secret: bool| {
        let mut p = pod(name, &node, COOPERATIVE, 2);
        p["spec"]["containers"][0]["image"] = json!(env::var("VKCRI_AUTH_BUSYBOX_IMAGE"));
        p["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
        if secret {
            p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
        }
        p
    };
    f.create_pod(private("with-secret", true));
    f.create_pod(private("without", false));
    wait_pod(&f, "with-secret", "with-secret Running", running_and_ready);
    let failed = wait_pod(&f, "without", "without in ErrImagePull", |p| {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        matches!(
            w["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
    });
    let w = &failed["status"]["containerStatuses"][0]["state"]["waiting"];
    if w["reason"] == "ErrImagePull" {
        assert!(w["message"].as_str().unwrap_or("").contains("401"), "{w}");
    }
    let events = f.list(Res::Events, Some("default"));
    assert!(
        events.iter().any(|e| e["reason"] == "Failed" && e["message"].as_str().unwrap_or("").contains("401")),
        "a Failed event names the 401"
    );
}

#[test]
fn a_static_pod_appears_as_a_mirror_pod_with_its_status_and_goes_with_its_file() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-mirror");
    d.start();
    let node = f.node_name().to_string();
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    d.put_manifest(
        "static.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stat\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, {}]\n",
            serde_json::to_string(COOPERATIVE).unwrap()
        ),
    );
    let name = format!("stat-{node}");
    let mirror = wait_pod(&f, &name, "the mirror pod Running", running_and_ready);
    let ann = &mirror["metadata"]["annotations"];
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    assert_ne!(
        mirror["metadata"]["uid"], ann["kubernetes.io/config.hash"],
        "the mirror has a uid of its own"
    );
    assert_eq!(mirror["spec"]["nodeName"], node.as_str());
    // NodeRestriction admits only a mirror pod owned by the node's own Node object.
    let node_uid = f.get_node(&node).unwrap()["metadata"]["uid"].clone();
    assert_eq!(
        mirror["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid, "controller": true}])
    );
    assert!(mirror["spec"].get("serviceAccountName").is_none());
    // The mirror pod itself is not run: one container only.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(d.containers("c").len(), 1);

    d.remove_manifest("static.yaml");
    wait_for(
        "the mirror pod to be deleted",
        Duration::from_secs(30),
        || f.get_pod("default", &name).is_none().then_some(()),
    );
    d.wait_no_sandboxes(Duration::from_secs(10));
}

/// A fake API server that accepts the bootstrap token, a daemon started with only that token,
/// and the certificate signing request it made.
fn bootstrapping(tag: &str) -> (FakeApiServer, Daemon, Value) {
    let f = fake();
    let token = "abcdef.0123456789abcdef";
    f.add_bootstrap_token(token);
    let mut d = Daemon::with_bootstrap(&f, tag, token);
    d.start();
    let csr = wait_for(
        "the node's certificate signing request",
        Duration::from_secs(30),
        || f.list(Res::Csrs, None).into_iter().next(),
    );
    (f, d, csr)
}

#[test]
fn a_node_with_a_bootstrap_token_gets_its_certificate_and_joins_once_it_is_issued() {
    use std::os::unix::fs::PermissionsExt as _;
    let (f, mut d, csr) = bootstrapping("api-bootstrap");
    let name = csr["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert_eq!(csr["spec"]["username"], "system:bootstrap:abcdef");
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert_eq!(
        csr["spec"]["usages"],
        json!(["digital signature", "client auth"])
    );
    d.wait_log(
        &format!("kubectl certificate approve {name}"),
        Duration::from_secs(10),
    );
    // Nothing but the request while it waits: no Node, no other call as the bootstrap user.
    std::thread::sleep(Duration::from_millis(500));
    assert!(f.get_node(&d.node).is_none());
    for r in f.requests() {
        assert!(
            r.path
                .starts_with("/apis/certificates.k8s.io/v1/certificatesigningrequests"),
            "{} {} as {}",
            r.method,
            r.path,
            r.user
        );
        assert_eq!(r.user, "system:bootstrap:abcdef");
    }
    assert!(d.cert_dir().join("kubelet-client.key.tmp").exists());

    f.approve_and_issue_csr(&name, Duration::from_secs(3600));
    wait_for("the node to register", Duration::from_secs(30), || {
        f.get_node(&d.node)
    });
    d.wait_log("bootstrap done: client certificate", Duration::from_secs(5));
    let node_user = format!("system:node:{}", d.node);
    assert!(
        f.requests()
            .iter()
            .any(|r| r.path == "/api/v1/nodes" && r.method == "POST" && r.user == node_user),
        "registered as {node_user} with the issued certificate"
    );
    let current = d.cert_dir().join("kubelet-client-current.pem");
    let target = std::fs::read_link(&current).expect("the current pair is a link");
    assert!(target
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("kubelet-client-20"));
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !d.cert_dir().join("kubelet-client.key.tmp").exists(),
        "the pending key is gone"
    );
    let kubeconfig = std::fs::read_to_string(d.kubeconfig().unwrap()).unwrap();
    assert!(
        kubeconfig.contains(current.to_str().unwrap()),
        "{kubeconfig}"
    );

    // Restarted, it uses the kubeconfig it wrote: no second request.
    d.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let before = d.log().len();
    f.clear_requests();
    d.start();
    d.wait_log_since(
        before,
        "exists and is valid, skipping bootstrap",
        Duration::from_secs(10),
    );
    wait_for("a request as the node", Duration::from_secs(20), || {
        f.requests().into_iter().find(|r| r.user == node_user)
    });
    assert_eq!(f.list(Res::Csrs, None).len(), 1);
    assert!(f
        .requests()
        .iter()
        .all(|r| !r.path.contains("certificatesigningrequests")));
}

#[test]
fn a_denied_bootstrap_request_ends_the_daemon_with_the_reason() {
    let (f, mut d, csr) = bootstrapping("api-bootstrap-denied");
    let mut denied = csr.clone();
    denied["status"]["conditions"] = json!([{"type": "Denied", "status": "True",
        "reason": "NotOurs", "message": "this node is not expected"}]);
    let name = csr["metadata"]["name"].as_str().unwrap();
    f.modify(Res::Csrs, "", name, |o| *o = denied.clone());
    let code = d.wait_exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{}", d.log());
    assert!(
        d.log().contains("certificate signing request is denied, reason: NotOurs, message: this node is not expected"),
        "{}",
        d.log()
    );
    assert!(f.get_node(&d.node).is_none());
}

/// The DER of the first certificate in a CSR's `status.certificate`.
fn issued_der(csr: &Value) -> Vec<u8> {
    use base64::Engine as _;
    use rustls::pki_types::pem::PemObject as _;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(csr["status"]["certificate"].as_str().unwrap())
        .unwrap();
    rustls::pki_types::CertificateDer::from_pem_slice(&pem)
        .unwrap()
        .as_ref()
        .to_vec()
}

#[test]
fn a_bootstrapped_node_rotates_its_client_certificate_before_it_expires() {
    let (f, d, first) = bootstrapping("api-rotate");
    // Valid from a minute ago for 40 s more: renewed at 70-90 % of 100 s, 10-30 s from now.
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let first = f.approve_and_issue_csr(&first_name, Duration::from_secs(40));
    let issued_at = std::time::Instant::now();
    wait_for("the node to register", Duration::from_secs(30), || {
        f.get_node(&d.node)
    });
    let node_user = format!("system:node:{}", d.node);
    let second = wait_for("the rotation's request", Duration::from_secs(40), || {
        f.list(Res::Csrs, None)
            .into_iter()
            .find(|c| c["metadata"]["name"] != first_name.as_str())
    });
    assert!(
        issued_at.elapsed() >= Duration::from_secs(5),
        "not before 70 % of the lifetime: {:?}",
        issued_at.elapsed()
    );
    let second_name = second["metadata"]["name"].as_str().unwrap().to_string();
    assert!(
        second_name.starts_with("csr-"),
        "generateName csr-: {second_name}"
    );
    assert_eq!(
        second["spec"]["username"],
        node_user.as_str(),
        "asked as the node itself"
    );
    let second = f.approve_and_issue_csr(&second_name, Duration::from_secs(3600));
    d.wait_log("client certificate rotated", Duration::from_secs(20));
    let current = d.cert_dir().join("kubelet-client-current.pem");
    let pairs = std::fs::read_dir(d.cert_dir())
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy().into_owned();
            n.starts_with("kubelet-client-20")
        })
        .count();
    assert!(pairs >= 1, "pairs kept in --cert-dir");
    let text = std::fs::read_to_string(&current).unwrap();
    assert!(text.contains("PRIVATE KEY"), "{text}");
    // New connections carry the new certificate, without a restart: wait until a request is
    // made with it (the Lease is renewed every 10 s; pooled connections end on their own).
    let (old, new) = (issued_der(&first), issued_der(&second));
    wait_for(
        "a request with the rotated certificate",
        Duration::from_secs(40),
        || {
            f.requests()
                .into_iter()
                .find(|r| r.client_cert.as_deref() == Some(new.as_slice()) && r.status < 300)
        },
    );
    // The open watches end at their next event or bookmark (every 2 s here) and come back on
    // a new connection with the new pair, from where they were: no relist.
    let lists_before = f
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/pods" && !r.query.contains("watch=true")
        })
        .count();
    wait_for(
        "the pod watch on the rotated certificate",
        Duration::from_secs(20),
        || {
            f.requests().into_iter().find(|r| {
                r.path == "/api/v1/pods"
                    && r.query.contains("watch=true")
                    && r.client_cert.as_deref() == Some(new.as_slice())
            })
        },
    );
    let lists_after = f
        .requests()
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path == "/api/v1/pods" && !r.query.contains("watch=true")
        })
        .count();
    assert_eq!(lists_before, lists_after, "resumed, not listed again");
    f.clear_requests();
    // After the first certificate expired, the node still heartbeats.
    let expiry = Duration::from_secs(42);
    if let Some(left) = expiry.checked_sub(issued_at.elapsed()) {
        std::thread::sleep(left);
    }
    f.clear_requests();
    wait_for(
        "a Lease renewal after the first certificate expired",
        Duration::from_secs(30),
        || {
            f.requests()
                .into_iter()
                .find(|r| r.path.contains("/leases/") && r.method == "PUT" && r.status == 200)
        },
    );
    assert!(f
        .requests()
        .iter()
        .all(|r| r.client_cert.as_deref() != Some(old.as_slice()) || r.status < 300));
    assert_eq!(f.list(Res::Csrs, None).len(), 2, "one rotation");
}

/// The leaf certificate the kubelet API on `port` serves (trusting `ca`), or why the handshake
/// failed.
fn served_leaf(port: u16, ca: &str) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut tls = crate::kubelet_client::connect(port, ca, None);
    // Writing drives the handshake; its failure (no certificate, or one the CA did not sign
    // for 127.0.0.1) surfaces here.
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .and_then(|()| tls.flush())
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no peer certificate")?;
    Ok(leaf.as_ref().to_vec())
}

#[test]
fn a_node_asks_for_its_serving_certificate_and_serves_each_one_issued() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-serving");
    let cert_dir = d.dir.0.join("pki");
    d = d
        .arg("--rotate-server-certificates")
        .arg("--cert-dir")
        .arg(cert_dir.to_str().unwrap());
    d.start();
    let serving = |c: &Value| c["spec"]["signerName"] == "kubernetes.io/kubelet-serving";
    let first = wait_for(
        "the serving certificate's request",
        Duration::from_secs(30),
        || f.list(Res::Csrs, None).into_iter().find(serving),
    );
    let name = first["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("csr-"), "generateName csr-: {name}");
    assert_eq!(first["spec"]["username"], format!("system:node:{}", d.node));
    assert_eq!(
        first["spec"]["usages"],
        json!(["digital signature", "server auth"])
    );
    // The request names the node's addresses: its name and its InternalIP.
    let request = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(first["spec"]["request"].as_str().unwrap())
            .unwrap()
    };
    assert_eq!(
        vk_cri::certs::requested_sans(&request).unwrap(),
        [d.node.as_str(), "127.0.0.1"]
    );
    d.wait_log(
        &format!("kubectl certificate approve {name}"),
        Duration::from_secs(10),
    );
    // No certificate yet: every handshake fails, as the kubelet's.
    let ca = f.ca_pem();
    wait_for("the kubelet API to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", d.port)).ok()
    });
    let err = served_leaf(d.port, &ca).unwrap_err();
    assert!(!err.is_empty());

    // Issued for 30 s more (from a minute ago): renewed 3-21 s from now.
    let first = f.approve_and_issue_csr(&name, Duration::from_secs(30));
    let first_der = issued_der(&first);
    wait_for(
        "the first serving certificate",
        Duration::from_secs(20),
        || (served_leaf(d.port, &ca).ok()? == first_der).then_some(()),
    );
    let current = cert_dir.join("kubelet-server-current.pem");
    assert!(std::fs::read_link(&current)
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("kubelet-server-20"));

    let second = wait_for("the rotation's request", Duration::from_secs(40), || {
        f.list(Res::Csrs, None)
            .into_iter()
            .find(|c| serving(c) && c["metadata"]["name"] != name.as_str())
    });
    let second_name = second["metadata"]["name"].as_str().unwrap().to_string();
    let second_der = issued_der(&f.approve_and_issue_csr(&second_name, Duration::from_secs(3600)));
    d.wait_log("serving certificate rotated", Duration::from_secs(20));
    wait_for(
        "the rotated serving certificate",
        Duration::from_secs(20),
        || (served_leaf(d.port, &ca).ok()? == second_der).then_some(()),
    );

    // Restarted, it serves the stored pair at once and asks for nothing.
    d.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(20));
    let before = d.log().len();
    d.start();
    d.wait_log_since(
        before,
        "kubelet-server-current.pem until it is rotated",
        Duration::from_secs(20),
    );
    let served = wait_for(
        "the stored serving certificate",
        Duration::from_secs(20),
        || served_leaf(d.port, &ca).ok(),
    );
    assert_eq!(served, second_der);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(f.list(Res::Csrs, None).len(), 2, "no new request");
}

#[test]
fn a_node_shutdown_stops_regular_then_critical_pods_and_fails_them_as_the_kubelet_does() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-node-shutdown")
        .arg("--shutdown-grace-period=8s")
        .arg("--shutdown-grace-period-critical-pods=4s")
        .arg("--system-state-command=echo stopping");
    d.start();
    // PID 1 without a TERM handler: each container is killed at the end of its grace.
    let mut regular = pod("regular", f.node_name(), "sleep 3600", 30);
    regular["spec"]["containers"][0]["name"] = json!("regular");
    let mut critical = pod("critical", f.node_name(), "sleep 3600", 30);
    critical["spec"]["containers"][0]["name"] = json!("critical");
    critical["spec"]["priorityClassName"] = json!("system-node-critical");
    critical["spec"]["priority"] = json!(2_000_001_000);
    f.create_pod(regular);
    f.create_pod(critical);
    wait_pod(&f, "regular", "regular Running", running_and_ready);
    wait_pod(&f, "critical", "critical Running", running_and_ready);
    let signalled = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // Ready goes False at once with the kubelet's message.
    let node = wait_for("the node NotReady", Duration::from_secs(5), || {
        f.get_node(f.node_name()).filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "False")
        })
    });
    let ready = node["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["reason"], "KubeletNotReady");
    assert_eq!(ready["message"], "node is shutting down");
    // A pod that arrives now is refused, never started.
    f.create_pod(pod("late", f.node_name(), "sleep 3600", 30));
    let late = wait_pod(&f, "late", "late refused", |p| {
        field(p, "/status/phase") == "Failed"
    });
    assert_eq!(late["status"]["reason"], "NodeShutdown");
    assert_eq!(
        late["status"]["message"],
        "Pod was rejected: Pod was rejected as the node is shutting down."
    );
    assert!(late["status"].get("containerStatuses").is_none(), "{late}");
    let code = d.wait_exit_code(Duration::from_secs(20));
    assert_eq!(code, Some(0), "{}", d.log());
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(12), "within the grace: {took:?}");
    assert!(d.containers("late").is_empty());
    // Regular pods first (4 s of the 8), then the critical ones (4 s).
    let finished = |name: &str| {
        let c = d.containers(name).into_iter().next().unwrap();
        assert_eq!(
            c.state.enum_value_or_default(),
            vk_cri::cri::api::ContainerState::CONTAINER_EXITED,
            "{name}"
        );
        c.finished_at
    };
    let (r, c) = (finished("regular"), finished("critical"));
    assert!(
        c - r >= 3_000_000_000,
        "the critical pod stops after the regular one: {}ms apart",
        (c - r) / 1_000_000
    );
    for name in ["regular", "critical"] {
        let p = f.get_pod("default", name).unwrap();
        assert_eq!(field(&p, "/status/phase"), "Failed", "{name}");
        assert_eq!(field(&p, "/status/reason"), "Terminated", "{name}");
        assert_eq!(
            field(&p, "/status/message"),
            "Pod was terminated in response to imminent node shutdown.",
            "{name}"
        );
        let disruption = condition(&p, "DisruptionTarget").unwrap_or_else(|| panic!("{name}: {p}"));
        assert_eq!(disruption["status"], "True");
        assert_eq!(disruption["reason"], "TerminationByKubelet");
    }
    assert!(d
        .log()
        .contains("the node shuts down: stopping its pods within 8s (4s for critical pods)"));
}

#[test]
fn a_plain_stop_with_shutdown_handling_on_leaves_the_pods_running() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-plain-stop")
        .arg("--shutdown-grace-period=8s")
        .arg("--system-state-command=echo running");
    d.start();
    f.create_pod(pod("stays", f.node_name(), COOPERATIVE, 2));
    wait_pod(&f, "stays", "stays Running and Ready", running_and_ready);
    let code = d.stop_with(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(15));
    assert_eq!(code, Some(0), "{}", d.log());
    assert!(
        d.log().contains("stopping: 1 pods keep running"),
        "{}",
        d.log()
    );
    d.wait_running("c", Duration::from_secs(1));
    assert!(running_and_ready(&f.get_pod("default", "stays").unwrap()));
}

#[test]
fn a_runtime_class_names_the_sandboxs_handler_and_an_unknown_one_is_the_kubelets_error() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-rtclass");
    let node = f.node_name().to_string();
    // The dev environment's containerd has runc under the name runc-alt too.
    for (name, handler) in [("alt", "runc-alt"), ("gone", "runc")] {
        f.create(
            Res::RuntimeClasses,
            "",
            json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
                   "metadata": {"name": name}, "handler": handler,
                   "overhead": {"podFixed": {"cpu": "10m"}}}),
        );
    }
    let mut p = pod("rc-alt", &node, COOPERATIVE, 1);
    p["spec"]["runtimeClassName"] = json!("alt");
    let created = f.create_pod(p);
    // RuntimeClass admission copied the overhead.
    assert_eq!(created["spec"]["overhead"], json!({"cpu": "10m"}));
    // Admission refuses a pod of a class that does not exist (fixture 15h)…
    let mut p = pod("rc-none", &node, COOPERATIVE, 1);
    p["spec"]["runtimeClassName"] = json!("none");
    assert_eq!(
        f.try_create_pod(p).unwrap_err()["message"],
        "pods \"rc-none\" is forbidden: pod rejected: RuntimeClass \"none\" not found"
    );
    // …so the node meets an unknown class only when it was deleted after the pod was admitted.
    let mut p = pod("rc-gone", &node, COOPERATIVE, 1);
    p["spec"]["runtimeClassName"] = json!("gone");
    f.create_pod(p);
    assert!(f.delete(Res::RuntimeClasses, "", "gone"));
    d.start();

    wait_pod(&f, "rc-alt", "rc-alt running", running_and_ready);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let sb = d
        .sandboxes()
        .into_iter()
        .find(|s| s.labels.get("io.kubernetes.pod.uid") == Some(&uid))
        .expect("the sandbox");
    assert_eq!(sb.runtime_handler, "runc-alt");
    let event = wait_for("FailedCreatePodSandBox", Duration::from_secs(30), || {
        f.list(Res::Events, Some("default")).into_iter().find(|e| {
            e["involvedObject"]["name"] == "rc-gone" && e["reason"] == "FailedCreatePodSandBox"
        })
    });
    assert_eq!(
        event["message"],
        "Failed to create pod sandbox: runtimeclass.node.k8s.io \"gone\" not found"
    );
    assert_eq!(
        f.get_pod("default", "rc-gone").unwrap()["status"]["phase"],
        "Pending"
    );
}

/// The pod cgroup has the kubelet's pod-level settings before the sandbox starts: a Guaranteed
/// pod's limits plus its RuntimeClass's overhead (copied into `spec.overhead` at admission),
/// shares from the requests plus the overhead; a Burstable pod without memory limits gets none.
#[test]
fn the_pod_cgroup_holds_the_pods_limits_and_its_runtime_class_overhead() {
    let f = fake();
    let mut d = Daemon::with_api(&f, "api-podcg");
    let node = f.node_name().to_string();
    f.create(
        Res::RuntimeClasses,
        "",
        json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
               "metadata": {"name": "vm-like"}, "handler": "runc-alt",
               "overhead": {"podFixed": {"cpu": "100m", "memory": "16Mi"}}}),
    );
    let mut g = pod("cg-guaranteed", &node, COOPERATIVE, 1);
    g["spec"]["runtimeClassName"] = json!("vm-like");
    g["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "500m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "64Mi"}});
    let g = f.create_pod(g);
    let mut b = pod("cg-burstable", &node, COOPERATIVE, 1);
    b["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "250m"}});
    let b = f.create_pod(b);
    d.start();
    wait_pod(&f, "cg-guaranteed", "guaranteed running", running_and_ready);
    wait_pod(&f, "cg-burstable", "burstable running", running_and_ready);

    let uid = |p: &Value| p["metadata"]["uid"].as_str().unwrap().to_string();
    let fs = std::path::Path::new("/sys/fs/cgroup");
    let v2 = fs.join("cgroup.controllers").exists();
    let read = |controller: &str, dir: &str, file: &str| {
        let path = if v2 {
            fs.join(dir).join(file)
        } else {
            fs.join(controller).join(dir).join(file)
        };
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .to_string()
    };
    let gdir = format!("vk-cri/pod{}", uid(&g));
    let bdir = format!("vk-cri/burstable/pod{}", uid(&b));
    // 500m + 100m overhead: 614 shares, a 60 ms quota; 64Mi + 16Mi of memory.
    if v2 {
        assert_eq!(read("", &gdir, "cpu.weight"), "24");
        assert_eq!(read("", &gdir, "cpu.max"), "60000 100000");
        assert_eq!(read("", &gdir, "memory.max"), (80u64 << 20).to_string());
        assert_eq!(read("", &bdir, "memory.max"), "max");
        assert_eq!(read("", &bdir, "cpu.max"), "max 100000");
    } else {
        assert_eq!(read("cpu", &gdir, "cpu.shares"), "614");
        assert_eq!(read("cpu", &gdir, "cpu.cfs_quota_us"), "60000");
        assert_eq!(read("cpu", &gdir, "cpu.cfs_period_us"), "100000");
        assert_eq!(
            read("memory", &gdir, "memory.limit_in_bytes"),
            (80u64 << 20).to_string()
        );
        assert_eq!(read("cpu", &bdir, "cpu.shares"), "256");
        assert_eq!(read("cpu", &bdir, "cpu.cfs_quota_us"), "-1");
        let unlimited: u64 = read("memory", &bdir, "memory.limit_in_bytes")
            .parse()
            .unwrap();
        assert!(unlimited > 1 << 50, "no memory limit: {unlimited}");
    }
    // The sandbox and the container run inside it (one cgroup each, with processes).
    let pod_dir = if v2 {
        fs.join(&gdir)
    } else {
        fs.join("cpu").join(&gdir)
    };
    let busy = std::fs::read_dir(&pod_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter(|e| {
            std::fs::read_to_string(e.path().join("cgroup.procs"))
                .is_ok_and(|p| !p.trim().is_empty())
        })
        .count();
    assert_eq!(
        busy,
        2,
        "sandbox and container cgroups under {}",
        pod_dir.display()
    );
    drop(d);
}

/// Node-pressure eviction as the kubelet's: with `memory.available` below a soft threshold
/// (here one above anything available, so the node is under pressure from the start) the Node
/// reports MemoryPressure; after the grace period it gets EvictionThresholdMet and the pod using the most
/// memory above its request goes first — Failed, reason Evicted, the kubelet's message and
/// DisruptionTarget —, the next one a round (10 s) later, one at a time; a new BestEffort pod
/// is refused at admission.
#[test]
fn under_memory_pressure_the_biggest_user_over_its_request_is_evicted_first() {
    let f = fake();
    let total_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("MemTotal");
    let threshold = format!("{total_kib}Ki");
    // Soft, with a grace period: the condition comes at once, evictions only once the pods run
    // (a pod without stats yet would be ranked first, as the kubelet ranks it).
    let mut d = Daemon::with_api(&f, "api-evict")
        .arg(&format!("--eviction-soft=memory.available<{threshold}"))
        .arg("--eviction-soft-grace-period=memory.available=5s");
    let node = f.node_name().to_string();
    // 48 MiB in the sandbox's /dev/shm, charged to the hog's cgroup.
    let mut hog = pod(
        "hog",
        &node,
        "dd if=/dev/zero of=/dev/shm/fill bs=1M count=48 2>/dev/null; trap 'exit 0' TERM; while true; do sleep 0.2; done",
        1,
    );
    hog["spec"]["containers"][0]["name"] = json!("hog");
    hog["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("256Mi");
    f.create_pod(hog);
    f.create_pod(pod("quiet", &node, COOPERATIVE, 1));
    d.start();

    let node_obj = wait_for("MemoryPressure True", Duration::from_secs(30), || {
        f.get(Res::Nodes, "", &node).filter(|n| {
            n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "MemoryPressure" && c["status"] == "True")
            })
        })
    });
    let mp = node_obj["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "MemoryPressure")
        .unwrap()
        .clone();
    assert_eq!(mp["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(mp["message"], "kubelet has insufficient memory available");

    let evicted = |p: &Value| field(p, "/status/reason") == "Evicted";
    let hog = wait_pod(&f, "hog", "the hog evicted", evicted);
    let at_hog = std::time::Instant::now();
    assert_eq!(field(&hog, "/status/phase"), "Failed");
    let message = field(&hog, "/status/message").as_str().unwrap().to_string();
    let prefix = format!(
        "The node was low on resource: memory. Threshold quantity: {threshold}, available: "
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(
        message.contains(". Container hog was using ")
            && message.ends_with(", request is 8Mi, has larger consumption of memory. "),
        "{message}"
    );
    let disruption = hog["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .cloned()
        .expect("DisruptionTarget");
    assert_eq!(disruption["status"], "True");
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    assert_eq!(disruption["message"], message.as_str());
    assert_ne!(
        field(&f.get_pod("default", "quiet").unwrap(), "/status/reason"),
        "Evicted",
        "one pod per round: the quiet one is still there when the hog goes"
    );
    let events = f.list(Res::Events, Some("default"));
    assert!(
        events.iter().any(|e| e["involvedObject"]["name"] == "hog"
            && e["reason"] == "Evicted"
            && e["message"] == message.as_str()),
        "the Evicted event"
    );
    assert!(
        events.iter().any(|e| e["involvedObject"]["kind"] == "Node"
            && e["reason"] == "EvictionThresholdMet"
            && e["message"] == "Attempting to reclaim memory"),
        "the Node's EvictionThresholdMet event"
    );

    // A BestEffort pod is refused while the node is under memory pressure.
    let mut late = pod("late", &node, COOPERATIVE, 1);
    late["spec"]["containers"][0]["resources"] = json!({});
    late["spec"]["tolerations"] = json!([]);
    f.create_pod(late);
    let late = wait_pod(&f, "late", "the BestEffort pod refused", |p| {
        field(p, "/status/phase") == "Failed"
    });
    assert_eq!(field(&late, "/status/reason"), "Evicted");
    assert_eq!(
        field(&late, "/status/message"),
        "Pod was rejected: The node had condition: [MemoryPressure]. "
    );
    assert!(d.containers("late").is_empty());

    // The pressure stays: the next pod goes a round later.
    wait_pod(&f, "quiet", "the quiet pod evicted next", evicted);
    assert!(
        at_hog.elapsed() >= Duration::from_secs(5),
        "one eviction per 10 s round, took {:?}",
        at_hog.elapsed()
    );

    // A restarted daemon knows the evictions only from the API server: the evicted pods stay
    // Failed/Evicted and are not started again (the kubelet's syncPod on a terminal phase).
    d.kill();
    d.start();
    // Pods are synced as the first list brings them: once a pod created after the restart
    // runs, the evicted ones have been seen.
    f.create_pod(pod("after", &node, COOPERATIVE, 1));
    wait_pod(&f, "after", "a new pod synced after the restart", |p| {
        // Running, or evicted in turn (a pod without stats yet is ranked first).
        field(p, "/status/phase") == "Running" || field(p, "/status/reason") == "Evicted"
    });
    for name in ["hog", "quiet"] {
        let p = f.get_pod("default", name).unwrap();
        assert_eq!(field(&p, "/status/phase"), "Failed", "{name}");
        assert_eq!(field(&p, "/status/reason"), "Evicted", "{name}");
        assert_eq!(
            field(&p, "/status/containerStatuses/0/restartCount"),
            0,
            "{name} not restarted"
        );
        assert!(
            d.containers(name)
                .iter()
                .all(|c| c.state.enum_value_or_default() != ContainerState::CONTAINER_RUNNING),
            "{name}: no container running again"
        );
    }
    drop(d);
}

/// A small tmpfs as nodefs (the daemon's pods, logs and volumes directories on it; the images
/// on containerd's own filesystem, so no image is removed for it): a pod filling an emptyDir
/// brings `nodefs.available` under its hard threshold, the Node reports DiskPressure and that
/// pod — the largest user of logs and local volumes — is evicted with the kubelet's message;
/// its volume goes with it, which ends the pressure, so the other pod stays.
#[test]
fn under_disk_pressure_the_pod_filling_nodefs_is_evicted_and_the_others_stay() {
    let f = fake();
    let disk = env::Tmpfs::mount("nodefs", 16);
    let mut d = Daemon::with_api(&f, "api-diskp")
        .data_dir(disk.path())
        .arg("--eviction-hard=nodefs.available<50%");
    let node = f.node_name().to_string();
    let mut writer = pod(
        "writer",
        &node,
        "sleep 3; dd if=/dev/zero of=/data/fill bs=1M count=10 2>/dev/null; trap 'exit 0' TERM; while true; do sleep 0.2; done",
        1,
    );
    writer["spec"]["containers"][0]["name"] = json!("writer");
    writer["spec"]["containers"][0]["volumeMounts"] =
        json!([{"name": "data", "mountPath": "/data"}]);
    writer["spec"]["volumes"] = json!([{"name": "data", "emptyDir": {}}]);
    f.create_pod(writer);
    f.create_pod(pod("steady", &node, COOPERATIVE, 1));
    d.start();
    wait_pod(&f, "steady", "steady running", running_and_ready);

    let writer = wait_pod(&f, "writer", "the writer evicted", |p| {
        field(p, "/status/reason") == "Evicted"
    });
    assert_eq!(field(&writer, "/status/phase"), "Failed");
    let message = field(&writer, "/status/message").as_str().unwrap();
    assert!(
        message.starts_with(
            "The node was low on resource: ephemeral-storage. Threshold quantity: 8Mi, available: "
        ) && message.contains(". Container writer was using ")
            && message.ends_with(", request is 0, has larger consumption of ephemeral-storage. "),
        "{message}"
    );
    let node_obj = f.get(Res::Nodes, "", &node).unwrap();
    assert!(
        node_obj["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "DiskPressure" && c["status"] == "True"),
        "{node_obj}"
    );
    // The writer's emptyDir is gone with it: the pressure is over and nothing else goes.
    std::thread::sleep(Duration::from_secs(12));
    let steady = f.get_pod("default", "steady").unwrap();
    assert!(running_and_ready(&steady), "{steady}");
    let log = d.log();
    assert!(
        !log.contains("attempting to delete unused images"),
        "no image removed for a nodefs of its own: {log}"
    );
    drop(d);
}
