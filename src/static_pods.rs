//! Static pods: the pods described by manifest files in `--pod-manifest-path`.
//!
//! Owns turning a manifest file (YAML or JSON, one pod per file) into the pod the kubelet would
//! run — API defaults, name suffixed with the node name, a UID derived from the content, the
//! `kubernetes.io/config.*` annotations — and noticing when files are added, changed or removed.
//! A changed manifest is a new pod (new UID), exactly as with the kubelet: the old one is
//! stopped, the new one started. A bad manifest is reported once per version of the file and
//! never stops the other pods.
//!
//! The parse and the diff are pure; [`ManifestDir::scan`] reads the directory and
//! [`spawn_watcher`] polls it on a thread, sending [`PodEvent`]s.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::Sender;
use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};

use crate::kube::watch::decode_json;
use crate::pod::{self, defaults};
use crate::source::{PodEvent, SourcesReady, CONFIG_HASH, CONFIG_SEEN, CONFIG_SOURCE};

/// A manifest that cannot become a pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("manifest {path}: invalid pod: {}", .problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("manifest {path}: pod {key} is already defined by {other}")]
    Duplicate {
        path: PathBuf,
        key: String,
        other: PathBuf,
    },
    #[error("manifest directory {path}: {message}")]
    Dir { path: PathBuf, message: String },
}

/// Parses one manifest into the static pod the kubelet would run on `node_name`.
/// `seen` is the value of the config.seen annotation (the time the file was first read).
pub fn parse_manifest(
    path: &Path,
    content: &[u8],
    node_name: &str,
    seen: &str,
) -> Result<Pod, ManifestError> {
    let parse_err = |message: String| ManifestError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let text = std::str::from_utf8(content).map_err(|e| parse_err(format!("not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(parse_err("empty file".into()));
    }
    let value: serde_json::Value = if trimmed.starts_with('{') {
        serde_json::from_slice(content).map_err(|e| parse_err(format!("invalid JSON: {e}")))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| parse_err(format!("invalid YAML: {e}")))?
    };
    match (
        value.get("apiVersion").and_then(|v| v.as_str()),
        value.get("kind").and_then(|v| v.as_str()),
    ) {
        (Some("v1"), Some("Pod")) => {}
        (api, kind) => {
            return Err(parse_err(format!(
                "not a v1 Pod (apiVersion {:?}, kind {:?}); one pod per file",
                api.unwrap_or(""),
                kind.unwrap_or("")
            )))
        }
    }
    // Decoded from JSON text, not from the Value, so that one decoder of Pod is compiled
    // (kube::watch::decode_json); a manifest is read once, the round trip costs nothing.
    let json =
        serde_json::to_vec(&value).map_err(|e| parse_err(format!("not a valid Pod: {e}")))?;
    let mut pod: Pod =
        decode_json(&json).map_err(|e| parse_err(format!("not a valid Pod: {e}")))?;
    defaults::apply_defaults(&mut pod);
    defaults::validate(&pod).map_err(|problems| ManifestError::Invalid {
        path: path.to_path_buf(),
        problems,
    })?;

    let meta = &mut pod.metadata;
    let uid = match meta.uid.as_deref().filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => static_uid(node_name, path, content),
    };
    let base_name = meta.name.clone().unwrap_or_default();
    meta.name = Some(format!("{base_name}-{node_name}"));
    meta.namespace.get_or_insert_with(|| "default".into());
    meta.uid = Some(uid.clone());
    let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(CONFIG_HASH.into(), uid);
    ann.insert(CONFIG_SOURCE.into(), "file".into());
    ann.insert(CONFIG_SEEN.into(), seen.into());
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_name = Some(node_name.into());
        // Static pods tolerate every NoExecute taint: nothing may evict them from their node.
        let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
        let all = Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        };
        if !tolerations.contains(&all) {
            tolerations.push(all);
        }
    }
    pod.status.get_or_insert_with(|| PodStatus {
        phase: Some("Pending".into()),
        ..Default::default()
    });
    Ok(pod)
}

