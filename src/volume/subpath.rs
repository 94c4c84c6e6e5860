//! subPath and subPathExpr: the part of a volume a mount exposes, resolved on the host side
//! (the Go provider joined subPath to the container path, which is wrong), refusing anything
//! that leaves the volume, also through symlinks.
//!
//! [`validate`] is the pure check of the written path (no absolute path, no `..`); [`resolve`]
//! walks the host through [`Fs`]: the path is created (directories, 0755) when missing, as the
//! kubelet does, then every symlink is resolved and the result must still be inside the
//! volume's own resolved root.

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
    // already proven to be in the volume.
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
                fs.create_dir_all(&next, 0o755)
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
            "error SubPath `a/../../etc` must not contain back steps"
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
}
