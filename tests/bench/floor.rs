//! The CRI floor: vk-cri's own grpcio client and pod translator with nothing around them — the
//! pod cgroup with its limits, as the kubelet makes it, + RunPodSandbox + CreateContainer +
//! StartContainer, and StopContainer + StopPodSandbox + RemovePodSandbox — for the same pod
//! shape the daemon runs, one by one or many at once.
//!
//! Owns the floor's pods: their configs, made by the daemon's own code before the clock
//! starts, and their start and removal.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::measure::{meminfo_kib, Series};
use crate::shape::{PodShape, CGROUP_ROOT};
use vk_cri::cri::api;
use vk_cri::cri::{GrpcRuntime, Runtime};
use vk_cri::pod::translate::{self, ContainerInputs, ContainerKind, ImageUser, NodeContext};

/// The floor: vk-cri's CRI client and translator with nothing around them.
pub struct Floor {
    rt: GrpcRuntime,
    node: NodeContext,
    shape: PodShape,
    image_ref: String,
    image_user: ImageUser,
    pods_dir: PathBuf,
    n: AtomicU32,
}

/// Configs ready to run, made before the clock starts.
pub struct Prepared {
    sandbox: api::PodSandboxConfig,
    container: api::ContainerConfig,
    /// The pod cgroup the kubelet (and the daemon) makes before the sandbox, with its limits.
    cgroup: vk_cri::pod::resources::PodCgroupConfig,
}

/// A started floor pod.
pub struct Started {
    sandbox: String,
    container: String,
}

impl Floor {
    pub fn new(
        rt: GrpcRuntime,
        node_name: &str,
        scratch: &Path,
        shape: PodShape,
    ) -> Result<Floor, String> {
        let mut node = NodeContext::new(node_name);
        node.log_root = scratch.join("floor-logs");
        node.cgroup_root = CGROUP_ROOT.to_string();
        // As the daemon does with its defaults (--resolv-conf /etc/resolv.conf, cgroup probe).
        node.host_resolv_conf = std::fs::read_to_string("/etc/resolv.conf").ok();
        node.cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        if let Some(kib) = meminfo_kib("MemTotal") {
            node.memory_capacity = (kib * 1024) as i64;
        }
        let image = shape.image.clone();
        let found = rt
            .image_status(&image)
            .map_err(|e| format!("image status {image}: {e}"))?
            .ok_or_else(|| format!("image {image} is not in containerd: run `make env-up`"))?;
        Ok(Floor {
            rt,
            node,
            shape,
            image_ref: found.id.clone(),
            image_user: ImageUser::from_image(Some(&found)),
            pods_dir: scratch.join("floor-pods"),
            n: AtomicU32::new(0),
        })
    }

