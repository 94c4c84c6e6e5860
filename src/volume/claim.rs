//! PersistentVolumeClaim volumes (and generic ephemeral volumes, whose claim the
//! ephemeral-volume controller creates as `<pod>-<volume>`): from the claim to the bound
//! PersistentVolume to a path on this node, as the kubelet's desired-state populator and its
//! hostPath and local plugins do.
//!
//! Owns the checks and their messages (the kubelet's): the claim must exist, not be deleted and
//! be Bound to a volume whose `claimRef` names it; an ephemeral claim must be controlled by the
//! pod; a Block volume cannot be mounted; a volume's node affinity must match this node; a
//! `local` path must exist (checked by the executor, which does the I/O). `hostPath` and `local`
//! volumes are supported; every other kind is refused by name. Pure.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim, Pod, Volume,
};

use super::hostpath::HostPathType;
use super::{Fetched, VolumeError};

/// The claim a volume uses, if it is a claim: its name and whether the pod mounts it
/// read-only.
pub fn claim_of(pod: &Pod, v: &Volume) -> Option<(String, bool)> {
    if let Some(c) = &v.persistent_volume_claim {
        return Some((c.claim_name.clone(), c.read_only.unwrap_or(false)));
    }
    v.ephemeral.as_ref().map(|_| {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        (format!("{pod_name}-{}", v.name), false)
    })
}

/// What this node is, for a volume's node affinity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeIdentity {
    pub name: String,
    pub labels: BTreeMap<String, String>,
}

/// Where a claimed volume is on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The PersistentVolume's name (the kubelet's events name it, not the pod's volume).
    pub pv: String,
    pub path: String,
    pub source: ClaimedSource,
    pub read_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimedSource {
    /// A `hostPath` volume: its type checked (or created) as a pod's hostPath; no fsGroup.
    HostPath(HostPathType),
    /// A `local` volume: the path must exist; fsGroup ownership applies.
    Local,
}

/// Go's `%v` of an error the client returns for an object it could not get.
fn fetch_failed<T>(what: &str, name: &str, f: &Fetched<T>) -> Option<String> {
    match f {
        Fetched::Found(_) => None,
        Fetched::NotFound => Some(format!("{what} {name:?} not found")),
        Fetched::Failed(m) => Some(m.clone()),
    }
}

/// A claim's problem as the populator words it (`error processing PVC ns/name: …`).
fn processing(ns: &str, claim: &str, cause: impl std::fmt::Display) -> VolumeError {
    VolumeError::Unprocessed(format!("error processing PVC {ns}/{claim}: {cause}"))
}

