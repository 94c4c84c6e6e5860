//! The run's verdicts and its tables: the targets, each marked met or MISSED (a miss never
//! fails the run), and the short tables printed on stdout, all read from the JSON report.
//!
//! Owns the targets' thresholds and the table layout.

use serde_json::{json, Value};

use crate::latency::{Latency, Phase};
use crate::measure::r2;
use crate::nodes::{KubeletReference, Nodes};
use crate::scale::Scale;

pub struct Target {
    pub name: String,
    pub want: String,
    pub value: f64,
    pub limit: f64,
    pub unit: &'static str,
}

impl Target {
    fn new(
        name: impl Into<String>,
        want: &str,
        value: f64,
        limit: f64,
        unit: &'static str,
    ) -> Target {
        Target {
            name: name.into(),
            want: want.to_string(),
            value,
            limit,
            unit,
        }
    }

    pub fn met(&self) -> bool {
        self.value <= self.limit
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name, "target": self.want, "value": r2(self.value), "unit": self.unit,
            "met": self.met(),
        })
    }
}

pub fn targets(
    lat: Option<&Latency>,
    scale: Option<&Scale>,
    nodes: &[Nodes],
    binary_bytes: u64,
) -> Vec<Target> {
    let mut t = Vec::new();
    if let Some(l) = lat {
        t.push(Target::new(
            "single-pod start p50",
            "<= 1.2x floor",
            l.seq_up.0.p(50.0) / l.seq_up.1.p(50.0),
            1.2,
            "x",
        ));
        t.push(Target::new(
            format!("burst start wall, median of {}", l.rounds.len()),
            "<= 1.2x floor",
            l.wall_ratio(Phase::Start).median,
            1.2,
            "x",
        ));
        t.push(Target::new(
            "delete p50 (sequential)",
            "<= 1.3x floor",
            l.seq_down.0.p(50.0) / l.seq_down.1.p(50.0),
            1.3,
            "x",
        ));
        t.push(Target::new(
            format!("delete wall, median of {}", l.rounds.len()),
            "<= 1.3x floor",
            l.wall_ratio(Phase::Delete).median,
            1.3,
            "x",
        ));
    }
    if let Some(s) = scale {
        if let Some(l) = s.at(100) {
            t.push(Target::new(
                "RSS, 100 pods idle",
                "<= 12 MiB",
                l.idle.rss_max_mib,
                12.0,
                "MiB",
            ));
            t.push(Target::new(
                "CPU, 100 pods idle",
                "<= 0.5 % of a core",
                l.idle.cpu_pct,
                0.5,
                "%",
            ));
        }
        if let Some(top) = s.top().filter(|l| l.pods > 100) {
            t.push(Target::new(
                format!("RSS, {} pods idle", top.pods),
                "<= 20 MiB",
                top.idle.rss_max_mib,
                20.0,
                "MiB",
            ));
            t.push(Target::new(
                format!("CPU, {} pods idle", top.pods),
                "<= 1 % of a core",
                top.idle.cpu_pct,
                1.0,
                "%",
            ));
        }
        let cri: Vec<f64> = s.levels.iter().map(|l| l.idle.cri_cps).collect();
        if cri.len() > 1 {
            let (lo, hi) = cri.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), c| {
                (lo.min(*c), hi.max(*c))
            });
            t.push(Target::new(
                "CRI calls/s, max/min over levels",
                "<= 1.2x (flat)",
                hi / lo,
                1.2,
                "x",
            ));
        }
        for l in &s.levels {
            if let Some(g) = l.grow.as_ref().filter(|g| !g.floor.samples.is_empty()) {
                t.push(Target::new(
                    format!("burst start wall, {} onto {}", g.size, g.from),
                    "<= 1.2x floor",
                    g.vk.wall() / g.floor.wall(),
                    1.2,
                    "x",
                ));
            }
        }
        let probed: Vec<(f64, usize)> = s
            .levels
            .iter()
            .filter(|l| !l.under_load.0.samples.is_empty())
            .map(|l| (l.under_load.0.p(99.0), l.pods))
            .collect();
        let worst = probed
            .iter()
            .copied()
            .fold((0.0f64, 0), |a, b| if b.0 > a.0 { b } else { a });
        if !probed.is_empty() {
            t.push(Target::new(
                format!("start p99 under load ({} pods)", worst.1),
                "<= 5000 ms",
                worst.0,
                5000.0,
                "ms",
            ));
        }
    }
    if let (Some(first), Some(last)) = (nodes.first(), nodes.last()) {
        t.push(Target::new(
            format!("API requests per node, {} nodes", last.n),
            &format!("<= kubelet {:.3}/s", KubeletReference::rps()),
            last.steady_rps,
            KubeletReference::rps(),
            "/s",
        ));
        if last.n > first.n {
            t.push(Target::new(
                format!("requests per node, {} vs {} nodes", last.n, first.n),
                "<= 1.1x (flat)",
                last.steady_rps / first.steady_rps,
                1.1,
                "x",
            ));
        }
    }
    t.push(Target::new(
        "static binary",
        "<= 10 MB",
        binary_bytes as f64 / 1e6,
        10.0,
        "MB",
    ));
    t
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// `1.03 (0.97–1.10)` for a median with its spread.
fn spread(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    format!(
        "{} ({}–{})",
        num(&v["median"], 2),
        num(&v["min"], 2),
        num(&v["max"], 2)
    )
}

