//! List+watch as an explicit, pure state machine, and the object cache it feeds.
//!
//! Owns decoding of list pages and watch lines (the event envelope first, the object only for
//! ADDED/MODIFIED/DELETED, so that a bookmark's bare `"spec":{"containers":null}` shell is never
//! taken for a pod and an object that fails to decode never ends a watch), the [`Watcher`] state machine that decides which request comes
//! next, and the [`Store`] that turns what the watcher saw into Added/Updated/Deleted deltas.
//! It does no I/O, sleeps never and reads no clock: a driver sends the requests the machine asks
//! for (waiting as told, with [`super::backoff::BackoffPolicy`]) and feeds the answers back.
//!
//! ```text
//!                    new()
//!                      |  first page: resourceVersion=0 (served from the watch cache)
//!                      v
//!   +---------------> Listing { resource_version, continue_token, items_so_far }
//!   |                  |   ^
//!   |                  |   | page with `continue`          -> next page
//!   |                  |   | list error                    -> same page after backoff
//!   |                  |   | HTTP 410 (expired continue)   -> page 1 again, quorum read
//!   |                  |   +----+
//!   |   last page      v
//!   |   (emit Relisted: the complete set, replaced wholesale in the Store)
//!   |                  |
//!   |                  v
//!   |              Watching { resource_version, events_in_stream }
//!   |                  |   ^
//!   |                  |   | ADDED/MODIFIED/DELETED        -> emit, advance RV, keep reading
//!   |                  |   | BOOKMARK                      -> advance RV only, keep reading
//!   |                  |   | undecodable object            -> report, keep reading
//!   |                  |   | clean end (timeoutSeconds)    -> resume from RV (at once if the
//!   |                  |   |                                  stream carried events, else
//!   |                  |   |                                  after backoff: 03g sends nothing)
//!   |                  |   | dropped connection / error    -> resume from RV after backoff
//!   |                  |   +----+
//!   |                  |
//!   +------------------+  ERROR event with Status 410 (03a; always inside a 200 stream)
//!      relist              or HTTP 410: page 1 again as a quorum read (no resourceVersion)
//! ```
//!
//! The guarantee, with [`Store`]: no pod is missed or duplicated across reconnects and relists.
//! Resuming from the last seen resourceVersion replays nothing twice that changes the Store (an
//! object whose resourceVersion is unchanged yields no delta), and a relist replaces the Store
//! wholesale, yielding Deleted for what vanished while we were not watching.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::{ApiError, RequestRef};
use super::request::{self, ListOptions, Request, WatchOptions};

/// The k8s objects the watcher and store handle (Pod, ConfigMap, Secret, Service).
pub trait Object:
    k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned + Clone + 'static
{
}
impl<T> Object for T where
    T: k8s_openapi::Metadata<Ty = ObjectMeta> + DeserializeOwned + Clone + 'static
{
}

/// An object the server sent that did not decode. It is reported, never fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Undecodable {
    /// The watch event type (`ADDED`, …, or an unknown one), or `LIST` for a list item.
    pub event_type: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub message: String,
}

/// One decoded line of a watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchEvent<K> {
    Added(K),
    Modified(K),
    Deleted(K),
    /// Only the resourceVersion of a bookmark means anything (its object is a bare shell with
    /// `"spec":{"containers":null}`).
    Bookmark {
        resource_version: String,
    },
    /// An `ERROR` event; the object is a `Status` (03a: code 410, reason Expired).
    Error(serde_json::Value),
    /// An event whose object did not decode, or of an unknown type.
    Undecodable(Undecodable),
}

/// A watch line. The object stays raw text until its type is known: a typed object is
/// decoded straight from it (no `serde_json::Value` tree in between).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
}

fn meta_str(object: &serde_json::Value, key: &str) -> Option<String> {
    object
        .get("metadata")?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

fn undecodable(event_type: &str, object: &serde_json::Value, message: String) -> Undecodable {
    Undecodable {
        event_type: event_type.to_string(),
        namespace: meta_str(object, "namespace"),
        name: meta_str(object, "name"),
        uid: meta_str(object, "uid"),
        resource_version: meta_str(object, "resourceVersion"),
        message,
    }
}

/// The raw text as a `Value` (`null` if absent); only for objects that are not typed.
fn to_value(object: Option<&RawValue>) -> serde_json::Value {
    object
        .and_then(|raw| serde_json::from_slice(raw.get().as_bytes()).ok())
        .unwrap_or_default()
}

/// Decodes one object from its raw text. Going through a `serde_json::Value` first would build
/// a tree of maps ~5× the size of the text: for a list of 100 pods that tree was the daemon's
/// peak heap, which the allocator keeps (docs/PERFORMANCE.md). Only an object that fails is
/// read into a `Value`, for the names its error reports.
fn decode_object<K: DeserializeOwned>(
    event_type: &str,
    object: Option<&RawValue>,
) -> Result<K, Box<Undecodable>> {
    let text = object.map_or("null", |raw| raw.get());
    decode_json(text.as_bytes())
        .map_err(|message| Box::new(undecodable(event_type, &to_value(object), message)))
}

/// Decodes one Kubernetes object from JSON text; the error is serde_json's message without its
/// " at line L column C" (a position within one object means nothing to whoever reads it).
///
/// Every object the daemon decodes goes through serde_json's slice reader (this and
/// [`super::api`]'s bodies): each other `Deserializer` would compile the whole generated decoder
/// of `Pod` again — 200–300 KB of text per reader, and text is most of the daemon's RSS.
pub fn decode_json<K: DeserializeOwned>(text: &[u8]) -> Result<K, String> {
    serde_json::from_slice(text).map_err(|e| {
        let message = e.to_string();
        match message.rfind(" at line ") {
            Some(at) if e.line() > 0 => message[..at].to_string(),
            _ => message,
        }
    })
}

/// Decodes one NDJSON line of a watch. Only a line that is not a JSON `{type, object}` envelope
/// is an error; an object that does not decode becomes [`WatchEvent::Undecodable`].
pub fn decode_watch_line<K: DeserializeOwned>(
    line: &[u8],
) -> Result<WatchEvent<K>, serde_json::Error> {
    let Envelope { event_type, object } = serde_json::from_slice(line)?;
    let typed = |wrap: fn(K) -> WatchEvent<K>, object| match decode_object::<K>(&event_type, object)
    {
        Ok(k) => wrap(k),
        Err(u) => WatchEvent::Undecodable(*u),
    };
    Ok(match event_type.as_str() {
        "ADDED" => typed(WatchEvent::Added, object),
        "MODIFIED" => typed(WatchEvent::Modified, object),
        "DELETED" => typed(WatchEvent::Deleted, object),
        "BOOKMARK" => {
            let object = to_value(object);
            match meta_str(&object, "resourceVersion") {
                Some(resource_version) => WatchEvent::Bookmark { resource_version },
                None => WatchEvent::Undecodable(undecodable(
                    &event_type,
                    &object,
                    "bookmark without metadata.resourceVersion".into(),
                )),
            }
        }
        "ERROR" => WatchEvent::Error(to_value(object)),
        _ => WatchEvent::Undecodable(undecodable(
            &event_type,
            &to_value(object),
            format!("unknown watch event type {event_type:?}"),
        )),
    })
}

/// One page of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<K> {
    /// `metadata.resourceVersion`: the snapshot the list was read at.
    pub resource_version: String,
    /// `metadata.continue`, if there may be more (an empty string counts as none).
    pub continue_token: Option<String>,
    pub items: Vec<K>,
    /// Items that did not decode as `K`.
    pub undecodable: Vec<Undecodable>,
}

