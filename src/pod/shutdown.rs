//! Graceful node shutdown, as data: which pods are stopped in which order and with what grace
//! period, and what their status says afterwards (the kubelet's `nodeshutdown` manager).
//!
//! Owns `migrateConfig` (`shutdownGracePeriod` and `shutdownGracePeriodCriticalPods` become two
//! priority groups: regular pods get the difference, pods at or above system-critical priority
//! get the critical period), `groupByPriority` (a pod joins the highest group whose priority it
//! reaches; below the lowest, the lowest), the per-pod grace (the group's, or the pod's own
//! `terminationGracePeriodSeconds` when shorter), and the words the kubelet writes: reason
//! `Terminated`, message `Pod was terminated in response to imminent node shutdown.`, the
//! `DisruptionTarget` condition with reason `TerminationByKubelet`, and the admission refusal
//! `NodeShutdown` (the node's Ready message is `node::agent`'s). Groups run one after the
//! other, lowest priority first, each for at most its period. Pure: no I/O.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The status reason of a pod stopped for the shutdown.
pub const REASON: &str = "Terminated";
/// Its message (also the DisruptionTarget condition's).
pub const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// The reason of a pod refused while the node shuts down.
pub const NOT_ADMITTED_REASON: &str = "NodeShutdown";
pub const NOT_ADMITTED_MESSAGE: &str = "Pod was rejected as the node is shutting down.";

/// `scheduling.SystemCriticalPriority`: system-cluster-critical and above.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// `scheduling.DefaultPriorityWhenNoDefaultClassExists`.
const DEFAULT_PRIORITY: i32 = 0;

/// One priority group: from `priority` up, stopped within `period`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub priority: i32,
    pub period: Duration,
    /// Its pods (UIDs) with the grace each is stopped with.
    pub pods: Vec<(String, Duration)>,
}

/// The groups for `shutdownGracePeriod` and `shutdownGracePeriodCriticalPods`, lowest priority
/// first; none when shutdown handling is off (period 0, or critical longer than the period).
pub fn groups(period: Duration, critical: Duration) -> Vec<Group> {
    if period.is_zero() || critical > period {
        return Vec::new();
    }
    // Whole seconds, as the kubelet's int64(d / time.Second).
    let secs = |d: Duration| Duration::from_secs(d.as_secs());
    vec![
        Group {
            priority: DEFAULT_PRIORITY,
            period: secs(period - critical),
            pods: Vec::new(),
        },
        Group {
            priority: SYSTEM_CRITICAL_PRIORITY,
            period: secs(critical),
            pods: Vec::new(),
        },
    ]
}

/// What the plan needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// `spec.terminationGracePeriodSeconds`.
    pub termination_grace: Option<i64>,
}

impl Candidate {
    pub fn of(pod: &Pod) -> Candidate {
        let spec = pod.spec.as_ref();
        Candidate {
            uid: crate::pod::uid(pod).to_string(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            termination_grace: spec.and_then(|s| s.termination_grace_period_seconds),
        }
    }
}

/// The pods placed in `groups` (from [`groups`]), each with its grace: the group's period, or
/// the pod's own grace when that is shorter. Groups without pods are dropped (nothing to wait
/// for).
pub fn plan(mut groups: Vec<Group>, pods: &[Candidate]) -> Vec<Group> {
    if groups.is_empty() {
        return groups;
    }
    for pod in pods {
        // The first group at or above the pod's priority; a pod between two groups goes to the
        // lower one, a pod above the highest to the highest.
        let mut index = groups
            .iter()
            .position(|g| g.priority >= pod.priority)
            .unwrap_or(groups.len() - 1);
        if index > 0 && groups[index].priority > pod.priority {
            index -= 1;
        }
        let group = &mut groups[index];
        let grace = match pod.termination_grace {
            Some(own) if own >= 0 && Duration::from_secs(own as u64) <= group.period => {
                Duration::from_secs(own as u64)
            }
            _ => group.period,
        };
        group.pods.push((pod.uid.clone(), grace));
    }
    groups.retain(|g| !g.pods.is_empty());
    groups
}

/// The status of a pod refused while the node shuts down, as the kubelet's `rejectPod` sets it:
/// Failed, reason `NodeShutdown`, message `Pod was rejected: ` + the admission message, and of
/// what it had only what the kubelet does not own (others' conditions, qosClass); its start
/// time is set once, as the status manager sets every pod's.
pub fn refused_status(old: Option<&PodStatus>, now: Timestamp) -> PodStatus {
    rejected_status(old, now, NOT_ADMITTED_REASON, NOT_ADMITTED_MESSAGE)
}

/// The kubelet's `rejectPod` status for any admission refusal: Failed, `reason`, message
/// `Pod was rejected: ` + `message` (the eviction manager's `Evicted` refusal too).
pub fn rejected_status(
    old: Option<&PodStatus>,
    now: Timestamp,
    reason: &str,
    message: &str,
) -> PodStatus {
    let kept = old
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| !crate::pod::status::KUBELET_CONDITIONS.contains(&c.type_.as_str()))
                .cloned()
                .collect::<Vec<_>>()
        })
        .filter(|cs| !cs.is_empty());
    PodStatus {
        phase: Some("Failed".into()),
        reason: Some(reason.into()),
        message: Some(format!("Pod was rejected: {message}")),
        conditions: kept,
        qos_class: old.and_then(|s| s.qos_class.clone()),
        start_time: Some(old.and_then(|s| s.start_time.clone()).unwrap_or(Time(now))),
        ..PodStatus::default()
    }
}

