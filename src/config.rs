//! Command-line flags and environment → a validated [`Config`].
//!
//! Owns the flag set (names, environment fallbacks and defaults, which `--help` lists) and its
//! validation. Two stages, as in ripgrep: [`Flags`] is what clap parsed, with no I/O and no
//! interpretation; [`Config::from_flags`] checks and converts it. Nothing here opens files or
//! sockets; main.rs does that with the result.
//!
//! Seed compatibility: `virtual-kubelet --provider cri --kubeconfig admin.conf`, and the Go
//! provider's environment variables VKUBELET_POD_IP, APISERVER_CERT_LOCATION,
//! APISERVER_KEY_LOCATION and KUBELET_PORT.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Default CRI socket of a containerd installed from packages.
pub const DEFAULT_CRI_SOCKET: &str = "/run/containerd/containerd.sock";
/// Default root of the pods' container logs.
pub const DEFAULT_LOG_DIR: &str = "/var/log/vk-cri/";
/// Default root of the pods' volumes.
pub const DEFAULT_VOLUMES_DIR: &str = "/run/vk-cri/volumes/";
/// Default directory of the certificates TLS bootstrap obtains.
pub const DEFAULT_CERT_DIR: &str = "/var/lib/vk-cri/pki";
/// Default root of the files vk-cri manages per pod (/etc/hosts, termination logs).
pub const DEFAULT_PODS_DIR: &str = "/run/vk-cri/pods/";

/// The flags as parsed, before validation.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(
    name = "virtual-kubelet",
    version,
    about = "vk-cri: a virtual kubelet that runs the pods bound to its Node in containerd, through CRI v1",
    long_about = None,
    after_help = "The log level is taken from RUST_LOG when it is set (env_logger syntax), else from --log-level."
)]
pub struct Flags {
    /// Provider that runs the pods; this binary implements `cri` only
    #[arg(long, value_name = "NAME", default_value = "cri")]
    pub provider: String,

    /// A kubelet.config.k8s.io/v1beta1 KubeletConfiguration file (YAML or JSON); flags given
    /// on the command line or in the environment override it
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Kubeconfig to reach the API server as this node
    #[arg(long, value_name = "PATH", env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,

    /// Bootstrap kubeconfig (a bootstrap token): when --kubeconfig is missing or its client
    /// certificate has expired, request one with a CertificateSigningRequest and write --kubeconfig
    #[arg(long, value_name = "PATH")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Renew the client certificate in --cert-dir at 70-90% of its lifetime [default: true with --bootstrap-kubeconfig]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub rotate_certificates: Option<bool>,

    /// Request the kubelet API's serving certificate from the API server (signer
    /// kubernetes.io/kubelet-serving, SANs the node's addresses) and renew it at 70-90% of its lifetime
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", default_value = "false", action = clap::ArgAction::Set)]
    pub rotate_server_certificates: bool,

