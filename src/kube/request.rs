//! API server requests as data: pure builders for every call the daemon makes, and URL encoding.
//!
//! Owns the method, path, query and body of each request (checked against the recorded request
//! lines in `tests/fixtures/apiserver/*/request.txt`) and [`RequestKind`], the label used for
//! logging and metrics and for deciding whether a request may be retried. It must not do I/O,
//! read clocks or know about HTTP libraries: `client` sends what is built here.

use std::fmt::{self, Write as _};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, Preconditions};
use serde::Serialize;

use super::error::{ApiError, RequestRef};

/// `Content-Type` of JSON request bodies (creates, updates, delete options).
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// `Content-Type` of a strategic-merge patch (lists merged by their merge key, e.g. `type`).
pub const CONTENT_TYPE_STRATEGIC_MERGE_PATCH: &str = "application/strategic-merge-patch+json";
/// `Content-Type` of an RFC 7386 JSON merge patch (lists replaced wholesale).
pub const CONTENT_TYPE_MERGE_PATCH: &str = "application/merge-patch+json";
/// The namespace of node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

pub use super::method::Method;

/// What a request is for: a stable label for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    ListPods,
    WatchPods,
    GetPod,
    CreatePod,
    PatchPodStatus,
    DeletePod,
    GetNode,
    CreateNode,
    PatchNodeStatus,
    GetLease,
    CreateLease,
    UpdateLease,
    CreateEvent,
    PatchEvent,
    GetConfigMap,
    ListConfigMaps,
    WatchConfigMaps,
    GetSecret,
    GetPersistentVolumeClaim,
    GetPersistentVolume,
    GetRuntimeClass,
    ListSecrets,
    WatchSecrets,
    ListServices,
    WatchServices,
    CreateToken,
    CreateTokenReview,
    CreateSubjectAccessReview,
    CreateCsr,
    ListCsrs,
    WatchCsrs,
}

impl RequestKind {
    /// A snake_case label, e.g. `patch_pod_status`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::ListPods => "list_pods",
            RequestKind::WatchPods => "watch_pods",
            RequestKind::GetPod => "get_pod",
            RequestKind::PatchPodStatus => "patch_pod_status",
            RequestKind::DeletePod => "delete_pod",
            RequestKind::GetNode => "get_node",
            RequestKind::CreateNode => "create_node",
            RequestKind::PatchNodeStatus => "patch_node_status",
            RequestKind::GetLease => "get_lease",
            RequestKind::CreateLease => "create_lease",
            RequestKind::UpdateLease => "update_lease",
            RequestKind::CreateEvent => "create_event",
            RequestKind::PatchEvent => "patch_event",
            RequestKind::GetConfigMap => "get_configmap",
            RequestKind::ListConfigMaps => "list_configmaps",
            RequestKind::WatchConfigMaps => "watch_configmaps",
            RequestKind::GetSecret => "get_secret",
            RequestKind::GetPersistentVolumeClaim => "get_persistent_volume_claim",
            RequestKind::GetPersistentVolume => "get_persistent_volume",
            RequestKind::GetRuntimeClass => "get_runtime_class",
            RequestKind::ListSecrets => "list_secrets",
            RequestKind::WatchSecrets => "watch_secrets",
            RequestKind::ListServices => "list_services",
            RequestKind::WatchServices => "watch_services",
            RequestKind::CreateToken => "create_token",
            RequestKind::CreatePod => "create_pod",
            RequestKind::CreateTokenReview => "create_token_review",
            RequestKind::CreateSubjectAccessReview => "create_subject_access_review",
            RequestKind::CreateCsr => "create_certificate_signing_request",
            RequestKind::ListCsrs => "list_certificate_signing_requests",
            RequestKind::WatchCsrs => "watch_certificate_signing_requests",
        }
    }

    /// Whether sending the request twice has the same effect as sending it once, so that it may
    /// be retried after the server may already have processed it.
    ///
    /// Reads, PUTs with a resourceVersion, patches that set absolute values and deletes with a
    /// uid precondition are. Creates of Nodes, Leases, Events and CSRs are not (a second Event
    /// would be a duplicate; a second Node, Lease or CSR create turns a success into 409
    /// AlreadyExists).
    /// TokenRequest, TokenReview and SubjectAccessReview POSTs persist nothing, so they are.
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            RequestKind::CreateNode
                | RequestKind::CreateLease
                | RequestKind::CreateEvent
                | RequestKind::CreatePod
                | RequestKind::CreateCsr
        )
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which patch format a PATCH body is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/strategic-merge-patch+json`: lists with a merge key (conditions by `type`,
    /// container statuses by `name`) are merged element by element.
    StrategicMerge,
    /// `application/merge-patch+json`: lists are replaced wholesale.
    Merge,
}

impl PatchType {
    /// The `Content-Type` for this patch format.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::StrategicMerge => CONTENT_TYPE_STRATEGIC_MERGE_PATCH,
            PatchType::Merge => CONTENT_TYPE_MERGE_PATCH,
        }
    }
}

/// Paging and consistency of a list request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// `limit`: at most this many items per page.
    pub limit: Option<u32>,
    /// `continue`: the token of the previous page. When set, `resource_version` is not sent
    /// (the server rejects both together; the token already pins the snapshot).
    pub continue_token: Option<String>,
    /// `resourceVersion`: `"0"` = any cached state, `"N"` = not older than N (legacy
    /// semantics, no `resourceVersionMatch`), `None` = a quorum read from etcd.
    pub resource_version: Option<String>,
}

/// Parameters of a watch request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchOptions {
    /// Resume after this resourceVersion. `None` makes the server answer from etcd with
    /// synthetic ADDED events for every object and never send bookmarks (fixture 02f).
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks=true`.
    pub allow_bookmarks: bool,
    /// `timeoutSeconds`: the server ends the stream cleanly after this long.
    pub timeout_seconds: Option<u32>,
}