/// The short tables on stdout.
pub fn table(r: &Value) -> String {
    let mut out = String::new();
    let load = &r["machine"]["loadavg_1m"];
    out.push_str(&format!(
        "vk-cri bench {}: {} CPUs, {} GiB, kernel {}, {}, load average {} → {}\n\n",
        r["date"].as_str().unwrap_or(""),
        r["machine"]["cpus"],
        r["machine"]["memory_gib"],
        r["machine"]["kernel"].as_str().unwrap_or(""),
        r["machine"]["runtime"].as_str().unwrap_or(""),
        num(&load[0], 2),
        num(&load[1], 2),
    ));
    if !r["start_sequential"].is_null() {
        latency_table(r, &mut out);
    }
    if !r["scale"].is_null() {
        scale_table(r, &mut out);
    }
    if !r["nodes"].is_null() {
        nodes_table(r, &mut out);
    }
    out.push_str(
        "| target                              | wanted             | measured     | met    |\n",
    );
    out.push_str(
        "|-------------------------------------|--------------------|--------------|--------|\n",
    );
    for t in r["targets"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {:<35} | {:<18} | {:>12} | {:<6} |\n",
            t["name"].as_str().unwrap_or(""),
            t["target"].as_str().unwrap_or(""),
            format!(
                "{} {}",
                num(&t["value"], 2),
                t["unit"].as_str().unwrap_or("")
            ),
            if t["met"] == true { "met" } else { "MISSED" },
        ));
    }
    out
}

fn latency_table(r: &Value, out: &mut String) {
    out.push_str(&format!(
        "| {:<26} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:<18} |\n",
        "latency (ms)", "vk p50", "vk p99", "vk wall", "fl p50", "fl p99", "fl wall", "×floor"
    ));
    out.push_str(&format!(
        "|{:-<28}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:->10}|{:-<20}|\n",
        "", "", "", "", "", "", "", ""
    ));
    for (key, label) in [
        ("start_sequential", "start, one by one"),
        ("delete_sequential", "delete, one by one"),
    ] {
        let e = &r[key];
        out.push_str(&format!(
            "| {:<26} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:<18} |\n",
            label,
            num(&e["vk_cri"]["p50_ms"], 1),
            num(&e["vk_cri"]["p99_ms"], 1),
            "-",
            num(&e["floor"]["p50_ms"], 1),
            num(&e["floor"]["p99_ms"], 1),
            "-",
            format!("{} (p50)", num(&e["ratio_p50"], 2)),
        ));
    }
    for (key, label) in [("start_burst", "start"), ("delete_burst", "delete")] {
        let e = &r[key];
        let rounds = e["rounds"].as_array().map_or(0, Vec::len);
        let (vk, fl) = (&e["vk_cri"], &e["floor"]);
        out.push_str(&format!(
            "| {:<26} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:>8} | {:<18} |\n",
            format!("{label}, {} at once ×{rounds}", r["parameters"]["burst"]),
            num(&vk["p50_ms"]["median"], 0),
            num(&vk["p99_ms"]["median"], 0),
            num(&vk["wall_ms"]["median"], 0),
            num(&fl["p50_ms"]["median"], 0),
            num(&fl["p99_ms"]["median"], 0),
            num(&fl["wall_ms"]["median"], 0),
            spread(&e["ratio_wall"]),
        ));
    }
    out.push_str("(bursts: medians over the rounds; ×floor is the wall ratio, median (min–max) of the rounds)\n\n");
}

