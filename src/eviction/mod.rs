//! Node-pressure eviction, as the kubelet's eviction manager: every 10 s the node's signals
//! are observed — `memory.available` (capacity less the root cgroup's working set, as cAdvisor
//! computes it), `nodefs.available`/`nodefs.inodesFree` (the filesystem of `--pods-dir`),
//! `imagefs.available`/`imagefs.inodesFree` (the filesystem CRI `ImageFsInfo` names),
//! `pid.available` — and compared with the thresholds ([`core`]). The node conditions
//! MemoryPressure/DiskPressure/PIDPressure follow (the node agent reads them from [`Shared`]; the
//! node lifecycle controller adds the matching taints); pods are refused under pressure as the
//! kubelet's admission does; and when a threshold is to be reclaimed, the Node gets
//! `EvictionThresholdMet`, a disk signal first removes unused images, and if that is not enough
//! one pod — the first in the kubelet's ranking, never a critical or static one — is evicted:
//! the syncer stops it (grace 0 for a hard threshold, `--eviction-max-pod-grace-period` for a
//! soft one) and reports it Failed, reason `Evicted`, with the kubelet's message and the
//! `DisruptionTarget` condition. One pod per round, as the kubelet.
//!
//! Owns: the observations and pod usage read from the host and the runtime (only under
//! pressure: an idle round is one host sample and one statfs), [`Shared`] (conditions and the
//! evictions asked for, read by the node agent and the syncer), the `eviction` thread
//! ([`spawn`]).

pub mod core;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

use self::core::{Condition, Manager, Observation, Observations, PodUsage, Signal, Threshold};
use crate::clock::Clock;
use crate::cri::{Labels, Runtime};
use crate::node::events::EventType;
use crate::node::stats::{FsSample, HostStats};
use crate::report::PodReporter;

/// The kubelet's eviction monitoring interval (`evictionMonitoringPeriod`).
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The eviction manager's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub thresholds: Vec<Threshold>,
    /// `--eviction-pressure-transition-period` (5m).
    pub pressure_transition_period: Duration,
    /// `--eviction-max-pod-grace-period` (0): the grace of a pod evicted for a soft threshold;
    /// negative: the pod's own.
    pub max_pod_grace_period: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            thresholds: core::parse_thresholds(&core::default_hard(), &[], &[], &[])
                .unwrap_or_default(),
            pressure_transition_period: Duration::from_secs(300),
            max_pod_grace_period: 0,
        }
    }
}

impl Config {
    /// The hard thresholds as the Node's allocatable holds them back (the kubelet's
    /// `hardEvictionReservation`: memory and nodefs), and as the node agent's fallback pressure.
    pub fn allocatable_thresholds(&self) -> crate::node::spec::EvictionThresholds {
        use crate::node::spec::Threshold as Held;
        let held = |signal: Signal| {
            self.thresholds
                .iter()
                .find(|t| t.hard && t.signal == signal)
                .map(|t| match &t.value {
                    core::Value::Quantity(q, _) => Held::Absolute(u64::try_from(*q).unwrap_or(0)),
                    core::Value::Percentage(p) => {
                        Held::Percent((f64::from(*p) * 100.0).round().clamp(0.0, 100.0) as u8)
                    }
                })
        };
        crate::node::spec::EvictionThresholds {
            memory_available: held(Signal::MemoryAvailable),
            nodefs_available: held(Signal::NodeFsAvailable),
            nodefs_inodes_free: held(Signal::NodeFsInodesFree),
            pid_available: held(Signal::PidAvailable),
        }
    }
}

/// A pod the manager wants evicted: why, and within what grace (`None`: its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    pub message: String,
    pub grace: Option<Duration>,
}

/// What the manager tells the rest of the daemon.
#[derive(Debug, Default)]
pub struct Shared {
    conditions: Mutex<BTreeSet<Condition>>,
    evictions: Mutex<HashMap<String, Eviction>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// The node's pressure as the Node's conditions show it.
    pub fn pressure(&self) -> crate::node::spec::Pressure {
        let c = lock(&self.conditions);
        crate::node::spec::Pressure {
            memory: c.contains(&Condition::MemoryPressure),
            disk: c.contains(&Condition::DiskPressure),
            pid: c.contains(&Condition::PidPressure),
        }
    }

    /// The kubelet's eviction admission for a new pod ([`core::admit`]).
    pub fn admit(&self, pod: &Pod) -> Result<(), String> {
        core::admit(pod, &lock(&self.conditions))
    }

