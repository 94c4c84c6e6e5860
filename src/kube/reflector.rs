//! The pod reflector: keeps a cache of the pods bound to this node and tells the pod workers
//! what changed.
//!
//! Owns the loop that drives the pure [`Watcher`] state machine with a [`KubeApi`] — sleeping as
//! it says, sending its requests, feeding the answers back — and applies its output to the
//! [`Store`], turning deltas into [`PodEvent`]s on a channel. This is the only place the watch
//! decisions are logged. It never decides anything about pods.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use k8s_openapi::api::core::v1::Pod;

use super::backoff::BackoffPolicy;
use super::watch::{Delta, Input, Next, Step, Store, Target, Wait, WatchConfig, Watcher};
use super::KubeApi;
use crate::pod::pleg::SourcesReady;
use crate::pod::PodEvent;

/// A number in [0, 1) for backoff jitter; not cryptographic, just different per call.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

fn wait(policy: &BackoffPolicy, w: Wait) {
    if let Wait::Backoff {
        attempt,
        retry_after,
    } = w
    {
        std::thread::sleep(policy.delay(attempt, jitter(), retry_after));
    }
}

/// Lists and watches the pods bound to `node` until the receiver of `tx` is gone, sending a
/// [`PodEvent`] for every pod added, changed or deleted. Never returns early on API errors: it
/// backs off and relists as the watcher decides. `ready` is told once the first full list has
/// been delivered.
pub fn run_pod_reflector(
    api: Arc<dyn KubeApi>,
    node: &str,
    config: WatchConfig,
    tx: &Sender<PodEvent>,
    ready: &SourcesReady,
) {
    let mut listed = false;
    let policy = BackoffPolicy::default();
    let mut watcher: Watcher<Pod> = Watcher::new(
        Target::PodsOnNode {
            node: node.to_string(),
        },
        config,
    );
    let mut store: Store<Pod> = Store::new();
    let mut next = watcher.resume();
    loop {
        let step = match next {
            Next::List { request, wait: w } => {
                wait(&policy, w);
                watcher.step(Input::Page(api.list_pods_page(&request)))
            }
            Next::Watch { request, wait: w } => {
                wait(&policy, w);
                match api.watch_pods(&request) {
                    Err(e) => watcher.step(Input::StreamError(e)),
                    Ok(stream) => {
                        let mut ended = None;
                        for item in stream {
                            let step = watcher.step(match item {
                                Ok(ev) => Input::Event(ev),
                                Err(e) => Input::StreamError(e),
                            });
                            let after = step.next.clone();
                            if !apply(&mut store, step, tx, ready, &mut listed) {
                                return;
                            }
                            if after != Next::KeepReading {
                                ended = Some(after);
                                break;
                            }
                        }
                        match ended {
                            Some(after) => {
                                next = after;
                                continue;
                            }
                            None => watcher.step(Input::StreamEnd),
                        }
                    }
                }
            }
            Next::KeepReading => {
                next = watcher.resume();
                continue;
            }
        };
        next = step.next.clone();
        if !apply(&mut store, step, tx, ready, &mut listed) {
            return;
        }
    }
}

/// Applies a step's cache events to the store, sends the resulting pod events and reports the
/// step's problems. `false` when nobody listens any more.
fn apply(
    store: &mut Store<Pod>,
    step: Step<Pod>,
    tx: &Sender<PodEvent>,
    ready: &SourcesReady,
    listed: &mut bool,
) -> bool {
    report(&step.error, &step.undecodable);
    let relisted = step
        .events
        .iter()
        .any(|e| matches!(e, super::watch::CacheEvent::Relisted { .. }));
    for ev in step.events {
        for delta in store.apply(ev) {
            let event = match delta {
                Delta::Added(p) | Delta::Updated(p) => PodEvent::Upsert(Arc::new(p)),
                Delta::Deleted(p) => PodEvent::Remove {
                    uid: p.metadata.uid.unwrap_or_default(),
                },
            };
            if tx.send(event).is_err() {
                return false;
            }
        }
    }
    if relisted && !std::mem::replace(listed, true) {
        ready.done();
    }
    true
}

fn report(error: &Option<super::ApiError>, undecodable: &[super::watch::Undecodable]) {
    if let Some(e) = error {
        if e.is_retryable() {
            log::debug!("pod watch: {e}; retrying");
        } else {
            log::warn!("pod watch: {e}");
        }
    }
    for u in undecodable {
        log::warn!("pod watch: {u:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::FakeApi;
    use crate::kube::RequestKind;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/apiserver/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn kinds(events: &[PodEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                PodEvent::Upsert(p) => {
                    format!("upsert {}", p.metadata.name.as_deref().unwrap_or(""))
                }
                PodEvent::Remove { uid } => format!("remove {}", &uid[..8]),
            })
            .collect()
    }

    /// The recorded list, then the recorded watch (w1 added, changed, deleted gracefully,
    /// bookmarks), then nothing more: the FakeApi fails the next call, which ends the test
    /// once the receiver is dropped.
    #[test]
    fn recorded_list_and_watch_become_pod_events_in_order() {
        let api = Arc::new(FakeApi::new());
        let list: serde_json::Value =
            serde_json::from_slice(&fixture("01-pods-list-by-node/response-body.json")).unwrap();
        api.push_json(RequestKind::ListPods, list);
        api.push_stream(
            RequestKind::WatchPods,
            &fixture("02-pods-watch/response-body.json"),
        );
        let (tx, rx) = crossbeam_channel::unbounded();
        let api2: Arc<dyn KubeApi> = api.clone();
        let ready = SourcesReady::new(1);
        let ready2 = ready.clone();
        let handle = std::thread::spawn(move || {
            run_pod_reflector(api2, "vk-node", WatchConfig::default(), &tx, &ready2);
        });
        let mut got = Vec::new();
        while got.len() < 8 {
            got.push(
                rx.recv_timeout(std::time::Duration::from_secs(5))
                    .expect("pod event"),
            );
        }
        drop(rx);
        assert!(ready.all_ready(), "the first list makes the source ready");
        let mut listed: Vec<String> = kinds(&got[..3]);
        listed.sort();
        assert_eq!(listed, ["upsert p-del", "upsert p1", "upsert p2"]);
        assert_eq!(
            kinds(&got[3..]),
            [
                "upsert w1",
                "upsert w1",
                "upsert w1",
                "upsert w1",
                "remove c07afab5"
            ]
        );
        // The watch resumed from the list's resourceVersion, with bookmarks.
        let watch = api.calls_of(RequestKind::WatchPods);
        let url = watch[0].url("https://x");
        assert!(
            url.contains("resourceVersion=2691") && url.contains("allowWatchBookmarks=true"),
            "{url}"
        );
        // The reflector keeps retrying (with backoff) after the fake runs dry; it stops as soon
        // as it has something to send and nobody listens. Detach it.
        drop(handle);
    }
}
