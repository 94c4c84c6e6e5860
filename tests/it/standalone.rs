//! The daemon in standalone mode (static pods from a manifest directory, no API server) against
//! the real containerd: pods start and stop with their files, restart by policy with the
//! kubelet's back-off, run init containers in order, stop within their grace period, survive a
//! restart of the daemon untouched, are cleaned up when they vanished while it was down, and two
//! nodes on one containerd leave each other alone.

use std::time::{Duration, Instant};

use vk_cri::cri::api::{ContainerState, PodSandboxState};
use vk_cri::cri::Runtime;

use crate::daemon::{runtime, wait_for, Daemon};
use crate::env;

fn manifest(
    name: &str,
    policy: &str,
    grace: u32,
    init: &[(&str, &str)],
    app: &[(&str, &str)],
) -> String {
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    let list = |cs: &[(&str, &str)]| -> String {
        cs.iter()
            .map(|(n, script)| {
                format!(
                    "  - name: {n}\n    image: {image}\n    command: [sh, -c, {}]\n",
                    serde_json::to_string(script).unwrap()
                )
            })
            .collect()
    };
    let mut m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  hostNetwork: true\n  terminationGracePeriodSeconds: {grace}\n"
    );
    if !init.is_empty() {
        m.push_str("  initContainers:\n");
        m.push_str(&list(init));
    }
    m.push_str("  containers:\n");
    m.push_str(&list(app));
    m
}

/// PID 1 that exits at once on SIGTERM.
const COOPERATIVE: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";
/// PID 1 that ignores SIGTERM.
const STUBBORN: &str = "trap '' TERM; while true; do sleep 0.2; done";

#[test]
fn a_manifest_added_starts_its_pod_and_removing_it_stops_and_cleans_up() {
    let mut d = Daemon::new("static");
    d.start();
    d.put_manifest(
        "web.yaml",
        &manifest(
            "web",
            "Always",
            5,
            &[],
            &[("web", &format!("echo hello from web; {COOPERATIVE}"))],
        ),
    );
    let c = d.wait_running("web", Duration::from_secs(30));
    let log_path = std::path::PathBuf::from(&c.log_path);
    assert!(
        log_path.starts_with(d.log_root()),
        "log {} under {}",
        log_path.display(),
        d.log_root().display()
    );
    assert!(log_path.ends_with("web/0.log"));
    wait_for(
        "the container's line in its log",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(&log_path)
                .ok()
                .filter(|l| l.contains("hello from web"))
        },
    );
    d.wait_pod_log(
        "web",
        "Running web=running,ready restarts=0",
        Duration::from_secs(10),
    );
    assert_eq!(d.sandboxes().len(), 1);

    d.remove_manifest("web.yaml");
    d.wait_no_sandboxes(Duration::from_secs(20));
    wait_for(
        "the pod's log directory to be removed",
        Duration::from_secs(10),
        || {
            std::fs::read_dir(d.log_root())
                .ok()
                .map(|mut r| r.next().is_none())
                .filter(|empty| *empty)
        },
    );
}

#[test]
fn a_command_exiting_zero_under_never_completes_and_is_not_restarted() {
    let mut d = Daemon::new("never");
    d.start();
    d.put_manifest(
        "job.yaml",
        &manifest("job", "Never", 2, &[], &[("job", "echo done")]),
    );
    d.wait_pod_log(
        "job",
        "Succeeded job=terminated:Completed(0) restarts=0",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(2));
    let cs = d.containers("job");
    assert_eq!(cs.len(), 1, "not restarted");
    assert_eq!(
        cs[0].state.enum_value_or_default(),
        ContainerState::CONTAINER_EXITED
    );
    assert_eq!((cs[0].exit_code, cs[0].reason.as_str()), (0, "Completed"));
    let sb = &d.sandboxes()[0];
    assert_eq!(
        sb.state.enum_value_or_default(),
        PodSandboxState::SANDBOX_NOTREADY,
        "a finished pod's sandbox is stopped"
    );
}