    /// The eviction asked for the pod of `uid`, if any.
    pub fn eviction(&self, uid: &str) -> Option<Eviction> {
        lock(&self.evictions).get(uid).cloned()
    }

    /// The pod of `uid` is gone: forget its eviction.
    pub fn forget(&self, uid: &str) {
        lock(&self.evictions).remove(uid);
    }

    fn set_conditions(&self, c: BTreeSet<Condition>) {
        *lock(&self.conditions) = c;
    }

    fn request(&self, uid: &str, e: Eviction) {
        lock(&self.evictions).insert(uid.to_string(), e);
    }
}

/// The pods the manager may evict (the kubelet's active pods) and how to act on one.
pub trait ActivePods: Send + Sync {
    /// Pods that are admitted and not terminal.
    fn active(&self) -> Vec<Arc<Pod>>;
    /// Makes the pod's worker look at it again now (to carry out its eviction).
    fn poke(&self, uid: &str);
}

/// What the manager needs besides the pods: the host, the runtime, where pods keep their logs
/// and volumes, image GC for disk pressure.
pub struct Edges {
    pub host: Arc<dyn HostStats>,
    pub runtime: Arc<dyn Runtime>,
    pub reporter: Arc<dyn PodReporter>,
    pub clock: Arc<dyn Clock>,
    pub statfs: fn(&Path) -> Option<FsSample>,
    pub node_name: String,
    /// `--pods-dir`: its filesystem is nodefs.
    pub pods_dir: PathBuf,
    pub log_root: PathBuf,
    pub volumes_dir: PathBuf,
    pub image_gc: Option<Arc<Mutex<crate::imagegc::ImageGc>>>,
}

/// The eviction manager of one daemon.
pub struct EvictionManager {
    config: Config,
    core: Manager,
    shared: Arc<Shared>,
    pods: Arc<dyn ActivePods>,
    edges: Edges,
    /// Whether the images live on another filesystem than the pods directory (the kubelet's
    /// `HasDedicatedImageFs`), once known.
    dedicated_image_fs: Option<bool>,
}

/// Which parts of a pod's disk usage count for a disk signal (the kubelet's `fsStatsType`s):
/// with a dedicated image filesystem, nodefs counts logs and local volumes, imagefs the
/// containers' writable layers; on one filesystem, all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Measured {
    root: bool,
    logs_and_volumes: bool,
}

fn observation(available: u64, capacity: u64) -> Observation {
    Observation {
        available: i64::try_from(available).unwrap_or(i64::MAX),
        capacity: i64::try_from(capacity).unwrap_or(i64::MAX),
    }
}

/// A filesystem's two signals: bytes, and inodes when it counts them.
fn insert_fs(obs: &mut Observations, bytes: Signal, inodes: Signal, fs: FsSample) {
    obs.insert(bytes, observation(fs.available, fs.capacity));
    if fs.inodes > 0 {
        obs.insert(inodes, observation(fs.inodes_free, fs.inodes));
    }
}

/// Bytes and inodes under `path` on its own filesystem (a `du -s` that counts inodes).
fn usage_under(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    fn walk(path: &Path, dev: u64, bytes: &mut u64, inodes: &mut u64) {
        let Ok(m) = std::fs::symlink_metadata(path) else {
            return;
        };
        if m.dev() != dev {
            return;
        }
        *bytes += m.blocks() * 512;
        *inodes += 1;
        if m.is_dir() {
            for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&e.path(), dev, bytes, inodes);
            }
        }
    }
    let (mut bytes, mut inodes) = (0, 0);
    if let Ok(m) = std::fs::symlink_metadata(path) {
        walk(path, m.dev(), &mut bytes, &mut inodes);
    }
    (bytes, inodes)
}

impl EvictionManager {
    pub fn new(
        config: Config,
        shared: Arc<Shared>,
        pods: Arc<dyn ActivePods>,
        edges: Edges,
    ) -> EvictionManager {
        let core = Manager::new(config.thresholds.clone(), config.pressure_transition_period);
        EvictionManager {
            config,
            core,
            shared,
            pods,
            edges,
            dedicated_image_fs: None,
        }
    }

