//! A container's environment, resolved the kubelet's way (`makeEnvironmentVariables`).
//!
//! Owns turning `envFrom` and `env` into name/value pairs: `envFrom` ConfigMaps and Secrets
//! first (with their prefix; keys that are not valid variable names are skipped and reported),
//! then `env` in order: literal values with `$(VAR)` expansion against the variables defined
//! before them, `fieldRef` values a pod knows about itself (name, namespace, uid,
//! labels/annotations, node name, service account, pod and host IPs), `resourceFieldRef` with
//! its divisor, and `configMapKeyRef`/`secretKeyRef` from the objects the caller read
//! ([`references`] lists them). A missing required reference fails with the kubelet's message
//! (the container's CreateContainerConfigError); an optional one is skipped. Then the service
//! environment variables (`getServiceEnvVarMap` + `envvars.FromServices`): the `kubernetes`
//! service of `default` always, and with `enableServiceLinks` (the default) every service of the
//! pod's namespace that has a cluster IP, docker-links style; `$(VAR)` in `env` values can refer
//! to them, and a variable the container defines itself wins. Pure.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, Service};

use super::expand::expand;
use crate::volume::{downward, NodeAllocatable, Objects, VolumeError};

/// An environment variable that cannot be resolved; the message is the pod's waiting message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("configmap {0:?} not found")]
    ConfigMapNotFound(String),
    #[error("secret {0:?} not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKey {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKey {
        key: String,
        namespace: String,
        name: String,
    },
    /// The API server could not be asked.
    #[error("{0}")]
    Api(String),
    #[error("env {name}: unsupported fieldPath {path:?}")]
    FieldPath { name: String, path: String },
    #[error("env {name}: {message}")]
    ResourceField { name: String, message: String },
    /// The kubelet's error for a pod from the API server while its services informer has not
    /// completed a list: no container starts without `KUBERNETES_SERVICE_HOST`.
    #[error("services have not yet been read at least once, cannot construct envvars")]
    ServicesNotSynced,
}

/// What the daemon knows about the cluster's services.
#[derive(Clone, Copy, Debug)]
pub enum Services<'a> {
    /// No API server (standalone mode): no service variables, like a kubelet without one.
    NoApiServer,
    /// The first complete list has not arrived yet.
    NotSynced,
    /// Every service of the cluster.
    Synced(&'a [Arc<Service>]),
}

/// The kubelet's "master services": always injected from the `default` namespace.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// `v1helper.IsServiceIPSet`: a cluster IP other than `None` and "".
fn has_cluster_ip(s: &Service) -> bool {
    s.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty() && ip != "None")
}

/// `makeEnvVariableName`: upper case, `-` to `_`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// `net.JoinHostPort`: IPv6 addresses in brackets.
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The variables of one service (`envvars.FromServices` for one service): `NAME_SERVICE_HOST`,
/// `NAME_SERVICE_PORT` (the first port) and `NAME_SERVICE_PORT_PORTNAME` for named ports, then
/// the docker links: `NAME_PORT` (the first port) and for every port
/// `NAME_PORT_PORT_PROTO{,_PROTO,_PORT,_ADDR}`. A service without ports (which validation
/// forbids for a cluster IP) gives only its host.
fn service_vars(s: &Service, out: &mut BTreeMap<String, String>) {
    let Some(spec) = s.spec.as_ref() else { return };
    let ip = spec.cluster_ip.as_deref().unwrap_or_default();
    let prefix = env_name(s.metadata.name.as_deref().unwrap_or_default());
    out.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
    let ports = spec.ports.as_deref().unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.insert(port_var.clone(), first.port.to_string());
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.insert(format!("{port_var}_{}", env_name(name)), p.port.to_string());
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let protocol = p
            .protocol
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or("TCP");
        let lower = protocol.to_lowercase();
        let url = format!("{lower}://{}", host_port(ip, p.port));
        if i == 0 {
            out.insert(format!("{prefix}_PORT"), url.clone());
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, protocol.to_uppercase());
        out.insert(format!("{pp}_PROTO"), lower);
        out.insert(format!("{pp}_PORT"), p.port.to_string());
        out.insert(format!("{pp}_ADDR"), ip.to_string());
        out.insert(pp, url);
    }
}

/// The service environment of a pod in `namespace` (`getServiceEnvVarMap`): the master services
/// of `default`, and with `enable_service_links` every service of `namespace` with a cluster
/// IP; a service of the pod's own namespace wins over a master service of the same name.
pub fn service_env(
    services: &[Arc<Service>],
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, String> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services
        .iter()
        .map(Arc::as_ref)
        .filter(|s| has_cluster_ip(s))
    {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        let ns = s.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && MASTER_SERVICES.contains(&name) {
            chosen.entry(name).or_insert(s);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, s);
        }
    }
    let mut out = BTreeMap::new();
    for s in chosen.values() {
        service_vars(s, &mut out);
    }
    out
}