    /// The same pod as the daemon's, defaulted and translated by the daemon's code, with the
    /// files the daemon would write in place.
    pub fn prepare(&self) -> Result<Prepared, String> {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let name = format!("floor-{n}");
        let mut pod: Pod = serde_json::from_value(self.shape.pod(&name, &self.node.node_name))
            .map_err(|e| format!("floor pod: {e}"))?;
        pod.metadata.uid = Some(format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            n
        ));
        vk_cri::pod::defaults::apply_defaults(&mut pod);
        let sandbox = translate::sandbox_config(&pod, &self.node, 0).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(Path::new(&sandbox.log_directory).join("c"))
            .map_err(|e| format!("floor log dir: {e}"))?;
        let dir = self.pods_dir.join(&name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("floor pod dir: {e}"))?;
        let hosts = vk_cri::pod::dns::etc_hosts(&pod, &[], &self.node.cluster_domain)
            .map_err(|e| e.to_string())?;
        let hosts_path = dir.join("etc-hosts");
        std::fs::write(&hosts_path, hosts).map_err(|e| format!("floor hosts: {e}"))?;
        let term = dir.join("termination-log");
        std::fs::write(&term, "").map_err(|e| format!("floor termination log: {e}"))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| format!("floor termination log: {e}"))?;
        }
        let spec = pod.spec.as_ref().ok_or("floor pod without spec")?;
        let c = &spec.containers[0];
        let objects = vk_cri::volume::Objects::default();
        let node = vk_cri::volume::NodeAllocatable {
            memory: self.node.memory_capacity,
            ..Default::default()
        };
        let sources = vk_cri::pod::env::EnvSources {
            objects: &objects,
            node: &node,
            services: vk_cri::pod::env::Services::NoApiServer,
        };
        let env = vk_cri::pod::env::resolve(&pod, c, &self.node.node_name, &[], &[], &sources)
            .map_err(|e| e.to_string())?;
        let inputs = ContainerInputs {
            env: env.env,
            mounts: Vec::new(),
            etc_hosts_path: Some(hosts_path.to_string_lossy().into_owned()),
            termination_log_path: Some(term.to_string_lossy().into_owned()),
            image_ref: self.image_ref.clone(),
            image_user: self.image_user.clone(),
        };
        let container =
            translate::container_config(&pod, c, ContainerKind::App, 0, &inputs, &self.node)
                .map_err(|e| e.to_string())?;
        let cgroup = vk_cri::pod::resources::pod_cgroup_config(&pod);
        Ok(Prepared {
            sandbox,
            container,
            cgroup,
        })
    }

    /// The pod cgroup with its limits (what enforcing them costs, as the kubelet pays it:
    /// the sandbox and container then start under the pod's cpu quota) + RunPodSandbox +
    /// CreateContainer + StartContainer.
    fn start(&self, p: &Prepared) -> Result<Started, String> {
        let parent = p
            .sandbox
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        vk_cri::executor::cgroups::ensure_pod_cgroup(
            Path::new(vk_cri::executor::cgroups::CGROUP_FS),
            &parent,
            &p.cgroup,
        )
        .map_err(|e| format!("floor: pod cgroup: {e}"))?;
        let sandbox = self
            .rt
            .run_pod_sandbox(&p.sandbox, "")
            .map_err(|e| format!("floor: run sandbox: {e}"))?;
        let container = self
            .rt
            .create_container(&sandbox, &p.container, &p.sandbox)
            .map_err(|e| format!("floor: create container: {e}"))?;
        self.rt
            .start_container(&container)
            .map_err(|e| format!("floor: start container: {e}"))?;
        Ok(Started { sandbox, container })
    }

    /// StopContainer (1 s) + StopPodSandbox + RemovePodSandbox.
    fn delete(&self, s: &Started) -> Result<(), String> {
        if let Err(first) = self.rt.stop_container(&s.container, Duration::from_secs(1)) {
            // containerd 1.6 can lose its shim's ttrpc connection while the task exits on the
            // SIGTERM ("ttrpc: closed"): the daemon retries a failed stop, so the floor does
            // too, once, or a burst of 100 fails now and then.
            self.rt
                .stop_container(&s.container, Duration::from_secs(1))
                .map_err(|e| format!("floor: stop container: {first}; again: {e}"))?;
        }
        self.rt
            .stop_pod_sandbox(&s.sandbox)
            .map_err(|e| format!("floor: stop sandbox: {e}"))?;
        self.rt
            .remove_pod_sandbox(&s.sandbox)
            .map_err(|e| format!("floor: remove sandbox: {e}"))
    }

    /// One pod started, then deleted: (start, delete) latencies.
    pub fn one(&self) -> Result<(Duration, Duration), String> {
        let p = self.prepare()?;
        let t = Instant::now();
        let s = self.start(&p)?;
        let up = t.elapsed();
        let t = Instant::now();
        self.delete(&s)?;
        Ok((up, t.elapsed()))
    }

    /// `n` pods started at once from `n` threads, then deleted at once.
    pub fn burst(&self, n: usize) -> Result<(Series, Series), String> {
        self.burst_timed(n, || ())
    }

    /// [`Floor::burst`], calling `on_started` once every pod has started, before the deletion.
    pub fn burst_timed(
        &self,
        n: usize,
        on_started: impl FnOnce(),
    ) -> Result<(Series, Series), String> {
        let prepared: Vec<Prepared> = (0..n).map(|_| self.prepare()).collect::<Result<_, _>>()?;
        let started: Mutex<Vec<Started>> = Mutex::new(Vec::new());
        let up = self.at_once(&prepared, |p| {
            let s = self.start(p)?;
            started.lock().expect("started").push(s);
            Ok(())
        });
        let started = started.into_inner().expect("started");
        let up = match up {
            Ok(up) => up,
            Err(e) => {
                for s in &started {
                    let _ = self.delete(s);
                }
                return Err(e);
            }
        };
        on_started();
        let down = self.at_once(&started, |s| self.delete(s))?;
        Ok((up, down))
    }

    /// Runs `f` on every item from its own thread, all released together.
    fn at_once<T: Sync>(
        &self,
        items: &[T],
        f: impl Fn(&T) -> Result<(), String> + Sync,
    ) -> Result<Series, String> {
        let barrier = Barrier::new(items.len() + 1);
        let results: Vec<Result<Duration, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = items
                .iter()
                .map(|item| {
                    let (barrier, f) = (&barrier, &f);
                    s.spawn(move || {
                        barrier.wait();
                        let t = Instant::now();
                        f(item).map(|()| t.elapsed())
                    })
                })
                .collect();
            barrier.wait();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
                .collect()
        });
        let lat: Vec<Duration> = results.into_iter().collect::<Result<_, _>>()?;
        // All start at the barrier: the wall time is the slowest one.
        let wall = lat.iter().max().copied();
        Ok(Series::new(lat, wall))
    }
}
