//! Probes and lifecycle hooks through the real binary, the fake API server and the real
//! containerd: readiness flipping Ready both ways and written at once, liveness restarting a
//! container with the kubelet's events and the probe's own grace period, a startup probe holding
//! readiness and liveness back, httpGet, tcpSocket and grpc probes against listeners on
//! 127.0.0.1 (host-network pods; the daemon runs with --node-ip 127.0.0.1), postStart output seen
//! by the container and its failure, and preStop running before SIGTERM within the grace period;
//! an HTTPS hook answered in plain HTTP falling back to HTTP; readiness still probed (and liveness
//! no longer) while a pod terminates, with probe events on the container's field path.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vk_cri::cri::Runtime;

use crate::daemon::{runtime, wait_for, Daemon};
use crate::env;
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};

fn fake() -> FakeApiServer {
    FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("probe-node"),
        inject_service_account_volume: false,
        bookmark_interval: Duration::from_secs(2),
        ..FakeConfig::default()
    })
}

fn start(tag: &str) -> (FakeApiServer, Daemon) {
    let f = fake();
    let mut d = Daemon::with_api(&f, tag);
    d.start();
    (f, d)
}

/// A host-network pod with these containers (each gets the test image).
fn pod(name: &str, node: &str, grace: u32, containers: Value) -> Value {
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let containers: Vec<Value> = containers
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let mut c = c.clone();
            c["image"] = json!(image);
            c
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "hostNetwork": true,
            "terminationGracePeriodSeconds": grace,
            "tolerations": [{"operator": "Exists"}],
            "containers": containers
        }
    })
}

fn sh(script: &str) -> Value {
    json!(["sh", "-c", script])
}

/// PID 1 that exits at once on SIGTERM.
const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

fn condition(p: &Value, t: &str) -> String {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn status_of<'a>(p: &'a Value, container: &str) -> &'a Value {
    p.pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .unwrap_or(&Value::Null)
}

fn wait_pod(
    f: &FakeApiServer,
    name: &str,
    what: &str,
    secs: u64,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    wait_for(what, Duration::from_secs(secs), || {
        f.get_pod("default", name).filter(|p| pred(p))
    })
}

