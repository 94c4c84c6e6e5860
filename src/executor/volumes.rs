//! The [`VolumeManager`]: sets up a pod's volumes before its containers are created, gives each
//! container its CRI mounts, keeps configMap, secret and token files current while the pod runs,
//! and removes everything (unmounting its tmpfs) after the pod is gone.
//!
//! Layout: `<root>/<pod-uid>/<volume-name>`. Every sync re-reads exactly the objects the pod
//! references (the node may read nothing else) and rewrites a volume only when its files
//! changed, atomically; so the refresher thread ([`VolumeManager::spawn_refresher`]) just runs
//! the same set-up again for every running pod. Tokens come from TokenRequest bound to the pod
//! and are requested again past 80 % of their lifetime (or after 24 h), as the kubelet's token
//! manager does. Decisions are in the pure modules; this file does the I/O through [`Fs`] and
//! [`KubeApi`] and logs nothing but refresh outcomes (the pod syncer logs set-up failures).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::clock::Clock;
use crate::cri::api;
use crate::kube::KubeApi;
use crate::pod::expand::expand_env;
use crate::volume::claim::{self, Claimed, ClaimedSource, NodeIdentity};
use crate::volume::fs::Fs;
use crate::volume::plan::{self, VolumePlan};
use crate::volume::projected::TokenKey;
use crate::volume::{atomic, hostpath, subpath, NodeAllocatable, Objects, VolumeError};

/// The volumes containers use as raw block devices (`volumeDevices`).
fn block_device_volumes(pod: &Pod) -> BTreeSet<String> {
    let spec = pod.spec.as_ref();
    spec.into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .flat_map(|c| c.volume_devices.iter().flatten())
        .map(|d| d.name.clone())
        .collect()
}

/// A token the pod holds.
#[derive(Clone, Debug)]
struct Token {
    value: String,
    expires: Timestamp,
    expiration_seconds: i64,
}

/// Whether a token expiring at `expires`, requested for `expiration_seconds`, must be requested
/// again at `now`: past 80 % of its requested lifetime, or older than 24 hours (tokens for the
/// API server's own audience are issued for a year but meant to be replaced hourly).
pub fn needs_refresh(now: Timestamp, expires: Timestamp, expiration_seconds: i64) -> bool {
    let issued = expires - SignedDuration::from_secs(expiration_seconds);
    now > expires - SignedDuration::from_secs(expiration_seconds / 5)
        || now > issued + SignedDuration::from_hours(24)
}

#[derive(Default)]
struct PodVolumes {
    pod: Option<Arc<Pod>>,
    tokens: BTreeMap<TokenKey, Token>,
    /// tmpfs mounts in place under the pod's directory.
    mounted: Option<BTreeSet<PathBuf>>,
    /// Set up completely once: the refresher keeps it current from then on.
    ready: bool,
    /// Cleaned up: nothing may be written any more.
    removed: bool,
    /// Why the pod is to be evicted (an emptyDir over its sizeLimit), once found.
    eviction: Option<String>,
    /// Claimed volumes set up, by the pod's volume name: where they are on the host.
    claimed: BTreeMap<String, Claimed>,
}