    /// The signals now (`makeSignalObservations`); a signal that cannot be read is left out.
    fn observe(&self) -> Observations {
        let mut obs = Observations::new();
        match self.edges.host.pressure_sample() {
            Ok(s) => {
                if let Some(available) = s.memory.available {
                    obs.insert(
                        Signal::MemoryAvailable,
                        observation(available, available + s.memory.working_set),
                    );
                }
                if let Some(fs) = s.fs {
                    insert_fs(
                        &mut obs,
                        Signal::NodeFsAvailable,
                        Signal::NodeFsInodesFree,
                        fs,
                    );
                }
                if let Some((max, running)) = s.rlimit {
                    obs.insert(
                        Signal::PidAvailable,
                        Observation {
                            available: max as i64 - running as i64,
                            capacity: max as i64,
                        },
                    );
                }
            }
            Err(e) => log::debug!("eviction: cannot sample the host: {e}"),
        }
        if let Some(fs) = self.image_fs() {
            insert_fs(
                &mut obs,
                Signal::ImageFsAvailable,
                Signal::ImageFsInodesFree,
                fs,
            );
        }
        obs
    }

    fn image_fs_mountpoint(&self) -> Option<PathBuf> {
        let fs = self.edges.runtime.image_fs_info().ok()?;
        Some(PathBuf::from(&fs.first()?.fs_id.as_ref()?.mountpoint))
    }

    fn image_fs(&self) -> Option<FsSample> {
        (self.edges.statfs)(&self.image_fs_mountpoint()?)
    }

    /// `HasDedicatedImageFs`: the image filesystem's device differs from the pods directory's.
    fn dedicated_image_fs(&mut self) -> bool {
        if let Some(d) = self.dedicated_image_fs {
            return d;
        }
        use std::os::unix::fs::MetadataExt;
        let dev = |p: &Path| std::fs::metadata(p).ok().map(|m| m.dev());
        let known = self
            .image_fs_mountpoint()
            .and_then(|m| Some(dev(&m)? != dev(&self.edges.pods_dir)?));
        if let Some(d) = known {
            self.dedicated_image_fs = Some(d);
        }
        known.unwrap_or(false)
    }

    fn measured(&mut self, signal: Signal) -> Measured {
        let dedicated = self.dedicated_image_fs();
        match signal {
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree if dedicated => Measured {
                root: false,
                logs_and_volumes: true,
            },
            Signal::ImageFsAvailable | Signal::ImageFsInodesFree if dedicated => Measured {
                root: true,
                logs_and_volumes: false,
            },
            _ => Measured {
                root: true,
                logs_and_volumes: true,
            },
        }
    }

