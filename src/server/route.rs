//! The kubelet API's routes as a pure parse: method + path + query → [`Route`], or a
//! [`RouteError`] carrying the status code and a message that names what was wrong.
//!
//! Owns: path splitting and percent-decoding (a `.`/`..` segment, an encoded `/` or an empty
//! segment is refused with 400, never normalised), the query parameters of every route and the
//! kubelet's validation of them (`PodLogOptions`: 400 when a value does not parse, 422 when it
//! parses but is invalid). Must not do I/O, authenticate or know whether a pod exists.

use k8s_openapi::jiff::Timestamp;
use percent_encoding::percent_decode_str;

/// A pod named in a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    /// Only when the path carries it (`/exec/{ns}/{pod}/{uid}/{container}`).
    pub uid: Option<String>,
}

/// The streams an exec or attach asks for (`input`, `output`, `error`, `tty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOpts {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// `PodLogOptions` as the kubelet reads them from the query (the container is in the path).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub limit_bytes: Option<u64>,
    pub since_seconds: Option<u64>,
    /// `sinceTime`, RFC 3339.
    pub since_time: Option<Timestamp>,
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz` (`check: None`) or `/healthz/NAME`, with `?verbose` and `?exclude=NAME`.
    Healthz {
        check: Option<String>,
        verbose: bool,
        exclude: Vec<String>,
    },
    /// `/pods`: the pods on this node.
    Pods,
    /// `/runningpods/`: the pods the runtime runs.
    RunningPods,
    ContainerLogs {
        pod: PodRef,
        container: String,
        options: LogOptions,
    },
    Exec {
        pod: PodRef,
        container: String,
        command: Vec<String>,
        streams: StreamOpts,
    },
    Attach {
        pod: PodRef,
        container: String,
        streams: StreamOpts,
    },
    PortForward {
        pod: PodRef,
        /// `port` parameters (WebSocket clients name them in the query; SPDY clients per stream).
        ports: Vec<u16>,
    },
    /// `/stats/summary` (`only_cpu_and_memory` changes nothing: only cpu and memory are
    /// reported).
    StatsSummary,
    /// `/metrics`: vk-cri's own counters and histograms, Prometheus text.
    Metrics,
    /// `/metrics/resource`: node, pod and container cpu and memory, Prometheus text, as
    /// metrics-server scrapes it.
    MetricsResource,
    /// `/configz`: the effective configuration (any method, as the kubelet's handler).
    Configz,
}

/// Why a request cannot be routed: the status to answer and the message for the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RouteError {
    pub status: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> RouteError {
    RouteError {
        status: 400,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> RouteError {
    RouteError {
        status: 422,
        message: message.into(),
    }
}

fn not_found() -> RouteError {
    RouteError {
        status: 404,
        message: "404 page not found".into(),
    }
}

fn method_not_allowed(method: &str, path: &str) -> RouteError {
    RouteError {
        status: 405,
        message: format!("method {method} is not allowed on {path}"),
    }
}

/// The subresource of `nodes` a request is authorized against, as the kubelet maps paths:
/// `/stats/*` → `stats`, `/metrics*` → `metrics`, `/logs/*` → `log`, anything else → `proxy`.
pub fn subresource(path: &str) -> &'static str {
    let under = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}/"));
    if under("/stats") {
        "stats"
    } else if under("/metrics") {
        "metrics"
    } else if under("/logs") {
        "log"
    } else if under("/spec") {
        "spec"
    } else {
        "proxy"
    }
}

/// The `path` and `long_running` labels of `kubelet_http_requests_*` for a request: the first
/// path segment as the kubelet uses it (known roots only; anything else is `other`), and whether
/// it is a streaming request.
pub fn metrics_labels(path: &str) -> (&'static str, bool) {
    let root = path.trim_start_matches('/').split('/').next().unwrap_or("");
    const ROOTS: [&str; 13] = [
        "",
        "healthz",
        "pods",
        "runningpods",
        "stats",
        "metrics",
        "containerLogs",
        "logs",
        "exec",
        "attach",
        "portForward",
        "run",
        "spec",
    ];
    let root = ROOTS
        .iter()
        .find(|r| **r == root)
        .copied()
        .unwrap_or("other");
    (root, matches!(root, "exec" | "attach" | "portForward"))
}

/// The API verb of an HTTP method, as the kubelet's authorizer sees it.
pub fn verb(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "get",
    }
}

/// Splits a raw (still encoded) path into decoded segments. A trailing slash is allowed
/// (`/runningpods/`); `.`/`..`, empty segments and encoded slashes are refused.
pub fn segments(raw_path: &str) -> Result<Vec<String>, RouteError> {
    let trimmed = raw_path
        .strip_prefix('/')
        .ok_or_else(|| bad(format!("invalid path {raw_path:?}: it must start with /")))?;
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for raw in trimmed.split('/') {
        let seg = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| bad(format!("invalid path {raw_path:?}: a segment is not utf-8")))?
            .into_owned();
        if seg.is_empty() {
            return Err(bad(format!("invalid path {raw_path:?}: empty segment")));
        }
        if seg == "." || seg == ".." {
            return Err(bad(format!(
                "invalid path {raw_path:?}: {seg:?} segments are not allowed"
            )));
        }
        if seg.contains('/') || seg.contains('\0') {
            return Err(bad(format!(
                "invalid path {raw_path:?}: a segment contains an encoded '/' or NUL"
            )));
        }
        out.push(seg);
    }
    Ok(out)
}

fn first<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A query boolean the way Kubernetes converts them: absent, `0` or `false` is false, anything
/// else is true.
fn query_bool(query: &[(String, String)], key: &str) -> bool {
    match first(query, key) {
        None => false,
        Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

fn query_int(query: &[(String, String)], key: &str) -> Result<Option<i64>, RouteError> {
    first(query, key)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                bad(format!(
                    "invalid query parameter {key}={v:?}: not an integer"
                ))
            })
        })
        .transpose()
}

/// Reads and validates `PodLogOptions` from the query.
pub fn log_options(query: &[(String, String)]) -> Result<LogOptions, RouteError> {
    // The kubelet still honours the old `tail` parameter; `tail=all` means no tail.
    let mut tail = query_int(query, "tailLines")?;
    if let Some(t) = first(query, "tail") {
        tail = match t {
            "all" => None,
            _ => Some(t.parse::<i64>().map_err(|_| {
                bad(format!(
                    "invalid query parameter tail={t:?}: not an integer"
                ))
            })?),
        };
    }
    let limit = query_int(query, "limitBytes")?;
    let since_seconds = query_int(query, "sinceSeconds")?;
    let since_time = first(query, "sinceTime")
        .map(|v| {
            v.parse::<Timestamp>().map_err(|_| {
                bad(format!(
                    "invalid query parameter sinceTime={v:?}: not an RFC 3339 time"
                ))
            })
        })
        .transpose()?;
    let nonneg = |key: &str, v: Option<i64>, min: i64| -> Result<Option<u64>, RouteError> {
        match v {
            Some(n) if n < min => Err(invalid(format!(
                "invalid {key} {n}: must be greater than or equal to {min}"
            ))),
            Some(n) => Ok(Some(n as u64)),
            None => Ok(None),
        }
    };
    let options = LogOptions {
        follow: query_bool(query, "follow"),
        previous: query_bool(query, "previous"),
        timestamps: query_bool(query, "timestamps"),
        tail_lines: nonneg("tailLines", tail, 0)?,
        limit_bytes: nonneg("limitBytes", limit, 1)?,
        since_seconds: nonneg("sinceSeconds", since_seconds, 1)?,
        since_time,
    };
    if options.since_seconds.is_some() && options.since_time.is_some() {
        return Err(invalid(
            "invalid log options: at most one of sinceTime or sinceSeconds may be specified",
        ));
    }
    Ok(options)
}

/// Streams a request asks for. Like the kubelet, stderr is dropped under a tty, and at least
/// one stream is required.
pub fn stream_opts(query: &[(String, String)]) -> Result<StreamOpts, RouteError> {
    let mut s = StreamOpts {
        stdin: query_bool(query, "input"),
        stdout: query_bool(query, "output"),
        stderr: query_bool(query, "error"),
        tty: query_bool(query, "tty"),
    };
    if s.tty && s.stderr {
        s.stderr = false;
    }
    if !s.stdin && !s.stdout && !s.stderr {
        return Err(bad("you must specify at least 1 of stdin, stdout, stderr"));
    }
    Ok(s)
}

fn pod_and_container(seg: &[String]) -> Option<(PodRef, String)> {
    match seg {
        [ns, pod, container] => Some((
            PodRef {
                namespace: ns.clone(),
                name: pod.clone(),
                uid: None,
            },
            container.clone(),
        )),
        [ns, pod, uid, container] => Some((
            PodRef {
                namespace: ns.clone(),
                name: pod.clone(),
                uid: Some(uid.clone()),
            },
            container.clone(),
        )),
        _ => None,
    }
}

/// Parses one request into its route.
pub fn parse(
    method: &str,
    raw_path: &str,
    query: &[(String, String)],
) -> Result<Route, RouteError> {
    let seg = segments(raw_path)?;
    let head: Vec<&str> = seg.iter().map(String::as_str).collect();
    let read_only = || -> Result<(), RouteError> {
        if method == "GET" || method == "HEAD" {
            Ok(())
        } else {
            Err(method_not_allowed(method, raw_path))
        }
    };
    let streaming = || -> Result<(), RouteError> {
        if method == "GET" || method == "POST" {
            Ok(())
        } else {
            Err(method_not_allowed(method, raw_path))
        }
    };
    match head.as_slice() {
        ["healthz", rest @ ..] if rest.len() <= 1 => read_only().map(|_| Route::Healthz {
            check: rest.first().map(|c| c.to_string()),
            verbose: query.iter().any(|(k, _)| k == "verbose"),
            exclude: query
                .iter()
                .filter(|(k, _)| k == "exclude")
                .map(|(_, v)| v.clone())
                .collect(),
        }),
        ["pods"] => read_only().map(|_| Route::Pods),
        ["configz"] => Ok(Route::Configz),
        ["runningpods"] => read_only().map(|_| Route::RunningPods),
        ["stats", "summary"] => read_only().map(|_| Route::StatsSummary),
        ["metrics"] => read_only().map(|_| Route::Metrics),
        ["metrics", "resource"] => read_only().map(|_| Route::MetricsResource),
        ["containerLogs", ..] => {
            read_only()?;
            let [ns, pod, container] = &seg[1..] else {
                return Err(bad(
                    "container logs need /containerLogs/{namespace}/{pod}/{container}",
                ));
            };
            Ok(Route::ContainerLogs {
                pod: PodRef {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    uid: None,
                },
                container: container.clone(),
                options: log_options(query)?,
            })
        }
        ["exec", ..] => {
            streaming()?;
            let (pod, container) = pod_and_container(&seg[1..]).ok_or_else(|| {
                bad("exec needs /exec/{namespace}/{pod}/{container} or /exec/{namespace}/{pod}/{uid}/{container}")
            })?;
            let command: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            if command.is_empty() {
                return Err(bad("exec needs a command (command=...)"));
            }
            Ok(Route::Exec {
                pod,
                container,
                command,
                streams: stream_opts(query)?,
            })
        }
        ["attach", ..] => {
            streaming()?;
            let (pod, container) = pod_and_container(&seg[1..]).ok_or_else(|| {
                bad("attach needs /attach/{namespace}/{pod}/{container} or /attach/{namespace}/{pod}/{uid}/{container}")
            })?;
            Ok(Route::Attach {
                pod,
                container,
                streams: stream_opts(query)?,
            })
        }
        ["portForward", ..] => {
            streaming()?;
            let pod = match &seg[1..] {
                [ns, pod] => PodRef {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    uid: None,
                },
                [ns, pod, uid] => PodRef {
                    namespace: ns.clone(),
                    name: pod.clone(),
                    uid: Some(uid.clone()),
                },
                _ => {
                    return Err(bad(
                        "port forwarding needs /portForward/{namespace}/{pod} or /portForward/{namespace}/{pod}/{uid}",
                    ))
                }
            };
            let ports = query
                .iter()
                .filter(|(k, _)| k == "port")
                .map(|(_, v)| match v.parse::<u16>() {
                    Ok(p) if p > 0 => Ok(p),
                    _ => Err(bad(format!("invalid port {v:?}: must be 1-65535"))),
                })
                .collect::<Result<Vec<u16>, _>>()?;
            Ok(Route::PortForward { pod, ports })
        }
        _ => Err(not_found()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn pod(ns: &str, name: &str, uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: ns.into(),
            name: name.into(),
            uid: uid.map(str::to_string),
        }
    }

    fn status(method: &str, path: &str, query: &[(&str, &str)]) -> u16 {
        parse(method, path, &q(query)).unwrap_err().status
    }

    #[test]
    fn healthz() {
        assert_eq!(
            parse("GET", "/healthz", &[]),
            Ok(Route::Healthz {
                check: None,
                verbose: false,
                exclude: vec![]
            })
        );
        assert_eq!(
            parse(
                "GET",
                "/healthz/syncloop",
                &q(&[("verbose", ""), ("exclude", "log")])
            ),
            Ok(Route::Healthz {
                check: Some("syncloop".into()),
                verbose: true,
                exclude: vec!["log".into()]
            })
        );
        assert_eq!(status("POST", "/healthz", &[]), 405);
    }

    #[test]
    fn pods_and_running_pods() {
        assert_eq!(parse("GET", "/pods", &[]), Ok(Route::Pods));
        assert_eq!(parse("GET", "/configz", &[]), Ok(Route::Configz));
        assert_eq!(parse("POST", "/configz", &[]), Ok(Route::Configz));
        assert_eq!(subresource("/configz"), "proxy");
        assert_eq!(parse("GET", "/pods/", &[]), Ok(Route::Pods));
        assert_eq!(parse("GET", "/runningpods/", &[]), Ok(Route::RunningPods));
    }

    #[test]
    fn container_logs_with_every_parameter_from_the_recorded_apiserver_request() {
        // 12d: ?follow=true&limitBytes=200&sinceSeconds=600&tailLines=2&timestamps=true
        let r = parse(
            "GET",
            "/containerLogs/fixtures/p1/c",
            &q(&[
                ("follow", "true"),
                ("limitBytes", "200"),
                ("sinceSeconds", "600"),
                ("tailLines", "2"),
                ("timestamps", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(
            r,
            Route::ContainerLogs {
                pod: pod("fixtures", "p1", None),
                container: "c".into(),
                options: LogOptions {
                    follow: true,
                    previous: false,
                    timestamps: true,
                    tail_lines: Some(2),
                    limit_bytes: Some(200),
                    since_seconds: Some(600),
                    since_time: None,
                },
            }
        );
        // 12v: previous=true&sinceTime=...
        let Route::ContainerLogs { options, .. } = parse(
            "GET",
            "/containerLogs/fixtures/p1/c",
            &q(&[("previous", "true"), ("sinceTime", "2026-11-22T12:00:00Z")]),
        )
        .unwrap() else {
            panic!("not logs")
        };
        assert!(options.previous);
        assert_eq!(
            options.since_time,
            Some("2026-11-22T12:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn log_parameters_that_do_not_parse_are_400_and_invalid_ones_422() {
        let path = "/containerLogs/ns/p/c";
        assert_eq!(status("GET", path, &[("tailLines", "x")]), 400);
        assert_eq!(status("GET", path, &[("sinceTime", "yesterday")]), 400);
        assert_eq!(status("GET", path, &[("tailLines", "-1")]), 422);
        assert_eq!(status("GET", path, &[("limitBytes", "0")]), 422);
        assert_eq!(status("GET", path, &[("sinceSeconds", "0")]), 422);
        assert_eq!(
            status(
                "GET",
                path,
                &[("sinceSeconds", "5"), ("sinceTime", "2026-11-22T12:00:00Z")]
            ),
            422
        );
        let e = parse("GET", path, &q(&[("tailLines", "x")])).unwrap_err();
        assert_eq!(
            e.message,
            "invalid query parameter tailLines=\"x\": not an integer"
        );
        // The old `tail` parameter, and `tail=all`.
        let Ok(Route::ContainerLogs { options, .. }) = parse("GET", path, &q(&[("tail", "3")]))
        else {
            panic!()
        };
        assert_eq!(options.tail_lines, Some(3));
        let Ok(Route::ContainerLogs { options, .. }) =
            parse("GET", path, &q(&[("tailLines", "3"), ("tail", "all")]))
        else {
            panic!()
        };
        assert_eq!(options.tail_lines, None);
        assert_eq!(status("GET", "/containerLogs/ns/p", &[]), 400);
    }

    #[test]
    fn dot_dot_empty_and_encoded_slash_segments_are_400() {
        for path in [
            "/containerLogs/ns/../c",
            "/containerLogs/ns/%2e%2e/c",
            "/containerLogs/ns/p/.",
            "/containerLogs/ns//c",
            "/containerLogs/ns/p%2Fx/c",
            "/exec/../../etc/passwd",
        ] {
            let e = parse("GET", path, &q(&[("command", "ls"), ("output", "1")])).unwrap_err();
            assert_eq!(e.status, 400, "{path}");
            assert!(e.message.contains(path), "{path}: {}", e.message);
        }
        assert!(parse("GET", "/a/../b", &[])
            .unwrap_err()
            .message
            .contains("\"..\" segments are not allowed"));
    }

    #[test]
    fn exec_from_the_recorded_apiserver_request() {
        // 12g: POST /exec/fixtures/p1/c?command=echo&command=hi&error=1&output=1
        let r = parse(
            "POST",
            "/exec/fixtures/p1/c",
            &q(&[
                ("command", "echo"),
                ("command", "hi"),
                ("error", "1"),
                ("output", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(
            r,
            Route::Exec {
                pod: pod("fixtures", "p1", None),
                container: "c".into(),
                command: vec!["echo".into(), "hi".into()],
                streams: StreamOpts {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    tty: false
                },
            }
        );
    }

    #[test]
    fn exec_with_uid_tty_drops_stderr_and_needs_a_command_and_a_stream() {
        let r = parse(
            "GET",
            "/exec/ns/p/uid-1/c",
            &q(&[
                ("command", "sh"),
                ("input", "1"),
                ("output", "1"),
                ("error", "1"),
                ("tty", "1"),
            ]),
        )
        .unwrap();
        let Route::Exec {
            pod: p, streams, ..
        } = r
        else {
            panic!()
        };
        assert_eq!(p, pod("ns", "p", Some("uid-1")));
        assert!(streams.tty && streams.stdin && streams.stdout && !streams.stderr);
        assert_eq!(status("POST", "/exec/ns/p/c", &[("output", "1")]), 400);
        assert_eq!(status("POST", "/exec/ns/p/c", &[("command", "ls")]), 400);
        assert_eq!(status("PUT", "/exec/ns/p/c", &[("command", "ls")]), 405);
        assert_eq!(status("POST", "/exec/ns/p", &[("command", "ls")]), 400);
    }

    #[test]
    fn attach() {
        let r = parse(
            "POST",
            "/attach/fixtures/p1/c",
            &q(&[("error", "1"), ("output", "1")]),
        )
        .unwrap();
        assert_eq!(
            r,
            Route::Attach {
                pod: pod("fixtures", "p1", None),
                container: "c".into(),
                streams: StreamOpts {
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    tty: false
                },
            }
        );
    }

    #[test]
    fn port_forward() {
        assert_eq!(
            parse("POST", "/portForward/fixtures/p1", &[]),
            Ok(Route::PortForward {
                pod: pod("fixtures", "p1", None),
                ports: vec![]
            })
        );
        assert_eq!(
            parse(
                "GET",
                "/portForward/ns/p/uid",
                &q(&[("port", "80"), ("port", "8080")])
            ),
            Ok(Route::PortForward {
                pod: pod("ns", "p", Some("uid")),
                ports: vec![80, 8080]
            })
        );
        assert_eq!(status("GET", "/portForward/ns/p", &[("port", "0")]), 400);
        assert_eq!(status("GET", "/portForward/ns/p", &[("port", "http")]), 400);
    }

    #[test]
    fn stats_summary() {
        assert_eq!(parse("GET", "/stats/summary", &[]), Ok(Route::StatsSummary));
        assert_eq!(
            parse(
                "GET",
                "/stats/summary",
                &q(&[("only_cpu_and_memory", "true")])
            ),
            Ok(Route::StatsSummary)
        );
    }

    #[test]
    fn metrics() {
        assert_eq!(parse("GET", "/metrics", &[]), Ok(Route::Metrics));
        assert_eq!(
            parse("GET", "/metrics/resource", &[]),
            Ok(Route::MetricsResource)
        );
        assert_eq!(status("POST", "/metrics", &[]), 405);
        assert_eq!(status("GET", "/metrics/cadvisor", &[]), 404);
    }

    #[test]
    fn request_metric_labels() {
        assert_eq!(metrics_labels("/exec/ns/p/c"), ("exec", true));
        assert_eq!(metrics_labels("/portForward/ns/p"), ("portForward", true));
        assert_eq!(
            metrics_labels("/containerLogs/ns/p/c"),
            ("containerLogs", false)
        );
        assert_eq!(metrics_labels("/metrics/resource"), ("metrics", false));
        assert_eq!(metrics_labels("/"), ("", false));
        // Anything else is one series, so that probing paths cannot grow the registry.
        assert_eq!(metrics_labels("/x%20y/z"), ("other", false));
    }

    #[test]
    fn unknown_paths_are_404() {
        assert_eq!(status("GET", "/", &[]), 404);
        assert_eq!(status("GET", "/stats", &[]), 404);
        assert_eq!(status("GET", "/configz/more", &[]), 404);
    }

    #[test]
    fn authorization_subresource_and_verb_follow_the_kubelet() {
        assert_eq!(subresource("/stats/summary"), "stats");
        assert_eq!(subresource("/metrics"), "metrics");
        assert_eq!(subresource("/metrics/resource"), "metrics");
        assert_eq!(subresource("/metricsfoo"), "proxy");
        assert_eq!(subresource("/logs/syslog"), "log");
        assert_eq!(subresource("/containerLogs/ns/p/c"), "proxy");
        assert_eq!(subresource("/exec/ns/p/c"), "proxy");
        assert_eq!(verb("POST"), "create");
        assert_eq!(verb("GET"), "get");
        assert_eq!(verb("HEAD"), "get");
    }
}
