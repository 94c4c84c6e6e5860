//! The pods this node has been given, as its sources last described them: the kubelet's pod
//! manager, reduced to what the kubelet API's `/pods` needs.
//!
//! Owns: the map UID → newest pod, fed by the same events the pod workers get (mirror pods
//! excluded by the caller), and the listing with each pod's status as vk-cri last reported it.
//! Must not run or stop anything: the workers do.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::source::PodEvent;

/// UID → the newest pod from its source.
#[derive(Default)]
pub struct PodIndex {
    pods: RwLock<HashMap<String, Arc<Pod>>>,
}

impl PodIndex {
    pub fn new() -> PodIndex {
        PodIndex::default()
    }

    /// Records what a pod source said: a pod added or changed, or gone.
    pub fn apply(&self, event: &PodEvent) {
        let mut pods = self.pods.write().unwrap_or_else(|p| p.into_inner());
        match event {
            PodEvent::Upsert(pod) => {
                pods.insert(crate::pod::uid(pod).to_string(), pod.clone());
            }
            PodEvent::Remove { uid } => {
                pods.remove(uid);
            }
        }
    }

    /// Every pod, ordered by namespace and name, with its status replaced by `status(uid)`
    /// where that has one (what vk-cri reported last is newer than what the source had; for
    /// static pods it is the only status there is, as in the kubelet's `GetPods`).
    /// Every pod known, as it came from its source.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn list(&self, status: impl Fn(&str) -> Option<Arc<PodStatus>>) -> Vec<Pod> {
        let pods: Vec<Arc<Pod>> = self
            .pods
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<Pod> = pods
            .iter()
            .map(|p| {
                let mut pod = Pod::clone(p);
                if let Some(s) = status(crate::pod::uid(p)) {
                    pod.status = Some(PodStatus::clone(&s));
                }
                pod
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.metadata.namespace, &a.metadata.name)
                .cmp(&(&b.metadata.namespace, &b.metadata.name))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, uid: &str, phase: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"namespace": ns, "name": name, "uid": uid},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
                "status": {"phase": phase},
            }))
            .unwrap(),
        )
    }

    fn phases(pods: &[Pod]) -> Vec<(String, String)> {
        pods.iter()
            .map(|p| {
                (
                    p.metadata.name.clone().unwrap(),
                    p.status.as_ref().and_then(|s| s.phase.clone()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn the_newest_spec_is_listed_with_the_reported_status_until_the_source_removes_it() {
        let index = PodIndex::new();
        index.apply(&PodEvent::Upsert(pod("b", "web", "u1", "Pending")));
        index.apply(&PodEvent::Upsert(pod("a", "db", "u2", "Pending")));
        index.apply(&PodEvent::Upsert(pod("b", "web", "u1", "Unknown")));
        let reported = |uid: &str| {
            (uid == "u2").then(|| {
                Arc::new(PodStatus {
                    phase: Some("Running".into()),
                    ..PodStatus::default()
                })
            })
        };
        assert_eq!(
            phases(&index.list(reported)),
            [
                ("db".into(), "Running".into()),
                ("web".into(), "Unknown".into())
            ]
        );
        index.apply(&PodEvent::Remove { uid: "u2".into() });
        index.apply(&PodEvent::Remove { uid: "gone".into() });
        assert_eq!(
            phases(&index.list(|_| None)),
            [("web".to_string(), "Unknown".to_string())]
        );
    }
}
