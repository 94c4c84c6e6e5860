//! The fake API server's storage: the resources it knows, objects as JSON values keyed like etcd
//! (`resource/namespace/name`, so lists come out in the real order), one global monotonically
//! increasing resourceVersion, a bounded history of watch events, and the JSON rendering of
//! objects with the real server's key order at the top levels.
//!
//! Owns: object state and its history. Must not do HTTP, authorization or admission.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Map, Value};

/// The resources the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    Pods,
    Nodes,
    Leases,
    Events,
    EventsV1,
    ConfigMaps,
    Secrets,
    Namespaces,
    ServiceAccounts,
    Services,
    Csrs,
    PersistentVolumeClaims,
    PersistentVolumes,
    RuntimeClasses,
}

impl Res {
    pub fn plural(self) -> &'static str {
        match self {
            Res::Pods => "pods",
            Res::Nodes => "nodes",
            Res::Leases => "leases",
            Res::Events | Res::EventsV1 => "events",
            Res::ConfigMaps => "configmaps",
            Res::Secrets => "secrets",
            Res::Namespaces => "namespaces",
            Res::ServiceAccounts => "serviceaccounts",
            Res::Services => "services",
            Res::Csrs => "certificatesigningrequests",
            Res::PersistentVolumeClaims => "persistentvolumeclaims",
            Res::PersistentVolumes => "persistentvolumes",
            Res::RuntimeClasses => "runtimeclasses",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Res::Leases => "coordination.k8s.io",
            Res::EventsV1 => "events.k8s.io",
            Res::Csrs => "certificates.k8s.io",
            Res::RuntimeClasses => "node.k8s.io",
            _ => "",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Res::Leases => "coordination.k8s.io/v1",
            Res::EventsV1 => "events.k8s.io/v1",
            Res::Csrs => "certificates.k8s.io/v1",
            Res::RuntimeClasses => "node.k8s.io/v1",
            _ => "v1",
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Res::Pods => "Pod",
            Res::Nodes => "Node",
            Res::Leases => "Lease",
            Res::Events | Res::EventsV1 => "Event",
            Res::ConfigMaps => "ConfigMap",
            Res::Secrets => "Secret",
            Res::Namespaces => "Namespace",
            Res::ServiceAccounts => "ServiceAccount",
            Res::Services => "Service",
            Res::Csrs => "CertificateSigningRequest",
            Res::PersistentVolumeClaims => "PersistentVolumeClaim",
            Res::PersistentVolumes => "PersistentVolume",
            Res::RuntimeClasses => "RuntimeClass",
        }
    }

    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Res::Nodes | Res::Namespaces | Res::Csrs | Res::PersistentVolumes | Res::RuntimeClasses
        )
    }

    /// `pods`, `leases.coordination.k8s.io`: how the server names the resource in messages.
    pub fn qualified(self) -> String {
        if self.group().is_empty() {
            self.plural().to_string()
        } else {
            format!("{}.{}", self.plural(), self.group())
        }
    }

    /// Where the object lives in storage: events of both APIs are one kind of object in the
    /// real server, but the fake keeps events.k8s.io ones apart (it never converts).
    fn storage(self) -> Res {
        self
    }
}

/// A storage key; ordering is etcd's (`namespace/name` within a resource).
pub type Key = (Res, String, String);

