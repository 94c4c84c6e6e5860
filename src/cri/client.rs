//! [`GrpcRuntime`]: the real [`Runtime`](super::Runtime), CRI v1 over grpcio on `unix:<path>`.
//!
//! Owns the channel to the runtime's socket, the deadline on every call, the mapping of gRPC
//! failures to [`CriError`] with the call's code and what it was about, and the recording of
//! every call in [`crate::metrics`] (`metered`). This file is the only place grpcio is used
//! outside the generated stubs. It holds no state about pods.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grpcio::{CallOption, ChannelBuilder, EnvBuilder, Environment};

use super::api::{self, grpc};
use super::lanes::Lanes;
use super::{Code, CriError, ExecOutput, Labels, PullAuth, Runtime, Target, VersionInfo};

/// How long calls may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadlines {
    /// Every call but pulls (the kubelet's `--runtime-request-timeout`, 2 min by default).
    pub call: Duration,
    /// Image pulls, which may move hundreds of megabytes.
    pub pull: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            call: Duration::from_secs(120),
            pull: Duration::from_secs(600),
        }
    }
}

/// Reads of the runtime in flight at once (see [`Lanes`]).
pub const READ_LANES: usize = 8;

/// CRI v1 client over one gRPC channel to the runtime's Unix socket.
#[derive(Clone)]
pub struct GrpcRuntime {
    endpoint: PathBuf,
    runtime: grpc::RuntimeServiceClient,
    /// The same service, with the relist's slim messages (`proto/relist.proto`).
    relist: api::relist::grpc::RuntimeServiceClient,
    images: grpc::ImageServiceClient,
    deadlines: Deadlines,
    /// Shared by every clone: how many reads may be in flight (see [`Lanes`]).
    read_lanes: Arc<Lanes>,
    // Keeps the completion-queue thread alive as long as a clone of the client exists.
    _env: Arc<Environment>,
}

impl std::fmt::Debug for GrpcRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GrpcRuntime({})", self.endpoint.display())
    }
}

/// The socket path of an endpoint given as `unix:///path`, `unix:/path` or a bare path.
pub fn socket_path(endpoint: &str) -> &Path {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    Path::new(p)
}

impl GrpcRuntime {
    /// Opens a channel to the runtime's socket. The channel connects lazily and reconnects by
    /// itself; use [`Runtime::version`] to find out whether the runtime answers.
    pub fn new(socket: &Path, deadlines: Deadlines) -> GrpcRuntime {
        let env = Arc::new(
            EnvBuilder::new()
                .cq_count(1)
                .name_prefix("cri-grpc")
                .build(),
        );
        let channel = ChannelBuilder::new(env.clone())
            // ListContainers on a busy node and ExecSync output can exceed the 4 MiB default.
            .max_receive_message_len(64 << 20)
            .max_reconnect_backoff(Duration::from_secs(2))
            .connect(&format!("unix:{}", socket.display()));
        GrpcRuntime {
            endpoint: socket.to_path_buf(),
            runtime: grpc::RuntimeServiceClient::new(channel.clone()),
            relist: api::relist::grpc::RuntimeServiceClient::new(channel.clone()),
            images: grpc::ImageServiceClient::new(channel),
            deadlines,
            read_lanes: Arc::new(Lanes::new(READ_LANES)),
            _env: env,
        }
    }

    /// The socket this client talks to.
    pub fn endpoint(&self) -> &Path {
        &self.endpoint
    }

    /// A read of the runtime (a list or a status): it waits for one of the read lanes.
    fn read<T>(
        &self,
        op: &'static str,
        call: impl FnOnce() -> grpcio::Result<T>,
    ) -> grpcio::Result<T> {
        let _lane = self.read_lanes.take();
        metered(op, call)
    }

    fn opt(&self) -> CallOption {
        CallOption::default().timeout(self.deadlines.call)
    }

    fn opt_plus(&self, extra: Duration) -> CallOption {
        CallOption::default().timeout(self.deadlines.call + extra)
    }
}

