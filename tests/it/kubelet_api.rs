//! The kubelet API of the real binary against the real containerd: authentication and
//! authorization (against the fake API server), container logs with every parameter and with
//! follow, exec/attach through SPDY/3.1 and WebSocket, and port-forward to a hostNetwork pod
//! listening on 127.0.0.1. Every connection goes to 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use vk_cri::certs::{Ca, CertKeyPem};
use vk_cri::cri::api::ContainerState;
use vk_cri::cri::Runtime;

use crate::daemon::{free_port, runtime, wait_for, Daemon};
use crate::env;
use crate::kubelet_client::{self as kc, Follow};
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig};

const V4: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// A daemon serving the kubelet API with a certificate from `ca`, and the client certificate
/// kube-apiserver would present.
struct Kubelet {
    d: Daemon,
    ca: String,
    apiserver: CertKeyPem,
}

impl Kubelet {
    /// Writes the serving pair and passes it (and `client_ca`) to the daemon.
    fn new(mut d: Daemon, client_ca: &str, apiserver: CertKeyPem) -> Kubelet {
        let ca = Ca::generate("kubelet-serving-ca").unwrap();
        let serving = ca.issue_server("kubelet", &["127.0.0.1"]).unwrap();
        let dir = d.dir.0.clone();
        std::fs::write(dir.join("kubelet.crt"), &serving.cert_pem).unwrap();
        std::fs::write(dir.join("kubelet.key"), &serving.key_pem).unwrap();
        std::fs::write(dir.join("client-ca.crt"), client_ca).unwrap();
        for (flag, file) in [
            ("--tls-cert-file", "kubelet.crt"),
            ("--tls-private-key-file", "kubelet.key"),
            ("--client-ca-file", "client-ca.crt"),
        ] {
            d = d.arg(flag).arg(dir.join(file).to_str().unwrap());
        }
        Kubelet {
            d,
            ca: ca.cert_pem(),
            apiserver,
        }
    }

    /// Standalone: a test CA for clients, AlwaysAllow (the default without an API server).
    fn standalone(tag: &str) -> Kubelet {
        let client_ca = Ca::generate("client-ca").unwrap();
        let apiserver = client_ca
            .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
            .unwrap();
        let mut k = Kubelet::new(Daemon::new(tag), &client_ca.cert_pem(), apiserver);
        k.d.start();
        k.d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(30));
        k
    }

    /// Standalone with extra flags.
    fn standalone_with(tag: &str, args: &[&str]) -> Kubelet {
        let client_ca = Ca::generate("client-ca").unwrap();
        let apiserver = client_ca
            .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
            .unwrap();
        let mut d = Daemon::new(tag);
        for a in args {
            d = d.arg(a);
        }
        let mut k = Kubelet::new(d, &client_ca.cert_pem(), apiserver);
        k.d.start();
        k.d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(30));
        k
    }

    fn get(&self, target: &str) -> kc::Resp {
        kc::get(self.d.port, &self.ca, Some(&self.apiserver), target)
    }

    fn pod(&self, name: &str) -> String {
        format!("default/{name}-{}", self.d.node)
    }
}

/// A fake API server whose SubjectAccessReviews allow only kube-apiserver's client user, and
/// every review it was asked.
fn reviews_allowing_the_apiserver() -> (FakeApiServer, Arc<Mutex<Vec<Value>>>) {
    let fake = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("kapi-node"),
        ..FakeConfig::default()
    });
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let seen2 = seen.clone();
    fake.set_sar_policy(move |spec: &Value| {
        seen2.lock().unwrap().push(spec.clone());
        let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
        (user == "kube-apiserver-kubelet-client", String::new())
    });
    (fake, seen)
}

fn busybox_pod(name: &str, containers: &[(&str, &str)]) -> String {
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let mut m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n"
    );
    for (n, script) in containers {
        m.push_str(&format!(
            "  - name: {n}\n    image: {image}\n    command: [sh, -c, {}]\n",
            serde_json::to_string(script).unwrap()
        ));
    }
    m
}

