//! The API semantics of the fake: for each endpoint and verb, authorization, admission
//! (NodeRestriction, defaulting), validation, optimistic concurrency, graceful pod deletion,
//! lists with paging, and the plan of a watch. Every function here works on the locked state
//! and returns a `Reply` value; `mod.rs` sends it and `watch.rs` streams watches.
//!
//! Owns: what the real kube-apiserver v1.28 would answer, as recorded in the fixtures. Must not
//! do socket I/O.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use vk_cri::httpd::Request;

use super::authz::{self, Attributes, Identity};
use super::defaults;
use super::patch;
use super::routes::{self, ResourcePath, Route, Selector};
use super::status::{self, Denied, Status};
use super::store::{self, meta_str, set_meta, EventType, Res, Store};
use super::{FakeConfig, Inner, Shared};

/// A watch to stream: where to start and what to send.
#[derive(Debug, Clone)]
pub struct WatchPlan {
    pub res: Res,
    pub namespace: Option<String>,
    pub selector: Selector,
    /// `Err`: the ERROR event to send before closing (too old resource version).
    pub start: Result<WatchStart, Status>,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub epoch: u64,
}

#[derive(Debug, Clone)]
pub struct WatchStart {
    /// Synthetic ADDED events for the current state (watch without RV or with RV "0").
    pub initial: Vec<Value>,
    /// Send changes after this RV.
    pub from_rv: u64,
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Json {
        status: u16,
        body: String,
        headers: Vec<(String, String)>,
    },
    Text {
        status: u16,
        body: String,
    },
    Watch(Box<WatchPlan>),
}

impl Reply {
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json { status, .. } | Reply::Text { status, .. } => *status,
            Reply::Watch(_) => 200,
        }
    }
}

pub fn obj_reply(code: u16, v: &Value) -> Reply {
    Reply::Json {
        status: code,
        body: store::to_json(v),
        headers: Vec::new(),
    }
}

pub fn status_reply(s: &Status) -> Reply {
    let mut headers = Vec::new();
    if let Some(secs) = s.details.as_ref().and_then(|d| d.retry_after_seconds) {
        headers.push(("Retry-After".to_string(), secs.to_string()));
    }
    Reply::Json {
        status: s.http_code(),
        body: s.to_json(),
        headers,
    }
}

type ApiResult<T> = Result<T, Status>;

fn version_body() -> Value {
    json!({
        "major": "1", "minor": "28", "gitVersion": "v1.28.7",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-11-22T12:12:02Z", "goVersion": "go1.23.5", "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn nonresource_forbidden(who: &Identity, path: &str) -> Status {
    Status::failure(
        403,
        "Forbidden",
        format!(
            "forbidden: User \"{}\" cannot get path \"{path}\"",
            who.user
        ),
        Some(status::Details::default()),
    )
}

fn parse_body(req: &Request) -> ApiResult<Value> {
    serde_json::from_slice(&req.body).map_err(|e| {
        status::bad_request(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml: {e}"
        ))
    })
}

/// Serves one request.
pub fn handle(shared: &Shared, who: &Identity, req: &Request) -> Reply {
    let Some(route) = routes::parse_route(&req.path) else {
        return status_reply(&status::path_not_found());
    };
    let result = match route {
        Route::Version => Ok(Reply::Json {
            status: 200,
            body: serde_json::to_string(&version_body()).unwrap_or_default(),
            headers: Vec::new(),
        }),
        Route::Health => Ok(Reply::Text {
            status: 200,
            body: "ok".to_string(),
        }),
        Route::ApiVersions if who.is_anonymous() => Err(nonresource_forbidden(who, "/api")),
        Route::ApiVersions => Ok(Reply::Json {
            status: 200,
            body: json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.config_addr()}]}).to_string(),
            headers: Vec::new(),
        }),
        Route::TokenReview => token_review(shared, who, req),
        Route::SubjectAccessReview => subject_access_review(shared, who, req),
        Route::Resource(path) => resource(shared, who, req, &path),
    };
    result.unwrap_or_else(|s| status_reply(&s))
}

fn review_allowed(who: &Identity) -> bool {
    who.is_admin() || who.node_name().is_some()
}

fn review_forbidden(who: &Identity, resource: &str, group: &str) -> Status {
    Status::failure(
        403,
        "Forbidden",
        format!(
            "{resource}.{group} is forbidden: User \"{}\" cannot create resource \"{resource}\" in API group \"{group}\" at the cluster scope",
            who.user
        ),
        Some(status::Details {
            group: group.to_string(),
            kind: resource.to_string(),
            ..status::Details::default()
        }),
    )
}

