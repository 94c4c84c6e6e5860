//! The `virtual-kubelet` binary: flags → config → logging → the threads that run the pods.
//!
//! Owns process concerns only: parsing, logger setup, wiring the pieces together (runtime
//! client, pod sources, pod workers, the relister), the clean stop on SIGTERM/SIGINT, and
//! mapping the final error to an exit code by its kind ([`RunError`]: 2 for bad flags, from
//! clap or validation; 3 the container runtime; 4 the kubeconfig; 5 the node name taken on this
//! runtime; 1 anything else). No logic lives here.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::os::fd::{AsRawFd, OwnedFd};

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use vk_cri::clock::{Clock, RealClock};
use vk_cri::config::{Config, Flags};
use vk_cri::cri::client::Deadlines;
use vk_cri::cri::{GrpcRuntime, Runtime};
use vk_cri::executor::index::PodIndex;
use vk_cri::executor::pleg;
use vk_cri::executor::sync::{Paths, RuntimeSyncer};
use vk_cri::executor::volumes::VolumeManager;
use vk_cri::kube::client::{ApiClient, ClientOptions};
use vk_cri::kube::reflector::{run_pod_reflector, run_service_reflector, ServiceCache};
use vk_cri::kube::watch::WatchConfig;
use vk_cri::kube::KubeApi;
use vk_cri::kubeconfig;
use vk_cri::node::agent::{self as node_agent, NodeAgent};
use vk_cri::node::host::{go_arch, HostFacts, ProcHost};
use vk_cri::node::labels::node_labels;
use vk_cri::node::spec::{node_allocatable, NodeParams, SetAside};
use vk_cri::report::api::ApiReporter;
use vk_cri::report::{LogReporter, PodReporter};
use vk_cri::volume::claim::NodeIdentity;
use vk_cri::volume::fs::HostFs;
use vk_cri::volume::NodeAllocatable;

/// How often running pods' configMap, secret and token volumes are brought up to date (the
/// files change within this period of the object).
const VOLUME_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);
use vk_cri::executor::worker::PodWorkers;
use vk_cri::pod::translate::NodeContext;
use vk_cri::probe::run::RealHandlers;
use vk_cri::probe::Prober;
use vk_cri::server::{self, auth};
use vk_cri::source::{PodEvent, SourcesReady};
use vk_cri::static_pods;

/// The flags, with the `--config` file under them; the configuration and the file's warnings,
/// or the message to exit 2 with (clap's own errors, `--help` and `--version` exit in clap).
fn load_config(argv: &[std::ffi::OsString]) -> Result<(Config, Vec<String>), String> {
    let flags = Flags::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    let mut warnings = Vec::new();
    let flags = match &flags.config {
        None => flags,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--config {}: {e}", path.display()))?;
            let file = vk_cri::kubelet_config::parse(&path.display().to_string(), &text)
                .map_err(|e| e.to_string())?;
            warnings = file.warnings.clone();
            vk_cri::kubelet_config::apply_file(argv, &file).unwrap_or_else(|e| e.exit())
        }
    };
    let config = Config::from_flags(flags).map_err(|e| e.to_string())?;
    Ok((config, warnings))
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (config, warnings) = match load_config(&argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virtual-kubelet: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_level);
    if let Some(path) = &config.config_file {
        log::info!("configuration from {} under the flags", path.display());
    }
    for w in &warnings {
        log::warn!("{w}");
    }
    // Before any thread starts, so that every thread inherits the blocked mask.
    let stop = match stop_signals() {
        Ok(rx) => rx,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(1);
        }
    };
    match run(&config, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Why the daemon could not start or stopped with an error; each kind has its exit code (0 is
/// a clean stop; clap's and the flags' own errors exit 2 before this).
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// Flags or files that cannot work: 2, as a usage error.
    #[error("{0}")]
    Usage(String),
    /// The container runtime cannot be reached or used: 3.
    #[error("{0}")]
    Runtime(String),
    /// The kubeconfig cannot be read or used: 4.
    #[error("{0}")]
    Kubeconfig(String),
    /// Another daemon runs as this node on this runtime: 5.
    #[error("{0}")]
    NodeTaken(String),
    /// Anything else, while starting or running: 1.
    #[error("{0}")]
    Failed(String),
}

impl RunError {
    fn exit_code(&self) -> u8 {
        match self {
            RunError::Failed(_) => 1,
            RunError::Usage(_) => 2,
            RunError::Runtime(_) => 3,
            RunError::Kubeconfig(_) => 4,
            RunError::NodeTaken(_) => 5,
        }
    }
}

impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError::Failed(message)
    }
}

