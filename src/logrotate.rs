//! Container log rotation, as the kubelet's container log manager does it: every
//! `--container-log-monitor-interval` (10 s), each running container of this node whose CRI log
//! file has reached `--container-log-max-size` (10Mi) is rotated: leftovers are cleaned up, the
//! oldest rotated files removed so that at most `--container-log-max-files` (5) files remain
//! with the new one, older rotated files compressed to `.gz`, then the live file renamed to
//! `<log>.<YYYYMMDD-hhmmss>` and the runtime asked to reopen it (CRI `ReopenContainerLog`). A
//! live file that is missing is reopened. If the reopen fails, the rename is undone so the
//! next round tries again.
//!
//! Owns: the pure rotation plan ([`plan`]: which files to remove, compress and the rotated
//! name), its execution on the filesystem and the runtime ([`rotate_if_needed`], [`rotate_all`]), and the monitor thread
//! ([`spawn`]), which logs a failing runtime once per change of state. `kubectl logs` keeps reading: a follow sees the inode change and finishes the
//! old file before the new one (`server/logs.rs`). Must not touch containers of other nodes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::cri::{api, CriError, Runtime};
use crate::executor::repeats::Repeats;

/// The kubelet's `containerLogMaxSize`, `containerLogMaxFiles` and
/// `containerLogMonitorInterval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub max_size: u64,
    /// At least 2: the live file and one rotated file.
    pub max_files: usize,
    pub interval: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
            interval: Duration::from_secs(10),
        }
    }
}

const COMPRESS_SUFFIX: &str = ".gz";
const TMP_SUFFIX: &str = ".tmp";

/// What one rotation does to the files next to a live log, in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Temporary files of an interrupted compression, uncompressed files whose `.gz` exists,
    /// and the oldest rotated files beyond the limit.
    pub remove: Vec<String>,
    /// Rotated files to compress (to `<name>.gz`, then removed).
    pub compress: Vec<String>,
    /// The name the live file is renamed to.
    pub rotated: String,
}

/// Go's `20060102-150405` in UTC, the suffix of a rotated file.
pub fn timestamp_suffix(now: Timestamp) -> String {
    now.strftime("%Y%m%d-%H%M%S").to_string()
}

/// The rotation plan for `live`, given the names of the files matching `<live>.*`.
pub fn plan(live: &str, siblings: &[String], max_files: usize, now: Timestamp) -> Plan {
    let mut remove = Vec::new();
    let mut logs: Vec<String> = Vec::new();
    for name in siblings {
        if name.ends_with(TMP_SUFFIX) {
            remove.push(name.clone());
        } else if !name.ends_with(COMPRESS_SUFFIX)
            && siblings.contains(&format!("{name}{COMPRESS_SUFFIX}"))
        {
            // Compressed but not removed (interrupted): the .gz is the copy to keep.
            remove.push(name.clone());
        } else {
            logs.push(name.clone());
        }
    }
    // Oldest first (the timestamp suffix sorts by time); the live file and the one rotated now
    // leave room for max_files - 2 older ones.
    logs.sort();
    let keep = max_files.saturating_sub(2);
    let excess = logs.len().saturating_sub(keep);
    remove.extend(logs.drain(..excess));
    let compress = logs
        .into_iter()
        .filter(|l| !l.ends_with(COMPRESS_SUFFIX))
        .collect();
    Plan {
        remove,
        compress,
        rotated: format!("{live}.{}", timestamp_suffix(now)),
    }
}

/// Why a container's log could not be rotated.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("failed to {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to reopen the log {path} of container {id}")]
    Reopen {
        id: String,
        path: PathBuf,
        #[source]
        source: Box<CriError>,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RotateError {
    let path = path.to_path_buf();
    move |source| RotateError::Io { what, path, source }
}

/// The names (full paths) of the files matching `<live>.*`.
fn siblings(live: &Path) -> Result<Vec<String>, RotateError> {
    let dir = live.parent().unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.",
        live.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&prefix) {
            out.push(dir.join(name).to_string_lossy().into_owned());
        }
    }
    Ok(out)
}

/// Compresses `path` to `path.gz` through `path.gz.tmp`, then removes `path`.
fn compress(path: &Path) -> Result<(), RotateError> {
    use std::io::Write as _;
    let gz = PathBuf::from(format!("{}{COMPRESS_SUFFIX}", path.display()));
    let tmp = PathBuf::from(format!("{}{TMP_SUFFIX}", gz.display()));
    let mut input = fs::File::open(path).map_err(io_err("open", path))?;
    let out = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    io::copy(&mut input, &mut encoder).map_err(io_err("compress", path))?;
    encoder
        .finish()
        .and_then(|mut f| f.flush())
        .map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &gz).map_err(io_err("rename", &tmp))?;
    fs::remove_file(path).map_err(io_err("remove", path))
}

/// What [`rotate_if_needed`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Small,
    Reopened,
    Rotated(String),
}

