//! Request paths and verbs of the fake API server, parsed into data: which endpoint, which
//! resource, namespace, name and subresource, which verb, and the list/watch options
//! (resourceVersion, selectors, paging, timeouts).
//!
//! Owns: pure parsing. Must not touch the store.

use serde_json::Value;

use super::status::{bad_request, Status};
use super::store::Res;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourcePath {
    pub res: Res,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Version,
    Health,
    ApiVersions,
    TokenReview,
    SubjectAccessReview,
    Resource(ResourcePath),
}

fn res_for(group: &str, plural: &str) -> Option<Res> {
    Some(match (group, plural) {
        ("", "pods") => Res::Pods,
        ("", "nodes") => Res::Nodes,
        ("", "events") => Res::Events,
        ("", "configmaps") => Res::ConfigMaps,
        ("", "secrets") => Res::Secrets,
        ("", "namespaces") => Res::Namespaces,
        ("", "serviceaccounts") => Res::ServiceAccounts,
        ("", "services") => Res::Services,
        ("", "persistentvolumeclaims") => Res::PersistentVolumeClaims,
        ("", "persistentvolumes") => Res::PersistentVolumes,
        ("coordination.k8s.io", "leases") => Res::Leases,
        ("events.k8s.io", "events") => Res::EventsV1,
        ("certificates.k8s.io", "certificatesigningrequests") => Res::Csrs,
        ("node.k8s.io", "runtimeclasses") => Res::RuntimeClasses,
        _ => return None,
    })
}

fn decode(seg: &str) -> String {
    percent_encoding::percent_decode_str(seg)
        .decode_utf8_lossy()
        .into_owned()
}

/// The endpoint a path names, or `None` for 404.
pub fn parse_route(path: &str) -> Option<Route> {
    match path.trim_end_matches('/') {
        "/version" => return Some(Route::Version),
        "/healthz" | "/livez" | "/readyz" => return Some(Route::Health),
        "/api" => return Some(Route::ApiVersions),
        "/apis/authentication.k8s.io/v1/tokenreviews" => return Some(Route::TokenReview),
        "/apis/authorization.k8s.io/v1/subjectaccessreviews" => {
            return Some(Route::SubjectAccessReview)
        }
        _ => {}
    }
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let (group, rest) = match segs.as_slice() {
        [api, v1, rest @ ..] if api == "api" && v1 == "v1" => ("", rest),
        [apis, group, v1, rest @ ..] if apis == "apis" && v1 == "v1" => (group.as_str(), rest),
        _ => return None,
    };
    if rest.iter().any(String::is_empty) {
        return None;
    }
    let (namespace, rest) = match rest {
        [ns_kw, ns, plural, tail @ ..]
            if ns_kw == "namespaces" && res_for(group, plural).is_some_and(Res::namespaced) =>
        {
            (
                Some(ns.clone()),
                std::iter::once(plural)
                    .chain(tail)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    let res = res_for(group, rest.first()?)?;
    if namespace.is_none() && res.namespaced() && rest.len() > 1 {
        // A namespaced resource needs its namespace for anything but the cluster-wide list.
        return None;
    }
    if rest.len() > 3 {
        return None;
    }
    Some(Route::Resource(ResourcePath {
        res,
        namespace,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned().unwrap_or_default(),
    }))
}

/// The API verb of a request on a resource path; `None` when the method makes no sense there.
pub fn verb(method: &str, path: &ResourcePath, watch: bool) -> Option<&'static str> {
    let named = path.name.is_some();
    Some(match (method, named) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if watch => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", false) => "create",
        ("POST", true) if !path.subresource.is_empty() => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => return None,
    })
}

/// One `key op value` term of a field or label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
}