/// Whether the pod came from a file rather than the API server (the kubelet's `IsStaticPod`).
/// The service variables for this pod, or the kubelet's error for an API pod before the
/// services were listed once (a static pod gets what is known).
fn services_for(pod: &Pod, services: Services<'_>) -> Result<BTreeMap<String, String>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    match services {
        Services::NoApiServer => Ok(BTreeMap::new()),
        Services::NotSynced if crate::source::is_static(pod) => Ok(BTreeMap::new()),
        Services::NotSynced => Err(EnvError::ServicesNotSynced),
        Services::Synced(list) => Ok(service_env(list, ns, links)),
    }
}

/// What the environment needs besides the pod: the API objects it references and the node's
/// allocatable resources.
#[derive(Clone, Copy, Debug)]
pub struct EnvSources<'a> {
    pub objects: &'a Objects,
    pub node: &'a NodeAllocatable,
    pub services: Services<'a>,
}

/// A resolved environment, and the kubelet's InvalidEnvironmentVariableNames warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    pub env: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// The ConfigMaps and Secrets the container's environment references.
pub fn references(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(c) = &from.config_map_ref {
            cms.insert(c.name.clone());
        }
        if let Some(s) = &from.secret_ref {
            secrets.insert(s.name.clone());
        }
    }
    for e in container.env.iter().flatten() {
        if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &src.secret_key_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

/// Kubernetes' `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
pub fn is_env_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '.' | '_'))
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

fn api_err(e: VolumeError) -> EnvError {
    EnvError::Api(e.to_string())
}

fn field_value(
    pod: &Pod,
    sel: &ObjectFieldSelector,
    name: &str,
    node_name: &str,
    pod_ips: &[String],
    host_ips: &[String],
) -> Result<String, EnvError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let path = sel.field_path.as_str();
    let from_map = |map: Option<&std::collections::BTreeMap<String, String>>, key: &str| {
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| node_name.to_string()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" => pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => pod_ips.join(","),
        "status.hostIP" => host_ips.first().cloned().unwrap_or_default(),
        "status.hostIPs" => host_ips.join(","),
        p => {
            if let Some(key) = p
                .strip_prefix("metadata.labels['")
                .and_then(|k| k.strip_suffix("']"))
            {
                from_map(meta.labels.as_ref(), key)
            } else if let Some(key) = p
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
            {
                from_map(meta.annotations.as_ref(), key)
            } else {
                return Err(EnvError::FieldPath {
                    name: name.to_string(),
                    path: p.to_string(),
                });
            }
        }
    })
}

/// Adds or replaces a variable, keeping first-definition order.
fn set(out: &mut Vec<(String, String)>, name: String, value: String) {
    match out.iter_mut().find(|(k, _)| *k == name) {
        Some(slot) => slot.1 = value,
        None => out.push((name, value)),
    }
}

