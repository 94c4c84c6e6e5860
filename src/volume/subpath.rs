//! subPath and subPathExpr: the part of a volume a mount exposes, resolved on the host side
//! (the Go provider joined subPath to the container path, which is wrong), refusing anything
//! that leaves the volume, also through symlinks, and bound so that it cannot be swapped.
//!
//! [`validate`] is the pure check of the written path (no absolute path, no `..`). [`prepare`]
//! is the kubelet's `makeMounts` + `PrepareSafeSubpath`: a missing path is created first
//! ([`resolve`]: directories with the volume root's mode, each existing component proven inside
//! the volume), then the path's symlinks are resolved once and the result must be inside the
//! volume's resolved root; then [`Fs::bind_subpath`] opens it again component by component
//! without following any symlink and bind-mounts the opened file itself at a per-container
//! target, which is what the runtime is given. A container that swaps a directory of its volume
//! for a symlink between the check and the runtime's mount (CVE-2017-1002101, CVE-2021-25741)
//! finds the open refused or the target already bound to the checked inode. Failures carry the
//! kubelet's messages (which say nothing about the host); the detail is for the log.

use std::path::{Component, Path, PathBuf};

use super::fs::Fs;
use super::VolumeError;

/// Refuses absolute subPaths and back steps, with the kubelet's messages.
pub fn validate(sub_path: &str) -> Result<(), VolumeError> {
    if sub_path.starts_with('/') {
        return Err(VolumeError::SubPathAbsolute(sub_path.to_string()));
    }
    if Path::new(sub_path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(VolumeError::SubPathBackSteps(sub_path.to_string()));
    }
    Ok(())
}

/// Where the subPath of a container's `index`-th volumeMount is bound, under the pod's volume
/// directory: `.volume-subpaths/<volume>/<container>/<index>` (the kubelet's
/// `volume-subpaths/`; the dot keeps it apart from any volume, whose names cannot start so).
pub fn target(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join(".volume-subpaths")
        .join(volume)
        .join(container)
        .join(index.to_string())
}

/// Unmounts and removes the pod's subPath bind targets one by one, never recursively (the
/// kubelet's `doCleanSubPaths`): a target whose unmount failed keeps what it shows, instead of
/// a recursive removal going through it into the volume or the host.
pub fn clean(fs: &dyn Fs, pod_dir: &Path) -> Result<(), VolumeError> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| VolumeError::Io {
            what,
            path: p,
            source: e,
        }
    };
    let root = pod_dir.join(".volume-subpaths");
    let list = |dir: &Path| match fs.read_dir(dir) {
        Ok(names) => Ok(names),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io("read", dir)(e)),
    };
    let mounted = fs
        .mounts_under(&root)
        .map_err(io("read the mounts under", &root))?;
    for volume in list(&root)? {
        let vdir = root.join(volume);
        for container in list(&vdir)? {
            let cdir = vdir.join(container);
            for index in list(&cdir)? {
                let t = cdir.join(index);
                if mounted.contains(&t) {
                    fs.unmount(&t).map_err(io("unmount", &t))?;
                }
                let dir = fs
                    .metadata(&t, false)
                    .map_err(io("stat", &t))?
                    .is_some_and(|m| m.kind == super::fs::Kind::Dir);
                if dir {
                    fs.remove_dir(&t).map_err(io("remove", &t))?;
                } else {
                    fs.remove_file(&t).map_err(io("remove", &t))?;
                }
            }
            fs.remove_dir(&cdir).map_err(io("remove", &cdir))?;
        }
        fs.remove_dir(&vdir).map_err(io("remove", &vdir))?;
    }
    match fs.remove_dir(&root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &root)(e)),
        _ => Ok(()),
    }
}

