//! A recording, scripted [`KubeApi`] for the unit tests of the modules above `kube`.
//!
//! Owns [`FakeApi`]: every call builds the same [`Request`] the real client would send (with the
//! same builders), records it, and answers with the next reply scripted for its
//! [`RequestKind`]. An unscripted call fails like an unreachable API server. It does no I/O and
//! never panics; it is compiled into the library so integration tests can use it too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use serde::de::DeserializeOwned;

use super::api::{decode_list, CsrApi, EventStream, KubeApi};
use super::error::{ApiError, TransportPhase};
use super::request::{self, PatchType, Request, RequestKind};
use super::watch::{decode_watch_line, Page};

/// One scripted answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// A 2xx response with this JSON body, decoded into the method's return type (for lists:
    /// a `…List` object, e.g. a fixture's `response-body.json`).
    Json(serde_json::Value),
    /// The call fails with this error.
    Error(ApiError),
    /// For watch methods: the stream's lines (NDJSON watch events, e.g. the lines of a watch
    /// fixture), then its end. An `Err` item breaks the stream there.
    Stream(Vec<Result<Vec<u8>, ApiError>>),
}

#[derive(Default)]
struct Script {
    calls: Vec<Request>,
    replies: HashMap<RequestKind, VecDeque<Reply>>,
}

/// A [`KubeApi`] that records requests and replays scripted replies, per [`RequestKind`], in
/// order.
#[derive(Default)]
pub struct FakeApi {
    script: Mutex<Script>,
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        // A test that panicked while holding the lock must not hide the original panic.
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `reply` for the next call of `kind`.
    pub fn push(&self, kind: RequestKind, reply: Reply) {
        self.lock()
            .replies
            .entry(kind)
            .or_default()
            .push_back(reply);
    }

    /// Queues a 2xx answer with this body.
    pub fn push_json(&self, kind: RequestKind, body: serde_json::Value) {
        self.push(kind, Reply::Json(body));
    }

    /// Queues a 2xx answer with an object serialized from `object`; queues an
    /// [`ApiError::Encode`] instead if it does not serialize.
    pub fn push_object<T: serde::Serialize>(&self, kind: RequestKind, object: &T) {
        let reply = match serde_json::to_value(object) {
            Ok(v) => Reply::Json(v),
            Err(e) => Reply::Error(ApiError::Encode {
                request: super::error::RequestRef {
                    method: request::Method::Get,
                    path: format!("/fake/{kind}"),
                },
                message: e.to_string(),
            }),
        };
        self.push(kind, reply);
    }

    /// Queues a failure.
    pub fn push_error(&self, kind: RequestKind, error: ApiError) {
        self.push(kind, Reply::Error(error));
    }

    /// Queues a watch stream made of these NDJSON `lines` (bytes split at `\n`, empty lines
    /// dropped), ending cleanly.
    pub fn push_stream(&self, kind: RequestKind, ndjson: &[u8]) {
        let lines = ndjson
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| Ok(l.to_vec()))
            .collect();
        self.push(kind, Reply::Stream(lines));
    }

    /// Every request made so far, in order.
    pub fn calls(&self) -> Vec<Request> {
        self.lock().calls.clone()
    }

    /// The requests of one kind, in order.
    pub fn calls_of(&self, kind: RequestKind) -> Vec<Request> {
        self.lock()
            .calls
            .iter()
            .filter(|r| r.kind == kind)
            .cloned()
            .collect()
    }

    /// How many scripted replies are still unused.
    pub fn pending_replies(&self) -> usize {
        self.lock().replies.values().map(VecDeque::len).sum()
    }

    /// Records `request` and takes its reply.
    fn answer(&self, request: &Request) -> Result<Reply, ApiError> {
        let mut script = self.lock();
        script.calls.push(request.clone());
        let reply = script
            .replies
            .get_mut(&request.kind)
            .and_then(VecDeque::pop_front);
        match reply {
            Some(Reply::Error(e)) => Err(e),
            Some(reply) => Ok(reply),
            None => Err(ApiError::Transport {
                request: request.describe(),
                phase: TransportPhase::Connect,
                message: format!("fake: no reply scripted for {}", request.kind),
            }),
        }
    }

    fn call<T: DeserializeOwned>(
        &self,
        request: Result<Request, ApiError>,
        what: &'static str,
    ) -> Result<T, ApiError> {
        let request = request?;
        match self.answer(&request)? {
            Reply::Json(v) => serde_json::from_value(v).map_err(|e| ApiError::Decode {
                request: request.describe(),
                what,
                message: e.to_string(),
            }),
            other => Err(wrong_reply(&request, &other)),
        }
    }

    fn list<K: DeserializeOwned>(&self, request: &Request) -> Result<Page<K>, ApiError> {
        match self.answer(request)? {
            Reply::Json(v) => decode_list(request, v.to_string().as_bytes()),
            other => Err(wrong_reply(request, &other)),
        }
    }

    fn stream<K: DeserializeOwned + Send + 'static>(
        &self,
        request: &Request,
    ) -> Result<EventStream<K>, ApiError> {
        match self.answer(request)? {
            Reply::Stream(lines) => {
                let request = request.clone();
                Ok(Box::new(lines.into_iter().map(move |line| {
                    let line = line?;
                    decode_watch_line(&line).map_err(|e| ApiError::Decode {
                        request: request.describe(),
                        what: "watch event",
                        message: e.to_string(),
                    })
                })))
            }
            other => Err(wrong_reply(request, &other)),
        }
    }
}

