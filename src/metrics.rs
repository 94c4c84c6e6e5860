//! vk-cri's own metrics, served as Prometheus text on `/metrics` of the kubelet API: a small
//! hand-written registry (counters and histograms with fixed buckets, by label values; every
//! value an atomic) and the process-wide families, named as the kubelet and client-go name them
//! (`kubelet_runtime_operations_*`, `kubelet_started_pods_total`,
//! `kubelet_pod_start_duration_seconds`, `rest_client_*`, `kubelet_http_requests_*`).
//!
//! Owns: the families, their recording and the text exposition format (0.0.4). Each family is
//! recorded in exactly one place: CRI calls in `cri/client.rs`, API server requests in
//! `kube/client.rs`, pod and container starts in `executor/sync.rs`, kubelet API requests in
//! `server/mod.rs`. Must not do I/O. No `prometheus` crate: a dozen families of two kinds do not
//! need its dependencies (protobuf 2, lazy_static, parking_lot).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Label values of one series, in the family's label order.
type Key = Vec<String>;

fn series<T>(
    map: &RwLock<BTreeMap<Key, Arc<T>>>,
    values: &[&str],
    make: impl FnOnce() -> T,
) -> Arc<T> {
    if let Some(s) = map
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(&values.iter().map(|v| v.to_string()).collect::<Key>())
    {
        return s.clone();
    }
    map.write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(values.iter().map(|v| v.to_string()).collect())
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

fn snapshot<T>(map: &RwLock<BTreeMap<Key, Arc<T>>>) -> Vec<(Key, Arc<T>)> {
    map.read()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A label value escaped for the text format (backslash, double quote, newline).
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `{a="x",b="y"}` (empty when there are no labels), with `extra` (e.g. `le`) last.
fn label_set(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label(v)))
        .collect();
    if let Some((n, v)) = extra {
        pairs.push(format!("{n}=\"{v}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

/// A float as Prometheus's Go client writes it: `strconv.FormatFloat(v, 'g', -1, 64)` (the
/// shortest digits that round-trip; an exponent below -4 or from 6 up switches to `1.5e+07`),
/// `+Inf`/`-Inf`/`NaN` spelled out.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return "0".into();
    }
    // Rust's `{:e}` gives the same shortest digits as Go, as `1.5e7`.
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        format!("{v}")
    }
}

/// A monotonic counter per label values.
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: RwLock<BTreeMap<Key, Arc<AtomicU64>>>,
}

impl CounterVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> CounterVec {
        CounterVec {
            name,
            help,
            labels,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    /// Adds one to the series with these label values (in the family's label order).
    pub fn inc(&self, values: &[&str]) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        series(&self.series, values, AtomicU64::default).fetch_add(1, Ordering::Relaxed);
    }

    /// The current value of one series (0 when it was never incremented).
    pub fn get(&self, values: &[&str]) -> u64 {
        let key: Key = values.iter().map(|v| v.to_string()).collect();
        self.series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        let all = snapshot(&self.series);
        if all.is_empty() && self.labels.is_empty() {
            let _ = writeln!(out, "{} 0", self.name);
        }
        for (k, v) in all {
            let _ = writeln!(
                out,
                "{}{} {}",
                self.name,
                label_set(self.labels, &k, None),
                v.load(Ordering::Relaxed)
            );
        }
    }
}

/// One histogram series: cumulative-at-render bucket counts, the count and the sum (f64 bits).
struct HistogramData {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

/// A histogram with fixed upper bounds per label values.
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    bounds: &'static [f64],
    series: RwLock<BTreeMap<Key, Arc<HistogramData>>>,
}