/// The host path the runtime mounts for `sub_path` of the volume at `root`: created when
/// missing, checked to be inside the volume, safely opened and bound at `target`. `mount` and
/// `container` name the volumeMount in the errors.
pub fn prepare(
    fs: &dyn Fs,
    root: &Path,
    sub_path: &str,
    target: &Path,
    mount: &str,
    container: &str,
) -> Result<PathBuf, VolumeError> {
    validate(sub_path)?;
    let create = |detail: String| VolumeError::SubPathCreate {
        mount: mount.to_string(),
        container: container.to_string(),
        detail,
    };
    let prep = |detail: String| VolumeError::SubPathPrepare {
        mount: mount.to_string(),
        container: container.to_string(),
        detail,
    };
    let path = root.join(sub_path);
    // As `hu.PathExists`: following symlinks; a dangling one is missing, and creating through
    // it fails.
    let exists = fs
        .metadata(&path, true)
        .map_err(|e| prep(e.to_string()))?
        .is_some();
    if !exists {
        resolve(fs, mount, root, sub_path).map_err(|e| create(e.to_string()))?;
    }
    let base = fs
        .canonicalize(root)
        .map_err(|e| prep(format!("error resolving symlinks in {root:?}: {e}")))?;
    let resolved = fs
        .canonicalize(&path)
        .map_err(|e| prep(format!("error resolving symlinks in {path:?}: {e}")))?;
    if !resolved.starts_with(&base) {
        return Err(prep(format!(
            "subpath {resolved:?} not within volume path {base:?}"
        )));
    }
    fs.bind_subpath(&base, &resolved, target)
        .map_err(|e| prep(format!("error opening subpath {}: {e}", resolved.display())))?;
    Ok(target.to_path_buf())
}

