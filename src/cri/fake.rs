//! [`FakeRuntime`]: an in-memory [`Runtime`](super::Runtime) that records every call.
//!
//! Owns a small model of a CRI runtime for unit tests of the code above the trait: sandboxes and
//! containers with ids, states, labels, exit codes and timestamps from a fake clock; images that
//! are present or pullable; and injected failures per operation. Tests assert on the recorded
//! [`Call`]s. It is never used by the daemon itself; integration tests use the real runtime.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use protobuf::EnumOrUnknown;

use super::api::{self, ContainerState, PodSandboxState};
use super::{Code, CriError, ExecOutput, Labels, PullAuth, Runtime, Target, VersionInfo};

/// One recorded call, with the arguments that matter to the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Version,
    Status,
    RunPodSandbox {
        namespace: String,
        name: String,
        attempt: u32,
    },
    StopPodSandbox(String),
    RemovePodSandbox(String),
    PodSandboxStatus(String),
    ListPodSandbox,
    CreateContainer {
        sandbox_id: String,
        name: String,
        attempt: u32,
    },
    StartContainer(String),
    StopContainer {
        id: String,
        timeout_secs: u64,
    },
    RemoveContainer(String),
    ListContainers,
    ContainerStatus(String),
    ReopenContainerLog(String),
    ExecSync {
        id: String,
        cmd: Vec<String>,
    },
    Exec(String),
    Attach(String),
    PortForward(String),
    Stats,
    ImageStatus(String),
    PullImage {
        image: String,
        with_auth: bool,
    },
    ListImages,
    RemoveImage(String),
    ImageFsInfo,
}

/// The operation an injected failure applies to: the [`Call`] variant's name, e.g.
/// `"PullImage"` or `"StartContainer"`.
pub type Op = &'static str;

#[derive(Default)]
struct State {
    next_id: u64,
    clock_ns: i64,
    sandboxes: BTreeMap<String, api::PodSandboxStatus>,
    sandbox_configs: HashMap<String, api::PodSandboxConfig>,
    containers: BTreeMap<String, api::ContainerStatus>,
    container_sandbox: HashMap<String, String>,
    images: BTreeMap<String, api::Image>,
    image_fs: Vec<api::FilesystemUsage>,
    status_info: HashMap<String, String>,
    pullable: HashMap<String, String>,
    failures: HashMap<Op, VecDeque<CriError>>,
    exec_results: VecDeque<ExecOutput>,
    calls: Vec<Call>,
}

impl State {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    fn tick(&mut self) -> i64 {
        self.clock_ns += 1_000_000;
        self.clock_ns
    }

    fn record(&mut self, op: Op, call: Call) -> Result<(), CriError> {
        self.calls.push(call);
        match self.failures.get_mut(op).and_then(VecDeque::pop_front) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// An in-memory runtime. Shareable across threads like the real one.
#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

fn not_found(op: &'static str, target: Target) -> CriError {
    CriError::Rpc {
        op,
        target,
        code: Code::NotFound,
        message: "not found".into(),
    }
}

fn matches(labels: &HashMap<String, String>, selector: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking test thread must not hide the calls from the others.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The calls so far, clearing the record.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.lock().calls)
    }

    /// The next call of `op` fails with `err` (queued: one failure per call).
    pub fn fail_next(&self, op: Op, err: CriError) {
        self.lock().failures.entry(op).or_default().push_back(err);
    }

    /// Makes `image` present, as if pulled earlier.
    pub fn add_image(&self, image: &str) {
        let mut s = self.lock();
        let id = format!("sha256:{:064x}", s.images.len() + 1);
        s.images.insert(
            image.to_string(),
            api::Image {
                id,
                repo_tags: vec![image.to_string()],
                size: 1 << 20,
                ..Default::default()
            },
        );
    }

    /// Makes `image` present with this id and size (bytes); several names may share an id.
    pub fn add_image_with(&self, image: &str, id: &str, size: u64) {
        self.lock().images.insert(
            image.to_string(),
            api::Image {
                id: id.to_string(),
                repo_tags: vec![image.to_string()],
                size,
                ..Default::default()
            },
        );
    }

    /// What a verbose `Status` answers as its info.
    pub fn set_status_info(&self, key: &str, value: &str) {
        self.lock().status_info.insert(key.into(), value.into());
    }

    /// What `ImageFsInfo` answers.
    pub fn set_image_fs(&self, fs: Vec<api::FilesystemUsage>) {
        self.lock().image_fs = fs;
    }