#[test]
fn a_failing_command_under_on_failure_restarts_with_growing_backoff() {
    let mut d = Daemon::new("crash");
    d.start();
    d.put_manifest(
        "crash.yaml",
        &manifest(
            "crash",
            "OnFailure",
            2,
            &[],
            &[("crash", "echo failing; exit 1")],
        ),
    );
    // Attempt 0 fails, attempt 1 starts at once, attempt 2 only after the 10 s back-off. Older
    // exited instances are removed as newer ones exit, so each attempt is noted when seen.
    let mut seen: std::collections::BTreeMap<u32, vk_cri::cri::api::ContainerStatus> =
        Default::default();
    wait_for(
        "a third attempt that exited",
        Duration::from_secs(40),
        || {
            for c in d.containers("crash") {
                seen.insert(c.metadata.attempt, c);
            }
            seen.get(&2).filter(|c| c.finished_at > 0).map(|_| ())
        },
    );
    let created = |attempt: u32| seen[&attempt].created_at;
    let finished = |attempt: u32| seen[&attempt].finished_at;
    let secs = |ns: i64| ns as f64 / 1e9;
    let first_gap = secs(created(1) - finished(0));
    let second_gap = secs(created(2) - finished(1));
    assert!(
        first_gap < 5.0,
        "the first restart is immediate, took {first_gap:.1}s"
    );
    assert!(
        second_gap >= 9.5,
        "the second restart waits the 10 s back-off, took {second_gap:.1}s"
    );
    for attempt in 0..3 {
        assert_eq!(seen[&attempt].exit_code, 1, "attempt {attempt}");
    }
    d.wait_log(
        "crash=waiting:CrashLoopBackOff restarts=2",
        Duration::from_secs(10),
    );
    let log = d.log();
    assert!(
        log.contains("back-off") || log.contains("Back-off restarting failed container crash"),
        "{log}"
    );
    // The kubelet's container garbage collection: in back-off only the last exited instance is
    // kept (for `logs --previous`), the older ones and their log files are gone.
    let left = wait_for("one instance left", Duration::from_secs(10), || {
        let cs = d.containers("crash");
        (cs.len() == 1).then_some(cs)
    });
    assert_eq!(left[0].metadata.attempt, 2);
    let log_dir = std::path::Path::new(&left[0].log_path)
        .parent()
        .unwrap()
        .to_path_buf();
    let mut files: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["2.log"], "in {}", log_dir.display());
}

#[test]
fn a_finished_pod_is_not_run_again_after_a_daemon_restart() {
    let mut d = Daemon::new("done");
    d.start();
    d.put_manifest(
        "job.yaml",
        &manifest(
            "job",
            "OnFailure",
            2,
            &[("prep", "echo prep")],
            &[("job", "echo done")],
        ),
    );
    d.wait_pod_log("job", "Succeeded", Duration::from_secs(40));
    wait_for(
        "the finished pod's sandbox stopped",
        Duration::from_secs(10),
        || {
            d.sandboxes()
                .iter()
                .all(|s| s.state.enum_value_or_default() == PodSandboxState::SANDBOX_NOTREADY)
                .then_some(())
        },
    );
    for _ in 0..2 {
        d.kill();
        let before_restart = d.log().len();
        d.start();
        d.wait_log_since(
            before_restart,
            "static pod default/job-",
            Duration::from_secs(10),
        );
        // Several relists and syncs later: no new sandbox, nothing ran again.
        std::thread::sleep(Duration::from_secs(4));
        let log = d.log()[before_restart..].to_string();
        assert_eq!(d.sandboxes().len(), 1, "no new sandbox:\n{log}");
        for name in ["prep", "job"] {
            let cs = d.containers(name);
            assert_eq!(cs.len(), 1, "{name} ran once:\n{log}");
            assert_eq!(cs[0].exit_code, 0);
        }
        assert!(!log.contains("Created container"), "{log}");
    }
}

#[test]
fn init_containers_run_in_order_to_success_before_the_app_containers() {
    let mut d = Daemon::new("init");
    d.start();
    d.put_manifest(
        "init.yaml",
        &manifest(
            "init",
            "Always",
            2,
            &[
                ("first", "sleep 1; echo first"),
                ("second", "sleep 1; echo second"),
            ],
            &[("app", COOPERATIVE)],
        ),
    );
    let app = d.wait_running("app", Duration::from_secs(40));
    let first = &d.containers("first")[0];
    let second = &d.containers("second")[0];
    for c in [first, second] {
        assert_eq!(
            (c.state.enum_value_or_default(), c.exit_code),
            (ContainerState::CONTAINER_EXITED, 0)
        );
    }
    assert!(
        first.finished_at <= second.created_at,
        "second was created before first finished"
    );
    assert!(
        second.finished_at <= app.created_at,
        "app was created before the init containers finished"
    );
    d.wait_pod_log(
        "init",
        "Running first=terminated:Completed(0)",
        Duration::from_secs(10),
    );
}