fn parse_terms(s: &str, labels: bool) -> Result<Vec<Term>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((k, v)) = part.split_once("!=") {
            out.push(Term::NotEq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = part.split_once("==") {
            out.push(Term::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if let Some((k, v)) = part.split_once('=') {
            out.push(Term::Eq(k.trim().to_string(), v.trim().to_string()));
        } else if labels {
            match part.strip_prefix('!') {
                Some(k) => out.push(Term::NotExists(k.trim().to_string())),
                None => out.push(Term::Exists(part.to_string())),
            }
        } else {
            return Err(format!(
                "invalid selector: '{s}'; can't understand '{part}'"
            ));
        }
    }
    Ok(out)
}

/// Field and label selectors of a list or watch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    pub fields: Vec<Term>,
    pub labels: Vec<Term>,
}

fn field_supported(res: Res, field: &str) -> bool {
    matches!(field, "metadata.name" | "metadata.namespace")
        || (res == Res::Pods
            && matches!(
                field,
                "spec.nodeName"
                    | "spec.restartPolicy"
                    | "spec.schedulerName"
                    | "spec.serviceAccountName"
                    | "status.phase"
                    | "status.podIP"
            ))
        || (res == Res::Secrets && field == "type")
        || (matches!(res, Res::Events)
            && (field.starts_with("involvedObject.")
                || matches!(field, "reason" | "source" | "type")))
}

impl Selector {
    pub fn parse(res: Res, field: Option<&str>, label: Option<&str>) -> Result<Selector, Status> {
        let fields = parse_terms(field.unwrap_or(""), false).map_err(bad_request)?;
        for t in &fields {
            let k = match t {
                Term::Eq(k, _) | Term::NotEq(k, _) | Term::Exists(k) | Term::NotExists(k) => k,
            };
            if !field_supported(res, k) {
                return Err(bad_request(format!("field label not supported: {k}")));
            }
        }
        let labels = parse_terms(label.unwrap_or(""), true).map_err(bad_request)?;
        Ok(Selector { fields, labels })
    }

    /// The object name a `metadata.name=` field selector pins, if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.fields.iter().find_map(|t| match t {
            Term::Eq(k, v) if k == "metadata.name" => Some(v.as_str()),
            _ => None,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let field = |k: &str| -> String {
            let ptr = format!("/{}", k.replace('.', "/"));
            match obj.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        };
        let label = |k: &str| -> Option<String> {
            obj.pointer("/metadata/labels")
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        self.fields.iter().all(|t| match t {
            Term::Eq(k, v) => field(k) == *v,
            Term::NotEq(k, v) => field(k) != *v,
            Term::Exists(_) | Term::NotExists(_) => true,
        }) && self.labels.iter().all(|t| match t {
            Term::Eq(k, v) => label(k).as_deref() == Some(v.as_str()),
            Term::NotEq(k, v) => label(k).as_deref() != Some(v.as_str()),
            Term::Exists(k) => label(k).is_some(),
            Term::NotExists(k) => label(k).is_none(),
        })
    }
}

/// True for `watch=true` / `watch=1`.
pub fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1" | "True"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(res: Res, ns: Option<&str>, name: Option<&str>, sub: &str) -> Route {
        Route::Resource(ResourcePath {
            res,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.to_string(),
        })
    }

    #[test]
    fn routes() {
        assert_eq!(
            parse_route("/api/v1/pods"),
            Some(rp(Res::Pods, None, None, ""))
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/fixtures/pods/p1/status"),
            Some(rp(Res::Pods, Some("fixtures"), Some("p1"), "status"))
        );
        assert_eq!(
            parse_route("/api/v1/nodes/vk-node/status"),
            Some(rp(Res::Nodes, None, Some("vk-node"), "status"))
        );
        assert_eq!(
            parse_route("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk-node"),
            Some(rp(
                Res::Leases,
                Some("kube-node-lease"),
                Some("vk-node"),
                ""
            ))
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/fixtures"),
            Some(rp(Res::Namespaces, None, Some("fixtures"), ""))
        );
        assert_eq!(
            parse_route("/api/v1/namespaces/f/serviceaccounts/default/token"),
            Some(rp(
                Res::ServiceAccounts,
                Some("f"),
                Some("default"),
                "token"
            ))
        );
        assert_eq!(
            parse_route("/api/v1/services"),
            Some(rp(Res::Services, None, None, ""))
        );
        assert_eq!(parse_route("/api/v1/pods/p1"), None);
        assert_eq!(parse_route("/api/v1/widgets"), None);
        assert_eq!(parse_route("/version"), Some(Route::Version));
    }

    #[test]
    fn selectors() {
        let s = Selector::parse(
            Res::Pods,
            Some("spec.nodeName=vk-node,metadata.name!=x"),
            Some("app=a,!gone"),
        )
        .unwrap();
        let pod = serde_json::json!({"metadata": {"name": "p", "labels": {"app": "a"}}, "spec": {"nodeName": "vk-node"}});
        assert!(s.matches(&pod));
        let other = serde_json::json!({"metadata": {"name": "x", "labels": {"app": "a"}}, "spec": {"nodeName": "vk-node"}});
        assert!(!s.matches(&other));
        assert_eq!(
            Selector::parse(Res::Secrets, Some("spec.nodeName=a"), None)
                .unwrap_err()
                .message,
            "field label not supported: spec.nodeName"
        );
        let pinned =
            Selector::parse(Res::Secrets, Some("metadata.name=secret-used"), None).unwrap();
        assert_eq!(pinned.pinned_name(), Some("secret-used"));
    }
}
