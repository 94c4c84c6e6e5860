//! postStart and preStop hooks, as the kubelet runs them around StartContainer and
//! StopContainer.
//!
//! Owns when a hook runs and what its failure means: postStart runs right after the container
//! started and the start is not done until it returns (a failure is a FailedPostStartHook event,
//! and the caller kills the container); preStop runs before the stop signal, bounded by the grace
//! period, which the stop then gets what is left of (the kubelet's whole seconds, at least 2 s);
//! a failure is a FailedPreStopHook event and the stop goes ahead. The caller does the killing.
//! As the kubelet, the events say only `PostStartHook failed` / `PreStopHook failed` (a hook's
//! output may hold secrets); the full message is the container's waiting message and the log's.
//! An HTTPS hook answered in plain HTTP that succeeded over HTTP is a `LifecycleHTTPFallback`
//! warning on the pod.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};

use super::run::{self, Handlers, HookError};
use super::spec;
use crate::report::{EventType, PodReporter};

/// The kubelet never stops a container with less than this.
const MIN_GRACE: Duration = Duration::from_secs(2);
/// How long an httpGet postStart hook may take (the kubelet's own client has no limit; a hook
/// that never answers must not hold the pod's worker forever).
const POST_START_HTTP_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs the container's postStart hook, if it has one. `Err` is the message of the
/// FailedPostStartHook event already sent; the caller kills the container.
pub fn post_start(
    h: &dyn Handlers,
    reporter: &dyn PodReporter,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
) -> Result<(), HookError> {
    let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return Ok(());
    };
    let result = spec::hook_action(handler, c, pod_ip)
        .map_err(HookError::from)
        .and_then(|action| {
            // An exec hook has no timeout of its own (zero), as with the kubelet.
            let timeout = match action {
                spec::Action::HttpGet(_) => POST_START_HTTP_TIMEOUT,
                _ => Duration::ZERO,
            };
            run::hook(h, pod, c, container_id, &action, timeout)
        });
    match result {
        Ok(done) => {
            fallback_event(reporter, pod, &done);
            Ok(())
        }
        Err(msg) => {
            log::info!(
                "pod {}: postStart hook of container {} failed: {msg}",
                crate::pod::key(pod),
                c.name
            );
            reporter.container_event(
                pod,
                &c.name,
                EventType::Warning,
                "FailedPostStartHook",
                "PostStartHook failed",
            );
            Err(msg)
        }
    }
}

fn fallback_event(reporter: &dyn PodReporter, pod: &Pod, done: &run::HookDone) {
    if let Some(host) = &done.http_fallback {
        reporter.event(
            pod,
            EventType::Warning,
            "LifecycleHTTPFallback",
            &format!(
                "request to HTTPS lifecycle hook {host} got HTTP response, retry with HTTP succeeded"
            ),
        );
    }
}

/// The FailedPreStopHook event, and the full message in the log.
fn pre_stop_failed(reporter: &dyn PodReporter, pod: &Pod, c: &Container, msg: &HookError) {
    log::info!(
        "pod {}: preStop hook of container {} failed: {msg}",
        crate::pod::key(pod),
        c.name
    );
    reporter.container_event(
        pod,
        &c.name,
        EventType::Warning,
        "FailedPreStopHook",
        "PreStopHook failed",
    );
}