#[test]
fn removal_kills_a_sigterm_ignoring_container_after_its_grace_period() {
    let mut d = Daemon::new("grace");
    d.start();
    d.put_manifest(
        "slow.yaml",
        &manifest("slow", "Always", 3, &[], &[("slow", STUBBORN)]),
    );
    d.put_manifest(
        "quick.yaml",
        &manifest("quick", "Always", 30, &[], &[("quick", COOPERATIVE)]),
    );
    d.wait_running("slow", Duration::from_secs(30));
    d.wait_running("quick", Duration::from_secs(30));

    let start = Instant::now();
    d.remove_manifest("quick.yaml");
    wait_for("quick to stop", Duration::from_secs(20), || {
        d.containers("quick").is_empty().then_some(())
    });
    let quick = start.elapsed();
    assert!(
        quick < Duration::from_secs(10),
        "a cooperative container stops at once (grace 30 s), took {quick:?}"
    );

    let start = Instant::now();
    d.remove_manifest("slow.yaml");
    // The exit code as the runtime has it, or as vk-cri reported it: the pod's containers are
    // removed milliseconds after they stop, which a poll of the runtime can miss.
    let exit_code = wait_for("slow to be killed", Duration::from_secs(20), || {
        d.containers("slow")
            .into_iter()
            .find(|c| c.state.enum_value_or_default() == ContainerState::CONTAINER_EXITED)
            .map(|c| c.exit_code)
            .or_else(|| reported_exit_code(&d.log(), "slow"))
    });
    let slow = start.elapsed();
    assert_eq!(exit_code, 137, "killed with SIGKILL after the grace period");
    assert!(
        slow >= Duration::from_millis(2800),
        "killed before its 3 s grace period: {slow:?}"
    );
    d.wait_no_sandboxes(Duration::from_secs(20));
}

#[test]
fn a_restarted_daemon_adopts_running_containers_without_restarting_them() {
    let mut d = Daemon::new("adopt");
    d.start();
    d.put_manifest(
        "keep.yaml",
        &manifest(
            "keep",
            "Always",
            2,
            &[],
            &[("a", COOPERATIVE), ("b", COOPERATIVE)],
        ),
    );
    let a = d.wait_running("a", Duration::from_secs(30));
    let b = d.wait_running("b", Duration::from_secs(30));
    let sandboxes: Vec<String> = d.sandboxes().into_iter().map(|s| s.id).collect();
    d.kill();
    let before_restart = d.log().len();

    d.start();
    d.wait_log_since(
        before_restart,
        "static pod default/keep-",
        Duration::from_secs(10),
    );
    // Several relists and syncs later, nothing was touched.
    std::thread::sleep(Duration::from_secs(4));
    for (name, before) in [("a", &a), ("b", &b)] {
        let now = d.containers(name);
        assert_eq!(now.len(), 1, "{name}: no new container");
        assert_eq!(now[0].id, before.id, "{name}: same container");
        assert_eq!(
            now[0].state.enum_value_or_default(),
            ContainerState::CONTAINER_RUNNING
        );
        assert_eq!(
            now[0].started_at, before.started_at,
            "{name}: not restarted"
        );
    }
    let after: Vec<String> = d.sandboxes().into_iter().map(|s| s.id).collect();
    assert_eq!(after, sandboxes, "no sandbox duplicated");
    let log = d.log()[before_restart..].to_string();
    assert!(
        !log.contains("Created container"),
        "nothing created after the restart:\n{log}"
    );
}

#[test]
fn a_pod_removed_while_the_daemon_was_down_is_cleaned_up() {
    let mut d = Daemon::new("orphan");
    d.start();
    d.put_manifest(
        "gone.yaml",
        &manifest("gone", "Always", 2, &[], &[("c", COOPERATIVE)]),
    );
    d.wait_running("c", Duration::from_secs(30));
    d.kill();
    d.remove_manifest("gone.yaml");
    d.start();
    d.wait_no_sandboxes(Duration::from_secs(30));
    d.wait_log("no pod source knows it", Duration::from_secs(5));
}