/// A list response, its items left as raw text (see [`decode_object`]).
#[derive(Deserialize)]
struct RawList<'a> {
    metadata: RawListMeta,
    #[serde(borrow, default)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct RawListMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

/// Decodes a list response (`PodList`, `SecretList`, …). The list itself must be well formed
/// and carry `metadata.resourceVersion`; items are decoded one by one, and those that fail are
/// reported in [`Page::undecodable`].
pub fn decode_page<K: DeserializeOwned>(body: &[u8]) -> Result<Page<K>, serde_json::Error> {
    let raw: RawList = serde_json::from_slice(body)?;
    let mut items = Vec::new();
    let mut bad = Vec::new();
    for item in raw.items.unwrap_or_default() {
        match decode_object::<K>("LIST", Some(item)) {
            Ok(k) => items.push(k),
            Err(u) => bad.push(*u),
        }
    }
    Ok(Page {
        resource_version: raw.metadata.resource_version,
        continue_token: raw.metadata.continue_token.filter(|t| !t.is_empty()),
        items,
        undecodable: bad,
    })
}

/// What is listed and watched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The pods bound to this node (`fieldSelector=spec.nodeName=NODE`).
    PodsOnNode { node: String },
    /// One ConfigMap, by `fieldSelector=metadata.name=NAME`.
    ConfigMap { namespace: String, name: String },
    /// One Secret, by `fieldSelector=metadata.name=NAME` (07h, 07j).
    Secret { namespace: String, name: String },
    /// Every Service in the cluster (the service environment variables).
    Services,
}

impl Target {
    fn list(&self, opts: &ListOptions) -> Request {
        match self {
            Target::PodsOnNode { node } => request::list_pods_on_node(node, opts),
            Target::ConfigMap { namespace, name } => {
                request::list_configmap_by_name(namespace, name, opts)
            }
            Target::Secret { namespace, name } => {
                request::list_secret_by_name(namespace, name, opts)
            }
            Target::Services => request::list_services(opts),
        }
    }

    fn watch(&self, opts: &WatchOptions) -> Request {
        match self {
            Target::PodsOnNode { node } => request::watch_pods_on_node(node, opts),
            Target::ConfigMap { namespace, name } => {
                request::watch_configmap_by_name(namespace, name, opts)
            }
            Target::Secret { namespace, name } => {
                request::watch_secret_by_name(namespace, name, opts)
            }
            Target::Services => request::watch_services(opts),
        }
    }
}

/// Tunables of a [`Watcher`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// `limit` of each list page (ignored by the server for the first, cached list).
    pub page_limit: Option<u32>,
    /// `timeoutSeconds` of each watch: the server ends the stream cleanly after this long. The
    /// client's idle read timeout must be longer.
    pub timeout_seconds: u32,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig {
            page_limit: Some(500),
            timeout_seconds: 300,
        }
    }
}

/// Where the watcher is.
#[derive(Clone, Debug, PartialEq)]
pub enum WatchState<K> {
    /// Reading a list, page by page.
    Listing {
        /// `resourceVersion` of the first page: `Some("0")` at start (watch cache), `None`
        /// after a 410 (quorum read: the cache may be behind what we already saw).
        resource_version: Option<String>,
        /// `None` for the first page.
        continue_token: Option<String>,
        items_so_far: Vec<K>,
        /// UIDs of list items that did not decode: the Store keeps what it has for them.
        undecodable_uids: Vec<String>,
    },
    /// Streaming changes after `resource_version`.
    Watching {
        resource_version: String,
        /// Events (bookmarks included) received since this watch was requested.
        events_in_stream: u32,
    },
}

/// How long to wait before sending the next request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    Immediately,
    /// Retry number `attempt` (0-based) of a run of failures: see
    /// [`super::backoff::BackoffPolicy::delay`]. `retry_after` is the server's request.
    Backoff {
        attempt: u32,
        retry_after: Option<std::time::Duration>,
    },
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Keep reading the current watch stream.
    KeepReading,
    /// Drop any stream; wait; send this list request; feed the result back as [`Input::Page`].
    List { request: Request, wait: Wait },
    /// Drop any stream; wait; open this watch; feed its events, end or failure back (a watch
    /// that fails to open is an [`Input::StreamError`]).
    Watch { request: Request, wait: Wait },
}

/// What the driver observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Input<K> {
    /// The answer to [`Next::List`].
    Page(Result<Page<K>, ApiError>),
    /// A decoded watch line.
    Event(WatchEvent<K>),
    /// The stream ended cleanly (the server's `timeoutSeconds`, or a closed stream after an
    /// `ERROR` event).
    StreamEnd,
    /// The watch could not be opened (HTTP error, connect failure) or broke mid-stream (reset,
    /// idle timeout, a line that is not JSON).
    StreamError(ApiError),
}

/// What the Store should learn.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheEvent<K> {
    /// The complete set after a (re)list: replace the Store wholesale, keeping the entries of
    /// `keep_uids` (objects that exist but did not decode).
    Relisted {
        objects: Vec<K>,
        keep_uids: Vec<String>,
    },
    /// ADDED or MODIFIED.
    Applied(K),
    Deleted(K),
}

/// The result of one [`Watcher::step`].
#[derive(Clone, Debug, PartialEq)]
pub struct Step<K> {
    pub next: Next,
    /// For [`Store::apply`], in order.
    pub events: Vec<CacheEvent<K>>,
    /// Objects that did not decode: report them (the watch goes on).
    pub undecodable: Vec<Undecodable>,
    /// The error that made the watcher relist or back off, for the driver to log: this step is
    /// where that decision was made.
    pub error: Option<ApiError>,
}

impl<K> Step<K> {
    fn next(next: Next) -> Step<K> {
        Step {
            next,
            events: Vec::new(),
            undecodable: Vec::new(),
            error: None,
        }
    }
}

/// The list+watch state machine for one [`Target`].
#[derive(Clone, Debug)]
pub struct Watcher<K> {
    target: Target,
    config: WatchConfig,
    state: WatchState<K>,
    /// Consecutive failures without a working watch in between, for backoff. Reset when a watch
    /// delivers an event.
    failures: u32,
}

