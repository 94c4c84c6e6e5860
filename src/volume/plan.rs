//! The pure planner: what each volume of a pod becomes on the host, given the API objects and
//! tokens it references.
//!
//! Owns the mapping of volume types to host layouts: emptyDir (a directory, or a tmpfs sized by
//! sizeLimit for medium Memory), configMap (files on disk), secret, downwardAPI and projected
//! (files on a tmpfs, as the kubelet's memory-backed wrappers), hostPath (the host path after
//! its type check) and every other type refused by name. Also lists what a pod references, so
//! that exactly those objects are read.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Pod, Volume};

use super::atomic::Payload;
use super::hostpath::HostPathType;
use super::projected::{self, TokenKey};
use super::{configmap, downward, secret, NodeAllocatable, Objects, VolumeError};
use crate::quantity::Quantity;

/// What one volume becomes.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumePlan {
    /// An empty directory; on a tmpfs of at most `size` bytes when `memory`.
    EmptyDir { memory: bool, size: Option<u64> },
    /// A set of files written atomically; on a tmpfs when `tmpfs` (secrets never touch disk).
    Files { tmpfs: bool, payload: Payload },
    /// A host path, checked (or created) by its type.
    HostPath { path: String, kind: HostPathType },
}

impl VolumePlan {
    /// The kubelet mounts configMap, secret, downwardAPI and projected volumes read-only.
    pub fn read_only(&self) -> bool {
        matches!(self, VolumePlan::Files { .. })
    }
}

/// The ConfigMaps, Secrets and tokens a pod's volumes reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub configmaps: BTreeSet<String>,
    pub secrets: BTreeSet<String>,
    pub tokens: BTreeSet<TokenKey>,
}

/// What the pod's volumes reference.
pub fn references(pod: &Pod) -> References {
    let mut r = References::default();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            r.configmaps.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            r.secrets.insert(s);
        }
        if let Some(p) = &v.projected {
            for s in p.sources.iter().flatten() {
                if let Some(c) = &s.config_map {
                    r.configmaps.insert(c.name.clone());
                }
                if let Some(s) = &s.secret {
                    r.secrets.insert(s.name.clone());
                }
            }
            r.tokens.extend(projected::token_keys(p));
        }
    }
    r
}