#[test]
fn a_changed_static_pod_starts_after_its_previous_instance_stopped() {
    let mut d = Daemon::new("replace");
    let out = d.dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    // Each version notes its start, and its stop a second after SIGTERM (a server draining).
    let pod = |v: u32| {
        let script = format!(
            "echo start-{v} >> /out/log; trap 'sleep 1; echo stop-{v} >> /out/log; exit 0' TERM; while true; do sleep 0.1; done"
        );
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 10\n  volumes:\n  - name: out\n    hostPath:\n      path: {}\n  containers:\n  - name: web\n    image: {image}\n    command: [sh, -c, {}]\n    volumeMounts:\n    - name: out\n      mountPath: /out\n",
            out.display(),
            serde_json::to_string(&script).unwrap()
        )
    };
    d.start();
    d.put_manifest("web.yaml", &pod(1));
    d.wait_running("web", Duration::from_secs(30));
    d.put_manifest("web.yaml", &pod(2));
    let log = wait_for("the new version started", Duration::from_secs(30), || {
        let log = std::fs::read_to_string(out.join("log")).unwrap_or_default();
        log.contains("start-2").then_some(log)
    });
    assert_eq!(
        log,
        "start-1\nstop-1\nstart-2\n",
        "the new instance started only once the old one had stopped:\n{}",
        d.log()
    );
    d.wait_log("waits for the instance with uid", Duration::from_secs(1));
}

#[test]
fn an_orphan_is_stopped_with_sigterm_and_the_kubelets_shutdown_window() {
    let mut d = Daemon::new("orphan-term");
    let out = d.dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let image = env::var("VKCRI_BUSYBOX_IMAGE");
    // The first container writes a file when SIGTERM arrives and exits; the second ignores it
    // and is killed once the window is over.
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: term\nspec:\n  hostNetwork: true\n  terminationGracePeriodSeconds: 30\n  volumes:\n  - name: out\n    hostPath:\n      path: {}\n  containers:\n  - name: polite\n    image: {image}\n    command: [sh, -c, \"trap 'echo TERM > /out/polite; exit 0' TERM; while true; do sleep 0.1; done\"]\n    volumeMounts:\n    - name: out\n      mountPath: /out\n  - name: stubborn\n    image: {image}\n    command: [sh, -c, {}]\n",
        out.display(),
        serde_json::to_string(STUBBORN).unwrap()
    );
    d.start();
    d.put_manifest("term.yaml", &pod);
    d.wait_running("polite", Duration::from_secs(30));
    d.wait_running("stubborn", Duration::from_secs(30));
    d.kill();
    d.remove_manifest("term.yaml");
    d.start();
    wait_for("the orphan's cleanup", Duration::from_secs(30), || {
        d.log().contains("no pod source knows it").then_some(())
    });
    let began = Instant::now();
    d.wait_no_sandboxes(Duration::from_secs(30));
    let took = began.elapsed();
    assert_eq!(
        std::fs::read_to_string(out.join("polite")).unwrap_or_default(),
        "TERM\n",
        "the container got SIGTERM before the sandbox went:\n{}",
        d.log()
    );
    // The kubelet stops an orphan's containers with a 2 s window (its grace override of 1 s,
    // raised to the minimum), not the spec's 30 s it no longer knows.
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(15),
        "the stubborn container was killed after the window, not at once nor after 30 s: {took:?}"
    );
}

