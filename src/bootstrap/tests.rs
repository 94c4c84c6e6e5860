//! The request and the wait against the scripted API and a fake clock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{json, Value};

use super::*;
use crate::clock::FakeClock;
use crate::kube::fake::FakeApi;
use crate::kube::RequestKind;

fn key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn bootstrap_ask(node: &str) -> Ask<'_> {
    Ask {
        node,
        kind: &csr::Kind::Client,
        naming: Naming::Digest,
        wait: WAIT,
    }
}

fn clock() -> FakeClock {
    FakeClock::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

fn object(uid: &str, conditions: &[&str], cert: Option<&str>) -> Value {
    let mut status = json!({});
    if !conditions.is_empty() {
        status["conditions"] = conditions
            .iter()
            .map(|t| json!({"type": t, "status": "True", "reason": format!("{t}Reason"), "message": format!("{t} by test")}))
            .collect();
    }
    if let Some(c) = cert {
        status["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(c));
    }
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr-x", "uid": uid, "resourceVersion": "7"},
        "spec": {"request": "", "signerName": csr::SIGNER_KUBELET_CLIENT, "usages": csr::CLIENT_USAGES},
        "status": status,
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"kind": "CertificateSigningRequestList", "apiVersion": "certificates.k8s.io/v1",
           "metadata": {"resourceVersion": "100"}, "items": items})
}