/// The kubelet's eviction message for an emptyDir over its sizeLimit.
pub fn empty_dir_over_limit(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// A function told a pod UID.
pub type UidCallback = Box<dyn Fn(&str) + Send + Sync>;

/// The pods' volumes on this node.
pub struct VolumeManager {
    /// Where token lifetimes and the refresh period are measured (a fake clock in tests).
    clock: Arc<dyn Clock>,
    fs: Arc<dyn Fs>,
    root: PathBuf,
    api: Option<Arc<dyn KubeApi>>,
    node: NodeAllocatable,
    /// This node's name and labels, for a PersistentVolume's node affinity.
    identity: NodeIdentity,
    pods: Mutex<HashMap<String, Arc<Mutex<PodVolumes>>>>,
    /// Told the UID of a pod that must be evicted (the pod workers' poke).
    on_eviction: std::sync::OnceLock<UidCallback>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io { what, path, source }
}

impl VolumeManager {
    pub fn new(
        fs: Arc<dyn Fs>,
        root: PathBuf,
        api: Option<Arc<dyn KubeApi>>,
        node: NodeAllocatable,
        clock: Arc<dyn Clock>,
    ) -> VolumeManager {
        VolumeManager {
            clock,
            fs,
            root,
            api,
            node,
            identity: NodeIdentity::default(),
            pods: Mutex::new(HashMap::new()),
            on_eviction: std::sync::OnceLock::new(),
        }
    }

    /// The node's name and labels, which PersistentVolumes' node affinity is matched against.
    pub fn with_node_identity(mut self, identity: NodeIdentity) -> VolumeManager {
        self.identity = identity;
        self
    }

    /// Calls `f` with the UID of a pod found over a volume limit (once per pod).
    pub fn set_on_eviction(&self, f: UidCallback) {
        let _ = self.on_eviction.set(f);
    }

    /// Why the pod must be evicted, once the periodic check found it.
    pub fn eviction(&self, uid: &str) -> Option<String> {
        let entry = lock(&self.pods).get(uid).cloned()?;
        let st = lock(&entry);
        st.eviction.clone()
    }

    /// The first disk-backed emptyDir of the pod that uses more than its sizeLimit (the
    /// kubelet's local-storage eviction check), as the eviction message.
    pub fn over_limit(&self, pod: &Pod) -> Option<String> {
        let uid = crate::pod::uid(pod);
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .find_map(|v| {
                let e = v.empty_dir.as_ref()?;
                if e.medium.as_deref() == Some("Memory") {
                    return None;
                }
                let limit = e.size_limit.as_ref()?;
                let bytes = crate::quantity::Quantity::parse(&limit.0).ok()?.value();
                let used = self.fs.disk_usage(&self.pod_dir(uid).join(&v.name)).ok()?;
                (used > u64::try_from(bytes).unwrap_or(0))
                    .then(|| empty_dir_over_limit(&v.name, &limit.0))
            })
    }

    /// The node's allocatable resources, for `resourceFieldRef`.
    pub fn node(&self) -> NodeAllocatable {
        self.node
    }

    /// Whether the pod's volumes have been set up completely by this process (and not
    /// removed): the refresher keeps them current.
    pub fn tracks(&self, uid: &str) -> bool {
        let entry = lock(&self.pods).get(uid).cloned();
        entry.is_some_and(|e| {
            let st = lock(&e);
            st.ready && !st.removed
        })
    }

    /// `<root>/<uid>`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root.join(uid)
    }

    fn entry(&self, uid: &str) -> Arc<Mutex<PodVolumes>> {
        lock(&self.pods).entry(uid.to_string()).or_default().clone()
    }

    /// Sets up every volume of the pod (idempotent: unchanged volumes are left alone). All
    /// volumes are attempted; the first failure is returned as the kubelet's FailedMount.
    pub fn setup(&self, pod: &Arc<Pod>) -> Result<(), VolumeError> {
        self.setup_at(pod, self.clock.timestamp()).map(|_| ())
    }

    /// [`Self::setup`] at `now`; the names of the volumes whose files were rewritten.
    pub fn setup_at(&self, pod: &Arc<Pod>, now: Timestamp) -> Result<Vec<String>, VolumeError> {
        let uid = crate::pod::uid(pod);
        let entry = self.entry(uid);
        let mut st = lock(&entry);
        if st.removed {
            return Ok(Vec::new());
        }
        st.pod = Some(pod.clone());
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        if volumes.is_empty() {
            st.ready = true;
            return Ok(Vec::new());
        }
        let pod_dir = self.pod_dir(uid);
        if st.mounted.is_none() {
            // After a restart of the daemon, the tmpfs mounts it made are still there.
            let found = self
                .fs
                .mounts_under(&pod_dir)
                .map_err(io("read the mounts under", &pod_dir))?;
            st.mounted = Some(found.into_iter().collect());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let refs = plan::references(pod);
        let objects = Objects::fetch(
            self.api.as_deref(),
            ns,
            refs.configmaps.iter().map(String::as_str),
            refs.secrets.iter().map(String::as_str),
        );
        let mut objects = objects;
        let claims: Vec<(String, bool)> = volumes
            .iter()
            .filter_map(|v| claim::claim_of(pod, v))
            .collect();
        objects.fetch_claims(
            self.api.as_deref(),
            ns,
            claims.iter().map(|(c, _)| c.as_str()),
        );
        let tokens = self.tokens(pod, &refs.tokens, &mut st, now);
        let devices = block_device_volumes(pod);
        let mut first_error = None;
        let mut unprocessed: Vec<(String, String)> = Vec::new();
        let mut changed = Vec::new();
        for v in &volumes {
            let fs_group = plan::fs_group(pod);
            if let Some((claim_name, read_only)) = claim::claim_of(pod, v) {
                let result = claim::resolve(
                    pod,
                    v,
                    &claim_name,
                    read_only,
                    objects
                        .claims
                        .get(&claim_name)
                        .unwrap_or(&crate::volume::Fetched::NotFound),
                    objects.claims.get(&claim_name).and_then(|c| match c {
                        crate::volume::Fetched::Found(c) => c
                            .spec
                            .as_ref()
                            .and_then(|s| s.volume_name.as_ref())
                            .and_then(|pv| objects.volumes.get(pv)),
                        _ => None,
                    }),
                    &self.identity,
                    devices.contains(&v.name),
                )
                .and_then(|c| self.apply_claimed(&v.name, c, fs_group, &mut st));
                match result {
                    Ok(()) => {}
                    Err(VolumeError::Unprocessed(why)) => unprocessed.push((v.name.clone(), why)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
                continue;
            }
            let result = plan::plan_volume(pod, v, &objects, &tokens, &self.node)
                .and_then(|p| self.apply(&pod_dir.join(&v.name), &p, fs_group, &mut st, now));
            match result {
                Ok(true) => changed.push(v.name.clone()),
                Ok(false) => {}
                Err(e) => {
                    first_error.get_or_insert(VolumeError::SetUp {
                        volume: v.name.clone(),
                        cause: Box::new(e),
                    });
                }
            }
        }
        if !unprocessed.is_empty() {
            // What the kubelet's WaitForAttachAndMount reports: the volumes not mounted, those
            // the populator could not take, and its errors.
            return Err(VolumeError::NotProcessed {
                unmounted: volumes
                    .iter()
                    .filter(|v| {
                        unprocessed.iter().any(|(n, _)| *n == v.name)
                            || (claim::claim_of(pod, v).is_some()
                                && !st.claimed.contains_key(&v.name))
                    })
                    .map(|v| v.name.clone())
                    .collect(),
                unprocessed: unprocessed.iter().map(|(n, _)| n.clone()).collect(),
                errors: unprocessed.into_iter().map(|(_, e)| e).collect(),
            });
        }
        match first_error {
            Some(e) => Err(e),
            None => {
                st.ready = true;
                Ok(changed)
            }
        }
    }

    /// Makes a claimed volume usable: a hostPath volume's type checked (or created) as a pod's
    /// hostPath is; a local volume's path must exist, and it takes the pod's fsGroup (the
    /// kubelet's local plugin sets ownership; its hostPath plugin does not). Once per pod.
    fn apply_claimed(
        &self,
        volume: &str,
        c: Claimed,
        fs_group: Option<u32>,
        st: &mut PodVolumes,
    ) -> Result<(), VolumeError> {
        if st.claimed.get(volume) == Some(&c) {
            return Ok(());
        }
        let fs = self.fs.as_ref();
        let path = PathBuf::from(&c.path);
        match c.source {
            ClaimedSource::HostPath(kind) => {
                hostpath::prepare(fs, &c.path, kind).map_err(|e| VolumeError::SetUp {
                    volume: c.pv.clone(),
                    cause: Box::new(e),
                })?;
            }
            ClaimedSource::Local => {
                if fs
                    .metadata(&path, true)
                    .map_err(io("stat", &path))?
                    .is_none()
                {
                    return Err(VolumeError::LocalPathMissing {
                        pv: c.pv.clone(),
                        path: c.path.clone(),
                    });
                }
                if let (Some(gid), false) = (fs_group, c.read_only) {
                    set_ownership(fs, &path, gid, false, true).map_err(|e| VolumeError::SetUp {
                        volume: c.pv.clone(),
                        cause: Box::new(e),
                    })?;
                }
            }
        }
        st.claimed.insert(volume.to_string(), c);
        Ok(())
    }

    /// The token for every key: the one held while it is fresh, else a new one (a failed
    /// request keeps the held token until it expires).
    fn tokens(
        &self,
        pod: &Pod,
        keys: &BTreeSet<TokenKey>,
        st: &mut PodVolumes,
        now: Timestamp,
    ) -> BTreeMap<TokenKey, Result<String, String>> {
        let mut out = BTreeMap::new();
        for key in keys {
            let held = st.tokens.get(key).cloned();
            if let Some(t) = &held {
                if !needs_refresh(now, t.expires, t.expiration_seconds) {
                    out.insert(key.clone(), Ok(t.value.clone()));
                    continue;
                }
            }
            match self.request_token(pod, key) {
                Ok(t) => {
                    out.insert(key.clone(), Ok(t.value.clone()));
                    st.tokens.insert(key.clone(), t);
                }
                Err(e) => match held {
                    Some(t) if now < t.expires => {
                        out.insert(key.clone(), Ok(t.value));
                    }
                    _ => {
                        out.insert(key.clone(), Err(e));
                    }
                },
            }
        }
        out
    }

    fn request_token(&self, pod: &Pod, key: &TokenKey) -> Result<Token, String> {
        let Some(api) = &self.api else {
            return Err("no API server to request a service account token from".into());
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if key.audience.is_empty() {
                    Vec::new()
                } else {
                    vec![key.audience.clone()]
                },
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let got = api
            .create_token(ns, &sa, &request)
            .map_err(|e| e.to_string())?;
        let status = got
            .status
            .ok_or_else(|| "the TokenRequest came back without a token".to_string())?;
        Ok(Token {
            value: status.token,
            expires: status.expiration_timestamp.0,
            expiration_seconds: got
                .spec
                .expiration_seconds
                .unwrap_or(key.expiration_seconds),
        })
    }

    /// Makes one volume as planned; whether files were (re)written.
    fn apply(
        &self,
        dir: &Path,
        plan: &VolumePlan,
        fs_group: Option<u32>,
        st: &mut PodVolumes,
        now: Timestamp,
    ) -> Result<bool, VolumeError> {
        let fs = self.fs.as_ref();
        // Whether the directory (or its tmpfs) is new.
        let mut ensure_dir = |tmpfs: bool, size: Option<u64>| -> Result<bool, VolumeError> {
            let mut new = false;
            if fs.metadata(dir, false).map_err(io("stat", dir))?.is_none() {
                // World-writable like the kubelet's emptyDir; a tmpfs mounted on it shows 1777.
                fs.create_dir_all(dir, 0o777).map_err(io("create", dir))?;
                new = true;
            }
            let mounted = st.mounted.get_or_insert_with(BTreeSet::new);
            if tmpfs && !mounted.contains(dir) {
                fs.mount_tmpfs(dir, size)
                    .map_err(io("mount a tmpfs on", dir))?;
                mounted.insert(dir.to_path_buf());
                new = true;
            }
            Ok(new)
        };
        match plan {
            VolumePlan::EmptyDir { memory, size } => {
                if ensure_dir(*memory, *size)? {
                    if let Some(gid) = fs_group {
                        set_ownership(fs, dir, gid, false, false)?;
                    }
                }
                Ok(false)
            }
            VolumePlan::Files { tmpfs, payload } => {
                // Paths are checked before anything is made for the volume.
                for p in payload.keys() {
                    if let Some(reason) = atomic::validate_path(p) {
                        return Err(VolumeError::InvalidPath {
                            path: p.clone(),
                            reason,
                        });
                    }
                }
                ensure_dir(*tmpfs, None)?;
                let written = atomic::write(fs, dir, payload, now)?;
                if let (true, Some(gid)) = (written, fs_group) {
                    set_ownership(fs, dir, gid, true, true)?;
                }
                Ok(written)
            }
            VolumePlan::HostPath { path, kind } => {
                hostpath::prepare(fs, path, *kind)?;
                Ok(false)
            }
        }
    }

    /// The CRI mounts of `container`'s volumeMounts: host paths (subPath resolved on the host),
    /// read-only where asked or where the volume type requires it, and mount propagation.
    /// `env` is the container's resolved environment, for subPathExpr.
    pub fn mounts(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[(String, String)],
        privileged: bool,
    ) -> Result<Vec<api::Mount>, VolumeError> {
        let uid = crate::pod::uid(pod);
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out = Vec::new();
        for (index, m) in container.volume_mounts.iter().flatten().enumerate() {
            let v = volumes.iter().find(|v| v.name == m.name).ok_or_else(|| {
                VolumeError::NoSuchVolume {
                    volume: m.name.clone(),
                    container: container.name.clone(),
                }
            })?;
            let claimed = claim::claim_of(pod, v).map(|_| {
                lock(&self.entry(uid))
                    .claimed
                    .get(&v.name)
                    .map(|c| (PathBuf::from(&c.path), c.read_only))
            });
            let (root, forced_ro) = if let Some(c) = claimed {
                c.ok_or_else(|| {
                    VolumeError::Unprocessed(format!("volume {:?} is not set up yet", v.name))
                })?
            } else if let Some(h) = &v.host_path {
                (PathBuf::from(&h.path), false)
            } else if v.empty_dir.is_some() {
                (self.pod_dir(uid).join(&v.name), false)
            } else if v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
            {
                (self.pod_dir(uid).join(&v.name), true)
            } else {
                return Err(VolumeError::Unsupported {
                    kind: plan::type_name(v),
                });
            };
            let sub_path = match m.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => expand_env(expr, env),
                None => m.sub_path.clone().unwrap_or_default(),
            };
            let host = if sub_path.is_empty() {
                root
            } else {
                let target = subpath::target(&self.pod_dir(uid), &m.name, &container.name, index);
                subpath::prepare(
                    self.fs.as_ref(),
                    &root,
                    &sub_path,
                    &target,
                    &m.name,
                    &container.name,
                )
                .inspect_err(|e| {
                    if let VolumeError::SubPathCreate { detail, .. }
                    | VolumeError::SubPathPrepare { detail, .. } = e
                    {
                        // The pod's status says only what the kubelet's does; this is why.
                        log::warn!(
                            "pod {}: subPath {sub_path:?} of volumeMount {:?} of container {:?}: {detail}",
                            crate::pod::key(pod),
                            m.name,
                            container.name
                        );
                    }
                })?
            };
            let propagation = match m.mount_propagation.as_deref().unwrap_or("None") {
                "None" => api::MountPropagation::PROPAGATION_PRIVATE,
                "HostToContainer" => api::MountPropagation::PROPAGATION_HOST_TO_CONTAINER,
                "Bidirectional" if privileged => api::MountPropagation::PROPAGATION_BIDIRECTIONAL,
                "Bidirectional" => return Err(VolumeError::BidirectionalUnprivileged),
                other => return Err(VolumeError::InvalidPropagation(other.to_string())),
            };
            out.push(api::Mount {
                container_path: m.mount_path.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false) || forced_ro,
                propagation: propagation.into(),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Removes the pod's volumes: unmounts its tmpfs mounts, then removes its directory. No
    /// writes happen for this UID afterwards.
    pub fn cleanup(&self, uid: &str) -> Result<(), VolumeError> {
        let entry = self.entry(uid);
        let mut st = lock(&entry);
        st.removed = true;
        let dir = self.pod_dir(uid);
        subpath::clean(self.fs.as_ref(), &dir)?;
        let mounts = self
            .fs
            .mounts_under(&dir)
            .map_err(io("read the mounts under", &dir))?;
        for m in mounts {
            self.fs.unmount(&m).map_err(io("unmount", &m))?;
        }
        st.mounted = Some(BTreeSet::new());
        match self.fs.remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &dir)(e));
            }
            _ => {}
        }
        drop(st);
        lock(&self.pods).remove(uid);
        Ok(())
    }

    /// Sets up again every pod whose volumes are ready: changed ConfigMaps and Secrets and
    /// tokens near expiry are written to the running containers' volumes.
    pub fn refresh(&self) {
        let entries: Vec<Arc<Mutex<PodVolumes>>> = lock(&self.pods).values().cloned().collect();
        for e in entries {
            let pod = {
                let st = lock(&e);
                if !st.ready || st.removed {
                    continue;
                }
                st.pod.clone()
            };
            let Some(pod) = pod else { continue };
            if let Some(why) = self.over_limit(&pod) {
                let first = lock(&e).eviction.replace(why).is_none();
                if first {
                    if let Some(f) = self.on_eviction.get() {
                        f(crate::pod::uid(&pod));
                    }
                }
                continue;
            }
            match self.setup_at(&pod, self.clock.timestamp()) {
                Ok(changed) if !changed.is_empty() => {
                    log::info!(
                        "pod {}: volumes updated: {}",
                        crate::pod::key(&pod),
                        changed.join(", ")
                    );
                }
                Ok(_) => {}
                Err(e) => log::debug!("pod {}: volume refresh: {e}", crate::pod::key(&pod)),
            }
        }
    }

    /// Runs [`Self::refresh`] every `period` on its own thread.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        period: Duration,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("volume-refresh".into())
            .spawn(move || loop {
                me.clock.sleep(period);
                me.refresh();
            })
    }
}

/// The kubelet's `SetVolumeOwnership`: the group of `path` (and, when `recursive`, of
/// everything under it) becomes `gid`, and modes get the group bits; symlinks only change group.
fn set_ownership(
    fs: &dyn Fs,
    path: &Path,
    gid: u32,
    read_only: bool,
    recursive: bool,
) -> Result<(), VolumeError> {
    let Some(meta) = fs.metadata(path, false).map_err(io("stat", path))? else {
        return Ok(());
    };
    fs.lchown_group(path, gid).map_err(io("chgrp", path))?;
    if meta.kind == crate::volume::fs::Kind::Symlink {
        return Ok(());
    }
    let dir = meta.kind == crate::volume::fs::Kind::Dir;
    let mode = plan::fs_group_mode(meta.mode, dir, read_only);
    if mode != meta.mode {
        fs.set_mode(path, mode).map_err(io("chmod", path))?;
    }
    if dir && recursive {
        for name in fs.read_dir(path).map_err(io("read", path))? {
            set_ownership(fs, &path.join(name), gid, read_only, true)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::fake::FakeApi;
    use crate::kube::RequestKind;
    use crate::volume::fs::{Op, RecordingFs};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn tokens_are_refreshed_past_80_percent_or_after_a_day() {
        // One hour token issued at 0.
        assert!(!needs_refresh(ts(2879), ts(3600), 3600));
        assert!(needs_refresh(ts(2881), ts(3600), 3600));
        // A long-lived token: after 24 h even though 80 % is far away.
        let week = 7 * 24 * 3600;
        assert!(!needs_refresh(ts(24 * 3600 - 1), ts(week), week));
        assert!(needs_refresh(ts(24 * 3600 + 1), ts(week), week));
    }

    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vk-cri-volmgr-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn pod(volumes: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
                "spec": {"serviceAccountName": "sa", "containers": [{"name": "c", "image": "i",
                    "volumeMounts": [
                        {"name": "cfg", "mountPath": "/cfg"},
                        {"name": "tok", "mountPath": "/tok", "readOnly": false},
                        {"name": "mem", "mountPath": "/mem", "mountPropagation": "HostToContainer"},
                        {"name": "mem", "mountPath": "/sub", "subPathExpr": "$(POD)/x"}
                    ]}],
                    "volumes": volumes}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn a_pod_gets_files_tmpfs_mounts_and_a_bound_token_then_everything_goes() {
        let root = scratch("setup");
        let fs = Arc::new(RecordingFs::new());
        let api = Arc::new(FakeApi::new());
        api.push_json(
            RequestKind::GetConfigMap,
            serde_json::json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}),
        );
        api.push_json(
            RequestKind::CreateToken,
            serde_json::json!({"spec": {"expirationSeconds": 3600},
                "status": {"token": "tok-1", "expirationTimestamp": "2030-01-01T00:00:00Z"}}),
        );
        let m = VolumeManager::new(
            fs.clone(),
            root.clone(),
            Some(api.clone()),
            NodeAllocatable::default(),
            Arc::new(crate::clock::RealClock),
        );
        let p = pod(serde_json::json!([
            {"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token", "audience": "a"}}]}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}
        ]));
        let changed = m.setup_at(&p, ts(0)).unwrap();
        assert_eq!(changed, ["cfg", "tok"]);
        let dir = root.join("uid-1");
        assert_eq!(std::fs::read_to_string(dir.join("cfg/k")).unwrap(), "v");
        assert_eq!(
            std::fs::read_to_string(dir.join("tok/token")).unwrap(),
            "tok-1"
        );
        assert_eq!(fs.mounted(), vec![dir.join("tok"), dir.join("mem")]);
        assert!(fs
            .ops()
            .contains(&Op::MountTmpfs(dir.join("mem"), Some(1 << 20))));
        // The token request is bound to the pod, for its service account and audience.
        let calls = api.calls_of(RequestKind::CreateToken);
        assert_eq!(calls.len(), 1);
        assert!(
            calls[0]
                .path
                .ends_with("/namespaces/ns/serviceaccounts/sa/token"),
            "{}",
            calls[0].path
        );
        let body: serde_json::Value =
            serde_json::from_slice(calls[0].body.as_deref().unwrap()).unwrap();
        assert_eq!(body["spec"]["boundObjectRef"]["uid"], "uid-1");
        assert_eq!(body["spec"]["audiences"][0], "a");

        let c = p.spec.as_ref().unwrap().containers[0].clone();
        let mounts = m
            .mounts(&p, &c, &[("POD".into(), "p".into())], false)
            .unwrap();
        assert_eq!(mounts[0].host_path, dir.join("cfg").to_string_lossy());
        assert!(mounts[0].readonly, "configMap volumes are read-only");
        assert!(mounts[1].readonly, "projected volumes are read-only");
        assert!(!mounts[2].readonly);
        assert_eq!(
            mounts[2].propagation.enum_value_or_default(),
            api::MountPropagation::PROPAGATION_HOST_TO_CONTAINER
        );
        // The subPath is handed to the runtime as its bind target, which binds the directory
        // that was checked (subPathExpr expanded).
        let real = std::fs::canonicalize(dir.join("mem")).unwrap();
        let target = dir.join(".volume-subpaths/mem/c/3");
        assert_eq!(mounts[3].host_path, target.to_string_lossy());
        assert!(fs.ops().contains(&crate::volume::fs::Op::BindSubPath(
            real.join("p/x"),
            target.clone()
        )));
        assert!(fs.mounted().contains(&target));

        m.cleanup("uid-1").unwrap();
        assert!(fs.mounted().is_empty());
        assert!(!dir.exists());
        // A refresh after the pod is gone writes nothing.
        m.refresh();
        assert!(!dir.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_missing_configmap_fails_that_volume_while_the_others_are_made() {
        let root = scratch("missing");
        let fs = Arc::new(RecordingFs::new());
        let api = Arc::new(FakeApi::new());
        api.push_error(
            RequestKind::GetConfigMap,
            crate::kube::ApiError::NotFound {
                request: crate::kube::error::RequestRef {
                    method: crate::kube::Method::Get,
                    path: "/api/v1/namespaces/ns/configmaps/cm".into(),
                },
                message: "configmaps \"cm\" not found".into(),
            },
        );
        let m = VolumeManager::new(
            fs,
            root.clone(),
            Some(api),
            NodeAllocatable::default(),
            Arc::new(crate::clock::RealClock),
        );
        let p = pod(serde_json::json!([
            {"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "mem", "emptyDir": {}},
            {"name": "nfs", "nfs": {"server": "127.0.0.1", "path": "/"}}
        ]));
        let err = m.setup_at(&p, ts(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "MountVolume.SetUp failed for volume \"cfg\" : configmap \"cm\" not found"
        );
        assert!(!err.is_permanent());
        assert!(root.join("uid-1/mem").is_dir());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
