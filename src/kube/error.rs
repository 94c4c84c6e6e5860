//! Errors of the API server edge, decoded from an HTTP status and a `Status` body.
//!
//! Owns [`ApiError`] (one variant per outcome a caller handles differently, each naming the
//! request it was about) and the pure decoding of kube-apiserver `Status` objects, whether they
//! arrive as an HTTP error body or as the object of a watch `ERROR` event. It decides what is
//! retryable; it does not retry, log, or do I/O.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::method::Method;

/// Method and path of the request an error is about, displayed as `GET /api/v1/nodes/vk-node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRef {
    pub method: Method,
    pub path: String,
}

impl fmt::Display for RequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// One `details.causes[]` entry of a `Status`, e.g. the invalid field of a 422.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Cause {
    pub reason: Option<String>,
    pub message: Option<String>,
    pub field: Option<String>,
}

/// How far a request got before the transport failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportPhase {
    /// Resolving or connecting (including the TLS handshake): the request was certainly not
    /// sent, so even a non-idempotent request may be retried.
    Connect,
    /// Sending the request or reading the response: the server may have processed it.
    Exchange,
}

impl fmt::Display for TransportPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportPhase::Connect => "cannot connect",
            TransportPhase::Exchange => "connection failed",
        })
    }
}

