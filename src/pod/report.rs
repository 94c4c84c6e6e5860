//! Where a pod's status, events and final deletion go: the API server, or the log in
//! standalone mode.
//!
//! Owns the [`PodReporter`] trait the pod syncer reports through, and [`LogReporter`], the
//! standalone implementation (no API server: status changes and events are logged, and the
//! latest status of every pod is kept for the local kubelet API). The API server implementation
//! lives with the API edge. Reporters decide whether a status is new; callers report every time.
//! Container events ([`PodReporter::container_event`]) name the container by its field path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::key;

pub use crate::node::events::EventType;

/// The outputs of the pod syncer.
pub trait PodReporter: Send + Sync {
    /// The pod's current status; written only when it differs from what was written last.
    fn status(&self, pod: &Pod, status: &PodStatus);
    /// An event about the pod (`reason` as the kubelet names it: Pulling, Created, BackOff, …).
    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str);
    /// An event about one of the pod's containers: the kubelet's `recordContainerEvent`, whose
    /// involvedObject carries `fieldPath: spec.containers{NAME}` (or `spec.initContainers{NAME}`).
    /// Without a reference to put it in, it is a pod event.
    fn container_event(
        &self,
        pod: &Pod,
        container: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let _ = container;
        self.event(pod, kind, reason, message);
    }
    /// The pod is stopped and cleaned up: finish its deletion at its source.
    fn deleted(&self, pod: &Pod) -> Result<(), String>;
    /// The last status reported for the pod with this UID.
    fn last_status(&self, uid: &str) -> Option<Arc<PodStatus>>;
    /// Forget the pod with this UID.
    fn forget(&self, uid: &str);
}

/// Standalone reporting: to the log.
#[derive(Default)]
pub struct LogReporter {
    last: Mutex<HashMap<String, Arc<PodStatus>>>,
}

impl LogReporter {
    pub fn new() -> LogReporter {
        LogReporter::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PodStatus>>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One line describing a status: phase and each container's state.
pub fn summary(status: &PodStatus) -> String {
    let mut s = status.phase.clone().unwrap_or_default();
    for c in status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
    {
        let state = c.state.clone().unwrap_or_default();
        let what = if let Some(w) = state.waiting {
            format!("waiting:{}", w.reason.unwrap_or_default())
        } else if state.running.is_some() {
            (if c.ready { "running,ready" } else { "running" }).to_string()
        } else if let Some(t) = state.terminated {
            format!(
                "terminated:{}({})",
                t.reason.unwrap_or_default(),
                t.exit_code
            )
        } else {
            "unknown".to_string()
        };
        s.push_str(&format!(
            " {}={} restarts={}",
            c.name, what, c.restart_count
        ));
    }
    s
}

impl PodReporter for LogReporter {
    fn status(&self, pod: &Pod, status: &PodStatus) {
        let uid = super::uid(pod).to_string();
        let mut last = self.lock();
        let changed = last
            .get(&uid)
            .is_none_or(|old| summary(old) != summary(status));
        if changed {
            log::info!("pod {}: {}", key(pod), summary(status));
        }
        if last.get(&uid).is_none_or(|old| **old != *status) {
            last.insert(uid, Arc::new(status.clone()));
        }
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        match kind {
            EventType::Normal => log::info!("pod {} event {reason}: {message}", key(pod)),
            EventType::Warning => log::warn!("pod {} event {reason}: {message}", key(pod)),
        }
    }

    fn container_event(
        &self,
        pod: &Pod,
        container: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let pod_key = key(pod);
        match kind {
            EventType::Normal => {
                log::info!("pod {pod_key} container {container} event {reason}: {message}")
            }
            EventType::Warning => {
                log::warn!("pod {pod_key} container {container} event {reason}: {message}")
            }
        }
    }

    fn deleted(&self, pod: &Pod) -> Result<(), String> {
        log::info!("pod {} stopped and removed", key(pod));
        Ok(())
    }

    fn last_status(&self, uid: &str) -> Option<Arc<PodStatus>> {
        self.lock().get(uid).cloned()
    }

    fn forget(&self, uid: &str) {
        self.lock().remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_phase_and_every_container() {
        let status: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "initContainerStatuses": [{"name": "i", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}],
            "containerStatuses": [
                {"name": "a", "image": "x", "imageID": "", "ready": true, "restartCount": 2, "state": {"running": {}}},
                {"name": "b", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ImagePullBackOff"}}}
            ]
        }))
        .unwrap();
        assert_eq!(
            summary(&status),
            "Running i=terminated:Completed(0) restarts=0 a=running,ready restarts=2 b=waiting:ImagePullBackOff restarts=0"
        );
    }

    #[test]
    fn the_log_reporter_keeps_the_latest_status() {
        let r = LogReporter::new();
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "uid": "u"}}))
                .unwrap();
        let s = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        r.status(&pod, &s);
        assert_eq!(r.last_status("u").as_deref(), Some(&s));
        r.forget("u");
        assert_eq!(r.last_status("u"), None);
    }
}

/// A reporter that records what it is told, for the tests of the pod's steps.
#[cfg(test)]
pub mod recorded {
    use super::*;

    /// One event: (container or "", type, reason, message).
    pub type Event = (String, EventType, String, String);

    #[derive(Default)]
    pub struct Recorded {
        pub events: Mutex<Vec<Event>>,
        pub statuses: Mutex<Vec<PodStatus>>,
    }

    impl Recorded {
        /// The events so far as "REASON: message", clearing them.
        pub fn take_events(&self) -> Vec<String> {
            std::mem::take(&mut *self.events.lock().unwrap())
                .into_iter()
                .map(|(_, _, r, m)| format!("{r}: {m}"))
                .collect()
        }

        pub fn last_status_seen(&self) -> Option<PodStatus> {
            self.statuses.lock().unwrap().last().cloned()
        }
    }

    impl PodReporter for Recorded {
        fn status(&self, _: &Pod, status: &PodStatus) {
            self.statuses.lock().unwrap().push(status.clone());
        }
        fn event(&self, _: &Pod, kind: EventType, reason: &str, message: &str) {
            self.events
                .lock()
                .unwrap()
                .push((String::new(), kind, reason.into(), message.into()));
        }
        fn container_event(
            &self,
            _: &Pod,
            container: &str,
            kind: EventType,
            reason: &str,
            message: &str,
        ) {
            self.events.lock().unwrap().push((
                container.into(),
                kind,
                reason.into(),
                message.into(),
            ));
        }
        fn deleted(&self, _: &Pod) -> Result<(), String> {
            Ok(())
        }
        fn last_status(&self, _: &str) -> Option<Arc<PodStatus>> {
            self.statuses.lock().unwrap().last().cloned().map(Arc::new)
        }
        fn forget(&self, _: &str) {}
    }
}