    /// Makes `image` pullable (absent until pulled).
    pub fn add_pullable(&self, image: &str) {
        let mut s = self.lock();
        let id = format!("sha256:{:064x}", 0x1000 + s.pullable.len());
        s.pullable.insert(image.to_string(), id);
    }

    /// The next `exec_sync` returns this.
    pub fn push_exec_result(&self, out: ExecOutput) {
        self.lock().exec_results.push_back(out);
    }

    /// Simulates the container's process exiting with `exit_code` (reason as containerd gives).
    pub fn exit_container(&self, container_id: &str, exit_code: i32) {
        let mut s = self.lock();
        let now = s.tick();
        if let Some(c) = s.containers.get_mut(container_id) {
            c.state = EnumOrUnknown::new(ContainerState::CONTAINER_EXITED);
            c.finished_at = now;
            c.exit_code = exit_code;
            c.reason = if exit_code == 0 { "Completed" } else { "Error" }.into();
        }
    }

    /// Simulates the sandbox dying (e.g. its pause process was killed).
    pub fn kill_sandbox(&self, sandbox_id: &str) {
        if let Some(sb) = self.lock().sandboxes.get_mut(sandbox_id) {
            sb.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_NOTREADY);
        }
    }

    /// Current sandboxes (as `ListPodSandbox` would return them, unfiltered).
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.lock().sandboxes.keys().cloned().collect()
    }

    /// Current containers' ids.
    pub fn container_ids(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }
}

impl Runtime for FakeRuntime {
    fn version(&self) -> Result<VersionInfo, CriError> {
        self.lock().record("Version", Call::Version)?;
        Ok(VersionInfo {
            runtime_name: "fake".into(),
            runtime_version: "0.0.1".into(),
            runtime_api_version: "v1".into(),
        })
    }

    fn status(&self) -> Result<api::RuntimeStatus, CriError> {
        self.lock().record("Status", Call::Status)?;
        let cond = |t: &str| api::RuntimeCondition {
            type_: t.to_string(),
            status: true,
            ..Default::default()
        };
        Ok(api::RuntimeStatus {
            conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            ..Default::default()
        })
    }

    fn status_info(&self) -> Result<HashMap<String, String>, CriError> {
        let mut s = self.lock();
        s.record("Status", Call::Status)?;
        Ok(s.status_info.clone())
    }

    fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        _runtime_handler: &str,
    ) -> Result<String, CriError> {
        let mut s = self.lock();
        let meta = config.metadata.clone().unwrap_or_default();
        s.record(
            "RunPodSandbox",
            Call::RunPodSandbox {
                namespace: meta.namespace.clone(),
                name: meta.name.clone(),
                attempt: meta.attempt,
            },
        )?;
        let id = s.id("sandbox");
        let now = s.tick();
        let host_network = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|sc| sc.namespace_options.as_ref())
            .is_some_and(|n| n.network.enum_value_or_default() == api::NamespaceMode::NODE);
        let ip = if host_network {
            String::new()
        } else {
            format!("10.88.0.{}", s.next_id % 250 + 2)
        };
        let status = api::PodSandboxStatus {
            id: id.clone(),
            metadata: Some(meta).into(),
            state: EnumOrUnknown::new(PodSandboxState::SANDBOX_READY),
            created_at: now,
            network: Some(api::PodSandboxNetworkStatus {
                ip,
                ..Default::default()
            })
            .into(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            ..Default::default()
        };
        s.sandboxes.insert(id.clone(), status);
        s.sandbox_configs.insert(id.clone(), config.clone());
        Ok(id)
    }

    fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record("StopPodSandbox", Call::StopPodSandbox(sandbox_id.into()))?;
        let now = s.tick();
        // Like containerd: stopping an unknown sandbox is not an error.
        let members: Vec<String> = s
            .container_sandbox
            .iter()
            .filter(|(_, sb)| sb.as_str() == sandbox_id)
            .map(|(c, _)| c.clone())
            .collect();
        for c in members {
            if let Some(st) = s.containers.get_mut(&c) {
                if st.state.enum_value_or_default() == ContainerState::CONTAINER_RUNNING {
                    st.state = EnumOrUnknown::new(ContainerState::CONTAINER_EXITED);
                    st.finished_at = now;
                    st.exit_code = 137;
                    st.reason = "Error".into();
                }
            }
        }
        if let Some(sb) = s.sandboxes.get_mut(sandbox_id) {
            sb.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_NOTREADY);
        }
        Ok(())
    }

    fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record(
            "RemovePodSandbox",
            Call::RemovePodSandbox(sandbox_id.into()),
        )?;
        s.sandboxes.remove(sandbox_id);
        s.sandbox_configs.remove(sandbox_id);
        let members: Vec<String> = s
            .container_sandbox
            .iter()
            .filter(|(_, sb)| sb.as_str() == sandbox_id)
            .map(|(c, _)| c.clone())
            .collect();
        for c in members {
            s.containers.remove(&c);
            s.container_sandbox.remove(&c);
        }
        Ok(())
    }

    fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<api::PodSandboxStatus, CriError> {
        let mut s = self.lock();
        s.record(
            "PodSandboxStatus",
            Call::PodSandboxStatus(sandbox_id.into()),
        )?;
        s.sandboxes
            .get(sandbox_id)
            .cloned()
            .ok_or_else(|| not_found("get the status of", Target::Sandbox(sandbox_id.into())))
    }

    fn list_pod_sandboxes(&self, labels: &Labels) -> Result<Vec<api::PodSandbox>, CriError> {
        let mut s = self.lock();
        s.record("ListPodSandbox", Call::ListPodSandbox)?;
        Ok(s.sandboxes
            .values()
            .filter(|sb| matches(&sb.labels, labels))
            .map(|sb| api::PodSandbox {
                id: sb.id.clone(),
                metadata: sb.metadata.clone(),
                state: sb.state,
                created_at: sb.created_at,
                labels: sb.labels.clone(),
                annotations: sb.annotations.clone(),
                ..Default::default()
            })
            .collect())
    }

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &api::ContainerConfig,
        _sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let mut s = self.lock();
        let meta = config.metadata.clone().unwrap_or_default();
        s.record(
            "CreateContainer",
            Call::CreateContainer {
                sandbox_id: sandbox_id.into(),
                name: meta.name.clone(),
                attempt: meta.attempt,
            },
        )?;
        if !s.sandboxes.contains_key(sandbox_id) {
            return Err(not_found(
                "create container in",
                Target::Sandbox(sandbox_id.into()),
            ));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        // By name or by id, as containerd resolves it (the syncer passes ImageStatus's id).
        let found = s
            .images
            .get(&image)
            .or_else(|| s.images.values().find(|i| i.id == image));
        let Some(image_id) = found.map(|i| i.id.clone()) else {
            return Err(not_found("create container with", Target::Image(image)));
        };
        let id = s.id("container");
        let now = s.tick();
        let log_dir = s
            .sandbox_configs
            .get(sandbox_id)
            .map(|c| c.log_directory.clone())
            .unwrap_or_default();
        let status = api::ContainerStatus {
            id: id.clone(),
            metadata: Some(meta).into(),
            state: EnumOrUnknown::new(ContainerState::CONTAINER_CREATED),
            created_at: now,
            image: config.image.clone(),
            image_ref: image_id.clone(),
            image_id,
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            log_path: format!("{log_dir}/{}", config.log_path),
            ..Default::default()
        };
        s.containers.insert(id.clone(), status);
        s.container_sandbox.insert(id.clone(), sandbox_id.into());
        Ok(id)
    }

    fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record("StartContainer", Call::StartContainer(container_id.into()))?;
        let now = s.tick();
        let c = s
            .containers
            .get_mut(container_id)
            .ok_or_else(|| not_found("start", Target::Container(container_id.into())))?;
        c.state = EnumOrUnknown::new(ContainerState::CONTAINER_RUNNING);
        c.started_at = now;
        Ok(())
    }

    fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record(
            "StopContainer",
            Call::StopContainer {
                id: container_id.into(),
                timeout_secs: timeout.as_secs(),
            },
        )?;
        let now = s.tick();
        let c = s
            .containers
            .get_mut(container_id)
            .ok_or_else(|| not_found("stop", Target::Container(container_id.into())))?;
        if c.state.enum_value_or_default() == ContainerState::CONTAINER_RUNNING {
            c.state = EnumOrUnknown::new(ContainerState::CONTAINER_EXITED);
            c.finished_at = now;
            c.exit_code = 143;
            c.reason = "Error".into();
        }
        Ok(())
    }

    fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record(
            "RemoveContainer",
            Call::RemoveContainer(container_id.into()),
        )?;
        s.containers.remove(container_id);
        s.container_sandbox.remove(container_id);
        Ok(())
    }

    fn list_containers(
        &self,
        labels: &Labels,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<api::Container>, CriError> {
        let mut s = self.lock();
        s.record("ListContainers", Call::ListContainers)?;
        Ok(s.containers
            .values()
            .filter(|c| matches(&c.labels, labels))
            .filter(|c| {
                sandbox_id
                    .is_none_or(|sb| s.container_sandbox.get(&c.id).map(String::as_str) == Some(sb))
            })
            .map(|c| api::Container {
                id: c.id.clone(),
                pod_sandbox_id: s.container_sandbox.get(&c.id).cloned().unwrap_or_default(),
                metadata: c.metadata.clone(),
                image: c.image.clone(),
                image_ref: c.image_ref.clone(),
                state: c.state,
                created_at: c.created_at,
                labels: c.labels.clone(),
                annotations: c.annotations.clone(),
                image_id: c.image_id.clone(),
                ..Default::default()
            })
            .collect())
    }

    fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus, CriError> {
        let mut s = self.lock();
        s.record(
            "ContainerStatus",
            Call::ContainerStatus(container_id.into()),
        )?;
        s.containers
            .get(container_id)
            .cloned()
            .ok_or_else(|| not_found("get the status of", Target::Container(container_id.into())))
    }

    fn reopen_container_log(&self, container_id: &str) -> Result<(), CriError> {
        self.lock().record(
            "ReopenContainerLog",
            Call::ReopenContainerLog(container_id.into()),
        )
    }

    fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        let mut s = self.lock();
        s.record(
            "ExecSync",
            Call::ExecSync {
                id: container_id.into(),
                cmd: cmd.to_vec(),
            },
        )?;
        if !s.containers.contains_key(container_id) {
            return Err(not_found("exec in", Target::Container(container_id.into())));
        }
        Ok(s.exec_results.pop_front().unwrap_or(ExecOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: 0,
        }))
    }

    fn exec(&self, req: &api::ExecRequest) -> Result<String, CriError> {
        self.lock()
            .record("Exec", Call::Exec(req.container_id.clone()))?;
        Ok(format!("http://127.0.0.1:1/exec/{}", req.container_id))
    }

    fn attach(&self, req: &api::AttachRequest) -> Result<String, CriError> {
        self.lock()
            .record("Attach", Call::Attach(req.container_id.clone()))?;
        Ok(format!("http://127.0.0.1:1/attach/{}", req.container_id))
    }

    fn port_forward(&self, sandbox_id: &str, _ports: &[i32]) -> Result<String, CriError> {
        self.lock()
            .record("PortForward", Call::PortForward(sandbox_id.into()))?;
        Ok(format!("http://127.0.0.1:1/portforward/{sandbox_id}"))
    }

    fn container_stats(&self, container_id: &str) -> Result<api::ContainerStats, CriError> {
        self.lock().record("Stats", Call::Stats)?;
        Ok(api::ContainerStats {
            attributes: Some(api::ContainerAttributes {
                id: container_id.into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    fn list_container_stats(&self, _labels: &Labels) -> Result<Vec<api::ContainerStats>, CriError> {
        self.lock().record("Stats", Call::Stats)?;
        Ok(Vec::new())
    }

    fn pod_sandbox_stats(&self, sandbox_id: &str) -> Result<api::PodSandboxStats, CriError> {
        self.lock().record("Stats", Call::Stats)?;
        Ok(api::PodSandboxStats {
            attributes: Some(api::PodSandboxAttributes {
                id: sandbox_id.into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        })
    }

    fn list_pod_sandbox_stats(
        &self,
        _labels: &Labels,
    ) -> Result<Vec<api::PodSandboxStats>, CriError> {
        self.lock().record("Stats", Call::Stats)?;
        Ok(Vec::new())
    }

    fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let mut s = self.lock();
        s.record("ImageStatus", Call::ImageStatus(image.into()))?;
        Ok(s.images.get(image).cloned())
    }

    fn pull_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        _sandbox_config: Option<&api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let mut s = self.lock();
        s.record(
            "PullImage",
            Call::PullImage {
                image: image.into(),
                with_auth: auth.is_some(),
            },
        )?;
        if let Some(img) = s.images.get(image) {
            return Ok(img.id.clone());
        }
        let Some(id) = s.pullable.get(image).cloned() else {
            return Err(CriError::Rpc {
                op: "pull",
                target: Target::Image(image.into()),
                code: Code::NotFound,
                message: format!("failed to resolve reference {image:?}: {image}: not found"),
            });
        };
        s.images.insert(
            image.to_string(),
            api::Image {
                id: id.clone(),
                repo_tags: vec![image.to_string()],
                ..Default::default()
            },
        );
        Ok(id)
    }

    fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        let mut s = self.lock();
        s.record("ListImages", Call::ListImages)?;
        Ok(s.images.values().cloned().collect())
    }

    fn remove_image(&self, image: &str) -> Result<(), CriError> {
        let mut s = self.lock();
        s.record("RemoveImage", Call::RemoveImage(image.into()))?;
        // By name, or by id: every name of that image, as CRI removes all its tags.
        s.images.retain(|name, i| name != image && i.id != image);
        Ok(())
    }

    fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>, CriError> {
        let mut s = self.lock();
        s.record("ImageFsInfo", Call::ImageFsInfo)?;
        Ok(s.image_fs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::labels;

    fn sandbox_config(name: &str, owner: &str) -> api::PodSandboxConfig {
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                uid: format!("uid-{name}"),
                attempt: 0,
                ..Default::default()
            })
            .into(),
            labels: labels([("owner", owner), ("io.kubernetes.pod.name", name)]),
            log_directory: format!("/logs/{name}"),
            ..Default::default()
        }
    }

    fn container_config(name: &str, image: &str) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.into(),
                attempt: 0,
                ..Default::default()
            })
            .into(),
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            })
            .into(),
            log_path: format!("{name}/0.log"),
            labels: labels([("io.kubernetes.container.name", name)]),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_moves_through_states_and_is_recorded() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox");
        let sbc = sandbox_config("p1", "node-a");
        let sb = rt.run_pod_sandbox(&sbc, "").unwrap();
        let c = rt
            .create_container(&sb, &container_config("c1", "busybox"), &sbc)
            .unwrap();
        assert_eq!(
            rt.container_status(&c)
                .unwrap()
                .state
                .enum_value_or_default(),
            ContainerState::CONTAINER_CREATED
        );
        rt.start_container(&c).unwrap();
        assert_eq!(
            rt.container_status(&c)
                .unwrap()
                .state
                .enum_value_or_default(),
            ContainerState::CONTAINER_RUNNING
        );
        assert_eq!(
            rt.container_status(&c).unwrap().log_path,
            "/logs/p1/c1/0.log"
        );
        rt.exit_container(&c, 3);
        let st = rt.container_status(&c).unwrap();
        assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
        rt.stop_pod_sandbox(&sb).unwrap();
        rt.remove_pod_sandbox(&sb).unwrap();
        assert!(rt.container_ids().is_empty());
        assert!(rt.container_status(&c).unwrap_err().is_not_found());
        let calls = rt.take_calls();
        assert_eq!(
            calls[..4],
            [
                Call::RunPodSandbox {
                    namespace: "default".into(),
                    name: "p1".into(),
                    attempt: 0
                },
                Call::CreateContainer {
                    sandbox_id: sb.clone(),
                    name: "c1".into(),
                    attempt: 0
                },
                Call::ContainerStatus(c.clone()),
                Call::StartContainer(c.clone()),
            ]
        );
        assert!(rt.calls().is_empty());
    }

    #[test]
    fn lists_filter_by_every_label() {
        let rt = FakeRuntime::new();
        rt.run_pod_sandbox(&sandbox_config("a", "node-a"), "")
            .unwrap();
        rt.run_pod_sandbox(&sandbox_config("b", "node-b"), "")
            .unwrap();
        let mine = rt
            .list_pod_sandboxes(&labels([("owner", "node-a")]))
            .unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].metadata.name, "a");
        assert_eq!(rt.list_pod_sandboxes(&Labels::new()).unwrap().len(), 2);
        assert!(rt
            .list_pod_sandboxes(&labels([
                ("owner", "node-a"),
                ("io.kubernetes.pod.name", "b")
            ]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn injected_failures_apply_once_in_order() {
        let rt = FakeRuntime::new();
        rt.add_pullable("busybox:1.36");
        let err = CriError::Rpc {
            op: "pull",
            target: Target::Image("busybox:1.36".into()),
            code: Code::Unknown,
            message: "401 Unauthorized".into(),
        };
        rt.fail_next("PullImage", err.clone());
        assert_eq!(rt.pull_image("busybox:1.36", None, None).unwrap_err(), err);
        assert!(rt.image_status("busybox:1.36").unwrap().is_none());
        let id = rt.pull_image("busybox:1.36", None, None).unwrap();
        assert_eq!(rt.image_status("busybox:1.36").unwrap().unwrap().id, id);
        assert_eq!(
            rt.pull_image("nope:1", None, None).unwrap_err().code(),
            Some(Code::NotFound)
        );
    }

    #[test]
    fn creating_from_an_absent_image_fails_with_not_found() {
        let rt = FakeRuntime::new();
        let sbc = sandbox_config("p", "n");
        let sb = rt.run_pod_sandbox(&sbc, "").unwrap();
        let e = rt
            .create_container(&sb, &container_config("c", "missing"), &sbc)
            .unwrap_err();
        assert!(e.is_not_found());
        assert!(e.to_string().contains("image \"missing\""));
    }
}
