//! The runtime cache: the last observation of each pod, reused while the relister confirms
//! nothing changed in the runtime since (the kubelet's pod cache, fed by its PLEG).
//!
//! Owns [`RuntimeCache`] and the fingerprint of a pod's runtime state (each sandbox's and
//! container's id and state) that both the relister and an observation compute. A pod's periodic
//! resync and every spec update would otherwise list and inspect the pod's sandbox and containers
//! again (four CRI calls for a one-container pod, every minute for every pod) to find what the
//! relister, once a second, already showed unchanged.
//!
//! Why a fingerprint match is enough: a container's id never comes back and its state only moves
//! forward (created → running → exited), and what an observation holds beyond id and state (exit
//! code, reason, times, IP) is fixed once that state is reached. So when the latest relist
//! has the same fingerprint as the observation, the observation is what the runtime has — as of
//! that relist; a change after it is the next relist's news, which wakes the pod's worker
//! anyway. A relist that failed, or is older than [`MAX_RELIST_AGE`], confirms nothing. Pure
//! data and a lock: no I/O.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cri::api;
use crate::pod::observed::{ObservedPod, RunState};

/// A relist older than this confirms nothing (the relister runs every second; one that is stuck
/// on a slow runtime must not keep old observations alive).
pub const MAX_RELIST_AGE: Duration = Duration::from_secs(5);

/// One pod's runtime state as (id, state) pairs → its fingerprint. Sandbox states are CRI
/// `PodSandboxState` values, container states CRI `ContainerState` values + 100.
pub fn fingerprint(mut states: Vec<(&str, i32)>) -> u64 {
    states.sort_unstable();
    let mut h = DefaultHasher::new();
    states.hash(&mut h);
    h.finish()
}

/// The offset that keeps container states apart from sandbox states in a fingerprint.
pub const CONTAINER_STATE: i32 = 100;

/// The fingerprint of an observation, as the relister would compute it for the same state.
pub fn observed_fingerprint(o: &ObservedPod) -> u64 {
    let sandboxes = o.sandboxes.iter().map(|s| {
        let state = if s.ready {
            api::PodSandboxState::SANDBOX_READY
        } else {
            api::PodSandboxState::SANDBOX_NOTREADY
        };
        (s.id.as_str(), state as i32)
    });
    let containers = o.containers.iter().map(|c| {
        let state = match c.state {
            RunState::Created => api::ContainerState::CONTAINER_CREATED,
            RunState::Running => api::ContainerState::CONTAINER_RUNNING,
            RunState::Exited => api::ContainerState::CONTAINER_EXITED,
            RunState::Unknown => api::ContainerState::CONTAINER_UNKNOWN,
        };
        (c.id.as_str(), state as i32 + CONTAINER_STATE)
    });
    fingerprint(sandboxes.chain(containers).collect())
}

struct Entry {
    observed: ObservedPod,
    fingerprint: u64,
}

#[derive(Default)]
struct Inner {
    /// The latest successful relist: when it started and each pod's fingerprint.
    relist: Option<(Instant, Arc<BTreeMap<String, u64>>)>,
    /// When the latest successful relist started, kept when a later one fails (the sync
    /// loop's health, `/healthz`'s `syncloop`).
    last_round: Option<Instant>,
    pods: HashMap<String, Entry>,
}

/// The observations of the pods, by UID, and the latest relist's fingerprints.
#[derive(Default)]
pub struct RuntimeCache {
    inner: Mutex<Inner>,
}

