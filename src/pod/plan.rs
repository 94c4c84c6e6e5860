//! The planner: what to do next for a running pod, from its spec and what the runtime has.
//!
//! Owns `compute_actions`, the kubelet's `computePodActions` as a pure function: whether the
//! sandbox must be (re)created and with which attempt, which containers to kill, which to start
//! (init containers one at a time, in order, each to success; then the app containers), which are
//! waiting out a crash-loop back-off, and when the whole pod is done. It performs nothing; the pod
//! worker executes the actions through the runtime. Termination (deletion) is not planned here:
//! a terminating pod is stopped by the worker's terminating phase.
//!
//! ```text
//!   no sandbox / sandbox not ready / several ready / lost its IP
//!        │ yes                                   │ no
//!        ▼                                       ▼
//!   kill what is left, create sandbox       init containers, in order:
//!   (attempt+1), start the first init         running → wait · failed → restart or fail pod
//!   container or every app container          missing → start · all succeeded ↓
//!   (restartPolicy Never after a run:       app containers:
//!    the pod is done instead)                 running → keep (kill+start if spec changed or
//!                                                       unhealthy)
//!                                             not running → start if the policy says so
//!                                           nothing running, nothing to start → pod done
//! ```

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::backoff::Backoff;
use super::observed::{ContainerKind, ObservedContainer, ObservedPod, RunState};

/// What the planner needs.
#[derive(Clone, Copy)]
pub struct PlanInput<'a> {
    pub pod: &'a Pod,
    pub observed: &'a ObservedPod,
    /// Current spec hash of each container, by name (names are unique across init and app).
    pub hashes: &'a HashMap<String, String>,
    /// Running containers (by id) that a liveness or startup probe declared unhealthy, and why.
    pub unhealthy: &'a HashMap<String, String>,
    pub backoff: &'a Backoff,
    pub now: SystemTime,
}

/// A container instance to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub name: String,
    pub kind: ContainerKind,
    /// Restart count (and CRI attempt) of the new instance.
    pub restart_count: u32,
    /// When the previous instance exited: the executor records a back-off step for it.
    pub previous_exit: Option<SystemTime>,
}

/// Why a container is killed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillReason {
    /// Its spec changed (hash differs): it is restarted with the new spec.
    SpecChanged,
    /// A liveness or startup probe failed.
    Unhealthy(String),
    /// Created but never started (the runtime failed to start it, or the daemon died between
    /// the two calls): removed and created again.
    NeverStarted,
    /// Its state is unknown to the runtime.
    UnknownState,
}

/// A container instance to stop (and remove).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub reason: KillReason,
}

/// A container that would be started but is waiting out its back-off (CrashLoopBackOff).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingOff {
    pub name: String,
    pub kind: ContainerKind,
    pub backoff: Duration,
}

/// The plan for one sync of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Stop every container and the sandbox(es) first: the pod is done, or its sandbox is
    /// being replaced.
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// The existing sandbox to create containers in (when not creating one).
    pub sandbox_id: Option<String>,
    pub kill: Vec<Kill>,
    /// In order: at most one init container, or the app containers.
    pub start: Vec<Start>,
    pub backing_off: Vec<BackingOff>,
    /// An init container failed under restartPolicy Never: the pod has failed.
    pub pod_failed: bool,
}

/// `true` nanoseconds → time.
pub fn time_of(nanos: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64)
}