/// What went wrong with one API request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404.
    #[error("failed to {request}: not found: {message}")]
    NotFound {
        request: RequestRef,
        message: String,
    },
    /// 409 with reason `AlreadyExists` (a create of an existing object, 04c).
    #[error("failed to {request}: already exists: {message}")]
    AlreadyExists {
        request: RequestRef,
        message: String,
    },
    /// 409 otherwise: a stale resourceVersion or a failed uid precondition (04f, 05c, 10a).
    #[error("failed to {request}: conflict: {message}")]
    Conflict {
        request: RequestRef,
        message: String,
    },
    /// 403: the Node authorizer or NodeRestriction said no (04a, 07e, 06h…). Also a
    /// ConfigMap/Secret that does not exist (07g).
    #[error("failed to {request}: forbidden: {message}")]
    Forbidden {
        request: RequestRef,
        message: String,
    },
    /// 401: our credentials were not accepted.
    #[error("failed to {request}: unauthorized: {message}")]
    Unauthorized {
        request: RequestRef,
        message: String,
    },
    /// 410 Expired/Gone: a too-old resourceVersion (an `ERROR` event on a watch, 03a; HTTP on a
    /// list with `resourceVersionMatch=Exact`, 03c) or an expired `continue` token (03f, which
    /// carries a fresh `continue` here; using it gives an inconsistent list).
    #[error("failed to {request}: expired: {message}")]
    Expired {
        request: RequestRef,
        message: String,
        continue_token: Option<String>,
    },
    /// 422: the body or the options failed validation (06g, 03e, 09f).
    #[error("failed to {request}: invalid: {message}")]
    Invalid {
        request: RequestRef,
        message: String,
        causes: Vec<Cause>,
    },
    /// 415: wrong `Content-Type` for a patch (04k).
    #[error("failed to {request}: unsupported media type: {message}")]
    UnsupportedMediaType {
        request: RequestRef,
        message: String,
    },
    /// 429: throttled by API Priority and Fairness or max-in-flight; the request was not
    /// processed.
    #[error("failed to {request}: too many requests: {message}")]
    TooManyRequests {
        request: RequestRef,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, e.g. 504 `Timeout` for a list with a future resourceVersion (03h, `Retry-After: 1`)
    /// or 500 from a failing backend.
    #[error("failed to {request}: server error {code}: {message}")]
    ServerError {
        request: RequestRef,
        code: u16,
        reason: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// Any other non-2xx status, e.g. 400 BadRequest.
    #[error("failed to {request}: unexpected status {code}: {message}")]
    Unexpected {
        request: RequestRef,
        code: u16,
        reason: Option<String>,
        message: String,
    },
    /// The connection failed or timed out.
    #[error("failed to {request}: {phase}: {message}")]
    Transport {
        request: RequestRef,
        phase: TransportPhase,
        message: String,
    },
    /// A 2xx response (or a watch line) that is not what the request promised.
    #[error("failed to {request}: cannot decode {what}: {message}")]
    Decode {
        request: RequestRef,
        what: &'static str,
        message: String,
    },
    /// The request could not be built: a body that does not serialize, or a URL or header
    /// the HTTP library rejects.
    #[error("failed to {request}: cannot encode the request: {message}")]
    Encode {
        request: RequestRef,
        message: String,
    },
    /// The bearer token file could not be read.
    #[error("failed to {request}: cannot read token file {path}: {message}")]
    Credentials {
        request: RequestRef,
        path: PathBuf,
        message: String,
    },
}

/// The fields of a `meta/v1 Status` that matter here. Every field is optional so that any
/// JSON object decodes; k8s-openapi's `Status` is stricter than needed for error bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusBody {
    kind: Option<String>,
    code: Option<u16>,
    reason: Option<String>,
    message: Option<String>,
    metadata: StatusMeta,
    details: StatusDetails,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusMeta {
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct StatusDetails {
    causes: Vec<Cause>,
    retry_after_seconds: Option<u64>,
}

/// At most this much of a non-`Status` error body goes into the message.
const MAX_RAW_MESSAGE: usize = 256;

impl ApiError {
    /// Decodes a non-2xx response: `code` is the HTTP status, `body` the response body (a
    /// `Status` object from kube-apiserver, or anything from a proxy), `retry_after` the raw
    /// `Retry-After` header (seconds).
    pub fn from_response(
        request: RequestRef,
        code: u16,
        body: &[u8],
        retry_after: Option<&str>,
    ) -> ApiError {
        let status = serde_json::from_slice::<StatusBody>(body)
            .ok()
            .filter(|s| s.kind.as_deref() == Some("Status"));
        let header_retry = retry_after.and_then(|v| v.trim().parse::<u64>().ok());
        match status {
            Some(s) => classify(request, code, s, header_retry),
            None => {
                let message = raw_message(body, code);
                classify(
                    request,
                    code,
                    StatusBody {
                        message: Some(message),
                        ..StatusBody::default()
                    },
                    header_retry,
                )
            }
        }
    }

    /// Decodes the `Status` object of a watch `ERROR` event (the HTTP status was 200).
    /// A missing `code` is derived from `reason` (`Expired`/`Gone` → 410), else taken as 500.
    pub fn from_status_value(request: RequestRef, status: &serde_json::Value) -> ApiError {
        let s = StatusBody::deserialize(status).unwrap_or_default();
        let code = match (s.code, s.reason.as_deref()) {
            (Some(c), _) if c != 0 => c,
            (_, Some("Expired" | "Gone")) => 410,
            (_, Some("NotFound")) => 404,
            (_, Some("Forbidden")) => 403,
            (_, Some("Unauthorized")) => 401,
            _ => 500,
        };
        classify(request, code, s, None)
    }

    /// The request this error is about.
    pub fn request(&self) -> &RequestRef {
        match self {
            ApiError::NotFound { request, .. }
            | ApiError::AlreadyExists { request, .. }
            | ApiError::Conflict { request, .. }
            | ApiError::Forbidden { request, .. }
            | ApiError::Unauthorized { request, .. }
            | ApiError::Expired { request, .. }
            | ApiError::Invalid { request, .. }
            | ApiError::UnsupportedMediaType { request, .. }
            | ApiError::TooManyRequests { request, .. }
            | ApiError::ServerError { request, .. }
            | ApiError::Unexpected { request, .. }
            | ApiError::Transport { request, .. }
            | ApiError::Decode { request, .. }
            | ApiError::Encode { request, .. }
            | ApiError::Credentials { request, .. } => request,
        }
    }

    /// The HTTP status (or watch `Status.code`) this error came from, if any.
    pub fn status_code(&self) -> Option<u16> {
        match self {
            ApiError::NotFound { .. } => Some(404),
            ApiError::AlreadyExists { .. } | ApiError::Conflict { .. } => Some(409),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::Unauthorized { .. } => Some(401),
            ApiError::Expired { .. } => Some(410),
            ApiError::Invalid { .. } => Some(422),
            ApiError::UnsupportedMediaType { .. } => Some(415),
            ApiError::TooManyRequests { .. } => Some(429),
            ApiError::ServerError { code, .. } | ApiError::Unexpected { code, .. } => Some(*code),
            ApiError::Transport { .. }
            | ApiError::Decode { .. }
            | ApiError::Encode { .. }
            | ApiError::Credentials { .. } => None,
        }
    }

    /// Whether trying again later may succeed: 5xx, 429 and transport failures. A 4xx is the
    /// same answer next time.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ApiError::ServerError { .. }
                | ApiError::TooManyRequests { .. }
                | ApiError::Transport { .. }
        )
    }

    /// Whether the server certainly did not process the request: a connect failure, or a 429
    /// (throttling rejects before any handler runs). Such a request may be retried even if it
    /// is not idempotent.
    pub fn request_not_processed(&self) -> bool {
        matches!(
            self,
            ApiError::Transport {
                phase: TransportPhase::Connect,
                ..
            } | ApiError::TooManyRequests { .. }
        )
    }

    /// How long the server asked us to wait (`Retry-After` or `details.retryAfterSeconds`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::ServerError { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

fn classify(request: RequestRef, code: u16, s: StatusBody, header_retry: Option<u64>) -> ApiError {
    let retry_after = header_retry
        .or(s.details.retry_after_seconds)
        .map(Duration::from_secs);
    let message = s.message.unwrap_or_default();
    match code {
        401 => ApiError::Unauthorized { request, message },
        403 => ApiError::Forbidden { request, message },
        404 => ApiError::NotFound { request, message },
        409 if s.reason.as_deref() == Some("AlreadyExists") => {
            ApiError::AlreadyExists { request, message }
        }
        409 => ApiError::Conflict { request, message },
        410 => ApiError::Expired {
            request,
            message,
            continue_token: s.metadata.continue_token,
        },
        415 => ApiError::UnsupportedMediaType { request, message },
        422 => ApiError::Invalid {
            request,
            message,
            causes: s.details.causes,
        },
        429 => ApiError::TooManyRequests {
            request,
            message,
            retry_after,
        },
        500..=599 => ApiError::ServerError {
            request,
            code,
            reason: s.reason,
            message,
            retry_after,
        },
        _ => ApiError::Unexpected {
            request,
            code,
            reason: s.reason,
            message,
        },
    }
}

/// A message for a non-`Status` body: its text, shortened, or the status code if empty.
fn raw_message(body: &[u8], code: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {code} with an empty body");
    }
    let mut end = text.len().min(MAX_RAW_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(dir: &str) -> (u16, Vec<u8>, Option<String>) {
        let base = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/apiserver")
            .join(dir);
        let headers = std::fs::read_to_string(base.join("response-headers.txt")).unwrap();
        let code: u16 = headers
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap();
        let retry_after = headers.lines().find_map(|l| {
            l.strip_prefix("Retry-After: ")
                .map(|v| v.trim().to_string())
        });
        let body = std::fs::read(base.join("response-body.json")).unwrap();
        (code, body, retry_after)
    }

    fn req(method: Method, path: &str) -> RequestRef {
        RequestRef {
            method,
            path: path.into(),
        }
    }

    fn decode(dir: &str, r: RequestRef) -> ApiError {
        let (code, body, retry_after) = fixture(dir);
        ApiError::from_response(r, code, &body, retry_after.as_deref())
    }

    #[test]
    fn forbidden_node_restriction_labels() {
        let r = req(Method::Post, "/api/v1/nodes");
        let e = decode("04a-node-create-forbidden-labels-403", r.clone());
        assert_eq!(
            e,
            ApiError::Forbidden {
                request: r,
                message: "nodes \"vk-node\" is forbidden: node \"vk-node\" is not allowed to set the following labels: kubernetes.io/role, node-role.kubernetes.io/agent".into(),
            }
        );
        assert!(!e.is_retryable());
        assert_eq!(e.status_code(), Some(403));
        assert_eq!(
            e.to_string(),
            "failed to POST /api/v1/nodes: forbidden: nodes \"vk-node\" is forbidden: node \"vk-node\" is not allowed to set the following labels: kubernetes.io/role, node-role.kubernetes.io/agent"
        );
    }

    #[test]
    fn forbidden_variants_from_fixtures() {
        for (dir, needle) in [
            (
                "06h-pod-status-patch-labels-403",
                "cannot update labels through pod status",
            ),
            (
                "07e-configmap-get-unreferenced-403",
                "no relationship found between node 'vk-node' and this object",
            ),
            (
                "07g-configmap-get-nonexistent-403-not-404",
                "no relationship found",
            ),
            ("07i-secret-list-all-403", "No Object name found"),
            (
                "05d-lease-get-other-node-403",
                "can only access node lease with the same name as the requesting node",
            ),
            (
                "09b-tokenrequest-unbound-403",
                "node requested token not bound to a pod",
            ),
        ] {
            match decode(dir, req(Method::Get, "/x")) {
                ApiError::Forbidden { message, .. } => {
                    assert!(message.contains(needle), "{dir}: {message}");
                }
                other => panic!("{dir}: {other:?}"),
            }
        }
    }

    #[test]
    fn not_found() {
        let e = decode(
            "07a-pod-get-missing-404",
            req(
                Method::Get,
                "/api/v1/namespaces/fixtures/pods/does-not-exist",
            ),
        );
        assert!(
            matches!(&e, ApiError::NotFound { message, .. } if message == "pods \"does-not-exist\" not found")
        );
        assert!(!e.is_retryable());
        let e = decode("10d-pod-delete-again-404", req(Method::Delete, "/x"));
        assert!(matches!(e, ApiError::NotFound { .. }));
    }

    #[test]
    fn already_exists_vs_conflict() {
        let e = decode(
            "04c-node-create-again-409",
            req(Method::Post, "/api/v1/nodes"),
        );
        assert!(
            matches!(&e, ApiError::AlreadyExists { message, .. } if message == "nodes \"vk-node\" already exists")
        );
        for dir in [
            "04f-node-status-put-stale-rv-409",
            "05c-lease-put-stale-rv-409",
            "06d-pod-status-put-stale-rv-409",
            "10b-pod-delete-stale-rv-precondition-409",
        ] {
            let e = decode(dir, req(Method::Put, "/x"));
            assert!(matches!(e, ApiError::Conflict { .. }), "{dir}: {e:?}");
            assert!(!e.is_retryable());
        }
        match decode(
            "10a-pod-delete-wrong-uid-precondition-409",
            req(Method::Delete, "/x"),
        ) {
            ApiError::Conflict { message, .. } => {
                assert!(message.contains("the UID in the precondition"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_list_with_and_without_continue() {
        let e = decode(
            "03c-pods-list-rv1-exact-410",
            req(Method::Get, "/api/v1/pods"),
        );
        assert_eq!(
            e,
            ApiError::Expired {
                request: req(Method::Get, "/api/v1/pods"),
                message: "The resourceVersion for the provided list is too old.".into(),
                continue_token: None,
            }
        );
        match decode(
            "03f-pods-list-expired-continue-410",
            req(Method::Get, "/api/v1/pods"),
        ) {
            ApiError::Expired {
                continue_token,
                message,
                ..
            } => {
                assert_eq!(
                    continue_token.as_deref(),
                    Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTEsInN0YXJ0IjoiZml4dHVyZXMvcDFcdTAwMDAifQ")
                );
                assert!(message.starts_with("The provided continue parameter is too old"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn invalid_with_causes() {
        match decode(
            "06g-pod-status-patch-invalid-podip-422",
            req(Method::Patch, "/x"),
        ) {
            ApiError::Invalid {
                message, causes, ..
            } => {
                assert!(message.starts_with("Pod \"p1\" is invalid"));
                assert_eq!(
                    causes,
                    vec![Cause {
                        reason: Some("FieldValueInvalid".into()),
                        message: Some("Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into()),
                        field: Some("status.podIPs[0]".into()),
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        for (dir, field) in [
            (
                "03e-pods-watch-with-rvmatch-invalid",
                "resourceVersionMatch",
            ),
            (
                "04l-node-status-apply-without-fieldmanager-422",
                "fieldManager",
            ),
            (
                "09f-tokenrequest-expiration-too-short-422",
                "spec.expirationSeconds",
            ),
        ] {
            match decode(dir, req(Method::Get, "/x")) {
                ApiError::Invalid { causes, .. } => {
                    assert_eq!(causes.len(), 1, "{dir}");
                    assert_eq!(causes[0].field.as_deref(), Some(field), "{dir}");
                }
                other => panic!("{dir}: {other:?}"),
            }
        }
    }

    #[test]
    fn unsupported_media_type() {
        let e = decode(
            "04k-node-status-patch-wrong-content-type-415",
            req(Method::Patch, "/x"),
        );
        assert!(
            matches!(&e, ApiError::UnsupportedMediaType { message, .. } if message == "415: Unsupported Media Type")
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn gateway_timeout_with_retry_after() {
        let e = decode(
            "03h-pods-list-rv-too-large-notolderthan",
            req(Method::Get, "/api/v1/pods"),
        );
        match &e {
            ApiError::ServerError {
                code,
                reason,
                message,
                retry_after,
                ..
            } => {
                assert_eq!(*code, 504);
                assert_eq!(reason.as_deref(), Some("Timeout"));
                assert_eq!(
                    message,
                    "Timeout: Too large resource version: 99999999, current: 2700"
                );
                assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn retry_after_from_details_when_header_missing() {
        let (_, body, _) = fixture("03h-pods-list-rv-too-large-notolderthan");
        let e = ApiError::from_response(req(Method::Get, "/x"), 504, &body, None);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn server_error_without_reason() {
        let e = decode(
            "12a-admin-pod-log-nothing-listening-on-10250",
            req(Method::Get, "/x"),
        );
        match &e {
            ApiError::ServerError {
                code,
                reason,
                message,
                retry_after,
                ..
            } => {
                assert_eq!(*code, 500);
                assert_eq!(*reason, None);
                assert!(message.contains("connection refused"));
                assert_eq!(*retry_after, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(e.is_retryable());
        assert!(!e.request_not_processed());
    }

    #[test]
    fn too_many_requests_with_header() {
        let e = ApiError::from_response(
            req(Method::Post, "/api/v1/nodes"),
            429,
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#,
            Some("3"),
        );
        assert_eq!(
            e,
            ApiError::TooManyRequests {
                request: req(Method::Post, "/api/v1/nodes"),
                message: "Too many requests, please try again later.".into(),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        assert!(e.is_retryable());
        assert!(e.request_not_processed());
    }

    #[test]
    fn unauthorized_and_bad_request() {
        let e = ApiError::from_response(
            req(Method::Get, "/x"),
            401,
            br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#,
            None,
        );
        assert!(matches!(e, ApiError::Unauthorized { .. }));
        assert!(!e.is_retryable());
        let (_, body, _) = fixture("12p-admin-pod-log-unknown-container-400");
        let e = ApiError::from_response(req(Method::Get, "/x"), 400, &body, None);
        match e {
            ApiError::Unexpected {
                code,
                reason,
                message,
                ..
            } => {
                assert_eq!(code, 400);
                assert_eq!(reason.as_deref(), Some("BadRequest"));
                assert!(message.contains("container nope is not valid for pod p1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_status_bodies() {
        let e = ApiError::from_response(
            req(Method::Get, "/x"),
            502,
            b"<html>bad gateway</html>\n",
            None,
        );
        assert_eq!(
            e,
            ApiError::ServerError {
                request: req(Method::Get, "/x"),
                code: 502,
                reason: None,
                message: "<html>bad gateway</html>".into(),
                retry_after: None,
            }
        );
        let e = ApiError::from_response(req(Method::Get, "/x"), 503, b"", Some("soon"));
        assert_eq!(
            e,
            ApiError::ServerError {
                request: req(Method::Get, "/x"),
                code: 503,
                reason: None,
                message: "HTTP 503 with an empty body".into(),
                retry_after: None,
            }
        );
        // A JSON object that is not a Status is treated as raw text.
        let e = ApiError::from_response(req(Method::Get, "/x"), 404, br#"{"kind":"Pod"}"#, None);
        assert!(matches!(&e, ApiError::NotFound { message, .. } if message == r#"{"kind":"Pod"}"#));
        // Long bodies are cut at a character boundary.
        let long = "é".repeat(300);
        let e = ApiError::from_response(req(Method::Get, "/x"), 500, long.as_bytes(), None);
        match e {
            ApiError::ServerError { message, .. } => assert_eq!(message, "é".repeat(128)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn watch_error_event_status() {
        let line = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/apiserver/03a-pods-watch-rv1-too-old-410-error-event/response-body.json"),
        )
        .unwrap();
        let event: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        let e = ApiError::from_status_value(req(Method::Get, "/api/v1/pods"), &event["object"]);
        assert_eq!(
            e,
            ApiError::Expired {
                request: req(Method::Get, "/api/v1/pods"),
                message: "too old resource version: 1 (658)".into(),
                continue_token: None,
            }
        );
        // Without a code the reason decides; with neither it is a server error.
        let e = ApiError::from_status_value(
            req(Method::Get, "/x"),
            &serde_json::json!({"kind":"Status","reason":"Gone","message":"m"}),
        );
        assert!(matches!(e, ApiError::Expired { .. }));
        let e = ApiError::from_status_value(
            req(Method::Get, "/x"),
            &serde_json::json!({"kind":"Status","message":"internal error"}),
        );
        assert!(matches!(e, ApiError::ServerError { code: 500, .. }));
        let e = ApiError::from_status_value(req(Method::Get, "/x"), &serde_json::json!("junk"));
        assert!(matches!(e, ApiError::ServerError { code: 500, .. }));
    }

    #[test]
    fn retryability_of_local_errors() {
        let r = req(Method::Post, "/api/v1/nodes");
        let connect = ApiError::Transport {
            request: r.clone(),
            phase: TransportPhase::Connect,
            message: "connection refused".into(),
        };
        assert!(connect.is_retryable() && connect.request_not_processed());
        assert_eq!(
            connect.to_string(),
            "failed to POST /api/v1/nodes: cannot connect: connection refused"
        );
        let exchange = ApiError::Transport {
            request: r.clone(),
            phase: TransportPhase::Exchange,
            message: "timed out".into(),
        };
        assert!(exchange.is_retryable() && !exchange.request_not_processed());
        for e in [
            ApiError::Decode {
                request: r.clone(),
                what: "Node",
                message: "eof".into(),
            },
            ApiError::Encode {
                request: r.clone(),
                message: "x".into(),
            },
            ApiError::Credentials {
                request: r.clone(),
                path: "/t".into(),
                message: "gone".into(),
            },
        ] {
            assert!(!e.is_retryable(), "{e}");
            assert_eq!(e.status_code(), None);
            assert_eq!(e.request(), &r);
        }
    }
}