/// Rotates the live log `live` of container `id` if it reached `policy.max_size`.
pub fn rotate_if_needed(
    runtime: &dyn Runtime,
    id: &str,
    live: &Path,
    policy: &Policy,
    now: Timestamp,
) -> Result<Outcome, RotateError> {
    let size = match fs::metadata(live) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // A rotation interrupted after the rename: get the runtime writing again.
            runtime
                .reopen_container_log(id)
                .map_err(|source| RotateError::Reopen {
                    id: id.to_string(),
                    path: live.to_path_buf(),
                    source: Box::new(source),
                })?;
            return Ok(Outcome::Reopened);
        }
        Err(e) => return Err(io_err("stat", live)(e)),
    };
    if size < policy.max_size {
        return Ok(Outcome::Small);
    }
    let live_name = live.to_string_lossy();
    let p = plan(&live_name, &siblings(live)?, policy.max_files, now);
    for f in &p.remove {
        match fs::remove_file(f) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(io_err("remove", Path::new(f))(e))
            }
            _ => {}
        }
    }
    for f in &p.compress {
        compress(Path::new(f))?;
    }
    let rotated = PathBuf::from(&p.rotated);
    fs::rename(live, &rotated).map_err(io_err("rename", live))?;
    if let Err(source) = runtime.reopen_container_log(id) {
        // Put it back so that the next round tries again (the runtime still writes to it).
        let _ = fs::rename(&rotated, live);
        return Err(RotateError::Reopen {
            id: id.to_string(),
            path: live.to_path_buf(),
            source: Box::new(source),
        });
    }
    Ok(Outcome::Rotated(p.rotated))
}

/// Where vk-cri asked the runtime to write this container's log
/// (`<log root>/<ns>_<pod>_<uid>/<container>/<restart>.log`, from its labels), so that a round
/// needs no ContainerStatus per container; `None` when a label is missing.
pub fn expected_log_path(log_root: &Path, c: &api::Container) -> Option<PathBuf> {
    use crate::pod::labels::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID, RESTART_COUNT};
    let label = |k: &str| c.labels.get(k).filter(|v| !v.is_empty());
    let restart: u32 = c.annotations.get(RESTART_COUNT)?.parse().ok()?;
    Some(
        log_root
            .join(format!(
                "{}_{}_{}",
                label(POD_NAMESPACE)?,
                label(POD_NAME)?,
                label(POD_UID)?
            ))
            .join(crate::pod::translate::container_log_path(
                label(CONTAINER_NAME)?,
                restart,
            )),
    )
}

/// One round over this node's running containers. The log path comes from the labels when
/// that file exists, else from ContainerStatus (a log written elsewhere, or a live file lost
/// in an interrupted rotation, which is then reopened). A runtime that cannot list its
/// containers is logged when that starts, changes or ends, not every round.
pub fn rotate_all(
    runtime: &dyn Runtime,
    node: &str,
    log_root: &Path,
    policy: &Policy,
    repeats: &mut Repeats,
) {
    let owner = crate::pod::labels::owner_selector(node);
    let containers = match runtime.list_containers(&owner, None) {
        Ok(c) => {
            if let Some(again) = repeats.clear("list") {
                log::info!("container log rotation works again ({again} failed rounds not logged)");
            }
            c
        }
        Err(e) => {
            let message = e.to_string();
            if repeats.news("list", &message) {
                log::warn!("container log rotation: {message}");
            }
            return;
        }
    };
    for c in containers
        .iter()
        .filter(|c| c.state.enum_value_or_default() == api::ContainerState::CONTAINER_RUNNING)
    {
        let path = match expected_log_path(log_root, c).filter(|p| p.exists()) {
            Some(p) => p,
            None => match runtime.container_status(&c.id) {
                Ok(s) if s.log_path.is_empty() => continue,
                Ok(s) => PathBuf::from(s.log_path),
                Err(e) if e.is_not_found() => continue,
                Err(e) => {
                    log::warn!("container log rotation: {e}");
                    continue;
                }
            },
        };
        match rotate_if_needed(runtime, &c.id, &path, policy, Timestamp::now()) {
            Ok(Outcome::Small) => {}
            Ok(Outcome::Reopened) => {
                log::info!("reopened missing container log path={}", path.display());
            }
            Ok(Outcome::Rotated(to)) => {
                log::debug!("rotated container log path={} to={to}", path.display());
            }
            Err(e) => {
                let source = std::error::Error::source(&e)
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default();
                log::warn!("container log rotation: {e}{source}");
            }
        }
    }
}

