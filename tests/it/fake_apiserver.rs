//! Checks the fake API server against the recorded kube-apiserver fixtures: the fixture
//! requests are replayed (same method, path, content type and body) with the identity the
//! fixture used, and status codes and Status bodies are compared byte for byte (after
//! substituting the uids and resourceVersions that differ between the two servers). Watches are
//! read raw to check one event per chunk, the bookmark shape, the 410 ERROR event and the clean
//! end. Clients are ureq with rcgen-made client certificates, or a raw rustls stream.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};
use vk_cri::certs::CertKeyPem;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apiserver");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Node,
    Admin,
    Anonymous,
    /// The bootstrap token [`BOOTSTRAP_TOKEN`] (the fixtures' `abcdef.<secret>`).
    Bootstrap,
}

const BOOTSTRAP_TOKEN: &str = "abcdef.0123456789abcdef";

fn creds(fake: &FakeApiServer, who: Who) -> Option<CertKeyPem> {
    match who {
        Who::Node => Some(fake.node_cert()),
        Who::Admin => Some(fake.admin_cert()),
        Who::Anonymous | Who::Bootstrap => None,
    }
}

fn agent(fake: &FakeApiServer, who: Who) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let ca = Certificate::from_pem(fake.ca_pem().as_bytes()).unwrap();
    let mut tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()));
    if let Some(c) = creds(fake, who) {
        let cert = Certificate::from_pem(c.cert_pem.as_bytes()).unwrap();
        let key = PrivateKey::from_pem(c.key_pem.as_bytes()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

struct Reply {
    status: u16,
    body: String,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not json ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn send(
    fake: &FakeApiServer,
    who: Who,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> Reply {
    let a = agent(fake, who);
    let url = format!("{}{path}", fake.url());
    let ct = content_type.unwrap_or("application/json");
    let auth = if who == Who::Bootstrap {
        format!("Bearer {BOOTSTRAP_TOKEN}")
    } else {
        String::new()
    };
    let res = match (method, body) {
        ("GET", _) if !auth.is_empty() => a.get(&url).header("Authorization", &auth).call(),
        ("GET", _) => a.get(&url).call(),
        ("DELETE", None) => a.delete(&url).call(),
        ("DELETE", Some(b)) => a.delete(&url).force_send_body().content_type(ct).send(b),
        ("POST", b) if !auth.is_empty() => a
            .post(&url)
            .header("Authorization", &auth)
            .content_type(ct)
            .send(b.unwrap_or("")),
        ("POST", b) => a.post(&url).content_type(ct).send(b.unwrap_or("")),
        ("PUT", b) if !auth.is_empty() => a
            .put(&url)
            .header("Authorization", &auth)
            .content_type(ct)
            .send(b.unwrap_or("")),
        ("PUT", b) => a.put(&url).content_type(ct).send(b.unwrap_or("")),
        ("PATCH", b) => a.patch(&url).content_type(ct).send(b.unwrap_or("")),
        (m, _) => panic!("unsupported method {m}"),
    };
    let mut resp = res.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    Reply {
        status: resp.status().as_u16(),
        body: resp.body_mut().read_to_string().unwrap(),
        headers,
    }
}

fn get(fake: &FakeApiServer, who: Who, path: &str) -> Reply {
    send(fake, who, "GET", path, None, None)
}

/// A fixture request: method, path (with query), content type and body.
struct FixtureRequest {
    method: String,
    path: String,
    content_type: Option<String>,
    body: String,
}

fn fixture_file(dir: &str, file: &str) -> String {
    let path = format!("{FIXTURES}/{dir}/{file}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_request(dir: &str) -> FixtureRequest {
    let text = fixture_file(dir, "request.txt");
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let request_line = lines.next().unwrap();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap().to_string();
    let path = parts.next().unwrap().to_string();
    let mut content_type = None;
    let mut length = None;
    for line in lines.by_ref() {
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(": ").unwrap();
        if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.to_string());
        }
        if k.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().unwrap());
        }
    }
    let rest: Vec<&str> = lines.collect();
    let mut body = rest.join("\n");
    if let Some(n) = length {
        body.truncate(n);
    }
    FixtureRequest {
        method,
        path,
        content_type,
        body,
    }
}

fn fixture_status(dir: &str) -> u16 {
    let head = fixture_file(dir, "response-headers.txt");
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

fn who_for(dir: &str) -> Who {
    if dir.contains("admin") {
        Who::Admin
    } else if dir.contains("anonymous") {
        Who::Anonymous
    } else if dir.contains("bootstrap") {
        Who::Bootstrap
    } else {
        Who::Node
    }
}

/// Go's pretty JSON without the indentation: whitespace outside strings removed.
fn compact(pretty: &str) -> String {
    let mut out = String::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in pretty.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn replay_with(fake: &FakeApiServer, dir: &str, subs: &[(&str, &str)]) -> Reply {
    let r = fixture_request(dir);
    let mut body = r.body.clone();
    let mut path = r.path.clone();
    for (from, to) in subs {
        body = body.replace(from, to);
        path = path.replace(from, to);
    }
    let has_body = !r.body.is_empty() || r.method != "GET";
    send(
        fake,
        who_for(dir),
        &r.method,
        &path,
        r.content_type.as_deref(),
        if has_body && !(r.method == "DELETE" && r.body.is_empty()) {
            Some(body.as_str())
        } else {
            None
        },
    )
}

fn replay(fake: &FakeApiServer, dir: &str) -> Reply {
    replay_with(fake, dir, &[])
}

/// Replays a fixture and checks the status code and the body byte for byte (compacted), after
/// replacing values that differ between the recording and the fake (`(fixture, ours)`).
fn assert_fixture(fake: &FakeApiServer, dir: &str, subs: &[(&str, &str)]) {
    let got = replay_with(fake, dir, subs);
    assert_eq!(got.status, fixture_status(dir), "{dir}: {}", got.body);
    let mut want = compact(&fixture_file(dir, "response-body.json"));
    for (from, to) in subs {
        want = want.replace(from, to);
    }
    assert_eq!(got.body, want, "{dir}");
}

/// Object fields that legitimately differ between the recording and the fake.
fn normalize(mut v: Value) -> Value {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "deletionTimestamp",
        ] {
            m.remove(k);
        }
    }
    let text = v.to_string();
    let mut out = String::new();
    let mut rest = text.as_str();
    // kube-api-access-xxxxx has a random suffix on both sides.
    while let Some(i) = rest.find("kube-api-access-") {
        out.push_str(&rest[..i + "kube-api-access-".len()]);
        rest = &rest[i + "kube-api-access-".len() + 5..];
        out.push_str("XXXXX");
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap()
}

fn fixture_json(dir: &str) -> Value {
    serde_json::from_str(&fixture_file(dir, "response-body.json")).unwrap()
}

fn rv_of(v: &Value) -> u64 {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn uid_of(v: &Value) -> String {
    v["metadata"]["uid"].as_str().unwrap().to_string()
}

/// A raw TLS client that records each HTTP chunk of a streamed response as it arrives.
struct RawStream {
    head: String,
    chunks: Vec<(Duration, String)>,
    /// True when the body ended with the terminating 0-chunk (a clean end).
    clean_end: bool,
}

fn raw_get(fake: &FakeApiServer, who: Who, path: &str) -> RawStream {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(fake.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match creds(fake, who) {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("127.0.0.1").unwrap())
            .unwrap();
    let sock = std::net::TcpStream::connect(fake.addr()).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let start = Instant::now();
    let mut buf: Vec<u8> = Vec::new();
    let mut head = None;
    let mut chunks = Vec::new();
    let mut clean_end = false;
    let mut piece = [0u8; 65536];
    loop {
        let n = match tls.read(&mut piece) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&piece[..n]);
        if head.is_none() {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                head = Some(String::from_utf8_lossy(&buf[..i]).into_owned());
                buf.drain(..i + 4);
            }
        }
        if head.is_some() {
            while let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") {
                let size =
                    usize::from_str_radix(std::str::from_utf8(&buf[..eol]).unwrap().trim(), 16)
                        .unwrap();
                if buf.len() < eol + 2 + size + 2 {
                    break;
                }
                let data = String::from_utf8(buf[eol + 2..eol + 2 + size].to_vec()).unwrap();
                buf.drain(..eol + 2 + size + 2);
                if size == 0 {
                    clean_end = true;
                } else {
                    chunks.push((start.elapsed(), data));
                }
            }
        }
    }
    RawStream {
        head: head.unwrap_or_default(),
        chunks,
        clean_end,
    }
}

fn event(chunk: &str) -> Value {
    assert!(
        chunk.ends_with('\n'),
        "an event chunk ends with a newline: {chunk:?}"
    );
    assert_eq!(
        chunk.matches('\n').count(),
        1,
        "one event per chunk: {chunk:?}"
    );
    serde_json::from_str(chunk).unwrap()
}

/// The fixture world of 00a–00h and 06e0: namespace, config maps, secrets and pods.
fn fixture_world() -> FakeApiServer {
    let fake = FakeApiServer::start_with(FakeConfig {
        too_large_rv_wait: Duration::from_millis(300),
        ..FakeConfig::default()
    });
    for dir in [
        "00a-admin-create-namespace",
        "00b-admin-create-configmap-used",
        "00c-admin-create-configmap-unused",
        "00d-admin-create-secret-used",
        "00e-admin-create-secret-unused",
        "00f-admin-create-pod-p1",
        "00g-admin-create-pod-p2",
        "00h-admin-create-pod-p-del",
        "06e0-admin-create-pod-bound-to-other-node",
    ] {
        let r = replay(&fake, dir);
        assert_eq!(r.status, 201, "{dir}: {}", r.body);
    }
    fake
}

#[test]
fn admin_creates_are_defaulted_like_the_real_server() {
    let fake = FakeApiServer::start();
    for dir in [
        "00a-admin-create-namespace",
        "00b-admin-create-configmap-used",
        "00d-admin-create-secret-used",
        "00f-admin-create-pod-p1",
        "00g-admin-create-pod-p2",
        // Field for field: probes, handlers, ports and host ports, env and volume sources,
        // requests from limits and quantities in canonical form (the fake has no dry run).
        "13a-admin-create-pod-rich-dry-run-server",
        "13b-admin-create-pod-hostnet-dry-run-server",
    ] {
        let r = replay_with(&fake, dir, &[("?dryRun=All", "")]);
        assert_eq!(r.status, 201, "{dir}");
        let mut got = normalize(r.json());
        let mut want = normalize(fixture_json(dir));
        if dir.starts_with("00a") {
            // Namespace lifecycle labels and finalizers are not modelled.
            for v in [&mut got, &mut want] {
                v["metadata"].as_object_mut().unwrap().remove("labels");
            }
        }
        assert_eq!(got, want, "{dir}");
    }
    let secret = fake.get(Res::Secrets, "fixtures", "secret-used").unwrap();
    assert!(secret.get("stringData").is_none());
}

#[test]
fn version_discovery_and_anonymous_access() {
    let fake = FakeApiServer::start();
    for dir in ["11b-version", "11f-anonymous-get-version-200"] {
        let r = replay(&fake, dir);
        assert_eq!(r.status, 200);
        assert_eq!(r.json(), fixture_json(dir));
    }
    assert_fixture(&fake, "11g-anonymous-list-pods-403", &[]);
    assert_eq!(get(&fake, Who::Anonymous, "/api").status, 403);
    let api = get(&fake, Who::Node, "/api").json();
    assert_eq!(api["kind"], "APIVersions");
    assert_eq!(get(&fake, Who::Node, "/api/v1/widgets").status, 404);
}

#[test]
fn pod_lists_by_node_with_paging() {
    let fake = fixture_world();
    let r = replay(&fake, "01-pods-list-by-node");
    assert_eq!(r.status, 200);
    let list = r.json();
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["apiVersion"], "v1");
    assert_eq!(rv_of(&list), fake.resource_version());
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    // Same order as 01 (etcd key order); p-other is bound elsewhere.
    let want: Vec<String> = fixture_json("01-pods-list-by-node")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, want);
    assert!(
        list["items"][0].get("kind").is_none(),
        "list items carry no kind"
    );
    assert_eq!(
        replay(&fake, "01b-pods-list-by-node-rv0-from-cache").status,
        200
    );

    // Paging: one item per page; a continue token while keys remain, like 01c-01e.
    let mut seen = Vec::new();
    let mut path = "/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=1".to_string();
    let mut pages = 0;
    loop {
        let page = get(&fake, Who::Node, &path).json();
        pages += 1;
        assert!(page["items"].as_array().unwrap().len() <= 1);
        for p in page["items"].as_array().unwrap() {
            seen.push(p["metadata"]["name"].as_str().unwrap().to_string());
        }
        let Some(token) = page["metadata"]["continue"].as_str() else {
            break;
        };
        let decoded: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(decoded["v"], "meta.k8s.io/v1");
        assert_eq!(decoded["rv"], json!(rv_of(&list)));
        assert!(decoded["start"].as_str().unwrap().ends_with('\u{0}'));
        path =
            format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=1&continue={token}");
        assert!(pages < 10);
    }
    assert_eq!(seen, want);
    // Key order is fixtures/p-del, fixtures/p-other, fixtures/p1, fixtures/p2: no key follows
    // p2, so its page carries no token (in 01d the real server still had keys in other
    // namespaces after p2, hence one more, empty, page there).
    assert_eq!(pages, 3);
}

