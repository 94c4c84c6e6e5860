//! Time, behind a trait: the wall clock and the monotonic clock, real or fake.
//!
//! Owns [`Clock`] (what code that decides by time reads instead of `SystemTime::now` and
//! `Instant::now`), [`RealClock`] and [`FakeClock`] (set and advanced by tests, so that a
//! back-off or a deadline is tested by moving the clock, not by sleeping). The pod syncer reads
//! time only through its clock; the workers, the prober and the relister still read the real
//! one (issue 18, item 3, continues there).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Where time comes from.
pub trait Clock: Send + Sync {
    /// The wall clock (timestamps, back-offs measured from a container's exit).
    fn now(&self) -> SystemTime;
    /// The monotonic clock (deadlines, durations).
    fn monotonic(&self) -> Instant;
}

/// The system's clocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealClock;

impl Clock for RealClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to: both of its clocks advance together.
#[derive(Debug)]
pub struct FakeClock {
    state: Mutex<(SystemTime, Duration)>,
    base: Instant,
}

impl FakeClock {
    /// A fake clock whose wall clock reads `wall`.
    pub fn at(wall: SystemTime) -> FakeClock {
        FakeClock {
            state: Mutex::new((wall, Duration::ZERO)),
            base: Instant::now(),
        }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += by;
        s.1 += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn monotonic(&self) -> Instant {
        self.base + self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fake_clock_moves_only_when_advanced_both_clocks_together() {
        let c = FakeClock::at(SystemTime::UNIX_EPOCH + Duration::from_secs(100));
        let (w, m) = (c.now(), c.monotonic());
        assert_eq!((c.now(), c.monotonic()), (w, m));
        c.advance(Duration::from_secs(10));
        assert_eq!(c.now(), w + Duration::from_secs(10));
        assert_eq!(c.monotonic(), m + Duration::from_secs(10));
    }
}