/// Resolves `v` (a claim, see [`claim_of`]) of `pod`, mounted by some container
/// (`in_mounts`) or as a device (`in_devices`), to where it is on this node.
#[allow(clippy::too_many_arguments)]
pub fn resolve(
    pod: &Pod,
    v: &Volume,
    claim_name: &str,
    read_only: bool,
    pvc: &Fetched<PersistentVolumeClaim>,
    pv: Option<&Fetched<PersistentVolume>>,
    node: &NodeIdentity,
    in_devices: bool,
) -> Result<Claimed, VolumeError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let claim = match pvc {
        Fetched::Found(c) => c,
        other => {
            let why = fetch_failed("persistentvolumeclaims", claim_name, other).unwrap_or_default();
            return Err(processing(
                ns,
                claim_name,
                format!("failed to fetch PVC from API server: {why}"),
            ));
        }
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(processing(ns, claim_name, "PVC is being deleted"));
    }
    let phase = claim.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Bound") {
        return Err(processing(ns, claim_name, "PVC is not bound"));
    }
    let pv_name = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if pv_name.is_empty() {
        return Err(processing(
            ns,
            claim_name,
            "PVC has empty pvc.Spec.VolumeName",
        ));
    }
    if v.ephemeral.is_some() && !controlled_by(claim, pod) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
        return Err(VolumeError::Unprocessed(format!(
            "PVC {ns}/{claim_name} was not created for pod {ns}/{pod_name} (pod is not owner)"
        )));
    }
    let volume = match pv {
        Some(Fetched::Found(p)) => p,
        other => {
            let why = other
                .and_then(|f| fetch_failed("persistentvolumes", &pv_name, f))
                .unwrap_or_else(|| format!("persistentvolumes {pv_name:?} not found"));
            return Err(processing(
                ns,
                claim_name,
                format!("failed to fetch PV {pv_name} from API server: {why}"),
            ));
        }
    };
    let spec = volume.spec.as_ref();
    let claim_ref = spec.and_then(|s| s.claim_ref.as_ref());
    let Some(claim_ref) = claim_ref else {
        return Err(processing(
            ns,
            claim_name,
            format!(
                "found PV object {pv_name} but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim"
            ),
        ));
    };
    let claim_uid = claim.metadata.uid.clone().unwrap_or_default();
    if claim_ref.uid.clone().unwrap_or_default() != claim_uid {
        return Err(processing(
            ns,
            claim_name,
            format!(
                "found PV object {pv_name} but its pv.Spec.ClaimRef.UID {} does not point to claim.UID {claim_uid}",
                claim_ref.uid.clone().unwrap_or_default()
            ),
        ));
    }
    let mode = spec
        .and_then(|s| s.volume_mode.clone())
        .unwrap_or_else(|| "Filesystem".to_string());
    if mode != "Filesystem" && !in_devices {
        return Err(VolumeError::Unprocessed(format!(
            "volume {} has volumeMode {mode}, but is specified in volumeMounts",
            v.name
        )));
    }
    if in_devices {
        return Err(VolumeError::Unsupported {
            kind: "block (volumeDevices)".to_string(),
        });
    }
    if let Some(required) = spec
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    {
        if !matches_node(required, node) {
            return Err(VolumeError::NodeAffinity { pv: pv_name });
        }
    }
    let source = spec.ok_or_else(|| VolumeError::Unsupported {
        kind: "persistent (empty spec)".to_string(),
    })?;
    if let Some(h) = &source.host_path {
        return Ok(Claimed {
            pv: pv_name,
            path: h.path.clone(),
            source: ClaimedSource::HostPath(HostPathType::parse(h.type_.as_deref())?),
            read_only,
        });
    }
    if let Some(l) = &source.local {
        return Ok(Claimed {
            pv: pv_name,
            path: l.path.clone(),
            source: ClaimedSource::Local,
            read_only,
        });
    }
    Err(VolumeError::Unsupported {
        kind: format!("{} persistent", pv_kind(volume)),
    })
}

/// Whether the claim's controller is this pod (`metav1.IsControlledBy`).
fn controlled_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The name of a PV's kind, as its spec field is called.
pub fn pv_kind(pv: &PersistentVolume) -> &'static str {
    let Some(s) = pv.spec.as_ref() else {
        return "unknown";
    };
    let kinds: [(&'static str, bool); 20] = [
        ("csi", s.csi.is_some()),
        ("nfs", s.nfs.is_some()),
        ("iscsi", s.iscsi.is_some()),
        ("fc", s.fc.is_some()),
        ("rbd", s.rbd.is_some()),
        ("cephfs", s.cephfs.is_some()),
        ("glusterfs", s.glusterfs.is_some()),
        ("awsElasticBlockStore", s.aws_elastic_block_store.is_some()),
        ("gcePersistentDisk", s.gce_persistent_disk.is_some()),
        ("azureDisk", s.azure_disk.is_some()),
        ("azureFile", s.azure_file.is_some()),
        ("cinder", s.cinder.is_some()),
        ("vsphereVolume", s.vsphere_volume.is_some()),
        ("portworxVolume", s.portworx_volume.is_some()),
        ("flexVolume", s.flex_volume.is_some()),
        ("flocker", s.flocker.is_some()),
        ("quobyte", s.quobyte.is_some()),
        ("scaleIO", s.scale_io.is_some()),
        ("storageos", s.storageos.is_some()),
        ("photonPersistentDisk", s.photon_persistent_disk.is_some()),
    ];
    kinds
        .iter()
        .find(|(_, set)| *set)
        .map_or("unknown", |(k, _)| k)
}

