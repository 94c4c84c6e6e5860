//! The example workloads of contrib/cluster/examples/, read from their files and run as the
//! DaemonSet and Deployment controllers would create their pods, against the fake API server
//! and the real containerd. Only what a test machine cannot have is substituted: the image (the
//! local busybox), the command (a script that checks what the real binary would need, then
//! sleeps), host paths (moved under the test's directory, so the host's /run and /lib stay
//! untouched) and, for the web example, host networking on a free port (tests never connect to
//! the pod network).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::daemon::{free_port, wait_for, Daemon};
use crate::env;
use crate::support::fake_apiserver::{FakeApiServer, FakeConfig, Res};

/// The YAML documents of a file under contrib/cluster/examples/.
fn example(file: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib/cluster/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn of_kind(docs: &[Value], kind: &str) -> Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} in the example"))
}

/// The pod a controller makes from `template`, bound to `node`.
fn pod_from_template(template: &Value, name: &str, ns: &str, node: &str) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template["metadata"].clone(),
        "spec": template["spec"].clone(),
    });
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["namespace"] = json!(ns);
    pod["spec"]["nodeName"] = json!(node);
    pod
}

fn ready(f: &FakeApiServer, ns: &str, name: &str) -> bool {
    f.get_pod(ns, name)
        .and_then(|p| p.pointer("/status/conditions").cloned())
        .and_then(|c| {
            c.as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"] == "True")
        })
        .unwrap_or(false)
}

#[test]
fn the_kube_proxy_daemonset_example_runs_privileged_on_the_host_network_with_its_volumes() {
    let f = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("contrib-node"),
        inject_service_account_volume: true,
        ..FakeConfig::default()
    });
    let mut d = Daemon::with_api(&f, "contrib-kp");
    d.start();
    let node = f.node_name().to_string();

    let ds = of_kind(&example("kube-proxy-daemonset.yaml"), "DaemonSet");
    let ns = ds["metadata"]["namespace"].as_str().unwrap().to_string();
    let template = &ds["spec"]["template"];
    let sa = template["spec"]["serviceAccountName"].as_str().unwrap();
    f.create(
        Res::ServiceAccounts,
        &ns,
        json!({"metadata": {"name": sa, "namespace": ns}}),
    );
    f.put_configmap(&ns, "kube-proxy", &[("config.conf", "mode: iptables\n")]);

    let mut pod = pod_from_template(template, "kube-proxy-x7k2p", &ns, &node);
    let spec = &mut pod["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(
        spec["tolerations"][0]["operator"], "Exists",
        "the example tolerates vk-cri's taint"
    );
    // Host paths move under the test's directory; their types stay.
    for v in spec["volumes"].as_array_mut().unwrap() {
        if let Some(p) = v["hostPath"]["path"].as_str() {
            let moved = d.dir.0.join(format!("host{p}"));
            // What the host has: /lib/modules, and /run (FileOrCreate does not create the
            // parent directory, as with the kubelet).
            match v["hostPath"]["type"].as_str() {
                None => std::fs::create_dir_all(&moved).unwrap(),
                Some(_) => std::fs::create_dir_all(moved.parent().unwrap()).unwrap(),
            }
            v["hostPath"]["path"] = json!(moved.to_string_lossy());
        }
    }
    let c = &mut spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    // The real command line stays as the script's arguments, so $(NODE_NAME) is expanded as
    // kube-proxy would see it.
    let mut args = vec![
        json!("sh"),
        json!("-c"),
        json!(
            "test -f /var/lib/kube-proxy/config.conf && test -f /run/xtables.lock && \
             test -d /lib/modules && ! touch /lib/modules/w 2>/dev/null && \
             test -s /var/run/secrets/kubernetes.io/serviceaccount/token && \
             echo \"ok $NODE_NAME $0 $*\" || echo failed; \
             awk '/^CapEff/{print \"caps\", $2}' /proc/self/status; \
             trap 'exit 0' TERM; while true; do sleep 0.2; done"
        ),
    ];
    args.extend(c["command"].as_array().unwrap().iter().cloned());
    c["command"] = json!(args);
    c["image"] = json!(env::var("VKCRI_BUSYBOX_IMAGE"));
    f.create_pod(pod);

    d.wait_running("kube-proxy", Duration::from_secs(60));
    wait_for("kube-proxy Ready", Duration::from_secs(30), || {
        ready(&f, &ns, "kube-proxy-x7k2p").then_some(())
    });
    let log = wait_for("the check's output", Duration::from_secs(20), || {
        let logs = d.log_root();
        let text = std::fs::read_dir(&logs)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains("kube-proxy-x7k2p"))
            .map(|e| e.path().join("kube-proxy/0.log"))
            .find_map(|p| std::fs::read_to_string(p).ok())?;
        (!text.is_empty()).then_some(text)
    });
    assert!(
        log.contains(&format!(
            "ok {node} /usr/local/bin/kube-proxy --config=/var/lib/kube-proxy/config.conf --hostname-override={node}"
        )),
        "{log}"
    );
    // Privileged: every capability, CAP_SYS_ADMIN (21) among them, where a default
    // container has no CAP_SYS_ADMIN.
    let caps = log
        .lines()
        .find_map(|l| l.split("caps ").nth(1))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in {log}"));
    assert_ne!(caps & (1 << 21), 0, "CapEff {caps:x}");
    // On the host's network: the pod's IP is the host's.
    let pod = f.get_pod(&ns, "kube-proxy-x7k2p").unwrap();
    assert_eq!(pod["status"]["podIP"], pod["status"]["hostIP"], "{pod}");
    f.delete_pod(&ns, "kube-proxy-x7k2p", Some(1));
    d.wait_no_sandboxes(Duration::from_secs(30));
}

