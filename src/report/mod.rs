//! Where a pod's status, events and final deletion go: the API server, or the log in
//! standalone mode.
//!
//! Owns the [`PodReporter`] trait the pod syncer reports through, and [`LogReporter`], the
//! standalone implementation (no API server: status changes and events are logged, and the
//! latest status of every pod is kept for the local kubelet API). The API server implementation
//! is [`api::ApiReporter`]. An edge like `cri` and `kube`: the pod syncer and the prober report
//! through it, and it imports neither of them (only the pod core, the API client and the
//! shared modules below it). Reporters decide whether a status is new; callers report every
//! time.
//! Container events ([`PodReporter::container_event`]) name the container by its field path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use crate::clock::Clock;
use crate::kube::ApiError;
use crate::pod::{tag, uid};

pub mod api;

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
    /// An event about the Node itself (the kubelet's `nodeRef`: image garbage collection's
    /// `FreeDiskSpaceFailed`, …). Without an API server there is no Node: the caller has logged
    /// what happened, so nothing more is done.
    fn node_event(&self, kind: EventType, reason: &str, message: &str) {
        let _ = (kind, reason, message);
    }
    /// The pod is stopped and cleaned up: finish its deletion at its source.
    fn deleted(&self, pod: &Pod) -> Result<(), ApiError>;
    /// The last status reported for the pod with this UID.
    fn last_status(&self, uid: &str) -> Option<Arc<PodStatus>>;
    /// Forget the pod with this UID.
    fn forget(&self, uid: &str);
    /// Writes what is queued (statuses, events) within `timeout`, for a clean stop; whether
    /// all of it was written.
    fn flush(&self, timeout: std::time::Duration) -> bool {
        let _ = timeout;
        true
    }
}

/// Standalone reporting: to the log. A status is logged when its summary changes and an event
/// each time it comes, except what repeats: a line that was logged for the same pod (and
/// container) within [`REPEAT_WINDOW`] is counted instead (a pull retried every 10-20 s cycles
/// through the same few lines), and the counts are logged with the next new line.
pub struct LogReporter {
    /// Where "recent" is measured (a fake clock in tests).
    clock: Arc<dyn Clock>,
    last: Mutex<HashMap<String, Arc<PodStatus>>>,
    /// Recent lines per (pod uid, container; "" for the pod's status and pod events).
    recent: Mutex<HashMap<(String, String), Recent>>,
}

/// How long a logged line counts as a repeat when it comes again.
pub const REPEAT_WINDOW: std::time::Duration = std::time::Duration::from_secs(300);

/// The lines logged for one pod (or container) lately, with how often each came again since.
#[derive(Default)]
pub struct Recent {
    lines: Vec<(String, Instant, u32)>,
}

impl Recent {
    /// Whether `line` is to be logged now: `None` if it repeats a recent line (counted);
    /// otherwise `Some` with what the recent lines did meanwhile (`"X" 3 more times, ...`,
    /// empty if nothing repeated), after which their counts start again.
    pub fn note(&mut self, line: &str, now: Instant) -> Option<String> {
        self.lines
            .retain(|(_, at, _)| now.saturating_duration_since(*at) < REPEAT_WINDOW);
        if let Some(l) = self.lines.iter_mut().find(|(l, _, _)| l == line) {
            l.1 = now;
            l.2 += 1;
            return None;
        }
        let repeated: Vec<String> = self
            .lines
            .iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(l, _, n)| format!("{l:?} {n} more time(s)"))
            .collect();
        for l in &mut self.lines {
            l.2 = 0;
        }
        self.lines.push((line.to_string(), now, 0));
        Some(repeated.join(", "))
    }
}

impl LogReporter {
    /// A reporter whose repeat window runs on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> LogReporter {
        LogReporter {
            clock,
            last: Mutex::default(),
            recent: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<PodStatus>>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs `line` about the pod (and container), unless it repeats a recent one.
    fn log_line(&self, pod: &Pod, container: &str, warn: bool, line: &str) {
        let about = if container.is_empty() {
            format!("pod {}", tag(pod))
        } else {
            format!("pod {} container {container}", tag(pod))
        };
        let noted = self
            .recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((uid(pod).to_string(), container.to_string()))
            .or_default()
            .note(line, self.clock.monotonic());
        let Some(repeated) = noted else { return };
        if !repeated.is_empty() {
            log::info!("{about}: meanwhile {repeated}");
        }
        if warn {
            log::warn!("{about}{line}");
        } else {
            log::info!("{about}{line}");
        }
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
        let uid = crate::pod::uid(pod).to_string();
        let mut last = self.lock();
        let changed = last
            .get(&uid)
            .is_none_or(|old| summary(old) != summary(status));
        if changed {
            self.log_line(pod, "", false, &format!(": {}", summary(status)));
        }
        if last.get(&uid).is_none_or(|old| **old != *status) {
            last.insert(uid, Arc::new(status.clone()));
        }
    }

    fn event(&self, pod: &Pod, kind: EventType, reason: &str, message: &str) {
        let warn = kind == EventType::Warning;
        self.log_line(pod, "", warn, &format!(" event {reason}: {message}"));
    }

    fn container_event(
        &self,
        pod: &Pod,
        container: &str,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let warn = kind == EventType::Warning;
        self.log_line(pod, container, warn, &format!(" event {reason}: {message}"));
    }

    fn deleted(&self, pod: &Pod) -> Result<(), ApiError> {
        log::info!("pod {} stopped and removed", tag(pod));
        Ok(())
    }

    fn last_status(&self, uid: &str) -> Option<Arc<PodStatus>> {
        self.lock().get(uid).cloned()
    }

    fn forget(&self, uid: &str) {
        self.lock().remove(uid);
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(u, _), _| u != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_of_repeated_lines_is_logged_once_and_counted_with_the_next_new_line() {
        let mut r = Recent::default();
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs(1);
        assert_eq!(r.note("ErrImagePull", t0).as_deref(), Some(""));
        assert_eq!(r.note("ImagePullBackOff", t0 + s).as_deref(), Some(""));
        for i in 2..6 {
            let line = if i % 2 == 0 {
                "ErrImagePull"
            } else {
                "ImagePullBackOff"
            };
            assert_eq!(r.note(line, t0 + s * i), None, "a repeat is not logged");
        }
        assert_eq!(
            r.note("Running", t0 + s * 6).as_deref(),
            Some("\"ErrImagePull\" 2 more time(s), \"ImagePullBackOff\" 2 more time(s)")
        );
        // Counts start again; a line older than the window is new again.
        assert_eq!(r.note("Running", t0 + s * 7), None);
        assert_eq!(
            r.note("ErrImagePull", t0 + s * 7 + REPEAT_WINDOW)
                .as_deref(),
            Some("")
        );
    }

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
        let r = LogReporter::new(Arc::new(crate::clock::RealClock));
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
        fn node_event(&self, kind: EventType, reason: &str, message: &str) {
            self.events.lock().unwrap().push((
                "<node>".into(),
                kind,
                reason.into(),
                message.into(),
            ));
        }
        fn deleted(&self, _: &Pod) -> Result<(), ApiError> {
            Ok(())
        }
        fn last_status(&self, _: &str) -> Option<Arc<PodStatus>> {
            self.statuses.lock().unwrap().last().cloned().map(Arc::new)
        }
        fn forget(&self, _: &str) {}
    }
}