fn token_review(shared: &Shared, who: &Identity, req: &Request) -> ApiResult<Reply> {
    if req.method != "POST" {
        return Err(status::method_not_allowed());
    }
    if !review_allowed(who) {
        return Err(review_forbidden(
            who,
            "tokenreviews",
            "authentication.k8s.io",
        ));
    }
    let body = parse_body(req)?;
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    let audiences = body
        .pointer("/spec/audiences")
        .cloned()
        .unwrap_or(json!([]));
    let inner = shared.lock();
    let status = match inner.token_reviews.get(token) {
        Some(id) => json!({
            "authenticated": true,
            "user": {"username": id.user, "groups": id.groups},
            "audiences": if audiences.as_array().is_some_and(|a| !a.is_empty()) { audiences.clone() } else { json!(["https://kubernetes.default.svc.cluster.local"]) },
        }),
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    };
    let out = json!({
        "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": body.get("spec").cloned().unwrap_or(json!({})),
        "status": status,
    });
    Ok(obj_reply(201, &out))
}

fn subject_access_review(shared: &Shared, who: &Identity, req: &Request) -> ApiResult<Reply> {
    if req.method != "POST" {
        return Err(status::method_not_allowed());
    }
    if !review_allowed(who) {
        return Err(review_forbidden(
            who,
            "subjectaccessreviews",
            "authorization.k8s.io",
        ));
    }
    let body = parse_body(req)?;
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    let policy = shared.lock().sar_policy.clone();
    let (allowed, reason) = policy(&spec);
    let mut st = Map::new();
    st.insert("allowed".into(), Value::Bool(allowed));
    if !reason.is_empty() {
        st.insert("reason".into(), Value::String(reason));
    }
    let out = json!({
        "kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": Value::Object(st),
    });
    Ok(obj_reply(201, &out))
}

fn resource(
    shared: &Shared,
    who: &Identity,
    req: &Request,
    path: &ResourcePath,
) -> ApiResult<Reply> {
    let watch = routes::truthy(req.query_param("watch"));
    let Some(verb) = routes::verb(&req.method, path, watch) else {
        return Err(status::method_not_allowed());
    };
    let selector = Selector::parse(
        path.res,
        req.query_param("fieldSelector"),
        req.query_param("labelSelector"),
    )?;
    let ns = path.namespace.as_deref();
    let authz_name = path
        .name
        .as_deref()
        .or(if matches!(verb, "list" | "watch") {
            selector.pinned_name()
        } else {
            None
        });
    let mut inner = shared.lock();
    let attrs = Attributes {
        verb,
        res: path.res,
        subresource: &path.subresource,
        namespace: ns,
        name: authz_name,
    };
    if let Err(d) = authz::authorize(&inner.store, who, &attrs) {
        return Err(status::forbidden_authz(&Denied {
            user: who.user.clone(),
            verb: verb.to_string(),
            res: path.res,
            subresource: path.subresource.clone(),
            namespace: ns.map(str::to_string),
            name: authz_name.map(str::to_string),
            reason: d.reason,
        }));
    }
    let name = path.name.as_deref().unwrap_or("");
    match (verb, path.res, path.subresource.as_str()) {
        ("create", Res::ServiceAccounts, "token") => {
            let body = parse_body(req)?;
            let max = shared.config.max_token_expiration;
            token_request(&inner, who, ns.unwrap_or(""), name, &body, max)
        }
        (_, Res::Pods, "log" | "exec" | "attach" | "portforward" | "proxy")
        | (_, Res::Nodes, "proxy") => Err(Status::failure(
            501,
            "NotImplemented",
            "the fake API server does not proxy to kubelets".to_string(),
            None,
        )),
        (_, res, sub)
            if !(matches!(sub, "" | "status") || (res == Res::Csrs && sub == "approval")) =>
        {
            Err(status::path_not_found())
        }
        ("get", ..) => {
            get(&inner.store, path.res, ns.unwrap_or(""), name).map(|v| obj_reply(200, &v))
        }
        ("list", ..) => {
            let rv = parse_rv(req.query_param("resourceVersion"))?;
            let exact = req.query_param("resourceVersionMatch") == Some("Exact");
            if let (Some(rv), false) = (rv, exact) {
                if rv > inner.store.rv {
                    let deadline = Instant::now() + shared.config.too_large_rv_wait;
                    while inner.store.rv < rv && Instant::now() < deadline {
                        inner = shared.wait(inner, deadline - Instant::now());
                    }
                    if inner.store.rv < rv {
                        return Err(status::too_large_rv(rv, inner.store.rv));
                    }
                }
            }
            list(&inner.store, req, path, &selector)
        }
        ("watch", ..) => watch_plan(&inner, req, path, selector).map(|p| Reply::Watch(Box::new(p))),
        ("create", ..) => {
            let body = parse_body(req)?;
            let created = create(
                &mut inner,
                &shared.config,
                who,
                path.res,
                ns.unwrap_or(""),
                body,
            )?;
            shared.notify();
            Ok(obj_reply(201, &created))
        }
        ("update", _, sub) => {
            let body = parse_body(req)?;
            let out = update(
                &mut inner.store,
                who,
                path.res,
                ns.unwrap_or(""),
                name,
                sub,
                body,
                true,
            )?;
            shared.notify();
            Ok(obj_reply(200, &out))
        }
        ("patch", _, sub) => {
            let out = patch_object(
                &mut inner.store,
                who,
                req,
                path.res,
                ns.unwrap_or(""),
                name,
                sub,
            )?;
            shared.notify();
            Ok(obj_reply(200, &out))
        }
        ("delete", ..) => {
            let options = if req.body.is_empty() {
                json!({})
            } else {
                parse_body(req)?
            };
            let grace = req
                .query_param("gracePeriodSeconds")
                .and_then(|g| g.parse::<i64>().ok())
                .or_else(|| options.get("gracePeriodSeconds").and_then(Value::as_i64));
            let out = delete(
                &mut inner.store,
                who,
                path.res,
                ns.unwrap_or(""),
                name,
                grace,
                &options,
            )?;
            shared.notify();
            Ok(out)
        }
        _ => Err(status::method_not_allowed()),
    }
}