/// Starts the monitor thread: a round every `policy.interval`, for the daemon's life.
pub fn spawn(
    runtime: Arc<dyn Runtime>,
    node: String,
    log_root: PathBuf,
    policy: Policy,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("log-rotation".into())
        .spawn(move || {
            let mut repeats = Repeats::default();
            loop {
                std::thread::sleep(policy.interval);
                rotate_all(runtime.as_ref(), &node, &log_root, &policy, &mut repeats);
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::fake::Call;
    use crate::cri::FakeRuntime;

    fn now() -> Timestamp {
        "2026-12-04T15:04:05Z".parse().unwrap()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| format!("/l/0.log.{s}")).collect()
    }

    #[test]
    fn the_rotated_name_is_the_live_name_with_gos_timestamp() {
        assert_eq!(
            plan("/l/0.log", &[], 5, now()).rotated,
            "/l/0.log.20261204-150405"
        );
    }

    #[test]
    fn older_files_are_compressed_and_the_oldest_removed_to_keep_max_files() {
        let siblings = names(&[
            "20261204-150000.gz",
            "20261204-150100.gz",
            "20261204-150200",
            "20261204-150300",
        ]);
        let p = plan("/l/0.log", &siblings, 5, now());
        // live + the new rotated one + 3 older ones = 5.
        assert_eq!(p.remove, names(&["20261204-150000.gz"]));
        assert_eq!(p.compress, names(&["20261204-150200", "20261204-150300"]));
        let p = plan("/l/0.log", &siblings, 2, now());
        assert_eq!(p.remove.len(), 4);
        assert!(p.compress.is_empty());
    }

    #[test]
    fn leftovers_of_an_interrupted_compression_are_removed() {
        let siblings = names(&[
            "20261204-150000",
            "20261204-150000.gz",
            "20261204-150100.gz.tmp",
        ]);
        let p = plan("/l/0.log", &siblings, 5, now());
        assert_eq!(
            p.remove,
            names(&["20261204-150000", "20261204-150100.gz.tmp"])
        );
        assert!(p.compress.is_empty());
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vkcri-rotate-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn policy(max_size: u64, max_files: usize) -> Policy {
        Policy {
            max_size,
            max_files,
            interval: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_full_log_is_renamed_reopened_and_older_ones_gzipped() {
        use std::io::Read as _;
        let d = dir("full");
        let live = d.join("0.log");
        fs::write(&live, "x".repeat(100)).unwrap();
        fs::write(d.join("0.log.20261204-150000"), "older line\n").unwrap();
        let rt = FakeRuntime::new();
        assert_eq!(
            rotate_if_needed(&rt, "c1", &live, &policy(1000, 5), now()).unwrap(),
            Outcome::Small
        );
        assert!(rt.calls().is_empty());
        let out = rotate_if_needed(&rt, "c1", &live, &policy(100, 5), now()).unwrap();
        let rotated = d.join("0.log.20261204-150405");
        assert_eq!(
            out,
            Outcome::Rotated(rotated.to_string_lossy().into_owned())
        );
        assert_eq!(rt.calls(), vec![Call::ReopenContainerLog("c1".into())]);
        assert!(!live.exists());
        assert_eq!(fs::read(&rotated).unwrap().len(), 100);
        assert!(!d.join("0.log.20261204-150000").exists());
        let mut text = String::new();
        flate2::read::GzDecoder::new(fs::File::open(d.join("0.log.20261204-150000.gz")).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "older line\n");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn the_expected_log_path_comes_from_the_labels() {
        use crate::pod::labels::{CONTAINER_NAME, POD_NAME, POD_NAMESPACE, POD_UID, RESTART_COUNT};
        let mut c = api::Container::new();
        for (k, v) in [
            (POD_NAMESPACE, "ns"),
            (POD_NAME, "p"),
            (POD_UID, "u1"),
            (CONTAINER_NAME, "c"),
        ] {
            c.labels.insert(k.into(), v.into());
        }
        assert_eq!(expected_log_path(Path::new("/logs"), &c), None);
        c.annotations.insert(RESTART_COUNT.into(), "3".into());
        assert_eq!(
            expected_log_path(Path::new("/logs"), &c),
            Some(PathBuf::from("/logs/ns_p_u1/c/3.log"))
        );
        c.labels.remove(POD_UID);
        assert_eq!(expected_log_path(Path::new("/logs"), &c), None);
    }

    #[test]
    fn a_failed_reopen_puts_the_file_back_and_a_missing_file_is_reopened() {
        let d = dir("reopen");
        let live = d.join("0.log");
        fs::write(&live, "x".repeat(100)).unwrap();
        let rt = FakeRuntime::new();
        rt.fail_next(
            "ReopenContainerLog",
            CriError::Rpc {
                op: "reopen the log of",
                target: crate::cri::Target::Container("c1".into()),
                code: crate::cri::Code::Unknown,
                message: "boom".into(),
            },
        );
        let e = rotate_if_needed(&rt, "c1", &live, &policy(10, 5), now()).unwrap_err();
        assert!(e.to_string().contains("container c1"), "{e}");
        assert_eq!(fs::read(&live).unwrap().len(), 100);
        assert!(!d.join("0.log.20261204-150405").exists());
        fs::remove_file(&live).unwrap();
        assert_eq!(
            rotate_if_needed(&rt, "c1", &live, &policy(10, 5), now()).unwrap(),
            Outcome::Reopened
        );
        let _ = fs::remove_dir_all(&d);
    }
}
