//! The `virtual-kubelet` binary: flags → config → logging → the threads that run the pods.
//!
//! Owns process concerns only: parsing, logger setup, wiring the pieces together (runtime
//! client, pod sources, pod workers, the relister) and mapping the final error to an exit code
//! (2 for bad flags, from clap or validation; 1 for a failure at run time). No logic lives here.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vk_cri::config::{Config, Flags};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Runtime};
use vk_cri::pod::pleg::{self, SourcesReady};
use vk_cri::pod::report::LogReporter;
use vk_cri::pod::sync::{Paths, RuntimeSyncer};
use vk_cri::pod::translate::NodeContext;
use vk_cri::pod::worker::PodWorkers;
use vk_cri::static_pods;

fn main() -> ExitCode {
    let flags = Flags::parse();
    let config = match Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virtual-kubelet: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    match run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: log::LevelFilter) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level);
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format_timestamp_millis().init();
}

/// MemTotal from /proc/meminfo, in bytes.
fn memory_capacity() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The node's IP: the flag, else the first non-loopback IPv4 address of an interface that is up,
/// else loopback.
fn node_ip(config: &Config) -> IpAddr {
    if let Some(ip) = config.node_ip {
        if ip.is_loopback() {
            log::warn!("node IP {ip} is a loopback address: only this machine can reach the pods' host ports and the kubelet API");
        }
        return ip;
    }
    let found = nix::ifaddrs::getifaddrs().ok().and_then(|addrs| {
        addrs
            .filter(|a| a.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP))
            .filter_map(|a| a.address?.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
            .find(|ip| !ip.is_loopback())
    });
    found.unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

fn run(config: &Config) -> Result<(), String> {
    let runtime: Arc<GrpcRuntime> = Arc::new(GrpcRuntime::new(
        &config.cri_socket,
        Deadlines {
            call: config.runtime_request_timeout,
            pull: config.image_pull_timeout,
        },
    ));
    let version = runtime.version().map_err(|e| {
        format!(
            "{e} (is containerd running with its CRI plugin on {}? see --cri-socket)",
            config.cri_socket.display()
        )
    })?;
    log::info!(
        "runtime {} (CRI {}) on {}",
        version.node_runtime_version(),
        version.runtime_api_version,
        config.cri_socket.display()
    );
    let status = runtime.status().map_err(|e| e.to_string())?;
    for c in status.conditions.iter().filter(|c| !c.status) {
        log::warn!(
            "runtime condition {} is false: {} {}",
            c.type_,
            c.reason,
            c.message
        );
    }
    if config.kubeconfig.is_some() {
        return Err(
            "running against an API server is not wired into this version yet: \
                    use --pod-manifest-path without --kubeconfig (standalone mode)"
                .into(),
        );
    }
    let Some(manifests) = config.pod_manifest_path.clone() else {
        return Err("nothing to run: give --pod-manifest-path DIR (standalone mode)".into());
    };

    let host_resolv_conf = match &config.resolv_conf {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("--resolv-conf {}: {e}", p.display()))?,
        ),
    };
    let mut node = NodeContext::new(&config.node_name);
    node.log_root = config.log_dir.clone();
    node.cluster_dns = config.cluster_dns.iter().map(|ip| ip.to_string()).collect();
    node.cluster_domain = config.cluster_domain.clone();
    node.host_resolv_conf = host_resolv_conf;
    node.memory_capacity = memory_capacity().unwrap_or(node.memory_capacity);
    node.cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let ip = node_ip(config);
    log::info!(
        "node {} with IP {ip}, standalone: pods from {}",
        config.node_name,
        manifests.display()
    );

    let reporter = Arc::new(LogReporter::new());
    let syncer = Arc::new(RuntimeSyncer::new(
        runtime.clone(),
        reporter,
        node,
        Paths {
            pods_dir: config.pods_dir.clone(),
        },
        vec![ip.to_string()],
        &version.runtime_name,
    ));
    let workers = PodWorkers::new(syncer);
    let ready = SourcesReady::new(1);
    let (tx, rx) = crossbeam_channel::unbounded();
    static_pods::spawn_watcher(
        manifests,
        config.node_name.clone(),
        Duration::from_secs(1),
        tx,
        ready.clone(),
    )
    .map_err(|e| format!("failed to start the manifest watcher: {e}"))?;
    pleg::spawn(
        runtime,
        config.node_name.clone(),
        config.log_dir.clone(),
        workers.clone(),
        ready,
        Duration::from_secs(1),
    )
    .map_err(|e| format!("failed to start the relister: {e}"))?;
    for event in rx {
        workers.dispatch(event);
    }
    Err("every pod source stopped".into())
}