/// One API request, fully described: what `client` sends and what fakes record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Absolute path, already percent-encoded, e.g. `/api/v1/namespaces/fixtures/pods/p1`.
    pub path: String,
    /// Query parameters, unencoded, in the order they are sent.
    pub query: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub content_type: Option<&'static str>,
    pub kind: RequestKind,
}

impl Request {
    fn new(method: Method, path: String, kind: RequestKind) -> Request {
        Request {
            method,
            path,
            query: Vec::new(),
            body: None,
            content_type: None,
            kind,
        }
    }

    fn param(mut self, key: &str, value: impl Into<String>) -> Request {
        self.query.push((key.to_string(), value.into()));
        self
    }

    fn json_body<T: Serialize + ?Sized>(
        mut self,
        body: &T,
        content_type: &'static str,
    ) -> Result<Request, ApiError> {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes);
                self.content_type = Some(content_type);
                Ok(self)
            }
            Err(e) => Err(ApiError::Encode {
                request: self.describe(),
                message: e.to_string(),
            }),
        }
    }

    /// The full URL: `server` (scheme, host, port, optional path prefix; a trailing `/` is
    /// ignored) + path + percent-encoded query.
    pub fn url(&self, server: &str) -> String {
        let mut url = String::with_capacity(server.len() + self.path.len() + 64);
        url.push_str(server.trim_end_matches('/'));
        url.push_str(&self.path);
        for (i, (key, value)) in self.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            percent_encode(key, &mut url);
            url.push('=');
            percent_encode(value, &mut url);
        }
        url
    }

    /// Whether this is a watch (`watch=true`): its response is a stream of events.
    pub fn is_watch(&self) -> bool {
        self.query.iter().any(|(k, v)| k == "watch" && v == "true")
    }

    /// Method and path, for error messages.
    pub fn describe(&self) -> RequestRef {
        RequestRef {
            method: self.method,
            path: self.path.clone(),
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Percent-encodes `s` as a query component or path segment: everything but the RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`) is escaped, as Go's `url.QueryEscape` does
/// (except that a space becomes `%20`, not `+`). `spec.nodeName=vk-node` becomes
/// `spec.nodeName%3Dvk-node`.
pub fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Joins `prefix` and percent-encoded path segments.
fn path(prefix: &str, segments: &[&str]) -> String {
    let mut p = String::from(prefix);
    for segment in segments {
        p.push('/');
        percent_encode(segment, &mut p);
    }
    p
}

fn core_namespaced(namespace: &str, resource: &str, rest: &[&str]) -> String {
    let mut segments = vec![namespace, resource];
    segments.extend_from_slice(rest);
    path("/api/v1/namespaces", &segments)
}

fn with_list_options(mut req: Request, opts: &ListOptions) -> Request {
    if let Some(limit) = opts.limit {
        req = req.param("limit", limit.to_string());
    }
    match (&opts.continue_token, &opts.resource_version) {
        (Some(token), _) => req.param("continue", token.as_str()),
        (None, Some(rv)) => req.param("resourceVersion", rv.as_str()),
        (None, None) => req,
    }
}

fn with_watch_options(mut req: Request, opts: &WatchOptions) -> Request {
    req = req.param("watch", "true");
    if let Some(rv) = &opts.resource_version {
        req = req.param("resourceVersion", rv.as_str());
    }
    if opts.allow_bookmarks {
        req = req.param("allowWatchBookmarks", "true");
    }
    if let Some(t) = opts.timeout_seconds {
        req = req.param("timeoutSeconds", t.to_string());
    }
    req
}

// ---- pods ----

/// `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE`: one page of the pods bound to `node`,
/// across all namespaces (fixtures 01, 01b, 01c, 01d).
pub fn list_pods_on_node(node: &str, opts: &ListOptions) -> Request {
    let req = Request::new(Method::Get, "/api/v1/pods".into(), RequestKind::ListPods)
        .param("fieldSelector", format!("spec.nodeName={node}"));
    with_list_options(req, opts)
}

/// `GET /api/v1/pods?fieldSelector=spec.nodeName=NODE&watch=true&…` (fixtures 02, 02e, 02f).
pub fn watch_pods_on_node(node: &str, opts: &WatchOptions) -> Request {
    let req = Request::new(Method::Get, "/api/v1/pods".into(), RequestKind::WatchPods)
        .param("fieldSelector", format!("spec.nodeName={node}"));
    with_watch_options(req, opts)
}

/// `GET /api/v1/namespaces/NS/pods/NAME` (fixture 07k).
pub fn get_pod(namespace: &str, name: &str) -> Request {
    Request::new(
        Method::Get,
        core_namespaced(namespace, "pods", &[name]),
        RequestKind::GetPod,
    )
}

/// `PATCH /api/v1/namespaces/NS/pods/NAME/status` with a merge or strategic-merge patch
/// (fixtures 06a, 06b). The node may only change `status` this way; a patch that touches labels
/// is refused with 403 (06h).
pub fn patch_pod_status(
    namespace: &str,
    name: &str,
    patch_type: PatchType,
    patch: &serde_json::Value,
) -> Result<Request, ApiError> {
    Request::new(
        Method::Patch,
        core_namespaced(namespace, "pods", &[name, "status"]),
        RequestKind::PatchPodStatus,
    )
    .json_body(patch, patch_type.content_type())
}

/// `DELETE /api/v1/namespaces/NS/pods/NAME` with `DeleteOptions{gracePeriodSeconds,
/// preconditions:{uid}}` (fixtures 02d, 10c): the uid precondition makes sure a recreated pod of
/// the same name is never deleted by mistake (409 instead, 10a). The server answers with the Pod.
pub fn delete_pod(
    namespace: &str,
    name: &str,
    uid: &str,
    grace_period_seconds: i64,
) -> Result<Request, ApiError> {
    let options = DeleteOptions {
        api_version: Some("v1".into()),
        kind: Some("DeleteOptions".into()),
        grace_period_seconds: Some(grace_period_seconds),
        preconditions: Some(Preconditions {
            uid: Some(uid.into()),
            resource_version: None,
        }),
        ..DeleteOptions::default()
    };
    Request::new(
        Method::Delete,
        core_namespaced(namespace, "pods", &[name]),
        RequestKind::DeletePod,
    )
    .json_body(&options, CONTENT_TYPE_JSON)
}

// ---- nodes ----

/// `GET /api/v1/nodes/NAME` (fixture 04d).
pub fn get_node(name: &str) -> Request {
    Request::new(
        Method::Get,
        path("/api/v1/nodes", &[name]),
        RequestKind::GetNode,
    )
}

/// `POST /api/v1/nodes` (fixture 04b; 409 if it exists, 04c).
pub fn create_node(node: &Node) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        "/api/v1/nodes".into(),
        RequestKind::CreateNode,
    )
    .json_body(node, CONTENT_TYPE_JSON)
}

/// `PATCH /api/v1/nodes/NAME/status` with a strategic-merge patch, e.g. the Ready condition's
/// heartbeat (fixture 04e): conditions merge by `type`, so the others are kept.
pub fn patch_node_status(name: &str, patch: &serde_json::Value) -> Result<Request, ApiError> {
    Request::new(
        Method::Patch,
        path("/api/v1/nodes", &[name, "status"]),
        RequestKind::PatchNodeStatus,
    )
    .json_body(patch, CONTENT_TYPE_STRATEGIC_MERGE_PATCH)
}

// ---- leases ----

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces";

/// `GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/NAME`.
pub fn get_lease(name: &str) -> Request {
    Request::new(
        Method::Get,
        path(LEASES, &[NODE_LEASE_NAMESPACE, "leases", name]),
        RequestKind::GetLease,
    )
}

/// `POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases` (fixture 05a).
pub fn create_lease(lease: &Lease) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        path(LEASES, &[NODE_LEASE_NAMESPACE, "leases"]),
        RequestKind::CreateLease,
    )
    .json_body(lease, CONTENT_TYPE_JSON)
}

