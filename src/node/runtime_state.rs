//! What the node knows of its container runtime between `Status` calls, and the Ready
//! condition's message built from it — the kubelet's `runtimeState` (pkg/kubelet/runtime.go),
//! fed as its `updateRuntimeUp` feeds it.
//!
//! Owns the rules: an unanswered `Status` changes nothing (the last answer stands); the runtime
//! is "down" only once no healthy answer came for [`RUNTIME_DOWN_AFTER`] (a containerd restart
//! of a few seconds never turns the node NotReady); a RuntimeReady=false answer is reported at
//! once; the network error is kept apart, and every error is joined as Kubernetes' error
//! aggregate prints them. Pure: the caller passes the answers and the instants.

use std::time::{Duration, Instant};

use super::spec::RuntimeReadiness;
use crate::cri::api;

/// The kubelet's `maxWaitForContainerRuntime`: with no healthy answer for this long the node
/// reports "container runtime is down".
pub const RUNTIME_DOWN_AFTER: Duration = Duration::from_secs(30);

/// The node's shutdown manager's error, joined to the runtime's.
pub const SHUTTING_DOWN: &str = "node is shutting down";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// The last healthy answer (RuntimeReady true).
    last_sync: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
    /// The last call went unanswered.
    unanswered: bool,
}

impl Default for RuntimeState {
    fn default() -> RuntimeState {
        RuntimeState {
            last_sync: None,
            runtime_error: None,
            // The kubelet's ErrNetworkUnknown, until the first answer.
            network_error: Some("network state unknown".to_string()),
            unanswered: false,
        }
    }
}

/// A condition as the kubelet prints one with `%v` (`RuntimeCondition.String`, `<nil>` when the
/// runtime did not report it).
fn printed(c: Option<&api::RuntimeCondition>) -> String {
    match c {
        None => "<nil>".to_string(),
        Some(c) => format!(
            "{}={} reason:{} message:{}",
            c.type_, c.status, c.reason, c.message
        ),
    }
}