/// The back-off key of a container spec version.
pub fn backoff_key(name: &str, hash: &str) -> String {
    format!("{name}_{hash}")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The kubelet's `ShouldContainerBeRestarted` for a container whose latest instance is `latest`.
fn should_start(latest: Option<&ObservedContainer>, policy: &str) -> bool {
    match latest.map(|c| c.state) {
        None | Some(RunState::Created | RunState::Unknown) => true,
        Some(RunState::Running) => false,
        Some(RunState::Exited) => match policy {
            "Never" => false,
            "OnFailure" => latest.is_some_and(|c| c.exit_code != 0),
            _ => true,
        },
    }
}

/// Whether the sandbox must be (re)created, with which attempt, and the current one's id.
fn sandbox_changed(pod: &Pod, observed: &ObservedPod) -> (bool, u32, Option<String>) {
    let Some(latest) = observed.latest_sandbox() else {
        return (true, 0, None);
    };
    let ready = observed.sandboxes.iter().filter(|s| s.ready).count();
    let changed = ready > 1
        || !latest.ready
        || latest.host_network != super::host_network(pod)
        || (!latest.host_network && latest.ip.is_empty());
    if changed {
        (true, latest.attempt + 1, Some(latest.id.clone()))
    } else {
        (false, latest.attempt, Some(latest.id.clone()))
    }
}

/// Plans the next steps for a pod that is not being deleted.
pub fn compute_actions(input: PlanInput<'_>) -> Actions {
    let PlanInput { pod, observed, .. } = input;
    let policy = restart_policy(pod);
    let empty = Vec::new();
    let spec = pod.spec.as_ref();
    let init: &Vec<Container> = spec
        .and_then(|s| s.init_containers.as_ref())
        .unwrap_or(&empty);
    let app: &Vec<Container> = spec.map(|s| &s.containers).unwrap_or(&empty);

    let mut actions = Actions::default();
    let (create, attempt, current) = sandbox_changed(pod, observed);
    if create {
        // Everything in the old sandbox goes; the containers start over in the new one.
        actions.kill_pod = current.is_some() || observed.any_running();
        if policy == "Never" && attempt != 0 && !observed.containers.is_empty() {
            // The pod ran and must not run again: it is done.
            actions.kill_pod = true;
            return actions;
        }
        // The app containers that would run again (under OnFailure, not those that
        // succeeded); none: the pod is done and gets no new sandbox, even if it has init
        // containers (which would otherwise run again first). The kubelet's order.
        let apps: Vec<(&Container, ContainerKind)> = app
            .iter()
            .filter(|c| {
                !(policy == "OnFailure"
                    && observed
                        .latest(&c.name, ContainerKind::App)
                        .is_some_and(ObservedContainer::succeeded))
            })
            .map(|c| (c, ContainerKind::App))
            .collect();
        if apps.is_empty() {
            actions.kill_pod = true;
            return actions;
        }
        let to_start = match init.first() {
            Some(first) => vec![(first, ContainerKind::Init)],
            None => apps,
        };
        actions.create_sandbox = Some(attempt);
        for (c, kind) in to_start {
            plan_start(&input, &mut actions, c, kind);
        }
        return actions;
    }
    actions.sandbox_id = current;

    // Init containers, one at a time, in order, each to success.
    for c in init {
        let latest = observed.latest(&c.name, ContainerKind::Init);
        match latest.map(|l| l.state) {
            None => {
                plan_start(&input, &mut actions, c, ContainerKind::Init);
                return actions;
            }
            Some(RunState::Running) => return actions,
            Some(RunState::Exited) if latest.is_some_and(ObservedContainer::succeeded) => continue,
            Some(RunState::Exited) => {
                if policy == "Never" {
                    actions.pod_failed = true;
                    actions.kill_pod = true;
                } else {
                    plan_start(&input, &mut actions, c, ContainerKind::Init);
                }
                return actions;
            }
            Some(state @ (RunState::Created | RunState::Unknown)) => {
                let l = latest.expect("matched Some");
                actions.kill.push(Kill {
                    id: l.id.clone(),
                    name: c.name.clone(),
                    reason: if state == RunState::Created {
                        KillReason::NeverStarted
                    } else {
                        KillReason::UnknownState
                    },
                });
                plan_start(&input, &mut actions, c, ContainerKind::Init);
                return actions;
            }
        }
    }

    // App containers.
    let mut keep = 0;
    for c in app {
        let latest = observed.latest(&c.name, ContainerKind::App);
        match latest {
            Some(l) if l.is_running() => {
                let reason = if input.hashes.get(&c.name).is_some_and(|h| *h != l.hash) {
                    Some(KillReason::SpecChanged)
                } else {
                    input
                        .unhealthy
                        .get(&l.id)
                        .map(|why| KillReason::Unhealthy(why.clone()))
                };
                match reason {
                    None => keep += 1,
                    Some(reason) => {
                        let restart = reason == KillReason::SpecChanged || policy != "Never";
                        actions.kill.push(Kill {
                            id: l.id.clone(),
                            name: c.name.clone(),
                            reason,
                        });
                        if restart {
                            plan_start(&input, &mut actions, c, ContainerKind::App);
                        }
                    }
                }
            }
            _ => {
                if let Some(l) =
                    latest.filter(|l| matches!(l.state, RunState::Created | RunState::Unknown))
                {
                    actions.kill.push(Kill {
                        id: l.id.clone(),
                        name: c.name.clone(),
                        reason: if l.state == RunState::Created {
                            KillReason::NeverStarted
                        } else {
                            KillReason::UnknownState
                        },
                    });
                }
                if should_start(latest, policy) {
                    plan_start(&input, &mut actions, c, ContainerKind::App);
                }
            }
        }
    }
    if keep == 0 && actions.start.is_empty() && actions.backing_off.is_empty() {
        // Nothing runs and nothing will: the pod is done; stop its sandbox.
        actions.kill_pod = true;
    }
    actions
}

/// Exited container instances to remove: all but the newest `keep` exited instances of each
/// container (the kubelet's `getContainersToDeleteInPod`, which keeps one: the previous
/// instance for `logs --previous` and `lastState`). Running and created instances are never
/// counted or removed.
pub fn containers_to_remove(observed: &ObservedPod, keep: usize) -> Vec<String> {
    let mut seen: HashMap<(&str, ContainerKind), usize> = HashMap::new();
    let mut out = Vec::new();
    // Newest first (ObservedPod::sort).
    for c in observed.containers.iter().filter(|c| c.exited()) {
        let n = seen.entry((c.name.as_str(), c.kind)).or_insert(0);
        *n += 1;
        if *n > keep {
            out.push(c.id.clone());
        }
    }
    out
}

/// The kubelet's sandbox garbage collection for a pod that still exists (`evictSandboxes`):
/// every sandbox but the newest that is not ready and holds no container once `gone` are
/// removed.
pub fn sandboxes_to_remove(observed: &ObservedPod, gone: &[String]) -> Vec<String> {
    observed
        .sandboxes
        .iter()
        .skip(1) // newest first (ObservedPod::sort): the newest stays
        .filter(|sb| !sb.ready)
        .filter(|sb| {
            !observed
                .containers
                .iter()
                .any(|c| c.sandbox_id == sb.id && !gone.contains(&c.id))
        })
        .map(|sb| sb.id.clone())
        .collect()
}

/// Adds a start of `c`, unless the previous instance's back-off still runs.
fn plan_start(input: &PlanInput<'_>, actions: &mut Actions, c: &Container, kind: ContainerKind) {
    let latest = input.observed.latest(&c.name, kind);
    let restart_count = latest.map_or(0, |l| l.restart_count + 1);
    let previous_exit = latest
        .filter(|l| l.exited() && l.finished_at > 0)
        .map(|l| time_of(l.finished_at));
    if let Some(exit) = previous_exit {
        let hash = input.hashes.get(&c.name).map(String::as_str).unwrap_or("");
        if let Some(backoff) =
            input
                .backoff
                .in_backoff_since(&backoff_key(&c.name, hash), exit, input.now)
        {
            actions.backing_off.push(BackingOff {
                name: c.name.clone(),
                kind,
                backoff,
            });
            return;
        }
    }
    actions.start.push(Start {
        name: c.name.clone(),
        kind,
        restart_count,
        previous_exit,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::observed::ObservedSandbox;

    const T0: i64 = 1_800_000_000_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn pod(policy: &str, init: &[&str], app: &[&str], host_network: bool) -> Pod {
        let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox"});
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "hostNetwork": host_network,
                "initContainers": init.iter().map(c).collect::<Vec<_>>(),
                "containers": app.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn sandbox(attempt: u32, ready: bool) -> ObservedSandbox {
        ObservedSandbox {
            id: format!("sb{attempt}"),
            attempt,
            ready,
            created_at: T0 + attempt as i64 * SEC,
            ip: "10.88.0.5".into(),
            ..Default::default()
        }
    }

    fn ctr(
        name: &str,
        kind: ContainerKind,
        restart: u32,
        state: RunState,
        exit: i32,
    ) -> ObservedContainer {
        ObservedContainer {
            id: format!("{name}-{restart}"),
            sandbox_id: "sb0".into(),
            name: name.into(),
            kind,
            restart_count: restart,
            hash: "h".into(),
            state,
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            created_at: T0 + restart as i64 * 100 * SEC,
            started_at: T0 + restart as i64 * 100 * SEC + SEC,
            finished_at: if state == RunState::Exited {
                T0 + restart as i64 * 100 * SEC + 2 * SEC
            } else {
                0
            },
            image: "busybox".into(),
            image_ref: "sha256:1".into(),
            log_path: String::new(),
        }
    }

    struct Case {
        pod: Pod,
        observed: ObservedPod,
        hashes: HashMap<String, String>,
        unhealthy: HashMap<String, String>,
        backoff: Backoff,
        now: SystemTime,
    }

    impl Case {
        fn new(
            pod: Pod,
            sandboxes: Vec<ObservedSandbox>,
            containers: Vec<ObservedContainer>,
        ) -> Case {
            let mut observed = ObservedPod {
                sandboxes,
                containers,
            };
            observed.sort();
            let names = pod.spec.as_ref().unwrap();
            let hashes = names
                .init_containers
                .iter()
                .flatten()
                .chain(names.containers.iter())
                .map(|c| (c.name.clone(), "h".to_string()))
                .collect();
            Case {
                pod,
                observed,
                hashes,
                unhealthy: HashMap::new(),
                backoff: Backoff::default(),
                now: time_of(T0 + 10_000 * SEC),
            }
        }

        fn plan(&self) -> Actions {
            compute_actions(PlanInput {
                pod: &self.pod,
                observed: &self.observed,
                hashes: &self.hashes,
                unhealthy: &self.unhealthy,
                backoff: &self.backoff,
                now: self.now,
            })
        }
    }

    fn starts(a: &Actions) -> Vec<(String, ContainerKind, u32)> {
        a.start
            .iter()
            .map(|s| (s.name.clone(), s.kind, s.restart_count))
            .collect()
    }

    use ContainerKind::{App, Init};
    use RunState::{Created, Exited, Running};

    #[test]
    fn a_new_pod_gets_a_sandbox_and_all_app_containers() {
        let a = Case::new(pod("Always", &[], &["a", "b"], false), vec![], vec![]).plan();
        assert_eq!(a.create_sandbox, Some(0));
        assert!(!a.kill_pod);
        assert_eq!(starts(&a), [("a".into(), App, 0), ("b".into(), App, 0)]);
    }

    #[test]
    fn a_new_pod_with_init_containers_starts_only_the_first_one() {
        let a = Case::new(pod("Always", &["i1", "i2"], &["a"], false), vec![], vec![]).plan();
        assert_eq!(a.create_sandbox, Some(0));
        assert_eq!(starts(&a), [("i1".into(), Init, 0)]);
    }

    #[test]
    fn init_containers_run_in_order_each_to_success_before_the_app() {
        let p = pod("Always", &["i1", "i2"], &["a"], false);
        let running = Case::new(
            p.clone(),
            vec![sandbox(0, true)],
            vec![ctr("i1", Init, 0, Running, 0)],
        )
        .plan();
        assert_eq!(
            running,
            Actions {
                sandbox_id: Some("sb0".into()),
                ..Default::default()
            },
            "wait for i1"
        );
        let next = Case::new(
            p.clone(),
            vec![sandbox(0, true)],
            vec![ctr("i1", Init, 0, Exited, 0)],
        )
        .plan();
        assert_eq!(starts(&next), [("i2".into(), Init, 0)]);
        let app = Case::new(
            p,
            vec![sandbox(0, true)],
            vec![ctr("i1", Init, 0, Exited, 0), ctr("i2", Init, 0, Exited, 0)],
        )
        .plan();
        assert_eq!(starts(&app), [("a".into(), App, 0)]);
        assert!(!app.kill_pod);
    }

    #[test]
    fn a_failed_init_container_is_retried_or_fails_the_pod_under_never() {
        let c = Case::new(
            pod("OnFailure", &["i1"], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("i1", Init, 0, Exited, 1)],
        );
        let a = c.plan();
        assert_eq!(starts(&a), [("i1".into(), Init, 1)]);
        assert!(a.start[0].previous_exit.is_some());
        let never = Case::new(
            pod("Never", &["i1"], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("i1", Init, 0, Exited, 1)],
        )
        .plan();
        assert!(never.pod_failed && never.kill_pod && never.start.is_empty());
    }

    #[test]
    fn restart_policy_decides_which_exited_containers_start_again() {
        let exited = |code| vec![ctr("a", App, 0, Exited, code)];
        let plan = |policy, code| {
            Case::new(
                pod(policy, &[], &["a"], false),
                vec![sandbox(0, true)],
                exited(code),
            )
            .plan()
        };
        assert_eq!(starts(&plan("Always", 0)), [("a".into(), App, 1)]);
        assert_eq!(starts(&plan("Always", 1)), [("a".into(), App, 1)]);
        assert_eq!(starts(&plan("OnFailure", 1)), [("a".into(), App, 1)]);
        let done = plan("OnFailure", 0);
        assert!(
            done.start.is_empty() && done.kill_pod,
            "succeeded under OnFailure: pod done"
        );
        let never = plan("Never", 1);
        assert!(never.start.is_empty() && never.kill_pod, "Never: pod done");
    }

    #[test]
    fn a_running_container_is_kept_and_restarted_when_its_spec_changes() {
        let mut c = Case::new(
            pod("Always", &[], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("a", App, 3, Running, 0)],
        );
        assert_eq!(
            c.plan(),
            Actions {
                sandbox_id: Some("sb0".into()),
                ..Default::default()
            }
        );
        c.hashes.insert("a".into(), "new".into());
        let a = c.plan();
        assert_eq!(
            a.kill,
            [Kill {
                id: "a-3".into(),
                name: "a".into(),
                reason: KillReason::SpecChanged
            }]
        );
        assert_eq!(starts(&a), [("a".into(), App, 4)]);
    }

    #[test]
    fn an_unhealthy_container_is_killed_and_restarted_unless_never() {
        let mut c = Case::new(
            pod("Always", &[], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("a", App, 0, Running, 0)],
        );
        c.unhealthy
            .insert("a-0".into(), "Liveness probe failed".into());
        let a = c.plan();
        assert_eq!(
            a.kill[0].reason,
            KillReason::Unhealthy("Liveness probe failed".into())
        );
        assert_eq!(starts(&a), [("a".into(), App, 1)]);
        c.pod = pod("Never", &[], &["a"], false);
        let never = c.plan();
        assert_eq!(never.kill.len(), 1);
        assert!(never.start.is_empty());
    }

    #[test]
    fn a_restart_inside_the_backoff_waits_as_crash_loop() {
        let mut c = Case::new(
            pod("Always", &[], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("a", App, 2, Exited, 1)],
        );
        let exit = time_of(c.observed.containers[0].finished_at);
        c.backoff.next(&backoff_key("a", "h"), exit);
        c.now = exit + Duration::from_secs(5);
        let a = c.plan();
        assert!(a.start.is_empty());
        assert_eq!(
            a.backing_off,
            [BackingOff {
                name: "a".into(),
                kind: App,
                backoff: Duration::from_secs(10)
            }]
        );
        assert!(!a.kill_pod, "a container in back-off keeps the pod alive");
        c.now = exit + Duration::from_secs(11);
        assert_eq!(starts(&c.plan()), [("a".into(), App, 3)]);
    }

    #[test]
    fn a_dead_or_duplicated_sandbox_is_replaced_with_the_next_attempt() {
        let p = pod("Always", &[], &["a"], false);
        let dead = Case::new(
            p.clone(),
            vec![sandbox(0, false)],
            vec![ctr("a", App, 0, Exited, 137)],
        )
        .plan();
        assert_eq!(dead.create_sandbox, Some(1));
        assert!(dead.kill_pod);
        assert_eq!(
            starts(&dead),
            [("a".into(), App, 1)],
            "restart counts carry over"
        );
        let two = Case::new(p.clone(), vec![sandbox(0, true), sandbox(1, true)], vec![]).plan();
        assert_eq!(two.create_sandbox, Some(2));
        let mut no_ip = sandbox(0, true);
        no_ip.ip.clear();
        assert_eq!(
            Case::new(p, vec![no_ip], vec![]).plan().create_sandbox,
            Some(1)
        );
        let mut host = sandbox(0, true);
        host.ip.clear();
        host.host_network = true;
        let hp = pod("Always", &[], &["a"], true);
        assert_eq!(
            Case::new(hp, vec![host], vec![]).plan().create_sandbox,
            None,
            "host network needs no IP"
        );
    }

    #[test]
    fn a_finished_never_pod_is_not_restarted_when_its_sandbox_dies() {
        let a = Case::new(
            pod("Never", &[], &["a"], false),
            vec![sandbox(0, false)],
            vec![ctr("a", App, 0, Exited, 0)],
        )
        .plan();
        assert!(a.kill_pod);
        assert_eq!(a.create_sandbox, None);
        assert!(a.start.is_empty());
    }

    #[test]
    fn a_finished_on_failure_pod_with_init_containers_is_not_run_again() {
        // After a daemon restart the stopped sandbox is not ready: the pod must not get a new
        // one and run its init containers again when every app container succeeded.
        let done = Case::new(
            pod("OnFailure", &["i"], &["a", "b"], false),
            vec![sandbox(0, false)],
            vec![
                ctr("i", Init, 0, Exited, 0),
                ctr("a", App, 0, Exited, 0),
                ctr("b", App, 0, Exited, 0),
            ],
        )
        .plan();
        assert!(done.kill_pod);
        assert_eq!(done.create_sandbox, None);
        assert!(done.start.is_empty(), "{:?}", starts(&done));

        // One app container failed: a new sandbox, and the init containers first.
        let failed = Case::new(
            pod("OnFailure", &["i"], &["a", "b"], false),
            vec![sandbox(0, false)],
            vec![
                ctr("i", Init, 0, Exited, 0),
                ctr("a", App, 0, Exited, 0),
                ctr("b", App, 0, Exited, 1),
            ],
        )
        .plan();
        assert_eq!(failed.create_sandbox, Some(1));
        assert_eq!(starts(&failed), [("i".into(), Init, 1)]);
    }

    #[test]
    fn a_container_created_but_never_started_is_replaced() {
        let a = Case::new(
            pod("Always", &[], &["a"], false),
            vec![sandbox(0, true)],
            vec![ctr("a", App, 0, Created, 0)],
        )
        .plan();
        assert_eq!(
            a.kill,
            [Kill {
                id: "a-0".into(),
                name: "a".into(),
                reason: KillReason::NeverStarted
            }]
        );
        assert_eq!(starts(&a), [("a".into(), App, 1)]);
    }

    #[test]
    fn garbage_collection_keeps_the_newest_exited_instance_of_each_container() {
        let c = Case::new(
            pod("Always", &["i"], &["a", "b", "c"], false),
            vec![sandbox(0, true)],
            vec![
                ctr("i", Init, 0, Exited, 0),
                ctr("a", App, 0, Exited, 1),
                ctr("a", App, 1, Exited, 1),
                ctr("a", App, 2, Exited, 1),
                ctr("a", App, 3, Running, 0),
                ctr("b", App, 0, Running, 0),
                ctr("c", App, 0, Exited, 1),
                ctr("c", App, 1, Exited, 1),
            ],
        );
        let mut gone = containers_to_remove(&c.observed, 1);
        gone.sort();
        assert_eq!(
            gone,
            ["a-0", "a-1", "c-0"],
            "a keeps its running and its previous instance, c (in back-off) its last exit"
        );
    }

    #[test]
    fn old_sandboxes_go_once_empty_and_never_the_newest() {
        let mut c = Case::new(
            pod("Always", &[], &["a"], false),
            vec![sandbox(2, true), sandbox(1, false), sandbox(0, false)],
            vec![ctr("a", App, 1, Running, 0), ctr("a", App, 0, Exited, 1)],
        );
        // The exited instance lives in sandbox 1 (attempt 1): it holds it until it is gone.
        let (s0, s1, s2) = (
            c.observed.sandboxes[2].id.clone(),
            c.observed.sandboxes[1].id.clone(),
            c.observed.sandboxes[0].id.clone(),
        );
        c.observed.containers[0].sandbox_id = s2.clone();
        c.observed.containers[1].sandbox_id = s1.clone();
        assert_eq!(
            sandboxes_to_remove(&c.observed, &[]),
            std::slice::from_ref(&s0)
        );
        let gone = vec![c.observed.containers[1].id.clone()];
        assert_eq!(sandboxes_to_remove(&c.observed, &gone), [s1, s0]);
        c.observed.sandboxes[0].ready = false;
        assert!(
            !sandboxes_to_remove(&c.observed, &gone).contains(&s2),
            "the newest stays even when not ready"
        );
    }

    #[test]
    fn only_exited_siblings_of_running_containers_restart() {
        let a = Case::new(
            pod("OnFailure", &[], &["a", "b"], false),
            vec![sandbox(0, true)],
            vec![ctr("a", App, 0, Running, 0), ctr("b", App, 0, Exited, 0)],
        )
        .plan();
        assert!(
            a.start.is_empty() && !a.kill_pod,
            "b succeeded, a still runs"
        );
    }
}