fn events(f: &FakeApiServer, pod: &str) -> Vec<(String, String)> {
    f.list(Res::Events, Some("default"))
        .iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .map(|e| {
            (
                e["reason"].as_str().unwrap_or("").to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn wait_event(f: &FakeApiServer, pod: &str, reason: &str, needle: &str) -> String {
    wait_for(
        &format!("a {reason} event containing {needle:?} for {pod}"),
        Duration::from_secs(40),
        || {
            events(f, pod)
                .into_iter()
                .find(|(r, m)| r == reason && m.contains(needle))
                .map(|(_, m)| m)
        },
    )
}

fn exec(d: &Daemon, container: &str, script: &str) {
    let c = d.wait_running(container, Duration::from_secs(30));
    let out = runtime()
        .exec_sync(
            &c.id,
            &["sh".into(), "-c".into(), script.into()],
            Duration::from_secs(10),
        )
        .expect("exec");
    assert_eq!(out.exit_code, 0, "{script}: {out:?}");
}

/// The container's log lines (the CRI log's message parts), newest instance.
fn log_lines(d: &Daemon, container: &str) -> Vec<String> {
    let path = d.containers(container)[0].log_path.clone();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
        .collect()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_exec_readiness_probe_that_starts_failing_flips_ready_to_false_and_back() {
    let (f, d) = start("ready");
    f.create_pod(pod(
        "ready",
        &d.node,
        2,
        json!([{
            "name": "c",
            "command": sh(&format!("touch /tmp/ready; {LOOP}")),
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]},
                                "periodSeconds": 1, "failureThreshold": 1}
        }]),
    ));
    wait_pod(&f, "ready", "Ready", 40, |p| {
        condition(p, "Ready") == "True" && condition(p, "ContainersReady") == "True"
    });

    exec(&d, "c", "rm /tmp/ready");
    let removed = Instant::now();
    // The periodic resync is a minute away: this is the probe's result written at once.
    let p = wait_pod(&f, "ready", "not Ready", 15, |p| {
        condition(p, "Ready") == "False"
    });
    eprintln!(
        "readiness flip written {:?} after the file went",
        removed.elapsed()
    );
    assert_eq!(condition(&p, "ContainersReady"), "False");
    let cs = status_of(&p, "c");
    assert_eq!(cs["ready"], false);
    assert!(cs["state"]["running"].is_object(), "still running: {cs}");
    assert_eq!(cs["restartCount"], 0);
    let ready_reason = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        ready_reason["reason"], "ContainersNotReady",
        "{ready_reason}"
    );
    wait_event(
        &f,
        "ready",
        "Unhealthy",
        "Readiness probe failed: cat: can't open '/tmp/ready': No such file or directory",
    );

    exec(&d, "c", "touch /tmp/ready");
    let p = wait_pod(&f, "ready", "Ready again", 15, |p| {
        condition(p, "Ready") == "True"
    });
    assert_eq!(status_of(&p, "c")["ready"], true);
}

#[test]
fn a_failing_liveness_probe_restarts_the_container_with_unhealthy_and_killing_events() {
    let (f, d) = start("live");
    // PID 1 ignores SIGTERM and the pod's grace is long: only the probe's own
    // terminationGracePeriodSeconds (2 s) gets the restart done in time.
    f.create_pod(pod(
        "live",
        &d.node,
        300,
        json!([{
            "name": "c",
            "command": sh("trap '' TERM; touch /tmp/alive; while true; do sleep 0.2; done"),
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]},
                               "periodSeconds": 1, "failureThreshold": 2,
                               "terminationGracePeriodSeconds": 2}
        }]),
    ));
    wait_pod(&f, "live", "Running", 40, |p| {
        condition(p, "Ready") == "True"
    });
    let first = d.wait_running("c", Duration::from_secs(5));
    exec(&d, "c", "rm /tmp/alive");
    let killed_at = Instant::now();
    let p = wait_pod(&f, "live", "a restart", 30, |p| {
        status_of(p, "c")["restartCount"] == 1 && status_of(p, "c")["state"]["running"].is_object()
    });
    assert!(
        killed_at.elapsed() < Duration::from_secs(25),
        "the probe's 2 s grace period applies, not the pod's 300 s"
    );
    let cs = status_of(&p, "c");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 137, "{cs}");
    assert_ne!(
        cs["containerID"].as_str().unwrap(),
        format!("containerd://{}", first.id)
    );
    wait_event(
        &f,
        "live",
        "Unhealthy",
        "Liveness probe failed: cat: can't open '/tmp/alive': No such file or directory",
    );
    let killing = wait_event(&f, "live", "Killing", "liveness");
    assert_eq!(
        killing,
        "Container c failed liveness probe, will be restarted"
    );
    // The new instance made its file again and stays alive.
    std::thread::sleep(Duration::from_secs(3));
    let p = f.get_pod("default", "live").unwrap();
    assert_eq!(status_of(&p, "c")["restartCount"], 1);
}