impl<K: Object> Watcher<K> {
    /// A watcher about to make its first list (`resourceVersion=0`). Ask [`Watcher::resume`]
    /// for the first request.
    pub fn new(target: Target, config: WatchConfig) -> Watcher<K> {
        Watcher {
            target,
            config,
            state: WatchState::Listing {
                resource_version: Some("0".into()),
                continue_token: None,
                items_so_far: Vec::new(),
                undecodable_uids: Vec::new(),
            },
            failures: 0,
        }
    }

    pub fn state(&self) -> &WatchState<K> {
        &self.state
    }

    /// The request for the current state, sent at once: the first request after
    /// [`Watcher::new`].
    pub fn resume(&mut self) -> Next {
        self.request(Wait::Immediately)
    }

    /// Feeds one observation in; says what to do next and what the Store should learn.
    pub fn step(&mut self, input: Input<K>) -> Step<K> {
        match input {
            Input::Page(result) => self.on_page(result),
            Input::Event(event) => self.on_event(event),
            Input::StreamEnd => self.on_stream_end(),
            Input::StreamError(e) => self.on_stream_error(e),
        }
    }

    /// The request for the current state. A watch starts a new stream, so its event count
    /// restarts.
    fn request(&mut self, wait: Wait) -> Next {
        match &mut self.state {
            WatchState::Listing {
                resource_version,
                continue_token,
                ..
            } => Next::List {
                request: self.target.list(&ListOptions {
                    limit: self.config.page_limit,
                    continue_token: continue_token.clone(),
                    resource_version: resource_version.clone(),
                }),
                wait,
            },
            WatchState::Watching {
                resource_version,
                events_in_stream,
            } => {
                *events_in_stream = 0;
                Next::Watch {
                    request: self.target.watch(&WatchOptions {
                        resource_version: Some(resource_version.clone()),
                        allow_bookmarks: true,
                        timeout_seconds: Some(self.config.timeout_seconds),
                    }),
                    wait,
                }
            }
        }
    }

    fn backoff(&mut self, error: &ApiError) -> Wait {
        self.failures = self.failures.saturating_add(1);
        Wait::Backoff {
            attempt: self.failures - 1,
            retry_after: error.retry_after(),
        }
    }

    /// Back to page 1 as a quorum read: after a 410 the watch cache may be older than what we
    /// have already seen, and going back in time would resurrect deleted objects.
    fn relist(&mut self) {
        self.state = WatchState::Listing {
            resource_version: None,
            continue_token: None,
            items_so_far: Vec::new(),
            undecodable_uids: Vec::new(),
        };
    }

    /// An input that does not fit the state (e.g. a stream event after the watcher moved on to
    /// list): the driver broke the contract. Ask again for the current state's request, which
    /// is always safe to repeat.
    fn out_of_turn(&mut self) -> Step<K> {
        Step::next(self.request(Wait::Immediately))
    }

    fn on_page(&mut self, result: Result<Page<K>, ApiError>) -> Step<K> {
        let WatchState::Listing {
            continue_token,
            items_so_far,
            undecodable_uids,
            ..
        } = &mut self.state
        else {
            return self.out_of_turn();
        };
        match result {
            Ok(page) => {
                items_so_far.extend(page.items);
                undecodable_uids.extend(page.undecodable.iter().filter_map(|u| u.uid.clone()));
                let undecodable = page.undecodable;
                if let Some(token) = page.continue_token {
                    *continue_token = Some(token);
                    let mut step = Step::next(self.request(Wait::Immediately));
                    step.undecodable = undecodable;
                    return step;
                }
                let objects = std::mem::take(items_so_far);
                let keep_uids = std::mem::take(undecodable_uids);
                self.state = WatchState::Watching {
                    resource_version: page.resource_version,
                    events_in_stream: 0,
                };
                Step {
                    next: self.request(Wait::Immediately),
                    events: vec![CacheEvent::Relisted { objects, keep_uids }],
                    undecodable,
                    error: None,
                }
            }
            Err(e) => {
                if matches!(e, ApiError::Expired { .. }) {
                    // An expired continue token (03f) or a compacted resourceVersion (03c): the
                    // fresh token in the Status would give an inconsistent list, start over.
                    self.relist();
                }
                let wait = self.backoff(&e);
                let mut step = Step::next(self.request(wait));
                step.error = Some(e);
                step
            }
        }
    }

    fn on_event(&mut self, event: WatchEvent<K>) -> Step<K> {
        let WatchState::Watching {
            resource_version,
            events_in_stream,
        } = &mut self.state
        else {
            return self.out_of_turn();
        };
        let mut step = Step::next(Next::KeepReading);
        let mut advance = |rv: Option<&String>| {
            if let Some(rv) = rv {
                resource_version.clone_from(rv);
            }
        };
        match event {
            WatchEvent::Added(k) | WatchEvent::Modified(k) => {
                advance(k.metadata().resource_version.as_ref());
                step.events.push(CacheEvent::Applied(k));
            }
            WatchEvent::Deleted(k) => {
                advance(k.metadata().resource_version.as_ref());
                step.events.push(CacheEvent::Deleted(k));
            }
            WatchEvent::Bookmark {
                resource_version: rv,
            } => advance(Some(&rv)),
            WatchEvent::Undecodable(u) => {
                // The resourceVersion is not advanced past an object we could not apply; the
                // next event or bookmark will move it on.
                step.undecodable.push(u);
            }
            WatchEvent::Error(status) => {
                let request = self.watch_ref();
                let e = ApiError::from_status_value(request, &status);
                return self.watch_failed(e);
            }
        }
        *events_in_stream = events_in_stream.saturating_add(1);
        self.failures = 0;
        step
    }

    fn on_stream_end(&mut self) -> Step<K> {
        let WatchState::Watching {
            events_in_stream, ..
        } = &self.state
        else {
            return self.out_of_turn();
        };
        if *events_in_stream > 0 {
            return Step::next(self.request(Wait::Immediately));
        }
        // Nothing at all, not even a bookmark: a resourceVersion the server has not reached
        // (03g) or a server that ends streams early. Resume, but do not spin.
        self.failures = self.failures.saturating_add(1);
        let wait = Wait::Backoff {
            attempt: self.failures - 1,
            retry_after: None,
        };
        Step::next(self.request(wait))
    }

    fn on_stream_error(&mut self, e: ApiError) -> Step<K> {
        if !matches!(self.state, WatchState::Watching { .. }) {
            return self.out_of_turn();
        }
        self.watch_failed(e)
    }

    /// A watch ended with an error: relist on 410, else resume from the last resourceVersion
    /// after backoff (for 403/422 too: retrying slowly is all a daemon can do, and the error is
    /// handed to the driver to log).
    fn watch_failed(&mut self, e: ApiError) -> Step<K> {
        if matches!(e, ApiError::Expired { .. }) {
            self.relist();
        }
        let wait = self.backoff(&e);
        let mut step = Step::next(self.request(wait));
        step.error = Some(e);
        step
    }

    fn watch_ref(&self) -> RequestRef {
        self.target.watch(&WatchOptions::default()).describe()
    }
}