fn code_of(code: grpcio::RpcStatusCode) -> Code {
    use grpcio::RpcStatusCode as C;
    match code {
        C::CANCELLED => Code::Cancelled,
        C::INVALID_ARGUMENT => Code::InvalidArgument,
        C::DEADLINE_EXCEEDED => Code::DeadlineExceeded,
        C::NOT_FOUND => Code::NotFound,
        C::ALREADY_EXISTS => Code::AlreadyExists,
        C::PERMISSION_DENIED => Code::PermissionDenied,
        C::RESOURCE_EXHAUSTED => Code::ResourceExhausted,
        C::FAILED_PRECONDITION => Code::FailedPrecondition,
        C::ABORTED => Code::Aborted,
        C::OUT_OF_RANGE => Code::OutOfRange,
        C::UNIMPLEMENTED => Code::Unimplemented,
        C::INTERNAL => Code::Internal,
        C::UNAVAILABLE => Code::Unavailable,
        C::DATA_LOSS => Code::DataLoss,
        C::UNAUTHENTICATED => Code::Unauthenticated,
        _ => Code::Unknown,
    }
}

/// Builds the closure that turns a grpcio error of operation `op` on `target` into a [`CriError`].
fn fail(op: &'static str, target: Target) -> impl FnOnce(grpcio::Error) -> CriError {
    move |e| match e {
        grpcio::Error::RpcFailure(status) => CriError::Rpc {
            op,
            target,
            code: code_of(status.code()),
            message: status.message().to_string(),
        },
        other => CriError::Rpc {
            op,
            target,
            code: Code::Unknown,
            message: other.to_string(),
        },
    }
}

/// Runs one CRI call and records it in [`crate::metrics`] under the kubelet's operation name:
/// the one place CRI calls are counted, timed and counted as errors.
fn metered<T>(op: &'static str, call: impl FnOnce() -> grpcio::Result<T>) -> grpcio::Result<T> {
    let started = Instant::now();
    let result = call();
    crate::metrics::record_runtime_operation(op, started.elapsed(), result.is_err());
    result
}

impl Runtime for GrpcRuntime {
    fn version(&self) -> Result<VersionInfo, CriError> {
        let req = api::VersionRequest {
            version: "v1".into(),
            ..Default::default()
        };
        let r = self
            .read("version", || self.runtime.version(&req, self.opt()))
            .map_err(fail("get the version of", Target::Runtime))?;
        Ok(VersionInfo {
            runtime_name: r.runtime_name,
            runtime_version: r.runtime_version,
            runtime_api_version: r.runtime_api_version,
        })
    }

    fn status(&self) -> Result<api::RuntimeStatus, CriError> {
        let r = self
            .read("status", || {
                self.runtime
                    .status(&api::StatusRequest::default(), self.opt())
            })
            .map_err(fail("get the status of", Target::Runtime))?;
        Ok(r.status.unwrap_or_default())
    }

    fn status_info(&self) -> Result<std::collections::HashMap<String, String>, CriError> {
        let req = api::StatusRequest {
            verbose: true,
            ..Default::default()
        };
        let r = self
            .read("status", || self.runtime.status(&req, self.opt()))
            .map_err(fail("get the status of", Target::Runtime))?;
        Ok(r.info)
    }

    fn run_pod_sandbox(
        &self,
        config: &api::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, CriError> {
        let meta = config.metadata.as_ref();
        let target = Target::Pod(format!(
            "{}/{}",
            meta.map_or("", |m| m.namespace.as_str()),
            meta.map_or("", |m| m.name.as_str())
        ));
        let req = api::RunPodSandboxRequest {
            config: Some(config.clone()).into(),
            runtime_handler: runtime_handler.to_string(),
            ..Default::default()
        };
        let r = metered("run_podsandbox", || {
            self.runtime.run_pod_sandbox(&req, self.opt())
        })
        .map_err(fail("run", target))?;
        Ok(r.pod_sandbox_id)
    }

    fn stop_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let req = api::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        metered("stop_podsandbox", || {
            self.runtime.stop_pod_sandbox(&req, self.opt())
        })
        .map_err(fail("stop", Target::Sandbox(sandbox_id.into())))?;
        Ok(())
    }