/// SIGTERM and SIGINT, blocked in every thread and taken by one `signals` thread: the first
/// is sent on the channel (the daemon stops cleanly), a second one ends the process at once.
fn stop_signals() -> Result<crossbeam_channel::Receiver<Signal>, String> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| format!("failed to block SIGTERM/SIGINT: {e}"))?;
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut stopping = false;
            while let Ok(sig) = set.wait() {
                if stopping {
                    log::warn!("{sig} again: exiting now");
                    std::process::exit(1);
                }
                stopping = true;
                let _ = tx.send(sig);
            }
        })
        .map_err(|e| format!("failed to start the signal thread: {e}"))?;
    Ok(rx)
}

/// One daemon per node name and runtime: two would each remove the other's pods as orphans.
/// The lock is an abstract Unix socket bound for the life of the process (released by the
/// kernel when it ends, however it ends); binding it again fails while another daemon holds it.
fn claim_node(node_name: &str, cri_socket: &std::path::Path) -> Result<OwnedFd, RunError> {
    use nix::sys::socket::{bind, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let socket_path = std::fs::canonicalize(cri_socket).unwrap_or_else(|_| cri_socket.into());
    let mut name = format!("vk-cri/{node_name}@{}", socket_path.display());
    if name.len() > 100 {
        // An abstract name is at most 107 bytes: a long one is hashed (FNV-1a 64).
        let hash = vk_cri::pod::labels::fnv1a64(name.as_bytes());
        name = format!("vk-cri/{hash:016x}");
    }
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("failed to create the node lock socket: {e}"))?;
    let addr =
        UnixAddr::new_abstract(name.as_bytes()).map_err(|e| format!("node lock {name}: {e}"))?;
    match bind(fd.as_raw_fd(), &addr) {
        Ok(()) => Ok(fd),
        Err(nix::errno::Errno::EADDRINUSE) => Err(RunError::NodeTaken(format!(
            "another virtual-kubelet runs as node {node_name} on {}: give this one another \
             --nodename (each would remove the other's pods as orphans)",
            socket_path.display()
        ))),
        Err(e) => Err(format!("node lock {name}: {e}").into()),
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

/// The kubelet API on `--address:--port`: TLS from the given pair or a generated one (logged),
/// or the rotated serving pair; authentication and authorization from the flags. `api` is the
/// node's API client (none standalone): it reviews tokens and access, and asks for the serving
/// certificate.
fn start_kubelet_api(
    config: &Config,
    runtime: Arc<GrpcRuntime>,
    api: Option<Arc<ApiClient>>,
    pods: server::PodLister,
    ip: IpAddr,
    sync_loop: server::SyncLoopProbe,
    clock: Arc<dyn Clock>,
) -> Result<vk_cri::httpd::Server, RunError> {
    let pair = config
        .tls_cert_file
        .as_deref()
        .zip(config.tls_private_key_file.as_deref());
    let rotated = config
        .rotate_server_certificates
        .then_some(config.cert_dir.as_path());
    let (tls, source) = server::tls_setup(
        pair,
        config.client_ca_file.as_deref(),
        &config.node_name,
        ip,
        rotated,
    )
    // A certificate, key or CA that cannot be read or used is the flags' fault.
    .map_err(|e| RunError::Usage(with_sources(&e)))?;
    match &source {
        server::CertSource::SelfSigned { sans } => log::info!(
            "kubelet API: no --tls-cert-file given, serving a generated self-signed certificate for {}",
            sans.join(", ")
        ),
        server::CertSource::Rotated { from } => {
            match from {
                Some(p) => log::info!("kubelet API: serving {} until it is rotated", p.display()),
                None => log::info!(
                    "kubelet API: no serving certificate yet: handshakes fail until the one requested is issued"
                ),
            }
            if let Some(api) = &api {
                start_serving_rotation(config, api.clone(), tls.cert.clone(), ip, clock);
            }
        }
        server::CertSource::Files => {}
    }
    let reviews = api.map(|api| {
        Arc::new(auth::ApiReviews {
            api: api as Arc<dyn KubeApi>,
        }) as Arc<dyn auth::Reviews>
    });
    let authorizer = match config.authorization_mode {
        vk_cri::config::AuthorizationMode::Webhook => auth::Authorizer::Webhook,
        vk_cri::config::AuthorizationMode::AlwaysAllow => auth::Authorizer::AlwaysAllow,
    };
    let auth =
        auth::Auth::new(config.anonymous_auth, authorizer, reviews).with_ttl(config.auth_cache);
    let host_stats = vk_cri::node::stats::ProcStats::new(&config.pods_dir, &config.cgroup_root);
    let handler = server::KubeletApi::new(auth, runtime, pods, &config.node_name)
        .with_host_stats(Arc::new(host_stats))
        .with_sync_loop(sync_loop)
        .with_configz(vk_cri::kubelet_config::effective(config));
    let addr = std::net::SocketAddr::new(config.address, config.port);
    let srv = server::start(addr, tls, handler).map_err(|e| RunError::Failed(with_sources(&e)))?;
    log::info!(
        "kubelet API on https://{} (authorization {:?}, anonymous {}, client CA {})",
        srv.local_addr(),
        config.authorization_mode,
        config.anonymous_auth,
        config.client_ca_file.is_some()
    );
    Ok(srv)
}

/// An error and its sources, `: `-joined.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Client certificate rotation for the pair in `--cert-dir`, if there is one there (a pair
/// from elsewhere is the user's to renew: logged).
fn start_rotation(
    config: &Config,
    client: &kubeconfig::ClientConfig,
    api: Arc<ApiClient>,
    clock: Arc<dyn Clock>,
) {
    use vk_cri::bootstrap::store;
    let current = store::current_path(&config.cert_dir, store::Pair::Client);
    if !current.exists() {
        log::warn!(
            "--rotate-certificates: no {} (only a pair obtained by TLS bootstrap is rotated)",
            current.display()
        );
        return;
    }
    let rotation = vk_cri::bootstrap::rotate::Rotation::client(
        api,
        client.clone(),
        config.cert_dir.clone(),
        config.node_name.clone(),
        clock,
    );
    if let Err(e) = vk_cri::bootstrap::rotate::spawn(rotation) {
        log::warn!("failed to start client certificate rotation: {e}");
    }
}

/// Serving certificate rotation (`--rotate-server-certificates`): the node asks for a serving
/// certificate for its addresses, now if it has none, and the kubelet API serves each new one.
fn start_serving_rotation(
    config: &Config,
    api: Arc<ApiClient>,
    serving: vk_cri::httpd::ServingCert,
    ip: IpAddr,
    clock: Arc<dyn Clock>,
) {
    use vk_cri::bootstrap::{csr, rotate, store};
    let addresses = vk_cri::node::spec::addresses(&config.node_name, ip);
    let Some(kind) = csr::Kind::serving(&addresses) else {
        log::warn!(
            "--rotate-server-certificates: the node has no address to ask a certificate for"
        );
        return;
    };
    let install: rotate::Install = Box::new(move |cert, key| {
        let cert = std::str::from_utf8(cert).map_err(|e| e.to_string())?;
        serving.replace(cert, key).map_err(|e| with_sources(&e))
    });
    let rotation = rotate::Rotation {
        api,
        pair: store::Pair::Server,
        kind,
        install,
        cert_dir: config.cert_dir.clone(),
        node: config.node_name.clone(),
        clock,
    };
    if let Err(e) = rotate::spawn(rotation) {
        log::warn!("failed to start serving certificate rotation: {e}");
    }
}

/// The healthz port (`--healthz-bind-address:--healthz-port`, plain HTTP), on a thread that
/// binds it and, as the kubelet's, tries again every 5 s while it cannot (logged once).
fn start_healthz_port(addr: std::net::SocketAddr) -> Option<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("healthz".into())
        .spawn(move || {
            let mut logged = false;
            loop {
                let served = vk_cri::httpd::Server::bind_plain(addr).and_then(|mut srv| {
                    srv.serve(Arc::new(server::HealthzPort))?;
                    Ok(srv)
                });
                match served {
                    Ok(srv) => {
                        log::info!("healthz on http://{}/healthz", srv.local_addr());
                        // The server's threads serve; this one keeps it alive.
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => {
                        if !logged {
                            log::warn!("failed to start the healthz server on {addr}: {e} (trying again every 5 s)");
                            logged = true;
                        }
                        std::thread::sleep(Duration::from_secs(5));
                    }
                }
            }
        });
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            log::warn!("failed to start the healthz thread: {e}");
            None
        }
    }
}