/// A change to the cache, for the consumers of the watch (pod workers). The object is the one
/// the store holds: the store, the pod index and the pod's worker share one copy of a pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Delta<K> {
    Added(Arc<K>),
    Updated(Arc<K>),
    Deleted(Arc<K>),
}

/// The cache of watched objects, keyed by UID (a pod deleted and recreated under the same name
/// is a different pod).
#[derive(Clone, Debug)]
pub struct Store<K> {
    objects: HashMap<String, Arc<K>>,
}

impl<K> Default for Store<K> {
    fn default() -> Self {
        Store {
            objects: HashMap::new(),
        }
    }
}

/// What the store keeps of an object. Nothing on a node reads managedFields, and on a real API
/// server's objects they are the largest part (a JSON tree per field manager): dropped as
/// client-go's TransformStripManagedFields drops them from an informer's cache. A pod's lists
/// are shrunk to their length: serde grows a list by doubling as it decodes it, so a pod's one
/// container status sat in room for four (~2.7 KB a pod of slack, every pod of the node held
/// for as long as it lives).
fn trim<K: Object>(k: &mut K) {
    k.metadata_mut().managed_fields = None;
    if let Some(pod) = (k as &mut dyn std::any::Any).downcast_mut::<Pod>() {
        shrink_pod(pod);
    }
}

fn shrink<T>(v: &mut Option<Vec<T>>) {
    if let Some(v) = v {
        v.shrink_to_fit();
    }
}

fn shrink_container(c: &mut Container) {
    shrink(&mut c.args);
    shrink(&mut c.command);
    shrink(&mut c.env);
    shrink(&mut c.env_from);
    shrink(&mut c.ports);
    shrink(&mut c.volume_mounts);
}

fn shrink_pod(p: &mut Pod) {
    shrink(&mut p.metadata.owner_references);
    shrink(&mut p.metadata.finalizers);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers.shrink_to_fit();
        spec.containers.iter_mut().for_each(shrink_container);
        if let Some(init) = spec.init_containers.as_mut() {
            init.shrink_to_fit();
            init.iter_mut().for_each(shrink_container);
        }
        shrink(&mut spec.volumes);
        shrink(&mut spec.tolerations);
        shrink(&mut spec.image_pull_secrets);
        shrink(&mut spec.readiness_gates);
    }
    if let Some(st) = p.status.as_mut() {
        shrink(&mut st.conditions);
        shrink(&mut st.container_statuses);
        shrink(&mut st.init_container_statuses);
        shrink(&mut st.ephemeral_container_statuses);
        shrink(&mut st.pod_ips);
        shrink(&mut st.host_ips);
    }
}

fn uid_of<K: Object>(k: &K) -> Option<&str> {
    k.metadata().uid.as_deref()
}

fn rv_of<K: Object>(k: &K) -> Option<&str> {
    k.metadata().resource_version.as_deref()
}

impl<K: Object> Store<K> {
    pub fn new() -> Store<K> {
        Store::default()
    }

    pub fn get(&self, uid: &str) -> Option<&Arc<K>> {
        self.objects.get(uid)
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// All objects, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<K>> {
        self.objects.values()
    }

    /// Applies what the watcher saw and returns what changed. An object without a UID cannot be
    /// tracked and is ignored (the API server always sets one).
    pub fn apply(&mut self, event: CacheEvent<K>) -> Vec<Delta<K>> {
        match event {
            CacheEvent::Applied(k) => self.upsert(k).into_iter().collect(),
            CacheEvent::Deleted(k) => {
                let removed = uid_of(&k).and_then(|uid| self.objects.remove(uid));
                // Unknown UID: already gone (e.g. removed by a relist), never a second Deleted.
                removed
                    .map(|_| Delta::Deleted(Arc::new(k)))
                    .into_iter()
                    .collect()
            }
            CacheEvent::Relisted { objects, keep_uids } => self.replace(objects, &keep_uids),
        }
    }

    fn upsert(&mut self, mut k: K) -> Option<Delta<K>> {
        let uid = uid_of(&k)?.to_string();
        let known = match self.objects.get(&uid) {
            Some(old) if rv_of(old.as_ref()) == rv_of(&k) => return None,
            known => known.is_some(),
        };
        trim(&mut k);
        let k = Arc::new(k);
        self.objects.insert(uid, k.clone());
        Some(if known {
            Delta::Updated(k)
        } else {
            Delta::Added(k)
        })
    }

