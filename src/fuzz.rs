//! Bad input at scale (issue 19): every parser that reads what others write — watch lines,
//! CRI log lines, kubeconfigs, static pod manifests, KubeletConfiguration files, HTTP request
//! heads, bodies and chunked framing, kubelet API routes — is fed mutations of real inputs
//! from a seeded generator. None may panic; every error of a file loader names the file.
//!
//! Owns the generator (xorshift64*, a fixed seed: a failure is reproduced by its case number)
//! and the corpora. `make test` runs a few hundred cases per parser; `VKCRI_FUZZ_CASES=N` runs
//! N (what a longer `make chaos` run sets). Test-only: compiled into the unit tests, not the
//! daemon.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The fixed seed: the same cases every run.
const SEED: u64 = 0x5eed_1bad_c0ff_ee19;

/// Cases per parser: `VKCRI_FUZZ_CASES`, else 400.
fn cases() -> usize {
    std::env::var("VKCRI_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

/// xorshift64*: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that break parsers more often than random bytes do.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\0",
    b"%",
    b"%2F",
    b"..",
    b"/",
    b"?",
    b"&",
    b"=",
    b"-1",
    b"99999999999999999999999",
    b"1e999",
    b"null",
    b"true",
    b"\xff\xfe",
    "é€😀".as_bytes(),
    b"- ",
    b"  ",
    b"\t",
    b"*",
    b"&anchor",
    b"!!binary",
    b"0x",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 9999999999\r\n",
];

/// One mutation of `seed`: 1-4 of flip a byte, delete a range, insert a token, duplicate a
/// range, truncate.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(5) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below((len - at).min(16) + 1);
                out.drain(at..at + n);
            }
            2 => {
                let at = rng.below(len + 1);
                let token = TOKENS[rng.below(TOKENS.len())];
                out.splice(at..at, token.iter().copied());
            }
            3 if len > 0 => {
                let at = rng.below(len);
                let n = rng.below((len - at).min(64) + 1);
                let copy = out[at..at + n].to_vec();
                let to = rng.below(len + 1);
                out.splice(to..to, copy);
            }
            _ => out.truncate(rng.below(len + 1)),
        }
    }
    out
}

/// Runs `check` on every seed and on [`cases`] mutations of them; a panic fails the test with
/// the case's number and input.
fn fuzz(name: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(SEED
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)));
    let mut failure = None;
    for case in 0..seeds.len() + cases() {
        let input = match seeds.get(case) {
            Some(s) => s.clone(),
            None => {
                let seed = &seeds[rng.below(seeds.len())];
                mutate(&mut rng, seed)
            }
        };
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| check(&input))) {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failure = Some(format!(
                "{name}: case {case} panicked: {why}\ninput: {:?}",
                String::from_utf8_lossy(&input)
            ));
            break;
        }
    }
    if let Some(f) = failure {
        panic!("{f}");
    }
}

fn repo(rel: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded API server answers that are one JSON object each.
fn recorded_objects() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apiserver");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs {
        if let Ok(body) = std::fs::read(d.join("response-body.json")) {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                if v.get("kind").is_some() {
                    out.push(serde_json::to_vec(&v).unwrap());
                }
            }
        }
    }
    out
}

#[test]
fn watch_lines_never_panic() {
    use crate::kube::watch::decode_watch_line;
    use k8s_openapi::api::core::v1::{Node, Pod};
    let mut seeds = Vec::new();
    for (i, object) in recorded_objects().into_iter().enumerate().take(60) {
        let kind = ["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"][i % 5];
        let mut line = format!("{{\"type\":\"{kind}\",\"object\":").into_bytes();
        line.extend_from_slice(&object);
        line.extend_from_slice(b"}");
        seeds.push(line);
    }
    fuzz("watch line", &seeds, |line| {
        let _ = decode_watch_line::<Pod>(line);
        let _ = decode_watch_line::<Node>(line);
    });
}

#[test]
fn list_bodies_never_panic() {
    use k8s_openapi::api::core::v1::Pod;
    fuzz("list body", &recorded_objects(), |body| {
        let _ = crate::kube::watch::decode_page::<Pod>(body);
    });
}

#[test]
fn cri_log_lines_never_panic() {
    let seeds: Vec<Vec<u8>> = [
        "2026-12-07T10:00:00.123456789Z stdout F hello\n",
        "2026-12-07T10:00:00.123456789+01:00 stderr P part of a line",
        "2026-12-07T10:00:00Z stdout F \n",
        "2026-12-07T10:00:00.1Z stdout F:x tagged\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    fuzz("cri log line", &seeds, |line| {
        if let Some(parsed) = crate::server::logs::parse_line(line) {
            // What is parsed lies within the line.
            assert!(parsed.message.len() <= line.len());
        }
    });
}

#[test]
fn kubeconfigs_never_panic_and_their_errors_name_the_file() {
    let seeds = vec![
        repo("contrib/cluster/kubeconfig.template.yaml"),
        repo("contrib/cluster/bootstrap-kubeconfig.template.yaml"),
        b"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    tokenFile: token\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n".to_vec(),
    ];
    let path = Path::new("/fuzz/kubeconfig");
    let errors = AtomicUsize::new(0);
    fuzz("kubeconfig", &seeds, |text| {
        let read = |p: &Path| -> std::io::Result<Vec<u8>> {
            if p == path {
                Ok(text.to_vec())
            } else {
                Ok(b"token-from-file".to_vec())
            }
        };
        if let Err(e) = crate::kubeconfig::load_with(path, None, &read) {
            errors.fetch_add(1, Ordering::Relaxed);
            let msg = e.to_string();
            assert!(
                msg.contains("/fuzz/kubeconfig"),
                "the error names the file: {msg}"
            );
        }
    });
    assert!(
        errors.into_inner() > cases() / 4,
        "the mutations reach the errors"
    );
}