/// The UID of a static pod: a hash of the node, the file and its content (like the kubelet's
/// md5 of host, file and object), so that the same file gives the same UID across restarts and a
/// changed file a new one.
pub fn static_uid(node_name: &str, path: &Path, content: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(format!("host:{node_name}\0file:{}\0", path.display()).as_bytes());
    ctx.update(content);
    ctx.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What identifies a version of a file cheaply (without reading it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    ino: u64,
}

struct Entry {
    stamp: Stamp,
    parsed: Result<Arc<Pod>, ManifestError>,
}

/// The manifest directory and what was last read from it.
pub struct ManifestDir {
    dir: PathBuf,
    node_name: String,
    files: BTreeMap<PathBuf, Entry>,
    /// The directory could not be read, and that was reported.
    dir_error_reported: bool,
    /// Files reported as defining an already defined pod.
    dups_reported: std::collections::BTreeSet<PathBuf>,
}

/// The outcome of one scan: the pods the directory defines now, keyed by UID, and the problems
/// that are new since the last scan (each bad file version is reported once). `pods` is `None`
/// when the directory itself could not be read: nothing is known then, not "no pods".
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Option<BTreeMap<String, Arc<Pod>>>,
    pub new_errors: Vec<ManifestError>,
}

impl ManifestDir {
    pub fn new(dir: &Path, node_name: &str) -> ManifestDir {
        ManifestDir {
            dir: dir.to_path_buf(),
            node_name: node_name.to_string(),
            files: BTreeMap::new(),
            dir_error_reported: false,
            dups_reported: Default::default(),
        }
    }

    /// Reads the directory: files whose names do not start with '.', not recursing; only files
    /// that changed since the last scan are read and parsed again.
    pub fn scan(&mut self, now: &str) -> Scan {
        let mut scan = Scan::default();
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) => {
                // Report an unreadable directory once, not on every poll.
                if !std::mem::replace(&mut self.dir_error_reported, true) {
                    scan.new_errors.push(ManifestError::Dir {
                        path: self.dir.clone(),
                        message: e.to_string(),
                    });
                }
                // What was read before is kept: an unreadable directory (a typo in the path, a
                // permission change, a remount) must not stop the pods it defined.
                return scan;
            }
        };
        self.dir_error_reported = false;
        let mut present = Vec::new();
        for ent in listing.flatten() {
            let name = ent.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = ent.path();
            let Ok(md) = std::fs::metadata(&path) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            use std::os::unix::fs::MetadataExt;
            let stamp = Stamp {
                modified: md.modified().ok(),
                len: md.len(),
                ino: md.ino(),
            };
            present.push(path.clone());
            if self.files.get(&path).is_some_and(|e| e.stamp == stamp) {
                continue;
            }
            let parsed = match std::fs::read(&path) {
                Ok(content) => parse_manifest(&path, &content, &self.node_name, now).map(Arc::new),
                Err(e) => Err(ManifestError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                }),
            };
            if let Err(e) = &parsed {
                scan.new_errors.push(e.clone());
            }
            self.files.insert(path, Entry { stamp, parsed });
        }
        self.files.retain(|p, _| present.contains(p));

        // One pod per namespace/name: the first file (by name) wins.
        let mut pods = BTreeMap::new();
        let mut owners: HashMap<String, PathBuf> = HashMap::new();
        let mut dups = std::collections::BTreeSet::new();
        for (path, entry) in &self.files {
            let Ok(pod) = &entry.parsed else { continue };
            let key = pod::key(pod);
            if let Some(other) = owners.get(&key) {
                if !self.dups_reported.contains(path) {
                    scan.new_errors.push(ManifestError::Duplicate {
                        path: path.clone(),
                        key,
                        other: other.clone(),
                    });
                }
                dups.insert(path.clone());
                continue;
            }
            owners.insert(key, path.clone());
            pods.insert(pod::uid(pod).to_string(), pod.clone());
        }
        self.dups_reported = dups;
        scan.pods = Some(pods);
        scan
    }
}

/// The events that turn the pods of `old` into those of `new` (by UID; a pod whose content
/// changed has a new UID, so it is a Remove plus an Upsert).
pub fn diff(old: &BTreeMap<String, Arc<Pod>>, new: &BTreeMap<String, Arc<Pod>>) -> Vec<PodEvent> {
    let mut events: Vec<PodEvent> = old
        .keys()
        .filter(|uid| !new.contains_key(*uid))
        .map(|uid| PodEvent::Remove { uid: uid.clone() })
        .collect();
    events.extend(
        new.iter()
            .filter(|(uid, _)| !old.contains_key(*uid))
            .map(|(_, pod)| PodEvent::Upsert(pod.clone())),
    );
    events
}

