//! The filesystem edge of the volume manager: the [`Fs`] trait, its real implementation on the
//! host ([`HostFs`], std + nix) and a recording fake ([`RecordingFs`]) for unit tests.
//!
//! Owns every syscall volumes make (files, symlinks, renames, tmpfs mounts and unmounts, the
//! safe open and bind mount of a subPath, reading the mount table) and nothing else: no
//! decisions, no logging. The fake does the file operations (and the safe open) in a real
//! scratch directory, so tests can look at what was written, but only records mounts and
//! unmounts (mounting needs root); it logs every operation in order.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a path is on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

/// The facts about a path the volume code needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
}

/// The filesystem operations of the volume manager. Paths are absolute host paths.
pub trait Fs: Send + Sync {
    /// Creates `path` and its parents; the last directory gets `mode` (not masked by umask).
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Writes a new file with exactly `mode`.
    fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> io::Result<()>;
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()>;
    fn read_link(&self, path: &Path) -> io::Result<PathBuf>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file or a symlink.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes a directory tree, never following symlinks.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory (never its contents).
    fn remove_dir(&self, path: &Path) -> io::Result<()>;
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// `lstat` (`follow` false) or `stat` (`follow` true); `None` when nothing is there.
    fn metadata(&self, path: &Path, follow: bool) -> io::Result<Option<Meta>>;
    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Changes the group of `path` itself (not a symlink's target).
    fn lchown_group(&self, path: &Path, gid: u32) -> io::Result<()>;
    /// The path with every symlink resolved; the path must exist.
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;
    /// Mounts a tmpfs at `path` (which exists), of `size` bytes when given.
    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()>;
    /// Detaches the mount at `path`.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Mount points at or under `path`, deepest first.
    fn mounts_under(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Bytes of disk the tree at `path` occupies (allocated blocks, as `du`), not following
    /// symlinks nor crossing into other filesystems.
    fn disk_usage(&self, path: &Path) -> io::Result<u64>;
    /// Opens `path` (inside `base`; both with their symlinks resolved) with [`safe_open`] and
    /// bind-mounts what was opened (`/proc/self/fd/N`, so the path is never looked up again) at
    /// `target`, created as a directory (0750) or an empty file (0640) like it: the kubelet's
    /// `doBindSubPath`. A `target` already mounted with the same file is kept; one mounted with
    /// another is replaced.
    fn bind_subpath(&self, base: &Path, path: &Path, target: &Path) -> io::Result<()>;
}

/// Opens `path`, which must be inside `base`, one component at a time from `base` with
/// `O_NOFOLLOW | O_PATH` (the kubelet's `doSafeOpen`): a symlink anywhere on the way is refused,
/// so what is opened is inside `base` even if a component was swapped for a symlink after
/// `path` was resolved. Errors carry the kubelet's wording.
pub fn safe_open(base: &Path, path: &Path) -> io::Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{open, openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    let flags = OFlag::O_NOFOLLOW | OFlag::O_PATH | OFlag::O_CLOEXEC;
    let fail = |msg: String| io::Error::other(msg);
    let rel = path.strip_prefix(base).map_err(|_| {
        fail(format!(
            "path {} is outside of allowed base {}",
            path.display(),
            base.display()
        ))
    })?;
    let mut fd = open(base, flags | OFlag::O_DIRECTORY, Mode::empty())
        .map_err(|e| fail(format!("cannot open directory {}: {e}", base.display())))?;
    let mut current = base.to_path_buf();
    for seg in rel.components() {
        let std::path::Component::Normal(seg) = seg else {
            return Err(fail(format!(
                "path {} is outside of allowed base {}",
                path.display(),
                base.display()
            )));
        };
        current.push(seg);
        let child = openat(&fd, seg, flags, Mode::empty())
            .map_err(|e| fail(format!("cannot open {}: {e}", current.display())))?;
        let st = fstat(&child).map_err(|e| {
            fail(format!(
                "error running fstat on {} with {e}",
                current.display()
            ))
        })?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK {
            return Err(fail(format!(
                "unexpected symlink found {}",
                current.display()
            )));
        }
        fd = child;
    }
    Ok(fd)
}

/// Whether `fd` is a directory, and its (device, inode).
fn fd_identity(fd: &std::os::fd::OwnedFd) -> io::Result<(bool, (u64, u64))> {
    use nix::sys::stat::{fstat, SFlag};
    let st = fstat(fd).map_err(io::Error::from)?;
    let dir = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
    Ok((dir, (st.st_dev, st.st_ino)))
}

/// Creates the bind target like the opened file: a directory (0750) or an empty file (0640).
fn create_target(target: &Path, dir: bool) -> io::Result<()> {
    if dir {
        return HostFs.create_dir_all(target, 0o750);
    }
    if let Some(parent) = target.parent() {
        HostFs.create_dir_all(parent, 0o750)?;
    }
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o640)
        .open(target)
        .map(drop)
}

/// The host's filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFs;

fn meta_of(m: &std::fs::Metadata) -> Meta {
    let t = m.file_type();
    let kind = if t.is_symlink() {
        Kind::Symlink
    } else if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else if t.is_socket() {
        Kind::Socket
    } else if t.is_char_device() {
        Kind::CharDevice
    } else if t.is_block_device() {
        Kind::BlockDevice
    } else {
        Kind::Other
    };
    Meta {
        kind,
        mode: m.mode() & 0o7777,
    }
}

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points listed in a mountinfo table, at or under `root`, deepest first.
pub fn parse_mounts_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

impl Fs for HostFs {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::create_dir_all(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content)?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::read_link(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for e in std::fs::read_dir(path)? {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn metadata(&self, path: &Path, follow: bool) -> io::Result<Option<Meta>> {
        let m = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        match m {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn lchown_group(&self, path: &Path, gid: u32) -> io::Result<()> {
        std::os::unix::fs::lchown(path, None, Some(gid))
    }

    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        use nix::mount::{mount, MsFlags};
        let data = size.map(|s| format!("size={s}"));
        mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data.as_deref(),
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(io::Error::from)
    }

    fn mounts_under(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let info = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(parse_mounts_under(&info, path))
    }

    fn bind_subpath(&self, base: &Path, path: &Path, target: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = safe_open(base, path)?;
        let (dir, id) = fd_identity(&fd)?;
        if self.mounts_under(target)?.iter().any(|m| m == target) {
            let t = std::fs::metadata(target)?;
            if (t.dev(), t.ino()) == id {
                return Ok(());
            }
            self.unmount(target)?;
        }
        create_target(target, dir)?;
        let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::mount::mount(
            Some(source.as_str()),
            target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| io::Error::other(format!("error mounting {}: {e}", path.display())))
    }

    fn disk_usage(&self, path: &Path) -> io::Result<u64> {
        fn walk(path: &Path, dev: u64, total: &mut u64) -> io::Result<()> {
            let m = std::fs::symlink_metadata(path)?;
            if m.dev() != dev {
                return Ok(());
            }
            *total += m.blocks() * 512;
            if m.is_dir() {
                for e in std::fs::read_dir(path)? {
                    walk(&e?.path(), dev, total)?;
                }
            }
            Ok(())
        }
        let dev = std::fs::symlink_metadata(path)?.dev();
        let mut total = 0;
        walk(path, dev, &mut total)?;
        Ok(total)
    }
}

/// One operation a [`RecordingFs`] saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    MountTmpfs(PathBuf, Option<u64>),
    Unmount(PathBuf),
    Write(PathBuf, u32),
    Symlink(PathBuf, PathBuf),
    Rename(PathBuf, PathBuf),
    RemoveFile(PathBuf),
    RemoveDirAll(PathBuf),
    Chgrp(PathBuf, u32),
    /// A subPath bind mount: what was safely opened (as `/proc/self/fd` named it), and where.
    BindSubPath(PathBuf, PathBuf),
}

/// A fake [`Fs`]: files go to the real (scratch) paths given, mounts are only recorded.
#[derive(Debug, Default)]
pub struct RecordingFs {
    ops: Mutex<Vec<Op>>,
    mounts: Mutex<Vec<PathBuf>>,
}

impl RecordingFs {
    pub fn new() -> RecordingFs {
        RecordingFs::default()
    }

    /// Every operation so far, in order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The tmpfs mounts in place now.
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).push(op);
    }
}

impl Fs for RecordingFs {
    fn create_dir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        HostFs.create_dir_all(path, mode)
    }

