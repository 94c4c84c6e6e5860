//! The pod lifecycle event generator: notices runtime changes and pods nobody owns any more.
//!
//! Owns the cheap periodic relist of this node's sandboxes and containers (two CRI list calls a
//! second: containerd 1.6 has no container events) that wakes the worker of every pod whose
//! runtime state changed and confirms the unchanged ones to the [`RuntimeCache`], and the
//! housekeeping of orphans: sandboxes with this node's owner label whose pod no source knows
//! (deleted while vk-cri was down, or left behind by a failed cleanup) are stopped as the kubelet
//! stops them (each running container with a 2 s shutdown window, then the sandbox) and removed,
//! once every pod source has delivered its first full view.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protobuf::Enum as _;

use super::cache::{self, RuntimeCache};
use super::worker::PodWorkers;
use crate::clock::Clock;
use crate::cri::{api, CriError, Runtime};
use crate::pod::labels;
use crate::source::SourcesReady;

/// A sandbox of this node as a relist sees it: enough to name and remove it.
#[derive(Clone, Debug, PartialEq)]
pub struct RelistedSandbox {
    pub id: String,
    pub pod_name: String,
    pub pod_namespace: String,
}

/// What one relist saw: a fingerprint of each pod's runtime state, by pod UID, and the
/// sandboxes of each pod.
#[derive(Debug, Default, PartialEq)]
pub struct Relist {
    pub fingerprints: BTreeMap<String, u64>,
    pub sandboxes: BTreeMap<String, Vec<RelistedSandbox>>,
}

/// Lists this node's sandboxes and containers and fingerprints each pod's state.
///
/// It runs every second, so it asks for the slim lists (`proto/relist.proto`: ids, the pod's
/// metadata and the states; labels, annotations and images are skipped on the wire side of the
/// decoder, which with 500 pods was most of the daemon's idle CPU) and moves the strings it
/// keeps out of the responses. A sandbox without its pod's uid is skipped, as the workers'
/// observations skip it; a container belongs to the pod of its sandbox (one created between
/// the two calls, its sandbox not yet listed, waits for the next relist).
pub fn relist(runtime: &dyn Runtime, node_name: &str) -> Result<Relist, CriError> {
    let owner = labels::owner_selector(node_name);
    let mut states: BTreeMap<String, Vec<(String, i32)>> = BTreeMap::new();
    let mut pod_of: HashMap<String, String> = HashMap::new();
    let mut out = Relist::default();
    for sb in runtime.relist_pod_sandboxes(&owner)? {
        let Some(m) = sb.metadata.into_option() else {
            continue;
        };
        if m.uid.is_empty() {
            continue;
        }
        let state = api::PodSandboxState::from_i32(sb.state)
            .unwrap_or(api::PodSandboxState::SANDBOX_NOTREADY);
        states
            .entry(m.uid.clone())
            .or_default()
            .push((sb.id.clone(), state as i32));
        pod_of.insert(sb.id.clone(), m.uid.clone());
        out.sandboxes
            .entry(m.uid)
            .or_default()
            .push(RelistedSandbox {
                id: sb.id,
                pod_name: m.name,
                pod_namespace: m.namespace,
            });
    }
    for c in runtime.relist_containers(&owner)? {
        let Some(uid) = pod_of.get(&c.pod_sandbox_id) else {
            continue;
        };
        let state = api::ContainerState::from_i32(c.state)
            .unwrap_or(api::ContainerState::CONTAINER_UNKNOWN);
        states
            .entry(uid.clone())
            .or_default()
            .push((c.id, state as i32 + cache::CONTAINER_STATE));
    }
    for (uid, s) in states {
        let print = cache::fingerprint(s.iter().map(|(id, st)| (id.as_str(), *st)).collect());
        out.fingerprints.insert(uid, print);
    }
    Ok(out)
}

/// The pods whose fingerprint differs between two relists (appeared, changed or vanished).
pub fn changed(old: &BTreeMap<String, u64>, new: &BTreeMap<String, u64>) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(uid, fp)| old.get(*uid) != Some(fp))
        .map(|(uid, _)| uid.clone())
        .collect();
    out.extend(old.keys().filter(|uid| !new.contains_key(*uid)).cloned());
    out
}