    /// Wholesale replacement after a relist: Deleted (sorted by UID) for what vanished, then
    /// Added/Updated in list order for what is new or changed.
    fn replace(&mut self, objects: Vec<K>, keep_uids: &[String]) -> Vec<Delta<K>> {
        let listed: HashSet<&str> = objects
            .iter()
            .filter_map(uid_of)
            .chain(keep_uids.iter().map(String::as_str))
            .collect();
        let mut gone: Vec<String> = self
            .objects
            .keys()
            .filter(|uid| !listed.contains(uid.as_str()))
            .cloned()
            .collect();
        gone.sort();
        let mut deltas: Vec<Delta<K>> = gone
            .iter()
            .filter_map(|uid| self.objects.remove(uid))
            .map(Delta::Deleted)
            .collect();
        deltas.extend(objects.into_iter().filter_map(|k| self.upsert(k)));
        deltas
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Pod, Secret};
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn the_store_keeps_a_pods_lists_at_their_length() {
        let conditions: Vec<serde_json::Value> = [
            "PodScheduled",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodReadyToStartContainers",
        ]
        .iter()
        .map(|t| serde_json::json!({"type": t, "status": "True"}))
        .collect();
        let text = serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u-1", "resourceVersion": "5",
                "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "c", "env": [{"name": "A", "value": "1"}]}]},
            "status": {"conditions": conditions,
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": true,
                    "restartCount": 0}]},
        })
        .to_string();
        let mut pod: Pod = decode_json(text.as_bytes()).unwrap();
        let conds = pod.status.as_ref().unwrap().conditions.as_ref().unwrap();
        assert!(
            conds.capacity() > conds.len(),
            "serde grew the list by doubling"
        );
        trim(&mut pod);
        let st = pod.status.as_ref().unwrap();
        for (cap, len) in [
            (st.conditions.as_ref().unwrap().capacity(), 5),
            (st.container_statuses.as_ref().unwrap().capacity(), 1),
            (
                pod.spec.as_ref().unwrap().containers[0]
                    .env
                    .as_ref()
                    .unwrap()
                    .capacity(),
                1,
            ),
        ] {
            assert_eq!(cap, len);
        }
        assert!(pod.metadata.managed_fields.is_none());
    }

    fn fixture(dir: &str, file: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/apiserver")
            .join(dir)
            .join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    fn page(dir: &str) -> Page<Pod> {
        decode_page(&fixture(dir, "response-body.json")).unwrap()
    }

    fn lines(dir: &str) -> Vec<WatchEvent<Pod>> {
        fixture(dir, "response-body.json")
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| decode_watch_line(l).unwrap())
            .collect()
    }

    fn pod(uid: &str, name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn watcher() -> Watcher<Pod> {
        Watcher::new(
            Target::PodsOnNode {
                node: "vk-node".into(),
            },
            WatchConfig {
                page_limit: Some(500),
                timeout_seconds: 300,
            },
        )
    }

    const SERVER: &str = "https://h";

    fn url_of(next: &Next) -> String {
        match next {
            Next::List { request, .. } | Next::Watch { request, .. } => request.url(SERVER),
            Next::KeepReading => "keep reading".into(),
        }
    }

    fn wait_of(next: &Next) -> Option<Wait> {
        match next {
            Next::List { wait, .. } | Next::Watch { wait, .. } => Some(*wait),
            Next::KeepReading => None,
        }
    }

    fn is_watch(next: &Next) -> bool {
        matches!(next, Next::Watch { .. })
    }

    fn rv(w: &Watcher<Pod>) -> Option<&str> {
        match w.state() {
            WatchState::Watching {
                resource_version, ..
            } => Some(resource_version),
            WatchState::Listing { .. } => None,
        }
    }

    fn names(deltas: &[Delta<Pod>]) -> Vec<String> {
        deltas
            .iter()
            .map(|d| {
                let (tag, p) = match d {
                    Delta::Added(p) => ("added", p),
                    Delta::Updated(p) => ("updated", p),
                    Delta::Deleted(p) => ("deleted", p),
                };
                format!(
                    "{tag} {}@{}",
                    p.metadata.name.as_deref().unwrap_or("?"),
                    p.metadata.resource_version.as_deref().unwrap_or("?")
                )
            })
            .collect()
    }

    /// Drives a watcher and a store with inputs; returns all deltas and the last step.
    fn run(
        w: &mut Watcher<Pod>,
        store: &mut Store<Pod>,
        inputs: Vec<Input<Pod>>,
    ) -> (Vec<Delta<Pod>>, Step<Pod>) {
        let mut deltas = Vec::new();
        let mut last = None;
        for input in inputs {
            let step = w.step(input);
            for ev in step.events.clone() {
                deltas.extend(store.apply(ev));
            }
            last = Some(step);
        }
        (deltas, last.expect("at least one input"))
    }

    fn expired(path: &str) -> ApiError {
        ApiError::Expired {
            request: RequestRef {
                method: request::Method::Get,
                path: path.into(),
            },
            message: "too old".into(),
            continue_token: None,
        }
    }

    fn transport() -> ApiError {
        ApiError::Transport {
            request: RequestRef {
                method: request::Method::Get,
                path: "/api/v1/pods".into(),
            },
            phase: super::super::error::TransportPhase::Exchange,
            message: "connection reset".into(),
        }
    }

    #[test]
    fn the_store_drops_managed_fields() {
        // The recorded list carries the real API server's managedFields.
        let listed = page("01-pods-list-by-node").items;
        assert!(listed.iter().any(|p| p.metadata.managed_fields.is_some()));
        let mut store = Store::new();
        let deltas = store.apply(CacheEvent::Relisted {
            objects: listed.clone(),
            keep_uids: vec![],
        });
        assert_eq!(deltas.len(), listed.len());
        for d in &deltas {
            let (Delta::Added(p) | Delta::Updated(p) | Delta::Deleted(p)) = d;
            assert_eq!(p.metadata.managed_fields, None);
            let stored = store.get(p.metadata.uid.as_deref().unwrap()).unwrap();
            assert!(Arc::ptr_eq(stored, p), "the delta is the stored object");
        }
    }

    // ---- decoding ----

    #[test]
    fn bookmark_with_null_containers_decodes_as_bookmark() {
        let events = lines("02-pods-watch");
        assert_eq!(events.len(), 7);
        assert_eq!(
            events[5],
            WatchEvent::Bookmark {
                resource_version: "2700".into()
            }
        );
        // (k8s-openapi 0.29 happens to accept `"containers":null`, but only the envelope type
        // says whether the object is a real Pod or a bookmark shell.)
    }

    #[test]
    fn typed_events_decode() {
        let events = lines("02-pods-watch");
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                WatchEvent::Added(_) => "ADDED",
                WatchEvent::Modified(_) => "MODIFIED",
                WatchEvent::Deleted(_) => "DELETED",
                WatchEvent::Bookmark { .. } => "BOOKMARK",
                WatchEvent::Error(_) => "ERROR",
                WatchEvent::Undecodable(_) => "UNDECODABLE",
            })
            .collect();
        assert_eq!(
            kinds,
            ["ADDED", "MODIFIED", "MODIFIED", "MODIFIED", "DELETED", "BOOKMARK", "BOOKMARK"]
        );
        let WatchEvent::Modified(p) = &events[2] else {
            panic!()
        };
        assert_eq!(p.metadata.deletion_grace_period_seconds, Some(30));
    }

    #[test]
    fn undecodable_object_is_reported_not_fatal() {
        let line = br#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bad","namespace":"ns","uid":"u-bad","resourceVersion":"9"},"spec":{"containers":[{"name":7}]}}}"#;
        match decode_watch_line::<Pod>(line).unwrap() {
            WatchEvent::Undecodable(u) => {
                assert_eq!(u.event_type, "MODIFIED");
                assert_eq!(u.uid.as_deref(), Some("u-bad"));
                assert_eq!(u.name.as_deref(), Some("bad"));
                assert_eq!(u.namespace.as_deref(), Some("ns"));
                assert_eq!(u.resource_version.as_deref(), Some("9"));
                // The object's own position in the line means nothing to a reader.
                assert_eq!(
                    u.message, "invalid type: integer `7`, expected a string",
                    "{}",
                    u.message
                );
            }
            other => panic!("{other:?}"),
        }
        match decode_watch_line::<Pod>(br#"{"type":"ADDED","object":null}"#).unwrap() {
            WatchEvent::Undecodable(u) => {
                assert_eq!(u.message, "invalid type: null, expected Pod");
                assert_eq!(u.name, None);
            }
            other => panic!("{other:?}"),
        }
        match decode_watch_line::<Pod>(br#"{"type":"WHATEVER","object":{}}"#).unwrap() {
            WatchEvent::Undecodable(u) => assert!(u.message.contains("unknown watch event type")),
            other => panic!("{other:?}"),
        }
        match decode_watch_line::<Pod>(br#"{"type":"BOOKMARK","object":{"metadata":{}}}"#).unwrap()
        {
            WatchEvent::Undecodable(u) => assert!(u.message.contains("bookmark")),
            other => panic!("{other:?}"),
        }
        assert!(decode_watch_line::<Pod>(b"not json").is_err());
        assert!(decode_watch_line::<Pod>(br#"{"object":{}}"#).is_err());
    }

    #[test]
    fn error_event_decodes_to_status() {
        let events = lines("03a-pods-watch-rv1-too-old-410-error-event");
        assert_eq!(events.len(), 1);
        let WatchEvent::Error(status) = &events[0] else {
            panic!("{:?}", events[0])
        };
        assert_eq!(status["code"], 410);
    }

    #[test]
    fn secret_watch_line_decodes() {
        let body = fixture(
            "07j-secret-watch-single-by-fieldselector",
            "response-body.json",
        );
        let line = body.split(|b| *b == b'\n').next().unwrap();
        let WatchEvent::Added(s) = decode_watch_line::<Secret>(line).unwrap() else {
            panic!()
        };
        assert_eq!(s.metadata.name.as_deref(), Some("secret-used"));
        let page: Page<Secret> = decode_page(&fixture(
            "07h-secret-list-single-by-fieldselector-200",
            "response-body.json",
        ))
        .unwrap();
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.resource_version, "2741");
    }

    #[test]
    fn pages_decode() {
        let p = page("01-pods-list-by-node");
        assert_eq!(p.resource_version, "2691");
        assert_eq!(p.continue_token, None);
        assert_eq!(p.items.len(), 3);
        assert!(p.undecodable.is_empty());
        let p = page("01c-pods-list-by-node-limit1-page1");
        assert_eq!(p.items.len(), 1);
        assert!(p.continue_token.as_deref().unwrap().starts_with("eyJ"));
        let p = page("01e-pods-list-by-node-limit1-page3-continue");
        assert!(p.items.is_empty() && p.continue_token.is_none());

        let p: Page<Pod> = decode_page(
            br#"{"kind":"PodList","metadata":{"resourceVersion":"5","continue":""},"items":[
                {"metadata":{"uid":"a","resourceVersion":"1"},"spec":{"containers":[]}},
                {"metadata":{"uid":"b","name":"bad","resourceVersion":"2"},"spec":{"containers":[{"name":7}]}}]}"#,
        )
        .unwrap();
        assert_eq!(p.continue_token, None);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.undecodable.len(), 1);
        assert_eq!(p.undecodable[0].event_type, "LIST");
        assert_eq!(p.undecodable[0].uid.as_deref(), Some("b"));
        // "items": null is an empty list; a list without a resourceVersion is an error.
        let p: Page<Pod> =
            decode_page(br#"{"metadata":{"resourceVersion":"5"},"items":null}"#).unwrap();
        assert!(p.items.is_empty());
        assert!(decode_page::<Pod>(br#"{"metadata":{},"items":[]}"#).is_err());
    }

    // ---- the state machine ----

    #[test]
    fn starts_with_a_cached_list_then_watches_from_its_rv() {
        let mut w = watcher();
        let first = w.resume();
        assert_eq!(
            url_of(&first),
            "https://h/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=500&resourceVersion=0"
        );
        assert_eq!(wait_of(&first), Some(Wait::Immediately));

        let mut store = Store::new();
        let (deltas, step) = run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page("01-pods-list-by-node")))],
        );
        assert_eq!(
            names(&deltas),
            ["added p-del@2687", "added p1@2685", "added p2@2686"]
        );
        assert!(is_watch(&step.next));
        assert_eq!(
            url_of(&step.next),
            "https://h/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&watch=true&resourceVersion=2691&allowWatchBookmarks=true&timeoutSeconds=300"
        );
        assert_eq!(rv(&w), Some("2691"));
    }

    #[test]
    fn paged_list_follows_continue_tokens() {
        let mut w = watcher();
        let mut store = Store::new();
        let s1 = w.step(Input::Page(Ok(page("01c-pods-list-by-node-limit1-page1"))));
        assert!(s1.events.is_empty(), "no cache event before the last page");
        assert_eq!(
            url_of(&s1.next),
            "https://h/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=500&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDUyOCwic3RhcnQiOiJmaXh0dXJlcy9wMVx1MDAwMCJ9"
        );
        let s2 = w.step(Input::Page(Ok(page(
            "01d-pods-list-by-node-limit1-page2-continue",
        ))));
        assert!(s2.events.is_empty());
        assert!(url_of(&s2.next).ends_with("&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDUyOCwic3RhcnQiOiJmaXh0dXJlcy9wMlx1MDAwMCJ9"));
        let (deltas, s3) = run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page(
                "01e-pods-list-by-node-limit1-page3-continue",
            )))],
        );
        assert_eq!(names(&deltas), ["added p1@2737", "added p2@2738"]);
        assert!(url_of(&s3.next).contains("&watch=true&resourceVersion=4528&"));
    }

    #[test]
    fn replays_stream_02_then_resumes_after_clean_end() {
        let mut w = watcher();
        let mut store = Store::new();
        run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page("01-pods-list-by-node")))],
        );

        let mut deltas = Vec::new();
        let mut rvs = Vec::new();
        for event in lines("02-pods-watch") {
            let step = w.step(Input::Event(event));
            assert_eq!(step.next, Next::KeepReading);
            assert!(step.error.is_none() && step.undecodable.is_empty());
            for ev in step.events {
                deltas.extend(store.apply(ev));
            }
            rvs.push(rv(&w).unwrap().to_string());
        }
        assert_eq!(
            names(&deltas),
            [
                "added w1@2692",
                "updated w1@2694",
                "updated w1@2696",
                "updated w1@2699",
                "deleted w1@2700"
            ]
        );
        assert_eq!(
            rvs,
            ["2692", "2694", "2696", "2699", "2700", "2700", "2700"]
        );
        assert_eq!(store.len(), 3);

        // The server's timeoutSeconds: resume at once from the last RV.
        let step = w.step(Input::StreamEnd);
        assert_eq!(wait_of(&step.next), Some(Wait::Immediately));
        assert!(url_of(&step.next).contains("&watch=true&resourceVersion=2700&"));
    }

    #[test]
    fn replays_02e_and_02f_without_duplicates() {
        for (dir, final_rv) in [
            ("02e-pods-watch-rv0-long-periodic-bookmark", "2776"),
            ("02f-pods-watch-no-rv-from-etcd", "2738"),
        ] {
            let mut w = watcher();
            let mut store = Store::new();
            run(
                &mut w,
                &mut store,
                vec![Input::Page(Ok(page("01-pods-list-by-node")))],
            );
            let inputs = lines(dir).into_iter().map(Input::Event).collect();
            let (deltas, last) = run(&mut w, &mut store, inputs);
            // The synthetic ADDEDs repeat what the list already had (same RVs): no delta.
            assert_eq!(
                names(&deltas),
                [
                    "updated p1@2725",
                    "updated p1@2730",
                    "updated p1@2731",
                    "updated p1@2735",
                    "updated p1@2737",
                    "updated p2@2738"
                ],
                "{dir}"
            );
            assert_eq!(last.next, Next::KeepReading);
            assert_eq!(rv(&w), Some(final_rv), "{dir}");

            // Later (case 10 deleted p-del while nobody watched) a relist replaces the store.
            let relist = w.step(Input::StreamError(expired("/api/v1/pods")));
            assert!(
                url_of(&relist.next).ends_with("?fieldSelector=spec.nodeName%3Dvk-node&limit=500")
            );
            let (deltas, _) = run(
                &mut w,
                &mut store,
                vec![Input::Page(Ok(page(
                    "01b-pods-list-by-node-rv0-from-cache",
                )))],
            );
            assert_eq!(names(&deltas), ["deleted p-del@2687"], "{dir}");
            assert_eq!(store.len(), 2);
        }
    }

    #[test]
    fn error_event_410_relists_with_a_quorum_read() {
        let mut w = watcher();
        let mut store = Store::new();
        run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page("01-pods-list-by-node")))],
        );
        let mut steps: Vec<Step<Pod>> = lines("03a-pods-watch-rv1-too-old-410-error-event")
            .into_iter()
            .map(|e| w.step(Input::Event(e)))
            .collect();
        let step = steps.pop().unwrap();
        assert!(step.events.is_empty());
        assert!(matches!(
            &step.error,
            Some(ApiError::Expired { message, .. }) if message == "too old resource version: 1 (658)"
        ));
        match &step.next {
            Next::List { request, .. } => {
                assert_eq!(
                    request.url(SERVER),
                    "https://h/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=500"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            w.state(),
            WatchState::Listing {
                resource_version: None,
                ..
            }
        ));
        // The store keeps serving until the relist completes.
        assert_eq!(store.len(), 3);
        let (deltas, step) = run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page("03b-pods-list-rv1-notolderthan")))],
        );
        assert!(deltas.is_empty(), "nothing changed: {:?}", names(&deltas));
        assert!(url_of(&step.next).contains("resourceVersion=2700"));
    }

    #[test]
    fn http_410_on_continue_restarts_the_list() {
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01c-pods-list-by-node-limit1-page1"))));
        let err = ApiError::Expired {
            request: RequestRef {
                method: request::Method::Get,
                path: "/api/v1/pods".into(),
            },
            message: "The provided continue parameter is too old".into(),
            continue_token: Some("eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6LTF9".into()),
        };
        let step = w.step(Input::Page(Err(err)));
        assert_eq!(
            url_of(&step.next),
            "https://h/api/v1/pods?fieldSelector=spec.nodeName%3Dvk-node&limit=500"
        );
        match w.state() {
            WatchState::Listing {
                items_so_far,
                continue_token,
                resource_version,
                ..
            } => {
                assert!(items_so_far.is_empty(), "partial pages are dropped");
                assert_eq!(continue_token, &None);
                assert_eq!(resource_version, &None);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_errors_retry_the_same_page_with_growing_backoff() {
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01c-pods-list-by-node-limit1-page1"))));
        let e504 = ApiError::from_response(
            RequestRef {
                method: request::Method::Get,
                path: "/api/v1/pods".into(),
            },
            504,
            &fixture(
                "03h-pods-list-rv-too-large-notolderthan",
                "response-body.json",
            ),
            Some("1"),
        );
        let s1 = w.step(Input::Page(Err(e504.clone())));
        assert!(url_of(&s1.next).contains("&continue=eyJ"), "same page");
        assert_eq!(
            wait_of(&s1.next),
            Some(Wait::Backoff {
                attempt: 0,
                retry_after: Some(Duration::from_secs(1))
            })
        );
        assert_eq!(s1.error, Some(e504));
        let s2 = w.step(Input::Page(Err(transport())));
        assert_eq!(
            wait_of(&s2.next),
            Some(Wait::Backoff {
                attempt: 1,
                retry_after: None
            })
        );
        // Still holding page 1's items.
        let (deltas, _) = run(
            &mut w,
            &mut Store::new(),
            vec![Input::Page(Ok(page(
                "01e-pods-list-by-node-limit1-page3-continue",
            )))],
        );
        assert_eq!(names(&deltas), ["added p1@2737"]);
    }

    #[test]
    fn dropped_connection_resumes_from_last_rv_with_backoff() {
        let mut w = watcher();
        let mut store = Store::new();
        run(
            &mut w,
            &mut store,
            vec![Input::Page(Ok(page("01-pods-list-by-node")))],
        );
        let events = lines("02-pods-watch");
        run(
            &mut w,
            &mut store,
            events[..2].iter().cloned().map(Input::Event).collect(),
        );
        let s = w.step(Input::StreamError(transport()));
        assert!(url_of(&s.next).contains("&resourceVersion=2694&"));
        assert_eq!(
            wait_of(&s.next),
            Some(Wait::Backoff {
                attempt: 0,
                retry_after: None
            })
        );
        assert_eq!(s.error, Some(transport()));
        // Fails to reconnect: backoff grows.
        let s = w.step(Input::StreamError(transport()));
        assert_eq!(
            wait_of(&s.next),
            Some(Wait::Backoff {
                attempt: 1,
                retry_after: None
            })
        );
        // Reconnected: the server replays from 2694; an event resets the backoff.
        let (deltas, _) = run(
            &mut w,
            &mut store,
            events[1..].iter().cloned().map(Input::Event).collect(),
        );
        assert_eq!(
            names(&deltas),
            ["updated w1@2696", "updated w1@2699", "deleted w1@2700"],
            "2694 was not applied twice"
        );
        let s = w.step(Input::StreamError(transport()));
        assert_eq!(
            wait_of(&s.next),
            Some(Wait::Backoff {
                attempt: 0,
                retry_after: None
            })
        );
    }

    #[test]
    fn empty_stream_end_resumes_with_backoff() {
        // 03g: a resourceVersion the server has not reached yet: no events, clean end.
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        let s1 = w.step(Input::StreamEnd);
        assert!(url_of(&s1.next).contains("&resourceVersion=2691&"));
        assert_eq!(
            wait_of(&s1.next),
            Some(Wait::Backoff {
                attempt: 0,
                retry_after: None
            })
        );
        assert!(s1.error.is_none());
        let s2 = w.step(Input::StreamEnd);
        assert_eq!(
            wait_of(&s2.next),
            Some(Wait::Backoff {
                attempt: 1,
                retry_after: None
            })
        );
        // A bookmark counts as life.
        w.step(Input::Event(WatchEvent::Bookmark {
            resource_version: "2800".into(),
        }));
        let s3 = w.step(Input::StreamEnd);
        assert_eq!(wait_of(&s3.next), Some(Wait::Immediately));
        assert!(url_of(&s3.next).contains("&resourceVersion=2800&"));
    }

    #[test]
    fn watch_open_errors_resume_and_are_reported() {
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        let forbidden = ApiError::Forbidden {
            request: RequestRef {
                method: request::Method::Get,
                path: "/api/v1/pods".into(),
            },
            message: "no".into(),
        };
        let s = w.step(Input::StreamError(forbidden.clone()));
        assert!(is_watch(&s.next));
        assert!(url_of(&s.next).contains("&resourceVersion=2691&"));
        assert_eq!(s.error, Some(forbidden));
        // An HTTP 410 on the watch itself relists, like the ERROR event.
        let s = w.step(Input::StreamError(expired("/api/v1/pods")));
        assert!(matches!(s.next, Next::List { .. }));
    }

    #[test]
    fn non_410_error_event_resumes_the_watch() {
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        let s = w.step(Input::Event(WatchEvent::Error(serde_json::json!({
            "kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd"
        }))));
        assert!(is_watch(&s.next));
        assert!(matches!(
            s.error,
            Some(ApiError::ServerError { code: 500, .. })
        ));
        assert_eq!(
            wait_of(&s.next),
            Some(Wait::Backoff {
                attempt: 0,
                retry_after: None
            })
        );
    }

    #[test]
    fn undecodable_event_does_not_advance_or_stop_the_watch() {
        let mut w = watcher();
        w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        let line = br#"{"type":"MODIFIED","object":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bad","uid":"u","resourceVersion":"2695"},"spec":{"containers":[{"name":7}]}}}"#;
        let s = w.step(Input::Event(decode_watch_line(line).unwrap()));
        assert_eq!(s.next, Next::KeepReading);
        assert!(s.events.is_empty());
        assert_eq!(s.undecodable.len(), 1);
        assert_eq!(rv(&w), Some("2691"));
    }

    #[test]
    fn undecodable_list_item_is_kept_in_the_store_on_relist() {
        let mut store = Store::new();
        store.apply(CacheEvent::Applied(pod("a", "a", "1")));
        store.apply(CacheEvent::Applied(pod("b", "b", "1")));
        let mut w = watcher();
        let page: Page<Pod> = decode_page(
            br#"{"metadata":{"resourceVersion":"5"},"items":[
                {"metadata":{"uid":"a","name":"a","resourceVersion":"1"},"spec":{"containers":[]}},
                {"metadata":{"uid":"b","name":"b","resourceVersion":"2"},"spec":{"containers":[{"name":7}]}}]}"#,
        )
        .unwrap();
        let (deltas, step) = run(&mut w, &mut store, vec![Input::Page(Ok(page))]);
        assert!(deltas.is_empty(), "{:?}", names(&deltas));
        assert_eq!(step.undecodable.len(), 1);
        assert!(store.get("b").is_some());
    }

    #[test]
    fn inputs_out_of_turn_reissue_the_current_request() {
        let mut w = watcher();
        let s = w.step(Input::StreamEnd);
        assert!(matches!(s.next, Next::List { .. }));
        let s = w.step(Input::Event(WatchEvent::Bookmark {
            resource_version: "9".into(),
        }));
        assert!(matches!(s.next, Next::List { .. }));
        let s = w.step(Input::StreamError(transport()));
        assert!(matches!(s.next, Next::List { .. }));
        w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        let s = w.step(Input::Page(Ok(page("01-pods-list-by-node"))));
        assert!(is_watch(&s.next));
        assert!(s.events.is_empty());
        assert_eq!(rv(&w), Some("2691"));
    }

    #[test]
    fn secret_target_builds_single_object_requests() {
        let mut w: Watcher<Secret> = Watcher::new(
            Target::Secret {
                namespace: "fixtures".into(),
                name: "secret-used".into(),
            },
            WatchConfig {
                page_limit: None,
                timeout_seconds: 2,
            },
        );
        assert_eq!(
            url_of(&w.resume()),
            "https://h/api/v1/namespaces/fixtures/secrets?fieldSelector=metadata.name%3Dsecret-used&resourceVersion=0"
        );
        let page: Page<Secret> = decode_page(&fixture(
            "07h-secret-list-single-by-fieldselector-200",
            "response-body.json",
        ))
        .unwrap();
        let s = w.step(Input::Page(Ok(page)));
        let mut store = Store::new();
        for ev in s.events {
            store.apply(ev);
        }
        assert_eq!(store.len(), 1);
        assert_eq!(
            url_of(&s.next),
            "https://h/api/v1/namespaces/fixtures/secrets?fieldSelector=metadata.name%3Dsecret-used&watch=true&resourceVersion=2741&allowWatchBookmarks=true&timeoutSeconds=2"
        );
    }

    // ---- the store ----

    #[test]
    fn store_table() {
        struct Case {
            name: &'static str,
            before: Vec<Pod>,
            event: CacheEvent<Pod>,
            want: Vec<&'static str>,
            after: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "add new",
                before: vec![],
                event: CacheEvent::Applied(pod("u1", "a", "1")),
                want: vec!["added a@1"],
                after: vec!["u1"],
            },
            Case {
                name: "same rv is a no-op",
                before: vec![pod("u1", "a", "1")],
                event: CacheEvent::Applied(pod("u1", "a", "1")),
                want: vec![],
                after: vec!["u1"],
            },
            Case {
                name: "new rv updates",
                before: vec![pod("u1", "a", "1")],
                event: CacheEvent::Applied(pod("u1", "a", "2")),
                want: vec!["updated a@2"],
                after: vec!["u1"],
            },
            Case {
                name: "delete known",
                before: vec![pod("u1", "a", "1")],
                event: CacheEvent::Deleted(pod("u1", "a", "3")),
                want: vec!["deleted a@3"],
                after: vec![],
            },
            Case {
                name: "delete unknown is silent",
                before: vec![pod("u1", "a", "1")],
                event: CacheEvent::Deleted(pod("u2", "b", "3")),
                want: vec![],
                after: vec!["u1"],
            },
            Case {
                name: "recreated under the same name is a different pod",
                before: vec![pod("u1", "a", "1")],
                event: CacheEvent::Relisted {
                    objects: vec![pod("u2", "a", "5")],
                    keep_uids: vec![],
                },
                want: vec!["deleted a@1", "added a@5"],
                after: vec!["u2"],
            },
            Case {
                name: "relist: vanished, changed, unchanged, new",
                before: vec![
                    pod("u3", "c", "1"),
                    pod("u1", "a", "1"),
                    pod("u2", "b", "1"),
                ],
                event: CacheEvent::Relisted {
                    objects: vec![
                        pod("u2", "b", "2"),
                        pod("u4", "d", "1"),
                        pod("u3", "c", "1"),
                    ],
                    keep_uids: vec![],
                },
                want: vec!["deleted a@1", "updated b@2", "added d@1"],
                after: vec!["u2", "u3", "u4"],
            },
            Case {
                name: "relist to empty deletes all in uid order",
                before: vec![pod("u2", "b", "1"), pod("u1", "a", "1")],
                event: CacheEvent::Relisted {
                    objects: vec![],
                    keep_uids: vec![],
                },
                want: vec!["deleted a@1", "deleted b@1"],
                after: vec![],
            },
            Case {
                name: "object without uid is ignored",
                before: vec![],
                event: CacheEvent::Applied(Pod::default()),
                want: vec![],
                after: vec![],
            },
        ];
        for c in cases {
            let mut store = Store::new();
            for p in c.before {
                store.apply(CacheEvent::Applied(p));
            }
            let got = store.apply(c.event);
            assert_eq!(names(&got), c.want, "{}", c.name);
            let mut uids: Vec<&str> = store
                .iter()
                .filter_map(|p| p.metadata.uid.as_deref())
                .collect();
            uids.sort();
            assert_eq!(uids, c.after, "{}", c.name);
            assert_eq!(store.is_empty(), c.after.is_empty(), "{}", c.name);
        }
    }
}