fn parse_rv(v: Option<&str>) -> ApiResult<Option<u64>> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s.parse::<u64>().map(Some).map_err(|_| {
            status::bad_request(format!(
                "resourceVersion: Invalid value: \"{s}\": must be a valid resourceVersion"
            ))
        }),
    }
}

pub fn get(store: &Store, res: Res, ns: &str, name: &str) -> ApiResult<Value> {
    store
        .get(res, ns, name)
        .cloned()
        .ok_or_else(|| status::not_found(res, name))
}

fn list_kind(res: Res) -> String {
    format!("{}List", res.kind())
}

/// `continue` tokens look like the real ones: base64 of
/// `{"v":"meta.k8s.io/v1","rv":N,"start":"ns/name\u0000"}`.
pub fn continue_token(rv: i64, start: &str) -> String {
    // Field order as Go writes it, so that tokens match the fixtures byte for byte.
    let inner = format!(
        "{{\"v\":\"meta.k8s.io/v1\",\"rv\":{rv},\"start\":{}}}",
        serde_json::to_string(start).unwrap_or_default()
    );
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(inner)
}

fn parse_continue(token: &str) -> ApiResult<(u64, String)> {
    let bad = || status::bad_request(format!("continue key is not valid: {token}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v.get("rv").and_then(Value::as_u64).ok_or_else(bad)?;
    let start = v.get("start").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((rv, start.to_string()))
}

fn list_item(v: &Value) -> Value {
    let mut item = v.clone();
    if let Some(m) = item.as_object_mut() {
        m.remove("kind");
        m.remove("apiVersion");
    }
    item
}

fn list(
    store: &Store,
    req: &Request,
    path: &ResourcePath,
    selector: &Selector,
) -> ApiResult<Reply> {
    let rv = parse_rv(req.query_param("resourceVersion"))?;
    if req.query_param("resourceVersionMatch") == Some("Exact") {
        if let Some(rv) = rv {
            if rv < store.horizon {
                return Err(status::list_expired());
            }
        }
    }
    let limit = req
        .query_param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (list_rv, start) = match req.query_param("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, start) = parse_continue(token)?;
            if rv < store.horizon {
                return Err(status::continue_expired(continue_token(-1, &start)));
            }
            (rv, Some(start))
        }
        None => (store.rv, None),
    };
    let ns = path.namespace.as_deref();
    let keyed: Vec<(String, &Value)> = store
        .list(path.res, ns)
        .map(|o| {
            let k = if path.res.namespaced() {
                format!("{}/{}", meta_str(o, "namespace"), meta_str(o, "name"))
            } else {
                meta_str(o, "name").to_string()
            };
            (k, o)
        })
        .filter(|(k, _)| start.as_deref().is_none_or(|s| k.as_str() >= s))
        .collect();
    let mut items = Vec::new();
    let mut next = None;
    for (i, (k, o)) in keyed.iter().enumerate() {
        if !selector.matches(o) {
            continue;
        }
        items.push(list_item(o));
        if limit.is_some_and(|l| items.len() >= l) {
            // Like etcd paging: a continue token whenever keys remain, matching or not.
            if i + 1 < keyed.len() {
                next = Some(continue_token(list_rv as i64, &format!("{k}\u{0}")));
            }
            break;
        }
    }
    let mut metadata = Map::new();
    metadata.insert("resourceVersion".into(), Value::String(list_rv.to_string()));
    if let Some(c) = next {
        metadata.insert("continue".into(), Value::String(c));
    }
    let body = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[{}]}}",
        list_kind(path.res),
        path.res.api_version(),
        Value::Object(metadata),
        items
            .iter()
            .map(store::to_json)
            .collect::<Vec<_>>()
            .join(",")
    );
    Ok(Reply::Json {
        status: 200,
        body,
        headers: Vec::new(),
    })
}

