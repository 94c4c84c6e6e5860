//! hostPath volumes: the `type` check (and creation for `DirectoryOrCreate`/`FileOrCreate`)
//! the kubelet does before mounting a host path, with its messages.
//!
//! [`check`] is pure over what is at the path; [`prepare`] looks and creates through [`Fs`].

use std::path::Path;

use super::fs::{Fs, Kind, Meta};
use super::VolumeError;

/// What `type` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub fn parse(s: Option<&str>) -> Result<HostPathType, VolumeError> {
        Ok(match s.unwrap_or("") {
            "" => HostPathType::Unset,
            "DirectoryOrCreate" => HostPathType::DirectoryOrCreate,
            "Directory" => HostPathType::Directory,
            "FileOrCreate" => HostPathType::FileOrCreate,
            "File" => HostPathType::File,
            "Socket" => HostPathType::Socket,
            "CharDevice" => HostPathType::CharDevice,
            "BlockDevice" => HostPathType::BlockDevice,
            other => return Err(VolumeError::InvalidHostPathType(other.to_string())),
        })
    }
}

/// What to do about `path`, given what is there now (`stat`, following symlinks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Nothing,
    CreateDir,
    CreateFile,
}

/// Checks what is at `path` against `want`.
pub fn check(path: &str, want: HostPathType, found: Option<Meta>) -> Result<Action, VolumeError> {
    let kind = found.map(|m| m.kind);
    let fail = |want: &'static str| {
        Err(VolumeError::HostPathType {
            path: path.to_string(),
            want,
        })
    };
    match (want, kind) {
        (HostPathType::Unset, _) => Ok(Action::Nothing),
        (HostPathType::DirectoryOrCreate, None) => Ok(Action::CreateDir),
        (HostPathType::FileOrCreate, None) => Ok(Action::CreateFile),
        (HostPathType::DirectoryOrCreate | HostPathType::Directory, Some(Kind::Dir)) => {
            Ok(Action::Nothing)
        }
        (HostPathType::DirectoryOrCreate | HostPathType::Directory, _) => fail("directory"),
        (HostPathType::FileOrCreate | HostPathType::File, Some(Kind::File)) => Ok(Action::Nothing),
        (HostPathType::FileOrCreate | HostPathType::File, _) => fail("file"),
        (HostPathType::Socket, Some(Kind::Socket)) => Ok(Action::Nothing),
        (HostPathType::Socket, _) => fail("socket file"),
        (HostPathType::CharDevice, Some(Kind::CharDevice)) => Ok(Action::Nothing),
        (HostPathType::CharDevice, _) => fail("character device"),
        (HostPathType::BlockDevice, Some(Kind::BlockDevice)) => Ok(Action::Nothing),
        (HostPathType::BlockDevice, _) => fail("block device"),
    }
}

/// Checks `path` and creates it when the type says so (directories 0755, files 0644, as the
/// kubelet does).
pub fn prepare(fs: &dyn Fs, path: &str, want: HostPathType) -> Result<(), VolumeError> {
    let p = Path::new(path);
    let io = |what: &'static str| {
        move |e: std::io::Error| VolumeError::Io {
            what,
            path: p.to_path_buf(),
            source: e,
        }
    };
    let found = fs.metadata(p, true).map_err(io("stat"))?;
    match check(path, want, found)? {
        Action::Nothing => Ok(()),
        Action::CreateDir => fs.create_dir_all(p, 0o755).map_err(io("create")),
        Action::CreateFile => fs.write_file(p, b"", 0o644).map_err(io("create")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: Kind) -> Option<Meta> {
        Some(Meta { kind, mode: 0o755 })
    }

    #[test]
    fn types_are_checked_with_the_kubelets_messages() {
        use HostPathType::*;
        assert_eq!(check("/x", Unset, None).unwrap(), Action::Nothing);
        assert_eq!(
            check("/x", DirectoryOrCreate, None).unwrap(),
            Action::CreateDir
        );
        assert_eq!(check("/x", FileOrCreate, None).unwrap(), Action::CreateFile);
        assert_eq!(
            check("/x", Directory, meta(Kind::Dir)).unwrap(),
            Action::Nothing
        );
        assert_eq!(
            check("/x", File, meta(Kind::File)).unwrap(),
            Action::Nothing
        );
        assert_eq!(
            check("/x", Socket, meta(Kind::Socket)).unwrap(),
            Action::Nothing
        );
        assert_eq!(
            check("/x", CharDevice, meta(Kind::CharDevice)).unwrap(),
            Action::Nothing
        );
        assert_eq!(
            check("/x", BlockDevice, meta(Kind::BlockDevice)).unwrap(),
            Action::Nothing
        );
        let msg = |w, f| check("/x", w, f).unwrap_err().to_string();
        assert_eq!(
            msg(Directory, None),
            "hostPath type check failed: /x is not a directory"
        );
        assert_eq!(
            msg(DirectoryOrCreate, meta(Kind::File)),
            "hostPath type check failed: /x is not a directory"
        );
        assert_eq!(
            msg(File, meta(Kind::Dir)),
            "hostPath type check failed: /x is not a file"
        );
        assert_eq!(
            msg(Socket, meta(Kind::File)),
            "hostPath type check failed: /x is not a socket file"
        );
        assert_eq!(
            msg(CharDevice, None),
            "hostPath type check failed: /x is not a character device"
        );
        assert_eq!(
            msg(BlockDevice, meta(Kind::CharDevice)),
            "hostPath type check failed: /x is not a block device"
        );
        assert!(HostPathType::parse(Some("Bogus")).is_err());
    }
}