#[test]
fn a_startup_probe_holds_readiness_and_liveness_back_until_it_succeeds() {
    let (f, d) = start("startup");
    // Liveness and readiness check the same file as the startup probe: had either run before
    // the startup probe succeeded, liveness (3 failures, 1 s apart) would have killed it.
    let check = json!({"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1});
    let mut startup = check.clone();
    startup["failureThreshold"] = json!(30);
    f.create_pod(pod(
        "startup",
        &d.node,
        2,
        json!([{
            "name": "c",
            "command": sh(&format!("sleep 6; touch /tmp/started; {LOOP}")),
            "startupProbe": startup,
            "livenessProbe": check,
            "readinessProbe": check
        }]),
    ));
    let p = wait_pod(&f, "startup", "running, not started", 40, |p| {
        status_of(p, "c")["state"]["running"].is_object()
    });
    let cs = status_of(&p, "c");
    assert_eq!(
        (cs["started"].clone(), cs["ready"].clone()),
        (json!(false), json!(false)),
        "{cs}"
    );
    assert_eq!(condition(&p, "Ready"), "False");
    let p = wait_pod(&f, "startup", "started and Ready", 40, |p| {
        condition(p, "Ready") == "True"
    });
    let cs = status_of(&p, "c");
    assert_eq!(cs["started"], true);
    assert_eq!(cs["ready"], true);
    assert_eq!(cs["restartCount"], 0, "liveness never ran before the start");
    let evs = events(&f, "startup");
    assert!(
        evs.iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Startup probe failed: ")),
        "{evs:?}"
    );
    assert!(
        !evs.iter()
            .any(|(_, m)| m.starts_with("Liveness") || m.starts_with("Readiness")),
        "{evs:?}"
    );
}

#[test]
fn http_get_and_tcp_socket_probes_reach_a_host_network_listener() {
    let (f, d) = start("http");
    let port = free_port();
    let closed = free_port();
    let web = format!(
        "mkdir -p /www && echo ok > /www/healthz && httpd -f -p 127.0.0.1:{port} -h /www & {LOOP}"
    );
    f.create_pod(pod(
        "http",
        &d.node,
        2,
        json!([
            {
                "name": "web",
                "command": sh(&web),
                "ports": [{"name": "http", "containerPort": port}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz",
                                               "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                                   "periodSeconds": 1},
                "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1}
            },
            {
                "name": "missing",
                "command": sh(LOOP),
                "readinessProbe": {"httpGet": {"port": port, "path": "/missing"}, "periodSeconds": 1}
            },
            {
                "name": "closed",
                "command": sh(LOOP),
                "readinessProbe": {"tcpSocket": {"port": closed}, "periodSeconds": 1}
            }
        ]),
    ));
    let p = wait_pod(&f, "http", "web ready", 40, |p| {
        status_of(p, "web")["ready"] == true
    });
    assert_eq!(
        condition(&p, "Ready"),
        "False",
        "two containers are not ready"
    );
    wait_event(
        &f,
        "http",
        "Unhealthy",
        "Readiness probe failed: HTTP probe failed with statuscode: 404",
    );
    wait_event(
        &f,
        "http",
        "Unhealthy",
        &format!(
            "Readiness probe failed: dial tcp 127.0.0.1:{closed}: connect: connection refused"
        ),
    );
    std::thread::sleep(Duration::from_secs(3));
    let p = f.get_pod("default", "http").unwrap();
    assert_eq!(status_of(&p, "web")["ready"], true);
    assert_eq!(
        status_of(&p, "web")["restartCount"],
        0,
        "the tcpSocket liveness probe passes"
    );
    assert_eq!(status_of(&p, "missing")["ready"], false);
    assert_eq!(status_of(&p, "closed")["ready"], false);
}

/// A grpc.health.v1 server in the test process on 127.0.0.1, answering with `status`.
fn health_server(status: Arc<AtomicI32>) -> (grpcio::Server, u16) {
    use grpcio::{Environment, ServerBuilder, ServerCredentials, ServiceBuilder};
    use vk_cri::probe::grpc::health;

    let svc = ServiceBuilder::new()
        .add_unary_handler(
            &health::grpc::METHOD_HEALTH_CHECK,
            move |ctx, _req: health::HealthCheckRequest, sink| {
                let resp = health::HealthCheckResponse {
                    status: protobuf::EnumOrUnknown::from_i32(status.load(Ordering::SeqCst)),
                    ..Default::default()
                };
                ctx.spawn(async move {
                    let _ = sink.success(resp).await;
                });
            },
        )
        .build();
    let mut server = ServerBuilder::new(Arc::new(Environment::new(1)))
        .register_service(svc)
        .build()
        .expect("grpc server");
    let port = server
        .add_listening_port("127.0.0.1:0", ServerCredentials::insecure())
        .expect("listen");
    server.start();
    (server, port)
}

#[test]
fn a_grpc_probe_checks_the_standard_health_service() {
    let serving = Arc::new(AtomicI32::new(1));
    let (_server, port) = health_server(serving.clone());
    let (f, d) = start("grpc");
    f.create_pod(pod(
        "grpc",
        &d.node,
        2,
        json!([{
            "name": "c",
            "command": sh(LOOP),
            "readinessProbe": {"grpc": {"port": port}, "periodSeconds": 1}
        }]),
    ));
    wait_pod(&f, "grpc", "Ready", 40, |p| condition(p, "Ready") == "True");
    serving.store(2, Ordering::SeqCst);
    wait_pod(&f, "grpc", "not Ready", 20, |p| {
        condition(p, "Ready") == "False"
    });
    wait_event(
        &f,
        "grpc",
        "Unhealthy",
        "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")",
    );
}

#[test]
fn post_start_finishes_before_running_is_reported_its_output_is_visible_and_a_failing_hook_kills_it(
) {
    let (f, d) = start("poststart");
    f.create_pod(pod(
        "hooked",
        &d.node,
        2,
        json!([
            {
                "name": "c",
                "command": sh(&format!(
                    "while [ ! -f /tmp/hook ]; do sleep 0.1; done; cat /tmp/hook; {LOOP}"
                )),
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 2; echo written-by-post-start > /tmp/hook"]}}}
            },
            {
                "name": "bad",
                "command": sh(LOOP),
                "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo hook-out; exit 3"]}}}
            }
        ]),
    ));
    wait_pod(&f, "hooked", "c running", 40, |p| {
        status_of(p, "c")["state"]["running"].is_object()
    });
    // The hook takes 2 s: had the status said Running before it finished, its file would not be
    // there yet.
    exec(&d, "c", "test -f /tmp/hook");
    wait_for(
        "the hook's file in the container's log",
        Duration::from_secs(20),
        || {
            log_lines(&d, "c")
                .iter()
                .any(|l| l == "written-by-post-start")
                .then_some(())
        },
    );
    // The event says only that the hook failed (its output may hold secrets), on the container;
    // the kubelet's full message goes to the log.
    let ev = wait_for(
        "the FailedPostStartHook event",
        Duration::from_secs(40),
        || {
            f.list(Res::Events, Some("default")).into_iter().find(|e| {
                e["involvedObject"]["name"] == "hooked" && e["reason"] == "FailedPostStartHook"
            })
        },
    );
    assert_eq!(ev["message"], "PostStartHook failed");
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{bad}");
    let log = d.log();
    let msg = log
        .lines()
        .find(|l| l.contains("postStart hook of container bad failed"))
        .unwrap_or_else(|| panic!("no hook failure in the log:\n{log}"));
    assert!(
        msg.contains("Exec lifecycle hook ([sh -c echo hook-out; exit 3]) for Container \"bad\" in Pod \"hooked_default(")
            && msg.contains("exited with 3")
            && msg.ends_with("message: \"hook-out\\n\""),
        "{msg}"
    );
    wait_event(&f, "hooked", "Killing", "FailedPostStartHook");
    let p = wait_pod(&f, "hooked", "bad restarted", 40, |p| {
        status_of(p, "bad")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    let bad = status_of(&p, "bad");
    assert!(
        bad["state"]["running"].is_null(),
        "a container whose hook failed is not Running: {bad}"
    );
}

/// A listener on 127.0.0.1 that collects the first line of every connection, in order.
fn line_collector() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(conn).read_line(&mut line);
            out.lock().unwrap().push(line.trim().to_string());
        }
    });
    (port, lines)
}

