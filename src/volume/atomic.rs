//! Writing a set of files into a volume so that a reader never sees a half-written set: the
//! kubelet's AtomicWriter.
//!
//! Owns the on-disk layout of configMap, secret, downwardAPI and projected volumes:
//!
//! ```text
//! <volume>/..2026_12_04_11_30_00.123456789/   the files, in a fresh timestamped directory
//! <volume>/..data -> ..2026_12_04_11_30_00.123456789   swapped with one rename(2)
//! <volume>/<key>  -> ..data/<key>              one link per top-level name, made once
//! ```
//!
//! A new set is written only when it differs from what `..data` holds (contents, modes, names);
//! then `..data` is swapped, links to names no longer present are removed, and the old
//! directory goes. Also owns [`validate_path`], the rule every user-visible path obeys.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::fs::{Fs, Kind};
use super::VolumeError;

/// The link that points at the current timestamped directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a volume: its content and mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileData {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// The files of a volume, by relative path.
pub type Payload = BTreeMap<String, FileData>;

/// Why a relative path is refused, in the kubelet's words (`validatePath`), or `None`.
pub fn validate_path(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("invalid path: must not be empty");
    }
    if path.contains('\0') {
        return Some("invalid path: must not contain NUL");
    }
    if path.starts_with('/') {
        return Some("invalid path: must be relative path");
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
        || path.split('/').any(|p| p == "..")
    {
        return Some("invalid path: must not contain '..'");
    }
    if path.starts_with("..") {
        return Some("invalid path: must not start with '..'");
    }
    None
}

/// The kubelet's timestamped directory name (`..2006_01_02_15_04_05.<nanos>`).
fn ts_dir_name(now: k8s_openapi::jiff::Timestamp) -> String {
    format!(
        "..{}.{:09}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    )
}

fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Whether the files under `dir` are exactly `payload`.
fn same_files(fs: &dyn Fs, dir: &Path, payload: &Payload) -> bool {
    fn walk(fs: &dyn Fs, base: &Path, rel: &str, out: &mut BTreeSet<String>) -> bool {
        let dir = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        let Ok(names) = fs.read_dir(&dir) else {
            return false;
        };
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            match fs.metadata(&base.join(&r), false) {
                Ok(Some(m)) if m.kind == Kind::Dir => {
                    if !walk(fs, base, &r, out) {
                        return false;
                    }
                }
                Ok(Some(_)) => {
                    out.insert(r);
                }
                _ => return false,
            }
        }
        true
    }
    let mut found = BTreeSet::new();
    if !walk(fs, dir, "", &mut found) || found.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let path = dir.join(p);
        found.contains(p)
            && fs
                .metadata(&path, false)
                .ok()
                .flatten()
                .is_some_and(|m| m.kind == Kind::File && m.mode == f.mode)
            && fs.read_file(&path).is_ok_and(|c| c == f.content)
    })
}

/// Writes `payload` into the volume directory `dir` (which exists) if it differs from what is
/// there. Returns whether anything was written.
pub fn write(
    fs: &dyn Fs,
    dir: &Path,
    payload: &Payload,
    now: k8s_openapi::jiff::Timestamp,
) -> Result<bool, VolumeError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| VolumeError::Io {
            what,
            path,
            source: e,
        }
    };
    for p in payload.keys() {
        if let Some(why) = validate_path(p) {
            return Err(VolumeError::InvalidPath {
                path: p.clone(),
                reason: why,
            });
        }
    }
    let data_link = dir.join(DATA_DIR);
    let old: Option<PathBuf> = fs.read_link(&data_link).ok();
    if let Some(old) = &old {
        if same_files(fs, &dir.join(old), payload) {
            ensure_links(fs, dir, payload)?;
            return Ok(false);
        }
    }
    let ts = ts_dir_name(now);
    let ts_path = dir.join(&ts);
    fs.create_dir_all(&ts_path, 0o755)
        .map_err(io("create", &ts_path))?;
    for (p, f) in payload {
        let path = ts_path.join(p);
        if let Some(parent) = path.parent() {
            fs.create_dir_all(parent, 0o755)
                .map_err(io("create", parent))?;
        }
        fs.write_file(&path, &f.content, f.mode)
            .map_err(io("write", &path))?;
    }
    let tmp = dir.join(DATA_DIR_TMP);
    match fs.remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("remove", &tmp)(e));
        }
        _ => {}
    }
    fs.symlink(Path::new(&ts), &tmp).map_err(io("link", &tmp))?;
    fs.rename(&tmp, &data_link).map_err(io("rename", &tmp))?;
    ensure_links(fs, dir, payload)?;
    // Links to names that are gone, then the old set.
    let wanted: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in fs.read_dir(dir).map_err(io("read", dir))? {
        if name.starts_with("..") || wanted.contains(name.as_str()) {
            continue;
        }
        let path = dir.join(&name);
        if fs
            .metadata(&path, false)
            .ok()
            .flatten()
            .is_some_and(|m| m.kind == Kind::Symlink)
        {
            fs.remove_file(&path).map_err(io("remove", &path))?;
        }
    }
    if let Some(old) = old {
        let old_path = dir.join(old);
        if old_path != ts_path {
            match fs.remove_dir_all(&old_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io("remove", &old_path)(e));
                }
                _ => {}
            }
        }
    }
    Ok(true)
}

