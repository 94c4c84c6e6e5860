//! Who is asking and may they: identities from client certificates (CN = user, O = groups) or
//! static bearer tokens, the authorizers of a `--authorization-mode=Node,RBAC` server as far as
//! a kubelet meets them (system:masters may do anything; the Node authorizer's graph rules for
//! secrets, configmaps, leases and service-account tokens; the system:node role for the rest;
//! anonymous may read `/version`), and the NodeRestriction admission checks, with the real
//! server's reasons and messages.
//!
//! Owns: pure allow/deny decisions over the store. Must not mutate anything or do I/O.

use std::collections::BTreeSet;

use serde_json::Value;

use super::store::{meta_str, Res, Store};

/// The authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    pub fn anonymous() -> Identity {
        Identity {
            user: "system:anonymous".to_string(),
            groups: vec!["system:unauthenticated".to_string()],
        }
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }

    /// A bootstrap token's user (`system:bootstrap:<id>` in `system:bootstrappers`).
    pub fn is_bootstrapper(&self) -> bool {
        self.groups.iter().any(|g| g == "system:bootstrappers")
    }

    pub fn is_anonymous(&self) -> bool {
        self.user == "system:anonymous"
    }

    /// `Some("vk-node")` for `system:node:vk-node` in group `system:nodes`.
    pub fn node_name(&self) -> Option<&str> {
        if !self.groups.iter().any(|g| g == "system:nodes") {
            return None;
        }
        self.user
            .strip_prefix("system:node:")
            .filter(|n| !n.is_empty())
    }
}

/// The attributes the authorizers see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub res: Res,
    pub subresource: &'a str,
    pub namespace: Option<&'a str>,
    /// The object name from the path, or from a `metadata.name=` field selector on list/watch.
    pub name: Option<&'a str>,
}

/// An authorizer's "no", with the Node authorizer's reason when it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: Option<String>,
}

fn deny(reason: Option<&str>) -> Result<(), Deny> {
    Err(Deny {
        reason: reason.map(str::to_string),
    })
}

fn no_relationship(node: &str) -> Result<(), Deny> {
    Err(Deny {
        reason: Some(format!(
            "no relationship found between node '{node}' and this object"
        )),
    })
}

/// Pods bound to `node`.
pub fn pods_on_node<'a>(store: &'a Store, node: &'a str) -> impl Iterator<Item = &'a Value> {
    store
        .list(Res::Pods, None)
        .filter(move |p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node))
}

fn strs(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

/// The ConfigMap (`want_secret == false`) or Secret names a pod references: volumes, projected
/// sources, env `valueFrom`, `envFrom` and (secrets) `imagePullSecrets`.
pub fn pod_references(pod: &Value, want_secret: bool) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut add = |v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str) {
            names.insert(n.to_string());
        }
    };
    let spec = pod.get("spec");
    for vol in strs(spec.and_then(|s| s.get("volumes"))) {
        if want_secret {
            add(vol.pointer("/secret/secretName"));
            add(vol.pointer("/azureFile/secretName"));
            for key in [
                "cephfs",
                "cinder",
                "flexVolume",
                "iscsi",
                "rbd",
                "scaleIO",
                "storageos",
                "csi",
            ] {
                add(vol.pointer(&format!("/{key}/secretRef/name")));
                add(vol.pointer(&format!("/{key}/nodePublishSecretRef/name")));
            }
        } else {
            add(vol.pointer("/configMap/name"));
        }
        for src in strs(vol.pointer("/projected/sources")) {
            if want_secret {
                add(src.pointer("/secret/name"));
            } else {
                add(src.pointer("/configMap/name"));
            }
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in strs(spec.and_then(|s| s.get(list))) {
            for env in strs(c.get("env")) {
                if want_secret {
                    add(env.pointer("/valueFrom/secretKeyRef/name"));
                } else {
                    add(env.pointer("/valueFrom/configMapKeyRef/name"));
                }
            }
            for from in strs(c.get("envFrom")) {
                if want_secret {
                    add(from.pointer("/secretRef/name"));
                } else {
                    add(from.pointer("/configMapRef/name"));
                }
            }
        }
    }
    if want_secret {
        for s in strs(spec.and_then(|s| s.get("imagePullSecrets"))) {
            add(s.get("name"));
        }
    }
    names
}

fn node_references(store: &Store, node: &str, ns: &str, name: &str, secret: bool) -> bool {
    pods_on_node(store, node)
        .filter(|p| meta_str(p, "namespace") == ns)
        .any(|p| pod_references(p, secret).contains(name))
}