/// Errors joined as apimachinery's `utilerrors.NewAggregate(...).Error()`: duplicates dropped,
/// one error alone, several as `[a, b]`.
pub fn aggregate(errors: &[String]) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for e in errors {
        if !seen.contains(&e.as_str()) {
            seen.push(e);
        }
    }
    match seen.as_slice() {
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl RuntimeState {
    /// Takes a `Status` answer received at `now`; an error (no answer) changes nothing.
    pub fn observe<E>(&mut self, answer: Result<&api::RuntimeStatus, E>, now: Instant) {
        let Ok(status) = answer else {
            self.unanswered = true;
            return;
        };
        self.unanswered = false;
        let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
        let network = cond("NetworkReady");
        self.network_error = match network {
            Some(c) if c.status => None,
            other => Some(format!(
                "container runtime network not ready: {}",
                printed(other)
            )),
        };
        match cond("RuntimeReady") {
            Some(c) if c.status => {
                self.runtime_error = None;
                self.last_sync = Some(now);
            }
            other => {
                self.runtime_error =
                    Some(format!("container runtime not ready: {}", printed(other)));
            }
        }
    }

    /// The runtime's errors at `now`, in the kubelet's order (runtime, network, shutdown).
    pub fn errors(&self, now: Instant, shutting_down: bool) -> Vec<String> {
        let mut errors = Vec::new();
        match self.last_sync {
            None => {
                errors.push("container runtime status check may not have completed yet".into());
            }
            Some(t) if now.saturating_duration_since(t) >= RUNTIME_DOWN_AFTER => {
                errors.push("container runtime is down".into());
            }
            Some(_) => {}
        }
        errors.extend(self.runtime_error.clone());
        errors.extend(self.network_error.clone());
        if shutting_down {
            errors.push(SHUTTING_DOWN.to_string());
        }
        errors
    }

    /// The Ready condition's verdict and message at `now`.
    pub fn readiness(&self, now: Instant, shutting_down: bool) -> RuntimeReadiness {
        let errors = self.errors(now, shutting_down);
        if errors.is_empty() {
            RuntimeReadiness::ready()
        } else {
            RuntimeReadiness::not_ready(aggregate(&errors))
        }
    }

    /// Whether the last answer was healthy and recent enough that nothing is reported.
    pub fn healthy(&self, now: Instant) -> bool {
        self.errors(now, false).is_empty()
    }

    /// Healthy, and the last call was answered: nothing to watch closely.
    pub fn settled(&self, now: Instant) -> bool {
        !self.unanswered && self.healthy(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(t: &str, ok: bool, reason: &str, message: &str) -> api::RuntimeCondition {
        api::RuntimeCondition {
            type_: t.to_string(),
            status: ok,
            reason: reason.to_string(),
            message: message.to_string(),
            ..Default::default()
        }
    }

    fn status(conds: Vec<api::RuntimeCondition>) -> api::RuntimeStatus {
        api::RuntimeStatus {
            conditions: conds,
            ..Default::default()
        }
    }

    fn healthy() -> api::RuntimeStatus {
        status(vec![
            cond("RuntimeReady", true, "", ""),
            cond("NetworkReady", true, "", ""),
        ])
    }

    const NO_ANSWER: Result<&api::RuntimeStatus, ()> = Err(());

    #[test]
    fn before_any_answer_the_status_check_has_not_completed() {
        let s = RuntimeState::default();
        assert_eq!(
            s.readiness(Instant::now(), false).message,
            "[container runtime status check may not have completed yet, network state unknown]"
        );
    }

    #[test]
    fn a_runtime_that_stops_answering_is_down_only_after_thirty_seconds() {
        let t0 = Instant::now();
        let mut s = RuntimeState::default();
        s.observe::<()>(Ok(&healthy()), t0);
        assert_eq!(s.readiness(t0, false), RuntimeReadiness::ready());
        // Unanswered calls change nothing...
        s.observe(NO_ANSWER, t0 + Duration::from_secs(10));
        assert!(s.healthy(t0 + Duration::from_secs(29)));
        assert!(!s.settled(t0 + Duration::from_secs(29)));
        // ...until 30 s passed since the last healthy answer.
        let down = s.readiness(t0 + RUNTIME_DOWN_AFTER, false);
        assert_eq!(
            down,
            RuntimeReadiness::not_ready("container runtime is down")
        );
        // An answer at any time restores it.
        s.observe::<()>(Ok(&healthy()), t0 + Duration::from_secs(45));
        assert!(s.settled(t0 + Duration::from_secs(45)));
    }

    #[test]
    fn conditions_are_worded_as_the_kubelet_prints_them() {
        let t0 = Instant::now();
        let mut s = RuntimeState::default();
        s.observe::<()>(
            Ok(&status(vec![
                cond("RuntimeReady", true, "", ""),
                cond(
                    "NetworkReady",
                    false,
                    "NetworkPluginNotReady",
                    "Network plugin returns error: cni plugin not initialized",
                ),
            ])),
            t0,
        );
        assert_eq!(
            s.readiness(t0, false).message,
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not \
             initialized"
        );
        // RuntimeReady false is reported at once, and the last healthy answer is not renewed.
        s.observe::<()>(
            Ok(&status(vec![
                cond("RuntimeReady", false, "Broken", "x"),
                cond("NetworkReady", true, "", ""),
            ])),
            t0 + Duration::from_secs(5),
        );
        assert_eq!(
            s.readiness(t0 + Duration::from_secs(5), false).message,
            "container runtime not ready: RuntimeReady=false reason:Broken message:x"
        );
        assert_eq!(
            s.readiness(t0 + Duration::from_secs(31), false).message,
            "[container runtime is down, container runtime not ready: RuntimeReady=false \
             reason:Broken message:x]"
        );
        // A condition the runtime leaves out prints as Go's nil.
        s.observe::<()>(Ok(&status(vec![cond("RuntimeReady", true, "", "")])), t0);
        assert_eq!(
            s.readiness(t0, false).message,
            "container runtime network not ready: <nil>"
        );
    }

    #[test]
    fn a_shutdown_joins_the_errors_as_the_aggregate_prints_them() {
        let t0 = Instant::now();
        let mut s = RuntimeState::default();
        s.observe::<()>(Ok(&healthy()), t0);
        assert_eq!(s.readiness(t0, true).message, SHUTTING_DOWN);
        assert_eq!(
            s.readiness(t0 + RUNTIME_DOWN_AFTER, true).message,
            "[container runtime is down, node is shutting down]"
        );
        assert!(!s.readiness(t0, true).ready);
    }

    #[test]
    fn the_aggregate_drops_duplicates() {
        let e = |s: &str| s.to_string();
        assert_eq!(aggregate(&[e("a")]), "a");
        assert_eq!(aggregate(&[e("a"), e("b"), e("a")]), "[a, b]");
        assert_eq!(aggregate(&[e("a"), e("a")]), "a");
    }
}