pub fn key(res: Res, ns: &str, name: &str) -> Key {
    (res.storage(), ns.to_string(), name.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub res: Res,
    pub kind: EventType,
    pub object: Value,
    /// The object before the change (for selector transitions).
    pub old: Option<Value>,
}

/// All mutable state of the fake; one lock guards it.
pub struct Store {
    pub rv: u64,
    pub objects: BTreeMap<Key, Value>,
    pub history: VecDeque<Change>,
    pub history_limit: usize,
    /// RVs below this are "too old" (compacted): the initial RV, then the RV just before the
    /// oldest retained event.
    pub horizon: u64,
}

impl Store {
    pub fn new(initial_rv: u64, history_limit: usize) -> Store {
        Store {
            rv: initial_rv,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            horizon: initial_rv,
        }
    }

    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&key(res, ns, name))
    }

    /// Objects of one resource (one namespace when `ns` is given), in key order.
    pub fn list<'a>(&'a self, res: Res, ns: Option<&'a str>) -> impl Iterator<Item = &'a Value> {
        self.objects
            .iter()
            .filter(move |((r, n, _), _)| *r == res.storage() && ns.is_none_or(|ns| n == ns))
            .map(|(_, v)| v)
    }

    /// Stores `object` under a new resourceVersion and records the change. Returns the stored
    /// object.
    pub fn write(&mut self, res: Res, mut object: Value, kind: EventType) -> Value {
        self.rv += 1;
        set_meta(
            &mut object,
            "resourceVersion",
            Value::String(self.rv.to_string()),
        );
        let ns = meta_str(&object, "namespace").to_string();
        let name = meta_str(&object, "name").to_string();
        let k = key(res, &ns, &name);
        let old = match kind {
            EventType::Deleted => self.objects.remove(&k),
            _ => self.objects.insert(k, object.clone()),
        };
        self.record(Change {
            rv: self.rv,
            res,
            kind,
            object: object.clone(),
            old,
        });
        object
    }

    fn record(&mut self, change: Change) {
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.horizon = self.horizon.max(dropped.rv);
            }
        }
    }

    /// Forgets all history: every RV before now becomes too old.
    pub fn compact(&mut self) {
        self.history.clear();
        self.horizon = self.rv;
    }

    /// Changes after `rv`, oldest first.
    pub fn changes_after(&self, rv: u64) -> impl Iterator<Item = &Change> {
        self.history.iter().filter(move |c| c.rv > rv)
    }
}

pub fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    meta(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

pub fn set_meta(object: &mut Value, field: &str, value: Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = Value::Object(Map::new());
    }
    object["metadata"][field] = value;
}

pub fn remove_meta(object: &mut Value, field: &str) {
    if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove(field);
    }
}

/// A `"2026-11-22T12:52:52Z"` timestamp for now plus `offset_secs`.
pub fn timestamp(offset_secs: i64) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().as_second() + offset_secs;
    k8s_openapi::jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

/// Parses a `...Z` timestamp to unix seconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    s.parse::<k8s_openapi::jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

/// A random RFC 4122 version-4 UUID.
pub fn new_uid() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let mut a = state.build_hasher();
    a.write_u64(1);
    let mut b = state.build_hasher();
    b.write_u64(2);
    let hi = a.finish();
    let lo = b.finish();
    let bytes: Vec<u8> = hi
        .to_be_bytes()
        .into_iter()
        .chain(lo.to_be_bytes())
        .collect();
    let mut u = [0u8; 16];
    u.copy_from_slice(&bytes);
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Five random lowercase alphanumerics, like `generateName` suffixes.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(3);
    let mut x = h.finish();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize] as char;
            x /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

const TOP_ORDER: &[&str] = &["kind", "apiVersion", "metadata", "spec", "status"];
const META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn write_ordered(out: &mut String, map: &Map<String, Value>, order: &[&str], nested_meta: bool) {
    out.push('{');
    let mut first = true;
    let mut put = |out: &mut String, k: &str, v: &Value| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(&serde_json::to_string(k).unwrap_or_default());
        out.push(':');
        match (nested_meta && k == "metadata", v) {
            (true, Value::Object(m)) => write_ordered(out, m, META_ORDER, false),
            _ => out.push_str(&serde_json::to_string(v).unwrap_or_default()),
        }
    };
    for k in order {
        if let Some(v) = map.get(*k) {
            put(out, k, v);
        }
    }
    for (k, v) in map {
        if !order.contains(&k.as_str()) {
            put(out, k, v);
        }
    }
    out.push('}');
}

/// Compact JSON with the real server's key order for `kind, apiVersion, metadata, spec, status`
/// and for the common metadata fields; the rest is sorted.
pub fn to_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut out = String::new();
            write_ordered(&mut out, map, TOP_ORDER, true);
            out
        }
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_follows_the_server_key_order() {
        let v = json!({"status": {}, "metadata": {"resourceVersion": "1", "name": "a"}, "kind": "Pod", "apiVersion": "v1", "zeta": 1});
        assert_eq!(
            to_json(&v),
            r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"a","resourceVersion":"1"},"status":{},"zeta":1}"#
        );
    }

    #[test]
    fn uids_look_like_v4_uuids() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn history_is_bounded_and_moves_the_horizon() {
        let mut s = Store::new(100, 2);
        for i in 0..3 {
            s.write(
                Res::ConfigMaps,
                json!({"metadata": {"name": format!("c{i}"), "namespace": "n"}}),
                EventType::Added,
            );
        }
        assert_eq!(s.rv, 103);
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.horizon, 101);
        assert_eq!(s.changes_after(101).count(), 2);
    }
}