/// The claims a pod's volumes name: `persistentVolumeClaim.claimName`, and `<pod>-<volume>`
/// for a generic ephemeral volume (the claim the ephemeral-volume controller makes).
pub fn pod_claims(pod: &Value) -> BTreeSet<String> {
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut names = BTreeSet::new();
    for vol in strs(pod.pointer("/spec/volumes")) {
        if let Some(c) = vol
            .pointer("/persistentVolumeClaim/claimName")
            .and_then(Value::as_str)
        {
            names.insert(c.to_string());
        } else if vol.get("ephemeral").is_some() {
            let v = vol.get("name").and_then(Value::as_str).unwrap_or("");
            names.insert(format!("{pod_name}-{v}"));
        }
    }
    names
}

/// The Node authorizer's graph edges pod → PVC → PV: a claim one of the node's pods uses, or
/// the volume bound (`spec.claimRef`) to such a claim.
fn node_uses_claim(store: &Store, node: &str, ns: &str, name: &str) -> bool {
    pods_on_node(store, node)
        .filter(|p| meta_str(p, "namespace") == ns)
        .any(|p| pod_claims(p).contains(name))
}

fn node_uses_volume(store: &Store, node: &str, name: &str) -> bool {
    let Some(pv) = store.get(Res::PersistentVolumes, "", name) else {
        return false;
    };
    let (Some(ns), Some(claim)) = (
        pv.pointer("/spec/claimRef/namespace")
            .and_then(Value::as_str),
        pv.pointer("/spec/claimRef/name").and_then(Value::as_str),
    ) else {
        return false;
    };
    node_uses_claim(store, node, ns, claim)
}

fn node_runs_service_account(store: &Store, node: &str, ns: &str, name: &str) -> bool {
    pods_on_node(store, node)
        .filter(|p| meta_str(p, "namespace") == ns)
        .any(|p| {
            let sa = p
                .pointer("/spec/serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default");
            sa == name
        })
}

/// The union of the authorizers for this identity.
pub fn authorize(store: &Store, who: &Identity, a: &Attributes<'_>) -> Result<(), Deny> {
    if who.is_admin() {
        return Ok(());
    }
    // The system:node-bootstrapper role (kubeadm binds it to system:bootstrappers) and the
    // system:node role alike: create, get, list and watch CertificateSigningRequests.
    let csr_verb = matches!(a.verb, "create" | "get" | "list" | "watch");
    if a.res == Res::Csrs
        && a.subresource.is_empty()
        && csr_verb
        && (who.is_bootstrapper() || who.node_name().is_some())
    {
        return Ok(());
    }
    let Some(node) = who.node_name() else {
        return deny(None);
    };
    let ns = a.namespace.unwrap_or("");
    let read = matches!(a.verb, "get" | "list" | "watch");
    match (a.res, a.subresource) {
        (Res::Pods, "") => match a.verb {
            "get" | "list" | "watch" | "create" | "delete" => Ok(()),
            _ => deny(None),
        },
        (Res::Pods, "status") => match a.verb {
            "get" | "patch" | "update" => Ok(()),
            _ => deny(None),
        },
        (Res::Pods, "eviction") if a.verb == "create" => Ok(()),
        (Res::Pods, _) => deny(None),
        (Res::Nodes, "" | "status") => match a.verb {
            "create" | "get" | "list" | "watch" | "patch" | "update" => Ok(()),
            _ => deny(None),
        },
        (Res::Nodes, _) => deny(None),
        (Res::Leases, "") => {
            if ns != "kube-node-lease" {
                return deny(Some(
                    "can only access leases in the \"kube-node-lease\" system namespace",
                ));
            }
            if a.verb == "create" && a.name.is_none() {
                return Ok(());
            }
            if !matches!(a.verb, "get" | "create" | "update" | "patch" | "delete") {
                return deny(Some(
                    "can only get, create, update, patch, or delete a node lease",
                ));
            }
            if a.name != Some(node) {
                return deny(Some(
                    "can only access node lease with the same name as the requesting node",
                ));
            }
            Ok(())
        }
        (Res::Events, "") => match a.verb {
            "create" | "update" | "patch" => Ok(()),
            _ => deny(None),
        },
        (Res::ConfigMaps | Res::Secrets, "") if read => {
            let Some(name) = a.name else {
                return deny(Some("No Object name found"));
            };
            if node_references(store, node, ns, name, a.res == Res::Secrets) {
                Ok(())
            } else {
                no_relationship(node)
            }
        }
        (Res::PersistentVolumeClaims, "") if a.verb == "get" => match a.name {
            Some(name) if node_uses_claim(store, node, ns, name) => Ok(()),
            _ => no_relationship(node),
        },
        (Res::PersistentVolumes, "") if a.verb == "get" => match a.name {
            Some(name) if node_uses_volume(store, node, name) => Ok(()),
            _ => no_relationship(node),
        },
        // The system:node role: get, list and watch services in every namespace (08z), and
        // RuntimeClasses.
        (Res::Services | Res::RuntimeClasses, "") if read => Ok(()),
        (Res::ServiceAccounts, "token") if a.verb == "create" => {
            let name = a.name.unwrap_or("");
            if node_runs_service_account(store, node, ns, name) {
                Ok(())
            } else {
                no_relationship(node)
            }
        }
        (Res::ServiceAccounts, "") if a.verb == "get" => deny(Some(
            "can only create tokens for individual service accounts",
        )),
        _ => deny(None),
    }
}