#[test]
fn resource_version_semantics_of_lists_and_watches() {
    let fake = fixture_world();
    let current = fake.resource_version().to_string();
    assert_eq!(replay(&fake, "03b-pods-list-rv1-notolderthan").status, 200);
    assert_fixture(&fake, "03c-pods-list-rv1-exact-410", &[]);
    assert_eq!(
        replay(&fake, "03d-pods-list-rv1-legacy-no-match").status,
        200
    );
    assert_fixture(&fake, "03e-pods-watch-with-rvmatch-invalid", &[]);
    assert_fixture(&fake, "03f-pods-list-expired-continue-410", &[]);
    let start = Instant::now();
    let r = replay(&fake, "03h-pods-list-rv-too-large-notolderthan");
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.header("retry-after"), Some("1"));
    let want = compact(&fixture_file(
        "03h-pods-list-rv-too-large-notolderthan",
        "response-body.json",
    ))
    .replace("current: 2700", &format!("current: {current}"));
    assert_eq!((r.status, r.body), (504, want));

    // 03a: HTTP 200, one ERROR event in one chunk, then a clean end.
    let s = raw_get(
        &fake,
        Who::Node,
        &fixture_request("03a-pods-watch-rv1-too-old-410-error-event").path,
    );
    assert!(s.head.starts_with("HTTP/1.1 200 OK"), "{}", s.head);
    assert!(s.head.contains("Transfer-Encoding: chunked"));
    assert!(s.clean_end);
    let want = fixture_file(
        "03a-pods-watch-rv1-too-old-410-error-event",
        "response-body.json",
    )
    .replace("(658)", "(1000)");
    assert_eq!(s.chunks.len(), 1);
    assert_eq!(s.chunks[0].1, want);

    // 03g: a future RV sends nothing and ends cleanly at the timeout.
    let s = raw_get(&fake, Who::Node, "/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&resourceVersion=99999999&allowWatchBookmarks=true&timeoutSeconds=3");
    assert!(s.chunks.is_empty(), "{:?}", s.chunks);
    assert!(s.clean_end);

    // A compacted history makes an older RV too old.
    let old = fake.resource_version();
    fake.put_configmap("fixtures", "bump", &[("a", "b")]);
    fake.compact_history();
    let s = raw_get(
        &fake,
        Who::Node,
        &format!("/api/v1/pods?watch=true&resourceVersion={old}&timeoutSeconds=5"),
    );
    let e = event(&s.chunks[0].1);
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(
        e["object"]["message"],
        format!(
            "too old resource version: {old} ({})",
            fake.resource_version()
        )
    );
}