/// `PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/NAME` (fixture 05b). The
/// body carries `metadata.resourceVersion` of the lease last read, so a stale renew fails with
/// 409 Conflict (05c) instead of overwriting someone else's write.
pub fn update_lease(name: &str, lease: &Lease) -> Result<Request, ApiError> {
    Request::new(
        Method::Put,
        path(LEASES, &[NODE_LEASE_NAMESPACE, "leases", name]),
        RequestKind::UpdateLease,
    )
    .json_body(lease, CONTENT_TYPE_JSON)
}

// ---- events (core/v1 only: the node may not write events.k8s.io/v1, 08g) ----

/// `POST /api/v1/namespaces/NS/events` (fixture 08a).
pub fn create_event(namespace: &str, event: &Event) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        core_namespaced(namespace, "events", &[]),
        RequestKind::CreateEvent,
    )
    .json_body(event, CONTENT_TYPE_JSON)
}

/// `PATCH /api/v1/namespaces/NS/events/NAME` with a strategic-merge patch, e.g. `count` and
/// `lastTimestamp` when an event repeats (fixture 08b).
pub fn patch_event(
    namespace: &str,
    name: &str,
    patch: &serde_json::Value,
) -> Result<Request, ApiError> {
    Request::new(
        Method::Patch,
        core_namespaced(namespace, "events", &[name]),
        RequestKind::PatchEvent,
    )
    .json_body(patch, CONTENT_TYPE_STRATEGIC_MERGE_PATCH)
}