/// Node labels a kubelet may set or change (NodeRestriction).
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];

const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// True for labels in the kubernetes.io / k8s.io namespaces that a node may not set.
pub fn forbidden_node_label(key: &str) -> bool {
    let Some((ns, _)) = key.split_once('/') else {
        return false;
    };
    let ns = ns.to_ascii_lowercase();
    let k8s = |n: &str| {
        n == "kubernetes.io"
            || n.ends_with(".kubernetes.io")
            || n == "k8s.io"
            || n.ends_with(".k8s.io")
    };
    if !k8s(&ns) {
        return false;
    }
    if KUBELET_LABELS.contains(&key) {
        return false;
    }
    !KUBELET_LABEL_NAMESPACES
        .iter()
        .any(|allowed| ns == *allowed || ns.ends_with(&format!(".{allowed}")))
}

fn labels(obj: &Value) -> std::collections::BTreeMap<String, Value> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// NodeRestriction on a node's create of its Node.
pub fn node_create_admission(node: &str, obj: &Value) -> Result<(), String> {
    let name = meta_str(obj, "name");
    if name != node {
        return Err(format!(
            "node \"{node}\" is not allowed to modify node \"{name}\""
        ));
    }
    let bad: Vec<String> = labels(obj)
        .keys()
        .filter(|k| forbidden_node_label(k))
        .cloned()
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "node \"{node}\" is not allowed to set the following labels: {}",
            bad.join(", ")
        ));
    }
    Ok(())
}

/// NodeRestriction on a node's update of a Node (main resource or status; `new` is the object
/// as the request would leave it, before the status strategy drops spec changes).
pub fn node_update_admission(
    node: &str,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), String> {
    if name != node {
        return Err(format!(
            "node \"{node}\" is not allowed to modify node \"{name}\""
        ));
    }
    let taints = |o: &Value| o.pointer("/spec/taints").cloned().unwrap_or(Value::Null);
    let norm = |v: Value| match v {
        Value::Array(a) if a.is_empty() => Value::Null,
        v => v,
    };
    if norm(taints(old)) != norm(taints(new)) {
        return Err(format!("node \"{node}\" is not allowed to modify taints"));
    }
    let (lo, ln) = (labels(old), labels(new));
    let modified: BTreeSet<&String> = lo
        .keys()
        .chain(ln.keys())
        .filter(|k| lo.get(*k) != ln.get(*k))
        .collect();
    let bad: Vec<&str> = modified
        .into_iter()
        .filter(|k| forbidden_node_label(k))
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "is not allowed to modify labels: {}",
            bad.join(", ")
        ));
    }
    Ok(())
}

