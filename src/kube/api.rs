//! The typed API server operations the daemon needs, as a trait, and its real implementation.
//!
//! Owns [`KubeApi`] (one method per operation, typed with k8s-openapi objects) and its
//! implementation over [`ApiClient`]: build the request (`request`), send it (`client`), decode
//! the answer. Modules above use `&dyn KubeApi` and are tested with [`super::fake::FakeApi`].
//! [`CsrApi`] is the bootstrap token's separate, narrow set (TLS bootstrap).
//! It holds no state and makes no decisions about retries beyond what `client` does.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use serde::de::DeserializeOwned;

use super::client::ApiClient;
use super::error::ApiError;
use super::request::{self, PatchType, Request};
use super::watch::{decode_page, Page, WatchEvent};

/// A watch stream: decoded events as they arrive. It ends (`None`) when the server closes the
/// stream cleanly; after an `Err` it yields nothing more.
pub type EventStream<K> = Box<dyn Iterator<Item = Result<WatchEvent<K>, ApiError>> + Send>;

/// Every call vk-cri makes to the API server, as `system:node:NAME`.
///
/// List and watch methods take the [`Request`] a [`super::watch::Watcher`] asked for (built by
/// `request::list_pods_on_node`, `request::watch_secret_by_name`, …); the others build their
/// own request from their arguments.
pub trait KubeApi: Send + Sync {
    /// One page of pods (a request from `request::list_pods_on_node`).
    fn list_pods_page(&self, request: &Request) -> Result<Page<Pod>, ApiError>;
    /// A pod watch (a request from `request::watch_pods_on_node`).
    fn watch_pods(&self, request: &Request) -> Result<EventStream<Pod>, ApiError>;
    /// One page of the single-ConfigMap list (`request::list_configmap_by_name`).
    fn list_configmaps_page(&self, request: &Request) -> Result<Page<ConfigMap>, ApiError>;
    /// A single-ConfigMap watch (`request::watch_configmap_by_name`).
    fn watch_configmaps(&self, request: &Request) -> Result<EventStream<ConfigMap>, ApiError>;
    /// One page of the single-Secret list (`request::list_secret_by_name`).
    fn list_secrets_page(&self, request: &Request) -> Result<Page<Secret>, ApiError>;
    /// A single-Secret watch (`request::watch_secret_by_name`).
    fn watch_secrets(&self, request: &Request) -> Result<EventStream<Secret>, ApiError>;
    /// One page of every Service (`request::list_services`).
    fn list_services_page(&self, request: &Request) -> Result<Page<Service>, ApiError>;
    /// A watch of every Service (`request::watch_services`).
    fn watch_services(&self, request: &Request) -> Result<EventStream<Service>, ApiError>;

    fn get_pod(&self, namespace: &str, name: &str) -> Result<Pod, ApiError>;
    /// Creates a mirror pod.
    fn create_pod(&self, namespace: &str, pod: &Pod) -> Result<Pod, ApiError>;
    /// Patches `/status`; returns the updated Pod.
    fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        patch_type: PatchType,
        patch: &serde_json::Value,
    ) -> Result<Pod, ApiError>;
    /// Deletes the pod if its uid is still `uid`; returns the Pod as the server left it.
    fn delete_pod(
        &self,
        namespace: &str,
        name: &str,
        uid: &str,
        grace_period_seconds: i64,
    ) -> Result<Pod, ApiError>;

    fn get_node(&self, name: &str) -> Result<Node, ApiError>;
    fn create_node(&self, node: &Node) -> Result<Node, ApiError>;
    /// Strategic-merge-patches `/status` of the node.
    fn patch_node_status(&self, name: &str, patch: &serde_json::Value) -> Result<Node, ApiError>;

    /// Lease `kube-node-lease/NAME`.
    fn get_lease(&self, name: &str) -> Result<Lease, ApiError>;
    fn create_lease(&self, lease: &Lease) -> Result<Lease, ApiError>;
    /// PUT with the lease's resourceVersion: 409 Conflict if it is stale.
    fn update_lease(&self, name: &str, lease: &Lease) -> Result<Lease, ApiError>;

    /// A core/v1 Event in `namespace`.
    fn create_event(&self, namespace: &str, event: &Event) -> Result<Event, ApiError>;
    /// Strategic-merge patch of an Event (count, lastTimestamp).
    fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        patch: &serde_json::Value,
    ) -> Result<Event, ApiError>;

    fn get_configmap(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError>;
    fn get_secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError>;
    /// A claim one of the node's pods uses.
    fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, ApiError>;
    /// The volume bound to such a claim.
    fn get_persistent_volume(&self, name: &str) -> Result<PersistentVolume, ApiError>;
    /// A RuntimeClass, for its handler.
    fn get_runtime_class(&self, name: &str) -> Result<RuntimeClass, ApiError>;

    /// A service-account token bound to a pod (TokenRequest); the token is in `status.token`.
    fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError>;
    fn token_review(&self, review: &TokenReview) -> Result<TokenReview, ApiError>;
    fn subject_access_review(
        &self,
        review: &SubjectAccessReview,
    ) -> Result<SubjectAccessReview, ApiError>;

    /// Sleeps a watch's backoff `pause`, or less: the real client ends it when another request
    /// shows the server answers again. Fakes sleep it whole.
    fn backoff_pause(&self, pause: std::time::Duration) {
        std::thread::sleep(pause);
    }
}