#[test]
fn pre_stop_runs_before_sigterm_and_is_bounded_by_the_grace_period() {
    let (port, lines) = line_collector();
    let (f, d) = start("prestop");
    let say = |what: &str| format!("echo {what} | nc 127.0.0.1 {port}");
    f.create_pod(pod(
        "polite",
        &d.node,
        10,
        json!([{
            "name": "c",
            "command": sh(&format!("trap '{}; exit 0' TERM; while true; do sleep 0.2; done", say("got-sigterm"))),
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", format!("{}; sleep 1", say("pre-stop-ran"))]}}}
        }]),
    ));
    f.create_pod(pod(
        "stuck",
        &d.node,
        3,
        json!([{
            "name": "s",
            "command": sh("trap '' TERM; while true; do sleep 0.2; done"),
            "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1000"]}}}
        }]),
    ));
    wait_pod(&f, "polite", "polite Ready", 40, |p| {
        condition(p, "Ready") == "True"
    });
    wait_pod(&f, "stuck", "stuck Ready", 40, |p| {
        condition(p, "Ready") == "True"
    });

    f.delete_pod("default", "polite", Some(10));
    let deleted = Instant::now();
    f.delete_pod("default", "stuck", Some(3));
    wait_for("polite gone from the API", Duration::from_secs(30), || {
        f.get_pod("default", "polite").is_none().then_some(())
    });
    assert_eq!(
        lines.lock().unwrap().as_slice(),
        ["pre-stop-ran", "got-sigterm"],
        "preStop ran, then SIGTERM came"
    );
    // A hook that never ends gets the 3 s grace period, then the stop gets the 2 s minimum.
    wait_for("stuck gone from the API", Duration::from_secs(30), || {
        f.get_pod("default", "stuck").is_none().then_some(())
    });
    assert!(
        deleted.elapsed() < Duration::from_secs(25),
        "the hook is bounded by the grace period"
    );
    assert!(
        d.log()
            .contains("preStop hook of container s did not complete within the grace period of 3s"),
        "{}",
        d.log()
    );
}

