//! Many nodes on one API server: N daemons (each its own node name, kubelet port, directories
//! and cgroup root, on the one containerd, with no pods) against one fake API server, through
//! a TCP proxy that counts the bytes and the connections. Per node: API requests/s (by kind),
//! bytes/s each way, connections and watches open, Lease renewals as the API server saw them,
//! RSS and CPU; against what the kubelet sends per node with its defaults.
//!
//! Owns the daemons of this phase, the byte-counting proxy and the kubelet's reference figures.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::measure::{clk_tck, proc_cpu_ticks, proc_status_kib, r2, r3};
use crate::shape::CGROUP_ROOT;
use crate::support::daemon::Daemon;
use crate::support::fake_apiserver::{FakeApiServer, LoggedRequest};
use crate::vk::node_ready;

/// What the kubelet (v1.28, its defaults) sends per node when nothing changes, in requests per
/// second. pkg/kubelet/apis/config/v1beta1/defaults.go: nodeStatusUpdateFrequency 10 s,
/// nodeStatusReportFrequency 5 min, nodeLeaseDurationSeconds 40; pkg/kubelet/kubelet.go: the
/// Lease renewed every 0.25 × 40 s; pkg/kubelet/kubelet_node_status.go (tryUpdateNodeStatus):
/// every 10 s a GET of the Node (from the watch cache), a PATCH of its status only when it
/// changed or 5 min passed; client-go's reflector.go: every watch ends after 5–10 min
/// (minWatchTimeout × (1 + rand)) and is started again. Its informers watch its pods, its Node,
/// Services, RuntimeClasses and CSIDrivers (5 watches, over one HTTP/2 connection).
pub struct KubeletReference;

impl KubeletReference {
    pub const LEASE_RPS: f64 = 1.0 / 10.0;
    pub const NODE_GET_RPS: f64 = 1.0 / 10.0;
    pub const NODE_PATCH_RPS: f64 = 1.0 / 300.0;
    pub const WATCHES: f64 = 5.0;
    /// A watch lasts 7.5 min on average.
    pub const WATCH_RPS: f64 = 5.0 / 450.0;

    pub fn rps() -> f64 {
        Self::LEASE_RPS + Self::NODE_GET_RPS + Self::NODE_PATCH_RPS + Self::WATCH_RPS
    }

    pub fn json() -> Value {
        json!({
            "requests_per_s": r3(Self::rps()),
            "lease_updates_per_s": r3(Self::LEASE_RPS),
            "node_gets_per_s": r3(Self::NODE_GET_RPS),
            "node_status_patches_per_s": r3(Self::NODE_PATCH_RPS),
            "watch_starts_per_s": r3(Self::WATCH_RPS),
            "watches_open": Self::WATCHES,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The byte-counting proxy.

#[derive(Default)]
struct Counters {
    /// Client → API server.
    up: AtomicU64,
    /// API server → client.
    down: AtomicU64,
    open: AtomicUsize,
}

/// A TCP proxy on 127.0.0.1 in front of the fake API server (TLS passes through untouched).
pub struct TcpCounter {
    pub addr: SocketAddr,
    c: Arc<Counters>,
}

impl TcpCounter {
    pub fn start(upstream: SocketAddr) -> std::io::Result<TcpCounter> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let c = Arc::new(Counters::default());
        let shared = c.clone();
        std::thread::Builder::new()
            .name("tcp-counter".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    match TcpStream::connect(upstream) {
                        Ok(server) => relay(client, server, &shared),
                        Err(e) => eprintln!("tcp counter: failed to connect to {upstream}: {e}"),
                    }
                }
            })?;
        Ok(TcpCounter { addr, c })
    }

    /// (bytes up, bytes down, connections open) now.
    pub fn read(&self) -> (u64, u64, usize) {
        (
            self.c.up.load(Ordering::Relaxed),
            self.c.down.load(Ordering::Relaxed),
            self.c.open.load(Ordering::Relaxed),
        )
    }
}

fn relay(client: TcpStream, server: TcpStream, c: &Arc<Counters>) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    c.open.fetch_add(1, Ordering::Relaxed);
    let halves = Arc::new(AtomicUsize::new(0));
    for (from, to, up) in [(client, server, true), (server2, client2, false)] {
        let (c, halves) = (c.clone(), halves.clone());
        let spawned = std::thread::Builder::new()
            .name("tcp-counter-copy".into())
            .spawn(move || {
                copy_counting(from, &to, if up { &c.up } else { &c.down });
                let _ = to.shutdown(Shutdown::Write);
                if halves.fetch_add(1, Ordering::Relaxed) == 1 {
                    c.open.fetch_sub(1, Ordering::Relaxed);
                }
            });
        if let Err(e) = spawned {
            eprintln!("tcp counter: cannot start a copy thread: {e}");
        }
    }
}