// ---- configmaps and secrets (only those referenced by our pods: others are 403, 07e-07g) ----

/// `GET /api/v1/namespaces/NS/configmaps/NAME` (fixtures 07b, 07d).
pub fn get_configmap(namespace: &str, name: &str) -> Request {
    Request::new(
        Method::Get,
        core_namespaced(namespace, "configmaps", &[name]),
        RequestKind::GetConfigMap,
    )
}

/// `GET /api/v1/namespaces/NS/secrets/NAME` (fixture 07c).
pub fn get_secret(namespace: &str, name: &str) -> Request {
    Request::new(
        Method::Get,
        core_namespaced(namespace, "secrets", &[name]),
        RequestKind::GetSecret,
    )
}

/// `GET /api/v1/namespaces/NS/persistentvolumeclaims/NAME`: a claim one of the node's pods
/// uses (the Node authorizer's pod → PVC edge).
pub fn get_persistent_volume_claim(namespace: &str, name: &str) -> Request {
    Request::new(
        Method::Get,
        core_namespaced(namespace, "persistentvolumeclaims", &[name]),
        RequestKind::GetPersistentVolumeClaim,
    )
}

/// `GET /api/v1/persistentvolumes/NAME`: the volume bound to such a claim (PVC → PV edge).
pub fn get_persistent_volume(name: &str) -> Request {
    Request::new(
        Method::Get,
        path("/api/v1/persistentvolumes", &[name]),
        RequestKind::GetPersistentVolume,
    )
}

/// `GET /apis/node.k8s.io/v1/runtimeclasses/NAME` (the system:node role reads them all).
pub fn get_runtime_class(name: &str) -> Request {
    Request::new(
        Method::Get,
        path("/apis/node.k8s.io/v1/runtimeclasses", &[name]),
        RequestKind::GetRuntimeClass,
    )
}

/// `GET /api/v1/namespaces/NS/configmaps?fieldSelector=metadata.name=NAME`: a list of the one
/// ConfigMap, which the Node authorizer allows (a list without the name is 403, 07i).
pub fn list_configmap_by_name(namespace: &str, name: &str, opts: &ListOptions) -> Request {
    let req = Request::new(
        Method::Get,
        core_namespaced(namespace, "configmaps", &[]),
        RequestKind::ListConfigMaps,
    )
    .param("fieldSelector", format!("metadata.name={name}"));
    with_list_options(req, opts)
}

/// Watch of the one ConfigMap named `name`.
pub fn watch_configmap_by_name(namespace: &str, name: &str, opts: &WatchOptions) -> Request {
    let req = Request::new(
        Method::Get,
        core_namespaced(namespace, "configmaps", &[]),
        RequestKind::WatchConfigMaps,
    )
    .param("fieldSelector", format!("metadata.name={name}"));
    with_watch_options(req, opts)
}