#[test]
fn a_failing_startup_probe_runs_pre_stop_then_restarts_the_container() {
    let (port, lines) = line_collector();
    let (f, d) = start("startfail");
    f.create_pod(pod(
        "slow",
        &d.node,
        5,
        json!([{
            "name": "c",
            "command": sh(LOOP),
            "startupProbe": {"exec": {"command": ["cat", "/tmp/never"]},
                             "periodSeconds": 1, "failureThreshold": 2},
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c",
                format!("echo pre-stop-on-kill | nc 127.0.0.1 {port}")]}}}
        }]),
    ));
    let killing = wait_event(&f, "slow", "Killing", "startup");
    assert_eq!(
        killing,
        "Container c failed startup probe, will be restarted"
    );
    wait_pod(&f, "slow", "a restart", 40, |p| {
        status_of(p, "c")["restartCount"].as_i64().unwrap_or(0) >= 1
    });
    wait_for("the preStop hook's line", Duration::from_secs(10), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l == "pre-stop-on-kill")
            .then_some(())
    });
    let p = f.get_pod("default", "slow").unwrap();
    assert_eq!(
        condition(&p, "Ready"),
        "False",
        "never started, never ready"
    );
    assert_eq!(status_of(&p, "c")["started"], false);
}

/// The names of the daemon's threads.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                .map(|n| n.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn probes_of_many_pods_run_on_one_timer_thread_and_a_fixed_pool() {
    let (f, d) = start("many");
    let check = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
    let pods = 6;
    for i in 0..pods {
        f.create_pod(pod(
            &format!("p{i}"),
            &d.node,
            2,
            json!([{
                "name": "c",
                "command": sh(LOOP),
                "startupProbe": check,
                "livenessProbe": check,
                "readinessProbe": check
            }]),
        ));
    }
    for i in 0..pods {
        wait_pod(&f, &format!("p{i}"), "Ready", 60, |p| {
            condition(p, "Ready") == "True"
        });
    }
    let names = thread_names(d.pid().expect("running"));
    let prober: Vec<&String> = names
        .iter()
        .filter(|n| *n == "prober" || n.starts_with("probe-"))
        .collect();
    assert_eq!(
        prober.len(),
        1 + vk_cri::probe::manager::WORKERS,
        "18 probes, one timer thread and the pool: {names:?}"
    );
}