    fn write_file(&self, path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
        self.record(Op::Write(path.to_path_buf(), mode));
        HostFs.write_file(path, content, mode)
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        HostFs.read_file(path)
    }

    fn symlink(&self, target: &Path, link: &Path) -> io::Result<()> {
        self.record(Op::Symlink(target.to_path_buf(), link.to_path_buf()));
        HostFs.symlink(target, link)
    }

    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        HostFs.read_link(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.record(Op::Rename(from.to_path_buf(), to.to_path_buf()));
        HostFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.record(Op::RemoveFile(path.to_path_buf()));
        HostFs.remove_file(path)
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.record(Op::RemoveDirAll(path.to_path_buf()));
        HostFs.remove_dir_all(path)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        HostFs.remove_dir(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        HostFs.read_dir(path)
    }

    fn metadata(&self, path: &Path, follow: bool) -> io::Result<Option<Meta>> {
        HostFs.metadata(path, follow)
    }

    fn set_mode(&self, path: &Path, mode: u32) -> io::Result<()> {
        HostFs.set_mode(path, mode)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        HostFs.canonicalize(path)
    }

    fn lchown_group(&self, path: &Path, gid: u32) -> io::Result<()> {
        self.record(Op::Chgrp(path.to_path_buf(), gid));
        Ok(())
    }

    fn mount_tmpfs(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        self.record(Op::MountTmpfs(path.to_path_buf(), size));
        self.mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(path.to_path_buf());
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        self.record(Op::Unmount(path.to_path_buf()));
        let mut m = self.mounts.lock().unwrap_or_else(|p| p.into_inner());
        let before = m.len();
        m.retain(|p| p != path);
        if m.len() == before {
            return Err(io::Error::from_raw_os_error(nix::libc::EINVAL));
        }
        Ok(())
    }

    fn mounts_under(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out: Vec<PathBuf> = self
            .mounted()
            .into_iter()
            .filter(|p| p.starts_with(path))
            .collect();
        out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Ok(out)
    }

    fn disk_usage(&self, path: &Path) -> io::Result<u64> {
        HostFs.disk_usage(path)
    }

    /// The safe open is real (it needs no privilege); the bind mount is only recorded, with the
    /// path the opened descriptor stands for.
    fn bind_subpath(&self, base: &Path, path: &Path, target: &Path) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = safe_open(base, path)?;
        let (dir, _) = fd_identity(&fd)?;
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        create_target(target, dir)?;
        self.record(Op::BindSubPath(opened, target.to_path_buf()));
        self.mounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(target.to_path_buf());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lists_mounts_under_a_root_deepest_first_with_escapes_decoded() {
        let info = "22 1 0:21 / /run rw - tmpfs tmpfs rw\n\
                    30 22 0:40 / /run/v/u1/a rw - tmpfs tmpfs rw\n\
                    31 22 0:41 / /run/v/u1/a/deep rw - tmpfs tmpfs rw\n\
                    32 22 0:42 / /run/v/u1/with\\040space rw - tmpfs tmpfs rw\n\
                    33 22 0:43 / /run/v/u10 rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mounts_under(info, Path::new("/run/v/u1")),
            vec![
                PathBuf::from("/run/v/u1/a/deep"),
                PathBuf::from("/run/v/u1/a"),
                PathBuf::from("/run/v/u1/with space"),
            ]
        );
    }
}