fn copy_counting(mut from: TcpStream, mut to: &TcpStream, count: &AtomicU64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
                count.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The phase.

/// The figures for one N, per node.
pub struct Nodes {
    pub n: usize,
    pub secs: f64,
    /// Requests in the window.
    pub rps: f64,
    /// In the long run: the window's requests other than watch starts, plus each watch
    /// started again when its `timeoutSeconds` ends (a window shorter than the timeout sees
    /// none of those).
    pub steady_rps: f64,
    /// Watches held open, and how often they are started again in the long run.
    pub watches: f64,
    pub watch_restarts_ps: f64,
    pub by_kind: BTreeMap<String, f64>,
    pub bytes_up_ps: f64,
    pub bytes_down_ps: f64,
    pub connections: f64,
    pub watches_started_ps: f64,
    pub lease_renewals_per_min: f64,
    /// The longest time between two renewals of one node's Lease in the window (s).
    pub lease_gap_max_s: f64,
    pub rss_mib: f64,
    pub cpu_pct: f64,
    /// The busiest node's requests/s (all nodes alike means no node pays for the others).
    pub rps_max_node: f64,
}

impl Nodes {
    pub fn json(&self) -> Value {
        json!({
            "nodes": self.n,
            "secs": r2(self.secs),
            "per_node": {
                "requests_per_s": r3(self.steady_rps),
                "requests_per_s_in_window": r3(self.rps),
                "requests_per_s_busiest_node": r3(self.rps_max_node),
                "watches_open": r2(self.watches),
                "watch_restarts_per_s": r3(self.watch_restarts_ps),
                "by_kind_per_s": self.by_kind.iter().map(|(k, v)| (k.clone(), json!(r3(*v)))).collect::<serde_json::Map<_, _>>(),
                "bytes_up_per_s": r2(self.bytes_up_ps),
                "bytes_down_per_s": r2(self.bytes_down_ps),
                "tcp_connections": r2(self.connections),
                "watch_starts_per_s": r3(self.watches_started_ps),
                "lease_renewals_per_min": r2(self.lease_renewals_per_min),
                "rss_mib": r2(self.rss_mib),
                "cpu_pct_of_one_core": r3(self.cpu_pct),
            },
            "lease_gap_max_s": r2(self.lease_gap_max_s),
        })
    }
}

/// What a request is, for the breakdown.
fn kind(r: &LoggedRequest) -> String {
    let q = &r.query;
    let watch = q.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let path = r.path.trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    // /api/v1/<res>[/<name>[/<sub>]] or /api/v1/namespaces/<ns>/<res>[/<name>[/<sub>]], and
    // the same under /apis/<group>/<version>.
    let rest: &[&str] = match parts.as_slice() {
        ["", "api", _, rest @ ..] => rest,
        ["", "apis", _, _, rest @ ..] => rest,
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, r @ ..] if !r.is_empty() => r,
        r => r,
    };
    let res = rest.first().copied().unwrap_or("?");
    let sub = rest.get(2).map(|s| format!("/{s}")).unwrap_or_default();
    let verb = match (r.method.as_str(), watch, rest.len()) {
        ("GET", true, _) => "watch",
        ("GET", false, 1) => "list",
        ("GET", false, _) => "get",
        ("PUT", ..) => "update",
        ("PATCH", ..) => "patch",
        ("POST", ..) => "create",
        ("DELETE", ..) => "delete",
        _ => "other",
    };
    format!("{verb} {res}{sub}")
}

pub struct Setup<'a> {
    pub bin: &'a Path,
    pub socket: &'a Path,
    pub scratch: &'a Path,
    pub settle_secs: u64,
    pub window_secs: u64,
    pub log_level: String,
    pub tag: String,
}