/// The user-visible links `<name> -> ..data/<name>`, one per top-level name.
fn ensure_links(fs: &dyn Fs, dir: &Path, payload: &Payload) -> Result<(), VolumeError> {
    let names: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in names {
        let link = dir.join(name);
        if fs.metadata(&link, false).ok().flatten().is_some() {
            continue;
        }
        fs.symlink(&Path::new(DATA_DIR).join(name), &link)
            .map_err(|e| VolumeError::Io {
                what: "link",
                path: link.clone(),
                source: e,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::fs::{Op, RecordingFs};

    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("vk-cri-atomic-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    fn payload(items: &[(&str, &str, u32)]) -> Payload {
        items
            .iter()
            .map(|(p, c, m)| {
                (
                    p.to_string(),
                    FileData {
                        content: c.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn at(s: i64) -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn paths_with_dot_dot_absolute_or_nul_are_refused() {
        assert_eq!(validate_path("a/b"), None);
        assert_eq!(validate_path("a..b"), None);
        assert!(validate_path("../x").is_some());
        assert!(validate_path("a/../../x").is_some());
        assert!(validate_path("..data").is_some());
        assert!(validate_path("/etc/passwd").is_some());
        assert!(validate_path("a\0b").is_some());
        assert!(validate_path("").is_some());
    }

    #[test]
    fn a_set_is_written_behind_data_and_swapped_whole() {
        let dir = scratch("swap");
        let fs = RecordingFs::new();
        let one = payload(&[("a", "1", 0o644), ("sub/b", "2", 0o400)]);
        assert!(write(&fs, &dir, &one, at(0)).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::read_link(dir.join("a")).unwrap(),
            PathBuf::from("..data/a")
        );
        let first = std::fs::read_link(dir.join(DATA_DIR)).unwrap();
        assert!(first.to_string_lossy().starts_with("..2023_11_14_"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("sub/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o400);

        // The same set again: nothing is written.
        let before = fs.ops().len();
        assert!(!write(&fs, &dir, &one, at(1)).unwrap());
        assert_eq!(fs.ops().len(), before);

        // A changed set: new directory, one rename onto ..data, the stale link and old set gone.
        let two = payload(&[("a", "changed", 0o644)]);
        assert!(write(&fs, &dir, &two, at(2)).unwrap());
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "changed");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
        let renames: Vec<Op> = fs
            .ops()
            .into_iter()
            .filter(|o| matches!(o, Op::Rename(..)))
            .collect();
        assert_eq!(
            renames.last(),
            Some(&Op::Rename(dir.join("..data_tmp"), dir.join(DATA_DIR)))
        );
        // A mode change alone is a change.
        let three = payload(&[("a", "changed", 0o600)]);
        assert!(write(&fs, &dir, &three, at(3)).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_invalid_path_writes_nothing() {
        let dir = scratch("invalid");
        let fs = RecordingFs::new();
        let err = write(
            &fs,
            &dir,
            &payload(&[("ok", "1", 0o644), ("../evil", "x", 0o644)]),
            at(0),
        )
        .unwrap_err();
        assert!(err.to_string().contains("must not contain '..'"), "{err}");
        assert!(fs.ops().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