    /// Directory of the certificates TLS bootstrap and rotation obtain
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CERT_DIR)]
    pub cert_dir: PathBuf,

    /// Name of the Node this kubelet registers as
    #[arg(long, value_name = "NAME", default_value = "virtual-kubelet")]
    pub nodename: String,

    /// CRI endpoint of the container runtime: a socket path or unix:// URL
    #[arg(
        long,
        visible_alias = "container-runtime-endpoint",
        value_name = "PATH",
        default_value = DEFAULT_CRI_SOCKET
    )]
    pub cri_socket: String,

    /// Root directory of the pods' container logs
    #[arg(long, value_name = "DIR", default_value = DEFAULT_LOG_DIR)]
    pub log_dir: PathBuf,

    /// Root directory of the pods' volumes
    #[arg(long, value_name = "DIR", default_value = DEFAULT_VOLUMES_DIR)]
    pub volumes_dir: PathBuf,

    /// Root directory of the files vk-cri manages per pod (/etc/hosts, termination logs)
    #[arg(long, value_name = "DIR", default_value = DEFAULT_PODS_DIR)]
    pub pods_dir: PathBuf,

    /// Cluster DNS server IPs for pods with dnsPolicy ClusterFirst (comma-separated)
    #[arg(long, value_name = "IP[,IP]", value_delimiter = ',')]
    pub cluster_dns: Vec<String>,

    /// Cluster domain: pods search <ns>.svc.<domain>, svc.<domain> and <domain>
    #[arg(long, value_name = "DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Cgroup (cgroupfs path) under which each pod gets <root>/<qos>/pod<uid> ("" leaves it to the runtime)
    #[arg(long, value_name = "PATH", default_value = "/vk-cri")]
    pub cgroup_root: String,

    /// Resolver configuration for pods with dnsPolicy Default ("" for none)
    #[arg(long, value_name = "PATH", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,

    /// Port of the kubelet API (logs, exec, attach, port-forward, stats)
    #[arg(
        long,
        value_name = "PORT",
        env = "KUBELET_PORT",
        default_value_t = 10250
    )]
    pub port: u16,

    /// IP address the Node reports as InternalIP
    #[arg(long, value_name = "IP", env = "VKUBELET_POD_IP")]
    pub node_ip: Option<String>,

    /// Serving certificate (PEM) of the kubelet API
    #[arg(long, value_name = "PATH", env = "APISERVER_CERT_LOCATION")]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of the serving certificate
    #[arg(long, value_name = "PATH", env = "APISERVER_KEY_LOCATION")]
    pub tls_private_key_file: Option<PathBuf>,

    /// IP address the kubelet API listens on
    #[arg(long, value_name = "IP", default_value = "0.0.0.0")]
    pub address: String,

    /// CA bundle (PEM) that verifies client certificates on the kubelet API (user = CN, groups = O)
    #[arg(long, value_name = "PATH")]
    pub client_ca_file: Option<PathBuf>,

    /// Authorization of kubelet API requests: Webhook (SubjectAccessReview) or AlwaysAllow [default: Webhook with --kubeconfig, else AlwaysAllow]
    #[arg(long, value_name = "MODE")]
    pub authorization_mode: Option<String>,

    /// How long a bearer token's TokenReview answer is kept
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub authentication_token_webhook_cache_ttl: String,

    /// How long an allowed SubjectAccessReview answer is kept
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub authorization_webhook_cache_authorized_ttl: String,

    /// How long a denied SubjectAccessReview answer is kept
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub authorization_webhook_cache_unauthorized_ttl: String,

    /// Serve unauthenticated kubelet API requests as system:anonymous (else 401)
    #[arg(long, value_name = "BOOL", default_value = "false", action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,

    /// Extra labels of the Node (k=v,k2=v2); labels NodeRestriction forbids are refused
    #[arg(long, value_name = "K=V[,K=V]", default_value = "")]
    pub node_labels: String,

    /// Register without the virtual-kubelet.io/provider=cri:NoSchedule taint
    #[arg(long)]
    pub disable_taint: bool,

    /// Pods this node accepts (its capacity)
    #[arg(long, value_name = "N", default_value_t = 110)]
    pub max_pods: u32,

    /// Keep the volumes of pods that finished (Succeeded/Failed) until the pods are deleted,
    /// instead of tearing them down at once (the kubelet's deprecated flag, for debugging)
    #[arg(long)]
    pub keep_terminated_pod_volumes: bool,

    /// Resources reserved for Kubernetes components (cpu=100m,memory=256Mi,ephemeral-storage=1Gi)
    #[arg(long, value_name = "RESOURCES", default_value = "")]
    pub kube_reserved: String,

    /// Resources reserved for the system
    #[arg(long, value_name = "RESOURCES", default_value = "")]
    pub system_reserved: String,

    /// Longest time between two node status reports when nothing changes
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub node_status_report_frequency: String,

    /// Duration of the node's Lease; it is renewed every quarter of it
    #[arg(long, value_name = "SECONDS", default_value_t = 40, value_parser = clap::value_parser!(i32).range(1..))]
    pub node_lease_duration_seconds: i32,

    /// On a node shutdown, how long pods are given to stop (0 turns graceful node shutdown off;
    /// a plain stop of the daemon always leaves pods running)
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub shutdown_grace_period: String,

    /// The part of --shutdown-grace-period kept for critical pods (priority 2000000000 and up),
    /// stopped after the others
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub shutdown_grace_period_critical_pods: String,

    /// The command whose output tells a node shutdown from a plain stop at SIGTERM: the node shuts
    /// down when it prints "stopping" (systemd's state while it shuts the machine down)
    #[arg(
        long,
        value_name = "COMMAND",
        default_value = "systemctl is-system-running"
    )]
    pub system_state_command: String,

    /// Directory of static pod manifests (YAML or JSON) to run
    #[arg(long, value_name = "DIR")]
    pub pod_manifest_path: Option<PathBuf>,

    /// Deadline of every runtime call except image pulls (Go duration: 2m, 30s, 1m30s)
    #[arg(long, value_name = "DURATION", default_value = "2m")]
    pub runtime_request_timeout: String,

    /// Deadline of an image pull
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub image_pull_timeout: String,

    /// Size at which a container's log file is rotated (a quantity: 10Mi, 512Ki)
    #[arg(long, value_name = "QUANTITY", default_value = "10Mi")]
    pub container_log_max_size: String,

    /// Log files kept per container, the live one included (at least 2)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub container_log_max_files: u32,

    /// How often container log sizes are checked (at least 3s)
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub container_log_monitor_interval: String,

    /// Image filesystem usage (percent) at which image garbage collection runs; 100 turns it off
    #[arg(long, value_name = "PERCENT", default_value_t = 85)]
    pub image_gc_high_threshold: i32,

    /// Image filesystem usage (percent) that image garbage collection frees down to
    #[arg(long, value_name = "PERCENT", default_value_t = 80)]
    pub image_gc_low_threshold: i32,

    /// Minimum age of an unused image before it is garbage collected
    #[arg(long, value_name = "DURATION", default_value = "2m0s")]
    pub minimum_image_ttl_duration: String,

    /// The sandbox (pause) image: never garbage collected, nor the runtime's own sandbox image
    #[arg(
        long,
        value_name = "IMAGE",
        default_value = "registry.k8s.io/pause:3.9"
    )]
    pub pod_infra_container_image: String,

    /// Hard eviction thresholds, `signal<value` comma-separated (the kubelet's Linux default);
    /// a value of 0% or 100% turns a signal off
    #[arg(
        long,
        value_name = "SIGNAL<VALUE,...",
        default_value = crate::eviction::core::DEFAULT_HARD
    )]
    pub eviction_hard: String,

    /// Soft eviction thresholds, `signal<value` comma-separated; each needs a grace period
    #[arg(long, value_name = "SIGNAL<VALUE,...", default_value = "")]
    pub eviction_soft: String,

    /// How long a soft threshold must hold before pods are evicted, `signal=duration,...`
    #[arg(long, value_name = "SIGNAL=DURATION,...", default_value = "")]
    pub eviction_soft_grace_period: String,

    /// What an eviction must free beyond the threshold, `signal=quantity,...`
    #[arg(long, value_name = "SIGNAL=QUANTITY,...", default_value = "")]
    pub eviction_minimum_reclaim: String,

    /// How long a pressure condition stays after its threshold was last met
    #[arg(long, value_name = "DURATION", default_value = "5m0s")]
    pub eviction_pressure_transition_period: String,

    /// Grace period (seconds) of a pod evicted for a soft threshold; negative: the pod's own
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub eviction_max_pod_grace_period: i64,

    /// Address of the healthz endpoint (plain HTTP /healthz)
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub healthz_bind_address: String,

    /// Port of the healthz endpoint; 0 disables it
    #[arg(long, value_name = "PORT", default_value_t = 10248)]
    pub healthz_port: u16,

    /// Log level: error, warn, info, debug or trace
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `--config`, the file read under the flags.
    pub config_file: Option<PathBuf>,
    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`; only with `kubeconfig`.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub cert_dir: PathBuf,
    /// `--rotate-certificates`, its default applied.
    pub rotate_certificates: bool,
    /// `--rotate-server-certificates`; only with `kubeconfig`.
    pub rotate_server_certificates: bool,
    /// `--healthz-bind-address:--healthz-port`; `None` when the port is 0.
    pub healthz: Option<std::net::SocketAddr>,
    pub node_name: String,
    pub cri_socket: PathBuf,
    pub log_dir: PathBuf,
    pub volumes_dir: PathBuf,
    pub pods_dir: PathBuf,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub cgroup_root: String,
    pub resolv_conf: Option<PathBuf>,
    pub port: u16,
    pub node_ip: Option<IpAddr>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub address: IpAddr,
    pub client_ca_file: Option<PathBuf>,
    pub authorization_mode: AuthorizationMode,
    pub anonymous_auth: bool,
    /// The webhook caches' lifetimes (token reviews; allowed and denied access reviews).
    pub auth_cache: crate::server::auth::CacheTtl,
    pub pod_manifest_path: Option<PathBuf>,
    pub node_labels: Vec<(String, String)>,
    pub disable_taint: bool,
    pub max_pods: u32,
    pub keep_terminated_pod_volumes: bool,
    pub kube_reserved: crate::node::spec::Reserved,
    pub system_reserved: crate::node::spec::Reserved,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: i32,
    /// Graceful node shutdown (`shutdownGracePeriod`, its critical part); 0: off.
    pub shutdown_grace_period: Duration,
    pub shutdown_grace_period_critical_pods: Duration,
    /// `--system-state-command`, split into words.
    pub system_state_command: Vec<String>,
    pub runtime_request_timeout: Duration,
    pub image_pull_timeout: Duration,
    pub container_logs: crate::logrotate::Policy,
    pub image_gc: crate::imagegc::Policy,
    pub pod_infra_container_image: String,
    pub eviction: crate::eviction::Config,
    pub log_level: log::LevelFilter,
}

/// How kubelet API requests are authorized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Ask the API server (SubjectAccessReview), as the kubelet's `Webhook` mode.
    Webhook,
    /// Every authenticated request is allowed.
    AlwaysAllow,
}

/// A flag value that does not make sense; the message names the flag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("--provider {0:?} is not supported: this binary implements the cri provider only")]
    Provider(String),
    #[error("--nodename {0:?} is not a valid node name: {1}")]
    NodeName(String, &'static str),
    #[error("--node-ip {0:?} is not an IP address")]
    NodeIp(String),
    #[error("--{flag} {value:?} is not a duration: {reason}")]
    Duration {
        flag: &'static str,
        value: String,
        reason: String,
    },
    #[error("--log-level {0:?} is not one of error, warn, info, debug, trace, off")]
    LogLevel(String),
    #[error("--tls-cert-file and --tls-private-key-file must be given together")]
    TlsPair,
    #[error("--port 0 is not a port")]
    Port,
    #[error("--{flag}: {message}")]
    Node { flag: &'static str, message: String },
    #[error("--max-pods 0: a node must accept at least one pod")]
    MaxPods,
    #[error("--cluster-dns {0:?} is not an IP address")]
    ClusterDns(String),
    #[error("--cluster-domain {0:?} is not a valid domain: {1}")]
    ClusterDomain(String, &'static str),
    #[error("--address {0:?} is not an IP address")]
    Address(String),
    #[error("--authorization-mode {0:?} is not one of Webhook, AlwaysAllow")]
    AuthorizationMode(String),
    #[error("--container-log-max-size {0:?} is not a non-negative quantity")]
    ContainerLogMaxSize(String),
    #[error("--container-log-max-files {0} must be greater than 1")]
    ContainerLogMaxFiles(u32),
    #[error("invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) {0} must be between 0 and 100, inclusive")]
    ImageGcHighThreshold(i32),
    #[error("invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {0} must be between 0 and 100, inclusive")]
    ImageGcLowThreshold(i32),
    #[error("invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) {low} must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) {high}")]
    ImageGcThresholds { low: i32, high: i32 },
    #[error("--{flag}: {message}")]
    Eviction { flag: &'static str, message: String },
    #[error("--container-log-monitor-interval {0:?} must be at least 3s")]
    ContainerLogMonitorInterval(String),
    #[error("--authorization-mode=Webhook needs --kubeconfig: the API server answers the SubjectAccessReviews")]
    WebhookWithoutApiServer,
    #[error("--bootstrap-kubeconfig needs --kubeconfig: the path where the obtained kubeconfig is written")]
    BootstrapWithoutKubeconfig,
    #[error("--rotate-server-certificates needs --kubeconfig: the API server issues the serving certificate")]
    ServerRotationWithoutApiServer,
    #[error("--shutdown-grace-period-critical-pods {critical:?} must not be longer than --shutdown-grace-period {period:?}")]
    ShutdownGracePeriods { period: String, critical: String },
    #[error("--system-state-command is empty")]
    SystemStateCommand,
    #[error("--healthz-bind-address {0:?} is not an IP address")]
    HealthzAddress(String),
}

impl Config {
    /// Validates parsed flags.
    pub fn from_flags(f: Flags) -> Result<Config, ConfigError> {
        if f.provider != "cri" {
            return Err(ConfigError::Provider(f.provider));
        }
        if let Some(reason) = invalid_node_name(&f.nodename) {
            return Err(ConfigError::NodeName(f.nodename, reason));
        }
        if f.port == 0 {
            return Err(ConfigError::Port);
        }
        let node_ip = match f
            .node_ip
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| ConfigError::NodeIp(s.to_string()))?),
        };
        if f.tls_cert_file.is_some() != f.tls_private_key_file.is_some() {
            return Err(ConfigError::TlsPair);
        }
        let duration = |flag: &'static str, value: &str| {
            parse_duration(value).map_err(|reason| ConfigError::Duration {
                flag,
                value: value.to_string(),
                reason,
            })
        };
        let cluster_dns = f
            .cluster_dns
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|_| ConfigError::ClusterDns(s.to_string()))
            })
            .collect::<Result<Vec<IpAddr>, _>>()?;
        if let Some(reason) = invalid_node_name(&f.cluster_domain) {
            return Err(ConfigError::ClusterDomain(f.cluster_domain, reason));
        }
        let node_err = |flag: &'static str| {
            move |e: crate::node::NodeError| ConfigError::Node {
                flag,
                message: e.to_string(),
            }
        };
        let node_labels = crate::node::labels::parse_node_labels(&f.node_labels)
            .map_err(node_err("node-labels"))?;
        // Refused up front: NodeRestriction would answer 403 to the registration.
        crate::node::labels::node_labels(&f.nodename, &node_labels, "amd64", "linux")
            .map_err(node_err("node-labels"))?;
        let kube_reserved = crate::node::spec::parse_reserved(&f.kube_reserved)
            .map_err(node_err("kube-reserved"))?;
        let system_reserved = crate::node::spec::parse_reserved(&f.system_reserved)
            .map_err(node_err("system-reserved"))?;
        if f.max_pods == 0 {
            return Err(ConfigError::MaxPods);
        }
        let healthz = match f.healthz_port {
            0 => None,
            port => {
                let ip: IpAddr = f
                    .healthz_bind_address
                    .trim()
                    .parse()
                    .map_err(|_| ConfigError::HealthzAddress(f.healthz_bind_address.clone()))?;
                Some(std::net::SocketAddr::new(ip, port))
            }
        };
        let kubeconfig = f.kubeconfig.filter(|p| !p.as_os_str().is_empty());
        let bootstrap_kubeconfig = f.bootstrap_kubeconfig.filter(|p| !p.as_os_str().is_empty());
        let rotate_certificates = f
            .rotate_certificates
            .unwrap_or(bootstrap_kubeconfig.is_some());
        if bootstrap_kubeconfig.is_some() && kubeconfig.is_none() {
            return Err(ConfigError::BootstrapWithoutKubeconfig);
        }
        if f.rotate_server_certificates && kubeconfig.is_none() {
            return Err(ConfigError::ServerRotationWithoutApiServer);
        }
        let address = f
            .address
            .trim()
            .parse()
            .map_err(|_| ConfigError::Address(f.address.clone()))?;
        let authorization_mode = match f.authorization_mode.as_deref().map(str::trim) {
            None | Some("") if kubeconfig.is_some() => AuthorizationMode::Webhook,
            None | Some("") => AuthorizationMode::AlwaysAllow,
            Some("Webhook") if kubeconfig.is_none() => {
                return Err(ConfigError::WebhookWithoutApiServer)
            }
            Some("Webhook") => AuthorizationMode::Webhook,
            Some("AlwaysAllow") => AuthorizationMode::AlwaysAllow,
            Some(other) => return Err(ConfigError::AuthorizationMode(other.to_string())),
        };
        let container_logs = {
            let max_size = crate::node::quantity::Amount::parse(&f.container_log_max_size)
                .ok()
                .filter(|a| !a.is_negative())
                .map(|a| u64::try_from(a.units_floor()).unwrap_or(u64::MAX))
                .ok_or_else(|| {
                    ConfigError::ContainerLogMaxSize(f.container_log_max_size.clone())
                })?;
            if f.container_log_max_files < 2 {
                return Err(ConfigError::ContainerLogMaxFiles(f.container_log_max_files));
            }
            let interval = duration(
                "container-log-monitor-interval",
                &f.container_log_monitor_interval,
            )?;
            if interval < Duration::from_secs(3) {
                return Err(ConfigError::ContainerLogMonitorInterval(
                    f.container_log_monitor_interval.clone(),
                ));
            }
            crate::logrotate::Policy {
                max_size,
                max_files: f.container_log_max_files as usize,
                interval,
            }
        };
        let image_gc = {
            let (high, low) = (f.image_gc_high_threshold, f.image_gc_low_threshold);
            let percent = |v: i32| u8::try_from(v).ok().filter(|p| *p <= 100);
            let high_threshold_percent =
                percent(high).ok_or(ConfigError::ImageGcHighThreshold(high))?;
            let low_threshold_percent =
                percent(low).ok_or(ConfigError::ImageGcLowThreshold(low))?;
            if low >= high {
                return Err(ConfigError::ImageGcThresholds { low, high });
            }
            crate::imagegc::Policy {
                high_threshold_percent,
                low_threshold_percent,
                min_age: duration("minimum-image-ttl-duration", &f.minimum_image_ttl_duration)?,
            }
        };
        let eviction = {
            let pairs = |flag: &'static str, text: &str, sep: char| {
                text.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.split_once(sep)
                            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                            .ok_or_else(|| ConfigError::Eviction {
                                flag,
                                message: format!("{p:?} is not of the form SIGNAL{sep}VALUE"),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            };
            let hard = pairs("eviction-hard", &f.eviction_hard, '<')?;
            let soft = pairs("eviction-soft", &f.eviction_soft, '<')?;
            let grace = pairs(
                "eviction-soft-grace-period",
                &f.eviction_soft_grace_period,
                '=',
            )?
            .into_iter()
            .map(|(k, v)| Ok((k, duration("eviction-soft-grace-period", &v)?)))
            .collect::<Result<Vec<_>, ConfigError>>()?;
            let reclaim = pairs("eviction-minimum-reclaim", &f.eviction_minimum_reclaim, '=')?;
            let thresholds = crate::eviction::core::parse_thresholds(
                &hard, &soft, &grace, &reclaim,
            )
            .map_err(|message| ConfigError::Eviction {
                flag: "eviction-hard, --eviction-soft",
                message,
            })?;
            crate::eviction::Config {
                thresholds,
                pressure_transition_period: duration(
                    "eviction-pressure-transition-period",
                    &f.eviction_pressure_transition_period,
                )?,
                max_pod_grace_period: f.eviction_max_pod_grace_period,
            }
        };
        let shutdown_grace_period = duration("shutdown-grace-period", &f.shutdown_grace_period)?;
        let shutdown_grace_period_critical_pods = duration(
            "shutdown-grace-period-critical-pods",
            &f.shutdown_grace_period_critical_pods,
        )?;
        if shutdown_grace_period_critical_pods > shutdown_grace_period {
            return Err(ConfigError::ShutdownGracePeriods {
                period: f.shutdown_grace_period.clone(),
                critical: f.shutdown_grace_period_critical_pods.clone(),
            });
        }
        let system_state_command: Vec<String> = f
            .system_state_command
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if system_state_command.is_empty() {
            return Err(ConfigError::SystemStateCommand);
        }
        let log_level = f
            .log_level
            .parse::<log::LevelFilter>()
            .map_err(|_| ConfigError::LogLevel(f.log_level.clone()))?;
        Ok(Config {
            runtime_request_timeout: duration(
                "runtime-request-timeout",
                &f.runtime_request_timeout,
            )?,
            image_pull_timeout: duration("image-pull-timeout", &f.image_pull_timeout)?,
            auth_cache: crate::server::auth::CacheTtl {
                token: duration(
                    "authentication-token-webhook-cache-ttl",
                    &f.authentication_token_webhook_cache_ttl,
                )?,
                allowed: duration(
                    "authorization-webhook-cache-authorized-ttl",
                    &f.authorization_webhook_cache_authorized_ttl,
                )?,
                denied: duration(
                    "authorization-webhook-cache-unauthorized-ttl",
                    &f.authorization_webhook_cache_unauthorized_ttl,
                )?,
            },
            node_lease_duration_seconds: f.node_lease_duration_seconds,
            shutdown_grace_period,
            shutdown_grace_period_critical_pods,
            system_state_command,
            config_file: f.config,
            kubeconfig,
            bootstrap_kubeconfig,
            rotate_certificates,
            rotate_server_certificates: f.rotate_server_certificates,
            cert_dir: f.cert_dir,
            healthz,
            node_name: f.nodename,
            cri_socket: crate::cri::client::socket_path(&f.cri_socket).to_path_buf(),
            log_dir: f.log_dir,
            volumes_dir: f.volumes_dir,
            pods_dir: f.pods_dir,
            cluster_dns,
            cluster_domain: f.cluster_domain,
            cgroup_root: f.cgroup_root,
            resolv_conf: Some(f.resolv_conf).filter(|p| !p.as_os_str().is_empty()),
            port: f.port,
            node_ip,
            tls_cert_file: f.tls_cert_file,
            tls_private_key_file: f.tls_private_key_file,
            address,
            client_ca_file: f.client_ca_file.filter(|p| !p.as_os_str().is_empty()),
            authorization_mode,
            anonymous_auth: f.anonymous_auth,
            pod_manifest_path: f.pod_manifest_path,
            node_labels,
            disable_taint: f.disable_taint,
            max_pods: f.max_pods,
            keep_terminated_pod_volumes: f.keep_terminated_pod_volumes,
            kube_reserved,
            system_reserved,
            node_status_report_frequency: duration(
                "node-status-report-frequency",
                &f.node_status_report_frequency,
            )?,
            container_logs,
            image_gc,
            pod_infra_container_image: f.pod_infra_container_image.trim().to_string(),
            eviction,
            log_level,
        })
    }
}

/// Why `name` cannot be a Node name (a DNS-1123 subdomain), if it cannot.
fn invalid_node_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("it is empty");
    }
    if name.len() > 253 {
        return Some("it is longer than 253 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Some("only lowercase letters, digits, '-' and '.' are allowed");
    }
    let alnum = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    if !alnum(name.bytes().next()) || !alnum(name.bytes().last()) {
        return Some("it must start and end with a letter or digit");
    }
    None
}

/// Parses a Go duration such as `2m`, `1m30s`, `500ms` or `1.5h` (the kubelet's flag format).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit after {rest:?} (use ns, us, ms, s, m or h)"))?;
        if num_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let value: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("bad number {:?}", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} (use ns, us, ms, s, m or h)")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["virtual-kubelet"];
        argv.extend_from_slice(args);
        let flags = Flags::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_flags(flags).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_seed_provider() {
        // Run without the environment fallbacks leaking in from the test process.
        for var in [
            "KUBECONFIG",
            "KUBELET_PORT",
            "VKUBELET_POD_IP",
            "APISERVER_CERT_LOCATION",
            "APISERVER_KEY_LOCATION",
        ] {
            if std::env::var_os(var).is_some() {
                return;
            }
        }
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.cri_socket,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(c.log_dir, PathBuf::from("/var/log/vk-cri/"));
        assert_eq!(c.volumes_dir, PathBuf::from("/run/vk-cri/volumes/"));
        assert_eq!(c.port, 10250);
        assert_eq!(c.node_name, "virtual-kubelet");
        assert_eq!(c.runtime_request_timeout, Duration::from_secs(120));
        assert_eq!(c.kubeconfig, None);
        assert_eq!(c.address, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.authorization_mode, AuthorizationMode::AlwaysAllow);
        assert!(!c.anonymous_auth);
    }

    #[test]
    fn certificate_rotation_defaults_follow_bootstrap_and_serving_needs_the_api_server() {
        let c = parse(&["--kubeconfig", "k"]).unwrap();
        assert!(!c.rotate_certificates && !c.rotate_server_certificates);
        let c = parse(&["--kubeconfig", "k", "--bootstrap-kubeconfig", "b"]).unwrap();
        assert!(c.rotate_certificates, "on with a bootstrap kubeconfig");
        let c = parse(&["--kubeconfig", "k", "--rotate-server-certificates"]).unwrap();
        assert!(c.rotate_server_certificates);
        let c = parse(&["--kubeconfig", "k", "--rotate-server-certificates=false"]).unwrap();
        assert!(!c.rotate_server_certificates);
        assert_eq!(
            parse(&["--rotate-server-certificates", "--pod-manifest-path", "d"]),
            Err(ConfigError::ServerRotationWithoutApiServer.to_string())
        );
    }

    #[test]
    fn image_gc_flags_default_to_the_kubelets_and_are_validated_as_its_config() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.image_gc, crate::imagegc::Policy::default());
        assert_eq!(c.pod_infra_container_image, "registry.k8s.io/pause:3.9");
        let c = parse(&[
            "--image-gc-high-threshold",
            "100",
            "--image-gc-low-threshold",
            "0",
            "--minimum-image-ttl-duration",
            "0s",
        ])
        .unwrap();
        assert!(!c.image_gc.enabled());
        assert_eq!(c.image_gc.min_age, Duration::ZERO);
        for (args, want) in [
            (
                "--image-gc-high-threshold=101",
                "invalid configuration: imageGCHighThresholdPercent (--image-gc-high-threshold) 101 must be between 0 and 100, inclusive",
            ),
            (
                "--image-gc-low-threshold=-1",
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) -1 must be between 0 and 100, inclusive",
            ),
            (
                "--image-gc-low-threshold=85",
                "invalid configuration: imageGCLowThresholdPercent (--image-gc-low-threshold) 85 must be less than imageGCHighThresholdPercent (--image-gc-high-threshold) 85",
            ),
        ] {
            assert_eq!(parse(&[args]), Err(want.to_string()));
        }
        assert!(parse(&["--minimum-image-ttl-duration", "soon"])
            .unwrap_err()
            .starts_with("--minimum-image-ttl-duration \"soon\" is not a duration"));
    }

    #[test]
    fn eviction_flags_default_to_the_kubelets_and_name_their_mistakes() {
        let c = parse(&[]).unwrap();
        let names: Vec<&str> = c
            .eviction
            .thresholds
            .iter()
            .map(|t| t.signal.name())
            .collect();
        assert_eq!(
            names,
            [
                "imagefs.available",
                "memory.available",
                "nodefs.available",
                "nodefs.inodesFree"
            ]
        );
        assert_eq!(
            c.eviction.pressure_transition_period,
            Duration::from_secs(300)
        );
        assert_eq!(
            c.eviction.allocatable_thresholds(),
            crate::node::spec::EvictionThresholds::default()
        );
        let c = parse(&[
            "--eviction-hard=memory.available<1Gi",
            "--eviction-soft=nodefs.available<20%",
            "--eviction-soft-grace-period=nodefs.available=1m",
            "--eviction-minimum-reclaim=memory.available=500Mi",
            "--eviction-pressure-transition-period=30s",
            "--eviction-max-pod-grace-period=-1",
        ])
        .unwrap();
        assert_eq!(c.eviction.thresholds.len(), 2);
        assert_eq!(
            c.eviction.thresholds[1].grace_period,
            Duration::from_secs(60)
        );
        assert_eq!(c.eviction.max_pod_grace_period, -1);
        assert_eq!(
            parse(&["--eviction-hard=memory.available=1Gi"]).unwrap_err(),
            "--eviction-hard: \"memory.available=1Gi\" is not of the form SIGNAL<VALUE"
        );
        assert_eq!(
            parse(&["--eviction-soft=memory.available<1Gi"]).unwrap_err(),
            "--eviction-hard, --eviction-soft: grace period must be specified for the soft eviction threshold memory.available"
        );
        assert!(parse(&["--eviction-hard="])
            .unwrap()
            .eviction
            .thresholds
            .is_empty());
    }

    #[test]
    fn container_log_flags_default_to_the_kubelets() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.container_logs, crate::logrotate::Policy::default());
        assert_eq!(c.container_logs.max_size, 10 * 1024 * 1024);
        let c = parse(&[
            "--container-log-max-size",
            "512Ki",
            "--container-log-max-files",
            "2",
            "--container-log-monitor-interval",
            "3s",
        ])
        .unwrap();
        assert_eq!(
            c.container_logs,
            crate::logrotate::Policy {
                max_size: 512 * 1024,
                max_files: 2,
                interval: Duration::from_secs(3),
            }
        );
        assert_eq!(
            parse(&["--container-log-max-files", "1"]).unwrap_err(),
            "--container-log-max-files 1 must be greater than 1"
        );
        assert!(parse(&["--container-log-max-size", "ten"])
            .unwrap_err()
            .starts_with("--container-log-max-size \"ten\""));
        assert!(parse(&["--container-log-max-size", "-1Mi"]).is_err());
        assert!(parse(&["--container-log-monitor-interval", "1s"])
            .unwrap_err()
            .contains("at least 3s"));
    }

    #[test]
    fn kubelet_api_auth_flags() {
        let c = parse(&["--kubeconfig", "k"]).unwrap();
        assert_eq!(c.authorization_mode, AuthorizationMode::Webhook);
        let c = parse(&[
            "--kubeconfig",
            "k",
            "--authorization-mode",
            "AlwaysAllow",
            "--anonymous-auth",
            "true",
            "--client-ca-file",
            "/ca.pem",
            "--address",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(c.authorization_mode, AuthorizationMode::AlwaysAllow);
        assert!(c.anonymous_auth);
        assert_eq!(c.client_ca_file, Some(PathBuf::from("/ca.pem")));
        assert_eq!(c.address, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(
            parse(&["--authorization-mode", "Webhook"]).unwrap_err(),
            "--authorization-mode=Webhook needs --kubeconfig: the API server answers the SubjectAccessReviews"
        );
        assert!(parse(&["--authorization-mode", "RBAC"])
            .unwrap_err()
            .starts_with("--authorization-mode \"RBAC\""));
        assert!(parse(&["--address", "any"])
            .unwrap_err()
            .starts_with("--address"));
    }

    #[test]
    fn seed_command_line_is_accepted() {
        let c = parse(&[
            "--provider",
            "cri",
            "--kubeconfig",
            "admin.conf",
            "--cri-socket",
            "unix:///tmp/c.sock",
        ])
        .unwrap();
        assert_eq!(c.kubeconfig, Some(PathBuf::from("admin.conf")));
        assert_eq!(c.cri_socket, PathBuf::from("/tmp/c.sock"));
        let c = parse(&["--container-runtime-endpoint", "/x.sock"]).unwrap();
        assert_eq!(c.cri_socket, PathBuf::from("/x.sock"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        assert_eq!(
            parse(&["--provider", "mock"]).unwrap_err(),
            "--provider \"mock\" is not supported: this binary implements the cri provider only"
        );
        assert!(parse(&["--node-ip", "10.0.0.300"])
            .unwrap_err()
            .starts_with("--node-ip \"10.0.0.300\""));
        assert!(parse(&["--runtime-request-timeout", "2 minutes"])
            .unwrap_err()
            .starts_with("--runtime-request-timeout"));
        assert!(parse(&["--nodename", "Bad_Name"])
            .unwrap_err()
            .contains("lowercase"));
        assert!(parse(&["--log-level", "loud"])
            .unwrap_err()
            .contains("--log-level"));
        assert!(parse(&["--tls-cert-file", "/c.pem"])
            .unwrap_err()
            .contains("together"));
        assert!(parse(&["--port", "70000"]).unwrap_err().contains("70000"));
        let forbidden = parse(&["--node-labels", "kubernetes.io/role=agent,ok=1"]).unwrap_err();
        assert!(forbidden.starts_with("--node-labels: "), "{forbidden}");
        assert!(forbidden.contains("kubernetes.io/role"), "{forbidden}");
        assert!(parse(&["--node-labels", "novalue"])
            .unwrap_err()
            .starts_with("--node-labels"));
        assert!(parse(&["--kube-reserved", "cpu=lots"])
            .unwrap_err()
            .starts_with("--kube-reserved"));
        assert_eq!(
            parse(&["--max-pods", "0"]).unwrap_err(),
            "--max-pods 0: a node must accept at least one pod"
        );
        assert!(parse(&["--cluster-dns", "10.96.0.10,nope"])
            .unwrap_err()
            .contains("--cluster-dns \"nope\""));
        assert!(parse(&["--cluster-domain", "Cluster_Local"])
            .unwrap_err()
            .contains("--cluster-domain"));
        assert_eq!(
            parse(&["--port", "0"]).unwrap_err(),
            "--port 0 is not a port"
        );
    }

    #[test]
    fn node_ip_accepts_v4_and_v6() {
        assert_eq!(
            parse(&["--node-ip", "127.0.0.1"]).unwrap().node_ip,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse(&["--node-ip", "fd00::1"]).unwrap().node_ip,
            Some("fd00::1".parse().unwrap())
        );
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5d").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn help_lists_every_flag_with_its_default() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        for needle in [
            "--provider",
            "[default: cri]",
            "--kubeconfig",
            "[env: KUBECONFIG",
            "--nodename",
            "--cri-socket",
            "[default: /run/containerd/containerd.sock]",
            "--log-dir",
            "[default: /var/log/vk-cri/]",
            "--volumes-dir",
            "[default: /run/vk-cri/volumes/]",
            "--pods-dir",
            "[default: /run/vk-cri/pods/]",
            "--cluster-dns",
            "--cluster-domain",
            "[default: cluster.local]",
            "--cgroup-root",
            "[default: /vk-cri]",
            "--resolv-conf",
            "[default: /etc/resolv.conf]",
            "--port",
            "[env: KUBELET_PORT",
            "[default: 10250]",
            "--node-ip",
            "VKUBELET_POD_IP",
            "APISERVER_CERT_LOCATION",
            "APISERVER_KEY_LOCATION",
            "--pod-manifest-path",
            "--node-labels",
            "--disable-taint",
            "--max-pods",
            "[default: 110]",
            "--keep-terminated-pod-volumes",
            "--kube-reserved",
            "--system-reserved",
            "--node-status-report-frequency",
            "[default: 5m]",
            "--runtime-request-timeout",
            "[default: 2m]",
            "--log-level",
        ] {
            assert!(help.contains(needle), "help lacks {needle:?}:\n{help}");
        }
    }
}