#[test]
fn the_web_example_becomes_ready_through_its_readiness_probe() {
    let f = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("contrib-web"),
        ..FakeConfig::default()
    });
    let mut d = Daemon::with_api(&f, "contrib-web");
    d.start();
    let node = f.node_name().to_string();

    let docs = example("web-with-readiness.yaml");
    let deploy = of_kind(&docs, "Deployment");
    let service = of_kind(&docs, "Service");
    let template = &deploy["spec"]["template"];
    let labels = &template["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "the Service selects the Deployment's pods");
    }
    assert_eq!(
        template["spec"]["tolerations"][0]["key"],
        "virtual-kubelet.io/provider"
    );

    let port = free_port();
    let mut pod = pod_from_template(template, "web-5d9c8-abcde", "default", &node);
    let c = &mut pod["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    let script = c["command"][2]
        .as_str()
        .unwrap()
        .replace("8080", &port.to_string());
    assert_ne!(script, c["command"][2].as_str().unwrap());
    c["command"][2] = json!(script);
    c["ports"][0]["containerPort"] = json!(port);
    c["image"] = json!(env::var("VKCRI_BUSYBOX_IMAGE"));
    pod["spec"]["hostNetwork"] = json!(true);
    f.create_pod(pod);

    wait_for("web Ready", Duration::from_secs(40), || {
        ready(&f, "default", "web-5d9c8-abcde").then_some(())
    });
    let body = ureq::get(&format!("http://127.0.0.1:{port}/"))
        .call()
        .expect("the web pod answers")
        .body_mut()
        .read_to_string()
        .unwrap();
    assert_eq!(body, "hello\n");
    f.delete_pod("default", "web-5d9c8-abcde", Some(1));
    d.wait_no_sandboxes(Duration::from_secs(30));
}