impl HistogramVec {
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> HistogramVec {
        HistogramVec {
            name,
            help,
            labels,
            bounds,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records one observation (in seconds for the `_seconds` families).
    pub fn observe(&self, values: &[&str], v: f64) {
        debug_assert_eq!(values.len(), self.labels.len(), "{}", self.name);
        let h = series(&self.series, values, || HistogramData {
            buckets: self.bounds.iter().map(|_| AtomicU64::default()).collect(),
            count: AtomicU64::default(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        });
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        let _ = h
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + v).to_bits())
            });
        h.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, values: &[&str], d: Duration) {
        self.observe(values, d.as_secs_f64());
    }

    /// How many observations one series has.
    pub fn count(&self, values: &[&str]) -> u64 {
        let key: Key = values.iter().map(|v| v.to_string()).collect();
        self.series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .map_or(0, |h| h.count.load(Ordering::Relaxed))
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (k, h) in snapshot(&self.series) {
            let mut cumulative = 0;
            for (b, n) in self.bounds.iter().zip(&h.buckets) {
                cumulative += n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    label_set(self.labels, &k, Some(("le", &format_float(*b))))
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{}_bucket{} {count}",
                self.name,
                label_set(self.labels, &k, Some(("le", "+Inf")))
            );
            let labels = label_set(self.labels, &k, None);
            let sum = f64::from_bits(h.sum_bits.load(Ordering::Relaxed));
            let _ = writeln!(out, "{}_sum{labels} {}", self.name, format_float(sum));
            let _ = writeln!(out, "{}_count{labels} {count}", self.name);
        }
    }
}

/// client-go's `rest_client_request_duration_seconds` buckets.
const REST_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
];
/// The kubelet's runtime operation buckets: `ExponentialBuckets(.005, 2.5, 14)`.
const RUNTIME_BUCKETS: &[f64] = &[
    0.005,
    0.0125,
    0.03125,
    0.078125,
    0.1953125,
    0.48828125,
    1.220703125,
    3.0517578125,
    7.62939453125,
    19.073486328125,
    47.6837158203125,
    119.20928955078125,
    298.0232238769531,
    745.0580596923828,
];
/// The kubelet's `kubelet_pod_start_duration_seconds` buckets.
const POD_START_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
/// The kubelet's `kubelet_http_requests_duration_seconds` buckets (prometheus.DefBuckets).
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub static RUNTIME_OPERATIONS: CounterVec = CounterVec::new(
    "kubelet_runtime_operations_total",
    "[ALPHA] Cumulative number of runtime operations by operation type.",
    &["operation_type"],
);
pub static RUNTIME_OPERATION_ERRORS: CounterVec = CounterVec::new(
    "kubelet_runtime_operations_errors_total",
    "[ALPHA] Cumulative number of runtime operation errors by operation type.",
    &["operation_type"],
);
pub static RUNTIME_OPERATION_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_runtime_operations_duration_seconds",
    "[ALPHA] Duration in seconds of runtime operations. Broken down by operation type.",
    &["operation_type"],
    RUNTIME_BUCKETS,
);
pub static STARTED_PODS: CounterVec = CounterVec::new(
    "kubelet_started_pods_total",
    "[ALPHA] Cumulative number of pods started",
    &[],
);
pub static STARTED_PODS_ERRORS: CounterVec = CounterVec::new(
    "kubelet_started_pods_errors_total",
    "[ALPHA] Cumulative number of errors when starting pods",
    &[],
);
pub static STARTED_CONTAINERS: CounterVec = CounterVec::new(
    "kubelet_started_containers_total",
    "[ALPHA] Cumulative number of containers started",
    &["container_type"],
);
pub static STARTED_CONTAINERS_ERRORS: CounterVec = CounterVec::new(
    "kubelet_started_containers_errors_total",
    "[ALPHA] Cumulative number of errors when starting containers",
    &["code", "container_type"],
);
pub static POD_START_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_pod_start_duration_seconds",
    "[ALPHA] Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
    &[],
    POD_START_BUCKETS,
);
pub static REST_REQUESTS: CounterVec = CounterVec::new(
    "rest_client_requests_total",
    "[ALPHA] Number of HTTP requests, partitioned by status code, method, and host.",
    &["code", "host", "method"],
);
pub static REST_REQUEST_DURATION: HistogramVec = HistogramVec::new(
    "rest_client_request_duration_seconds",
    "[ALPHA] Request latency in seconds. Broken down by verb, and host.",
    &["host", "verb"],
    REST_BUCKETS,
);
pub static HTTP_REQUESTS: CounterVec = CounterVec::new(
    "kubelet_http_requests_total",
    "[ALPHA] Number of the http requests received since the server started",
    &["long_running", "method", "path", "server_type"],
);
pub static HTTP_REQUEST_DURATION: HistogramVec = HistogramVec::new(
    "kubelet_http_requests_duration_seconds",
    "[ALPHA] Duration in seconds to serve http requests",
    &["long_running", "method", "path", "server_type"],
    HTTP_BUCKETS,
);