#[test]
fn watch_sees_graceful_deletion_and_bookmarks_like_02() {
    let fake = fixture_world();
    let from = fake.resource_version();
    let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds=6");
    let watcher = {
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| raw_get(&fake, Who::Node, &path));
            std::thread::sleep(Duration::from_millis(300));
            let created = replay(&fake, "02a-admin-create-pod-w1");
            assert_eq!(created.status, 201, "{}", created.body);
            let uid = uid_of(&created.json());
            assert_eq!(replay(&fake, "02b-admin-patch-pod-w1-labels").status, 200);
            let graceful = replay(&fake, "02c-admin-delete-pod-w1-grace30");
            assert_eq!(graceful.status, 200);
            let g = graceful.json();
            assert_eq!(g["kind"], "Pod", "pod DELETE returns the pod");
            assert_eq!(g["metadata"]["deletionGracePeriodSeconds"], 30);
            let first_ts = g["metadata"]["deletionTimestamp"]
                .as_str()
                .unwrap()
                .to_string();
            let last = replay_with(
                &fake,
                "02d-node-delete-pod-w1-grace0-uid-precondition",
                &[("c07afab5-5f4d-4c4a-98c4-269e16c533d3", &uid)],
            );
            assert_eq!(last.status, 200, "{}", last.body);
            let l = last.json();
            assert_eq!(l["metadata"]["deletionGracePeriodSeconds"], 0);
            // Moved back by the 30 s of the first request.
            let moved = l["metadata"]["deletionTimestamp"].as_str().unwrap();
            let secs = |s: &str| {
                s.parse::<k8s_openapi::jiff::Timestamp>()
                    .unwrap()
                    .as_second()
            };
            assert_eq!(secs(&first_ts) - 30, secs(moved));
            assert!(fake.get_pod("fixtures", "w1").is_none());
            assert_eq!(
                replay(&fake, "02d-node-delete-pod-w1-grace0-uid-precondition").status,
                404
            );
            (handle.join().unwrap(), rv_of(&l))
        })
    };
    let (s, deleted_rv) = watcher;
    assert!(s.clean_end);
    let events: Vec<Value> = s.chunks.iter().map(|(_, c)| event(c)).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let want_types: Vec<String> = fixture_file("02-pods-watch", "response-body.json")
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, want_types, "same event sequence as 02");
    assert_eq!(
        events[2]["object"]["metadata"]["deletionGracePeriodSeconds"],
        30
    );
    assert_eq!(
        events[3]["object"]["metadata"]["deletionGracePeriodSeconds"],
        0
    );
    assert_eq!(rv_of(&events[4]["object"]), rv_of(&events[3]["object"]) + 1);
    assert_eq!(rv_of(&events[4]["object"]), deleted_rv);
    // Bookmarks: the fixture's exact shape, at about 2 s and 1 s before the 6 s timeout.
    let bookmark_rv = fake.resource_version();
    let want_bookmark = fixture_file("02-pods-watch", "response-body.json")
        .lines()
        .find(|l| l.contains("BOOKMARK"))
        .unwrap()
        .replace("\"2700\"", &format!("\"{bookmark_rv}\""))
        + "\n";
    assert_eq!(s.chunks[5].1, want_bookmark);
    assert_eq!(s.chunks[6].1, want_bookmark);
    assert!(
        s.chunks[5].0 >= Duration::from_millis(3800),
        "{:?}",
        s.chunks[5].0
    );
    assert!(
        s.chunks[6].0 >= Duration::from_millis(4800),
        "{:?}",
        s.chunks[6].0
    );
}