#[test]
fn manifests_never_panic_and_their_errors_name_the_file() {
    let mut seeds: Vec<Vec<u8>> = ["counter.yaml", "hello-web.yaml", "init-then-job.yaml"]
        .iter()
        .map(|f| repo(&format!("contrib/examples/{f}")))
        .collect();
    seeds.push(br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"i"}]}}"#.to_vec());
    let path = Path::new("/fuzz/pod.yaml");
    let errors = AtomicUsize::new(0);
    fuzz("manifest", &seeds, |content| {
        if let Err(e) = crate::static_pods::parse_manifest(path, content, "node", "t") {
            errors.fetch_add(1, Ordering::Relaxed);
            let msg = e.to_string();
            assert!(
                msg.contains("/fuzz/pod.yaml"),
                "the error names the file: {msg}"
            );
        }
    });
    assert!(
        errors.into_inner() > cases() / 4,
        "the mutations reach the errors"
    );
}

#[test]
fn kubelet_configurations_never_panic_and_their_errors_name_the_file() {
    let seeds = vec![
        repo("contrib/cluster/kubelet-config.yaml"),
        br#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","port":10250,"clusterDNS":["10.96.0.10"],"kubeReserved":{"cpu":"1"}}"#.to_vec(),
    ];
    let errors = AtomicUsize::new(0);
    fuzz("kubelet configuration", &seeds, |content| {
        let text = String::from_utf8_lossy(content);
        match crate::kubelet_config::parse("fuzz.yaml", &text) {
            Ok(file) => {
                // Whatever the file says becomes flags that clap and the checks refuse
                // cleanly, never a panic.
                let argv: Vec<std::ffi::OsString> = ["virtual-kubelet", "--kubeconfig", "k"]
                    .iter()
                    .map(Into::into)
                    .collect();
                if let Ok(flags) = crate::kubelet_config::apply_file(&argv, &file) {
                    let _ = crate::config::Config::from_flags(flags);
                }
            }
            Err(e) => {
                errors.fetch_add(1, Ordering::Relaxed);
                let msg = e.to_string();
                assert!(
                    msg.starts_with("--config fuzz.yaml: "),
                    "the error names the file: {msg}"
                );
            }
        }
    });
    assert!(
        errors.into_inner() > cases() / 4,
        "the mutations reach the errors"
    );
}

#[test]
fn http_heads_bodies_and_routes_never_panic() {
    use crate::httpd::request::{
        body_framing, parse_head, parse_query, split_target, ChunkedDecoder,
    };
    let seeds: Vec<Vec<u8>> = [
        "GET /containerLogs/default/web/c?follow=true&tailLines=10&sinceSeconds=5 HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /exec/default/web/c?command=sh&command=-c&command=id&input=1&output=1&tty=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n",
        "GET /portForward/default/web?port=8080&port=9090 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET /healthz/syncloop?verbose&exclude=log HTTP/1.0\r\n\r\n",
        "PUT /pods HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "GET /stats/summary?only_cpu_and_memory=true HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let routed = AtomicUsize::new(0);
    fuzz("http request", &seeds, |buf| {
        let Ok(Some(head)) = parse_head(buf, 64) else {
            return;
        };
        assert!(head.len <= buf.len());
        let _ = body_framing(&head.headers);
        let mut decoder = ChunkedDecoder::new(1 << 16);
        let mut out = Vec::new();
        let _ = decoder.feed(&buf[head.len..], &mut out);
        if let Ok((path, query)) = split_target(&head.target) {
            let query = parse_query(query);
            routed.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = crate::server::route::parse(&head.method, path, &query) {
                assert!(
                    (400..500).contains(&e.status),
                    "a route error is a 4xx: {e:?}"
                );
            }
            let _ = crate::server::route::subresource(path);
        }
    });
    // Most mutations break the head itself (what the head parser is fuzzed for); some reach
    // the router, which the next test fuzzes on its own.
    assert!(
        routed.into_inner() > cases() / 20,
        "the mutations reach the router"
    );
}

#[test]
fn kubelet_api_targets_never_panic_and_are_answered_4xx_when_wrong() {
    use crate::httpd::request::{parse_query, split_target};
    let seeds: Vec<Vec<u8>> = [
        "/containerLogs/default/web/c?follow=true&tailLines=10&sinceTime=2026-12-07T10:00:00Z&limitBytes=100&timestamps=1&previous=false",
        "/exec/default/web/0d2f-uid/c?command=sh&command=-c&command=echo%20hi&input=1&output=1&error=1&tty=0",
        "/attach/default/web/c?input=1&output=1&tty=1",
        "/portForward/default/web?port=8080&port=65535",
        "/healthz/ping?verbose&exclude=log&exclude=syncloop",
        "/stats/summary?only_cpu_and_memory=true",
        "/metrics/resource",
        "/runningpods/",
        "/configz",
        "/pods",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    let methods = ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS"];
    let routed = AtomicUsize::new(0);
    fuzz("kubelet api target", &seeds, |target| {
        let Ok(target) = std::str::from_utf8(target) else {
            return;
        };
        let Ok((path, query)) = split_target(target) else {
            return;
        };
        let query = parse_query(query);
        routed.fetch_add(1, Ordering::Relaxed);
        let method = methods[target.len() % methods.len()];
        if let Err(e) = crate::server::route::parse(method, path, &query) {
            assert!(
                (400..500).contains(&e.status),
                "a route error is a 4xx: {e:?}"
            );
            assert!(!e.message.is_empty());
        }
        let _ = crate::server::route::subresource(path);
    });
    assert!(
        routed.into_inner() > cases() / 2,
        "the mutations reach the router"
    );
}
