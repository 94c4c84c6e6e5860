//! Image garbage collection, as the kubelet's image GC manager
//! (`pkg/kubelet/images/image_gc_manager.go`) does it. Every 5 minutes, the first round at start:
//! the images on the runtime are detected (when each was first seen, when a container last used
//! it, its size); then, if the image filesystem's usage is at or over `--image-gc-high-threshold`
//! (85 %), unused images are removed, least recently used first, until usage is down to
//! `--image-gc-low-threshold` (80 %). An image is never removed while a container on the
//! runtime (of any node: images are the runtime's) uses it, nor when pinned, nor the sandbox
//! image, nor within `--minimum-image-ttl-duration` (2m) of being first seen (just pulled for a
//! container about to start). Images present at the first round were seen "at an unknown time
//! before", as the kubelet's initial detection records them. `--image-gc-high-threshold 100`
//! turns it off.
//!
//! Owns: the pure part — [`Policy`], the image [`Records`] and their eviction order
//! ([`Records::candidates`]), [`bytes_to_free`] — and the shell: [`ImageGc`] (a round against
//! the runtime: `ImageFsInfo` and statfs of its mountpoint, `ListImages`, `ListContainers`,
//! `RemoveImage`; the Node's `FreeDiskSpaceFailed`, `InvalidDiskCapacity` and `ImageGCFailed`
//! events) and [`spawn`] (the `image-gc` thread). Dead containers are collected by each pod's
//! sync (`plan::containers_to_remove`), not here.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::cri::{CriError, Labels, Runtime};
use crate::node::events::{reason, EventType};
use crate::node::runtime_state::aggregate;
use crate::node::stats::FsSample;
use crate::report::PodReporter;

/// The kubelet's `ImageGCPeriod`.
pub const PERIOD: Duration = Duration::from_secs(5 * 60);

/// The kubelet's image GC policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `--image-gc-high-threshold`: at this usage (percent) of the image filesystem, images are
    /// removed; 100 turns image GC off.
    pub high_threshold_percent: u8,
    /// `--image-gc-low-threshold`: how far down they are removed.
    pub low_threshold_percent: u8,
    /// `--minimum-image-ttl-duration`: how long after it was first seen an unused image stays.
    pub min_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            min_age: Duration::from_secs(120),
        }
    }
}

impl Policy {
    pub fn enabled(&self) -> bool {
        self.high_threshold_percent < 100
    }
}

/// One image as the runtime lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub id: String,
    pub size: u64,
    pub pinned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    /// `None`: present at the first round, seen at some unknown time before.
    first_detected: Option<SystemTime>,
    /// `None`: no container used it since it was first seen.
    last_used: Option<SystemTime>,
    size: u64,
    pinned: bool,
}

/// An image that may be removed, and what removing it frees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub size: u64,
}

/// What the collector knows of each image, by image id.
#[derive(Debug, Default)]
pub struct Records {
    records: HashMap<String, Record>,
}