#[test]
fn kubelet_api_401_for_anonymous_403_when_the_subject_access_review_denies_400_for_dot_dot() {
    let (fake, seen) = reviews_allowing_the_apiserver();
    fake.allow_token_review(
        "good-token",
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    );
    let apiserver = fake.client_cert("kube-apiserver-kubelet-client", Some("system:masters"));
    let mut k = Kubelet::new(
        Daemon::with_api(&fake, "kapi-auth"),
        &fake.ca_pem(),
        apiserver,
    );
    k.d.start();
    k.d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(30));
    let port = k.d.port;

    // /healthz is open; everything else needs credentials.
    let r = kc::get(port, &k.ca, None, "/healthz");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    // The kubelet's three checks; the sync loop (the relist) has gone round.
    let r = kc::get(port, &k.ca, None, "/healthz?verbose");
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            200,
            "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n"
        )
    );
    let r = kc::get(port, &k.ca, None, "/pods");
    assert_eq!((r.status, r.text().as_str()), (401, "Unauthorized"));
    let r = kc::get(port, &k.ca, None, "/exec/default/p/c?command=id&output=1");
    assert_eq!(r.status, 401);

    // A verified certificate whose user the SubjectAccessReview denies.
    let mallory = fake.client_cert("mallory", Some("devs"));
    let r = kc::get(port, &k.ca, Some(&mallory), "/pods");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.text(),
        "Forbidden (user=mallory, verb=get, resource=nodes, subresource=proxy)"
    );
    let r = kc::get(port, &k.ca, Some(&mallory), "/stats/summary");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("subresource=stats"), "{}", r.text());
    for path in ["/metrics", "/metrics/resource"] {
        let r = kc::get(port, &k.ca, Some(&mallory), path);
        assert_eq!(r.status, 403);
        assert!(r.text().contains("subresource=metrics"), "{}", r.text());
    }

    // kube-apiserver's client certificate is allowed.
    let r = k.get("/pods");
    assert_eq!(r.status, 200, "{}", r.text());
    let list: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(list["kind"], "PodList");

    // The SubjectAccessReview asked what the kubelet asks.
    let spec = seen
        .lock()
        .unwrap()
        .iter()
        .find(|s| s["user"] == "kube-apiserver-kubelet-client")
        .cloned()
        .expect("a review for the apiserver's user");
    assert_eq!(
        spec["resourceAttributes"],
        serde_json::json!({"verb": "get", "group": "", "version": "v1", "resource": "nodes", "subresource": "proxy", "name": k.d.node})
    );
    let groups = spec["groups"].as_array().unwrap();
    assert!(groups.contains(&Value::from("system:masters")));
    assert!(groups.contains(&Value::from("system:authenticated")));

    // Bearer tokens go through TokenReview.
    let mut s = kc::connect(port, &k.ca, None);
    let r = kc::request(
        &mut s,
        "GET",
        "/pods",
        &[("Authorization", "Bearer good-token")],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut s = kc::connect(port, &k.ca, None);
    let r = kc::request(&mut s, "GET", "/pods", &[("Authorization", "Bearer wrong")]);
    assert_eq!(r.status, 401);

    // Bad paths are refused before anything runs.
    let r = k.get("/containerLogs/default/../c");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("\"..\" segments are not allowed"),
        "{}",
        r.text()
    );
    let r = k.get("/containerLogs/default/%2e%2e/c");
    assert_eq!(r.status, 400);
    let r = k.get("/containerLogs/default/p/c?tailLines=many");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        "invalid query parameter tailLines=\"many\": not an integer"
    );
    let r = k.get("/nothing-here");
    assert_eq!(r.status, 404);
}

#[test]
fn kubelet_api_generates_and_logs_a_self_signed_certificate_without_one() {
    let mut d = Daemon::new("kapi-selfsigned");
    d.start();
    d.wait_log(
        "serving a generated self-signed certificate for",
        Duration::from_secs(30),
    );
    d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(10));
}

#[test]
fn container_logs_with_each_parameter_partial_lines_and_follow_until_the_container_exits() {
    let k = Kubelet::standalone("kapi-logs");
    let script = "echo one; echo two >&2; sleep 0.2; echo three; head -c 40000 /dev/zero | tr '\\0' x; echo; \
                  while [ ! -f /tmp/go ]; do sleep 0.1; done; echo late; sleep 1; exit 0";
    k.d.put_manifest("logs.yaml", &busybox_pod("logs", &[("c", script)]));
    let c = k.d.wait_running("c", Duration::from_secs(60));
    let long = "x".repeat(40_000);
    let pod = k.pod("logs");
    let base = format!("/containerLogs/{pod}/c");

    let all = wait_for("the long line in the logs", Duration::from_secs(20), || {
        let r = k.get(&base);
        (r.status == 200 && r.text().ends_with(&format!("{long}\n"))).then(|| r.text())
    });
    assert_eq!(
        k.get(&base).header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4, "{:?}", &all[..60.min(all.len())]);
    assert!(
        lines[..2].contains(&"one") && lines[..2].contains(&"two"),
        "{lines:?}"
    );
    assert_eq!(lines[2], "three");
    assert_eq!(lines[3], long);
    // containerd split the long line into partial (P) entries; we joined them back.
    let file = std::fs::read_to_string(&c.log_path).unwrap();
    assert!(
        file.lines().filter(|l| l.contains(" stdout P ")).count() >= 2,
        "no partial entries in {}",
        c.log_path
    );

    assert_eq!(
        k.get(&format!("{base}?tailLines=1")).text(),
        format!("{long}\n")
    );
    assert_eq!(
        k.get(&format!("{base}?tailLines=2")).text(),
        format!("three\n{long}\n")
    );
    assert_eq!(k.get(&format!("{base}?tailLines=0")).text(), "");
    let ts = k.get(&format!("{base}?tailLines=1&timestamps=true")).text();
    let (stamp, rest) = ts.split_once(' ').unwrap();
    assert!(
        stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok(),
        "{stamp}"
    );
    assert_eq!(rest, format!("{long}\n"));
    let limited = k.get(&format!("{base}?limitBytes=6")).text();
    assert_eq!(limited.len(), 6, "{limited:?}");
    assert_eq!(k.get(&format!("{base}?sinceSeconds=3600")).text(), all);
    assert_eq!(
        k.get(&format!("{base}?sinceTime=2100-01-01T00%3A00%3A00Z"))
            .text(),
        ""
    );
    let r = k.get(&format!("{base}?previous=true"));
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("previous terminated container \"c\""),
        "{}",
        r.text()
    );
    let r = k.get(&format!(
        "{base}?sinceSeconds=1&sinceTime=2100-01-01T00%3A00%3A00Z"
    ));
    assert_eq!(r.status, 422);
    let r = k.get(&format!("/containerLogs/{pod}/nope"));
    assert_eq!(r.status, 404);
    assert!(
        r.text().contains("container \"nope\" not found"),
        "{}",
        r.text()
    );
    let r = k.get("/containerLogs/default/no-such-pod/c");
    assert_eq!(
        (r.status, r.text().as_str()),
        (404, "pod \"no-such-pod\" does not exist")
    );

    // Follow: sees a line written after the request, ends when the container exits.
    let mut f = Follow::start(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("{base}?follow=true&tailLines=1"),
    );
    assert_eq!(f.status, 200);
    f.wait_for(&long, Duration::from_secs(10));
    runtime()
        .exec_sync(
            &c.id,
            &["touch".into(), "/tmp/go".into()],
            Duration::from_secs(10),
        )
        .unwrap();
    f.wait_for("late\n", Duration::from_secs(10));
    let body = f.finish();
    assert_eq!(body, format!("{long}\nlate\n"));
    let exited = runtime().container_status(&c.id).unwrap();
    assert_eq!(
        exited.state.enum_value_or_default(),
        ContainerState::CONTAINER_EXITED
    );
}