impl RuntimeCache {
    pub fn new() -> RuntimeCache {
        RuntimeCache::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A relist that started at `at` found these fingerprints (by pod UID).
    pub fn relisted(&self, at: Instant, fingerprints: Arc<BTreeMap<String, u64>>) {
        let mut inner = self.lock();
        inner.relist = Some((at, fingerprints));
        inner.last_round = Some(at);
    }

    /// When the latest successful relist started (`None`: none yet).
    pub fn last_relist(&self) -> Option<Instant> {
        self.lock().last_round
    }

    /// The relist failed: what it would have confirmed is unknown.
    pub fn relist_failed(&self) {
        self.lock().relist = None;
    }

    /// Remembers what an observation of the pod found.
    pub fn store(&self, uid: &str, observed: &ObservedPod) {
        let entry = Entry {
            observed: observed.clone(),
            fingerprint: observed_fingerprint(observed),
        };
        self.lock().pods.insert(uid.to_string(), entry);
    }

    /// The pod's last observation, if a relist no older than [`MAX_RELIST_AGE`] at `now` saw
    /// the same runtime state.
    pub fn confirmed(&self, uid: &str, now: Instant) -> Option<ObservedPod> {
        let inner = self.lock();
        let (at, prints) = inner.relist.as_ref()?;
        if now.saturating_duration_since(*at) > MAX_RELIST_AGE {
            return None;
        }
        let entry = inner.pods.get(uid)?;
        (prints.get(uid) == Some(&entry.fingerprint)).then(|| entry.observed.clone())
    }

    /// Drops the pod's observation (its worker ended, or its runtime state is being changed).
    pub fn forget(&self, uid: &str) {
        self.lock().pods.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::ContainerKind;
    use crate::pod::observed::{ObservedContainer, ObservedSandbox};

    fn observed(container_state: RunState) -> ObservedPod {
        ObservedPod {
            sandboxes: vec![ObservedSandbox {
                id: "sb1".into(),
                ready: true,
                ..Default::default()
            }],
            containers: vec![ObservedContainer {
                id: "c1".into(),
                sandbox_id: "sb1".into(),
                name: "app".into(),
                kind: ContainerKind::App,
                restart_count: 0,
                hash: "h".into(),
                state: container_state,
                exit_code: 0,
                reason: String::new(),
                message: String::new(),
                created_at: 1,
                started_at: 2,
                finished_at: 0,
                image: "busybox".into(),
                image_ref: "sha256:x".into(),
                log_path: "app/0.log".into(),
            }],
        }
    }

    /// The fingerprints the relister computes for the same state (see `pleg::relist`).
    fn relist_prints(container_state: api::ContainerState) -> Arc<BTreeMap<String, u64>> {
        let fp = fingerprint(vec![
            ("c1", container_state as i32 + CONTAINER_STATE),
            ("sb1", api::PodSandboxState::SANDBOX_READY as i32),
        ]);
        Arc::new([("u1".to_string(), fp)].into())
    }

    #[test]
    fn an_observation_is_reused_while_the_latest_relist_shows_the_same_state() {
        let cache = RuntimeCache::new();
        let now = Instant::now();
        let o = observed(RunState::Running);
        cache.store("u1", &o);
        assert_eq!(cache.confirmed("u1", now), None, "no relist yet");
        cache.relisted(now, relist_prints(api::ContainerState::CONTAINER_RUNNING));
        assert_eq!(cache.confirmed("u1", now), Some(o.clone()));
        assert_eq!(cache.confirmed("u2", now), None, "never observed");

        // The container exited: the relist shows another state, the observation is stale.
        cache.relisted(now, relist_prints(api::ContainerState::CONTAINER_EXITED));
        assert_eq!(cache.confirmed("u1", now), None);
        let exited = observed(RunState::Exited);
        cache.store("u1", &exited);
        assert_eq!(cache.confirmed("u1", now), Some(exited));
        cache.forget("u1");
        assert_eq!(cache.confirmed("u1", now), None);
    }

    #[test]
    fn a_failed_or_old_relist_confirms_nothing() {
        let cache = RuntimeCache::new();
        let then = Instant::now();
        cache.store("u1", &observed(RunState::Running));
        cache.relisted(then, relist_prints(api::ContainerState::CONTAINER_RUNNING));
        assert!(cache.confirmed("u1", then + MAX_RELIST_AGE).is_some());
        let later = then + MAX_RELIST_AGE + Duration::from_millis(1);
        assert_eq!(cache.confirmed("u1", later), None, "the relister is stuck");
        cache.relisted(later, relist_prints(api::ContainerState::CONTAINER_RUNNING));
        assert!(cache.confirmed("u1", later).is_some());
        cache.relist_failed();
        assert_eq!(cache.confirmed("u1", later), None);
    }
}