/// `GET /api/v1/namespaces/NS/secrets?fieldSelector=metadata.name=NAME` (fixture 07h).
pub fn list_secret_by_name(namespace: &str, name: &str, opts: &ListOptions) -> Request {
    let req = Request::new(
        Method::Get,
        core_namespaced(namespace, "secrets", &[]),
        RequestKind::ListSecrets,
    )
    .param("fieldSelector", format!("metadata.name={name}"));
    with_list_options(req, opts)
}

/// Watch of the one Secret named `name` (fixture 07j).
pub fn watch_secret_by_name(namespace: &str, name: &str, opts: &WatchOptions) -> Request {
    let req = Request::new(
        Method::Get,
        core_namespaced(namespace, "secrets", &[]),
        RequestKind::WatchSecrets,
    )
    .param("fieldSelector", format!("metadata.name={name}"));
    with_watch_options(req, opts)
}

// ---- services ----

/// `GET /api/v1/services`: one page of every Service in the cluster, as the kubelet's services
/// informer lists them for the containers' service environment variables (the Node authorizer's
/// `system:node` role may get, list and watch services in any namespace; 08z).
pub fn list_services(opts: &ListOptions) -> Request {
    let req = Request::new(
        Method::Get,
        "/api/v1/services".into(),
        RequestKind::ListServices,
    );
    with_list_options(req, opts)
}

/// `GET /api/v1/services?watch=true&…`: every Service's changes.
pub fn watch_services(opts: &WatchOptions) -> Request {
    let req = Request::new(
        Method::Get,
        "/api/v1/services".into(),
        RequestKind::WatchServices,
    );
    with_watch_options(req, opts)
}

// ---- tokens and reviews ----

/// `POST /api/v1/namespaces/NS/serviceaccounts/SA/token`: a TokenRequest, which the node may
/// only make bound to one of its pods (fixtures 09a-09f).
pub fn create_token(
    namespace: &str,
    service_account: &str,
    request: &TokenRequest,
) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        core_namespaced(namespace, "serviceaccounts", &[service_account, "token"]),
        RequestKind::CreateToken,
    )
    .json_body(request, CONTENT_TYPE_JSON)
}