    fn remove_pod_sandbox(&self, sandbox_id: &str) -> Result<(), CriError> {
        let req = api::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        metered("remove_podsandbox", || {
            self.runtime.remove_pod_sandbox(&req, self.opt())
        })
        .map_err(fail("remove", Target::Sandbox(sandbox_id.into())))?;
        Ok(())
    }

    fn pod_sandbox_status(&self, sandbox_id: &str) -> Result<api::PodSandboxStatus, CriError> {
        let req = api::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let r = self
            .read("podsandbox_status", || {
                self.runtime.pod_sandbox_status(&req, self.opt())
            })
            .map_err(fail(
                "get the status of",
                Target::Sandbox(sandbox_id.into()),
            ))?;
        Ok(r.status.unwrap_or_default())
    }

    fn list_pod_sandboxes(&self, labels: &Labels) -> Result<Vec<api::PodSandbox>, CriError> {
        let req = api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                label_selector: labels.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_podsandbox", || {
                self.runtime.list_pod_sandbox(&req, self.opt())
            })
            .map_err(fail("list sandboxes of", Target::Runtime))?;
        Ok(r.items)
    }

    fn relist_pod_sandboxes(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::relist::RelistPodSandbox>, CriError> {
        let req = api::relist::RelistPodSandboxRequest {
            filter: Some(api::relist::RelistPodSandboxFilter {
                label_selector: labels.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_podsandbox", || {
                self.relist.list_pod_sandbox(&req, self.opt())
            })
            .map_err(fail("list sandboxes of", Target::Runtime))?;
        Ok(r.items)
    }

    fn create_container(
        &self,
        sandbox_id: &str,
        config: &api::ContainerConfig,
        sandbox_config: &api::PodSandboxConfig,
    ) -> Result<String, CriError> {
        let req = api::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(config.clone()).into(),
            sandbox_config: Some(sandbox_config.clone()).into(),
            ..Default::default()
        };
        let name = config.metadata.as_ref().map_or("", |m| m.name.as_str());
        let r = metered("create_container", || {
            self.runtime.create_container(&req, self.opt())
        })
        .map_err(fail(
            "create container",
            Target::Container(format!("{name} in sandbox {}", super::short_id(sandbox_id))),
        ))?;
        Ok(r.container_id)
    }

    fn start_container(&self, container_id: &str) -> Result<(), CriError> {
        let req = api::StartContainerRequest {
            container_id: container_id.to_string(),
            ..Default::default()
        };
        metered("start_container", || {
            self.runtime.start_container(&req, self.opt())
        })
        .map_err(fail("start", Target::Container(container_id.into())))?;
        Ok(())
    }

    fn stop_container(&self, container_id: &str, timeout: Duration) -> Result<(), CriError> {
        let req = api::StopContainerRequest {
            container_id: container_id.to_string(),
            timeout: timeout.as_secs() as i64,
            ..Default::default()
        };
        metered("stop_container", || {
            self.runtime.stop_container(&req, self.opt_plus(timeout))
        })
        .map_err(fail("stop", Target::Container(container_id.into())))?;
        Ok(())
    }

    fn remove_container(&self, container_id: &str) -> Result<(), CriError> {
        let req = api::RemoveContainerRequest {
            container_id: container_id.to_string(),
            ..Default::default()
        };
        metered("remove_container", || {
            self.runtime.remove_container(&req, self.opt())
        })
        .map_err(fail("remove", Target::Container(container_id.into())))?;
        Ok(())
    }

    fn list_containers(
        &self,
        labels: &Labels,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<api::Container>, CriError> {
        let req = api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                label_selector: labels.clone(),
                pod_sandbox_id: sandbox_id.unwrap_or_default().to_string(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_containers", || {
                self.runtime.list_containers(&req, self.opt())
            })
            .map_err(fail("list containers of", Target::Runtime))?;
        Ok(r.containers)
    }

    fn relist_containers(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::relist::RelistContainer>, CriError> {
        let req = api::relist::RelistContainersRequest {
            filter: Some(api::relist::RelistContainerFilter {
                label_selector: labels.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_containers", || {
                self.relist.list_containers(&req, self.opt())
            })
            .map_err(fail("list containers of", Target::Runtime))?;
        Ok(r.containers)
    }

    fn container_status(&self, container_id: &str) -> Result<api::ContainerStatus, CriError> {
        let req = api::ContainerStatusRequest {
            container_id: container_id.to_string(),
            ..Default::default()
        };
        let r = self
            .read("container_status", || {
                self.runtime.container_status(&req, self.opt())
            })
            .map_err(fail(
                "get the status of",
                Target::Container(container_id.into()),
            ))?;
        Ok(r.status.unwrap_or_default())
    }

    fn reopen_container_log(&self, container_id: &str) -> Result<(), CriError> {
        let req = api::ReopenContainerLogRequest {
            container_id: container_id.to_string(),
            ..Default::default()
        };
        metered("reopen_container_log", || {
            self.runtime.reopen_container_log(&req, self.opt())
        })
        .map_err(fail(
            "reopen the log of",
            Target::Container(container_id.into()),
        ))?;
        Ok(())
    }

    fn exec_sync(
        &self,
        container_id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, CriError> {
        let req = api::ExecSyncRequest {
            container_id: container_id.to_string(),
            cmd: cmd.to_vec(),
            timeout: timeout.as_secs() as i64,
            ..Default::default()
        };
        let r = metered("exec_sync", || {
            self.runtime.exec_sync(&req, self.opt_plus(timeout))
        })
        .map_err(fail("exec in", Target::Container(container_id.into())))?;
        Ok(ExecOutput {
            stdout: r.stdout,
            stderr: r.stderr,
            exit_code: r.exit_code,
        })
    }

    fn exec(&self, req: &api::ExecRequest) -> Result<String, CriError> {
        let r = metered("exec", || self.runtime.exec(req, self.opt())).map_err(fail(
            "get an exec URL for",
            Target::Container(req.container_id.clone()),
        ))?;
        Ok(r.url)
    }

    fn attach(&self, req: &api::AttachRequest) -> Result<String, CriError> {
        let r = metered("attach", || self.runtime.attach(req, self.opt())).map_err(fail(
            "get an attach URL for",
            Target::Container(req.container_id.clone()),
        ))?;
        Ok(r.url)
    }

    fn port_forward(&self, sandbox_id: &str, ports: &[i32]) -> Result<String, CriError> {
        let req = api::PortForwardRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            port: ports.to_vec(),
            ..Default::default()
        };
        let r = metered("port_forward", || {
            self.runtime.port_forward(&req, self.opt())
        })
        .map_err(fail(
            "get a port-forward URL for",
            Target::Sandbox(sandbox_id.into()),
        ))?;
        Ok(r.url)
    }

    fn container_stats(&self, container_id: &str) -> Result<api::ContainerStats, CriError> {
        let req = api::ContainerStatsRequest {
            container_id: container_id.to_string(),
            ..Default::default()
        };
        let r = self
            .read("container_stats", || {
                self.runtime.container_stats(&req, self.opt())
            })
            .map_err(fail("get stats of", Target::Container(container_id.into())))?;
        Ok(r.stats.unwrap_or_default())
    }

    fn list_container_stats(&self, labels: &Labels) -> Result<Vec<api::ContainerStats>, CriError> {
        let req = api::ListContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter {
                label_selector: labels.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_container_stats", || {
                self.runtime.list_container_stats(&req, self.opt())
            })
            .map_err(fail("list container stats of", Target::Runtime))?;
        Ok(r.stats)
    }

    fn pod_sandbox_stats(&self, sandbox_id: &str) -> Result<api::PodSandboxStats, CriError> {
        let req = api::PodSandboxStatsRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            ..Default::default()
        };
        let r = self
            .read("podsandbox_stats", || {
                self.runtime.pod_sandbox_stats(&req, self.opt())
            })
            .map_err(fail("get stats of", Target::Sandbox(sandbox_id.into())))?;
        Ok(r.stats.unwrap_or_default())
    }

    fn list_pod_sandbox_stats(
        &self,
        labels: &Labels,
    ) -> Result<Vec<api::PodSandboxStats>, CriError> {
        let req = api::ListPodSandboxStatsRequest {
            filter: Some(api::PodSandboxStatsFilter {
                label_selector: labels.clone(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        let r = self
            .read("list_podsandbox_stats", || {
                self.runtime.list_pod_sandbox_stats(&req, self.opt())
            })
            .map_err(fail("list sandbox stats of", Target::Runtime))?;
        Ok(r.stats)
    }

    fn image_status(&self, image: &str) -> Result<Option<api::Image>, CriError> {
        let req = api::ImageStatusRequest {
            image: Some(image_spec(image)).into(),
            ..Default::default()
        };
        let r = self
            .read("image_status", || {
                self.images.image_status(&req, self.opt())
            })
            .map_err(fail("get the status of", Target::Image(image.into())))?;
        // An absent image is an empty (or missing) `image`, not an error.
        Ok(r.image.into_option().filter(|i| !i.id.is_empty()))
    }

    fn pull_image(
        &self,
        image: &str,
        auth: Option<&PullAuth>,
        sandbox_config: Option<&api::PodSandboxConfig>,
    ) -> Result<String, CriError> {
        let req = api::PullImageRequest {
            image: Some(image_spec(image)).into(),
            auth: auth
                .map(|a| api::AuthConfig {
                    username: a.username.clone(),
                    password: a.password.clone(),
                    auth: a.auth.clone(),
                    ..Default::default()
                })
                .into(),
            sandbox_config: sandbox_config.cloned().into(),
            ..Default::default()
        };
        let r = metered("pull_image", || {
            self.images
                .pull_image(&req, CallOption::default().timeout(self.deadlines.pull))
        })
        .map_err(fail("pull", Target::Image(image.into())))?;
        Ok(r.image_ref)
    }

    fn list_images(&self) -> Result<Vec<api::Image>, CriError> {
        let r = self
            .read("list_images", || {
                self.images
                    .list_images(&api::ListImagesRequest::default(), self.opt())
            })
            .map_err(fail("list images of", Target::Runtime))?;
        Ok(r.images)
    }

    fn remove_image(&self, image: &str) -> Result<(), CriError> {
        let req = api::RemoveImageRequest {
            image: Some(image_spec(image)).into(),
            ..Default::default()
        };
        metered("remove_image", || {
            self.images.remove_image(&req, self.opt())
        })
        .map_err(fail("remove", Target::Image(image.into())))?;
        Ok(())
    }

    fn image_fs_info(&self) -> Result<Vec<api::FilesystemUsage>, CriError> {
        let r = self
            .read("image_fs_info", || {
                self.images
                    .image_fs_info(&api::ImageFsInfoRequest::default(), self.opt())
            })
            .map_err(fail("get the image filesystem of", Target::Runtime))?;
        Ok(r.image_filesystems)
    }
}

fn image_spec(image: &str) -> api::ImageSpec {
    api::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_accepts_unix_urls_and_bare_paths() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock"),
            Path::new("/run/containerd/containerd.sock")
        );
        assert_eq!(socket_path("unix:/tmp/c.sock"), Path::new("/tmp/c.sock"));
        assert_eq!(socket_path("/tmp/c.sock"), Path::new("/tmp/c.sock"));
    }

    #[test]
    fn grpc_codes_keep_their_meaning() {
        assert_eq!(code_of(grpcio::RpcStatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(
            code_of(grpcio::RpcStatusCode::DEADLINE_EXCEEDED),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code_of(grpcio::RpcStatusCode::UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(code_of(grpcio::RpcStatusCode::from(99)), Code::Unknown);
    }
}