impl Records {
    /// The kubelet's `detectImages`: an image not seen before is recorded as first seen at
    /// `detected`; the images in use are stamped used at `now`; images no longer listed are
    /// forgotten.
    pub fn detect(
        &mut self,
        images: &[ImageInfo],
        in_use: &HashSet<String>,
        detected: Option<SystemTime>,
        now: SystemTime,
    ) {
        for image in images {
            let r = self.records.entry(image.id.clone()).or_insert(Record {
                first_detected: detected,
                last_used: None,
                size: 0,
                pinned: false,
            });
            if in_use.contains(&image.id) {
                r.last_used = Some(now);
            }
            r.size = image.size;
            r.pinned = image.pinned;
        }
        let current: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| current.contains(id.as_str()));
    }

    /// The kubelet's `freeSpace` order: images not in use and not pinned, least recently used
    /// first (never used before used), ties broken by the earlier first sighting; without those
    /// used at or after `free_time` and those first seen less than `min_age` before it.
    pub fn candidates(
        &self,
        in_use: &HashSet<String>,
        free_time: SystemTime,
        min_age: Duration,
    ) -> Vec<Candidate> {
        let mut v: Vec<(&String, &Record)> = self
            .records
            .iter()
            .filter(|(id, r)| !in_use.contains(*id) && !r.pinned)
            .collect();
        v.sort_by(|(ia, a), (ib, b)| {
            (a.last_used, a.first_detected, ia).cmp(&(b.last_used, b.first_detected, ib))
        });
        v.into_iter()
            .filter(|(_, r)| r.last_used.is_none_or(|t| t < free_time))
            .filter(|(_, r)| {
                r.first_detected
                    .is_none_or(|t| free_time.duration_since(t).unwrap_or_default() >= min_age)
            })
            .map(|(id, r)| Candidate {
                id: id.clone(),
                size: r.size,
            })
            .collect()
    }

    /// Forgets a removed image.
    pub fn forget(&mut self, id: &str) {
        self.records.remove(id);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// The kubelet's `GarbageCollect` arithmetic: the usage percent (`100 - available*100/capacity`,
/// rounded as Go's integer division) and, when it is at or over the high threshold, the bytes to
/// free to come down to the low one.
pub fn bytes_to_free(
    capacity: u64,
    available: u64,
    policy: &Policy,
) -> Result<(u64, Option<u64>), GcError> {
    if capacity == 0 {
        return Err(GcError::InvalidCapacity);
    }
    let available = u128::from(available.min(capacity));
    let capacity = u128::from(capacity);
    let usage = 100 - available * 100 / capacity;
    let usage_u64 = u64::try_from(usage).unwrap_or(100);
    if usage < u128::from(policy.high_threshold_percent) {
        return Ok((usage_u64, None));
    }
    let target = capacity * u128::from(100 - policy.low_threshold_percent.min(100)) / 100;
    let free = u64::try_from(target.saturating_sub(available)).unwrap_or(u64::MAX);
    Ok((usage_u64, Some(free)))
}

/// Why a round of image GC failed; the messages are the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("invalid capacity 0 on image filesystem")]
    InvalidCapacity,
    #[error("imageFs information is unavailable")]
    NoImageFs,
    #[error("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free.")]
    NotEnough { wanted: u64, freed: u64 },
    #[error("wanted to free {wanted} bytes, but freed {freed} bytes space with errors in image deletion: {errors}")]
    Deletion {
        wanted: u64,
        freed: u64,
        errors: String,
    },
    #[error(transparent)]
    Runtime(#[from] CriError),
}

/// statfs(2) of a path: the real one is [`crate::node::stats::statvfs`].
pub type StatFs = Box<dyn Fn(&Path) -> Option<FsSample> + Send>;

/// The image collector of one daemon, run by its `image-gc` thread.
pub struct ImageGc {
    runtime: Arc<dyn Runtime>,
    reporter: Arc<dyn PodReporter>,
    clock: Arc<dyn Clock>,
    statfs: StatFs,
    policy: Policy,
    /// `--pod-infra-container-image`: always in use, as the runtime's own sandbox image.
    sandbox_image: String,
    records: Records,
    initialized: bool,
    failed_before: bool,
}

impl ImageGc {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        reporter: Arc<dyn PodReporter>,
        clock: Arc<dyn Clock>,
        statfs: StatFs,
        policy: Policy,
        sandbox_image: &str,
    ) -> ImageGc {
        ImageGc {
            runtime,
            reporter,
            clock,
            statfs,
            policy,
            sandbox_image: sandbox_image.to_string(),
            records: Records::default(),
            initialized: false,
            failed_before: false,
        }
    }

    /// The image ids in use: every container's on the runtime (exited ones too), the
    /// `--pod-infra-container-image`'s and the runtime's configured sandbox image's.
    fn in_use(&self) -> Result<HashSet<String>, CriError> {
        let mut sandbox_images = vec![self.sandbox_image.clone()];
        // containerd says which sandbox image it uses in its verbose status (`config` JSON).
        if let Ok(info) = self.runtime.status_info() {
            if let Some(image) = info
                .get("config")
                .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
                .and_then(|c| c.get("sandboxImage")?.as_str().map(str::to_string))
            {
                sandbox_images.push(image);
            }
        }
        let mut in_use = HashSet::new();
        for image in sandbox_images.iter().filter(|i| !i.is_empty()) {
            if let Ok(Some(found)) = self.runtime.image_status(image) {
                in_use.insert(found.id);
            }
        }
        for c in self.runtime.list_containers(&Labels::new(), None)? {
            in_use.insert(c.image_ref);
        }
        Ok(in_use)
    }

    /// The kubelet's `detectImages` at `at` (`None` for the first round).
    fn detect(&mut self, at: Option<SystemTime>) -> Result<HashSet<String>, CriError> {
        let in_use = self.in_use()?;
        let images: Vec<ImageInfo> = self
            .runtime
            .list_images()?
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                size: i.size,
                pinned: i.pinned,
            })
            .collect();
        self.records.detect(&images, &in_use, at, self.clock.now());
        Ok(in_use)
    }

    /// Capacity and available bytes of the filesystem holding the images (the runtime's
    /// `ImageFsInfo` mountpoint); zeros when statfs cannot tell, as cAdvisor leaves them.
    fn image_fs(&self) -> Result<(u64, u64), GcError> {
        let fs = self.runtime.image_fs_info()?;
        let first = fs.first().ok_or(GcError::NoImageFs)?;
        let mountpoint = first
            .fs_id
            .as_ref()
            .map(|f| f.mountpoint.clone())
            .unwrap_or_default();
        Ok((self.statfs)(Path::new(&mountpoint)).map_or((0, 0), |s| (s.capacity, s.available)))
    }

    /// The kubelet's `GarbageCollect`: frees down to the low threshold when over the high one.
    /// Returns the bytes freed.
    pub fn garbage_collect(&mut self) -> Result<u64, GcError> {
        let (capacity, available) = self.image_fs()?;
        let (usage, wanted) = match bytes_to_free(capacity, available, &self.policy) {
            Err(e) => {
                self.reporter.node_event(
                    EventType::Warning,
                    reason::INVALID_DISK_CAPACITY,
                    &e.to_string(),
                );
                return Err(e);
            }
            Ok((_, None)) => return Ok(0),
            Ok((usage, Some(wanted))) => (usage, wanted),
        };
        log::info!(
            "image filesystem usage {usage}% is at or over the high threshold {}%: freeing {wanted} bytes to come down to {}%",
            self.policy.high_threshold_percent,
            self.policy.low_threshold_percent
        );
        let freed = self.free_space(wanted, self.clock.now())?;
        if freed < wanted {
            let e = GcError::NotEnough { wanted, freed };
            self.reporter.node_event(
                EventType::Warning,
                reason::FREE_DISK_SPACE_FAILED,
                &e.to_string(),
            );
            return Err(e);
        }
        Ok(freed)
    }

    /// The kubelet's `freeSpace`: removes candidates in order until `wanted` bytes are freed,
    /// going on past a failed removal.
    fn free_space(&mut self, wanted: u64, free_time: SystemTime) -> Result<u64, GcError> {
        let in_use = self.detect(Some(free_time))?;
        let mut freed = 0u64;
        let mut errors = Vec::new();
        for c in self
            .records
            .candidates(&in_use, free_time, self.policy.min_age)
        {
            log::info!("removing image {} ({} bytes) to free space", c.id, c.size);
            match self.runtime.remove_image(&c.id) {
                Err(e) => errors.push(e.to_string()),
                Ok(()) => {
                    self.records.forget(&c.id);
                    freed = freed.saturating_add(c.size);
                    if freed >= wanted {
                        break;
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(GcError::Deletion {
                wanted,
                freed,
                errors: aggregate(&errors),
            });
        }
        Ok(freed)
    }

    /// The kubelet's `DeleteUnusedImages` (for disk pressure): every unused image old enough
    /// goes, whatever the thresholds say. The bytes freed.
    pub fn delete_unused_images(&mut self) -> Result<u64, GcError> {
        log::info!("attempting to delete unused images");
        let now = self.clock.now();
        self.free_space(u64::MAX, now)
    }

    /// One round of the thread: the detection (the first one dates what it finds to an unknown
    /// past), then a collection; a failure is logged, and an `ImageGCFailed` event is recorded
    /// for the second failure in a row, as the kubelet does.
    pub fn round(&mut self) {
        let at = self.initialized.then(|| self.clock.now());
        match self.detect(at) {
            Ok(_) => self.initialized = true,
            Err(e) => log::info!("failed to monitor images: {e}"),
        }
        match self.garbage_collect() {
            Ok(_) if self.failed_before => {
                log::info!("image garbage collection succeeded");
                self.failed_before = false;
            }
            Ok(_) => {}
            Err(e) if self.failed_before => {
                log::error!("image garbage collection failed multiple times in a row: {e}");
                self.reporter.node_event(
                    EventType::Warning,
                    reason::IMAGE_GC_FAILED,
                    &e.to_string(),
                );
            }
            Err(e) => {
                log::error!("image garbage collection failed once: {e}");
                self.failed_before = true;
            }
        }
    }
}

/// Starts the `image-gc` thread: a round now and every [`PERIOD`]; nothing when the policy
/// turns image GC off. The collector is shared with the eviction manager (disk pressure).
pub fn spawn(gc: Arc<std::sync::Mutex<ImageGc>>) -> std::io::Result<()> {
    let lock = |gc: &std::sync::Mutex<ImageGc>| {
        gc.lock()
            .unwrap_or_else(|p| p.into_inner())
            .policy
            .enabled()
    };
    if !lock(&gc) {
        log::info!("--image-gc-high-threshold is 100: image garbage collection is off");
        return Ok(());
    }
    std::thread::Builder::new()
        .name("image-gc".into())
        .spawn(move || loop {
            let clock = {
                let mut g = gc.lock().unwrap_or_else(|p| p.into_inner());
                g.round();
                g.clock.clone()
            };
            clock.sleep(PERIOD);
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::cri::api;
    use crate::cri::fake::Call;
    use crate::cri::FakeRuntime;
    use crate::report::recorded::Recorded;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn info(id: &str, size: u64) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            size,
            pinned: false,
        }
    }

    fn set(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    fn ids(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.id.as_str()).collect()
    }

    #[test]
    fn the_threshold_arithmetic_is_the_kubelets() {
        let p = Policy::default();
        assert_eq!(bytes_to_free(1000, 151, &p).unwrap(), (85, Some(49)));
        assert_eq!(bytes_to_free(1000, 160, &p).unwrap(), (84, None));
        // 84.9 % used is 85 % for Go's integer division: 100 - int(151*100/1000) = 85.
        assert_eq!(bytes_to_free(1000, 151, &p).unwrap().0, 85);
        assert_eq!(
            bytes_to_free(1000, 2000, &p).unwrap(),
            (0, None),
            "available > capacity"
        );
        assert!(matches!(
            bytes_to_free(0, 0, &p),
            Err(GcError::InvalidCapacity)
        ));
        let all = Policy {
            high_threshold_percent: 0,
            low_threshold_percent: 0,
            min_age: Duration::ZERO,
        };
        assert_eq!(bytes_to_free(1000, 400, &all).unwrap(), (60, Some(600)));
    }

    #[test]
    fn candidates_are_unused_unpinned_least_recently_used_first_and_old_enough() {
        let mut r = Records::default();
        // First round: a, b, c seen at an unknown time; b in use.
        r.detect(
            &[info("a", 1), info("b", 2), info("c", 3)],
            &set(&["b"]),
            None,
            t(0),
        );
        // Later: d pulled (new); c in use; b no longer.
        r.detect(
            &[info("a", 1), info("b", 2), info("c", 3), info("d", 4)],
            &set(&["c"]),
            Some(t(100)),
            t(100),
        );
        let none = HashSet::new();
        // At t(200): d is 100 s old (< 2 min); a never used, b used at 0, c at 100.
        let c = r.candidates(&none, t(200), Duration::from_secs(120));
        assert_eq!(ids(&c), ["a", "b", "c"]);
        assert_eq!(c[1].size, 2);
        let c = r.candidates(&none, t(220), Duration::from_secs(120));
        assert_eq!(
            ids(&c),
            ["a", "d", "b", "c"],
            "never used comes first, by first seen"
        );
        // In use now, or used at the free time itself: not a candidate.
        let c = r.candidates(&set(&["a"]), t(100), Duration::ZERO);
        assert_eq!(ids(&c), ["d", "b"]);
        // Gone from the runtime: forgotten.
        r.detect(&[info("a", 1)], &none, Some(t(300)), t(300));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn pinned_images_are_never_candidates() {
        let mut r = Records::default();
        let mut p = info("pause", 1);
        p.pinned = true;
        r.detect(&[p, info("x", 1)], &HashSet::new(), None, t(0));
        assert_eq!(
            ids(&r.candidates(&HashSet::new(), t(1), Duration::ZERO)),
            ["x"]
        );
    }

    fn fs(mountpoint: &str) -> Vec<api::FilesystemUsage> {
        vec![api::FilesystemUsage {
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: mountpoint.into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        }]
    }

    fn gc(rt: &Arc<FakeRuntime>, capacity: u64, available: u64) -> (ImageGc, Arc<Recorded>) {
        let events = Arc::new(Recorded::default());
        let gc = ImageGc::new(
            rt.clone(),
            events.clone(),
            Arc::new(FakeClock::at(t(0))),
            Box::new(move |p: &Path| {
                (p == Path::new("/images")).then_some(FsSample {
                    capacity,
                    available,
                    ..Default::default()
                })
            }),
            Policy::default(),
            "pause:1",
        );
        (gc, events)
    }

    fn removed(rt: &FakeRuntime) -> Vec<String> {
        rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::RemoveImage(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn over_the_high_threshold_unused_images_go_until_the_low_one_is_reached() {
        let rt = Arc::new(FakeRuntime::new());
        rt.set_image_fs(fs("/images"));
        rt.add_image_with("pause:1", "sha256:p", 50);
        rt.add_image_with("old:1", "sha256:o", 30);
        rt.add_image_with("old:2", "sha256:o2", 30);
        rt.add_image_with("cfg:1", "sha256:c", 40);
        rt.set_status_info("config", r#"{"sandboxImage":"cfg:1"}"#);
        // 90 % used: free 100 to come down to 80 %.
        let (mut g, events) = gc(&rt, 1000, 100);
        g.round();
        let mut gone = removed(&rt);
        gone.sort();
        assert_eq!(gone, ["sha256:o", "sha256:o2"], "the sandbox images stay");
        assert_eq!(
            events.take_events(),
            ["FreeDiskSpaceFailed: Failed to garbage collect required amount of images. Attempted to free 100 bytes, but only found 60 bytes eligible to free."]
        );
    }

    #[test]
    fn under_the_high_threshold_nothing_goes_and_a_bad_capacity_is_an_event() {
        let rt = Arc::new(FakeRuntime::new());
        rt.set_image_fs(fs("/images"));
        rt.add_image_with("old:1", "sha256:o", 30);
        let (mut g, events) = gc(&rt, 1000, 500);
        g.round();
        assert!(removed(&rt).is_empty());
        assert!(events.take_events().is_empty());

        rt.set_image_fs(fs("/elsewhere"));
        let (mut g, events) = gc(&rt, 1000, 0);
        g.round();
        g.round();
        assert_eq!(
            events.take_events(),
            [
                "InvalidDiskCapacity: invalid capacity 0 on image filesystem",
                "InvalidDiskCapacity: invalid capacity 0 on image filesystem",
                "ImageGCFailed: invalid capacity 0 on image filesystem",
            ],
            "ImageGCFailed only for the second failure in a row"
        );
    }

    #[test]
    fn images_of_containers_stay_and_new_images_wait_for_their_minimum_age() {
        let rt = Arc::new(FakeRuntime::new());
        rt.set_image_fs(fs("/images"));
        rt.add_image_with("busybox:1", "sha256:b", 10);
        rt.add_image_with("app:1", "sha256:a", 10);
        rt.add_image("pause:1");
        let sb = rt
            .run_pod_sandbox(&api::PodSandboxConfig::default(), "")
            .unwrap();
        let config = api::ContainerConfig {
            image: Some(api::ImageSpec {
                image: "app:1".into(),
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        // Exited or not, a container holds its image.
        rt.create_container(&sb, &config, &api::PodSandboxConfig::default())
            .unwrap();
        let (mut g, _) = gc(&rt, 1000, 0);
        g.round(); // busybox was there before the first round: no minimum age
        assert_eq!(removed(&rt), ["sha256:b"]);
        rt.take_calls();
        // A newly pulled image is younger than 2 minutes at the next round.
        rt.add_image_with("new:1", "sha256:n", 10);
        g.round();
        assert!(removed(&rt).is_empty());
    }
}