#[test]
fn a_manifest_directory_that_cannot_be_read_stops_no_pod() {
    let mut d = Daemon::new("nodir");
    d.start();
    d.put_manifest(
        "stay.yaml",
        &manifest("stay", "Always", 2, &[], &[("c", COOPERATIVE)]),
    );
    let before = d.wait_running("c", Duration::from_secs(30));
    d.kill();
    // A mistyped or unmounted path at the next start: the pod it defined keeps running.
    let moved = d.manifests().with_extension("moved");
    std::fs::rename(d.manifests(), &moved).unwrap();
    let before_restart = d.log().len();
    d.start();
    d.wait_log_since(
        before_restart,
        "until the directory can be read",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_secs(4));
    let log = d.log()[before_restart..].to_string();
    assert!(!log.contains("removing sandbox"), "{log}");
    let now = d.containers("c");
    assert_eq!(now.len(), 1, "{log}");
    assert_eq!(now[0].id, before.id);
    assert_eq!(
        now[0].state.enum_value_or_default(),
        ContainerState::CONTAINER_RUNNING,
        "{log}"
    );

    // Readable again: the same pod, adopted, not restarted; and cleanup works again.
    std::fs::rename(&moved, d.manifests()).unwrap();
    d.wait_log_since(
        before_restart,
        "static pod default/stay-",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_secs(2));
    let again = d.containers("c");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, before.id, "not restarted");
    d.remove_manifest("stay.yaml");
    d.wait_no_sandboxes(Duration::from_secs(30));
}

#[test]
fn two_nodes_on_one_containerd_leave_each_other_alone() {
    let mut one = Daemon::new("node-one");
    let mut two = Daemon::new("node-two");
    one.start();
    two.start();
    one.put_manifest(
        "p.yaml",
        &manifest("p", "Always", 2, &[], &[("c", COOPERATIVE)]),
    );
    two.put_manifest(
        "p.yaml",
        &manifest("p", "Always", 2, &[], &[("c", COOPERATIVE)]),
    );
    let c1 = one.wait_running("c", Duration::from_secs(30));
    let c2 = two.wait_running("c", Duration::from_secs(30));
    assert_ne!(c1.id, c2.id);

    // Node one's pod goes; node two's stays exactly as it was, also after node one's
    // housekeeping ran for a while.
    one.remove_manifest("p.yaml");
    one.wait_no_sandboxes(Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(3));
    let still = two.containers("c");
    assert_eq!(still.len(), 1);
    assert_eq!(still[0].id, c2.id);
    assert_eq!(
        still[0].state.enum_value_or_default(),
        ContainerState::CONTAINER_RUNNING
    );
    let rt = runtime();
    assert!(rt.container_status(&c2.id).is_ok());
}

#[test]
fn bad_pods_get_the_kubelets_reasons_while_a_good_pod_keeps_running() {
    let mut d = Daemon::new("bad");
    d.start();
    let registry = env::var("VKCRI_REGISTRY");
    d.put_manifest(
        "good.yaml",
        &manifest("good", "Always", 2, &[], &[("ok", COOPERATIVE)]),
    );
    d.put_manifest(
        "missing-image.yaml",
        &manifest("missing-image", "Always", 2, &[], &[("c", "true")]).replace(
            &env::var("VKCRI_BUSYBOX_IMAGE"),
            &format!("{registry}/vk-cri/no-such-image:1"),
        ),
    );
    d.put_manifest(
        "no-command.yaml",
        &manifest("no-command", "Always", 2, &[], &[("c", "true")])
            .replace("command: [sh, -c, \"true\"]", "command: [/no/such/binary]"),
    );
    d.put_manifest(
        "never-pull.yaml",
        &manifest("never-pull", "Always", 2, &[], &[("c", "true")])
            .replace(
                &env::var("VKCRI_BUSYBOX_IMAGE"),
                &format!("{registry}/vk-cri/absent:1"),
            )
            .replace("    command:", "    imagePullPolicy: Never\n    command:"),
    );
    d.put_manifest(
        "not-a-pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: []\n",
    );
    d.wait_running("ok", Duration::from_secs(30));
    d.wait_pod_log(
        "missing-image",
        "Pending c=waiting:ErrImagePull",
        Duration::from_secs(30),
    );
    d.wait_pod_log(
        "missing-image",
        "Pending c=waiting:ImagePullBackOff",
        Duration::from_secs(30),
    );
    d.wait_log("Failed to pull image", Duration::from_secs(5));
    d.wait_pod_log("no-command", "", Duration::from_secs(30));
    d.wait_log("c=waiting:RunContainerError", Duration::from_secs(30));
    d.wait_pod_log(
        "never-pull",
        "Pending c=waiting:ErrImageNeverPull",
        Duration::from_secs(30),
    );
    d.wait_log(
        "not-a-pod.yaml: invalid pod: spec.containers: at least one container is required",
        Duration::from_secs(10),
    );
    let ok = d.containers("ok");
    assert_eq!(ok.len(), 1, "the good pod was never disturbed");
    assert_eq!(
        ok[0].state.enum_value_or_default(),
        ContainerState::CONTAINER_RUNNING
    );
}

