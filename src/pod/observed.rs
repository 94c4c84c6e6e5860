//! What the runtime has for one pod, as the planner and the status builder see it.
//!
//! Owns the plain data model of a pod's sandboxes and containers (every attempt, newest first),
//! rebuilt from the runtime's labels and statuses on every sync: the runtime is the source of
//! truth, never the daemon's memory. Built by the pod worker from CRI lists; read by `plan` and
//! `status`. Pure data, no I/O.

pub use super::labels::ContainerKind;

/// A container's runtime state (CRI `ContainerState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// One sandbox of the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    /// Primary pod IP ("" on the host network).
    pub ip: String,
    pub additional_ips: Vec<String>,
    pub host_network: bool,
}

/// One container instance (one attempt of one spec container).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub kind: ContainerKind,
    /// The attempt number, which is the restart count when it was created.
    pub restart_count: u32,
    /// Hash of the container spec it was created from.
    pub hash: String,
    pub state: RunState,
    pub exit_code: i32,
    /// The runtime's reason for an exit (`Completed`, `Error`, `OOMKilled`).
    pub reason: String,
    pub message: String,
    /// Nanoseconds since the epoch; 0 when not reached.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    /// The image as requested.
    pub image: String,
    /// The image id the runtime ran (`sha256:…`).
    pub image_ref: String,
    /// Path of the container's CRI log file.
    pub log_path: String,
}

impl ObservedContainer {
    pub fn is_running(&self) -> bool {
        self.state == RunState::Running
    }

    pub fn exited(&self) -> bool {
        self.state == RunState::Exited
    }

    pub fn succeeded(&self) -> bool {
        self.exited() && self.exit_code == 0
    }
}

/// Everything the runtime has for one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// Newest first.
    pub sandboxes: Vec<ObservedSandbox>,
    /// Every instance of every container, newest first.
    pub containers: Vec<ObservedContainer>,
}

impl ObservedPod {
    /// Puts sandboxes and containers newest first (by attempt, then creation time).
    pub fn sort(&mut self) {
        self.sandboxes
            .sort_by_key(|s| std::cmp::Reverse((s.attempt, s.created_at)));
        self.containers
            .sort_by_key(|c| std::cmp::Reverse((c.restart_count, c.created_at)));
    }

    /// The newest sandbox.
    pub fn latest_sandbox(&self) -> Option<&ObservedSandbox> {
        self.sandboxes.first()
    }

    /// The newest instance of the named container.
    pub fn latest(&self, name: &str, kind: ContainerKind) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .find(|c| c.name == name && c.kind == kind)
    }

    /// The instance before the newest one (for `lastState` and `logs --previous`).
    pub fn previous(&self, name: &str, kind: ContainerKind) -> Option<&ObservedContainer> {
        self.containers
            .iter()
            .filter(|c| c.name == name && c.kind == kind)
            .nth(1)
    }

    /// Any container is running.
    pub fn any_running(&self) -> bool {
        self.containers.iter().any(ObservedContainer::is_running)
    }
}