/// One CRI call: counted, timed, and counted as an error when it failed.
pub fn record_runtime_operation(operation: &str, took: Duration, failed: bool) {
    RUNTIME_OPERATIONS.inc(&[operation]);
    RUNTIME_OPERATION_DURATION.observe_duration(&[operation], took);
    if failed {
        RUNTIME_OPERATION_ERRORS.inc(&[operation]);
    }
}

/// One API server exchange: `code` is the HTTP status, or `<error>` when none came back.
pub fn record_rest_request(host: &str, method: &str, code: &str, took: Duration) {
    REST_REQUESTS.inc(&[code, host, method]);
    REST_REQUEST_DURATION.observe_duration(&[host, method], took);
}

/// The whole exposition, every family in a fixed order.
pub fn render() -> String {
    let mut out = String::new();
    for c in [
        &HTTP_REQUESTS,
        &RUNTIME_OPERATIONS,
        &RUNTIME_OPERATION_ERRORS,
        &STARTED_CONTAINERS,
        &STARTED_CONTAINERS_ERRORS,
        &STARTED_PODS,
        &STARTED_PODS_ERRORS,
        &REST_REQUESTS,
    ] {
        c.render(&mut out);
    }
    for h in [
        &HTTP_REQUEST_DURATION,
        &POD_START_DURATION,
        &RUNTIME_OPERATION_DURATION,
        &REST_REQUEST_DURATION,
    ] {
        h.render(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_by_label_values_render_sorted_with_help_and_type() {
        static C: CounterVec = CounterVec::new("x_total", "Things.", &["op"]);
        C.inc(&["b"]);
        C.inc(&["a"]);
        C.inc(&["b"]);
        assert_eq!(C.get(&["b"]), 2);
        assert_eq!(C.get(&["zz"]), 0);
        let mut out = String::new();
        C.render(&mut out);
        assert_eq!(
            out,
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{op=\"a\"} 1\nx_total{op=\"b\"} 2\n"
        );
    }

    #[test]
    fn an_unlabelled_counter_is_rendered_at_zero() {
        static C: CounterVec = CounterVec::new("y_total", "Y.", &[]);
        let mut out = String::new();
        C.render(&mut out);
        assert!(out.ends_with("\ny_total 0\n"), "{out}");
        C.inc(&[]);
        let mut out = String::new();
        C.render(&mut out);
        assert!(out.ends_with("\ny_total 1\n"), "{out}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_with_inf_sum_and_count() {
        static H: HistogramVec = HistogramVec::new("h_seconds", "H.", &["op"], &[0.1, 1.0]);
        H.observe(&["x"], 0.05);
        H.observe(&["x"], 0.5);
        H.observe(&["x"], 0.1);
        H.observe(&["x"], 7.0);
        let mut out = String::new();
        H.render(&mut out);
        assert_eq!(
            out,
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{op=\"x\",le=\"0.1\"} 2\n\
             h_seconds_bucket{op=\"x\",le=\"1\"} 3\n\
             h_seconds_bucket{op=\"x\",le=\"+Inf\"} 4\n\
             h_seconds_sum{op=\"x\"} 7.65\n\
             h_seconds_count{op=\"x\"} 4\n"
        );
        assert_eq!(H.count(&["x"]), 4);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn counters_are_safe_across_threads() {
        static C: CounterVec = CounterVec::new("t_total", "T.", &["k"]);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        C.inc(&["same"]);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(C.get(&["same"]), 4000);
    }

    #[test]
    fn floats_print_like_go() {
        for (v, go) in [
            (1.0, "1"),
            (0.0, "0"),
            (0.005, "0.005"),
            (0.00001, "1e-05"),
            (1.220703125, "1.220703125"),
            (745.0580596923828, "745.0580596923828"),
            (3600.0, "3600"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (23658496.0, "2.3658496e+07"),
            (1.7e9, "1.7e+09"),
            (1700000000.123, "1.700000000123e+09"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(format_float(v), go, "{v}");
        }
    }
}