fn spdy_exec(k: &Kubelet, query: &str, streams: &[&str], stdin: Option<&[u8]>) -> kc::Spdy {
    let pod = k.pod("sh");
    let (up, session) = kc::spdy_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/exec/{pod}/c?{query}"),
        &V4,
    );
    assert_eq!(up.status, 101, "{}", String::from_utf8_lossy(&up.body));
    assert!(up
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("x-stream-protocol-version")
            && v == "v4.channel.k8s.io"));
    let mut s = session.unwrap();
    for (i, t) in streams.iter().enumerate() {
        s.open(2 * i as u32 + 1, &[("streamtype", t)]);
    }
    if let Some(data) = stdin {
        let id = 2 * streams.iter().position(|t| *t == "stdin").unwrap() as u32 + 1;
        s.send(id, data, false);
        s.send(id, b"", true);
    }
    s.run_until(Duration::from_secs(30), |s| s.closed);
    s
}

#[test]
fn exec_attach_and_port_forward_through_spdy_and_websocket() {
    let k = Kubelet::standalone("kapi-exec");
    let port = free_port();
    let shell = format!(
        "mkdir -p /w && echo hello-pf > /w/index.html && httpd -p 127.0.0.1:{port} -h /w; \
         trap 'exit 0' TERM; while true; do sleep 0.2; done"
    );
    k.d.put_manifest(
        "sh.yaml",
        &busybox_pod(
            "sh",
            &[
                ("c", &shell),
                (
                    "talker",
                    "trap 'exit 0' TERM; while true; do echo tick; sleep 0.3; done",
                ),
            ],
        ),
    );
    k.d.wait_running("c", Duration::from_secs(60));
    k.d.wait_running("talker", Duration::from_secs(30));
    let pod = k.pod("sh");

    // exec echo hi (fixture 12g): stdout and a Success status on the error stream.
    let s = spdy_exec(
        &k,
        "command=echo&command=hi&error=1&output=1",
        &["error", "stdout", "stderr"],
        None,
    );
    assert_eq!(s.text(3), "hi\n", "streams: {:?}", s.data);
    assert!(
        s.text(1).contains("\"status\":\"Success\""),
        "{}",
        s.text(1)
    );

    // A non-zero exit code (fixture 12i) reaches the client intact.
    let s = spdy_exec(
        &k,
        "command=sh&command=-c&command=echo+oops+%3E%262%3B+exit+3&error=1&output=1",
        &["error", "stdout", "stderr"],
        None,
    );
    assert_eq!(s.text(5), "oops\n");
    let status: Value = serde_json::from_str(&s.text(1)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(
        status["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "3"})
    );

    // stdin (fixture 12h): the data and its FIN reach cat.
    let s = spdy_exec(
        &k,
        "command=cat&error=1&input=1&output=1",
        &["error", "stdin", "stdout", "stderr"],
        Some(b"hello stdin\n"),
    );
    assert_eq!(s.text(5), "hello stdin\n");

    // WebSocket, v4.channel.k8s.io, with stdin.
    let (status, ws) = kc::ws_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/exec/{pod}/c?command=sh&command=-c&command=read+x%3B+echo+got+%24x%3B+exit+4&input=1&output=1&error=1"),
    );
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.send(0, b"ws-in\n");
    ws.run_to_close(Duration::from_secs(30));
    assert_eq!(ws.text(1), "got ws-in\n");
    assert!(ws.text(3).contains("NonZeroExitCode"), "{}", ws.text(3));

    // attach (fixture 12j) to the main process of the talker.
    let (up, session) = kc::spdy_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/attach/{pod}/talker?error=1&output=1"),
        &V4,
    );
    assert_eq!(up.status, 101);
    let mut s = session.unwrap();
    s.open(1, &[("streamtype", "error")]);
    s.open(3, &[("streamtype", "stdout")]);
    s.open(5, &[("streamtype", "stderr")]);
    s.run_until(Duration::from_secs(30), |s| s.text(3).contains("tick\n"));
    drop(s);

    // port-forward (fixture 12k) to the pod's httpd on 127.0.0.1.
    let (up, session) = kc::spdy_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/portForward/{pod}"),
        &["portforward.k8s.io"],
    );
    assert_eq!(up.status, 101);
    let mut s = session.unwrap();
    let p = port.to_string();
    s.open(
        1,
        &[("streamtype", "error"), ("port", &p), ("requestid", "0")],
    );
    s.open(
        3,
        &[("streamtype", "data"), ("port", &p), ("requestid", "0")],
    );
    s.send(
        3,
        b"GET /index.html HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        false,
    );
    s.run_until(Duration::from_secs(30), |s| s.text(3).contains("hello-pf"));
    assert!(s.text(3).starts_with("HTTP/1.1 200"), "{}", s.text(3));
    drop(s);

    // No fake success: a request without an upgrade, a missing container.
    let mut c = kc::connect(k.d.port, &k.ca, Some(&k.apiserver));
    let r = kc::request(
        &mut c,
        "POST",
        &format!("/exec/{pod}/c?command=id&output=1"),
        &[],
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "Upgrade request required")
    );
    let (up, _) = kc::spdy_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/exec/{pod}/nope?command=id&output=1"),
        &V4,
    );
    assert_eq!(up.status, 404);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn stats_summary_and_metrics_resource_with_the_node_move_when_a_container_allocates() {
    let k = Kubelet::standalone("kapi-stats");
    k.d.put_manifest(
        "mem.yaml",
        &busybox_pod(
            "mem",
            &[("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done")],
        ),
    );
    let c = k.d.wait_running("c", Duration::from_secs(60));
    let pod_name = format!("mem-{}", k.d.node);
    let summary = || -> Value {
        let r = k.get("/stats/summary");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).unwrap()
    };
    let working_set = || -> u64 {
        let doc = summary();
        assert_eq!(doc["node"]["nodeName"], k.d.node.as_str());
        let pod = doc["pods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["podRef"]["name"] == pod_name)
            .cloned()
            .expect("the pod in the summary");
        assert_eq!(pod["podRef"]["namespace"], "default");
        assert_eq!(pod["containers"][0]["name"], "c");
        assert!(pod["containers"][0]["cpu"]["usageCoreNanoSeconds"]
            .as_u64()
            .is_some());
        pod["containers"][0]["memory"]["workingSetBytes"]
            .as_u64()
            .expect("workingSetBytes")
    };
    // metrics-server's view: the exposition parses, the families have the kubelet's names,
    // types and stability, and the series its labels and millisecond timestamps.
    let resource = || -> crate::prom::Exposition {
        let r = k.get("/metrics/resource");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let text = r.text();
        let e = crate::prom::parse(&text);
        for (name, kind) in [
            ("container_cpu_usage_seconds_total", "counter"),
            ("container_memory_working_set_bytes", "gauge"),
            ("container_start_time_seconds", "gauge"),
            ("node_cpu_usage_seconds_total", "counter"),
            ("node_memory_working_set_bytes", "gauge"),
            ("pod_cpu_usage_seconds_total", "counter"),
            ("pod_memory_working_set_bytes", "gauge"),
            ("resource_scrape_error", "gauge"),
        ] {
            let (help, k) = e
                .families
                .get(name)
                .unwrap_or_else(|| panic!("{name} in {text}"));
            assert_eq!(k, kind, "{name}");
            assert!(help.starts_with("[STABLE] "), "{name}: {help}");
        }
        assert_eq!(e.one("resource_scrape_error", &[]).value, 0.0);
        assert_eq!(e.one("scrape_error", &[]).value, 0.0);
        let now_ms = unix_now() * 1000.0;
        for name in [
            "node_cpu_usage_seconds_total",
            "node_memory_working_set_bytes",
        ] {
            let s = e.one(name, &[]);
            assert!(s.value > 0.0, "{name}: {s:?}");
            let ts = s.timestamp_ms.expect("a timestamp") as f64;
            assert!((ts - now_ms).abs() < 60_000.0, "{name}: {s:?}");
        }
        let labels = [
            ("container", "c"),
            ("namespace", "default"),
            ("pod", pod_name.as_str()),
        ];
        for name in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ] {
            let s = e.one(name, &labels);
            assert_eq!(s.labels.len(), 3, "{s:?}");
            let ts = s.timestamp_ms.expect("a timestamp") as f64;
            assert!((ts - now_ms).abs() < 60_000.0, "{name}: {s:?}");
        }
        let start = e.one("container_start_time_seconds", &labels);
        assert_eq!(start.timestamp_ms, None);
        assert!((unix_now() - start.value).abs() < 600.0, "{start:?}");
        let pod = [("namespace", "default"), ("pod", pod_name.as_str())];
        assert!(e
            .one("pod_cpu_usage_seconds_total", &pod)
            .timestamp_ms
            .is_some());
        assert!(e.one("pod_memory_working_set_bytes", &pod).value > 0.0);
        e
    };
    let container_ws = |e: &crate::prom::Exposition| {
        e.one(
            "container_memory_working_set_bytes",
            &[("container", "c"), ("pod", pod_name.as_str())],
        )
        .value
    };

    // The node: cpu, memory, fs, rlimit and the pods' cgroup; usageNanoCores once two samples
    // are a second apart (cAdvisor keeps the last one).
    let first = summary();
    let node = &first["node"];
    assert!(
        node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(
        node["memory"]["availableBytes"].as_u64().unwrap() > 0,
        "{node}"
    );
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0, "{node}");
    assert!(node["rlimit"]["maxpid"].as_u64().unwrap() > 0, "{node}");
    assert!(node["startTime"].as_str().is_some(), "{node}");
    let system = node["systemContainers"].as_array().unwrap();
    let kubelet = system
        .iter()
        .find(|c| c["name"] == "kubelet")
        .expect("kubelet");
    // This daemon: a few MiB resident, started a moment ago.
    let rss = kubelet["memory"]["rssBytes"].as_u64().unwrap();
    assert!(rss > 1 << 20, "{kubelet}");
    let started: k8s_openapi::jiff::Timestamp =
        kubelet["startTime"].as_str().unwrap().parse().unwrap();
    let age = k8s_openapi::jiff::Timestamp::now().duration_since(started);
    assert!((-5..600).contains(&age.as_secs()), "{kubelet}");
    assert!(system.iter().any(|c| c["name"] == "pods"), "{node}");
    std::thread::sleep(Duration::from_millis(1100));
    let second = summary();
    let cores = second["node"]["cpu"]["usageNanoCores"]
        .as_u64()
        .expect("usageNanoCores on the second sample");
    assert!(
        second["node"]["cpu"]["usageCoreNanoSeconds"].as_u64()
            >= node["cpu"]["usageCoreNanoSeconds"].as_u64()
    );

    // The pod's cgroup holds its container: the pod's working set is at least the container's.
    let doc = summary();
    let pod = doc["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["name"] == pod_name)
        .cloned()
        .unwrap();
    assert!(
        pod["memory"]["workingSetBytes"].as_u64()
            >= pod["containers"][0]["memory"]["workingSetBytes"].as_u64(),
        "{pod}"
    );
    // Pod-level stats are the pod's own cgroup (read as cAdvisor would), with its processes
    // (the pause process and the shell at least).
    assert!(
        pod["process_stats"]["process_count"].as_u64() >= Some(2),
        "no pod-level stats: {pod}"
    );
    assert!(
        pod["cpu"]["usageCoreNanoSeconds"].as_u64() > Some(0),
        "{pod}"
    );

    let before = working_set();
    let before_metric = container_ws(&resource());
    runtime()
        .exec_sync(
            &c.id,
            &[
                "sh".into(),
                "-c".into(),
                "head -c 40000000 /dev/zero > /dev/shm/blob".into(),
            ],
            Duration::from_secs(30),
        )
        .unwrap();
    let after = wait_for(
        "the working set to grow by 30 MB",
        Duration::from_secs(30),
        || {
            let now = working_set();
            (now >= before + 30_000_000).then_some(now)
        },
    );
    let after_metric = wait_for(
        "container_memory_working_set_bytes to grow by 30 MB",
        Duration::from_secs(30),
        || {
            let now = container_ws(&resource());
            (now >= before_metric + 30e6).then_some(now)
        },
    );
    eprintln!(
        "node usageNanoCores={cores}; working set before={before} after={after}; \
         container_memory_working_set_bytes before={before_metric} after={after_metric}"
    );
}