/// The kubelet's shutdown window for an orphan's containers: it kills a runtime pod no source
/// knows with a grace period override of 1 s, raised to its minimum of 2 s
/// (`SyncTerminatingRuntimePod`, `killContainer`); the spec, and so any preStop hook, is gone.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// Stops an orphaned pod the way the kubelet does: its running containers first, in parallel,
/// with `StopContainer` and [`ORPHAN_GRACE`] (SIGTERM, SIGKILL after the window), then every
/// sandbox is stopped and removed, and its log directory. Whether all of it is gone.
fn collect_orphan(
    runtime: &dyn Runtime,
    node_name: &str,
    uid: &str,
    sandboxes: &[RelistedSandbox],
    log_root: &std::path::Path,
) -> bool {
    let Some(first) = sandboxes.first() else {
        return true;
    };
    let key = format!("{}/{}", first.pod_namespace, first.pod_name);
    log::info!(
        "stopping pod {key} (uid {uid}, {} sandbox(es)): no pod source knows it",
        sandboxes.len()
    );
    let running: Vec<String> = match runtime
        .list_containers(&labels::pod_selector(node_name, uid), None)
    {
        Ok(cs) => cs
            .into_iter()
            .filter(|c| c.state.enum_value_or_default() == api::ContainerState::CONTAINER_RUNNING)
            .map(|c| c.id)
            .collect(),
        Err(e) => {
            log::warn!("orphan {key}: {e}");
            return false;
        }
    };
    let mut all = true;
    std::thread::scope(|s| {
        let stops: Vec<_> = running
            .iter()
            .map(|id| s.spawn(move || (id, runtime.stop_container(id, ORPHAN_GRACE))))
            .collect();
        for stop in stops {
            if let Ok((id, Err(e))) = stop.join() {
                if !e.is_not_found() {
                    log::warn!("orphan {key}: container {}: {e}", crate::cri::short_id(id));
                    all = false;
                }
            }
        }
    });
    if !all {
        return false;
    }
    for sb in sandboxes {
        log::info!(
            "removing sandbox {} of pod {key} (uid {uid}): no pod source knows it",
            crate::cri::short_id(&sb.id)
        );
        if let Err(e) = runtime.stop_pod_sandbox(&sb.id) {
            if !e.is_not_found() {
                log::warn!("orphan {key}: {e}");
                all = false;
                continue;
            }
        }
        if let Err(e) = runtime.remove_pod_sandbox(&sb.id) {
            if !e.is_not_found() {
                log::warn!("orphan {key}: {e}");
                all = false;
                continue;
            }
        }
        let dir = log_root.join(format!("{}_{}_{uid}", sb.pod_namespace, sb.pod_name));
        let _ = std::fs::remove_dir_all(dir);
    }
    all
}

/// What else to remove for an orphaned pod UID once its sandboxes are gone (its volumes, its
/// pod directory).
pub type OrphanCleanup = Arc<dyn Fn(&str) + Send + Sync>;