fn run(config: &Config, stop: &crossbeam_channel::Receiver<Signal>) -> Result<(), RunError> {
    if config.kubeconfig.is_none() && config.pod_manifest_path.is_none() {
        return Err(RunError::Usage(
            "nothing to run: give --kubeconfig (join a cluster) and/or --pod-manifest-path DIR \
             (static pods; alone, standalone mode)"
                .into(),
        ));
    }
    let runtime: Arc<GrpcRuntime> = Arc::new(GrpcRuntime::new(
        &config.cri_socket,
        Deadlines {
            call: config.runtime_request_timeout,
            pull: config.image_pull_timeout,
        },
    ));
    let version = runtime.version().map_err(|e| {
        RunError::Runtime(format!(
            "{e} (is containerd running with its CRI plugin on {}? see --cri-socket)",
            config.cri_socket.display()
        ))
    })?;
    log::info!(
        "runtime {} (CRI {}) on {}",
        version.node_runtime_version(),
        version.runtime_api_version,
        config.cri_socket.display()
    );
    let _node_lock = claim_node(&config.node_name, &config.cri_socket)?;
    let status = runtime
        .status()
        .map_err(|e| RunError::Runtime(e.to_string()))?;
    for c in status.conditions.iter().filter(|c| !c.status) {
        log::warn!(
            "runtime condition {} is false: {} {}",
            c.type_,
            c.reason,
            c.message
        );
    }
    for dir in [&config.log_dir, &config.pods_dir, &config.volumes_dir] {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
    }

    let host_resolv_conf = match &config.resolv_conf {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| RunError::Usage(format!("--resolv-conf {}: {e}", p.display())))?,
        ),
    };
    let mut node = NodeContext::new(&config.node_name);
    node.log_root = config.log_dir.clone();
    node.cluster_dns = config.cluster_dns.iter().map(|ip| ip.to_string()).collect();
    node.cluster_domain = config.cluster_domain.clone();
    node.cgroup_root = config.cgroup_root.clone();
    node.host_resolv_conf = host_resolv_conf;
    let host = ProcHost::new(config.log_dir.clone());
    let eviction = config.eviction.allocatable_thresholds();
    let mut allocatable = NodeAllocatable::default();
    if let Ok(facts) = HostFacts::gather(&host) {
        node.memory_capacity =
            i64::try_from(facts.usage.memory_total).unwrap_or(node.memory_capacity);
        // The same numbers as the Node's status.allocatable (reserved and eviction thresholds
        // held back), in standalone mode too, as the kubelet's initial node has them.
        allocatable = node_allocatable(
            SetAside {
                kube_reserved: &config.kube_reserved,
                system_reserved: &config.system_reserved,
                eviction: &eviction,
            },
            &facts,
        );
    }
    node.cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let ip = node_ip(config);
    let mut sources = 0;
    if config.pod_manifest_path.is_some() {
        sources += 1;
    }
    if config.kubeconfig.is_some() {
        sources += 1;
    }
    let ready = SourcesReady::new(sources);
    let (tx, rx) = crossbeam_channel::unbounded();

    // One clock for every thread that decides by time: the relister's relists are compared
    // with the syncer's present, so the two must read the same one.
    let clock: Arc<dyn Clock> = Arc::new(RealClock);
    let services = ServiceCache::new();
    // The node's API client, for the kubelet API (reviews, the serving certificate).
    let mut node_client: Option<Arc<ApiClient>> = None;
    // The Node's name and labels, for PersistentVolumes' node affinity.
    let mut identity = NodeIdentity {
        name: config.node_name.clone(),
        labels: Default::default(),
    };
    // Given when the node shuts down: the node agent turns Ready False, the syncer refuses pods.
    let mut shutdown = vk_cri::node::agent::ShutdownNotice::default();
    // The eviction manager's view: the Node's pressure conditions, admission and evictions.
    let pressure = Arc::new(vk_cri::eviction::Shared::default());
    let (reporter, api): (Arc<dyn PodReporter>, Option<Arc<dyn KubeApi>>) = match &config.kubeconfig
    {
        None => {
            log::info!("node {} with IP {ip}, standalone mode", config.node_name);
            (Arc::new(LogReporter::new(clock.clone())), None)
        }
        Some(path) => {
            if let Some(bootstrap_kubeconfig) = &config.bootstrap_kubeconfig {
                let paths = vk_cri::bootstrap::Paths {
                    kubeconfig: path.clone(),
                    bootstrap_kubeconfig: bootstrap_kubeconfig.clone(),
                    cert_dir: config.cert_dir.clone(),
                };
                // A stop signal is seen (not taken) between waits.
                let stopped = || !stop.is_empty();
                match vk_cri::bootstrap::load_client_cert(
                    &paths,
                    &config.node_name,
                    clock.as_ref(),
                    &stopped,
                ) {
                    Ok(()) => {}
                    Err(vk_cri::bootstrap::BootstrapError::Stopped { name }) => {
                        log::info!("stopped while waiting for certificate signing request {name}");
                        return Ok(());
                    }
                    Err(e) if e.is_kubeconfig() => return Err(RunError::Kubeconfig(e.to_string())),
                    Err(e) => return Err(RunError::Failed(e.to_string())),
                }
            }
            let client =
                kubeconfig::load(path, None).map_err(|e| RunError::Kubeconfig(e.to_string()))?;
            let tls = kubeconfig::ureq_tls_config(&client)
                .map_err(|e| RunError::Kubeconfig(e.to_string()))?;
            let api_client = Arc::new(ApiClient::new(
                &client.server,
                tls,
                &client.identity,
                ClientOptions::new(&config.node_name),
            ));
            if config.rotate_certificates {
                start_rotation(config, &client, api_client.clone(), clock.clone());
            }
            node_client = Some(api_client.clone());
            let api: Arc<dyn KubeApi> = api_client;
            log::info!(
                "node {} with IP {ip}, API server {}",
                config.node_name,
                client.server
            );
            let labels = node_labels(
                &config.node_name,
                &config.node_labels,
                go_arch(std::env::consts::ARCH, cfg!(target_endian = "little")),
                std::env::consts::OS,
            )
            .map_err(|e| e.to_string())?;
            identity.labels = labels.clone();
            let mut params = NodeParams::new(
                &config.node_name,
                labels,
                ip,
                &version.node_runtime_version(),
            );
            params.provider_taint = !config.disable_taint;
            params.kubelet_port = config.port;
            params.max_pods = config.max_pods;
            params.lease_duration_seconds = config.node_lease_duration_seconds;
            params.kube_reserved = config.kube_reserved;
            params.system_reserved = config.system_reserved;
            params.eviction = eviction;
            let pressure_view = pressure.clone();
            let reporter = ApiReporter::start(api.clone(), &config.node_name, clock.clone())
                .map_err(|e| format!("failed to start the status writer: {e}"))?;
            let node_events = reporter.clone();
            let agent = NodeAgent::new(
                api.clone(),
                runtime.clone(),
                Box::new(host),
                params,
                config.node_status_report_frequency,
            )
            .with_pressure(Box::new(move || pressure_view.pressure()))
            .with_events(Box::new(move |kind, reason, message| {
                node_events.node_event(kind, reason, message);
            }));
            shutdown = agent.shutdown_notice();
            node_agent::spawn(agent).map_err(|e| format!("failed to start the node agent: {e}"))?;
            let (api2, node, tx2, ready2) = (
                api.clone(),
                config.node_name.clone(),
                tx.clone(),
                ready.clone(),
            );
            std::thread::Builder::new()
                .name("reflector".into())
                .spawn(move || {
                    run_pod_reflector(api2, &node, WatchConfig::default(), &tx2, &ready2);
                })
                .map_err(|e| format!("failed to start the pod reflector: {e}"))?;
            let (api3, services2) = (api.clone(), services.clone());
            std::thread::Builder::new()
                .name("services".into())
                .spawn(move || run_service_reflector(api3, WatchConfig::default(), &services2))
                .map_err(|e| format!("failed to start the service reflector: {e}"))?;
            (reporter, Some(api))
        }
    };

    let index = Arc::new(PodIndex::new());
    let lister: server::PodLister = {
        let (index, reporter) = (index.clone(), reporter.clone());
        Arc::new(move || index.list(|uid| reporter.last_status(uid)))
    };
    // The relister starts after the kubelet API: /healthz's sync loop check finds it here.
    let relister: Arc<std::sync::OnceLock<Arc<vk_cri::executor::cache::RuntimeCache>>> =
        Arc::default();
    let sync_loop: server::SyncLoopProbe = {
        let relister = relister.clone();
        Arc::new(move || relister.get().and_then(|c| c.last_relist()))
    };
    let _kubelet_api = start_kubelet_api(
        config,
        runtime.clone(),
        node_client,
        lister,
        ip,
        sync_loop,
        clock.clone(),
    )?;
    let _healthz = config.healthz.map(start_healthz_port);

    let prober = Prober::start(
        Arc::new(RealHandlers::new(runtime.clone())),
        reporter.clone(),
        clock.clone(),
    )
    .map_err(|e| format!("failed to start the prober: {e}"))?;
    let mut syncer = RuntimeSyncer::new(
        runtime.clone(),
        reporter.clone(),
        node,
        Paths {
            pods_dir: config.pods_dir.clone(),
        },
        vec![ip.to_string()],
        &version.runtime_name,
    );
    let volumes = Arc::new(
        VolumeManager::new(
            Arc::new(HostFs),
            config.volumes_dir.clone(),
            api.clone(),
            allocatable,
            clock.clone(),
        )
        .with_node_identity(identity),
    );
    volumes
        .spawn_refresher(VOLUME_REFRESH)
        .map_err(|e| format!("failed to start the volume refresher: {e}"))?;
    syncer = syncer
        .with_volumes(volumes.clone())
        .keep_terminated_pod_volumes(config.keep_terminated_pod_volumes);
    let pods_dir = config.pods_dir.clone();
    let orphan_volumes = volumes.clone();
    let cgroup_root = config.cgroup_root.clone();
    let on_orphan: pleg::OrphanCleanup = Arc::new(move |uid: &str| {
        if let Err(e) = orphan_volumes.cleanup(uid) {
            log::warn!("orphan {uid}: {e}");
        }
        let _ = std::fs::remove_dir_all(pods_dir.join(uid));
        let cgroups = std::path::Path::new(vk_cri::executor::cgroups::CGROUP_FS);
        if let Err(e) = vk_cri::executor::cgroups::remove_pod_cgroups(cgroups, &cgroup_root, uid) {
            log::warn!("orphan {uid}: {e}");
        }
    });
    if let Some(api) = api {
        syncer = syncer.with_api(api).with_services(services);
    }
    let syncer = Arc::new(
        syncer
            .with_prober(prober.clone())
            .with_clock(clock.clone())
            .with_shutdown_flag(shutdown.flag())
            .with_pod_cgroups(vk_cri::executor::cgroups::CGROUP_FS)
            .with_eviction(pressure.clone()),
    );
    let runtime_cache = syncer.runtime_cache();
    let _ = relister.set(runtime_cache.clone());
    let workers = PodWorkers::new(syncer, clock.clone());
    let poke = workers.clone();
    let evict_poke = workers.clone();
    volumes.set_on_eviction(Box::new(move |uid: &str| evict_poke.poke(uid)));
    prober.set_notify(move |uid| poke.poke(uid));
    if let Some(manifests) = &config.pod_manifest_path {
        log::info!("static pods from {}", manifests.display());
        static_pods::spawn_watcher(
            manifests.clone(),
            config.node_name.clone(),
            Duration::from_secs(1),
            tx.clone(),
            ready.clone(),
        )
        .map_err(|e| format!("failed to start the manifest watcher: {e}"))?;
    }
    drop(tx);
    vk_cri::logrotate::spawn(
        runtime.clone(),
        config.node_name.clone(),
        config.log_dir.clone(),
        config.container_logs,
    )
    .map_err(|e| format!("failed to start container log rotation: {e}"))?;
    let image_gc = Arc::new(std::sync::Mutex::new(vk_cri::imagegc::ImageGc::new(
        runtime.clone(),
        reporter.clone(),
        clock.clone(),
        Box::new(vk_cri::node::stats::statvfs),
        config.image_gc,
        &config.pod_infra_container_image,
    )));
    vk_cri::imagegc::spawn(image_gc.clone())
        .map_err(|e| format!("failed to start image garbage collection: {e}"))?;
    vk_cri::eviction::spawn(vk_cri::eviction::EvictionManager::new(
        config.eviction.clone(),
        pressure.clone(),
        Arc::new(NodePods {
            index: index.clone(),
            workers: workers.clone(),
            reporter: reporter.clone(),
        }),
        vk_cri::eviction::Edges {
            host: Arc::new(vk_cri::node::stats::ProcStats::new(
                &config.pods_dir,
                &config.cgroup_root,
            )),
            runtime: runtime.clone(),
            reporter: reporter.clone(),
            clock: clock.clone(),
            statfs: vk_cri::node::stats::statvfs,
            node_name: config.node_name.clone(),
            pods_dir: config.pods_dir.clone(),
            log_root: config.log_dir.clone(),
            volumes_dir: config.volumes_dir.clone(),
            image_gc: Some(image_gc),
        },
    ))
    .map_err(|e| format!("failed to start the eviction manager: {e}"))?;
    pleg::spawn(
        runtime.clone(),
        runtime_cache,
        config.node_name.clone(),
        config.log_dir.clone(),
        workers.clone(),
        ready,
        Duration::from_secs(1),
        on_orphan,
        clock.clone(),
    )
    .map_err(|e| format!("failed to start the relister: {e}"))?;
    // Set while the node's pods are stopped for its shutdown: the end of it.
    let mut stopping: Option<crossbeam_channel::Receiver<()>> = None;
    loop {
        crossbeam_channel::select! {
            recv(rx) -> event => {
                let Ok(event) = event else {
                    return Err(RunError::Failed("every pod source stopped".into()));
                };
                // Mirror pods stand for static pods in the API server; they are not run
                // themselves.
                if matches!(&event, PodEvent::Upsert(p) if vk_cri::source::is_mirror(p)) {
                    continue;
                }
                index.apply(&event);
                workers.dispatch(event);
            }
            recv(stop) -> sig => {
                let sig = sig.map(|s| s.to_string()).unwrap_or_default();
                if stopping.is_some() {
                    log::info!("{sig}: stopping at once (the node's pods are still being stopped)");
                } else if !config.shutdown_grace_period.is_zero()
                    && node_shuts_down(&config.system_state_command)
                {
                    // Pods are stopped on a thread of their own: meanwhile this loop keeps
                    // taking pods, which the syncer refuses (NodeShutdown).
                    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
                    let pods = index.list(|_| None);
                    let (workers2, shutdown2, config2, sig2) =
                        (workers.clone(), shutdown.clone(), config.clone(), sig.clone());
                    let spawned = std::thread::Builder::new()
                        .name("node-shutdown".into())
                        .spawn(move || {
                            stop_pods_for_node_shutdown(&sig2, &config2, &pods, &workers2, &shutdown2);
                            let _ = done_tx.send(());
                        });
                    match spawned {
                        Ok(_) => {
                            stopping = Some(done_rx);
                            continue;
                        }
                        Err(e) => log::warn!("failed to start the node shutdown: {e}"),
                    }
                }
                shut_down(&sig, reporter.as_ref(), runtime.as_ref(), &config.node_name);
                return Ok(());
            }
            recv(stopping.clone().unwrap_or_else(crossbeam_channel::never)) -> _ => {
                shut_down("node shutdown", reporter.as_ref(), runtime.as_ref(), &config.node_name);
                return Ok(());
            }
        }
    }
}