fn watch_plan(
    inner: &Inner,
    req: &Request,
    path: &ResourcePath,
    selector: Selector,
) -> ApiResult<WatchPlan> {
    if req.query_param("resourceVersionMatch").is_some()
        && req.query_param("sendInitialEvents").is_none()
    {
        return Err(status::watch_rv_match_forbidden());
    }
    let store = &inner.store;
    let rv_param = req.query_param("resourceVersion").filter(|s| !s.is_empty());
    let allow_bookmarks = routes::truthy(req.query_param("allowWatchBookmarks"));
    let timeout = req
        .query_param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(1800));
    let ns = path.namespace.as_deref();
    let current = || -> Vec<Value> {
        store
            .list(path.res, ns)
            .filter(|o| selector.matches(o))
            .cloned()
            .collect()
    };
    let (start, bookmarks) = match rv_param {
        None => (
            Ok(WatchStart {
                initial: current(),
                from_rv: store.rv,
            }),
            false,
        ),
        Some("0") => (
            Ok(WatchStart {
                initial: current(),
                from_rv: store.rv,
            }),
            allow_bookmarks,
        ),
        Some(s) => {
            let rv = parse_rv(Some(s))?.unwrap_or(0);
            if rv < store.horizon {
                (Err(status::watch_expired(rv, store.horizon)), false)
            } else {
                (
                    Ok(WatchStart {
                        initial: Vec::new(),
                        from_rv: rv,
                    }),
                    allow_bookmarks,
                )
            }
        }
    };
    Ok(WatchPlan {
        res: path.res,
        namespace: path.namespace.clone(),
        selector,
        start,
        bookmarks,
        timeout,
        epoch: inner.faults.watch_epoch,
    })
}

fn check_namespace(res: Res, ns: &str, obj: &mut Value) -> ApiResult<()> {
    if res.namespaced() {
        let body_ns = meta_str(obj, "namespace");
        if !body_ns.is_empty() && body_ns != ns {
            return Err(status::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request".to_string(),
            ));
        }
        set_meta(obj, "namespace", Value::String(ns.to_string()));
    } else {
        store::remove_meta(obj, "namespace");
    }
    Ok(())
}

fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

