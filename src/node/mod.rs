//! The Node this daemon registers as, its Lease and the Events it records, as data.
//!
//! Owns the pure builders for the API objects a kubelet writes about itself (the Node at
//! registration, its `/status` patches, the `kube-node-lease` Lease, core/v1 Events), the host
//! facts those objects report, and the event recorder's aggregation and rate limiting. Every
//! time and host fact is passed in; nothing here sends a request, sleeps or reads the clock. The
//! I/O edges are [`host::HostProbe`] and [`stats::HostStats`], whose real implementations read
//! /proc, /etc and /sys.
//! The API calls themselves live in `kube`; the heartbeat loop calls the builders here.
//!
//! Files:
//! - [`host`]: [`host::HostFacts`] behind the [`host::HostProbe`] trait (real + fake), and the
//!   pure parsers of /proc and /etc texts.
//! - [`quantity`]: an exact Kubernetes quantity parser/formatter for the suffixes the kubelet
//!   accepts in `--kube-reserved`/`--system-reserved`.
//! - [`labels`]: the Node's labels, `--node-labels` parsing and the NodeRestriction label rule.
//! - [`spec`]: the Node object, its conditions, the status patch and when to send it, the Lease.
//! - [`stats`]: the node's cpu, memory, filesystem, network and pods-cgroup usage behind the
//!   [`stats::HostStats`] trait (real + fake) for `/stats/summary` and `/metrics/resource`.
//! - [`events`]: core/v1 Event builders and the [`events::EventRecorder`] (aggregation, spam
//!   filter and global cap, as client-go's EventCorrelator).

pub mod agent;
pub mod events;
pub mod host;
pub mod labels;
pub mod quantity;
pub mod runtime_state;
pub mod spec;
pub mod stats;

use std::path::PathBuf;

/// What can go wrong building the Node's objects or reading the host facts.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Labels the NodeRestriction admission plugin would reject (the API server answers 403).
    #[error(
        "refusing node labels {}: a node may set kubernetes.io and k8s.io labels only under \
         kubelet.kubernetes.io/ or node.kubernetes.io/ or from the kubelet's own set ({}), and never \
         under node-restriction.kubernetes.io/ (NodeRestriction admission); add them with \
         `kubectl label node` after registration",
        keys.join(", "),
        labels::KUBELET_LABELS.join(", ")
    )]
    ForbiddenLabels { keys: Vec<String> },
    /// A label key or value that is not valid Kubernetes label syntax.
    #[error("invalid node label {key:?}: {reason}")]
    InvalidLabel { key: String, reason: String },
    /// `--node-labels` that is not a `k=v,k2=v2` list.
    #[error("failed to parse --node-labels {input:?}: {reason}")]
    NodeLabelsSyntax { input: String, reason: String },
    /// A quantity that is not one the kubelet would accept.
    #[error("invalid quantity {input:?}: {reason}")]
    Quantity { input: String, reason: String },
    /// `--kube-reserved`/`--system-reserved` that is not a `cpu=100m,memory=256Mi` list.
    #[error("failed to parse reserved resources {input:?}: {reason}")]
    Reserved { input: String, reason: String },
    /// A host file that must exist could not be read.
    #[error("failed to read {path}: {source}")]
    ReadHostFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A host file was read but does not say what we need.
    #[error("failed to parse {path}: {reason}")]
    ParseHostFile { path: PathBuf, reason: String },
    /// statvfs(2) of the root directory failed.
    #[error("failed to statvfs {path}: {source}")]
    Statvfs {
        path: PathBuf,
        source: nix::errno::Errno,
    },
    /// uname(2) failed.
    #[error("failed to uname: {0}")]
    Uname(nix::errno::Errno),
    /// A builder's output could not be turned into JSON (a timestamp out of range).
    #[error("failed to serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        source: serde_json::Error,
    },
}