#[test]
fn metrics_count_pod_starts_runtime_calls_and_their_errors_api_requests_and_served_requests() {
    let (fake, seen) = reviews_allowing_the_apiserver();
    let apiserver = fake.client_cert("kube-apiserver-kubelet-client", Some("system:masters"));
    let mut k = Kubelet::new(
        Daemon::with_api(&fake, "kapi-metrics"),
        &fake.ca_pem(),
        apiserver,
    );
    k.d.start();
    k.d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(30));
    k.d.put_manifest(
        "ok.yaml",
        &busybox_pod(
            "ok",
            &[("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done")],
        ),
    );
    // A pod whose image does not exist: its pulls fail.
    k.d.put_manifest(
        "bad.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  restartPolicy: Never\n  hostNetwork: true\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/vk-cri-no-such-image:1\n",
    );
    k.d.wait_running("c", Duration::from_secs(60));
    let metrics = || -> crate::prom::Exposition {
        let r = k.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        crate::prom::parse(&r.text())
    };
    let e = wait_for(
        "the pod start and the failed pull in /metrics",
        Duration::from_secs(60),
        || {
            let e = metrics();
            let pulls_failed = e
                .find(
                    "kubelet_runtime_operations_errors_total",
                    &[("operation_type", "pull_image")],
                )
                .first()
                .is_some_and(|s| s.value >= 1.0);
            let started = e
                .find("kubelet_pod_start_duration_seconds_count", &[])
                .first()
                .is_some_and(|s| s.value >= 1.0);
            (pulls_failed && started).then_some(e)
        },
    );
    let value = |name: &str, labels: &[(&str, &str)]| e.one(name, labels).value;
    assert!(value("kubelet_started_pods_total", &[]) >= 2.0);
    assert_eq!(value("kubelet_started_pods_errors_total", &[]), 0.0);
    assert!(
        value(
            "kubelet_started_containers_total",
            &[("container_type", "container")]
        ) >= 1.0
    );
    for op in [
        "run_podsandbox",
        "create_container",
        "start_container",
        "list_containers",
        "pull_image",
        "version",
    ] {
        assert!(
            value(
                "kubelet_runtime_operations_total",
                &[("operation_type", op)]
            ) >= 1.0,
            "{op}"
        );
        assert!(
            value(
                "kubelet_runtime_operations_duration_seconds_count",
                &[("operation_type", op)]
            ) >= 1.0,
            "{op}"
        );
    }
    assert_eq!(
        e.families["kubelet_runtime_operations_duration_seconds"].1,
        "histogram"
    );
    // The kubelet's buckets: ExponentialBuckets(.005, 2.5, 14).
    let les: Vec<&str> = e
        .find(
            "kubelet_runtime_operations_duration_seconds_bucket",
            &[("operation_type", "run_podsandbox")],
        )
        .iter()
        .map(|s| s.labels["le"].as_str())
        .collect();
    assert_eq!(les.len(), 15, "{les:?}");
    assert_eq!(
        (les[0], les[13], les[14]),
        ("0.005", "745.0580596923828", "+Inf")
    );
    let start = e.one("kubelet_pod_start_duration_seconds_sum", &[]).value;
    assert!(start > 0.0 && start < 60.0, "{start}");
    // The API server client: the node's registration and status went to the fake.
    let host = fake.url().trim_start_matches("https://").to_string();
    let gets: f64 = e
        .find(
            "rest_client_requests_total",
            &[("host", &host), ("method", "GET")],
        )
        .iter()
        .map(|s| s.value)
        .sum();
    assert!(
        gets >= 1.0,
        "{:?}",
        e.find("rest_client_requests_total", &[])
    );
    assert!(!e
        .find(
            "rest_client_request_duration_seconds_count",
            &[("host", &host)]
        )
        .is_empty());
    // This server: requests by root path.
    assert!(
        value(
            "kubelet_http_requests_total",
            &[
                ("path", "metrics"),
                ("method", "GET"),
                ("long_running", "false"),
                ("server_type", "readwrite")
            ]
        ) >= 1.0
    );
    // Authorized as nodes/metrics.
    let reviewed = seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s["resourceAttributes"]["subresource"] == "metrics");
    assert!(reviewed, "no SubjectAccessReview for nodes/metrics");
    eprintln!(
        "pod start duration sum={start:.3}s; run_podsandbox calls={}",
        value(
            "kubelet_runtime_operations_total",
            &[("operation_type", "run_podsandbox")]
        )
    );
}