fn validate(res: Res, obj: &Value) -> ApiResult<()> {
    let name = meta_str(obj, "name");
    match res {
        Res::Pods => {
            for list in ["podIPs", "hostIPs"] {
                let ips = obj
                    .pointer(&format!("/status/{list}"))
                    .and_then(Value::as_array);
                for (i, entry) in ips.into_iter().flatten().enumerate() {
                    let ip = entry.get("ip").and_then(Value::as_str).unwrap_or("");
                    if !is_ip(ip) {
                        return Err(status::invalid(
                            "Pod",
                            "",
                            name,
                            &format!("status.{list}[{i}]"),
                            "FieldValueInvalid",
                            format!("Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
                        ));
                    }
                }
            }
            Ok(())
        }
        Res::Events => {
            let ns = meta_str(obj, "namespace");
            let io_ns = obj
                .pointer("/involvedObject/namespace")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !io_ns.is_empty() && io_ns != ns {
                return Err(status::invalid(
                    "Event",
                    "",
                    name,
                    "involvedObject.namespace",
                    "FieldValueInvalid",
                    format!("Invalid value: \"{io_ns}\": does not match event.namespace"),
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The service cluster IP range the fake allocates from (kube-apiserver's default
/// `--service-cluster-ip-range` 10.96.0.0/12 hands out 10.96.0.1 to `kubernetes` first).
const SERVICE_NET: [u8; 2] = [10, 96];

/// A free cluster IP: the lowest of 10.96.x.y not taken by a stored service.
fn allocate_cluster_ip(store: &Store) -> String {
    let taken: std::collections::HashSet<String> = store
        .list(Res::Services, None)
        .filter_map(|s| s.pointer("/spec/clusterIP").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    (1u32..65534)
        .map(|n| {
            format!(
                "{}.{}.{}.{}",
                SERVICE_NET[0],
                SERVICE_NET[1],
                n >> 8,
                n & 0xff
            )
        })
        .find(|ip| !ip.ends_with(".0") && !taken.contains(ip))
        .unwrap_or_default()
}

/// What defaulting and the IP allocator do to a new Service (type ClusterIP, a cluster IP unless
/// headless or ExternalName, TCP ports with targetPort = port), and the validation that a
/// cluster IP service has ports.
fn default_service(store: &Store, svc: &mut Value, name: &str) -> ApiResult<()> {
    if !svc.get("spec").is_some_and(Value::is_object) {
        svc["spec"] = json!({});
    }
    let spec = &mut svc["spec"];
    let kind = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    spec["type"] = json!(kind);
    let has_ports = spec
        .get("ports")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    if kind == "ExternalName" {
        spec["sessionAffinity"] = json!("None");
    } else {
        if !has_ports && !headless {
            return Err(status::invalid(
                "Service",
                "",
                name,
                "spec.ports",
                "FieldValueRequired",
                "Required value".to_string(),
            ));
        }
        if spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            spec["clusterIP"] = json!(allocate_cluster_ip(store));
        }
        let ip = spec["clusterIP"].clone();
        spec["clusterIPs"] = json!([ip]);
        spec["sessionAffinity"] = json!("None");
        if !headless {
            spec["ipFamilies"] = json!(["IPv4"]);
            spec["ipFamilyPolicy"] = json!("SingleStack");
        }
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if p.get("protocol").is_none() {
                p["protocol"] = json!("TCP");
            }
            if p.get("targetPort").is_none() {
                p["targetPort"] = p.get("port").cloned().unwrap_or(json!(0));
            }
        }
    }
    svc["status"] = json!({"loadBalancer": {}});
    Ok(())
}

/// The `default/kubernetes` Service every kube-apiserver maintains for itself (10.96.0.1:443,
/// port `https`), stored as if it predated the watch history: at the initial resourceVersion,
/// with no event.
pub fn seed_kubernetes_service(store: &mut Store) {
    let mut svc = json!({
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": {
            "name": "kubernetes",
            "namespace": "default",
            "uid": store::new_uid(),
            "resourceVersion": store.rv.to_string(),
            "creationTimestamp": store::timestamp(0),
            "labels": {"component": "apiserver", "provider": "kubernetes"}
        },
        "spec": {
            "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": 6443}],
            "clusterIP": "10.96.0.1"
        }
    });
    if default_service(store, &mut svc, "kubernetes").is_ok() {
        store
            .objects
            .insert(store::key(Res::Services, "default", "kubernetes"), svc);
    }
}

/// The namespace's `kube-root-ca.crt` ConfigMap and `default` ServiceAccount, which the
/// controller-manager would have made.
fn ensure_namespace_objects(store: &mut Store, ns: &str, ca_pem: &str) {
    if store.get(Res::ConfigMaps, ns, "kube-root-ca.crt").is_none() {
        let cm = json!({"kind": "ConfigMap", "apiVersion": "v1",
            "metadata": {"name": "kube-root-ca.crt", "namespace": ns, "uid": store::new_uid(),
                         "creationTimestamp": store::timestamp(0),
                         "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
            "data": {"ca.crt": ca_pem}});
        store.write(Res::ConfigMaps, cm, EventType::Added);
    }
    if store.get(Res::ServiceAccounts, ns, "default").is_none() {
        let sa = json!({"kind": "ServiceAccount", "apiVersion": "v1",
            "metadata": {"name": "default", "namespace": ns, "uid": store::new_uid(),
                         "creationTimestamp": store::timestamp(0)}});
        store.write(Res::ServiceAccounts, sa, EventType::Added);
    }
}

/// Creates an object as `who` would through `POST`.
pub fn create(
    inner: &mut Inner,
    config: &FakeConfig,
    who: &Identity,
    res: Res,
    ns: &str,
    mut obj: Value,
) -> ApiResult<Value> {
    if !obj.is_object() {
        return Err(status::bad_request(
            "the body of the request is not an object".to_string(),
        ));
    }
    check_namespace(res, ns, &mut obj)?;
    let mut name = meta_str(&obj, "name").to_string();
    if name.is_empty() {
        let prefix = meta_str(&obj, "generateName").to_string();
        if prefix.is_empty() {
            return Err(status::invalid(
                res.kind(),
                res.group(),
                "",
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required".to_string(),
            ));
        }
        name = format!("{prefix}{}", store::random_suffix());
        set_meta(&mut obj, "name", Value::String(name.clone()));
    }
    if let Some(node) = who.node_name() {
        match res {
            Res::Nodes => authz::node_create_admission(node, &obj)
                .map_err(|why| status::forbidden_admission(res, &name, &why))?,
            Res::Leases if name != node => {
                return Err(status::forbidden_admission(
                    res,
                    &name,
                    "can only access node lease with the same name as the requesting node",
                ))
            }
            Res::Pods => {
                if let Err(why) = authz::mirror_pod_admission(&inner.store, node, &obj) {
                    return Err(status::forbidden_admission(res, &name, &why));
                }
            }
            _ => {}
        }
    }
    if inner.store.get(res, ns, &name).is_some() {
        return Err(status::already_exists(res, &name));
    }
    obj["kind"] = json!(res.kind());
    obj["apiVersion"] = json!(res.api_version());
    set_meta(&mut obj, "uid", json!(store::new_uid()));
    set_meta(&mut obj, "creationTimestamp", json!(store::timestamp(0)));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        store::remove_meta(&mut obj, field);
    }
    match res {
        Res::Pods => {
            // RuntimeClass admission (fixture 15h): the class must exist; its podFixed
            // overhead becomes the pod's.
            if let Some(rc) = obj
                .pointer("/spec/runtimeClassName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                let Some(class) = inner.store.get(Res::RuntimeClasses, "", rc) else {
                    return Err(status::forbidden_admission(
                        res,
                        &name,
                        &format!("pod rejected: RuntimeClass {rc:?} not found"),
                    ));
                };
                if let Some(o) = class.pointer("/overhead/podFixed") {
                    obj["spec"]["overhead"] = o.clone();
                }
            }
            defaults::default_pod(&mut obj, config.inject_service_account_volume);
            ensure_namespace_objects(&mut inner.store, ns, &inner.ca_pem);
        }
        Res::Nodes => {
            // TaintNodesByCondition admission.
            let taint = json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"});
            let taints = obj["spec"]
                .as_object_mut()
                .map(|s| s.entry("taints").or_insert(json!([])));
            match taints {
                Some(Value::Array(t)) => {
                    if !t.iter().any(|x| x.get("key") == taint.get("key")) {
                        t.push(taint);
                    }
                }
                _ => obj["spec"] = json!({"taints": [taint]}),
            }
        }
        Res::Secrets => {
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                let mut merged = obj
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                for (k, v) in sd {
                    let s = v.as_str().unwrap_or("").to_string();
                    merged.insert(
                        k,
                        json!(base64::engine::general_purpose::STANDARD.encode(s)),
                    );
                }
                obj["data"] = Value::Object(merged);
            }
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
        }
        Res::Namespaces => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        Res::Services => default_service(&inner.store, &mut obj, &name)?,
        Res::Csrs => {
            // The requester, as authenticated; the status is the signer's and approver's.
            obj["spec"]["username"] = json!(who.user);
            obj["spec"]["groups"] = json!(who.groups);
            obj["status"] = json!({});
            validate_csr(&obj, &name)?;
        }
        _ => {}
    }
    prune_empty(&mut obj);
    validate(res, &obj)?;
    Ok(inner.store.write(res, obj, EventType::Added))
}

/// Go's `omitempty`: the real server drops empty lists and empty map-typed fields when it
/// re-encodes an object (`"env": []` does not come back). `containers` is not omitempty;
/// empty structs (`resources: {}`) are kept.
/// The checks of a v1 CertificateSigningRequest a kubelet can trip (13e).
fn validate_csr(obj: &Value, name: &str) -> ApiResult<()> {
    let invalid = |field: &str, reason: &str, message: String| {
        Err(status::invalid(
            "CertificateSigningRequest",
            "certificates.k8s.io",
            name,
            field,
            reason,
            message,
        ))
    };
    let request = obj["spec"]["request"].as_str().unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request)
        .unwrap_or_default();
    if !pem.starts_with(b"-----BEGIN CERTIFICATE REQUEST-----") {
        // Go's %#v of the bytes.
        let bytes: Vec<String> = pem.iter().map(|b| format!("{b:#x}")).collect();
        return invalid(
            "spec.request",
            "FieldValueInvalid",
            format!(
                "Invalid value: []byte{{{}}}: PEM block type must be CERTIFICATE REQUEST",
                bytes.join(", ")
            ),
        );
    }
    if obj["spec"]["signerName"]
        .as_str()
        .unwrap_or_default()
        .is_empty()
    {
        return invalid(
            "spec.signerName",
            "FieldValueRequired",
            "Required value".into(),
        );
    }
    if obj["spec"]["usages"].as_array().is_none_or(Vec::is_empty) {
        return invalid("spec.usages", "FieldValueRequired", "Required value".into());
    }
    Ok(())
}

fn prune_empty(v: &mut Value) {
    const MAPS: &[&str] = &[
        "labels",
        "annotations",
        "data",
        "binaryData",
        "nodeSelector",
        "capacity",
        "allocatable",
    ];
    match v {
        Value::Object(m) => {
            m.retain(|k, child| match child {
                Value::Array(a) => !a.is_empty() || k == "containers",
                Value::Object(o) => !o.is_empty() || !MAPS.contains(&k.as_str()),
                _ => true,
            });
            m.values_mut().for_each(prune_empty);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_empty),
        _ => {}
    }
}

fn without_rv(v: &Value) -> Value {
    let mut c = v.clone();
    store::remove_meta(&mut c, "resourceVersion");
    store::remove_meta(&mut c, "managedFields");
    c
}

/// Replaces an object (`PUT`, and the tail of `PATCH`) as `who`. `new` is the full object the
/// request asks for; `check_rv` compares its resourceVersion with the stored one.
#[allow(clippy::too_many_arguments)]
pub fn update(
    store: &mut Store,
    who: &Identity,
    res: Res,
    ns: &str,
    name: &str,
    sub: &str,
    mut new: Value,
    check_rv: bool,
) -> ApiResult<Value> {
    let old = get(store, res, ns, name)?;
    if !new.is_object() {
        return Err(status::bad_request(
            "the body of the request is not an object".to_string(),
        ));
    }
    let body_name = meta_str(&new, "name").to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(status::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    check_namespace(res, ns, &mut new)?;
    if let Some(node) = who.node_name() {
        let refused = match res {
            Res::Nodes => authz::node_update_admission(node, name, &old, &new),
            Res::Pods => authz::pod_admission(node, "update", sub, &old, Some(&new)),
            _ => Ok(()),
        };
        refused.map_err(|why| status::forbidden_admission(res, name, &why))?;
    }
    let body_rv = meta_str(&new, "resourceVersion").to_string();
    if check_rv && !body_rv.is_empty() && body_rv != meta_str(&old, "resourceVersion") {
        return Err(status::conflict_modified(res, name));
    }
    let mut result = match (res, sub) {
        // The approval subresource changes the conditions and nothing else.
        (Res::Csrs, "approval") => {
            let mut r = old.clone();
            let mut conditions = new["status"]["conditions"].clone();
            // The server stamps what the client left out (14d).
            for c in conditions.as_array_mut().into_iter().flatten() {
                for field in ["lastUpdateTime", "lastTransitionTime"] {
                    if c.get(field).is_none() {
                        c[field] = json!(store::timestamp(0));
                    }
                }
            }
            r["status"]["conditions"] = conditions;
            r
        }
        (_, "status") => {
            let mut r = old.clone();
            match new.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            r
        }
        (Res::Pods | Res::Nodes, _) => {
            let mut r = new.clone();
            match old.get("status") {
                Some(s) => r["status"] = s.clone(),
                None => {
                    if let Some(m) = r.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            r
        }
        _ => new.clone(),
    };
    result["kind"] = json!(res.kind());
    result["apiVersion"] = json!(res.api_version());
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
    ] {
        match meta_str(&old, field) {
            "" => match old.pointer(&format!("/metadata/{field}")) {
                Some(v) => set_meta(&mut result, field, v.clone()),
                None => store::remove_meta(&mut result, field),
            },
            s => set_meta(&mut result, field, json!(s)),
        }
    }
    prune_empty(&mut result);
    validate(res, &result)?;
    if without_rv(&result) == without_rv(&old) {
        // No-op writes keep the resourceVersion (04e2).
        return Ok(old);
    }
    Ok(store.write(res, result, EventType::Modified))
}

fn patch_object(
    store: &mut Store,
    who: &Identity,
    req: &Request,
    res: Res,
    ns: &str,
    name: &str,
    sub: &str,
) -> ApiResult<Value> {
    let ct = req
        .header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    enum Kind {
        Merge,
        Strategic,
        Json,
        Apply,
    }
    let kind = match ct.as_str() {
        "application/merge-patch+json" => Kind::Merge,
        "application/strategic-merge-patch+json" if !matches!(res, Res::Leases | Res::EventsV1) => {
            Kind::Strategic
        }
        "application/json-patch+json" => Kind::Json,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => Kind::Apply,
        _ => return Err(status::unsupported_media_type()),
    };
    if matches!(kind, Kind::Apply) && req.query_param("fieldManager").is_none_or(str::is_empty) {
        return Err(status::apply_needs_field_manager());
    }
    let old = get(store, res, ns, name)?;
    let patch_body: Value = match kind {
        Kind::Apply => {
            let text = String::from_utf8_lossy(&req.body);
            serde_saphyr::from_str::<Value>(&text)
                .map_err(|e| status::bad_request(format!("error decoding YAML: {e}")))?
        }
        _ => serde_json::from_slice(&req.body)
            .map_err(|e| status::bad_request(format!("error decoding patch: {e}")))?,
    };
    let mut new = old.clone();
    match kind {
        Kind::Merge => patch::merge_patch(&mut new, &patch_body),
        Kind::Strategic | Kind::Apply => patch::strategic_merge(res, &mut new, &patch_body),
        Kind::Json => patch::json_patch(&mut new, &patch_body).map_err(|e| {
            Status::failure(
                422,
                "Invalid",
                format!("the server rejected our request due to an error in our request: {e:?}"),
                None,
            )
        })?,
    }
    if res == Res::Pods {
        defaults::normalize_pod_status(&mut new);
    }
    // A patch that sets metadata.resourceVersion is a precondition; otherwise none.
    let check_rv = meta_str(&new, "resourceVersion") != meta_str(&old, "resourceVersion");
    update(store, who, res, ns, name, sub, new, check_rv)
}

/// Deletes as `who`: graceful for pods (MODIFIED with deletionTimestamp, then DELETED when the
/// grace period reaches 0), immediate for everything else.
pub fn delete(
    store: &mut Store,
    who: &Identity,
    res: Res,
    ns: &str,
    name: &str,
    grace: Option<i64>,
    options: &Value,
) -> ApiResult<Reply> {
    let old = get(store, res, ns, name)?;
    if let Some(node) = who.node_name() {
        if res == Res::Pods {
            authz::pod_admission(node, "delete", "", &old, None)
                .map_err(|why| status::forbidden_admission(res, name, &why))?;
        }
    }
    if let Some(uid) = options
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
    {
        let have = meta_str(&old, "uid");
        if uid != have {
            return Err(status::conflict_precondition(res, name, format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated"
            )));
        }
    }
    if let Some(rv) = options
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        let have = meta_str(&old, "resourceVersion");
        if rv != have {
            return Err(status::conflict_precondition(res, name, format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({have}). The object might have been modified"
            )));
        }
    }
    if res != Res::Pods {
        store.write(res, old.clone(), EventType::Deleted);
        return Ok(status_reply(&status::success_deleted(
            res,
            name,
            meta_str(&old, "uid"),
        )));
    }
    let existing_grace = old
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let existing_ts = old
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(store::parse_timestamp);
    let mut pod = old.clone();
    let new_grace = match (existing_ts, existing_grace) {
        (Some(_), None | Some(0)) => 0,
        (Some(ts), Some(current)) => match grace {
            Some(g) if g.max(0) < current => {
                let g = g.max(0);
                let moved = ts - current + g;
                let stamp = k8s_openapi::jiff::Timestamp::from_second(moved)
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                set_meta(&mut pod, "deletionTimestamp", json!(stamp));
                set_meta(&mut pod, "deletionGracePeriodSeconds", json!(g));
                pod = store.write(res, pod, EventType::Modified);
                g
            }
            // Graceful deletion already pending with an equal or shorter period.
            _ => return Ok(obj_reply(200, &old)),
        },
        (None, _) => {
            let mut g = grace
                .or_else(|| {
                    pod.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30);
            if g < 0 {
                g = 1;
            }
            let unbound = pod
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty();
            let done = matches!(
                pod.pointer("/status/phase").and_then(Value::as_str),
                Some("Failed" | "Succeeded")
            );
            if unbound || done {
                g = 0;
            }
            set_meta(&mut pod, "deletionTimestamp", json!(store::timestamp(g)));
            set_meta(&mut pod, "deletionGracePeriodSeconds", json!(g));
            if let Some(gen) = pod
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .filter(|g| *g > 0)
            {
                set_meta(&mut pod, "generation", json!(gen + 1));
            }
            pod = store.write(res, pod, EventType::Modified);
            g
        }
    };
    if new_grace == 0 {
        pod = store.write(res, pod, EventType::Deleted);
    }
    Ok(obj_reply(200, &pod))
}

fn b64url(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

/// `POST serviceaccounts/NAME/token` (TokenRequest).
fn token_request(
    inner: &Inner,
    who: &Identity,
    ns: &str,
    sa_name: &str,
    body: &Value,
    max_expiration: Option<std::time::Duration>,
) -> ApiResult<Reply> {
    let store = &inner.store;
    let bound = body.pointer("/spec/boundObjectRef");
    let mut pod_ref: Option<(String, String)> = None;
    if let Some(node) = who.node_name() {
        let Some(r) = bound.filter(|r| r.get("kind").and_then(Value::as_str) == Some("Pod")) else {
            return Err(status::forbidden_admission(
                Res::ServiceAccounts,
                sa_name,
                "node requested token not bound to a pod",
            ));
        };
        let pod_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let pod = get(store, Res::Pods, ns, pod_name)?;
        let uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
        if !uid.is_empty() && uid != meta_str(&pod, "uid") {
            return Err(status::forbidden_admission(Res::ServiceAccounts, sa_name, &format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            )));
        }
        if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
            return Err(status::forbidden_admission(
                Res::ServiceAccounts,
                sa_name,
                "node requested token bound to a pod scheduled on a different node",
            ));
        }
        pod_ref = Some((pod_name.to_string(), meta_str(&pod, "uid").to_string()));
    } else if let Some(r) = bound {
        let pod_name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let pod = get(store, Res::Pods, ns, pod_name)?;
        pod_ref = Some((pod_name.to_string(), meta_str(&pod, "uid").to_string()));
    }
    let seconds = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(3600);
    if seconds < 600 {
        return Err(status::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            "",
            "spec.expirationSeconds",
            "FieldValueInvalid",
            format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    let seconds = max_expiration.map_or(seconds, |m| seconds.min(m.as_secs() as i64));
    let sa = get(store, Res::ServiceAccounts, ns, sa_name)?;
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let audiences = body
        .pointer("/spec/audiences")
        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .unwrap_or(json!([issuer]));
    let iat = store::unix_now();
    // The apiserver's own audience gets the 1-year extension with warnafter (09a vs 09e).
    let extended = seconds == 3607
        && audiences
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == issuer));
    let exp = if extended {
        iat + 365 * 24 * 3600
    } else {
        iat + seconds
    };
    let mut k8s =
        json!({"namespace": ns, "serviceaccount": {"name": sa_name, "uid": meta_str(&sa, "uid")}});
    if let Some((pn, pu)) = &pod_ref {
        k8s["pod"] = json!({"name": pn, "uid": pu});
    }
    if extended {
        k8s["warnafter"] = json!(iat + seconds);
    }
    let claims = json!({"aud": audiences, "exp": exp, "iat": iat, "iss": issuer, "kubernetes.io": k8s,
                        "nbf": iat, "sub": format!("system:serviceaccount:{ns}:{sa_name}")});
    let token = format!(
        "{}.{}.{}",
        b64url(&json!({"alg": "RS256", "kid": "fake-apiserver"})),
        b64url(&claims),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"unsigned-fake-signature")
    );
    let mut spec = body.get("spec").cloned().unwrap_or(json!({}));
    spec["audiences"] = audiences;
    spec["expirationSeconds"] = json!(seconds);
    let out = json!({
        "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": sa_name, "namespace": ns, "creationTimestamp": store::timestamp(0)},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": store::timestamp(seconds)},
    });
    Ok(obj_reply(201, &out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_like_the_fixture() {
        // 01c's token decodes to {"v":"meta.k8s.io/v1","rv":4528,"start":"fixtures/p1\u0000"}.
        let fixture =
            "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDUyOCwic3RhcnQiOiJmaXh0dXJlcy9wMVx1MDAwMCJ9";
        assert_eq!(
            parse_continue(fixture).unwrap(),
            (4528, "fixtures/p1\u{0}".to_string())
        );
        let ours = continue_token(7, "a/b\u{0}");
        assert_eq!(parse_continue(&ours).unwrap(), (7, "a/b\u{0}".to_string()));
    }
}