/// `POST /api/v1/namespaces/NS/pods`: a mirror pod of a static pod (the only pods a node may
/// create).
pub fn create_pod(
    namespace: &str,
    pod: &k8s_openapi::api::core::v1::Pod,
) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        core_namespaced(namespace, "pods", &[]),
        RequestKind::CreatePod,
    )
    .json_body(pod, CONTENT_TYPE_JSON)
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`: who is this bearer token? (for the
/// :10250 server's authentication).
pub fn create_token_review(review: &TokenReview) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        "/apis/authentication.k8s.io/v1/tokenreviews".into(),
        RequestKind::CreateTokenReview,
    )
    .json_body(review, CONTENT_TYPE_JSON)
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`: may this user do this? (for the
/// :10250 server's authorization).
pub fn create_subject_access_review(review: &SubjectAccessReview) -> Result<Request, ApiError> {
    Request::new(
        Method::Post,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews".into(),
        RequestKind::CreateSubjectAccessReview,
    )
    .json_body(review, CONTENT_TYPE_JSON)
}

// ---- certificate signing requests (TLS bootstrap: the bootstrap token may only do these) ----

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// `POST /apis/certificates.k8s.io/v1/certificatesigningrequests` (fixture 14a; 409 when one of
/// that name exists, 14b).
pub fn create_csr(csr: &CertificateSigningRequest) -> Result<Request, ApiError> {
    Request::new(Method::Post, CSRS.into(), RequestKind::CreateCsr)
        .json_body(csr, CONTENT_TYPE_JSON)
}

/// `GET …/certificatesigningrequests?fieldSelector=metadata.name=NAME`: the one CSR named
/// `name`, as the kubelet's `WaitForCertificate` lists it (fixture 14c).
pub fn list_csr_by_name(name: &str, opts: &ListOptions) -> Request {
    let req = Request::new(Method::Get, CSRS.into(), RequestKind::ListCsrs)
        .param("fieldSelector", format!("metadata.name={name}"));
    with_list_options(req, opts)
}

/// Watch of the one CSR named `name` (fixture 14d).
pub fn watch_csr_by_name(name: &str, opts: &WatchOptions) -> Request {
    let req = Request::new(Method::Get, CSRS.into(), RequestKind::WatchCsrs)
        .param("fieldSelector", format!("metadata.name={name}"));
    with_watch_options(req, opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const SERVER: &str = "https://127.0.0.1:6443";

    fn fixture(dir: &str, file: &str) -> String {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/apiserver")
            .join(dir)
            .join(file);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    /// The request line of a fixture, e.g. `GET /api/v1/pods?… HTTP/1.1`, as (method, target).
    fn request_line(dir: &str) -> (String, String) {
        let text = fixture(dir, "request.txt");
        let line = text
            .lines()
            .find(|l| !l.starts_with('#'))
            .expect("request line");
        let mut parts = line.split(' ');
        let method = parts.next().unwrap().to_string();
        let target = parts.next().unwrap().to_string();
        (method, target)
    }

    /// The JSON body of a fixture request (after the blank line ending the headers).
    fn request_body(dir: &str) -> serde_json::Value {
        let text = fixture(dir, "request.txt");
        let (_, body) = text.split_once("\n\n").expect("blank line after headers");
        serde_json::from_str(body.trim()).expect("json body")
    }

    fn request_header(dir: &str, name: &str) -> Option<String> {
        let text = fixture(dir, "request.txt");
        let (head, _) = text.split_once("\n\n")?;
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
    }

    fn assert_matches_fixture(req: &Request, dir: &str) {
        let (method, target) = request_line(dir);
        assert_eq!(req.method.as_str(), method, "{dir}: method");
        assert_eq!(req.url(SERVER), format!("{SERVER}{target}"), "{dir}: url");
        assert_eq!(
            req.content_type.map(str::to_string),
            request_header(dir, "Content-Type"),
            "{dir}: content type"
        );
    }

    fn body_json(req: &Request) -> serde_json::Value {
        serde_json::from_slice(req.body.as_deref().expect("body")).expect("json")
    }

    #[test]
    fn list_pods_urls_match_fixtures() {
        let cases = [
            ("01-pods-list-by-node", ListOptions::default()),
            (
                "01b-pods-list-by-node-rv0-from-cache",
                ListOptions {
                    resource_version: Some("0".into()),
                    ..Default::default()
                },
            ),
            (
                "01c-pods-list-by-node-limit1-page1",
                ListOptions {
                    limit: Some(1),
                    ..Default::default()
                },
            ),
            (
                "01d-pods-list-by-node-limit1-page2-continue",
                ListOptions {
                    limit: Some(1),
                    continue_token: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDUyOCwic3RhcnQiOiJmaXh0dXJlcy9wMVx1MDAwMCJ9".into()),
                    // Ignored: continue already pins the snapshot.
                    resource_version: Some("4528".into()),
                },
            ),
            (
                "03d-pods-list-rv1-legacy-no-match",
                ListOptions {
                    resource_version: Some("1".into()),
                    ..Default::default()
                },
            ),
        ];
        for (dir, opts) in cases {
            let req = list_pods_on_node("vk-node", &opts);
            assert_eq!(req.kind, RequestKind::ListPods);
            assert!(req.body.is_none());
            assert!(!req.is_watch());
            assert_matches_fixture(&req, dir);
        }
    }

    #[test]
    fn watch_pods_urls_match_fixtures() {
        let cases = [
            ("02-pods-watch", Some("2691"), 20),
            ("02e-pods-watch-rv0-long-periodic-bookmark", Some("0"), 100),
            ("02f-pods-watch-no-rv-from-etcd", None, 100),
            ("03a-pods-watch-rv1-too-old-410-error-event", Some("1"), 10),
            ("03g-pods-watch-rv-too-large", Some("99999999"), 10),
        ];
        for (dir, rv, timeout) in cases {
            let req = watch_pods_on_node(
                "vk-node",
                &WatchOptions {
                    resource_version: rv.map(String::from),
                    allow_bookmarks: true,
                    timeout_seconds: Some(timeout),
                },
            );
            assert_eq!(req.kind, RequestKind::WatchPods);
            assert!(req.is_watch());
            assert_matches_fixture(&req, dir);
        }
    }

    #[test]
    fn field_selector_is_percent_encoded() {
        let req = list_pods_on_node("vk-node", &ListOptions::default());
        assert!(req
            .url("https://h:6443/")
            .ends_with("/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node"));
    }

    #[test]
    fn percent_encoding_escapes_everything_but_unreserved() {
        let mut out = String::new();
        percent_encode("a-Z_0.9~ /?&=+%é", &mut out);
        assert_eq!(out, "a-Z_0.9~%20%2F%3F%26%3D%2B%25%C3%A9");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let req = get_pod("ns", "a b/c");
        assert_eq!(req.path, "/api/v1/namespaces/ns/pods/a%20b%2Fc");
    }

    #[test]
    fn server_trailing_slash_and_prefix() {
        let req = get_node("vk-node");
        assert_eq!(
            req.url("https://h:6443/prefix/"),
            "https://h:6443/prefix/api/v1/nodes/vk-node"
        );
    }

    #[test]
    fn get_requests_match_fixtures() {
        let cases = [
            (
                get_pod("fixtures", "p1"),
                "07k-pod-get-200",
                RequestKind::GetPod,
            ),
            (
                get_pod("fixtures", "does-not-exist"),
                "07a-pod-get-missing-404",
                RequestKind::GetPod,
            ),
            (get_node("vk-node"), "04d-node-get", RequestKind::GetNode),
            (
                get_configmap("fixtures", "cm-used"),
                "07b-configmap-get-referenced-200",
                RequestKind::GetConfigMap,
            ),
            (
                get_secret("fixtures", "secret-used"),
                "07c-secret-get-referenced-via-env-200",
                RequestKind::GetSecret,
            ),
            (
                get_lease("other-node"),
                "05d-lease-get-other-node-403",
                RequestKind::GetLease,
            ),
        ];
        for (req, dir, kind) in cases {
            assert_eq!(req.kind, kind);
            assert!(req.query.is_empty() && req.body.is_none());
            assert_matches_fixture(&req, dir);
        }
    }

    #[test]
    fn single_object_list_and_watch_match_fixtures() {
        let list = list_secret_by_name("fixtures", "secret-used", &ListOptions::default());
        assert_eq!(list.kind, RequestKind::ListSecrets);
        assert_matches_fixture(&list, "07h-secret-list-single-by-fieldselector-200");

        let watch = watch_secret_by_name(
            "fixtures",
            "secret-used",
            &WatchOptions {
                timeout_seconds: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(watch.kind, RequestKind::WatchSecrets);
        assert_matches_fixture(&watch, "07j-secret-watch-single-by-fieldselector");

        let cm = watch_configmap_by_name(
            "ns",
            "cm",
            &WatchOptions {
                resource_version: Some("5".into()),
                allow_bookmarks: true,
                timeout_seconds: Some(300),
            },
        );
        assert_eq!(cm.kind, RequestKind::WatchConfigMaps);
        assert_eq!(
            cm.url(SERVER),
            "https://127.0.0.1:6443/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dcm&watch=true&resourceVersion=5&allowWatchBookmarks=true&timeoutSeconds=300"
        );
        let cm_list = list_configmap_by_name(
            "ns",
            "cm",
            &ListOptions {
                resource_version: Some("0".into()),
                ..Default::default()
            },
        );
        assert_eq!(cm_list.kind, RequestKind::ListConfigMaps);
        assert_eq!(
            cm_list.url(SERVER),
            "https://127.0.0.1:6443/api/v1/namespaces/ns/configmaps?fieldSelector=metadata.name%3Dcm&resourceVersion=0"
        );
    }

    #[test]
    fn delete_pod_body_matches_fixtures() {
        for (dir, name, uid) in [
            (
                "02d-node-delete-pod-w1-grace0-uid-precondition",
                "w1",
                "c07afab5-5f4d-4c4a-98c4-269e16c533d3",
            ),
            (
                "10c-pod-delete-right-uid-200",
                "p-del",
                "cf0e9e0e-e384-436c-a663-200ba781d74c",
            ),
        ] {
            let req = delete_pod("fixtures", name, uid, 0).unwrap();
            assert_eq!(req.kind, RequestKind::DeletePod);
            assert_matches_fixture(&req, dir);
            assert_eq!(body_json(&req), request_body(dir), "{dir}: body");
        }
    }

    #[test]
    fn pod_status_patches_match_fixtures() {
        for (dir, patch_type) in [
            ("06a-pod-status-patch-merge-running", PatchType::Merge),
            (
                "06b-pod-status-patch-smp-one-condition",
                PatchType::StrategicMerge,
            ),
        ] {
            let patch = request_body(dir);
            let req = patch_pod_status("fixtures", "p1", patch_type, &patch).unwrap();
            assert_eq!(req.kind, RequestKind::PatchPodStatus);
            assert_matches_fixture(&req, dir);
            assert_eq!(body_json(&req), patch);
        }
    }

    #[test]
    fn node_requests_match_fixtures() {
        let dir = "04b-node-create-201";
        let node: Node = serde_json::from_value(request_body(dir)).unwrap();
        let req = create_node(&node).unwrap();
        assert_eq!(req.kind, RequestKind::CreateNode);
        assert_matches_fixture(&req, dir);
        assert_eq!(body_json(&req), request_body(dir));

        let dir = "04e-node-status-patch-smp-heartbeat";
        let req = patch_node_status("vk-node", &request_body(dir)).unwrap();
        assert_eq!(req.kind, RequestKind::PatchNodeStatus);
        assert_matches_fixture(&req, dir);
        assert_eq!(body_json(&req), request_body(dir));
    }

    #[test]
    fn lease_requests_match_fixtures() {
        let dir = "05a-lease-create-201";
        let lease: Lease = serde_json::from_value(request_body(dir)).unwrap();
        let req = create_lease(&lease).unwrap();
        assert_eq!(req.kind, RequestKind::CreateLease);
        assert_matches_fixture(&req, dir);
        // MicroTime is re-serialized with its own precision; compare the decoded objects.
        let sent: Lease = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent, lease);

        let dir = "05b-lease-put-renew-200";
        let lease: Lease = serde_json::from_value(request_body(dir)).unwrap();
        let req = update_lease("vk-node", &lease).unwrap();
        assert_eq!(req.kind, RequestKind::UpdateLease);
        assert_matches_fixture(&req, dir);
        let sent = body_json(&req);
        assert_eq!(sent["metadata"]["resourceVersion"], "2659");
        assert_eq!(sent["spec"]["holderIdentity"], "vk-node");
    }

    #[test]
    fn event_requests_match_fixtures() {
        let dir = "08a-event-core-v1-create-201";
        let event: Event = serde_json::from_value(request_body(dir)).unwrap();
        let req = create_event("fixtures", &event).unwrap();
        assert_eq!(req.kind, RequestKind::CreateEvent);
        assert_matches_fixture(&req, dir);
        let sent: Event = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(sent, event);

        let dir = "08b-event-core-v1-patch-count-200";
        let req = patch_event("fixtures", "p1.18ea5f3688716bd8", &request_body(dir)).unwrap();
        assert_eq!(req.kind, RequestKind::PatchEvent);
        assert_matches_fixture(&req, dir);
        assert_eq!(body_json(&req), request_body(dir));
    }

    #[test]
    fn token_request_matches_fixture() {
        let dir = "09a-tokenrequest-bound-pod-3607";
        let tr: TokenRequest = serde_json::from_value(request_body(dir)).unwrap();
        let req = create_token("fixtures", "default", &tr).unwrap();
        assert_eq!(req.kind, RequestKind::CreateToken);
        assert_matches_fixture(&req, dir);
        let mut sent = body_json(&req);
        // k8s-openapi always writes the (empty) metadata; the server does not mind.
        let metadata = sent.as_object_mut().unwrap().remove("metadata");
        assert_eq!(metadata, Some(serde_json::json!({})));
        assert_eq!(sent, request_body(dir));
    }

    #[test]
    fn reviews_post_to_their_groups() {
        let review = TokenReview {
            spec: k8s_openapi::api::authentication::v1::TokenReviewSpec {
                token: Some("t".into()),
                audiences: None,
            },
            ..Default::default()
        };
        let req = create_token_review(&review).unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.path, "/apis/authentication.k8s.io/v1/tokenreviews");
        assert_eq!(req.content_type, Some(CONTENT_TYPE_JSON));
        let body = body_json(&req);
        assert_eq!(body["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(body["kind"], "TokenReview");
        assert_eq!(body["spec"]["token"], "t");

        let sar = SubjectAccessReview {
            spec: k8s_openapi::api::authorization::v1::SubjectAccessReviewSpec {
                user: Some("alice".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let req = create_subject_access_review(&sar).unwrap();
        assert_eq!(req.kind, RequestKind::CreateSubjectAccessReview);
        assert_eq!(
            req.path,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        );
        let body = body_json(&req);
        assert_eq!(body["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(body["kind"], "SubjectAccessReview");
        assert_eq!(body["spec"]["user"], "alice");
    }

    #[test]
    fn idempotency_by_kind() {
        assert!(!RequestKind::CreateNode.is_idempotent());
        assert!(!RequestKind::CreateLease.is_idempotent());
        assert!(!RequestKind::CreateEvent.is_idempotent());
        assert!(!RequestKind::CreatePod.is_idempotent());
        assert!(!RequestKind::CreateCsr.is_idempotent());
        for kind in [
            RequestKind::GetPod,
            RequestKind::UpdateLease,
            RequestKind::PatchPodStatus,
            RequestKind::DeletePod,
            RequestKind::CreateToken,
            RequestKind::CreateTokenReview,
            RequestKind::CreateSubjectAccessReview,
        ] {
            assert!(kind.is_idempotent(), "{kind}");
        }
    }

    #[test]
    fn display_names_method_and_path() {
        assert_eq!(get_node("vk-node").to_string(), "GET /api/v1/nodes/vk-node");
        assert_eq!(
            get_node("vk-node").describe().to_string(),
            "GET /api/v1/nodes/vk-node"
        );
    }
}