#[test]
fn watches_without_rv_send_current_state_and_no_bookmarks() {
    let fake = fixture_world();
    let s = raw_get(&fake, Who::Node, "/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&allowWatchBookmarks=true&timeoutSeconds=3");
    let types: Vec<String> = s
        .chunks
        .iter()
        .map(|(_, c)| event(c)["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        ["ADDED", "ADDED", "ADDED"],
        "02f: synthetic ADDEDs, no BOOKMARK"
    );
    let s = raw_get(&fake, Who::Node, "/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&resourceVersion=0&allowWatchBookmarks=true&timeoutSeconds=3");
    let types: Vec<String> = s
        .chunks
        .iter()
        .map(|(_, c)| event(c)["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        ["ADDED", "ADDED", "ADDED", "BOOKMARK", "BOOKMARK"],
        "02e: RV 0 gets bookmarks"
    );
    // Periodic bookmarks at the configured interval.
    let fast = FakeApiServer::start_with(FakeConfig {
        bookmark_interval: Duration::from_millis(500),
        ..FakeConfig::default()
    });
    let rv = fast.resource_version();
    let s = raw_get(&fast, Who::Node, &format!("/api/v1/pods?watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=3"));
    assert!(s.chunks.len() >= 3, "{:?}", s.chunks);
}

#[test]
fn nodes_follow_node_restriction_and_merge_status_by_type() {
    let fake = FakeApiServer::start();
    assert_fixture(&fake, "04a-node-create-forbidden-labels-403", &[]);
    let created = replay(&fake, "04b-node-create-201");
    assert_eq!(created.status, 201);
    assert_eq!(
        normalize(created.json()),
        normalize(fixture_json("04b-node-create-201"))
    );
    assert_fixture(&fake, "04c-node-create-again-409", &[]);
    // kube-controller-manager then removes the not-ready taint (04d).
    fake.modify(Res::Nodes, "", "vk-node", |n| {
        n["spec"]["taints"]
            .as_array_mut()
            .unwrap()
            .retain(|t| t["key"] != "node.kubernetes.io/not-ready");
    })
    .unwrap();
    let before = rv_of(&fake.get_node("vk-node").unwrap());
    let r = replay(&fake, "04e-node-status-patch-smp-heartbeat");
    assert_eq!(r.status, 200);
    let node = r.json();
    assert_eq!(
        node["status"]["conditions"][0]["lastHeartbeatTime"],
        "2026-11-22T12:52:37Z"
    );
    assert_eq!(
        node["status"]["conditions"][0]["lastTransitionTime"],
        "2026-11-22T12:52:16Z"
    );
    assert_eq!(node["status"]["conditions"].as_array().unwrap().len(), 1);
    assert!(rv_of(&node) > before);
    // 04e2: the same patch again changes nothing and keeps the resourceVersion.
    let again = replay(&fake, "04e-node-status-patch-smp-heartbeat").json();
    assert_eq!(rv_of(&again), rv_of(&node));
    assert_fixture(&fake, "04f-node-status-put-stale-rv-409", &[]);
    assert_fixture(&fake, "04f2-node-status-put-stale-object-taints-403", &[]);
    assert_fixture(&fake, "04g-node-patch-forbidden-label-403", &[]);
    let r = replay(&fake, "04h-node-status-patch-json-patch");
    assert_eq!(
        r.json()["status"]["conditions"][0]["lastHeartbeatTime"],
        "2026-11-22T12:52:43Z"
    );
    let r = replay(&fake, "04i-node-status-patch-merge-patch");
    assert_eq!(
        r.json()["status"]["nodeInfo"]["bootID"],
        "fixture-boot-id-1"
    );
    assert_eq!(
        replay(&fake, "04j-node-status-server-side-apply").status,
        200
    );
    assert_fixture(&fake, "04k-node-status-patch-wrong-content-type-415", &[]);
    assert_fixture(&fake, "04l-node-status-apply-without-fieldmanager-422", &[]);
    assert_fixture(&fake, "04m-node-patch-taints-403", &[]);
    // Addresses merge by type.
    let r = send(
        &fake,
        Who::Node,
        "PATCH",
        "/api/v1/nodes/vk-node/status",
        Some("application/strategic-merge-patch+json"),
        Some(r#"{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.2"}]}}"#),
    );
    let addrs = r.json()["status"]["addresses"].clone();
    assert_eq!(
        addrs,
        json!([{"type": "InternalIP", "address": "127.0.0.2"}, {"type": "Hostname", "address": "vk-node"}])
    );
    // The node may not delete itself or touch another node; admin deletes return a Status.
    let r = send(
        &fake,
        Who::Node,
        "DELETE",
        "/api/v1/nodes/vk-node",
        None,
        None,
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], "nodes \"vk-node\" is forbidden: User \"system:node:vk-node\" cannot delete resource \"nodes\" in API group \"\" at the cluster scope");
    let uid = uid_of(&fake.get_node("vk-node").unwrap());
    assert_fixture(
        &fake,
        "99c-admin-delete-node",
        &[("a4207659-f9f3-47e2-9a7c-5f00a7407a5e", &uid)],
    );
    assert!(fake.get_node("vk-node").is_none());
}

#[test]
fn leases_have_optimistic_concurrency_and_node_scoping() {
    let fake = FakeApiServer::start();
    let created = replay(&fake, "05a-lease-create-201");
    assert_eq!(created.status, 201);
    let lease = created.json();
    assert_eq!(
        normalize(lease.clone()),
        normalize(fixture_json("05a-lease-create-201"))
    );
    let first_rv = rv_of(&lease).to_string();
    let uid = uid_of(&lease);
    let renewed = replay_with(
        &fake,
        "05b-lease-put-renew-200",
        &[
            ("\"2659\"", &format!("\"{first_rv}\"")),
            ("0028a063-2849-406f-85b0-77ac9d68debe", &uid),
        ],
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert_eq!(
        renewed.json()["spec"]["renewTime"],
        "2026-11-22T12:52:20.599105Z"
    );
    assert!(rv_of(&renewed.json()) > rv_of(&lease));
    assert_fixture(
        &fake,
        "05c-lease-put-stale-rv-409",
        &[
            ("\"2659\"", &format!("\"{first_rv}\"")),
            ("0028a063-2849-406f-85b0-77ac9d68debe", &uid),
        ],
    );
    assert_fixture(&fake, "05d-lease-get-other-node-403", &[]);
    let r = get(
        &fake,
        Who::Node,
        "/apis/coordination.k8s.io/v1/namespaces/fixtures/leases/vk-node",
    );
    assert_eq!(r.status, 403);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .ends_with("can only access leases in the \"kube-node-lease\" system namespace"));
    assert_fixture(
        &fake,
        "99b-admin-delete-lease",
        &[("0028a063-2849-406f-85b0-77ac9d68debe", &uid)],
    );
}

#[test]
fn pod_status_patches_follow_06() {
    let fake = fixture_world();
    let r = replay(&fake, "06a-pod-status-patch-merge-running");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["status"],
        fixture_json("06a-pod-status-patch-merge-running")["status"]
    );
    let r = replay(&fake, "06b-pod-status-patch-smp-one-condition");
    assert_eq!(r.status, 200);
    // Only the Ready condition changed; the merged result is exactly the recorded one.
    assert_eq!(
        r.json()["status"],
        fixture_json("06b-pod-status-patch-smp-one-condition")["status"]
    );
    assert_fixture(&fake, "06d-pod-status-put-stale-rv-409", &[]);
    assert_fixture(&fake, "06e-pod-status-patch-other-nodes-pod-403", &[]);
    assert_fixture(&fake, "06e1-pod-delete-other-nodes-pod-403", &[]);
    let r = replay(&fake, "06f-pod-status-patch-invalid-phase");
    assert_eq!(
        (r.status, r.json()["status"]["phase"].clone()),
        (200, json!("Bogus"))
    );
    assert_fixture(&fake, "06g-pod-status-patch-invalid-podip-422", &[]);
    assert_fixture(&fake, "06h-pod-status-patch-labels-403", &[]);
    assert_eq!(
        replay(&fake, "06i-pod-status-patch-restore-running").status,
        200
    );
    let r = replay(&fake, "06j-pod-status-patch-p2-failed-terminated");
    assert_eq!(r.json()["status"]["phase"], "Failed");
    // The node may not patch a pod's spec.
    let r = send(
        &fake,
        Who::Node,
        "PATCH",
        "/api/v1/namespaces/fixtures/pods/p1",
        Some("application/merge-patch+json"),
        Some(r#"{"metadata":{"labels":{"x":"y"}}}"#),
    );
    assert_eq!(r.status, 403);
}

#[test]
fn pod_status_strategic_merge_follows_13c() {
    let fake = fixture_world();
    let created = replay(&fake, "13c0-admin-create-pod-gated");
    assert_eq!(created.status, 201, "{}", created.body);
    let recorded_uid = uid_of(&fixture_json("13c0-admin-create-pod-gated"));
    let ours = uid_of(&created.json());
    for dir in [
        // The kubelet's conditions, a readiness gate's missing.
        "13c1-pod-status-patch-smp-kubelet-conditions-gate-missing",
        // Another client adds the gate's condition: without $setElementOrder it goes first.
        "13c2-admin-pod-status-patch-smp-add-gate-condition",
        // The kubelet's next patch orders only its own conditions: the foreign one keeps its
        // place, and a one-element containerStatuses replaces the list.
        "13c3-pod-status-patch-smp-kubelet-order-keeps-foreign-condition-replaces-container-statuses",
        // A partial container status is stored with its required fields; a podIPs element
        // merged in front of podIP is dropped again by the v1 conversion.
        "13c4-pod-status-patch-smp-partial-container-status-and-pod-ip",
    ] {
        let r = replay_with(&fake, dir, &[(&recorded_uid, &ours)]);
        assert_eq!(r.status, 200, "{dir}: {}", r.body);
        assert_eq!(
            r.json()["status"],
            fixture_json(dir)["status"],
            "{dir}"
        );
    }
}

#[test]
fn a_node_creates_only_mirror_pods_owned_by_its_node_like_13d() {
    let fake = fixture_world();
    let node = replay(&fake, "04b-node-create-201");
    assert_eq!(node.status, 201, "{}", node.body);
    let ours = uid_of(&node.json());
    let recorded = uid_of(&fixture_json("04b-node-create-201"));
    // 13d was recorded against a later registration of vk-node, with another uid.
    let recorded_13d = fixture_json("13d2-node-create-mirror-pod-owned-by-node-201")["metadata"]
        ["ownerReferences"][0]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(recorded, recorded_13d);
    let subs = [(recorded_13d.as_str(), ours.as_str())];
    assert_fixture(
        &fake,
        "13d0-node-create-mirror-pod-without-owner-reference-403",
        &subs,
    );
    assert_fixture(
        &fake,
        "13d1-node-create-mirror-pod-owner-reference-wrong-uid-403",
        &subs,
    );
    let dir = "13d2-node-create-mirror-pod-owned-by-node-201";
    let r = replay_with(&fake, dir, &subs);
    assert_eq!(r.status, 201, "{}", r.body);
    let mut want = fixture_json(dir);
    want["metadata"]["ownerReferences"][0]["uid"] = json!(ours);
    assert_eq!(
        normalize(r.json()),
        normalize(want),
        "no service account, no token volume"
    );
}

#[test]
fn configmaps_and_secrets_need_a_pod_on_the_node() {
    let fake = fixture_world();
    assert_fixture(&fake, "07a-pod-get-missing-404", &[]);
    for dir in [
        "07b-configmap-get-referenced-200",
        "07c-secret-get-referenced-via-env-200",
        "07d-configmap-get-kube-root-ca-200",
        "07k-pod-get-200",
    ] {
        assert_eq!(replay(&fake, dir).status, 200, "{dir}");
    }
    let root = replay(&fake, "07d-configmap-get-kube-root-ca-200").json();
    assert_eq!(root["data"]["ca.crt"], fake.ca_pem());
    for dir in [
        "07e-configmap-get-unreferenced-403",
        "07f-secret-get-unreferenced-403",
        "07g-configmap-get-nonexistent-403-not-404",
        "07i-secret-list-all-403",
    ] {
        assert_fixture(&fake, dir, &[]);
    }
    let list = replay(&fake, "07h-secret-list-single-by-fieldselector-200").json();
    assert_eq!(list["kind"], "SecretList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["data"],
        fixture_json("07h-secret-list-single-by-fieldselector-200")["items"][0]["data"]
    );
    let s = raw_get(
        &fake,
        Who::Node,
        &fixture_request("07j-secret-watch-single-by-fieldselector").path,
    );
    assert_eq!(s.chunks.len(), 1);
    let e = event(&s.chunks[0].1);
    assert_eq!(
        (e["type"].as_str(), e["object"]["kind"].as_str()),
        (Some("ADDED"), Some("Secret"))
    );
    // A pod that starts using a secret makes it readable; envFrom and projected count too.
    fake.put_secret("fixtures", "late", &[("k", "v")]);
    assert_eq!(
        get(&fake, Who::Node, "/api/v1/namespaces/fixtures/secrets/late").status,
        403
    );
    fake.create_pod(json!({"metadata": {"name": "p3", "namespace": "fixtures"}, "spec": {"nodeName": "vk-node",
        "containers": [{"name": "c", "image": "busybox", "envFrom": [{"secretRef": {"name": "late"}}]}]}}));
    assert_eq!(
        get(&fake, Who::Node, "/api/v1/namespaces/fixtures/secrets/late").status,
        200
    );
}

#[test]
fn events_are_write_only_core_v1_for_the_node() {
    let fake = fixture_world();
    let r = replay(&fake, "08a-event-core-v1-create-201");
    assert_eq!(r.status, 201);
    assert_eq!(
        normalize(r.json()),
        normalize(fixture_json("08a-event-core-v1-create-201"))
    );
    let r = replay(&fake, "08b-event-core-v1-patch-count-200");
    assert_eq!(r.status, 200);
    assert_eq!(
        normalize(r.json()),
        normalize(fixture_json("08b-event-core-v1-patch-count-200"))
    );
    for dir in [
        "08d-event-core-v1-get-403",
        "08e-event-core-v1-list-403",
        "08f-event-core-v1-delete-403",
        "08g-event-events-k8s-io-v1-create-403",
        "08h-event-core-v1-create-bad-involvedobject-namespace-422",
    ] {
        assert_fixture(&fake, dir, &[]);
    }
    assert_eq!(
        replay(&fake, "08i-admin-event-events-k8s-io-v1-create-201").status,
        201
    );
}

fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT-shaped: {token}");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts[1])
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn token_requests_are_bound_to_pods_on_the_node() {
    let fake = fixture_world();
    let uid = uid_of(&fake.get_pod("fixtures", "p1").unwrap());
    let subs = [("4efec839-56e9-47bb-866d-48bc6e748cd4", uid.as_str())];
    let r = replay_with(&fake, "09a-tokenrequest-bound-pod-3607", &subs);
    assert_eq!(r.status, 201, "{}", r.body);
    let tr = r.json();
    let claims = jwt_claims(tr["status"]["token"].as_str().unwrap());
    let want = &fixture_json("09a-tokenrequest-bound-pod-3607");
    assert_eq!(
        tr["spec"],
        want["spec"]
            .to_string()
            .replace("4efec839-56e9-47bb-866d-48bc6e748cd4", &uid)
            .parse::<Value>()
            .unwrap()
    );
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["exp"].as_i64().unwrap() - iat, 31_536_000);
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], json!(uid));
    assert_eq!(claims["sub"], "system:serviceaccount:fixtures:default");
    let exp = tr["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse::<k8s_openapi::jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert!((exp - iat - 3607).abs() <= 2);
    let short = jwt_claims(
        replay_with(&fake, "09d-tokenrequest-bound-pod-600s", &subs).json()["status"]["token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        short["exp"].as_i64().unwrap() - short["iat"].as_i64().unwrap(),
        600
    );
    let vault = jwt_claims(
        replay_with(&fake, "09e-tokenrequest-custom-audience-3607", &subs).json()["status"]
            ["token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        vault["exp"].as_i64().unwrap() - vault["iat"].as_i64().unwrap(),
        3607
    );
    assert_eq!(vault["aud"], json!(["vault"]));
    assert_fixture(&fake, "09b-tokenrequest-unbound-403", &[]);
    assert_fixture(&fake, "09c-tokenrequest-bound-pod-wrong-uid-403", &[]);
    assert_fixture(&fake, "09f-tokenrequest-expiration-too-short-422", &subs);
}

#[test]
fn pod_delete_preconditions_follow_10() {
    let fake = fixture_world();
    let pdel = fake.get_pod("fixtures", "p-del").unwrap();
    let uid = uid_of(&pdel);
    let rv = rv_of(&pdel).to_string();
    assert_fixture(
        &fake,
        "10a-pod-delete-wrong-uid-precondition-409",
        &[("cf0e9e0e-e384-436c-a663-200ba781d74c", &uid)],
    );
    assert_fixture(
        &fake,
        "10b-pod-delete-stale-rv-precondition-409",
        &[("(2687)", &format!("({rv})"))],
    );
    let r = replay_with(
        &fake,
        "10c-pod-delete-right-uid-200",
        &[("cf0e9e0e-e384-436c-a663-200ba781d74c", &uid)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["metadata"]["deletionGracePeriodSeconds"], 0);
    assert!(fake.get_pod("fixtures", "p-del").is_none());
    assert_fixture(&fake, "10d-pod-delete-again-404", &[]);
}

#[test]
fn admin_helpers_and_wait_for() {
    let fake = FakeApiServer::start();
    let cm = fake.put_configmap("ns1", "cm", &[("k", "v1")]);
    let cm2 = fake.put_configmap("ns1", "cm", &[("k", "v2")]);
    assert!(rv_of(&cm2) > rv_of(&cm));
    assert_eq!(
        fake.get(Res::ConfigMaps, "ns1", "cm").unwrap()["data"]["k"],
        "v2"
    );
    let s = fake.put_secret("ns1", "s", &[("password", "hunter2")]);
    assert_eq!(s["data"]["password"], "aHVudGVyMg==");
    let pod = fake.create_pod(json!({"metadata": {"name": "p", "namespace": "ns1"}, "spec": {"nodeName": "vk-node", "containers": [{"name": "c", "image": "i"}]}}));
    assert_eq!(pod["status"]["phase"], "Pending");
    let deleting = fake.delete_pod("ns1", "p", Some(10)).unwrap();
    assert_eq!(deleting["metadata"]["deletionGracePeriodSeconds"], 10);
    assert!(fake.get_pod("ns1", "p").is_some(), "graceful: still there");
    // Unbound pods are deleted at once.
    fake.create_pod(json!({"metadata": {"name": "unbound", "namespace": "ns1"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}));
    fake.delete_pod("ns1", "unbound", None).unwrap();
    assert!(fake.get_pod("ns1", "unbound").is_none());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            fake.delete_pod("ns1", "p", Some(0));
        });
        assert!(fake.wait_for(Duration::from_secs(5), |v| v
            .get(Res::Pods, "ns1", "p")
            .is_none()));
    });
    assert!(!fake.wait_for(Duration::from_millis(50), |v| v
        .list(Res::Pods, Some("ns1"))
        .len()
        == 7));
    assert!(!fake.delete_node("nope"));
}