fn scale_table(r: &Value, out: &mut String) {
    out.push_str("| pods | RSS max MiB | anon | file | CPU % core | CRI calls/s | API req/s | threads | start p50/p99 ms (floor) | grown by | wall ms (floor)  | ×floor |\n");
    out.push_str("|------|-------------|------|------|------------|-------------|-----------|---------|--------------------------|----------|------------------|--------|\n");
    for l in r["scale"]["levels"].as_array().into_iter().flatten() {
        let i = &l["idle"];
        let u = &l["start_under_load"];
        let g = &l["grow"];
        out.push_str(&format!(
            "| {:>4} | {:>11} | {:>4} | {:>4} | {:>10} | {:>11} | {:>9} | {:>7} | {:>24} | {:>8} | {:>16} | {:>6} |\n",
            l["pods"].to_string(),
            num(&i["rss_max_mib"], 1),
            num(&i["rss_anon_mib"], 1),
            num(&i["rss_file_mib"], 1),
            num(&i["cpu_pct_of_one_core"], 3),
            num(&i["cri_calls_per_s"], 2),
            num(&i["api_requests_per_s"], 2),
            i["threads"].to_string(),
            format!(
                "{}/{} ({}/{})",
                num(&u["vk_cri"]["p50_ms"], 0),
                num(&u["vk_cri"]["p99_ms"], 0),
                num(&u["floor"]["p50_ms"], 0),
                num(&u["floor"]["p99_ms"], 0)
            ),
            if g.is_null() { "-".to_string() } else { format!("+{}", g["size"]) },
            if g.is_null() {
                "-".to_string()
            } else {
                format!(
                    "{} ({})",
                    num(&g["vk_cri"]["wall_ms"], 0),
                    num(&g["floor"]["wall_ms"], 0)
                )
            },
            num(&g["ratio_wall"], 2),
        ));
    }
    if let Some(d) = r["scale"]["delete_all"].as_object() {
        out.push_str(&format!(
            "(all {} deleted at once: wall {} ms, p50 {} ms, p99 {} ms)\n",
            d.get("n").cloned().unwrap_or_default(),
            num(&d["wall_ms"], 0),
            num(&d["p50_ms"], 0),
            num(&d["p99_ms"], 0)
        ));
    }
    out.push('\n');
}

fn nodes_table(r: &Value, out: &mut String) {
    out.push_str("| nodes | req/s per node | in window | busiest node | bytes/s up | bytes/s down | TCP conns | watches | watch restarts/s | Lease/min | RSS MiB | CPU % core |\n");
    out.push_str("|-------|----------------|-----------|--------------|------------|--------------|-----------|---------|------------------|-----------|---------|------------|\n");
    let runs = r["nodes"]["runs"].as_array().cloned().unwrap_or_default();
    for n in &runs {
        let p = &n["per_node"];
        out.push_str(&format!(
            "| {:>5} | {:>14} | {:>9} | {:>12} | {:>10} | {:>12} | {:>9} | {:>7} | {:>16} | {:>9} | {:>7} | {:>10} |\n",
            n["nodes"].to_string(),
            num(&p["requests_per_s"], 3),
            num(&p["requests_per_s_in_window"], 3),
            num(&p["requests_per_s_busiest_node"], 3),
            num(&p["bytes_up_per_s"], 0),
            num(&p["bytes_down_per_s"], 0),
            num(&p["tcp_connections"], 1),
            num(&p["watches_open"], 1),
            num(&p["watch_restarts_per_s"], 3),
            num(&p["lease_renewals_per_min"], 1),
            num(&p["rss_mib"], 1),
            num(&p["cpu_pct_of_one_core"], 3),
        ));
    }
    let k = &r["nodes"]["kubelet_reference"];
    out.push_str(&format!(
        "| kubelet (defaults) | {} | lease {}/s + node GET {}/s + status PATCH {}/s + watch restarts {}/s; {} watches open |\n",
        num(&k["requests_per_s"], 3),
        num(&k["lease_updates_per_s"], 3),
        num(&k["node_gets_per_s"], 3),
        num(&k["node_status_patches_per_s"], 3),
        num(&k["watch_starts_per_s"], 3),
        k["watches_open"],
    ));
    if let Some(last) = runs.last() {
        let kinds: Vec<String> = last["per_node"]["by_kind_per_s"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k} {}", num(v, 3)))
            .collect();
        out.push_str(&format!(
            "(req/s per node: the window's, watch starts left out, plus each watch started again as its timeoutSeconds ends; per node at {} nodes, in the window, per s: {}; the longest gap between two renewals of a Lease: {} s)\n",
            last["nodes"],
            kinds.join(", "),
            num(&last["lease_gap_max_s"], 1)
        ));
    }
    out.push('\n');
}