/// NodeRestriction on pod status updates and pod deletes by a node.
pub fn pod_admission(
    node: &str,
    verb: &str,
    subresource: &str,
    old: &Value,
    new: Option<&Value>,
) -> Result<(), String> {
    let bound = old.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node);
    match (verb, subresource) {
        ("delete", "") if !bound => Err(format!(
            "node \"{node}\" can only delete pods with spec.nodeName set to itself"
        )),
        ("update" | "patch", "status") => {
            if !bound {
                return Err(format!(
                    "node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"
                ));
            }
            if let Some(new) = new {
                if labels(old) != labels(new) {
                    return Err(format!(
                        "node \"{node}\" cannot update labels through pod status"
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// NodeRestriction's `admitPodCreate`: a node may create only a mirror pod, bound to itself,
/// with one controller owner reference to its own Node (the right uid, no
/// blockOwnerDeletion), and referencing no service account, secret, config map or claim. The
/// messages are the plugin's (13d0, 13d1; the uid mismatch names them the other way round).
pub fn mirror_pod_admission(store: &Store, node: &str, pod: &Value) -> Result<(), String> {
    if pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_none()
    {
        return Err(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Err(format!(
            "node \"{node}\" can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners: Vec<&Value> = strs(pod.pointer("/metadata/ownerReferences")).collect();
    let owner = match owners.as_slice() {
        [] => {
            return Err(format!(
                "node \"{node}\" can only create pods with an owner reference set to itself"
            ))
        }
        [one] => *one,
        _ => {
            return Err(format!(
                "node \"{node}\" can only create pods with a single owner reference set to itself"
            ))
        }
    };
    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"] != node {
        return Err(format!(
            "node \"{node}\" can only create pods with an owner reference set to itself"
        ));
    }
    if owner["controller"] != true {
        return Err(format!(
            "node \"{node}\" can only create pods with a controller owner reference set to itself"
        ));
    }
    if owner["blockOwnerDeletion"] == true {
        return Err(format!(
            "node \"{node}\" must not set blockOwnerDeletion on an owner reference"
        ));
    }
    let have = store
        .get(Res::Nodes, "", node)
        .map(|n| meta_str(n, "uid").to_string())
        .unwrap_or_default();
    let claimed = owner["uid"].as_str().unwrap_or("");
    if claimed != have {
        return Err(format!(
            "node {node} UID mismatch: expected {claimed} got {have}"
        ));
    }
    if pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(format!(
            "node \"{node}\" can not create pods that reference a service account"
        ));
    }
    if !pod_references(pod, true).is_empty() {
        return Err(format!(
            "node \"{node}\" can not create pods that reference secrets"
        ));
    }
    if !pod_references(pod, false).is_empty() {
        return Err(format!(
            "node \"{node}\" can not create pods that reference configmaps"
        ));
    }
    if strs(pod.pointer("/spec/volumes")).any(|v| v.get("persistentVolumeClaim").is_some()) {
        return Err(format!(
            "node \"{node}\" can not create pods that reference persistentvolumeclaims"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_label_rules() {
        assert!(forbidden_node_label("kubernetes.io/role"));
        assert!(forbidden_node_label("node-role.kubernetes.io/agent"));
        assert!(!forbidden_node_label("kubernetes.io/hostname"));
        assert!(!forbidden_node_label(
            "node.kubernetes.io/exclude-from-external-load-balancers"
        ));
        assert!(!forbidden_node_label("type"));
        assert!(!forbidden_node_label("example.com/x"));
    }

    #[test]
    fn create_message_lists_sorted_labels() {
        let node = json!({"metadata": {"name": "vk-node", "labels": {
            "type": "virtual-kubelet", "node-role.kubernetes.io/agent": "", "kubernetes.io/role": "agent"}}});
        assert_eq!(
            node_create_admission("vk-node", &node).unwrap_err(),
            "node \"vk-node\" is not allowed to set the following labels: kubernetes.io/role, node-role.kubernetes.io/agent"
        );
    }

    #[test]
    fn references_cover_volumes_env_projected_and_pull_secrets() {
        let pod = json!({"spec": {
            "volumes": [{"configMap": {"name": "cm1"}}, {"secret": {"secretName": "s1"}},
                        {"projected": {"sources": [{"configMap": {"name": "kube-root-ca.crt"}}, {"secret": {"name": "s2"}}]}}],
            "containers": [{"env": [{"valueFrom": {"secretKeyRef": {"name": "s3"}}}, {"valueFrom": {"configMapKeyRef": {"name": "cm2"}}}],
                            "envFrom": [{"configMapRef": {"name": "cm3"}}, {"secretRef": {"name": "s4"}}]}],
            "imagePullSecrets": [{"name": "s5"}]}});
        let cms: Vec<String> = pod_references(&pod, false).into_iter().collect();
        assert_eq!(cms, ["cm1", "cm2", "cm3", "kube-root-ca.crt"]);
        let secrets: Vec<String> = pod_references(&pod, true).into_iter().collect();
        assert_eq!(secrets, ["s1", "s2", "s3", "s4", "s5"]);
    }
}