/// Polls `dir` every `interval` on a thread named `static-pods`, sending the changes; stops when
/// the receiver is gone. Problems with manifests are logged here, once per file version.
/// `ready` is told once the first successful scan has been delivered. While the directory cannot
/// be read nothing is sent and the source is not ready, so no pod is cleaned up as unknown: the
/// kubelet does the same for a path it cannot read, but marks a path that does not exist as read
/// and empty (and so stops a previous run's static pods); here a mistyped path never stops one.
pub fn spawn_watcher(
    dir: PathBuf,
    node_name: String,
    interval: Duration,
    tx: Sender<PodEvent>,
    ready: SourcesReady,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("static-pods".into())
        .spawn(move || {
            let mut source = ManifestDir::new(&dir, &node_name);
            let mut current = BTreeMap::new();
            let mut first = true;
            loop {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let scan = source.scan(&now);
                for e in &scan.new_errors {
                    match e {
                        ManifestError::Dir { .. } => log::error!(
                            "{e}: static pods keep running, and no pod is cleaned up as unknown \
                             until the directory can be read"
                        ),
                        _ => log::error!("{e}"),
                    }
                }
                let Some(pods) = scan.pods else {
                    std::thread::sleep(interval);
                    continue;
                };
                for ev in diff(&current, &pods) {
                    match &ev {
                        // The first scan finds what may already run (adopted by its worker).
                        PodEvent::Upsert(p) => log::info!(
                            "static pod {} (uid {}) {}",
                            pod::key(p),
                            pod::short_uid(pod::uid(p)),
                            if first { "found" } else { "added" }
                        ),
                        PodEvent::Remove { uid } => log::info!(
                            "static pod {} (uid {}) removed",
                            current.get(uid).map(|p| pod::key(p)).unwrap_or_default(),
                            pod::short_uid(uid)
                        ),
                    }
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                current = pods;
                if first {
                    ready.done();
                    first = false;
                }
                std::thread::sleep(interval);
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n    command: [sh, -c, 'echo hi; sleep 3600']\n";

    #[test]
    fn a_yaml_manifest_becomes_the_kubelets_static_pod() {
        let p = parse_manifest(
            Path::new("/etc/pods/web.yaml"),
            YAML.as_bytes(),
            "node-a",
            "2026-11-22T00:00:00Z",
        )
        .unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[CONFIG_HASH], uid);
        assert_eq!(ann[CONFIG_SOURCE], "file");
        assert_eq!(ann[CONFIG_SEEN], "2026-11-22T00:00:00Z");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("IfNotPresent")
        );
        assert!(spec
            .tolerations
            .as_ref()
            .unwrap()
            .iter()
            .any(|t| t.operator.as_deref() == Some("Exists")
                && t.effect.as_deref() == Some("NoExecute")));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn the_uid_is_stable_and_changes_with_the_content() {
        let a = static_uid("n", Path::new("/d/web.yaml"), YAML.as_bytes());
        assert_eq!(
            a,
            static_uid("n", Path::new("/d/web.yaml"), YAML.as_bytes())
        );
        assert_ne!(
            a,
            static_uid(
                "n",
                Path::new("/d/web.yaml"),
                format!("{YAML}\n").as_bytes()
            )
        );
        assert_ne!(
            a,
            static_uid("m", Path::new("/d/web.yaml"), YAML.as_bytes())
        );
        assert_ne!(
            a,
            static_uid("n", Path::new("/d/other.yaml"), YAML.as_bytes())
        );
    }

    #[test]
    fn json_manifests_parse_too() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        let p = parse_manifest(Path::new("j.json"), json.as_bytes(), "n", "t").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("j-n"));
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let e = |text: &str| {
            parse_manifest(Path::new("/d/bad.yaml"), text.as_bytes(), "n", "t")
                .unwrap_err()
                .to_string()
        };
        assert!(e("").contains("empty file"));
        assert!(e("apiVersion: v1\nkind: Pod\nmetadata: [\n")
            .starts_with("manifest /d/bad.yaml: invalid YAML"));
        assert!(e("{\"kind\": ").contains("invalid JSON"));
        assert!(e("apiVersion: apps/v1\nkind: Deployment\n")
            .contains("not a v1 Pod (apiVersion \"apps/v1\", kind \"Deployment\")"));
        assert!(
            e("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers: 7\n")
                .contains("not a valid Pod")
        );
        let invalid = e(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: c\n",
        );
        assert_eq!(
            invalid,
            "manifest /d/bad.yaml: invalid pod: spec.containers[\"c\"].image: required"
        );
        assert!(parse_manifest(Path::new("b"), b"\xff\xfe", "n", "t")
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vk-cri-static-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn scanning_notices_added_changed_and_removed_files() {
        let dir = temp_dir("scan");
        let mut src = ManifestDir::new(&dir, "n");
        assert!(src.scan("t").pods.unwrap().is_empty());

        std::fs::write(dir.join("web.yaml"), YAML).unwrap();
        std::fs::write(dir.join(".hidden.yaml"), YAML.replace("web", "hidden")).unwrap();
        std::fs::create_dir(dir.join("subdir")).unwrap();
        let first = src.scan("t");
        assert_eq!(
            first.pods.as_ref().unwrap().len(),
            1,
            "hidden files and directories are ignored"
        );
        assert!(first.new_errors.is_empty());
        let old = first.pods.clone().unwrap();
        let uid = old.keys().next().unwrap().clone();
        assert_eq!(
            diff(&BTreeMap::new(), &old),
            vec![PodEvent::Upsert(old[&uid].clone())]
        );
        assert!(
            diff(&old, &src.scan("t").pods.unwrap()).is_empty(),
            "an unchanged directory gives no events"
        );

        std::fs::write(
            dir.join("web.yaml"),
            YAML.replace("sleep 3600", "sleep 3601"),
        )
        .unwrap();
        let changed = src.scan("t").pods.unwrap();
        let events = diff(&old, &changed);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0], PodEvent::Remove { uid: uid.clone() });
        assert!(matches!(&events[1], PodEvent::Upsert(p) if pod::uid(p) != uid));

        std::fs::remove_file(dir.join("web.yaml")).unwrap();
        let gone = src.scan("t").pods.unwrap();
        assert_eq!(diff(&changed, &gone).len(), 1);
        assert!(gone.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_file_is_reported_once_and_does_not_hide_the_others() {
        let dir = temp_dir("bad");
        std::fs::write(dir.join("a-good.yaml"), YAML).unwrap();
        std::fs::write(dir.join("b-bad.yaml"), "kind: [").unwrap();
        std::fs::write(dir.join("c-dup.yaml"), YAML).unwrap();
        let mut src = ManifestDir::new(&dir, "n");
        let s = src.scan("t");
        assert_eq!(s.pods.unwrap().len(), 1);
        let errs: Vec<String> = s.new_errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("b-bad.yaml") && errs[0].contains("invalid YAML"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("c-dup.yaml: pod default/web-n is already defined by"),
            "{errs:?}"
        );
        let again = src.scan("t");
        assert_eq!(again.pods.unwrap().len(), 1);
        assert!(again.new_errors.is_empty(), "{:?}", again.new_errors);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_reported_once() {
        let mut src = ManifestDir::new(Path::new("/nonexistent/vk-cri-manifests"), "n");
        let first = src.scan("t");
        assert_eq!(first.new_errors.len(), 1);
        assert!(
            first.pods.is_none(),
            "a missing directory is not an empty one"
        );
        assert!(src.scan("t").new_errors.is_empty());
    }

    #[test]
    fn a_directory_that_cannot_be_read_keeps_the_pods_it_defined() {
        let dir = temp_dir("gone");
        std::fs::write(dir.join("web.yaml"), YAML).unwrap();
        let mut src = ManifestDir::new(&dir, "n");
        let before = src.scan("t").pods.unwrap();
        assert_eq!(before.len(), 1);

        let moved = dir.with_extension("moved");
        let _ = std::fs::remove_dir_all(&moved);
        std::fs::rename(&dir, &moved).unwrap();
        let unreadable = src.scan("t");
        assert!(unreadable.pods.is_none(), "{:?}", unreadable.pods);
        assert_eq!(unreadable.new_errors.len(), 1);

        std::fs::rename(&moved, &dir).unwrap();
        let back = src.scan("t");
        assert!(back.new_errors.is_empty(), "{:?}", back.new_errors);
        assert!(
            diff(&before, &back.pods.unwrap()).is_empty(),
            "the same pods, with the same UIDs, once it can be read again"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
