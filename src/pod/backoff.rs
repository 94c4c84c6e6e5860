//! The kubelet's restart and image-pull back-off: 10 s doubling to 300 s, forgotten after ten
//! minutes without a failure.
//!
//! Owns the per-key back-off state (client-go's `flowcontrol.Backoff`, the way the kubelet uses
//! it for CrashLoopBackOff and ImagePullBackOff). Pure: every call takes `now`; nothing reads a
//! clock. The pod worker keeps one of these per pod.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// The kubelet's initial container restart back-off.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's maximum container restart back-off.
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: SystemTime,
}

/// Back-off per key (a container name with its spec hash, or an image).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// An entry older than twice the maximum is forgotten: the container ran (or the pull was
    /// not retried) long enough, so the next failure starts again from the initial back-off.
    fn expired(&self, e: &Entry, at: SystemTime) -> bool {
        at.duration_since(e.last_update).unwrap_or_default() > 2 * self.max
    }

    /// Records a failure at `event_time` and returns the back-off that now applies.
    pub fn next(&mut self, key: &str, event_time: SystemTime) -> Duration {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => (e.backoff * 2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: event_time,
            },
        );
        backoff
    }

    /// Whether `key` is still backing off at `now` for a failure at `event_time`, and the
    /// back-off if so (for the `back-off 20s restarting …` message).
    pub fn in_backoff_since(
        &self,
        key: &str,
        event_time: SystemTime,
        now: SystemTime,
    ) -> Option<Duration> {
        let e = self.entries.get(key)?;
        if self.expired(e, now) {
            return None;
        }
        (now.duration_since(event_time).unwrap_or_default() < e.backoff).then_some(e.backoff)
    }

    /// The current back-off of `key`, if it has one.
    pub fn current(&self, key: &str) -> Option<Duration> {
        self.entries.get(key).map(|e| e.backoff)
    }

    /// Forgets `key` (its container was removed from the spec).
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets every entry that expired by `now`.
    pub fn gc(&mut self, now: SystemTime) {
        let max = self.max;
        self.entries
            .retain(|_, e| now.duration_since(e.last_update).unwrap_or_default() <= 2 * max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn doubles_from_ten_seconds_up_to_five_minutes() {
        let mut b = Backoff::default();
        let steps: Vec<u64> = (0..7)
            .map(|i| b.next("c", t(i * 1000 / 10)).as_secs())
            .collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn in_backoff_until_the_duration_has_passed_since_the_failure() {
        let mut b = Backoff::default();
        b.next("c", t(100));
        assert_eq!(
            b.in_backoff_since("c", t(100), t(105)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(b.in_backoff_since("c", t(100), t(110)), None);
        assert_eq!(b.in_backoff_since("other", t(100), t(105)), None);
        b.next("c", t(110));
        assert_eq!(
            b.in_backoff_since("c", t(110), t(125)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(b.in_backoff_since("c", t(110), t(130)), None);
    }

    #[test]
    fn ten_minutes_without_failure_resets_to_the_initial_backoff() {
        let mut b = Backoff::default();
        for i in 0..5 {
            b.next("c", t(i));
        }
        assert_eq!(b.current("c"), Some(Duration::from_secs(160)));
        assert_eq!(
            b.next("c", t(4 + 600)).as_secs(),
            300,
            "exactly ten minutes is not yet expired"
        );
        assert_eq!(
            b.next("c", t(604 + 601)).as_secs(),
            10,
            "more than ten minutes later starts over"
        );
        b.gc(t(604 + 601 + 601));
        assert_eq!(b.current("c"), None);
    }
}