/// The status of a pod stopped for the shutdown: Failed (unless it had Succeeded), the reason
/// and message, and the DisruptionTarget condition (its transition time kept if it had one).
pub fn stopped_status(status: PodStatus, now: Timestamp) -> PodStatus {
    killed_status(status, REASON, MESSAGE, now)
}

/// A pod the kubelet stopped itself (node shutdown, eviction): Failed (unless it had
/// Succeeded), `reason` and `message`, and the `DisruptionTarget` condition with reason
/// `TerminationByKubelet` (its transition time kept if it had one).
pub fn killed_status(
    mut status: PodStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> PodStatus {
    if status.phase.as_deref() != Some("Succeeded") {
        status.phase = Some("Failed".into());
    }
    status.reason = Some(reason.into());
    status.message = Some(message.into());
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let condition = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("TerminationByKubelet".into()),
        message: Some(message.into()),
        last_transition_time: Some(Time(now)),
        last_probe_time: None,
        observed_generation: None,
    };
    match conditions
        .iter_mut()
        .find(|c| c.type_ == "DisruptionTarget")
    {
        Some(c) if c.status == "True" => {
            let since = c.last_transition_time.clone();
            *c = condition;
            if since.is_some() {
                c.last_transition_time = since;
            }
        }
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, grace: Option<i64>) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            termination_grace: grace,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_two_periods_make_two_groups_as_migrate_config_does() {
        assert!(groups(Duration::ZERO, Duration::ZERO).is_empty(), "off");
        assert!(
            groups(secs(10), secs(20)).is_empty(),
            "critical longer: off"
        );
        let g = groups(secs(30), secs(10));
        assert_eq!(
            g.iter().map(|g| (g.priority, g.period)).collect::<Vec<_>>(),
            [(0, secs(20)), (2_000_000_000, secs(10))]
        );
        let g = groups(Duration::from_millis(30_900), Duration::from_millis(10_500));
        assert_eq!(g[0].period, secs(20), "whole seconds of the difference");
        assert_eq!(g[1].period, secs(10));
        let g = groups(secs(30), Duration::ZERO);
        assert_eq!(g[1].period, Duration::ZERO);
    }

    #[test]
    fn pods_are_grouped_by_priority_and_graced_as_the_kubelet_does() {
        // (pod, priority, terminationGracePeriodSeconds) → (group, grace)
        let table: &[(&str, i32, Option<i64>, usize, u64)] = &[
            ("regular", 0, None, 0, 20),
            ("regular-short", 0, Some(5), 0, 5),
            ("regular-long", 0, Some(60), 0, 20),
            ("regular-zero", 0, Some(0), 0, 0),
            ("negative-priority", -10, None, 0, 20),
            ("high-but-not-critical", 1_000_000, Some(3), 0, 3),
            ("cluster-critical", 2_000_000_000, None, 1, 10),
            ("node-critical", 2_000_001_000, Some(30), 1, 10),
            ("node-critical-short", 2_000_001_000, Some(4), 1, 4),
        ];
        let pods: Vec<Candidate> = table
            .iter()
            .map(|(uid, prio, grace, _, _)| pod(uid, *prio, *grace))
            .collect();
        let planned = plan(groups(secs(30), secs(10)), &pods);
        assert_eq!(planned.len(), 2);
        for (uid, _, _, group, grace) in table {
            let found = planned[*group]
                .pods
                .iter()
                .find(|(u, _)| u == uid)
                .unwrap_or_else(|| panic!("{uid} not in group {group}"));
            assert_eq!(found.1, secs(*grace), "{uid}");
        }
        // Regular pods first, then the critical ones.
        assert_eq!(planned[0].priority, 0);
        // A group with no pods is not waited for.
        let only_regular = plan(groups(secs(30), secs(10)), &[pod("a", 0, None)]);
        assert_eq!(only_regular.len(), 1);
        assert_eq!(only_regular[0].priority, 0);
        assert!(plan(Vec::new(), &pods).is_empty());
    }

    #[test]
    fn a_refused_pod_keeps_only_what_the_kubelet_does_not_own() {
        let old: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Pending",
            "qosClass": "BestEffort",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "False"},
                {"type": "example.com/gate", "status": "True"},
            ],
            "containerStatuses": [{"name": "c", "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"waiting": {"reason": "ContainerCreating"}}}],
        }))
        .unwrap();
        let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let s = refused_status(Some(&old), now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("NodeShutdown"));
        assert_eq!(
            s.message.as_deref(),
            Some("Pod was rejected: Pod was rejected as the node is shutting down.")
        );
        let types: Vec<&str> = s
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            ["example.com/gate"],
            "the kubelet's own are not carried over"
        );
        assert_eq!(s.start_time, Some(Time(now)));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert!(s.container_statuses.is_none());
        assert_eq!(refused_status(None, now).conditions, None);
    }

    #[test]
    fn a_stopped_pod_fails_with_the_kubelets_words_unless_it_succeeded() {
        let now: Timestamp = "2026-12-07T10:00:00Z".parse().unwrap();
        let running = PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        };
        let s = stopped_status(running, now);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("Terminated"));
        assert_eq!(
            s.message.as_deref(),
            Some("Pod was terminated in response to imminent node shutdown.")
        );
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
            ("DisruptionTarget", "True", Some("TerminationByKubelet"))
        );
        let later: Timestamp = "2026-12-07T10:00:05Z".parse().unwrap();
        let again = stopped_status(s.clone(), later);
        assert_eq!(
            again.conditions.as_ref().unwrap()[0].last_transition_time,
            Some(Time(now)),
            "the transition is kept"
        );
        let done = PodStatus {
            phase: Some("Succeeded".into()),
            ..PodStatus::default()
        };
        assert_eq!(
            stopped_status(done, now).phase.as_deref(),
            Some("Succeeded")
        );
    }
}