/// The exit code in the daemon's status line for `container` (`… slow=terminated:Error(137)`).
fn reported_exit_code(log: &str, container: &str) -> Option<i32> {
    let at = log.find(&format!(" {container}=terminated:"))?;
    let rest = &log[at..];
    let open = rest.find('(')?;
    let close = rest.find(')')?;
    rest.get(open + 1..close)?.parse().ok()
}

#[test]
fn the_hello_web_example_answers_and_stops_cleanly_on_sigterm() {
    let mut d = Daemon::new("hello-web");
    let port = crate::daemon::free_port();
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/examples/hello-web.yaml"
    );
    let text = std::fs::read_to_string(file).unwrap();
    // The image from the local registry and a free port; the rest as shipped.
    let yaml = text
        .replace(
            "image: busybox:1.36",
            &format!("image: {}", env::var("VKCRI_BUSYBOX_IMAGE")),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    assert_ne!(yaml, text);
    d.start();
    d.put_manifest("hello-web.yaml", &yaml);
    let body = wait_for("hello-web answers", Duration::from_secs(30), || {
        let mut r = ureq::get(&format!("http://127.0.0.1:{port}/"))
            .call()
            .ok()?;
        r.body_mut().read_to_string().ok()
    });
    assert!(
        body.starts_with("hello from vk-cri, pod hello-web-"),
        "{body}"
    );

    let start = Instant::now();
    d.remove_manifest("hello-web.yaml");
    let exit_code = wait_for("hello-web to stop", Duration::from_secs(20), || {
        d.containers("httpd")
            .into_iter()
            .find(|c| c.state.enum_value_or_default() == ContainerState::CONTAINER_EXITED)
            .map(|c| c.exit_code)
            .or_else(|| reported_exit_code(&d.log(), "httpd"))
    });
    let took = start.elapsed();
    assert_eq!(exit_code, 0, "stopped by SIGTERM, not killed:\n{}", d.log());
    assert!(
        took < Duration::from_secs(4),
        "stopped at once, not after its 5 s grace period: {took:?}"
    );
    d.wait_no_sandboxes(Duration::from_secs(20));
}

#[test]
fn sigterm_stops_the_daemon_cleanly_and_the_next_start_adopts_the_pods() {
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut d = Daemon::new("sigterm");
        d.start();
        d.put_manifest(
            "keep.yaml",
            &manifest("keep", "Always", 2, &[], &[("c", COOPERATIVE)]),
        );
        let before = d.wait_running("c", Duration::from_secs(30));
        let code = d.stop_with(signal, Duration::from_secs(15));
        let log = d.log();
        assert_eq!(code, Some(0), "{signal}: a clean stop exits 0:\n{log}");
        assert!(
            log.contains(
                "stopping: 1 pods keep running in the runtime; the next start adopts them"
            ),
            "{log}"
        );
        let still = d.containers("c");
        assert_eq!(still.len(), 1);
        assert_eq!(
            (still[0].id.as_str(), still[0].state.enum_value_or_default()),
            (before.id.as_str(), ContainerState::CONTAINER_RUNNING),
            "the pod keeps running"
        );

        let before_restart = log.len();
        d.start();
        d.wait_log_since(
            before_restart,
            "adopted from the runtime",
            Duration::from_secs(10),
        );
        std::thread::sleep(Duration::from_secs(2));
        let again = d.containers("c");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, before.id, "adopted, not restarted");
        let log = d.log()[before_restart..].to_string();
        assert!(
            log.contains(&format!("static pod default/keep-{} (uid ", d.node)),
            "{log}"
        );
        assert!(
            log.contains(") found"),
            "the first scan finds, it does not add:\n{log}"
        );
        assert!(!log.contains("Created container"), "{log}");
    }
}