/// Relists every `interval` on a thread named `pleg`: pokes the workers of changed pods, tells
/// the runtime cache what each relist confirmed, and collects orphans once `ready`. `clock` must
/// be the pod syncer's: the cache compares a relist's time with the syncer's present.
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    runtime: Arc<dyn Runtime>,
    cache: Arc<RuntimeCache>,
    node_name: String,
    log_root: PathBuf,
    workers: PodWorkers,
    ready: SourcesReady,
    interval: Duration,
    on_orphan: OrphanCleanup,
    clock: Arc<dyn Clock>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pleg".into())
        .spawn(move || {
            let mut last: Arc<BTreeMap<String, u64>> = Arc::default();
            let mut failing = false;
            // A pod must be seen orphaned twice in a row: the first time, its source's event may
            // still be on its way to the workers.
            let mut suspects: HashMap<String, u32> = HashMap::new();
            // Orphans whose cleanup runs now, each on its own thread.
            let collecting: Arc<Mutex<HashSet<String>>> = Arc::default();
            loop {
                let started = clock.monotonic();
                match relist(runtime.as_ref(), &node_name) {
                    Err(e) => {
                        cache.relist_failed();
                        if !failing {
                            log::warn!("relist failed: {e}");
                            failing = true;
                        }
                    }
                    Ok(now) => {
                        if failing {
                            log::info!("relist works again");
                            failing = false;
                        }
                        let prints = Arc::new(now.fingerprints);
                        cache.relisted(started, prints.clone());
                        for uid in changed(&last, &prints) {
                            workers.poke(&uid);
                        }
                        if ready.all_ready() {
                            let active = workers.active();
                            suspects.retain(|uid, _| now.sandboxes.contains_key(uid));
                            for (uid, sandboxes) in &now.sandboxes {
                                if active.contains(uid) {
                                    suspects.remove(uid);
                                    continue;
                                }
                                let seen = suspects.entry(uid.clone()).or_insert(0);
                                *seen += 1;
                                if *seen >= 2 && collecting.lock().unwrap().insert(uid.clone()) {
                                    // On its own thread: the shutdown window must not hold up
                                    // the relist of the other pods.
                                    let (runtime, node, logs, done, working) = (
                                        runtime.clone(),
                                        node_name.clone(),
                                        log_root.clone(),
                                        on_orphan.clone(),
                                        collecting.clone(),
                                    );
                                    let (id, sbs) = (uid.clone(), sandboxes.clone());
                                    let spawned = std::thread::Builder::new()
                                        .name("orphan".into())
                                        .spawn(move || {
                                            if collect_orphan(
                                                runtime.as_ref(),
                                                &node,
                                                &id,
                                                &sbs,
                                                &logs,
                                            ) {
                                                done(&id);
                                            }
                                            working.lock().unwrap().remove(&id);
                                        });
                                    if let Err(e) = spawned {
                                        log::warn!("orphan {uid}: cannot start its cleanup: {e}");
                                        collecting.lock().unwrap().remove(uid);
                                    }
                                    suspects.remove(uid);
                                }
                            }
                        }
                        last = prints;
                    }
                }
                clock.sleep(interval);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_include_new_changed_and_vanished_pods() {
        let old: BTreeMap<String, u64> = [("a".into(), 1), ("b".into(), 2), ("c".into(), 3)].into();
        let new: BTreeMap<String, u64> = [("a".into(), 1), ("b".into(), 5), ("d".into(), 4)].into();
        let mut got = changed(&old, &new);
        got.sort();
        assert_eq!(got, ["b", "c", "d"]);
        assert!(changed(&new, &new).is_empty());
    }

    #[test]
    fn relist_fingerprints_follow_the_runtime() {
        use crate::cri::fake::FakeRuntime;
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let node = crate::pod::translate::NodeContext::new("node-a");
        let cfg = crate::pod::translate::sandbox_config(&pod, &node, 0).unwrap();
        let sb = rt.run_pod_sandbox(&cfg, "").unwrap();
        let first = relist(&rt, "node-a").unwrap();
        assert_eq!(first.fingerprints.keys().collect::<Vec<_>>(), ["u1"]);
        assert!(
            relist(&rt, "node-b").unwrap().fingerprints.is_empty(),
            "another node's pods are not ours"
        );
        assert_eq!(relist(&rt, "node-a").unwrap(), first, "nothing changed");
        rt.stop_pod_sandbox(&sb).unwrap();
        let second = relist(&rt, "node-a").unwrap();
        assert_eq!(changed(&first.fingerprints, &second.fingerprints), ["u1"]);
    }

    #[test]
    fn an_orphan_gets_the_kubelets_shutdown_window_before_its_sandbox_stops() {
        use crate::cri::fake::{Call, FakeRuntime};
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {"containers": [{"name": "a", "image": "busybox"}, {"name": "b", "image": "busybox"}]}
        }))
        .unwrap();
        let node = crate::pod::translate::NodeContext::new("node-a");
        let cfg = crate::pod::translate::sandbox_config(&pod, &node, 0).unwrap();
        let sb = rt.run_pod_sandbox(&cfg, "").unwrap();
        let mut ids = Vec::new();
        for name in ["a", "b"] {
            let mut c = api::ContainerConfig::new();
            c.metadata = Some(api::ContainerMetadata {
                name: name.into(),
                ..Default::default()
            })
            .into();
            c.image = Some(api::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            })
            .into();
            c.labels = labels::container_labels(&pod, name, "node-a");
            let id = rt.create_container(&sb, &c, &cfg).unwrap();
            rt.start_container(&id).unwrap();
            ids.push(id);
        }
        rt.exit_container(&ids[1], 0);
        let listed = relist(&rt, "node-a").unwrap();
        rt.take_calls();

        let logs = std::env::temp_dir().join(format!("vk-cri-orphan-{}", std::process::id()));
        assert!(collect_orphan(
            &rt,
            "node-a",
            "u1",
            &listed.sandboxes["u1"],
            &logs
        ));
        let calls: Vec<Call> = rt
            .take_calls()
            .into_iter()
            .filter(|c| !matches!(c, Call::ListContainers))
            .collect();
        assert_eq!(
            calls,
            [
                Call::StopContainer {
                    id: ids[0].clone(),
                    timeout_secs: 2
                },
                Call::StopPodSandbox(sb.clone()),
                Call::RemovePodSandbox(sb.clone()),
            ],
            "only the running container is stopped, with 2 s, before its sandbox"
        );
    }
}