/// The calls of TLS bootstrap (certificates.k8s.io/v1), made with the bootstrap token: a
/// bootstrapper may create, get, list and watch CertificateSigningRequests and nothing else.
pub trait CsrApi: Send + Sync {
    /// Creates a CSR; 409 AlreadyExists when one of its name exists.
    fn create_csr(
        &self,
        csr: &CertificateSigningRequest,
    ) -> Result<CertificateSigningRequest, ApiError>;
    /// One page of CSRs (a request from `request::list_csr_by_name`).
    fn list_csrs_page(
        &self,
        request: &Request,
    ) -> Result<Page<CertificateSigningRequest>, ApiError>;
    /// A CSR watch (a request from `request::watch_csr_by_name`).
    fn watch_csrs(
        &self,
        request: &Request,
    ) -> Result<EventStream<CertificateSigningRequest>, ApiError>;
}

impl CsrApi for ApiClient {
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

/// Decodes a 2xx body as `T`.
pub(crate) fn decode_body<T: DeserializeOwned>(
    request: &Request,
    body: &[u8],
    what: &'static str,
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Decode {
        request: request.describe(),
        what,
        message: e.to_string(),
    })
}

/// Decodes a 2xx list body as a [`Page`].
pub(crate) fn decode_list<K: DeserializeOwned>(
    request: &Request,
    body: &[u8],
) -> Result<Page<K>, ApiError> {
    decode_page(body).map_err(|e| ApiError::Decode {
        request: request.describe(),
        what: "list",
        message: e.to_string(),
    })
}

impl ApiClient {
    fn call<T: DeserializeOwned>(
        &self,
        request: Result<Request, ApiError>,
        what: &'static str,
    ) -> Result<T, ApiError> {
        let request = request?;
        let response = self.send(&request)?;
        decode_body(&request, &response.body, what)
    }

    fn list<K: DeserializeOwned>(&self, request: &Request) -> Result<Page<K>, ApiError> {
        let response = self.send(request)?;
        decode_list(request, &response.body)
    }

    fn stream<K: DeserializeOwned + Send + 'static>(
        &self,
        request: &Request,
    ) -> Result<EventStream<K>, ApiError> {
        Ok(Box::new(self.watch::<K>(request)?))
    }
}

impl KubeApi for ApiClient {
    fn backoff_pause(&self, pause: std::time::Duration) {
        self.pause_unless_recovered(pause);
    }

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
    use std::path::PathBuf;

    fn body(dir: &str) -> Vec<u8> {
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/apiserver")
                .join(dir)
                .join("response-body.json"),
        )
        .unwrap()
    }

    // The real client is exercised against a loopback server in `client`; here: every fixture
    // response body the typed methods return decodes into its k8s-openapi type (v1.28 payloads
    // read by the v1.33 types).
    #[test]
    fn fixture_responses_decode_into_their_types() {
        let req = request::get_node("vk-node");
        for dir in [
            "04b-node-create-201",
            "04d-node-get",
            "04e-node-status-patch-smp-heartbeat",
            "11d-node-get-non-curl-user-agent-compact-json",
        ] {
            let node: Node = decode_body(&req, &body(dir), "Node").unwrap();
            assert_eq!(node.metadata.name.as_deref(), Some("vk-node"), "{dir}");
        }
        for dir in [
            "02d-node-delete-pod-w1-grace0-uid-precondition",
            "06a-pod-status-patch-merge-running",
            "07k-pod-get-200",
            "10c-pod-delete-right-uid-200",
        ] {
            let pod: Pod = decode_body(&req, &body(dir), "Pod").unwrap();
            assert!(pod.metadata.uid.is_some(), "{dir}");
        }
        for dir in ["05a-lease-create-201", "05b-lease-put-renew-200"] {
            let lease: Lease = decode_body(&req, &body(dir), "Lease").unwrap();
            assert_eq!(
                lease.spec.and_then(|s| s.holder_identity).as_deref(),
                Some("vk-node")
            );
        }
        for dir in [
            "08a-event-core-v1-create-201",
            "08b-event-core-v1-patch-count-200",
        ] {
            let event: Event = decode_body(&req, &body(dir), "Event").unwrap();
            assert_eq!(event.reason.as_deref(), Some("Started"), "{dir}");
        }
        let cm: ConfigMap = decode_body(
            &req,
            &body("07d-configmap-get-kube-root-ca-200"),
            "ConfigMap",
        )
        .unwrap();
        assert!(cm.data.unwrap().contains_key("ca.crt"));
        let secret: Secret = decode_body(
            &req,
            &body("07c-secret-get-referenced-via-env-200"),
            "Secret",
        )
        .unwrap();
        assert!(secret.data.is_some());
        let tr: TokenRequest = decode_body(
            &req,
            &body("09a-tokenrequest-bound-pod-3607"),
            "TokenRequest",
        )
        .unwrap();
        assert_eq!(tr.status.map(|s| s.token).as_deref(), Some("REDACTED"));
    }

    #[test]
    fn wrong_type_is_a_decode_error_naming_the_request() {
        let req = request::get_node("vk-node");
        let err = decode_body::<Node>(&req, &body("07k-pod-get-200"), "Node").unwrap_err();
        match &err {
            ApiError::Decode { request, what, .. } => {
                assert_eq!(request.to_string(), "GET /api/v1/nodes/vk-node");
                assert_eq!(*what, "Node");
            }
            other => panic!("{other:?}"),
        }
        assert!(!err.is_retryable());
        let err = decode_list::<Pod>(&req, b"{}").unwrap_err();
        assert!(matches!(err, ApiError::Decode { what: "list", .. }));
    }
}