#[test]
fn fault_injection_and_request_log() {
    let fake = fixture_world();
    fake.clear_requests();
    fake.fail_next(2);
    assert_eq!(get(&fake, Who::Node, "/version").status, 500);
    let r = get(&fake, Who::Node, "/version");
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (500, json!("InternalError"))
    );
    assert_eq!(get(&fake, Who::Node, "/version").status, 200);
    fake.fail_path_prefix("/apis/coordination.k8s.io", 503);
    assert_eq!(
        get(
            &fake,
            Who::Node,
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk-node"
        )
        .status,
        503
    );
    assert_eq!(
        get(&fake, Who::Node, "/api/v1/namespaces/fixtures/pods/p1").status,
        200
    );
    fake.clear_faults();
    fake.set_delay(Duration::from_millis(200));
    let start = Instant::now();
    get(&fake, Who::Node, "/version");
    assert!(start.elapsed() >= Duration::from_millis(200));
    fake.clear_faults();

    let log = fake.requests();
    assert_eq!(log.len(), 6);
    assert!(
        log.iter()
            .all(|r| r.user == "system:node:vk-node"
                && r.groups.contains(&"system:nodes".to_string()))
    );
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200, 503, 200, 200]
    );
    assert_eq!(log[4].path, "/api/v1/namespaces/fixtures/pods/p1");

    // Dropping watches closes them abruptly (no terminating chunk).
    std::thread::scope(|scope| {
        let h = scope.spawn(|| {
            raw_get(
                &fake,
                Who::Node,
                "/api/v1/pods?watch=true&timeoutSeconds=30",
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let start = Instant::now();
        fake.drop_watches();
        let s = h.join().unwrap();
        assert!(!s.clean_end);
        assert_eq!(s.chunks.len(), 4, "initial ADDEDs only");
        assert!(start.elapsed() < Duration::from_secs(5));
    });
    let watch = fake
        .requests()
        .into_iter()
        .find(|r| r.query.contains("watch=true"))
        .unwrap();
    assert_eq!((watch.method.as_str(), watch.status), ("GET", 200));
}

#[test]
fn token_and_access_reviews_are_configurable() {
    let fake = FakeApiServer::start();
    fake.allow_token_review("good-token", "alice", &["devs"]);
    let body = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"good-token"}}"#;
    let r = send(
        &fake,
        Who::Node,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        None,
        Some(body),
    );
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["status"]["user"],
        json!({"username": "alice", "groups": ["devs"]})
    );
    assert_eq!(r.json()["status"]["authenticated"], true);
    let bad = body.replace("good-token", "bad");
    let r = send(
        &fake,
        Who::Node,
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        None,
        Some(&bad),
    );
    assert!(r.json()["status"].get("authenticated").is_none());
    let sar = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"alice","resourceAttributes":{"verb":"get","resource":"nodes","subresource":"proxy","name":"vk-node"}}}"#;
    let r = send(
        &fake,
        Who::Node,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        None,
        Some(sar),
    );
    assert_eq!(r.json()["status"], json!({"allowed": false}));
    fake.set_sar_policy(|spec| (spec["user"] == "alice", "alice may".to_string()));
    let r = send(
        &fake,
        Who::Node,
        "POST",
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        None,
        Some(sar),
    );
    assert_eq!(
        r.json()["status"],
        json!({"allowed": true, "reason": "alice may"})
    );
    assert_eq!(
        send(
            &fake,
            Who::Anonymous,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            None,
            Some(sar)
        )
        .status,
        403
    );
    // Bearer tokens as credentials.
    fake.add_bearer_token("admin-token", "root", &["system:masters"]);
    let a = agent(&fake, Who::Anonymous);
    let r = a
        .get(format!("{}/api/v1/nodes", fake.url()))
        .header("Authorization", "Bearer admin-token")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[test]