/// The volume's type as written in the spec (`persistentVolumeClaim`, `nfs`, ...).
pub fn type_name(v: &Volume) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| {
            j.as_object()
                .and_then(|o| o.keys().find(|k| *k != "name").cloned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The pod's `securityContext.fsGroup`.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|c| c.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

/// The kubelet's `SetVolumeOwnership` masks: what an fsGroup adds to a file or directory mode
/// (read for the group on read-only volumes, read-write otherwise; directories also get
/// setgid and search).
pub fn fs_group_mode(mode: u32, dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { 0o440 } else { 0o660 };
    if dir {
        mask |= 0o2000 | 0o110;
    }
    mode | mask
}

/// What the pod's volume `v` becomes.
pub fn plan_volume(
    pod: &Pod,
    v: &Volume,
    objects: &Objects,
    tokens: &BTreeMap<TokenKey, Result<String, String>>,
    node: &NodeAllocatable,
) -> Result<VolumePlan, VolumeError> {
    let mut plan = plan_type(pod, v, objects, tokens, node)?;
    if let (Some(_), VolumePlan::Files { payload, .. }) = (fs_group(pod), &mut plan) {
        for f in payload.values_mut() {
            f.mode = fs_group_mode(f.mode, false, true);
        }
    }
    Ok(plan)
}

fn plan_type(
    pod: &Pod,
    v: &Volume,
    objects: &Objects,
    tokens: &BTreeMap<TokenKey, Result<String, String>>,
    node: &NodeAllocatable,
) -> Result<VolumePlan, VolumeError> {
    if let Some(e) = &v.empty_dir {
        let memory = e.medium.as_deref() == Some("Memory");
        let size = match &e.size_limit {
            Some(q) if memory => {
                let n = Quantity::parse(&q.0)
                    .map_err(|_| VolumeError::SizeLimit(q.0.clone()))?
                    .value();
                (n > 0).then_some(n as u64)
            }
            _ => None,
        };
        return Ok(VolumePlan::EmptyDir { memory, size });
    }
    if let Some(c) = &v.config_map {
        let payload = configmap::payload(
            objects,
            &c.name,
            c.items.as_ref(),
            c.default_mode,
            c.optional.unwrap_or(false),
        )?;
        return Ok(VolumePlan::Files {
            tmpfs: false,
            payload,
        });
    }
    if let Some(s) = &v.secret {
        let payload = secret::payload(
            objects,
            s.secret_name.as_deref().unwrap_or_default(),
            s.items.as_ref(),
            s.default_mode,
            s.optional.unwrap_or(false),
        )?;
        return Ok(VolumePlan::Files {
            tmpfs: true,
            payload,
        });
    }
    if let Some(d) = &v.downward_api {
        let payload = downward::payload(
            pod,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode,
            node,
        )?;
        return Ok(VolumePlan::Files {
            tmpfs: true,
            payload,
        });
    }
    if let Some(p) = &v.projected {
        let payload = projected::payload(pod, p, objects, tokens, node)?;
        return Ok(VolumePlan::Files {
            tmpfs: true,
            payload,
        });
    }
    if let Some(h) = &v.host_path {
        return Ok(VolumePlan::HostPath {
            path: h.path.clone(),
            kind: HostPathType::parse(h.type_.as_deref())?,
        });
    }
    Err(VolumeError::Unsupported { kind: type_name(v) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [], "volumes": volumes}
        }))
        .unwrap()
    }

    fn plan(p: &Pod, i: usize) -> Result<VolumePlan, VolumeError> {
        let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[i];
        plan_volume(
            p,
            v,
            &Objects::default(),
            &BTreeMap::new(),
            &NodeAllocatable::default(),
        )
    }

    #[test]
    fn empty_dirs_on_disk_or_a_sized_tmpfs() {
        let p = pod(serde_json::json!([
            {"name": "a", "emptyDir": {}},
            {"name": "b", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "c", "emptyDir": {"medium": "Memory"}},
            {"name": "d", "emptyDir": {"sizeLimit": "1Gi"}},
        ]));
        assert_eq!(
            plan(&p, 0).unwrap(),
            VolumePlan::EmptyDir {
                memory: false,
                size: None
            }
        );
        assert_eq!(
            plan(&p, 1).unwrap(),
            VolumePlan::EmptyDir {
                memory: true,
                size: Some(64 << 20)
            }
        );
        assert_eq!(
            plan(&p, 2).unwrap(),
            VolumePlan::EmptyDir {
                memory: true,
                size: None
            }
        );
        assert_eq!(
            plan(&p, 3).unwrap(),
            VolumePlan::EmptyDir {
                memory: false,
                size: None
            }
        );
    }

    #[test]
    fn secrets_and_projections_go_to_tmpfs_configmaps_to_disk_all_read_only() {
        let p = pod(serde_json::json!([
            {"name": "a", "configMap": {"name": "cm", "optional": true}},
            {"name": "b", "secret": {"secretName": "s", "optional": true}},
            {"name": "c", "downwardAPI": {"items": []}},
        ]));
        assert!(matches!(
            plan(&p, 0).unwrap(),
            VolumePlan::Files { tmpfs: false, .. }
        ));
        assert!(matches!(
            plan(&p, 1).unwrap(),
            VolumePlan::Files { tmpfs: true, .. }
        ));
        assert!(matches!(
            plan(&p, 2).unwrap(),
            VolumePlan::Files { tmpfs: true, .. }
        ));
        assert!(plan(&p, 0).unwrap().read_only());
    }

    #[test]
    fn an_fs_group_adds_the_kubelets_group_bits() {
        assert_eq!(fs_group_mode(0o400, false, true), 0o440);
        assert_eq!(fs_group_mode(0o644, false, true), 0o644);
        assert_eq!(fs_group_mode(0o777, true, false), 0o2777);
        assert_eq!(fs_group_mode(0o755, true, true), 0o2755);
        let mut p = pod(
            serde_json::json!([{"name": "a", "downwardAPI": {"defaultMode": 0o400,
            "items": [{"path": "n", "fieldRef": {"fieldPath": "metadata.name"}}]}}]),
        );
        p.spec.as_mut().unwrap().security_context =
            Some(serde_json::from_value(serde_json::json!({"fsGroup": 2000})).unwrap());
        let VolumePlan::Files { payload, .. } = plan(&p, 0).unwrap() else {
            panic!("files");
        };
        assert_eq!(payload["n"].mode, 0o440);
    }

    #[test]
    fn unsupported_types_are_named() {
        let p = pod(serde_json::json!([
            {"name": "a", "csi": {"driver": "d"}},
            {"name": "b", "nfs": {"server": "s", "path": "/"}},
        ]));
        assert_eq!(
            plan(&p, 0).unwrap_err().to_string(),
            "csi volumes are not supported by vk-cri"
        );
        assert_eq!(
            plan(&p, 1).unwrap_err().to_string(),
            "nfs volumes are not supported by vk-cri"
        );
    }

    #[test]
    fn references_are_exactly_what_volumes_name() {
        let p = pod(serde_json::json!([
            {"name": "a", "configMap": {"name": "cm1"}},
            {"name": "b", "secret": {"secretName": "s1"}},
            {"name": "c", "projected": {"sources": [
                {"configMap": {"name": "cm2"}}, {"secret": {"name": "s2"}},
                {"serviceAccountToken": {"path": "t", "audience": "vault"}}]}},
            {"name": "d", "emptyDir": {}},
        ]));
        let r = references(&p);
        assert_eq!(r.configmaps.into_iter().collect::<Vec<_>>(), ["cm1", "cm2"]);
        assert_eq!(r.secrets.into_iter().collect::<Vec<_>>(), ["s1", "s2"]);
        assert_eq!(
            r.tokens.into_iter().collect::<Vec<_>>(),
            [TokenKey {
                audience: "vault".into(),
                expiration_seconds: 3600
            }]
        );
    }
}