/// `MatchNodeSelectorTerms`: the terms are ORed, a term's requirements ANDed; a term with no
/// requirement matches nothing.
pub fn matches_node(selector: &NodeSelector, node: &NodeIdentity) -> bool {
    selector.node_selector_terms.iter().any(|t| {
        let exprs = t.match_expressions.as_deref().unwrap_or_default();
        let fields = t.match_fields.as_deref().unwrap_or_default();
        (!exprs.is_empty() || !fields.is_empty())
            && exprs
                .iter()
                .all(|r| requirement(r, node.labels.get(&r.key)))
            && fields.iter().all(|r| {
                let value = (r.key == "metadata.name").then_some(&node.name);
                r.key == "metadata.name" && requirement(r, value)
            })
    })
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => !value.is_some_and(|v| values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => match (value.and_then(|v| number(v)), values) {
            (Some(have), [want]) => {
                number(want).is_some_and(|want| if op == "Gt" { have > want } else { have < want })
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "ns", "uid": "pod-uid"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes}
        }))
        .unwrap()
    }

    fn pvc(v: serde_json::Value) -> Fetched<PersistentVolumeClaim> {
        Fetched::Found(serde_json::from_value(v).unwrap())
    }

    fn pv(v: serde_json::Value) -> Fetched<PersistentVolume> {
        Fetched::Found(serde_json::from_value(v).unwrap())
    }

    fn bound_claim() -> serde_json::Value {
        json!({
            "metadata": {"name": "data-web-0", "namespace": "ns", "uid": "claim-uid"},
            "spec": {"volumeName": "pv-1"},
            "status": {"phase": "Bound"}
        })
    }

    fn local_pv() -> serde_json::Value {
        json!({
            "metadata": {"name": "pv-1"},
            "spec": {
                "local": {"path": "/mnt/disks/a"},
                "claimRef": {"name": "data-web-0", "namespace": "ns", "uid": "claim-uid"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["vk-node"]}
                ]}]}}
            }
        })
    }

    fn node() -> NodeIdentity {
        NodeIdentity {
            name: "vk-node".into(),
            labels: [("kubernetes.io/hostname".to_string(), "vk-node".to_string())].into(),
        }
    }

    fn run(
        p: &Pod,
        claim: &Fetched<PersistentVolumeClaim>,
        volume: Option<&Fetched<PersistentVolume>>,
    ) -> Result<Claimed, String> {
        let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let (name, ro) = claim_of(p, v).unwrap();
        resolve(p, v, &name, ro, claim, volume, &node(), false).map_err(|e| e.to_string())
    }

    fn claim_volume() -> Pod {
        pod(
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0", "readOnly": true}}]),
        )
    }

    #[test]
    fn a_bound_local_volume_on_this_node_resolves_to_its_path() {
        let got = run(&claim_volume(), &pvc(bound_claim()), Some(&pv(local_pv()))).unwrap();
        assert_eq!(
            got,
            Claimed {
                pv: "pv-1".into(),
                path: "/mnt/disks/a".into(),
                source: ClaimedSource::Local,
                read_only: true,
            }
        );
    }

    #[test]
    fn claim_problems_read_as_the_kubelets_populator_words_them() {
        let p = claim_volume();
        type Case = (
            Fetched<PersistentVolumeClaim>,
            Option<Fetched<PersistentVolume>>,
            &'static str,
        );
        let table: Vec<Case> = vec![
            (
                Fetched::NotFound,
                None,
                "error processing PVC ns/data-web-0: failed to fetch PVC from API server: persistentvolumeclaims \"data-web-0\" not found",
            ),
            (
                pvc(json!({"metadata": {"name": "data-web-0", "uid": "c"}, "status": {"phase": "Pending"}})),
                None,
                "error processing PVC ns/data-web-0: PVC is not bound",
            ),
            (
                pvc(json!({"metadata": {"name": "data-web-0", "uid": "c", "deletionTimestamp": "2026-12-07T10:00:00Z"}, "status": {"phase": "Bound"}})),
                None,
                "error processing PVC ns/data-web-0: PVC is being deleted",
            ),
            (
                pvc(json!({"metadata": {"name": "data-web-0", "uid": "c"}, "status": {"phase": "Bound"}})),
                None,
                "error processing PVC ns/data-web-0: PVC has empty pvc.Spec.VolumeName",
            ),
            (
                pvc(bound_claim()),
                Some(Fetched::NotFound),
                "error processing PVC ns/data-web-0: failed to fetch PV pv-1 from API server: persistentvolumes \"pv-1\" not found",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"local": {"path": "/x"}}}))),
                "error processing PVC ns/data-web-0: found PV object pv-1 but it has a nil pv.Spec.ClaimRef indicating it is not yet bound to the claim",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"local": {"path": "/x"}, "claimRef": {"uid": "other"}}}))),
                "error processing PVC ns/data-web-0: found PV object pv-1 but its pv.Spec.ClaimRef.UID other does not point to claim.UID claim-uid",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"local": {"path": "/x"}, "claimRef": {"uid": "claim-uid"}, "volumeMode": "Block"}}))),
                "volume data has volumeMode Block, but is specified in volumeMounts",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"local": {"path": "/x"}, "claimRef": {"uid": "claim-uid"},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["other-node"]}]}]}}}}))),
                "MountVolume.NodeAffinity check failed for volume \"pv-1\" : no matching NodeSelectorTerms",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"nfs": {"server": "s", "path": "/e"}, "claimRef": {"uid": "claim-uid"}}}))),
                "nfs persistent volumes are not supported by vk-cri",
            ),
            (
                pvc(bound_claim()),
                Some(pv(json!({"metadata": {"name": "pv-1"}, "spec": {"csi": {"driver": "d", "volumeHandle": "h"}, "claimRef": {"uid": "claim-uid"}}}))),
                "csi persistent volumes are not supported by vk-cri",
            ),
        ];
        for (claim, volume, want) in &table {
            assert_eq!(run(&p, claim, volume.as_ref()).unwrap_err(), *want);
        }
    }

    #[test]
    fn an_ephemeral_volume_uses_the_claim_its_pod_controls() {
        let p =
            pod(json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]));
        let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        assert_eq!(claim_of(&p, v), Some(("web-0-scratch".to_string(), false)));
        let mut claim = bound_claim();
        claim["metadata"]["name"] = json!("web-0-scratch");
        let mut volume = local_pv();
        volume["spec"]["claimRef"]["name"] = json!("web-0-scratch");
        assert_eq!(
            run(&p, &pvc(claim.clone()), Some(&pv(volume.clone()))).unwrap_err(),
            "PVC ns/web-0-scratch was not created for pod ns/web-0 (pod is not owner)"
        );
        claim["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "pod-uid", "controller": true
        }]);
        assert_eq!(
            run(&p, &pvc(claim), Some(&pv(volume))).unwrap().path,
            "/mnt/disks/a"
        );
    }

    #[test]
    fn node_selector_terms_are_ored_and_their_requirements_anded() {
        let sel = |terms: serde_json::Value| -> NodeSelector {
            serde_json::from_value(json!({"nodeSelectorTerms": terms})).unwrap()
        };
        let mut n = node();
        n.labels.insert("disk".into(), "ssd".into());
        n.labels.insert("gen".into(), "5".into());
        let yes = [
            json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}]}]),
            json!([{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["hdd"]}, {"key": "gen", "operator": "Gt", "values": ["4"]}]}]),
            json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["vk-node"]}]}]),
            json!([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}, {"key": "gen", "operator": "Lt", "values": ["6"]}]}]),
        ];
        for t in yes {
            assert!(matches_node(&sel(t.clone()), &n), "{t}");
        }
        let no = [
            json!([]),
            json!([{}]),
            json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]}]),
            json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "zone", "operator": "Exists"}]}]),
            json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["x"]}]}]),
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["vk-node"]}]}]),
            json!([{"matchExpressions": [{"key": "disk", "operator": "Bogus"}]}]),
        ];
        for t in no {
            assert!(!matches_node(&sel(t.clone()), &n), "{t}");
        }
    }
}