fn wrong_reply(request: &Request, reply: &Reply) -> ApiError {
    let got = match reply {
        Reply::Json(_) => "a JSON reply",
        Reply::Error(_) => "an error",
        Reply::Stream(_) => "a stream reply",
    };
    ApiError::Decode {
        request: request.describe(),
        what: "fake reply",
        message: format!("fake: {} was scripted {got}", request.kind),
    }
}

impl CsrApi for FakeApi {
    fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError> {
        self.call(request::create_csr(csr), "certificate signing request")
    }

    fn list_csrs_page(
        &self,
        request: &Request,
    ) -> Result<Page<CertificateSigningRequest>, ApiError> {
        self.list(request)
    }

    fn watch_csrs(
        &self,
        request: &Request,
    ) -> Result<EventStream<CertificateSigningRequest>, ApiError> {
        self.stream(request)
    }
}

impl KubeApi for FakeApi {
    fn list_pods_page(&self, request: &Request) -> Result<Page<Pod>, ApiError> {
        self.list(request)
    }

    fn watch_pods(&self, request: &Request) -> Result<EventStream<Pod>, ApiError> {
        self.stream(request)
    }

    fn list_configmaps_page(&self, request: &Request) -> Result<Page<ConfigMap>, ApiError> {
        self.list(request)
    }

    fn watch_configmaps(&self, request: &Request) -> Result<EventStream<ConfigMap>, ApiError> {
        self.stream(request)
    }

    fn list_secrets_page(&self, request: &Request) -> Result<Page<Secret>, ApiError> {
        self.list(request)
    }

    fn watch_secrets(&self, request: &Request) -> Result<EventStream<Secret>, ApiError> {
        self.stream(request)
    }

    fn list_services_page(&self, request: &Request) -> Result<Page<Service>, ApiError> {
        self.list(request)
    }

    fn watch_services(&self, request: &Request) -> Result<EventStream<Service>, ApiError> {
        self.stream(request)
    }

    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError> {
        self.call(Ok(request::get_pod(namespace, name)), "Pod")
    }

    fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        patch: &serde_json::Value,
    ) -> Result<Pod, ApiError> {
        self.call(
            request::patch_pod_status(namespace, name, patch_type, patch),
            "Pod",
        )
    }

    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        grace_period_seconds: i64,
    ) -> Result<Pod, ApiError> {
        self.call(
            request::delete_pod(namespace, name, uid, grace_period_seconds),
            "Pod",
        )
    }

    fn get_node(&self, name: &str) -> Result<Node, ApiError> {
        self.call(Ok(request::get_node(name)), "Node")
    }

    fn create_node(&self, node: &Node) -> Result<Node, ApiError> {
        self.call(request::create_node(node), "Node")
    }

    fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, ApiError> {
        self.call(request::create_pod(namespace, pod), "Pod")
    }

    fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiError> {
        self.call(request::patch_node_status(name, patch), "Node")
    }

    fn get_lease(&self, name: &str) -> Result<Lease, ApiError> {
        self.call(Ok(request::get_lease(name)), "Lease")
    }

    fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError> {
        self.call(request::create_lease(lease), "Lease")
    }

    fn update_lease(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError> {
        self.call(request::update_lease(name, lease), "Lease")
    }

    fn create_event(&self, namespace: &str, event: &Event) -> Result<Event, ApiError> {
        self.call(request::create_event(namespace, event), "Event")
    }

    fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<Event, ApiError> {
        self.call(request::patch_event(namespace, name, patch), "Event")
    }

    fn get_configmap(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        self.call(Ok(request::get_configmap(namespace, name)), "ConfigMap")
    }

    fn get_secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError> {
        self.call(Ok(request::get_secret(namespace, name)), "Secret")
    }

    fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, ApiError> {
        self.call(
            Ok(request::get_persistent_volume_claim(namespace, name)),
            "PersistentVolumeClaim",
        )
    }

    fn get_runtime_class(&self, name: &str) -> Result<RuntimeClass, ApiError> {
        self.call(Ok(request::get_runtime_class(name)), "RuntimeClass")
    }

    fn get_persistent_volume(&self, name: &str) -> Result<PersistentVolume, ApiError> {
        self.call(Ok(request::get_persistent_volume(name)), "PersistentVolume")
    }

    fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        token_request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError> {
        self.call(
            request::create_token(namespace, service_account, token_request),
            "TokenRequest",
        )
    }

    fn token_review(&self, review: &TokenReview) -> Result<TokenReview, ApiError> {
        self.call(request::create_token_review(review), "TokenReview")
    }

    fn subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ApiError> {
        self.call(
            request::create_subject_access_review(review),
            "SubjectAccessReview",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::watch::WatchEvent;
    use std::path::PathBuf;

    fn fixture(dir: &str) -> Vec<u8> {
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/apiserver")
                .join(dir)
                .join("response-body.json"),
        )
        .unwrap()
    }

    fn json(dir: &str) -> serde_json::Value {
        serde_json::from_slice(&fixture(dir)).unwrap()
    }

    #[test]
    fn records_requests_and_replays_in_order() {
        let fake = FakeApi::new();
        fake.push_json(RequestKind::GetNode, json("04d-node-get"));
        fake.push_error(
            RequestKind::GetNode,
            ApiError::NotFound {
                request: request::get_node("vk-node").describe(),
                message: "nodes \"vk-node\" not found".into(),
            },
        );
        let api: &dyn KubeApi = &fake;
        let node = api.get_node("vk-node").unwrap();
        assert_eq!(node.metadata.name.as_deref(), Some("vk-node"));
        assert!(matches!(
            api.get_node("vk-node"),
            Err(ApiError::NotFound { .. })
        ));
        // Unscripted: like an unreachable server.
        let err = api.get_node("vk-node").unwrap_err();
        assert!(matches!(
            err,
            ApiError::Transport {
                phase: TransportPhase::Connect,
                ..
            }
        ));
        assert!(err.to_string().contains("no reply scripted for get_node"));
        assert_eq!(fake.calls().len(), 3);
        assert_eq!(fake.calls()[0], request::get_node("vk-node"));
        assert_eq!(fake.pending_replies(), 0);
    }

    #[test]
    fn records_bodies_as_the_real_client_would_send_them() {
        let fake = FakeApi::new();
        fake.push_json(RequestKind::DeletePod, json("10c-pod-delete-right-uid-200"));
        let pod = fake
            .delete_pod(
                "fixtures",
                "p-del",
                "cf0e9e0e-e384-436c-a663-200ba781d74c",
                0,
            )
            .unwrap();
        assert!(pod.metadata.deletion_timestamp.is_some());
        let calls = fake.calls_of(RequestKind::DeletePod);
        assert_eq!(
            calls,
            vec![request::delete_pod(
                "fixtures",
                "p-del",
                "cf0e9e0e-e384-436c-a663-200ba781d74c",
                0
            )
            .unwrap()]
        );
        assert!(fake.calls_of(RequestKind::GetPod).is_empty());
    }

    #[test]
    fn lists_and_streams_from_fixtures() {
        let fake = FakeApi::new();
        fake.push_json(RequestKind::ListPods, json("01-pods-list-by-node"));
        fake.push_stream(RequestKind::WatchPods, &fixture("02-pods-watch"));
        let list_req = request::list_pods_on_node("vk-node", &Default::default());
        let page = fake.list_pods_page(&list_req).unwrap();
        assert_eq!(page.items.len(), 3);
        let watch_req = request::watch_pods_on_node("vk-node", &Default::default());
        let events: Vec<_> = fake
            .watch_pods(&watch_req)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(events.len(), 7);
        assert!(matches!(events[6], WatchEvent::Bookmark { .. }));
    }

    #[test]
    fn stream_breaks_where_scripted() {
        let fake = FakeApi::new();
        let broken = ApiError::Transport {
            request: request::get_node("x").describe(),
            phase: TransportPhase::Exchange,
            message: "reset".into(),
        };
        fake.push(
            RequestKind::WatchSecrets,
            Reply::Stream(vec![
                Ok(
                    br#"{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"7"}}}"#
                        .to_vec(),
                ),
                Err(broken.clone()),
            ]),
        );
        let req = request::watch_secret_by_name("ns", "s", &Default::default());
        let items: Vec<_> = fake.watch_secrets(&req).unwrap().collect();
        assert_eq!(
            items,
            vec![
                Ok(WatchEvent::Bookmark {
                    resource_version: "7".into()
                }),
                Err(broken)
            ]
        );
    }

    #[test]
    fn wrong_reply_shape_is_a_decode_error() {
        let fake = FakeApi::new();
        fake.push_stream(RequestKind::GetSecret, b"{}");
        assert!(matches!(
            fake.get_secret("ns", "s"),
            Err(ApiError::Decode {
                what: "fake reply",
                ..
            })
        ));
        fake.push_json(RequestKind::GetSecret, serde_json::json!({"kind": "Pod"}));
        assert!(matches!(
            fake.get_secret("ns", "s"),
            Err(ApiError::Decode { what: "Secret", .. })
        ));
        fake.push_object(RequestKind::GetLease, &Lease::default());
        assert!(fake.get_lease("vk-node").is_ok());
    }
}