/// The container's environment, in order.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    node_name: &str,
    pod_ips: &[String],
    host_ips: &[String],
    sources: &EnvSources<'_>,
) -> Result<Resolved, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let service_env = services_for(pod, sources.services)?;
    let objects = sources.objects;
    let mut out = Resolved::default();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (what, name, data): (&str, &str, Vec<(String, String)>) =
            if let Some(r) = &from.config_map_ref {
                match objects.configmap(&r.name).map_err(api_err)? {
                    Some(cm) => (
                        "configMap",
                        &r.name,
                        crate::volume::configmap::contents(cm)
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                            .collect(),
                    ),
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &from.secret_ref {
                match objects.secret(&r.name).map_err(api_err)? {
                    Some(s) => (
                        "secret",
                        &r.name,
                        s.data
                            .iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                            .collect(),
                    ),
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(EnvError::SecretNotFound(r.name.clone())),
                }
            } else {
                continue;
            };
        let mut invalid = Vec::new();
        for (k, v) in data {
            let k = format!("{prefix}{k}");
            if !is_env_var_name(&k) {
                invalid.push(k);
                continue;
            }
            set(&mut out.env, k, v);
        }
        if !invalid.is_empty() {
            invalid.sort();
            out.warnings.push(format!(
                "Keys [{}] from the EnvFrom {what} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for e in container.env.iter().flatten() {
        let value = match &e.value_from {
            // `MappingFuncFor(tmpEnv, serviceEnv)`: the container's own variables first.
            None => expand(e.value.as_deref().unwrap_or(""), |name| {
                out.env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
                    .or_else(|| service_env.get(name).map(String::as_str))
            }),
            Some(src) => {
                if let Some(f) = &src.field_ref {
                    field_value(pod, f, &e.name, node_name, pod_ips, host_ips)?
                } else if let Some(r) = &src.resource_field_ref {
                    let c = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                        Some(n) if n != container.name => pod
                            .spec
                            .iter()
                            .flat_map(|s| {
                                s.containers
                                    .iter()
                                    .chain(s.init_containers.iter().flatten())
                            })
                            .find(|c| c.name == n)
                            .ok_or_else(|| EnvError::ResourceField {
                                name: e.name.clone(),
                                message: format!("container {n:?} not found in the pod"),
                            })?,
                        _ => container,
                    };
                    downward::resource_value(
                        c,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        sources.node,
                    )
                    .map_err(|message| EnvError::ResourceField {
                        name: e.name.clone(),
                        message,
                    })?
                } else if let Some(r) = &src.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match objects.configmap(&r.name).map_err(api_err)? {
                        None if optional => continue,
                        None => return Err(EnvError::ConfigMapNotFound(r.name.clone())),
                        Some(cm) => match crate::volume::configmap::contents(cm).remove(&r.key) {
                            Some(v) => String::from_utf8_lossy(&v).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::ConfigMapKey {
                                    key: r.key.clone(),
                                    namespace: ns.to_string(),
                                    name: r.name.clone(),
                                })
                            }
                        },
                    }
                } else if let Some(r) = &src.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    match objects.secret(&r.name).map_err(api_err)? {
                        None if optional => continue,
                        None => return Err(EnvError::SecretNotFound(r.name.clone())),
                        Some(s) => match s.data.as_ref().and_then(|d| d.get(&r.key)) {
                            Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                            None if optional => continue,
                            None => {
                                return Err(EnvError::SecretKey {
                                    key: r.key.clone(),
                                    namespace: ns.to_string(),
                                    name: r.name.clone(),
                                })
                            }
                        },
                    }
                } else {
                    String::new()
                }
            }
        };
        out.env.retain(|(k, _)| *k != e.name);
        out.env.push((e.name.clone(), value));
    }
    for (k, v) in service_env {
        if !out.env.iter().any(|(n, _)| *n == k) {
            out.env.push((k, v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Fetched;

    static NO_OBJECTS: std::sync::LazyLock<Objects> = std::sync::LazyLock::new(Objects::default);
    const NODE: NodeAllocatable = NodeAllocatable {
        milli_cpu: 2000,
        memory: 4 << 30,
        ephemeral_storage: 10 << 30,
    };

    fn none() -> EnvSources<'static> {
        EnvSources {
            objects: &NO_OBJECTS,
            node: &NODE,
            services: Services::NoApiServer,
        }
    }

    fn pod(env: serde_json::Value) -> (Pod, Container) {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-a", "serviceAccountName": "sa",
                     "containers": [{"name": "c", "image": "busybox", "env": env}]}
        }))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn values_expand_earlier_variables_and_fields_resolve() {
        let (p, c) = pod(serde_json::json!([
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-b-$$(A)-$(MISSING)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIPs"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        ]));
        let env = resolve(
            &p,
            &c,
            "node-a",
            &["10.88.0.9".into()],
            &["192.0.2.1".into(), "fd00::1".into()],
            &none(),
        )
        .unwrap()
        .env;
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("B"), Some("a-b-$(A)-$(MISSING)"));
        assert_eq!(get("NAME"), Some("web"));
        assert_eq!(get("NS"), Some("ns"));
        assert_eq!(get("NODE"), Some("node-a"));
        assert_eq!(get("IP"), Some("10.88.0.9"));
        assert_eq!(get("HOST"), Some("192.0.2.1,fd00::1"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("SA"), Some("sa"));
    }

    #[test]
    fn references_without_an_api_server_fail_unless_optional() {
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}
        ]));
        assert_eq!(
            resolve(&p, &c, "n", &[], &[], &none())
                .unwrap_err()
                .to_string(),
            "configmap \"cfg\" not found"
        );
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": true}}}
        ]));
        assert_eq!(resolve(&p, &c, "n", &[], &[], &none()).unwrap().env, vec![]);
        let (p, c) = pod(serde_json::json!([
            {"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}
        ]));
        assert!(resolve(&p, &c, "n", &[], &[], &none())
            .unwrap_err()
            .to_string()
            .contains("spec.bogus"));
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.configmaps.insert(
            "cfg".into(),
            Fetched::Found(
                serde_json::from_value(serde_json::json!({
                    "data": {"MODE": "fast", "1bad": "x", "LEVEL": "3"}
                }))
                .unwrap(),
            ),
        );
        o.secrets.insert(
            "sec".into(),
            Fetched::Found(
                serde_json::from_value(serde_json::json!({"data": {"PASS": "c2VjcmV0"}})).unwrap(),
            ),
        );
        o.configmaps.insert("gone".into(), Fetched::NotFound);
        o
    }

    #[test]
    fn env_from_with_prefix_key_refs_and_resources_resolve_with_invalid_keys_reported() {
        let (mut p, mut c) = pod(serde_json::json!([
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PASS"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
            {"name": "OPT_KEY", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope", "optional": true}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "BOTH", "value": "$(CFG_MODE)/$(FROM_SECRET)"}
        ]));
        c.env_from = Some(
            serde_json::from_value(serde_json::json!([
                {"prefix": "CFG_", "configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "sec"}},
                {"configMapRef": {"name": "gone", "optional": true}}
            ]))
            .unwrap(),
        );
        c.resources = Some(
            serde_json::from_value(serde_json::json!({"limits": {"memory": "64Mi"}})).unwrap(),
        );
        p.spec.as_mut().unwrap().containers[0] = c.clone();
        let objects = objects();
        let r = resolve(
            &p,
            &c,
            "n",
            &[],
            &[],
            &EnvSources {
                objects: &objects,
                node: &NODE,
                services: Services::NoApiServer,
            },
        )
        .unwrap();
        let get = |k: &str| r.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("fast"));
        assert_eq!(get("CFG_LEVEL"), Some("3"));
        assert_eq!(get("PASS"), Some("secret"));
        assert_eq!(get("FROM_CM"), Some("fast"));
        assert_eq!(get("FROM_SECRET"), Some("secret"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("OPT_KEY"), None);
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(
            get("CPU"),
            Some("2000"),
            "no cpu limit: the node's allocatable"
        );
        assert_eq!(get("BOTH"), Some("fast/secret"));
        // CFG_1bad is a valid name with the prefix; without one it would not be.
        assert_eq!(get("CFG_1bad"), Some("x"));
        assert!(r.warnings.is_empty());

        c.env_from = Some(
            serde_json::from_value(serde_json::json!([{"configMapRef": {"name": "cfg"}}])).unwrap(),
        );
        c.env = None;
        let r = resolve(
            &p,
            &c,
            "n",
            &[],
            &[],
            &EnvSources {
                objects: &objects,
                node: &NODE,
                services: Services::NoApiServer,
            },
        )
        .unwrap();
        assert_eq!(
            r.warnings,
            ["Keys [1bad] from the EnvFrom configMap ns/cfg were skipped since they are considered invalid environment variable names."]
        );
    }

    #[test]
    fn missing_required_keys_and_objects_give_the_kubelets_messages() {
        let objects = objects();
        let src = EnvSources {
            objects: &objects,
            node: &NODE,
            services: Services::NoApiServer,
        };
        let msg = |env: serde_json::Value| {
            let (p, c) = pod(env);
            resolve(&p, &c, "n", &[], &[], &src)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            msg(
                serde_json::json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nope"}}}])
            ),
            "couldn't find key nope in ConfigMap ns/cfg"
        );
        assert_eq!(
            msg(
                serde_json::json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nope"}}}])
            ),
            "couldn't find key nope in Secret ns/sec"
        );
        assert_eq!(
            msg(
                serde_json::json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}])
            ),
            "secret \"other\" not found"
        );
    }

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Arc<Service> {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .map(Arc::new)
        .unwrap()
    }

    fn cluster() -> Vec<Arc<Service>> {
        vec![
            service(
                "default",
                "kubernetes",
                "10.96.0.1",
                serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]),
            ),
            service(
                "default",
                "other",
                "10.96.0.7",
                serde_json::json!([{"port": 80}]),
            ),
            service(
                "ns",
                "my-db",
                "10.96.3.4",
                serde_json::json!([
                    {"name": "sql", "port": 5432},
                    {"name": "metrics-udp", "port": 9125, "protocol": "UDP"}
                ]),
            ),
            service("ns", "headless", "None", serde_json::json!([{"port": 80}])),
            service("ns", "external", "", serde_json::json!([])),
            service("ns", "v6", "fd00::10", serde_json::json!([{"port": 8080}])),
            service(
                "elsewhere",
                "far",
                "10.96.9.9",
                serde_json::json!([{"port": 1}]),
            ),
        ]
    }

    #[test]
    fn service_env_is_the_kubelets_docker_links_for_the_namespace_and_the_master_service() {
        let env = service_env(&cluster(), "ns", true);
        let want: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
            ("MY_DB_SERVICE_HOST", "10.96.3.4"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_SQL", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS_UDP", "9125"),
            ("MY_DB_PORT", "tcp://10.96.3.4:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://10.96.3.4:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "10.96.3.4"),
            ("MY_DB_PORT_9125_UDP", "udp://10.96.3.4:9125"),
            ("MY_DB_PORT_9125_UDP_PROTO", "udp"),
            ("MY_DB_PORT_9125_UDP_PORT", "9125"),
            ("MY_DB_PORT_9125_UDP_ADDR", "10.96.3.4"),
            ("V6_SERVICE_HOST", "fd00::10"),
            ("V6_SERVICE_PORT", "8080"),
            ("V6_PORT", "tcp://[fd00::10]:8080"),
            ("V6_PORT_8080_TCP", "tcp://[fd00::10]:8080"),
            ("V6_PORT_8080_TCP_PROTO", "tcp"),
            ("V6_PORT_8080_TCP_PORT", "8080"),
            ("V6_PORT_8080_TCP_ADDR", "fd00::10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, want);
        // Without service links only the master service; `default` is a namespace like any
        // other when the pod is in it.
        let env = service_env(&cluster(), "ns", false);
        assert!(env.keys().all(|k| k.starts_with("KUBERNETES_")), "{env:?}");
        assert_eq!(env.len(), 8);
        let env = service_env(&cluster(), "default", true);
        assert_eq!(
            env.get("OTHER_SERVICE_HOST").map(String::as_str),
            Some("10.96.0.7")
        );
        assert!(!env.contains_key("FAR_SERVICE_HOST"));
        // A `kubernetes` service of the pod's own namespace wins over the master one.
        let mut list = cluster();
        list.push(service(
            "ns",
            "kubernetes",
            "10.96.5.5",
            serde_json::json!([{"port": 8443}]),
        ));
        let env = service_env(&list, "ns", true);
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "10.96.5.5");
        assert_eq!(env["KUBERNETES_PORT"], "tcp://10.96.5.5:8443");
        assert!(!env.contains_key("KUBERNETES_SERVICE_PORT_HTTPS"));
    }

    #[test]
    fn service_variables_come_last_lose_to_the_containers_own_and_expand_in_values() {
        let (p, c) = pod(serde_json::json!([
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "MY_DB_SERVICE_HOST", "value": "mine"},
            {"name": "DB", "value": "$(MY_DB_SERVICE_HOST)"},
        ]));
        let list = cluster();
        let src = EnvSources {
            objects: &NO_OBJECTS,
            node: &NODE,
            services: Services::Synced(&list),
        };
        let env = resolve(&p, &c, "n", &[], &[], &src).unwrap().env;
        assert_eq!(
            &env[0],
            &("API".to_string(), "https://10.96.0.1:443".to_string())
        );
        assert_eq!(
            &env[1],
            &("MY_DB_SERVICE_HOST".to_string(), "mine".to_string())
        );
        assert_eq!(&env[2], &("DB".to_string(), "mine".to_string()));
        assert_eq!(
            env.iter()
                .filter(|(k, _)| k == "MY_DB_SERVICE_HOST")
                .count(),
            1
        );
        assert!(env
            .iter()
            .any(|(k, v)| k == "MY_DB_PORT" && v == "tcp://10.96.3.4:5432"));
        assert_eq!(env.len(), 3 + 28 - 1);
    }

    #[test]
    fn an_api_pod_waits_for_the_first_service_list_a_static_pod_does_not() {
        let (mut p, c) = pod(serde_json::json!([]));
        let src = EnvSources {
            objects: &NO_OBJECTS,
            node: &NODE,
            services: Services::NotSynced,
        };
        assert_eq!(
            resolve(&p, &c, "n", &[], &[], &src)
                .unwrap_err()
                .to_string(),
            "services have not yet been read at least once, cannot construct envvars"
        );
        p.metadata.annotations =
            Some([(crate::source::CONFIG_SOURCE.to_string(), "file".to_string())].into());
        assert_eq!(resolve(&p, &c, "n", &[], &[], &src).unwrap().env, vec![]);
        // Without an API server there are no service variables at all.
        let (p, c) = pod(serde_json::json!([]));
        assert_eq!(resolve(&p, &c, "n", &[], &[], &none()).unwrap().env, vec![]);
    }
}