/// N daemons, each its own node, measured over the window, then stopped.
pub fn run(setup: &Setup<'_>, fake: &FakeApiServer, n: usize) -> Result<Nodes, String> {
    let proxy = TcpCounter::start(fake.addr()).map_err(|e| format!("tcp counter: {e}"))?;
    let req_start = fake.request_count();
    let server = format!("https://{}", proxy.addr);
    let mut daemons = Vec::new();
    eprintln!("bench: nodes: starting {n} daemons on one API server");
    for i in 0..n {
        let node = format!("{}-n{n}-{i}", setup.tag);
        let cert = fake.client_cert(&format!("system:node:{node}"), Some("system:nodes"));
        let dir = setup.scratch.join(format!("nodes-{n}/{i}"));
        let mut d = Daemon::for_node(setup.bin, &node, &fake.kubeconfig_for(&server, &cert), &dir)?;
        d.args(["--cgroup-root", &format!("{CGROUP_ROOT}/n{n}-{i}")]);
        d.log_level.clone_from(&setup.log_level);
        d.start(setup.socket)?;
        daemons.push(d);
    }
    let names: Vec<String> = daemons.iter().map(|d| d.node.clone()).collect();
    if !fake.wait_for(Duration::from_secs(180), |v| {
        names.iter().all(|node| node_ready(v, node))
    }) {
        let missing: Vec<&String> = names
            .iter()
            .filter(|node| fake.get_node(node).is_none())
            .collect();
        for d in &mut daemons {
            d.check_alive()?;
        }
        return Err(format!(
            "not every one of {n} nodes Ready after 180 s (unregistered: {missing:?})"
        ));
    }
    std::thread::sleep(Duration::from_secs(setup.settle_secs));
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect::<Result<_, _>>()?;
    let ticks0: Vec<u64> = pids
        .iter()
        .map(|p| proc_cpu_ticks(*p))
        .collect::<Result<_, _>>()?;
    let (req0, (up0, down0, _), t0) = (fake.request_count(), proxy.read(), Instant::now());
    eprintln!(
        "bench: nodes: {n} nodes Ready, measuring {} s",
        setup.window_secs
    );
    std::thread::sleep(Duration::from_secs(setup.window_secs));
    let secs = t0.elapsed().as_secs_f64();
    let (up1, down1, open) = proxy.read();
    let reqs = fake.requests_since(req0);
    let mut rss = 0.0;
    let mut ticks = 0;
    for (d, (pid, t0)) in daemons.iter_mut().zip(pids.iter().zip(&ticks0)) {
        d.check_alive()?;
        rss += proc_status_kib(*pid, "VmRSS:")? as f64 / 1024.0;
        ticks += proc_cpu_ticks(*pid)? - t0;
    }
    for d in &mut daemons {
        d.kill();
    }
    let nf = n as f64;
    // The node a request came from, if it is one of this run's.
    let node_of = |r: &LoggedRequest| -> Option<String> {
        r.user
            .strip_prefix("system:node:")
            .filter(|node| names.iter().any(|n| n == node))
            .map(str::to_string)
    };
    let ours: Vec<&LoggedRequest> = reqs.iter().filter(|r| node_of(r).is_some()).collect();
    let mut by_kind: BTreeMap<String, f64> = BTreeMap::new();
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    let mut leases: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for r in &ours {
        let k = kind(r);
        let node = r.user.trim_start_matches("system:node:");
        *per_node.entry(node).or_default() += 1;
        if k == "update leases" {
            leases.entry(node).or_default().push(r.at);
        }
        *by_kind.entry(k).or_default() += 1.0 / nf / secs;
    }
    let lease_gap_max_s = leases
        .values()
        .flat_map(|at| at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()))
        .fold(0.0, f64::max);
    let lease_count: usize = leases.values().map(Vec::len).sum();
    // Each node's watches (by resource) and the timeoutSeconds each asked for.
    let mut watches: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in fake.requests_since(req_start) {
        let k = kind(&r);
        let Some(node) = node_of(&r).filter(|_| k.starts_with("watch ")) else {
            continue;
        };
        let timeout = r
            .query
            .split('&')
            .find_map(|p| p.strip_prefix("timeoutSeconds="))
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            // Without one the real API server ends a watch after 30–60 min
            // (--min-request-timeout 1800 s × (1 + rand)).
            .unwrap_or(2700.0);
        watches.insert((node, k), timeout);
    }
    let watch_restarts_ps = watches.values().map(|t| 1.0 / t).sum::<f64>() / nf;
    let watches_started_ps = by_kind
        .iter()
        .filter(|(k, _)| k.starts_with("watch "))
        .fold(0.0, |a, (_, v)| a + v);
    let rps = ours.len() as f64 / nf / secs;
    Ok(Nodes {
        n,
        secs,
        rps,
        steady_rps: rps - watches_started_ps + watch_restarts_ps,
        watches: watches.len() as f64 / nf,
        watch_restarts_ps,
        rps_max_node: per_node.values().copied().max().unwrap_or(0) as f64 / secs,
        watches_started_ps,
        by_kind,
        bytes_up_ps: (up1 - up0) as f64 / nf / secs,
        bytes_down_ps: (down1 - down0) as f64 / nf / secs,
        connections: open as f64 / nf,
        lease_renewals_per_min: lease_count as f64 / nf / secs * 60.0,
        lease_gap_max_s,
        rss_mib: rss / nf,
        cpu_pct: ticks as f64 / clk_tck() / secs * 100.0 / nf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, query: &str) -> LoggedRequest {
        LoggedRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            user: "system:node:n".into(),
            groups: vec![],
            content_type: None,
            user_agent: None,
            status: 200,
            client_cert: None,
            at: Instant::now(),
        }
    }

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        let cases = [
            (
                req(
                    "PUT",
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n",
                    "",
                ),
                "update leases",
            ),
            (
                req("GET", "/api/v1/nodes/n", "resourceVersion=0"),
                "get nodes",
            ),
            (
                req("PATCH", "/api/v1/nodes/n/status", ""),
                "patch nodes/status",
            ),
            (
                req(
                    "GET",
                    "/api/v1/pods",
                    "fieldSelector=spec.nodeName%3Dn&watch=true",
                ),
                "watch pods",
            ),
            (req("GET", "/api/v1/services", "limit=500"), "list services"),
            (
                req("PATCH", "/api/v1/namespaces/default/pods/p/status", ""),
                "patch pods/status",
            ),
            (
                req("POST", "/api/v1/namespaces/default/events", ""),
                "create events",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(kind(&r), want, "{} {}?{}", r.method, r.path, r.query);
        }
    }

    #[test]
    fn the_kubelet_sends_about_one_request_every_five_seconds() {
        let rps = KubeletReference::rps();
        assert!((0.21..0.22).contains(&rps), "{rps}");
    }
}