/// Runs the container's preStop hook, if it has one, for at most `grace`; the grace period left
/// for the stop itself.
pub fn pre_stop(
    h: Arc<dyn Handlers>,
    reporter: &dyn PodReporter,
    pod: &Pod,
    c: &Container,
    container_id: &str,
    pod_ip: &str,
    grace: Duration,
) -> Duration {
    let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) else {
        return grace;
    };
    if grace.is_zero() {
        return grace;
    }
    let started = Instant::now();
    let action = match spec::hook_action(handler, c, pod_ip) {
        Ok(a) => a,
        Err(e) => {
            pre_stop_failed(reporter, pod, c, &e.into());
            return grace;
        }
    };
    // On its own thread, so that a hook that overruns is left behind at the end of the grace
    // period (as the kubelet leaves its goroutine); the exec itself also has that timeout.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (pod2, c2, id) = (pod.clone(), c.clone(), container_id.to_string());
    let spawned = std::thread::Builder::new()
        .name("pre-stop".into())
        .spawn(move || {
            let _ = tx.send(run::hook(h.as_ref(), &pod2, &c2, &id, &action, grace));
        });
    match spawned.map(|_| rx.recv_timeout(grace)) {
        Ok(Ok(Ok(done))) => fallback_event(reporter, pod, &done),
        Ok(Ok(Err(msg))) => pre_stop_failed(reporter, pod, c, &msg),
        Ok(Err(_)) => log::info!(
            "pod {}: preStop hook of container {} did not complete within the grace period of {}s",
            crate::pod::key(pod),
            c.name,
            grace.as_secs()
        ),
        Err(e) => log::warn!("failed to start a preStop hook thread: {e}"),
    }
    // The kubelet counts whole seconds.
    let spent = Duration::from_secs(started.elapsed().as_secs());
    grace.saturating_sub(spent).max(MIN_GRACE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::ExecOutput;
    use crate::probe::run::fake::FakeHandlers;
    use k8s_openapi::api::core::v1::PodStatus;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Events(Mutex<Vec<(String, String)>>);
    impl PodReporter for Events {
        fn status(&self, _: &Pod, _: &PodStatus) {}
        fn event(&self, _: &Pod, _: EventType, reason: &str, message: &str) {
            self.0.lock().unwrap().push((reason.into(), message.into()));
        }
        fn deleted(&self, _: &Pod) -> Result<(), crate::kube::ApiError> {
            Ok(())
        }
        fn last_status(&self, _: &str) -> Option<Arc<PodStatus>> {
            None
        }
        fn forget(&self, _: &str) {}
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"}
        }))
        .unwrap()
    }

    fn container(lifecycle: serde_json::Value) -> Container {
        serde_json::from_value(serde_json::json!({"name": "c", "lifecycle": lifecycle})).unwrap()
    }

    #[test]
    fn a_failing_post_start_hook_is_an_event_and_an_error() {
        let h = FakeHandlers::default();
        h.exec.lock().unwrap().push_back(Ok(ExecOutput {
            stdout: Vec::new(),
            stderr: b"nope".to_vec(),
            exit_code: 1,
        }));
        let ev = Events::default();
        let c = container(serde_json::json!({"postStart": {"exec": {"command": ["false"]}}}));
        let err = post_start(&h, &ev, &pod(), &c, "id1", "127.0.0.1")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("Exec lifecycle hook ([false]) for Container \"c\""),
            "{err}"
        );
        assert_eq!(
            ev.0.lock().unwrap()[0],
            ("FailedPostStartHook".into(), "PostStartHook failed".into()),
            "the event never carries the hook's output"
        );
        assert_eq!(h.calls.lock().unwrap()[0], "exec id1 false 0s");
        // No hook: nothing runs.
        assert_eq!(
            post_start(
                &h,
                &ev,
                &pod(),
                &container(serde_json::json!({})),
                "id1",
                ""
            ),
            Ok(())
        );
        assert_eq!(h.calls.lock().unwrap().len(), 1);
    }

    #[test]
    fn pre_stop_shares_the_grace_period_and_leaves_at_least_two_seconds() {
        let h: Arc<FakeHandlers> = Arc::new(FakeHandlers::default());
        let ev = Events::default();
        let c =
            container(serde_json::json!({"preStop": {"httpGet": {"port": 8080, "path": "/quit"}}}));
        let left = pre_stop(
            h.clone(),
            &ev,
            &pod(),
            &c,
            "id1",
            "127.0.0.1",
            Duration::from_secs(30),
        );
        assert_eq!(
            left,
            Duration::from_secs(30),
            "a quick hook leaves the whole period"
        );
        assert_eq!(
            h.calls.lock().unwrap()[0],
            "get http://127.0.0.1:8080/quit kube-lifecycle/1.28"
        );
        let left = pre_stop(
            h.clone(),
            &ev,
            &pod(),
            &c,
            "id1",
            "127.0.0.1",
            Duration::from_secs(1),
        );
        assert_eq!(left, MIN_GRACE);
        assert!(ev.0.lock().unwrap().is_empty());
    }
}