/// `make check-static` with its output redirected, as `make static > build.log 2>&1` does: no
/// recipe may reopen its own stdout or stderr (a `tee /dev/stderr` truncated such a log to its
/// last lines and NUL bytes). `file` and `readelf` are stand-ins on PATH, and the "binary" a
/// script: what is checked is the recipe, not a build.
#[test]
fn check_static_keeps_a_redirected_log_whole() {
    use std::io::{Seek, Write};
    use std::os::unix::fs::PermissionsExt;
    let dir = env::Scratch::new("check-static");
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = |name: &str, body: &str| {
        let p = bin.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    };
    script(
        "file",
        "echo \"$1: ELF 64-bit LSB executable, x86-64, statically linked, stripped\"",
    );
    script(
        "readelf",
        "echo '  [ 9] .text.hot         PROGBITS        0000000000201000 001000 2000000 00  AX  0   0 4096'",
    );
    let daemon = script("virtual-kubelet", "echo 'virtual-kubelet 0.0.0-test'");
    let log_path = dir.0.join("build.log");
    let mut log = std::fs::File::create(&log_path).unwrap();
    log.write_all(b"the build's own output\n").unwrap();
    log.seek(std::io::SeekFrom::End(0)).unwrap();
    let status = std::process::Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("check-static")
        .arg(format!("STATIC_BIN={}", daemon.display()))
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run make");
    let text = std::fs::read(&log_path).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(status.success(), "{text}");
    assert!(
        !text.contains('\0'),
        "NUL bytes: the log was truncated under make:\n{text:?}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "the build's own output", "{text}");
    for (i, want) in [
        "statically linked",
        "text layout: .text.hot 33554 kB",
        "size: 0.0 MB",
        "virtual-kubelet 0.0.0-test",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            lines
                .iter()
                .skip(1)
                .nth(i)
                .is_some_and(|l| l.contains(want)),
            "line {} should contain {want:?}:\n{text}",
            i + 2
        );
    }
}

/// No file and no top-level module of the crate imports, through others, one that imports it,
/// and the pure pod core (`src/pod/`) imports no executor, prober or reporter and uses no thread,
/// lock, filesystem, log or clock (contrib/tools/import-cycles.py).
#[test]
fn the_crate_has_no_import_cycle_and_a_pure_pod_core() {
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/tools/import-cycles.py"
        ))
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/src"))
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("cycle"), "{text}");
    assert!(!text.contains("pure core"), "{text}");
}

/// The layering check above is not vacuous: a copy of the crate whose pure core spawns a thread
/// and calls into the executor is refused, naming the file and what it did.
#[test]
fn the_layering_check_refuses_a_core_file_that_calls_the_executor() {
    let scratch = env::Scratch::new("layers");
    let src = scratch.0.join("src");
    let status = std::process::Command::new("cp")
        .args(["-r", concat!(env!("CARGO_MANIFEST_DIR"), "/src")])
        .arg(&src)
        .status()
        .expect("cp");
    assert!(status.success());
    let plan = src.join("pod/plan.rs");
    let text = std::fs::read_to_string(&plan).unwrap();
    let (head, rest) = text.split_once("\nuse ").unwrap();
    std::fs::write(
        &plan,
        format!(
            "{head}\nfn breach() {{ std::thread::spawn(|| crate::executor::sync::poke()); }}\nuse {rest}"
        ),
    )
    .unwrap();
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/tools/import-cycles.py"
        ))
        .arg(&src)
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("pure core: pod::plan imports executor::sync"),
        "{text}"
    );
    assert!(
        text.contains("pure core: pod::plan uses std::thread"),
        "{text}"
    );
    assert!(
        text.contains("cycle: executor::sync <-> pod::plan"),
        "{text}"
    );
}

/// A file under contrib/, as text.
fn contrib_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

fn yaml_docs(rel: &str) -> Vec<Value> {
    contrib_file(rel)
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .collect()
}