/// The host path of `sub_path` inside the volume at `root`, symlinks resolved.
pub fn resolve(
    fs: &dyn Fs,
    volume: &str,
    root: &Path,
    sub_path: &str,
) -> Result<PathBuf, VolumeError> {
    validate(sub_path)?;
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |e: std::io::Error| VolumeError::Io {
            what,
            path: p,
            source: e,
        }
    };
    let base = fs.canonicalize(root).map_err(io("resolve", root))?;
    let escape = |resolved: PathBuf| VolumeError::SubPathEscape {
        volume: volume.to_string(),
        sub_path: sub_path.to_string(),
        resolved,
    };
    // Walk down, resolving what exists; what does not exist is created inside a directory
    // already proven to be in the volume, with the volume root's mode (as `SafeMakeDir`).
    let mode = fs
        .metadata(&base, true)
        .map_err(io("stat", &base))?
        .map_or(0o755, |m| m.mode);
    let mut at = base.clone();
    for c in Path::new(sub_path).components() {
        let Component::Normal(name) = c else {
            continue;
        };
        let next = at.join(name);
        match fs.metadata(&next, false).map_err(io("stat", &next))? {
            Some(_) => {
                at = fs.canonicalize(&next).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        // A dangling symlink: where it points is not ours to create.
                        escape(next.clone())
                    } else {
                        io("resolve", &next)(e)
                    }
                })?;
                if !at.starts_with(&base) {
                    return Err(escape(at));
                }
            }
            None => {
                fs.create_dir_all(&next, mode)
                    .map_err(io("create", &next))?;
                at = next;
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::fs::HostFs;

    #[test]
    fn absolute_and_back_steps_are_refused() {
        assert!(validate("a/b").is_ok());
        assert!(validate("a..b").is_ok());
        assert_eq!(
            validate("/etc").unwrap_err().to_string(),
            "error SubPath `/etc` must not be an absolute path"
        );
        assert_eq!(
            validate("a/../../etc").unwrap_err().to_string(),
            "unable to provision SubPath `a/../../etc`: must not contain '..'"
        );
    }

    #[test]
    fn symlinks_resolve_inside_the_volume_and_escapes_are_refused() {
        let dir = std::env::temp_dir().join(format!("vk-cri-subpath-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let root = dir.join("vol");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inner")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("out")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        let fs = HostFs;
        let base = std::fs::canonicalize(&root).unwrap();
        assert_eq!(
            resolve(&fs, "v", &root, "inner").unwrap(),
            base.join("real")
        );
        // Missing directories are created inside the volume.
        assert_eq!(
            resolve(&fs, "v", &root, "new/deeper").unwrap(),
            base.join("new/deeper")
        );
        assert!(root.join("new/deeper").is_dir());
        for bad in ["out", "out/x", "abs", "inner/../../outside"] {
            assert!(resolve(&fs, "v", &root, bad).is_err(), "{bad}");
        }
        assert!(!dir.join("outside/x").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vk-cri-subpath-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn prepare_binds_the_checked_file_and_refuses_escapes_with_the_kubelets_messages() {
        use crate::volume::fs::{Op, RecordingFs};
        let dir = scratch("prepare");
        let root = dir.join("vol");
        let pod_dir = dir.join("pod");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir_all(dir.join("outside")).unwrap();
        std::os::unix::fs::symlink("real", root.join("inner")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside/gone", root.join("dangling")).unwrap();
        std::fs::write(root.join("real/file"), b"x").unwrap();
        let fs = RecordingFs::new();
        let base = std::fs::canonicalize(&root).unwrap();

        // A symlink inside the volume is resolved once; the resolved file is what gets bound.
        let t0 = target(&pod_dir, "v", "c", 0);
        assert_eq!(prepare(&fs, &root, "inner", &t0, "v", "c").unwrap(), t0);
        let t1 = target(&pod_dir, "v", "c", 1);
        assert_eq!(
            prepare(&fs, &root, "inner/file", &t1, "v", "c").unwrap(),
            t1
        );
        assert!(
            t0.is_dir() && t1.is_file(),
            "targets made like what they bind"
        );
        let binds: Vec<Op> = fs
            .ops()
            .into_iter()
            .filter(|o| matches!(o, Op::BindSubPath(..)))
            .collect();
        assert_eq!(
            binds,
            [
                Op::BindSubPath(base.join("real"), t0.clone()),
                Op::BindSubPath(base.join("real/file"), t1.clone())
            ]
        );
        // A missing path is created with the volume root's mode.
        let t2 = target(&pod_dir, "v", "c", 2);
        prepare(&fs, &root, "made/here", &t2, "v", "c").unwrap();
        assert!(root.join("made/here").is_dir());

        // Out of the volume through a symlink: refused, the host not described.
        let e = prepare(&fs, &root, "abs", &target(&pod_dir, "v", "c", 3), "v", "c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to prepare subPath for volumeMount \"v\" of container \"c\""
        );
        match &e {
            VolumeError::SubPathPrepare { detail, .. } => {
                assert!(detail.contains("not within volume path"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // A dangling symlink is missing, and nothing is created through it.
        let e = prepare(
            &fs,
            &root,
            "dangling/x",
            &target(&pod_dir, "v", "c", 4),
            "v",
            "c",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "failed to create subPath directory for volumeMount \"v\" of container \"c\""
        );
        assert!(!dir.join("outside/gone").exists());
        assert_eq!(
            prepare(&fs, &root, "../x", &t0, "v", "c")
                .unwrap_err()
                .to_string(),
            "unable to provision SubPath `../x`: must not contain '..'"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The race: the path was checked, then a directory of it was swapped for a symlink (here
    /// one that even stays inside). The open refuses it instead of following it.
    #[test]
    fn a_component_swapped_for_a_symlink_after_the_check_is_refused_by_the_safe_open() {
        use crate::volume::fs::{safe_open, RecordingFs};
        let dir = scratch("race");
        let root = dir.join("vol");
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::create_dir_all(dir.join("outside/sub")).unwrap();
        let base = std::fs::canonicalize(&root).unwrap();
        let checked = base.join("data/sub");
        assert!(safe_open(&base, &checked).is_ok());
        std::fs::rename(root.join("data"), root.join("data.old")).unwrap();
        std::os::unix::fs::symlink(dir.join("outside"), root.join("data")).unwrap();
        let err = safe_open(&base, &checked).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unexpected symlink found {}", base.join("data").display())
        );
        let fs = RecordingFs::new();
        let t = target(&dir.join("pod"), "v", "c", 0);
        assert!(fs.bind_subpath(&base, &checked, &t).is_err());
        assert!(fs.mounted().is_empty(), "nothing bound");
        assert!(
            safe_open(&base, &dir.join("outside")).is_err(),
            "outside the base"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cleaning_removes_the_targets_one_by_one_never_recursively() {
        use crate::volume::fs::RecordingFs;
        let dir = scratch("clean");
        let pod_dir = dir.join("pod");
        let fs = RecordingFs::new();
        let (t0, t1) = (target(&pod_dir, "v", "c", 0), target(&pod_dir, "v", "c", 1));
        std::fs::create_dir_all(&t0).unwrap();
        std::fs::write(&t1, b"").unwrap();
        clean(&fs, &pod_dir).unwrap();
        assert!(!pod_dir.join(".volume-subpaths").exists());
        // Content behind a target (an unmount that did not happen) is never deleted.
        std::fs::create_dir_all(&t0).unwrap();
        std::fs::write(t0.join("precious"), b"data").unwrap();
        assert!(clean(&fs, &pod_dir).is_err());
        assert!(t0.join("precious").exists());
        // No subPaths at all: nothing to do.
        std::fs::remove_dir_all(&pod_dir).unwrap();
        clean(&fs, &pod_dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
