//! The reflectors: the pods bound to this node (told to the pod workers as they change) and
//! every Service of the cluster (kept in a [`ServiceCache`] for the containers' service
//! environment variables).
//!
//! Owns [`run_reflector`], the one loop that drives the pure [`Watcher`] state machine with a
//! pair of [`KubeApi`] calls — sleeping as it says, sending its requests, feeding the answers
//! back — and applies its output to a [`Store`]; the pod and service reflectors only say what
//! to do with the result (pod events on a channel; a new snapshot of the services). This is the
//! only place the watch decisions are logged. It never decides anything about pods.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use k8s_openapi::api::core::v1::{Pod, Service};

use super::backoff::BackoffPolicy;
use super::watch::{
    CacheEvent, Delta, Input, Next, Object, Page, Step, Store, Target, Wait, WatchConfig, Watcher,
};
use super::{ApiError, EventStream, KubeApi, Request};
use crate::source::PodEvent;
use crate::source::SourcesReady;

/// A number in [0, 1) for backoff jitter; not cryptographic, just different per call.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

fn wait(policy: &BackoffPolicy, w: Wait, pause: &dyn Fn(std::time::Duration)) {
    if let Wait::Backoff {
        attempt,
        retry_after,
    } = w
    {
        pause(policy.delay(attempt, jitter(), retry_after));
    }
}

/// The list and watch calls of one kind of object (a [`KubeApi`] method pair).
pub struct ListWatch<'a, K> {
    /// What is watched, for the log (`pod`, `service`).
    pub what: &'static str,
    pub list: &'a dyn Fn(&Request) -> Result<Page<K>, ApiError>,
    pub watch: &'a dyn Fn(&Request) -> Result<EventStream<K>, ApiError>,
    /// Sleeps a backoff ([`KubeApi::backoff_pause`]: cut short when the server is back).
    pub pause: &'a dyn Fn(std::time::Duration),
}

/// What the store learned from one step: the deltas in order, and whether they come from a
/// (re)list (the store now holds the complete set).
pub struct Applied<'s, K> {
    pub store: &'s Store<K>,
    pub deltas: Vec<Delta<K>>,
    pub relisted: bool,
}