#[test]
fn the_bootstrap_templates_join_a_node_and_the_unit_and_config_file_parse() {
    // The token Secret, as step 1 creates it.
    let (id, secret) = ("vkcri1", "0123456789abcdef");
    let expiration = (k8s_openapi::jiff::Timestamp::now()
        + k8s_openapi::jiff::SignedDuration::from_secs(3600))
    .to_string();
    let token_yaml = contrib_file("cluster/bootstrap-token.yaml.template")
        .replace("TOKEN_ID", id)
        .replace("TOKEN_SECRET", secret)
        .replace("EXPIRATION", &expiration);
    let token: Value = serde_saphyr::from_str(&token_yaml).unwrap();
    let f = FakeApiServer::start_with(FakeConfig {
        node_name: env::unique("contrib-node"),
        ..FakeConfig::default()
    });
    f.create(Res::Secrets, "kube-system", token.clone());
    // The bindings name the group the token carries and the node group.
    let extra = token["stringData"]["auth-extra-groups"].as_str().unwrap();
    let bindings: Vec<(String, String)> = yaml_docs("cluster/bootstrap-rbac.yaml")
        .iter()
        .map(|b| {
            assert_eq!(b["kind"], "ClusterRoleBinding");
            (
                b["roleRef"]["name"].as_str().unwrap().to_string(),
                b["subjects"][0]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        bindings,
        [
            ("system:node-bootstrapper".to_string(), extra.to_string()),
            (
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient".to_string(),
                extra.to_string()
            ),
            (
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient".to_string(),
                "system:nodes".to_string()
            ),
        ]
    );

    // The bootstrap kubeconfig from its template; the node joins with it.
    use base64::Engine as _;
    let kubeconfig = contrib_file("cluster/bootstrap-kubeconfig.template.yaml")
        .replace("https://SERVER:6443", &f.url())
        .replace(
            "BASE64_OF_CLUSTER_CA_CRT",
            &base64::engine::general_purpose::STANDARD.encode(f.ca_pem()),
        )
        .replace("TOKEN_ID.TOKEN_SECRET", &format!("{id}.{secret}"));
    let mut d = Daemon::with_bootstrap(&f, "contrib-bootstrap", "unused.token");
    std::fs::write(d.dir.0.join("bootstrap-kubelet.conf"), kubeconfig).unwrap();
    d.start();
    let csr = wait_for(
        "the node's certificate signing request",
        Duration::from_secs(30),
        || f.list(Res::Csrs, None).into_iter().next(),
    );
    assert_eq!(csr["spec"]["username"], format!("system:bootstrap:{id}"));
    assert_eq!(
        csr["spec"]["groups"],
        json!(["system:bootstrappers", extra, "system:authenticated"]),
        "the Secret's auth-extra-groups, as the bootstrap authenticator adds them"
    );
    f.approve_and_issue_csr(
        csr["metadata"]["name"].as_str().unwrap(),
        Duration::from_secs(3600),
    );
    wait_for("the node to register", Duration::from_secs(30), || {
        f.get_node(&d.node)
    });

    // The example configuration reads with no warning and validates.
    let config_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/cluster/kubelet-config.yaml");
    let file = vk_cri::kubelet_config::parse(
        "kubelet-config.yaml",
        &contrib_file("cluster/kubelet-config.yaml"),
    )
    .unwrap();
    assert!(file.warnings.is_empty(), "{:?}", file.warnings);
    // The unit's command line, with that file, parses and validates.
    let unit = contrib_file("systemd/vk-cri.service");
    let exec = unit
        .split("ExecStart=")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap();
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    for line in exec.lines() {
        let line = line.trim().trim_end_matches('\\');
        if line.starts_with('#') || line.is_empty() {
            break;
        }
        argv.extend(
            line.split_whitespace()
                .map(|w| w.replace("%H", "node-1").into()),
        );
    }
    assert_eq!(argv[0], "/usr/local/bin/virtual-kubelet");
    let i = argv.iter().position(|a| a == "--config").unwrap();
    argv[i + 1] = config_path.clone().into_os_string();
    let flags = vk_cri::kubelet_config::apply_file(&argv, &file).unwrap();
    let config = vk_cri::config::Config::from_flags(flags).unwrap();
    assert_eq!(config.node_name, "node-1");
    assert!(config.bootstrap_kubeconfig.is_some() && config.rotate_certificates);
    assert_eq!(
        config.client_ca_file.as_deref(),
        Some(Path::new("/etc/vk-cri/ca.crt"))
    );
    assert_eq!(
        config.cri_socket,
        Path::new("/run/containerd/containerd.sock")
    );
    assert_eq!(
        config.cluster_dns,
        [std::net::IpAddr::from([10, 96, 0, 10])]
    );
}