#[test]
fn a_second_daemon_with_the_same_node_name_on_the_same_runtime_refuses_to_start() {
    let mut one = Daemon::new("same-node");
    one.start();
    one.wait_log("static pods from", Duration::from_secs(10));
    let mut two = Daemon::new("same-node-2");
    two.node = one.node.clone();
    let (code, log) = two.run_to_exit(Duration::from_secs(15));
    assert_eq!(code, Some(5), "the node name is taken: {log}");
    assert!(
        log.contains(&format!(
            "another virtual-kubelet runs as node {} on ",
            one.node
        )),
        "{log}"
    );
    // Another node name on the same runtime is fine.
    let mut three = Daemon::new("other-node");
    three.start();
    three.wait_log("static pods from", Duration::from_secs(10));
    assert!(!three.log().contains("another virtual-kubelet"));
}

#[test]
fn start_up_failures_exit_with_a_code_by_kind() {
    let dir = env::Scratch::new("exit-codes");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_virtual-kubelet"))
            .args(["--nodename", &env::unique("exit-codes")])
            .args(["--log-dir", &dir.0.join("logs").to_string_lossy()])
            .args(["--pods-dir", &dir.0.join("pods").to_string_lossy()])
            .args(["--volumes-dir", &dir.0.join("volumes").to_string_lossy()])
            .args(["--address", "127.0.0.1", "--port"])
            .arg(crate::daemon::free_port().to_string())
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("run virtual-kubelet");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let manifests = dir.0.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let manifests = manifests.to_string_lossy().into_owned();
    let socket = env::cri_socket().to_string_lossy().into_owned();
    // Nothing to run: a usage error.
    let (code, log) = run(&["--cri-socket", &socket]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("nothing to run"), "{log}");
    // The runtime cannot be reached.
    let missing = dir.0.join("no-such.sock").to_string_lossy().into_owned();
    let (code, log) = run(&["--cri-socket", &missing, "--pod-manifest-path", &manifests]);
    assert_eq!(code, Some(3), "{log}");
    assert!(log.contains("is containerd running"), "{log}");
    // The kubeconfig cannot be read.
    let kubeconfig = dir
        .0
        .join("no-such-kubeconfig")
        .to_string_lossy()
        .into_owned();
    let (code, log) = run(&["--cri-socket", &socket, "--kubeconfig", &kubeconfig]);
    assert_eq!(code, Some(4), "{log}");
    assert!(log.contains("no-such-kubeconfig"), "{log}");
}

#[test]
fn an_unreadable_serving_certificate_is_a_usage_error() {
    let mut d = Daemon::new("bad-cert")
        .arg("--tls-cert-file")
        .arg("/nonexistent/kubelet.crt")
        .arg("--tls-private-key-file")
        .arg("/nonexistent/kubelet.key");
    let (code, log) = d.run_to_exit(Duration::from_secs(15));
    assert_eq!(
        code,
        Some(2),
        "the flags name a file that is not there: {log}"
    );
    assert!(log.contains("/nonexistent/kubelet.crt"), "{log}");
}

/// A plain HTTP/1.1 GET (or other method) on 127.0.0.1:`port`: status, content type, body.
fn plain_http(port: u16, method: &str, target: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0);
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

#[test]
fn the_healthz_port_answers_like_the_kubelets() {
    let port = crate::daemon::free_port();
    let mut d = Daemon::new("healthz")
        .arg("--healthz-port")
        .arg(&port.to_string());
    d.start();
    d.wait_log(
        &format!("healthz on http://127.0.0.1:{port}/healthz"),
        Duration::from_secs(30),
    );
    assert_eq!(
        plain_http(port, "GET", "/healthz"),
        (200, "text/plain; charset=utf-8".into(), "ok".into())
    );
    assert_eq!(
        plain_http(port, "GET", "/healthz?verbose").2,
        "[+]ping ok\nhealthz check passed\n"
    );
    assert_eq!(plain_http(port, "GET", "/healthz/ping").2, "ok");
    assert_eq!(
        plain_http(port, "POST", "/healthz").0,
        200,
        "any method, as Go's mux"
    );
    let (status, _, body) = plain_http(port, "GET", "/healthz/syncloop");
    assert_eq!(
        (status, body.as_str()),
        (404, "404 page not found\n"),
        "ping only on this port"
    );
    assert_eq!(plain_http(port, "GET", "/pods").0, 404);
    // Port 0 (the tests' default): no healthz server.
    assert!(
        !d.log().contains("failed to start the healthz server"),
        "{}",
        d.log()
    );
}