fn services_are_listed_and_watched_cluster_wide_by_the_node_with_the_kubernetes_service_seeded() {
    let fake = FakeApiServer::start();
    // The apiserver's own service exists from the start, at 10.96.0.1:443 (port `https`).
    let list = get(&fake, Who::Node, "/api/v1/services?resourceVersion=0");
    assert_eq!(list.status, 200, "{}", list.body);
    let l = list.json();
    assert_eq!(l["kind"], "ServiceList");
    assert_eq!(l["items"][0]["metadata"]["name"], "kubernetes");
    assert_eq!(l["items"][0]["metadata"]["namespace"], "default");
    assert_eq!(l["items"][0]["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(l["items"][0]["spec"]["ports"][0]["name"], "https");
    assert_eq!(l["items"][0]["spec"]["ports"][0]["port"], 443);
    let from = rv_of(&l);
    // Created services are defaulted: type ClusterIP, the next free cluster IP, TCP, targetPort.
    let svc = fake.create_service("app", "db", json!({"ports": [{"port": 5432}]}));
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.2");
    assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 5432);
    let headless = fake.create_service("app", "hl", json!({"clusterIP": "None"}));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    let bad = send(
        &fake,
        Who::Admin,
        "POST",
        "/api/v1/namespaces/app/services",
        None,
        Some(r#"{"metadata":{"name":"noports"},"spec":{}}"#),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    // The node may read services of any namespace; it may not write them.
    assert_eq!(
        get(&fake, Who::Node, "/api/v1/namespaces/app/services/db").status,
        200
    );
    let denied = send(
        &fake,
        Who::Node,
        "DELETE",
        "/api/v1/namespaces/app/services/db",
        None,
        None,
    );
    assert_eq!(denied.status, 403);
    // A watch from the list's resourceVersion sees the creates, then Service-shaped bookmarks.
    let s = raw_get(
        &fake,
        Who::Node,
        &format!(
            "/api/v1/services?watch=true&resourceVersion={from}&allowWatchBookmarks=true&timeoutSeconds=3"
        ),
    );
    assert!(s.clean_end);
    let events: Vec<Value> = s.chunks.iter().map(|(_, c)| event(c)).collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "db");
    assert_eq!(events[1]["object"]["metadata"]["name"], "hl");
    let bookmark = events.iter().find(|e| e["type"] == "BOOKMARK").unwrap();
    assert_eq!(bookmark["object"]["kind"], "Service");
    assert_eq!(
        bookmark["object"]["status"],
        json!({"loadBalancer": {}}),
        "the zero Service, as the watch cache sends it"
    );
}

#[test]
fn certificate_signing_requests_follow_14() {
    let fake = FakeApiServer::start();
    fake.add_bootstrap_token(BOOTSTRAP_TOKEN);
    let created = replay(&fake, "14a-bootstrap-create-csr-201");
    assert_eq!(created.status, 201, "{}", created.body);
    let recorded = fixture_json("14a-bootstrap-create-csr-201");
    assert_eq!(
        normalize(created.json()),
        normalize(recorded.clone()),
        "username, groups, status {{}}"
    );
    assert_fixture(&fake, "14b-bootstrap-create-csr-again-409", &[]);
    let listed = replay(&fake, "14c-bootstrap-list-csr-by-name-200");
    assert_eq!(listed.status, 200, "{}", listed.body);
    let items = listed.json()["items"].as_array().unwrap().clone();
    let want = fixture_json("14c-bootstrap-list-csr-by-name-200")["items"].clone();
    assert_eq!(items.len(), 1);
    assert_eq!(normalize(items[0].clone()), normalize(want[0].clone()));
    assert_fixture(&fake, "14f-bootstrap-list-pods-403", &[]);
    assert_fixture(&fake, "14g-bootstrap-create-csr-not-a-request-422", &[]);

    // Approval through the subresource: the recorded PUT, with our uid and resourceVersion.
    let ours = created.json();
    let (uid, rv) = (uid_of(&ours), rv_of(&ours).to_string());
    let subs = [
        (uid_of(&recorded), uid.clone()),
        (format!("\"{}\"", rv_of(&recorded)), format!("\"{rv}\"")),
    ];
    let subs: Vec<(&str, &str)> = subs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let approved = replay_with(&fake, "14e-admin-approve-csr-200", &subs);
    assert_eq!(approved.status, 200, "{}", approved.body);
    let strip_times = |mut v: Value| {
        for c in v["status"]["conditions"].as_array_mut().unwrap() {
            for f in ["lastUpdateTime", "lastTransitionTime"] {
                assert!(c[f].is_string(), "{f} stamped: {c}");
                c[f] = json!("T");
            }
        }
        normalize(v)
    };
    assert_eq!(
        strip_times(approved.json()),
        strip_times(fixture_json("14e-admin-approve-csr-200"))
    );
    // The watch by name sees the approval and the issue (14d): two MODIFIED events.
    let rv_now = rv_of(&approved.json());
    let name = "node-csr-recorded";
    let issued = fake.approve_and_issue_csr(name, Duration::from_secs(3600));
    let cert = base64::engine::general_purpose::STANDARD
        .decode(issued["status"]["certificate"].as_str().unwrap())
        .unwrap();
    assert!(cert.starts_with(b"-----BEGIN CERTIFICATE-----"));
    let path = format!(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=metadata.name%3D{name}&watch=true&resourceVersion={}&timeoutSeconds=1",
        rv_now - 1
    );
    let r = send(&fake, Who::Bootstrap, "GET", &path, None, None);
    let events: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["MODIFIED", "MODIFIED", "MODIFIED"], "{}", r.body);
    let recorded_watch: Vec<Value> = fixture_file(
        "14d-bootstrap-watch-csr-by-name-approved-issued",
        "response-body.json",
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert!(recorded_watch[1]["object"]["status"]["certificate"].is_string());
    assert!(events[2]["object"]["status"]["certificate"].is_string());
    // A bootstrapper may not approve.
    let denied = send(
        &fake,
        Who::Bootstrap,
        "PUT",
        &format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}/approval"),
        None,
        Some("{}"),
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body.contains("system:bootstrap:abcdef"),
        "{}",
        denied.body
    );
}

#[test]
fn serving_certificate_requests_follow_14h_to_14l() {
    let fake = FakeApiServer::start();
    // The node's own serving request (14h's object, created as the node).
    let recorded = fixture_json("14h-node-list-serving-csr-by-name-200")["items"][0].clone();
    let mut object = json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "csr-"},
        "spec": {
            "request": recorded["spec"]["request"],
            "signerName": recorded["spec"]["signerName"],
            "usages": recorded["spec"]["usages"],
        },
    });
    let create_as_node = |object: &Value| {
        send(
            &fake,
            Who::Node,
            "POST",
            "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            Some("application/json"),
            Some(&object.to_string()),
        )
    };
    let created = create_as_node(&object);
    assert_eq!(created.status, 201, "{}", created.body);
    let name = created.json()["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(name.starts_with("csr-"), "{name}");
    // Named as the recording was, the list by name answers what the real one did.
    object["metadata"] = json!({"name": "csr-hgck9", "generateName": "csr-"});
    let again = create_as_node(&object);
    assert_eq!(again.status, 201, "{}", again.body);
    let listed = replay(&fake, "14h-node-list-serving-csr-by-name-200");
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(
        normalize(listed.json()["items"][0].clone()),
        normalize(recorded.clone()),
        "username system:node:vk-node, groups, status {{}}"
    );
    // kubectl certificate approve (14j), then the signer issues a serving certificate.
    let ours = again.json();
    let subs = [
        (uid_of(&recorded), uid_of(&ours)),
        (format!("\"{}\"", "237"), format!("\"{}\"", rv_of(&ours))),
    ];
    let subs: Vec<(&str, &str)> = subs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let approved = replay_with(&fake, "14j-admin-approve-serving-csr-200", &subs);
    assert_eq!(approved.status, 200, "{}", approved.body);
    let issued = fake.approve_and_issue_csr("csr-hgck9", Duration::from_secs(3600));
    let watched: Vec<Value> = fixture_file(
        "14i-node-watch-serving-csr-approved-issued",
        "response-body.json",
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    let want = &watched[1]["object"]["status"];
    assert_eq!(
        issued["status"]["conditions"][0]["reason"],
        want["conditions"][0]["reason"]
    );
    assert_eq!(
        issued["status"]["conditions"][0]["message"],
        want["conditions"][0]["message"]
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(issued["status"]["certificate"].as_str().unwrap())
        .unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&block.contents).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    let sans: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|g| g.to_string())
        .collect();
    assert_eq!(sans, ["DNSName(vk-node)", "IPAddress(7f:00:00:01)"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);

    // A request the signer will not issue is created (14k) and, once approved, Failed (14l).
    let bad = replay(&fake, "14k-node-create-serving-csr-no-sans-201");
    assert_eq!(bad.status, 201, "{}", bad.body);
    assert_eq!(
        normalize(bad.json()),
        normalize(fixture_json("14k-node-create-serving-csr-no-sans-201"))
    );
    let failed = fake.approve_and_issue_csr("serving-client-usage", Duration::from_secs(60));
    let want = fixture_json("14l-admin-get-serving-csr-signer-failed-200");
    let conditions = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["type"].clone(), c["reason"].clone(), c["message"].clone()))
            .collect()
    };
    assert_eq!(conditions(&failed), conditions(&want));
    assert!(failed["status"].get("certificate").is_none());
}