/// A plain HTTP server on 127.0.0.1 that answers every connection `200 OK` after reading its
/// first bytes (a TLS ClientHello gets that too, as a real HTTP server's 400 would be); the
/// first line of every connection, in order.
fn plain_http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap_or(0);
            let first = String::from_utf8_lossy(&buf[..n]);
            let line = if first.starts_with("GET ") {
                first.lines().next().unwrap_or_default().to_string()
            } else {
                "<not http>".to_string()
            };
            out.lock().unwrap().push(line);
            let _ = conn
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    (port, lines)
}

#[test]
fn an_https_post_start_hook_answered_in_plain_http_falls_back_to_http_with_a_warning() {
    let (port, lines) = plain_http_server();
    let (f, d) = start("hookfallback");
    f.create_pod(pod(
        "fallback",
        &d.node,
        2,
        json!([{
            "name": "c",
            "command": sh(LOOP),
            "lifecycle": {"postStart": {"httpGet": {
                "scheme": "HTTPS", "host": "127.0.0.1", "port": port, "path": "/started",
                "httpHeaders": [{"name": "Authorization", "value": "Bearer secret"}]
            }}}
        }]),
    ));
    let msg = wait_event(&f, "fallback", "LifecycleHTTPFallback", "127.0.0.1");
    assert_eq!(
        msg,
        format!("request to HTTPS lifecycle hook 127.0.0.1:{port} got HTTP response, retry with HTTP succeeded")
    );
    wait_pod(&f, "fallback", "c running", 40, |p| {
        status_of(p, "c")["state"]["running"].is_object()
    });
    let seen = lines.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "<not http>".to_string(),
            "GET /started HTTP/1.1".to_string()
        ],
        "a TLS attempt, then the same request in plain HTTP"
    );
    let ev = f
        .list(Res::Events, Some("default"))
        .into_iter()
        .find(|e| e["reason"] == "LifecycleHTTPFallback")
        .unwrap();
    assert_eq!(ev["type"], "Warning");
    assert!(
        ev["involvedObject"]["fieldPath"].is_null(),
        "a pod event, as the kubelet's: {ev}"
    );
    assert!(events(&f, "fallback")
        .iter()
        .all(|(r, _)| r != "FailedPostStartHook"));
}

#[test]
fn a_terminating_pod_is_still_probed_for_readiness_and_no_longer_for_liveness() {
    let (f, d) = start("termready");
    // On SIGTERM the container first breaks its liveness check, then its readiness check, and
    // keeps running for a while.
    let script = "touch /tmp/ready /tmp/alive; \
        trap 'rm -f /tmp/alive; sleep 2; rm -f /tmp/ready; sleep 8; exit 0' TERM; \
        while true; do sleep 0.2; done";
    f.create_pod(pod(
        "termready",
        &d.node,
        30,
        json!([{
            "name": "c",
            "command": sh(script),
            "readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 1, "failureThreshold": 1},
            "livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1}
        }]),
    ));
    wait_pod(&f, "termready", "Ready", 60, |p| {
        condition(p, "Ready") == "True"
    });
    f.delete_pod("default", "termready", None);
    // Ready goes False while the container is still running: its readiness was probed during
    // termination and the change written at once.
    let p = wait_pod(&f, "termready", "unready while terminating", 20, |p| {
        condition(p, "Ready") == "False" && status_of(p, "c")["state"]["running"].is_object()
    });
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(status_of(&p, "c")["ready"], false);
    let ev = f
        .list(Res::Events, Some("default"))
        .into_iter()
        .find(|e| e["involvedObject"]["name"] == "termready" && e["reason"] == "Unhealthy")
        .expect("the readiness failure event");
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .starts_with("Readiness probe failed"),
        "{ev}"
    );
    assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{c}");
    // The liveness check broke two seconds before: had it still been probed, it would have
    // failed first (and the container would have been killed as unhealthy).
    assert!(
        events(&f, "termready")
            .iter()
            .all(|(_, m)| !m.starts_with("Liveness probe failed")),
        "{:?}",
        events(&f, "termready")
    );
    wait_for("the pod gone", Duration::from_secs(40), || {
        f.get_pod("default", "termready").is_none().then_some(())
    });
}