/// Whether the machine is shutting down, as `--system-state-command` tells (systemd prints
/// `stopping` then); a command that cannot run says no (a plain stop).
fn node_shuts_down(command: &[String]) -> bool {
    let Some((program, args)) = command.split_first() else {
        return false;
    };
    match std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
    {
        // systemctl exits non-zero for every state but running: the words decide.
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim() == "stopping",
        Err(e) => {
            log::warn!(
                "--system-state-command {}: {e}: taking the stop signal as a plain stop",
                command.join(" ")
            );
            false
        }
    }
}

/// The node shuts down: Ready goes False, new pods are refused, and the pods are stopped in
/// the kubelet's order — regular pods, then critical ones, each group within its part of
/// `--shutdown-grace-period` — and left Failed with reason `Terminated`.
fn stop_pods_for_node_shutdown(
    sig: &str,
    config: &Config,
    pods: &[k8s_openapi::api::core::v1::Pod],
    workers: &PodWorkers,
    shutdown: &vk_cri::node::agent::ShutdownNotice,
) {
    use vk_cri::pod::shutdown;
    log::info!(
        "{sig}: the node shuts down: stopping its pods within {}s ({}s for critical pods)",
        config.shutdown_grace_period.as_secs(),
        config.shutdown_grace_period_critical_pods.as_secs()
    );
    shutdown.begin();
    let candidates: Vec<shutdown::Candidate> = pods
        .iter()
        .filter(|p| !workers.is_finished(vk_cri::pod::uid(p)))
        .map(shutdown::Candidate::of)
        .collect();
    let groups = shutdown::plan(
        shutdown::groups(
            config.shutdown_grace_period,
            config.shutdown_grace_period_critical_pods,
        ),
        &candidates,
    );
    for group in groups {
        for (uid, grace) in &group.pods {
            workers.shut_down(uid, *grace);
        }
        // A kill at the end of its grace takes a moment to be confirmed: the group is waited
        // for that much longer, so the daemon does not exit under a StopContainer call.
        let deadline = std::time::Instant::now() + group.period + KILL_CONFIRMATION;
        while !group.pods.iter().all(|(uid, _)| workers.is_stopped(uid)) {
            if std::time::Instant::now() >= deadline {
                log::info!(
                    "node shutdown: pods of priority {} and up did not all stop within {}s",
                    group.priority,
                    group.period.as_secs()
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// How long after its period a shutdown group is still waited for (the runtime confirming
/// the SIGKILL that ends a grace).
const KILL_CONFIRMATION: Duration = Duration::from_secs(2);

/// A clean stop: no new work is taken, what is queued for the API server is written (for up to
/// [`FLUSH_TIMEOUT`]), and the pods are left running for the next start to adopt. The kubelet
/// API closes with the process.
fn shut_down(sig: &str, reporter: &dyn PodReporter, runtime: &dyn Runtime, node_name: &str) {
    log::info!("{sig}: stopping");
    if !reporter.flush(FLUSH_TIMEOUT) {
        log::warn!("stopping with status writes or events still queued after {FLUSH_TIMEOUT:?}");
    }
    let running: std::collections::BTreeSet<String> = runtime
        .list_pod_sandboxes(&vk_cri::pod::labels::owner_selector(node_name))
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            s.state.enum_value_or_default() == vk_cri::cri::api::PodSandboxState::SANDBOX_READY
        })
        .filter_map(|mut s| s.labels.remove(vk_cri::pod::labels::POD_UID))
        .collect();
    log::info!(
        "stopping: {} pods keep running in the runtime; the next start adopts them",
        running.len()
    );
}

/// How long a clean stop waits for queued status writes and events.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The pods the eviction manager may evict: known, not deleting, not finished.
struct NodePods {
    index: Arc<PodIndex>,
    workers: PodWorkers,
    reporter: Arc<dyn PodReporter>,
}

impl vk_cri::eviction::ActivePods for NodePods {
    fn active(&self) -> Vec<Arc<k8s_openapi::api::core::v1::Pod>> {
        self.index
            .pods()
            .into_iter()
            .filter(|p| {
                let uid = vk_cri::pod::uid(p);
                let phase = self.reporter.last_status(uid).and_then(|s| s.phase.clone());
                p.metadata.deletion_timestamp.is_none()
                    && !self.workers.is_finished(uid)
                    && !matches!(phase.as_deref(), Some("Succeeded" | "Failed"))
            })
            .collect()
    }

    fn poke(&self, uid: &str) {
        self.workers.poke(uid);
    }
}