    /// What each pod uses: memory and processes from its cgroup, per container the working set
    /// and writable layer from CRI, logs and local volumes from the filesystem.
    fn usage(&self, pods: &[Arc<Pod>], measured: Measured) -> HashMap<String, PodUsage> {
        let mut labels = Labels::new();
        labels.insert(
            crate::pod::labels::OWNER.to_string(),
            self.edges.node_name.clone(),
        );
        let stats = self
            .edges
            .runtime
            .list_container_stats(&labels)
            .unwrap_or_default();
        let mut out = HashMap::new();
        for pod in pods {
            let uid = crate::pod::uid(pod).to_string();
            let cgroup = self.edges.host.pod_cgroup(&uid);
            let log_dir = crate::pod::translate::log_directory_of(pod, &self.edges.log_root);
            let mut containers = Vec::new();
            let (mut disk, mut inodes) = if measured.logs_and_volumes {
                usage_under(&self.edges.volumes_dir.join(&uid))
            } else {
                (0, 0)
            };
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let st = stats.iter().find(|s| {
                    s.attributes.as_ref().is_some_and(|a| {
                        a.labels.get(crate::pod::labels::POD_UID) == Some(&uid)
                            && a.labels.get(crate::pod::labels::CONTAINER_NAME) == Some(&c.name)
                    })
                });
                let memory = st
                    .and_then(|s| s.memory.as_ref())
                    .and_then(|m| m.working_set_bytes.as_ref())
                    .map(|v| v.value);
                let (log_bytes, log_inodes) = usage_under(&log_dir.join(&c.name));
                let layer = st
                    .and_then(|s| s.writable_layer.as_ref())
                    .map(|w| {
                        (
                            w.used_bytes.as_ref().map_or(0, |v| v.value),
                            w.inodes_used.as_ref().map_or(0, |v| v.value),
                        )
                    })
                    .unwrap_or_default();
                if measured.root {
                    disk += layer.0;
                    inodes += layer.1;
                }
                if measured.logs_and_volumes {
                    disk += log_bytes;
                    inodes += log_inodes;
                }
                containers.push((c.name.clone(), memory, Some(layer.0 + log_bytes)));
            }
            out.insert(
                uid.clone(),
                PodUsage {
                    uid,
                    memory: cgroup.as_ref().map(|c| c.usage.memory.working_set),
                    disk: Some(disk),
                    inodes: Some(inodes),
                    processes: cgroup.as_ref().map(|c| c.process_count),
                    containers,
                },
            );
        }
        out
    }

    /// One round (the kubelet's `synchronize`); the pod evicted, if any.
    pub fn round(&mut self) -> Option<String> {
        let obs = self.observe();
        let step = self.core.synchronize(&obs, self.edges.clock.monotonic());
        self.shared.set_conditions(step.conditions.clone());
        let threshold = step.reclaim?;
        let resource = threshold.signal.resource();
        log::info!(
            "eviction: attempting to reclaim {resource} ({} below its threshold)",
            threshold.signal.name()
        );
        self.edges.reporter.node_event(
            EventType::Warning,
            "EvictionThresholdMet",
            &format!("Attempting to reclaim {resource}"),
        );
        if self.reclaim_node_level(&threshold) {
            log::info!("eviction: able to reduce {resource} pressure without evicting pods");
            return None;
        }
        let pending: BTreeSet<String> = lock(&self.shared.evictions).keys().cloned().collect();
        let pods: Vec<Arc<Pod>> = self
            .pods
            .active()
            .into_iter()
            .filter(|p| !pending.contains(crate::pod::uid(p)))
            .collect();
        if pods.is_empty() {
            log::info!("eviction: thresholds met, but no pods are active to evict");
            return None;
        }
        let measured = self.measured(threshold.signal);
        let usage = self.usage(&pods, measured);
        let empty = PodUsage::default();
        let mut ranked: Vec<(&Pod, &PodUsage)> = pods
            .iter()
            .map(|p| (p.as_ref(), usage.get(crate::pod::uid(p)).unwrap_or(&empty)))
            .collect();
        core::rank(&mut ranked, threshold.signal);
        let met_info = self.core.met_info(resource, &obs);
        for (pod, u) in ranked {
            if core::is_critical(pod) {
                log::info!(
                    "eviction: cannot evict a critical pod {}",
                    crate::pod::tag(pod)
                );
                continue;
            }
            let message = core::message(resource, pod, u, met_info.clone());
            let grace = if threshold.hard {
                Some(Duration::ZERO)
            } else if self.config.max_pod_grace_period >= 0 {
                Some(Duration::from_secs(self.config.max_pod_grace_period as u64))
            } else {
                None
            };
            let uid = crate::pod::uid(pod).to_string();
            log::info!("eviction: evicting pod {}: {message}", crate::pod::tag(pod));
            self.shared.request(&uid, Eviction { message, grace });
            self.pods.poke(&uid);
            return Some(uid);
        }
        log::info!("eviction: unable to evict any pods from the node");
        None
    }

    /// `reclaimNodeLevelResources`: for a disk signal, unused images go first; whether that
    /// brought the signal back above its threshold.
    fn reclaim_node_level(&mut self, t: &Threshold) -> bool {
        if t.signal.resource() == "memory" || t.signal.resource() == "pids" {
            return false;
        }
        // With a dedicated image filesystem, removing images frees nothing on nodefs.
        if !self.measured(t.signal).root {
            return false;
        }
        let Some(gc) = &self.edges.image_gc else {
            return false;
        };
        if let Err(e) = lock(gc).delete_unused_images() {
            log::info!("eviction: deleting unused images failed: {e}");
        }
        let obs = self.observe();
        obs.get(&t.signal)
            .is_some_and(|o| t.value.of(o.capacity) <= o.available)
    }
}