#[test]
fn exec_tty_resize_through_spdy_and_websocket_changes_stty_size() {
    let k = Kubelet::standalone("kapi-tty");
    k.d.put_manifest(
        "sh.yaml",
        &busybox_pod(
            "sh",
            &[("c", "trap 'exit 0' TERM; while true; do sleep 0.2; done")],
        ),
    );
    k.d.wait_running("c", Duration::from_secs(60));
    let pod = k.pod("sh");

    // SPDY (kubectl ≤ 1.29): a tty exec opens error, stdin, stdout and resize streams; every
    // resize is a JSON TerminalSize on the resize stream. `stty size` prints "rows cols".
    let (up, session) = kc::spdy_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!(
            "/exec/{pod}/c?command=sh&command=-c&command=read+x%3B+stty+size%3B+read+x%3B+stty+size&input=1&output=1&tty=1"
        ),
        &V4,
    );
    assert_eq!(up.status, 101, "{}", String::from_utf8_lossy(&up.body));
    let mut s = session.unwrap();
    s.open(1, &[("streamtype", "error")]);
    s.open(3, &[("streamtype", "stdin")]);
    s.open(5, &[("streamtype", "stdout")]);
    s.open(7, &[("streamtype", "resize")]);
    s.send(7, br#"{"Width":100,"Height":40}"#, false);
    std::thread::sleep(Duration::from_millis(500));
    s.send(3, b"first\n", false);
    s.run_until(Duration::from_secs(20), |s| s.text(5).contains("40 100"));
    s.send(7, br#"{"Width":132,"Height":50}"#, false);
    std::thread::sleep(Duration::from_millis(500));
    s.send(3, b"second\n", false);
    s.run_until(Duration::from_secs(20), |s| s.text(5).contains("50 132"));
    let out = s.text(5);
    // The tty echoes what was typed; the sizes follow each line, in order.
    let first = out.find("40 100").unwrap();
    let second = out.find("50 132").unwrap();
    assert!(first < second, "{out:?}");
    assert!(out.contains("first\r\n"), "{out:?}");
    s.run_until(Duration::from_secs(20), |s| {
        s.closed || s.fin.contains_key(&1)
    });
    assert!(
        s.text(1).is_empty() || s.text(1).contains("\"status\":\"Success\""),
        "{}",
        s.text(1)
    );
    eprintln!("spdy tty output: {out:?}");

    // WebSocket (v4.channel.k8s.io): the resize is channel 4.
    let (status, ws) = kc::ws_upgrade(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("/exec/{pod}/c?command=sh&command=-c&command=read+x%3B+stty+size&input=1&output=1&tty=1"),
    );
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.send(4, br#"{"Width":77,"Height":33}"#);
    std::thread::sleep(Duration::from_millis(500));
    ws.send(0, b"go\n");
    ws.run_to_close(Duration::from_secs(30));
    assert!(ws.text(1).contains("33 77"), "{:?}", ws.text(1));
    assert!(ws.text(3).contains("Success"), "{:?}", ws.text(3));
}

/// The `0.log*` files next to a container's live log.
fn log_files(live: &str) -> Vec<String> {
    let live = std::path::Path::new(live);
    let prefix = live.file_name().unwrap().to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_dir(live.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn container_logs_rotate_at_max_size_keep_max_files_gzip_and_follow_previous_and_tail_still_work() {
    let k = Kubelet::standalone_with(
        "kapi-rotate",
        &[
            "--container-log-max-size",
            "4Ki",
            "--container-log-max-files",
            "3",
            "--container-log-monitor-interval",
            "3s",
        ],
    );
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    // ~5 KB/s of numbered lines until /data/stop, then exit 1 (restarted: OnFailure); the
    // second run only says so.
    let script = "if [ -f /data/ran ]; then echo second-run; trap 'exit 0' TERM; while true; do sleep 0.2; done; fi; \
                  touch /data/ran; i=0; while [ ! -f /data/stop ]; do i=$((i+1)); \
                  echo \"line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; \
                  sleep 0.02; done; echo done-writing; sleep 1; exit 1";
    k.d.put_manifest(
        "rot.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: rot\nspec:\n  restartPolicy: OnFailure\n  hostNetwork: true\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: {image}\n    command: [sh, -c, {}]\n    volumeMounts:\n    - {{name: data, mountPath: /data}}\n  volumes:\n  - {{name: data, emptyDir: {{}}}}\n",
            serde_json::to_string(script).unwrap()
        ),
    );
    let c = k.d.wait_running("c", Duration::from_secs(60));
    let base = format!("/containerLogs/{}/c", k.pod("rot"));
    let mut f = Follow::start(
        k.d.port,
        &k.ca,
        &k.apiserver,
        &format!("{base}?follow=true"),
    );
    assert_eq!(f.status, 200);
    f.wait_for("line-1-", Duration::from_secs(10));

    // Rotated at least twice: a gzipped older file, the latest rotated one and the live one,
    // never more than --container-log-max-files.
    let files = wait_for(
        "two rotations (a .gz next to the live log)",
        Duration::from_secs(40),
        || {
            let files = log_files(&c.log_path);
            (files.iter().any(|f| f.ends_with(".gz"))
                && files.iter().filter(|f| !f.ends_with(".gz")).count() >= 2)
                .then_some(files)
        },
    );
    // (A compression in progress may show a .gz.tmp for an instant.)
    assert!(
        files.iter().filter(|f| !f.ends_with(".tmp")).count() <= 3,
        "{files:?}"
    );
    let rotated = files
        .iter()
        .find(|f| f.len() == "0.log.20261204-150405".len())
        .expect("an uncompressed rotated file");
    assert!(
        rotated[6..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-'),
        "{rotated}"
    );
    let dir = std::path::Path::new(&c.log_path).parent().unwrap();
    let gz = files.iter().find(|f| f.ends_with(".gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(std::fs::File::open(dir.join(gz)).unwrap()),
        &mut text,
    )
    .unwrap();
    assert!(
        text.contains(" stdout F line-"),
        "{}",
        &text[..200.min(text.len())]
    );
    // Let a few more rotations happen while the follow is open, checking the file count.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(3));
        let files = log_files(&c.log_path);
        assert!(
            files.iter().filter(|f| !f.ends_with(".tmp")).count() <= 3,
            "{files:?}"
        );
    }

    // Stop writing: the follow ends when the container exits, and saw every line once, in
    // order, across every rotation.
    runtime()
        .exec_sync(
            &c.id,
            &["touch".into(), "/data/stop".into()],
            Duration::from_secs(10),
        )
        .unwrap();
    let body = f.finish();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"done-writing"),
        "{:?}",
        &lines[lines.len().saturating_sub(3)..]
    );
    let numbers: Vec<u64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            l.strip_prefix("line-")
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .collect();
    let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
    assert!(
        numbers == expected,
        "lines missing or repeated across rotations: {} lines, first gap after {:?}",
        numbers.len(),
        numbers.windows(2).find(|w| w[1] != w[0] + 1)
    );
    assert!(
        numbers.len() > 500,
        "only {} lines: did it rotate while following?",
        numbers.len()
    );

    // The restarted container: previous reads the first run's (live, last) file, tail works.
    wait_for("the restarted container", Duration::from_secs(60), || {
        let r = k.get(&base);
        (r.status == 200 && r.text() == "second-run\n").then_some(())
    });
    let prev = k.get(&format!("{base}?previous=true"));
    assert_eq!(prev.status, 200, "{}", prev.text());
    assert!(prev.text().ends_with("done-writing\n"), "{}", prev.text());
    assert_eq!(
        k.get(&format!("{base}?previous=true&tailLines=1")).text(),
        "done-writing\n"
    );
    assert_eq!(k.get(&format!("{base}?tailLines=1")).text(), "second-run\n");
    eprintln!(
        "followed {} lines across rotations; files while running: {files:?}",
        numbers.len()
    );
}

#[test]
fn pods_lists_the_given_pods_with_their_status_and_runningpods_what_the_runtime_runs() {
    let k = Kubelet::standalone("kapi-pods");
    k.d.put_manifest(
        "two.yaml",
        &busybox_pod(
            "two",
            &[
                ("done", "exit 0"),
                ("up", "trap 'exit 0' TERM; while true; do sleep 0.2; done"),
            ],
        ),
    );
    let name = format!("two-{}", k.d.node);
    let list = |path: &str| -> Vec<Value> {
        let r = k.get(path);
        assert_eq!(r.status, 200, "{}", r.text());
        let doc: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            (&doc["kind"], &doc["apiVersion"]),
            (&"PodList".into(), &"v1".into())
        );
        doc["items"].as_array().unwrap().clone()
    };
    // /pods: the pod as given (both containers, the manifest's image) with the status vk-cri
    // reported, once the first container has finished.
    let pod = wait_for(
        "/pods to show done terminated",
        Duration::from_secs(60),
        || {
            let items = list("/pods");
            let pod = items
                .into_iter()
                .find(|p| p["metadata"]["name"] == name.as_str())?;
            let statuses = pod["status"]["containerStatuses"].as_array()?.clone();
            statuses
                .iter()
                .any(|s| s["name"] == "done" && s["state"]["terminated"]["reason"] == "Completed")
                .then_some(pod)
        },
    );
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert_eq!(pod["spec"]["containers"][0]["name"], "done");
    assert_eq!(
        pod["spec"]["containers"][1]["image"],
        env::var("VKCRI_BUSYBOX_IMAGE").as_str()
    );
    assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );

    // /runningpods/: only the running container, as the runtime names its image.
    let running = list("/runningpods/");
    let rp = running
        .iter()
        .find(|p| p["metadata"]["name"] == name.as_str())
        .expect("the pod in /runningpods/");
    let names: Vec<&str> = rp["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["up"]);
    assert_eq!(rp["metadata"]["uid"], pod["metadata"]["uid"]);

    // Gone from its source: gone from /pods.
    k.d.remove_manifest("two.yaml");
    wait_for("/pods without the pod", Duration::from_secs(30), || {
        (!list("/pods")
            .iter()
            .any(|p| p["metadata"]["name"] == name.as_str()))
        .then_some(())
    });
}

#[test]
fn a_kubelet_configuration_file_sits_under_the_flags_and_configz_serves_the_result() {
    let client_ca = Ca::generate("client-ca").unwrap();
    let apiserver = client_ca
        .issue_client("kube-apiserver-kubelet-client", Some("system:masters"))
        .unwrap();
    let d = Daemon::new("kapi-configz");
    let file = d.dir.0.join("kubelet-config.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
port: 1
clusterDomain: example.internal
containerLogMaxFiles: 3
runtimeRequestTimeout: 90s
evictionHard:
  memory.available: 200Mi
topologyManagerPolicy: restricted
",
    )
    .unwrap();
    let d = d.arg("--config").arg(file.to_str().unwrap());
    let mut k = Kubelet::new(d, &client_ca.cert_pem(), apiserver);
    k.d.start();
    k.d.wait_log("kubelet API on https://127.0.0.1:", Duration::from_secs(30));
    assert!(k.d.log().contains(&format!(
        "--config {}: unknown field \"topologyManagerPolicy\" (not one vk-cri has): ignored",
        file.display()
    )));
    let r = k.get("/configz");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let z: Value = serde_json::from_slice(&r.body).unwrap();
    let kc = &z["kubeletconfig"];
    assert_eq!(kc["clusterDomain"], "example.internal", "from the file");
    assert_eq!(kc["containerLogMaxFiles"], 3);
    assert_eq!(kc["runtimeRequestTimeout"], "1m30s");
    assert_eq!(
        kc["evictionHard"],
        serde_json::json!({"memory.available": "200Mi"}),
        "the file's thresholds replace the defaults, as in kubelet 1.28"
    );
    assert_eq!(kc["port"], k.d.port, "the --port flag wins over the file's");
    assert_eq!(
        kc["staticPodPath"],
        k.d.manifests().to_str().unwrap(),
        "a flag"
    );
    assert_eq!(kc["authorization"]["mode"], "AlwaysAllow");
}

#[test]
fn a_kubelet_configuration_field_of_the_wrong_type_is_an_exit_naming_it() {
    let d = Daemon::new("kapi-config-bad");
    let file = d.dir.0.join("kubelet-config.yaml");
    std::fs::write(
        &file,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nauthentication:\n  anonymous:\n    enabled: \"yes\"\n",
    )
    .unwrap();
    let mut d = d.arg("--config").arg(file.to_str().unwrap());
    let (code, log) = d.run_to_exit(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains(&format!(
            "--config {}: authentication.anonymous.enabled: expected a boolean, got a string \"yes\"",
            file.display()
        )),
        "{log}"
    );
}