#[test]
fn claims_and_their_volumes_need_a_pod_on_the_node() {
    let fake = fixture_world();
    let claim = fixture_json("15b-node-get-pvc-bound-200");
    let volume = fixture_json("15c-node-get-pv-bound-200");
    let strip = |mut v: Value| {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
        ] {
            v["metadata"].as_object_mut().unwrap().remove(k);
        }
        v
    };
    let stored_claim = fake.create(Res::PersistentVolumeClaims, "default", strip(claim));
    let mut volume = strip(volume);
    volume["spec"]["claimRef"]["uid"] = stored_claim["metadata"]["uid"].clone();
    fake.create(Res::PersistentVolumes, "", volume);
    fake.create(
        Res::PersistentVolumeClaims,
        "default",
        json!({"metadata": {"name": "unused", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "nothing",
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    // Nothing on the node uses them yet.
    assert_eq!(replay(&fake, "15b-node-get-pvc-bound-200").status, 403);
    assert_eq!(replay(&fake, "15c-node-get-pv-bound-200").status, 403);
    for (name, claim) in [("web-0", "data-web-0"), ("ghost-user", "ghost")] {
        fake.create_pod(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": "vk-node", "containers": [{"name": "c", "image": "busybox"}],
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}
        }));
    }
    let got = replay(&fake, "15b-node-get-pvc-bound-200");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["spec"]["volumeName"], "pv-disk-0");
    let got = replay(&fake, "15c-node-get-pv-bound-200");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["spec"]["local"]["path"], "/tmp/rcp/disk-0");
    assert_fixture(&fake, "15d-node-get-pvc-unused-403", &[]);
    assert_fixture(&fake, "15e-node-get-pvc-referenced-missing-404", &[]);
}

#[test]
fn runtime_classes_are_read_by_nodes_and_required_by_admission() {
    let fake = fixture_world();
    let class = fixture_json("15f-node-get-runtimeclass-200");
    let mut stored = class.clone();
    for k in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        stored["metadata"].as_object_mut().unwrap().remove(k);
    }
    fake.create(Res::RuntimeClasses, "", stored);
    let got = replay(&fake, "15f-node-get-runtimeclass-200");
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["handler"], class["handler"]);
    assert_eq!(got.json()["overhead"], class["overhead"]);
    assert_fixture(&fake, "15g-node-get-runtimeclass-missing-404", &[]);
    assert_fixture(&fake, "15h-admin-create-pod-unknown-runtimeclass-403", &[]);
}