/// Starts the `eviction` thread: a round every [`INTERVAL`] for the daemon's life; nothing
/// without thresholds.
pub fn spawn(mut m: EvictionManager) -> std::io::Result<()> {
    if m.config.thresholds.is_empty() {
        log::info!("eviction: no thresholds: node-pressure eviction is off");
        return Ok(());
    }
    std::thread::Builder::new()
        .name("eviction".into())
        .spawn(move || loop {
            m.round();
            let clock = m.edges.clock.clone();
            clock.sleep(INTERVAL);
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::cri::fake::Call;
    use crate::cri::FakeRuntime;
    use crate::node::stats::{FakeStats, MemorySample, PodCgroupSample};
    use crate::report::recorded::Recorded;

    struct Pods {
        pods: Vec<Arc<Pod>>,
        poked: Mutex<Vec<String>>,
    }

    impl ActivePods for Pods {
        fn active(&self) -> Vec<Arc<Pod>> {
            self.pods.clone()
        }
        fn poke(&self, uid: &str) {
            lock(&self.poked).push(uid.to_string());
        }
    }

    fn pod(name: &str, priority: i32, annotations: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "uid": name, "annotations": annotations},
                "spec": {"priority": priority, "containers": [{"name": "c", "image": "i"}]}
            }))
            .unwrap(),
        )
    }

    const MI: u64 = 1 << 20;

    fn manager(
        hard: &[(&str, &str)],
        pods: Vec<Arc<Pod>>,
        free_memory: u64,
    ) -> (
        EvictionManager,
        Arc<Shared>,
        Arc<Pods>,
        Arc<Recorded>,
        Arc<FakeRuntime>,
    ) {
        let stats = FakeStats::default();
        stats.host.lock().unwrap().memory = MemorySample {
            working_set: 1000 * MI - free_memory,
            available: Some(free_memory),
            ..Default::default()
        };
        for (uid, ws) in [("small", 10 * MI), ("big", 300 * MI), ("static", 900 * MI)] {
            let mut s = PodCgroupSample::default();
            s.usage.memory.working_set = ws;
            stats.pods.lock().unwrap().insert(uid.to_string(), s);
        }
        let hard: Vec<(String, String)> = hard
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config {
            thresholds: core::parse_thresholds(&hard, &[], &[], &[]).unwrap(),
            ..Config::default()
        };
        let shared = Arc::new(Shared::default());
        let active = Arc::new(Pods {
            pods,
            poked: Mutex::default(),
        });
        let reporter = Arc::new(Recorded::default());
        let runtime = Arc::new(FakeRuntime::new());
        let m = EvictionManager::new(
            config,
            shared.clone(),
            active.clone(),
            Edges {
                host: Arc::new(stats),
                runtime: runtime.clone(),
                reporter: reporter.clone(),
                clock: Arc::new(FakeClock::at(std::time::UNIX_EPOCH)),
                statfs: |_| None,
                node_name: "n".into(),
                pods_dir: "/nonexistent/pods".into(),
                log_root: "/nonexistent/logs".into(),
                volumes_dir: "/nonexistent/volumes".into(),
                image_gc: None,
            },
        );
        (m, shared, active, reporter, runtime)
    }

    #[test]
    fn one_pod_per_round_the_biggest_first_never_a_static_one() {
        let static_pod = pod(
            "static",
            0,
            serde_json::json!({"kubernetes.io/config.source": "file"}),
        );
        let (mut m, shared, active, reporter, _) = manager(
            &[("memory.available", "100Mi")],
            vec![
                pod("small", 0, serde_json::json!({})),
                pod("big", 0, serde_json::json!({})),
                static_pod,
            ],
            50 * MI,
        );
        assert_eq!(m.round().as_deref(), Some("big"));
        assert!(shared.pressure().memory);
        let e = shared.eviction("big").unwrap();
        assert_eq!(e.grace, Some(Duration::ZERO), "a hard threshold");
        assert_eq!(
            e.message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
        );
        assert_eq!(
            reporter.take_events(),
            ["EvictionThresholdMet: Attempting to reclaim memory"]
        );
        // The next round takes the next pod; the static one is never chosen.
        assert_eq!(m.round().as_deref(), Some("small"));
        assert_eq!(m.round(), None);
        assert_eq!(*lock(&active.poked), ["big", "small"]);
        shared.forget("big");
        assert!(shared.eviction("big").is_none());
    }

    #[test]
    fn without_pressure_nothing_happens_and_only_the_host_is_read() {
        let (mut m, shared, _, reporter, runtime) = manager(
            &[("memory.available", "100Mi")],
            vec![pod("big", 0, serde_json::json!({}))],
            500 * MI,
        );
        assert_eq!(m.round(), None);
        assert!(!shared.pressure().memory);
        assert!(reporter.take_events().is_empty());
        assert_eq!(
            runtime.calls(),
            [Call::ImageFsInfo],
            "no per-pod stats when idle"
        );
    }
}