fn events(evs: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (t, o) in evs {
        out.extend_from_slice(json!({"type": t, "object": o}).to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

fn never() -> bool {
    false
}

#[test]
fn a_request_is_created_listed_and_watched_until_issued() {
    let api = FakeApi::new();
    api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
    api.push_json(RequestKind::ListCsrs, list(vec![object("u1", &[], None)]));
    api.push_stream(
        RequestKind::WatchCsrs,
        &events(&[
            ("MODIFIED", object("u1", &["Approved"], None)),
            ("MODIFIED", object("u1", &["Approved"], Some("CERT PEM"))),
        ]),
    );
    let k = key();
    let cert = request_certificate(&api, &k, &bootstrap_ask("vk-node"), &clock(), &never).unwrap();
    assert_eq!(cert, b"CERT PEM");

    let create = &api.calls_of(RequestKind::CreateCsr)[0];
    assert_eq!(
        create.url("https://x"),
        "https://x/apis/certificates.k8s.io/v1/certificatesigningrequests"
    );
    let body: Value = serde_json::from_slice(create.body.as_deref().unwrap()).unwrap();
    use rcgen::PublicKeyData as _;
    let want_name = csr::request_name(
        &k.subject_public_key_info(),
        "system:node:vk-node",
        &["system:nodes"],
        &csr::CLIENT_USAGES,
    );
    assert_eq!(body["metadata"]["name"], want_name.as_str());
    assert_eq!(
        body["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    let request = base64::engine::general_purpose::STANDARD
        .decode(body["spec"]["request"].as_str().unwrap())
        .unwrap();
    assert!(request.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----"));
    // The wait follows the name the server answered (the scripted reply's).
    assert_eq!(
        api.calls_of(RequestKind::ListCsrs)[0].url("https://x"),
        "https://x/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=metadata.name%3Dnode-csr-x"
    );
    assert_eq!(
        api.calls_of(RequestKind::WatchCsrs)[0].url("https://x"),
        "https://x/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=metadata.name%3Dnode-csr-x&watch=true&resourceVersion=100&timeoutSeconds=30"
    );
    assert_eq!(api.pending_replies(), 0);
}

#[test]
fn an_earlier_request_of_the_same_name_is_reused() {
    let api = FakeApi::new();
    api.push_error(
        RequestKind::CreateCsr,
        ApiError::AlreadyExists {
            request: request::list_csr_by_name("n", &ListOptions::default()).describe(),
            message: "exists".into(),
        },
    );
    // The lookup, then the wait's list: issued already.
    api.push_json(
        RequestKind::ListCsrs,
        list(vec![object("u0", &["Approved"], Some("C"))]),
    );
    api.push_json(
        RequestKind::ListCsrs,
        list(vec![object("u0", &["Approved"], Some("C"))]),
    );
    let cert =
        request_certificate(&api, &key(), &bootstrap_ask("vk-node"), &clock(), &never).unwrap();
    assert_eq!(cert, b"C");
    assert!(api.calls_of(RequestKind::WatchCsrs).is_empty());
}

#[test]
fn a_denied_failed_deleted_or_replaced_request_ends_the_wait() {
    for (evs, want) in [
        (
            vec![("MODIFIED", object("u1", &["Denied"], None))],
            "certificate signing request is denied, reason: DeniedReason, message: Denied by test",
        ),
        (
            vec![("MODIFIED", object("u1", &["Failed"], None))],
            "certificate signing request failed, reason: FailedReason, message: Failed by test",
        ),
        (
            vec![("DELETED", object("u1", &[], None))],
            // Named by the request's own name.
            "\" was deleted",
        ),
        (
            vec![("ADDED", object("u2", &[], None))],
            "csr \"node-csr-x\" changed UIDs",
        ),
    ] {
        let api = FakeApi::new();
        api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
        api.push_json(RequestKind::ListCsrs, list(vec![object("u1", &[], None)]));
        api.push_stream(RequestKind::WatchCsrs, &events(&evs));
        let err =
            request_certificate(&api, &key(), &bootstrap_ask("n"), &clock(), &never).unwrap_err();
        let msg = err.to_string();
        assert!(msg.ends_with(want), "{msg}");
        assert!(
            msg.starts_with("certificate signing request ") || msg.starts_with("csr \"node-csr-"),
            "{msg}"
        );
    }
    // Gone before the first list.
    let api = FakeApi::new();
    api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
    api.push_json(RequestKind::ListCsrs, list(vec![]));
    let err = request_certificate(&api, &key(), &bootstrap_ask("n"), &clock(), &never).unwrap_err();
    assert!(
        matches!(err, BootstrapError::Refused(Refusal::Deleted { .. })),
        "{err}"
    );
}

#[test]
fn a_watch_that_ends_or_expires_is_followed_by_a_new_list() {
    let api = FakeApi::new();
    api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
    api.push_json(RequestKind::ListCsrs, list(vec![object("u1", &[], None)]));
    // The window ends with nothing new.
    api.push_stream(RequestKind::WatchCsrs, b"");
    api.push_json(RequestKind::ListCsrs, list(vec![object("u1", &[], None)]));
    // 410 Expired.
    api.push_stream(
        RequestKind::WatchCsrs,
        &events(&[(
            "ERROR",
            json!({"kind": "Status", "code": 410, "reason": "Expired"}),
        )]),
    );
    api.push_json(
        RequestKind::ListCsrs,
        list(vec![object("u1", &["Approved"], Some("C"))]),
    );
    let cert = request_certificate(&api, &key(), &bootstrap_ask("n"), &clock(), &never).unwrap();
    assert_eq!(cert, b"C");
    assert_eq!(api.calls_of(RequestKind::ListCsrs).len(), 3);
    assert_eq!(api.calls_of(RequestKind::WatchCsrs).len(), 2);
}

#[test]
fn other_create_failures_end_bootstrap_with_the_servers_answer() {
    let api = FakeApi::new();
    api.push_error(
        RequestKind::CreateCsr,
        ApiError::Forbidden {
            request: request::create_csr(&csr::request_object("n", "", &csr::Kind::Client)).unwrap().describe(),
            message: "certificatesigningrequests.certificates.k8s.io is forbidden: User \"system:anonymous\" cannot create resource".into(),

        },
    );
    let err = request_certificate(&api, &key(), &bootstrap_ask("n"), &clock(), &never).unwrap_err();
    assert!(
        matches!(err, BootstrapError::Create(ApiError::Forbidden { .. })),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("cannot create certificate signing request: "),
        "{err}"
    );
}

#[test]
fn the_wait_gives_up_after_an_hour_and_on_a_stop() {
    // The API answers nothing after the create: every list fails and the wait pauses 1 s on
    // the clock, which another thread moves a minute at a time.
    let api = FakeApi::new();
    api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
    let c = Arc::new(clock());
    let done = Arc::new(AtomicBool::new(false));
    let mover = {
        let (c, done) = (c.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                c.advance(Duration::from_secs(60));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let err =
        request_certificate(&api, &key(), &bootstrap_ask("n"), c.as_ref(), &never).unwrap_err();
    done.store(true, Ordering::SeqCst);
    mover.join().unwrap();
    assert!(matches!(err, BootstrapError::Timeout { .. }), "{err}");
    assert!(
        api.calls_of(RequestKind::ListCsrs).len() > 1,
        "the list is retried"
    );
    let waited = c.now().duration_since(clock().now()).unwrap();
    assert!(waited >= WAIT, "gave up after {waited:?}");

    let api = FakeApi::new();
    api.push_json(RequestKind::CreateCsr, object("u1", &[], None));
    api.push_json(RequestKind::ListCsrs, list(vec![object("u1", &[], None)]));
    let stop = AtomicBool::new(false);
    api.push_stream(
        RequestKind::WatchCsrs,
        &events(&[("MODIFIED", object("u1", &[], None))]),
    );
    let stopped = || {
        // Stop once the watch has been opened.
        stop.swap(true, Ordering::SeqCst)
    };
    let err =
        request_certificate(&api, &key(), &bootstrap_ask("n"), &clock(), &stopped).unwrap_err();
    assert!(matches!(err, BootstrapError::Stopped { .. }), "{err}");
}