/// Drives a [`Watcher`] with these calls until `sink` returns `false`: sleeps as the watcher
/// says, sends its requests, feeds the answers back, applies each step to the [`Store`] and
/// hands the result to `sink`. Never returns early on API errors: it backs off and relists as
/// the watcher decides, and logs each error once, here.
pub fn run_reflector<K: Object>(
    calls: &ListWatch<'_, K>,
    mut watcher: Watcher<K>,
    mut sink: impl FnMut(Applied<'_, K>) -> bool,
) {
    let policy = BackoffPolicy::default();
    let mut store: Store<K> = Store::new();
    let mut apply = |step: Step<K>| -> bool {
        report(calls.what, &step.error, &step.undecodable);
        let relisted = step
            .events
            .iter()
            .any(|e| matches!(e, CacheEvent::Relisted { .. }));
        let mut deltas = Vec::new();
        for ev in step.events {
            deltas.extend(store.apply(ev));
        }
        if deltas.is_empty() && !relisted {
            return true;
        }
        sink(Applied {
            store: &store,
            deltas,
            relisted,
        })
    };
    let mut next = watcher.resume();
    loop {
        let step = match next {
            Next::List { request, wait: w } => {
                wait(&policy, w, calls.pause);
                watcher.step(Input::Page((calls.list)(&request)))
            }
            Next::Watch { request, wait: w } => {
                wait(&policy, w, calls.pause);
                match (calls.watch)(&request) {
                    Err(e) => watcher.step(Input::StreamError(e)),
                    Ok(stream) => {
                        let mut ended = None;
                        for item in stream {
                            let step = watcher.step(match item {
                                Ok(ev) => Input::Event(ev),
                                Err(e) => Input::StreamError(e),
                            });
                            let after = step.next.clone();
                            if !apply(step) {
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
        if !apply(step) {
            return;
        }
    }
}

/// Lists and watches the pods bound to `node` until the receiver of `tx` is gone, sending a
/// [`PodEvent`] for every pod added, changed or deleted. `ready` is told once the first full
/// list has been delivered.
pub fn run_pod_reflector(
    api: Arc<dyn KubeApi>,
    node: &str,
    config: WatchConfig,
    tx: &Sender<PodEvent>,
    ready: &SourcesReady,
) {
    let mut listed = false;
    let watcher: Watcher<Pod> = Watcher::new(
        Target::PodsOnNode {
            node: node.to_string(),
        },
        config,
    );
    let list = |r: &Request| api.list_pods_page(r);
    let watch = |r: &Request| api.watch_pods(r);
    let pause = |d| api.backoff_pause(d);
    let calls = ListWatch {
        what: "pod",
        list: &list,
        watch: &watch,
        pause: &pause,
    };
    run_reflector(&calls, watcher, |applied| {
        for delta in applied.deltas {
            let event = match delta {
                Delta::Added(p) | Delta::Updated(p) => PodEvent::Upsert(p),
                Delta::Deleted(p) => PodEvent::Remove {
                    uid: p.metadata.uid.clone().unwrap_or_default(),
                },
            };
            if tx.send(event).is_err() {
                return false;
            }
        }
        if applied.relisted && !std::mem::replace(&mut listed, true) {
            ready.done();
        }
        true
    });
}

/// Lists and watches every Service of the cluster into `cache`, as the kubelet's services
/// informer does for the service environment variables. Runs for as long as the process.
pub fn run_service_reflector(api: Arc<dyn KubeApi>, config: WatchConfig, cache: &ServiceCache) {
    let watcher: Watcher<Service> = Watcher::new(Target::Services, config);
    let list = |r: &Request| api.list_services_page(r);
    let watch = |r: &Request| api.watch_services(r);
    let pause = |d| api.backoff_pause(d);
    let calls = ListWatch {
        what: "service",
        list: &list,
        watch: &watch,
        pause: &pause,
    };
    run_reflector(&calls, watcher, |applied| {
        cache.replace(applied.store.iter().cloned().collect());
        true
    });
}

/// The services the service reflector has seen, shared with the pod workers. `None` until the
/// first complete list arrived (the kubelet's `serviceHasSynced`).
#[derive(Clone, Default)]
pub struct ServiceCache(Arc<Mutex<Option<Services>>>);

/// Every service of the cluster, shared with the reflector's store.
pub type Services = Arc<Vec<Arc<Service>>>;

impl ServiceCache {
    pub fn new() -> ServiceCache {
        ServiceCache::default()
    }

    /// Replaces the set; the cache counts as synced from the first call on.
    pub fn replace(&self, services: Vec<Arc<Service>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(services));
    }

    /// Every service known, or `None` before the first complete list.
    pub fn snapshot(&self) -> Option<Services> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn report(what: &str, error: &Option<ApiError>, undecodable: &[super::watch::Undecodable]) {
    if let Some(e) = error {
        if e.is_retryable() {
            log::debug!("{what} watch: {e}; retrying");
        } else {
            log::warn!("{what} watch: {e}");
        }
    }
    for u in undecodable {
        log::warn!("{what} watch: {u:?}");
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

    /// The service reflector uses the same machine: the cache stays unsynced until the first
    /// complete list (cluster-wide, from the watch cache), then follows the watch.
    #[test]
    fn services_are_listed_cluster_wide_then_watched_into_the_cache() {
        let api = Arc::new(FakeApi::new());
        api.push_error(
            RequestKind::ListServices,
            crate::kube::ApiError::Transport {
                request: request_ref(),
                phase: crate::kube::error::TransportPhase::Connect,
                message: "refused".into(),
            },
        );
        api.push_json(
            RequestKind::ListServices,
            serde_json::json!({"kind": "ServiceList", "apiVersion": "v1",
                "metadata": {"resourceVersion": "50"},
                "items": [{"metadata": {"name": "kubernetes", "namespace": "default", "uid": "u1", "resourceVersion": "10"},
                           "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}}]}),
        );
        api.push_stream(
            RequestKind::WatchServices,
            concat!(
                r#"{"type":"ADDED","object":{"kind":"Service","apiVersion":"v1","metadata":{"name":"db","namespace":"app","uid":"u2","resourceVersion":"51"},"spec":{"clusterIP":"10.96.0.9","ports":[{"port":5432}]}}}"#,
                "\n",
                r#"{"type":"BOOKMARK","object":{"kind":"Service","apiVersion":"v1","metadata":{"resourceVersion":"60","creationTimestamp":null},"spec":{},"status":{"loadBalancer":{}}}}"#,
                "\n"
            )
            .as_bytes(),
        );
        let cache = ServiceCache::new();
        assert!(cache.snapshot().is_none());
        let (api2, cache2): (Arc<dyn KubeApi>, _) = (api.clone(), cache.clone());
        let handle = std::thread::spawn(move || {
            run_service_reflector(api2, WatchConfig::default(), &cache2);
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let names: Vec<String> = cache
                .snapshot()
                .map(|s| s.iter().filter_map(|s| s.metadata.name.clone()).collect())
                .unwrap_or_default();
            if names.len() == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{names:?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let lists = api.calls_of(RequestKind::ListServices);
        assert_eq!(
            lists[0].url("https://x"),
            "https://x/api/v1/services?limit=500&resourceVersion=0"
        );
        let url = api.calls_of(RequestKind::WatchServices)[0].url("https://x");
        assert!(
            url.starts_with(
                "https://x/api/v1/services?watch=true&resourceVersion=50&allowWatchBookmarks=true"
            ),
            "{url}"
        );
        // It runs for the life of the process (retrying with backoff once the fake runs dry).
        drop(handle);
    }

    fn request_ref() -> crate::kube::error::RequestRef {
        crate::kube::request::list_services(&Default::default()).describe()
    }
}
