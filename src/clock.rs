//! Time, behind a trait: the wall clock and the monotonic clock, real or fake.
//!
//! Owns [`Clock`] (what code that decides by time reads instead of `SystemTime::now` and
//! `Instant::now`), [`RealClock`] and [`FakeClock`] (set and advanced by tests, so that a
//! back-off or a deadline is tested by moving the clock, not by sleeping). The pod syncer, the
//! pod workers' timer, the prober, the relister and the reporters read time only through their
//! clock. A thread that waits for a deadline asks the clock how long to block
//! ([`Clock::block_for`]) and looks at the clock again when it wakes: a real clock blocks until
//! the deadline, a fake one briefly, so that [`FakeClock::advance`] reaches every waiting thread
//! within a few milliseconds without the clock knowing who waits.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;

/// Where time comes from.
pub trait Clock: Send + Sync {
    /// The wall clock (timestamps, back-offs measured from a container's exit).
    fn now(&self) -> SystemTime;
    /// The monotonic clock (deadlines, durations).
    fn monotonic(&self) -> Instant;
    /// How long a thread waiting for `deadline` (on [`Clock::monotonic`]) blocks — on a condvar,
    /// a channel or in a sleep — before it reads the clock again; zero once it has passed.
    fn block_for(&self, deadline: Instant) -> Duration;
    /// Blocks until `deadline` has passed on this clock.
    fn sleep_until(&self, deadline: Instant) {
        loop {
            let d = self.block_for(deadline);
            if d.is_zero() {
                return;
            }
            std::thread::sleep(d);
        }
    }
    /// The wall clock as an API timestamp.
    fn timestamp(&self) -> Timestamp {
        timestamp_from_system(self.now())
    }
    /// Blocks for `d` of this clock's time.
    fn sleep(&self, d: Duration) {
        self.sleep_until(self.monotonic() + d);
    }
}

/// A `SystemTime` as the Timestamp the builders take (clamped to the representable range).
pub fn timestamp_from_system(t: SystemTime) -> Timestamp {
    let nanos: i128 = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    Timestamp::from_nanosecond(nanos).unwrap_or(if nanos < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
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

    fn block_for(&self, deadline: Instant) -> Duration {
        deadline.saturating_duration_since(Instant::now())
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

    fn block_for(&self, deadline: Instant) -> Duration {
        if deadline <= self.monotonic() {
            Duration::ZERO
        } else {
            FAKE_POLL
        }
    }
}

/// How long a thread waiting on a [`FakeClock`] blocks before it looks at the clock again.
const FAKE_POLL: Duration = Duration::from_millis(2);

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

    #[test]
    fn a_sleep_until_a_deadline_on_a_fake_clock_ends_when_the_clock_is_advanced_past_it() {
        let c = std::sync::Arc::new(FakeClock::at(SystemTime::UNIX_EPOCH));
        let deadline = c.monotonic() + Duration::from_secs(30);
        assert_eq!(c.block_for(c.monotonic()), Duration::ZERO);
        assert!(!c.block_for(deadline).is_zero());
        let (c2, (tx, rx)) = (c.clone(), crossbeam_channel::bounded(1));
        let sleeper = std::thread::spawn(move || {
            c2.sleep_until(deadline);
            tx.send(c2.monotonic()).unwrap();
        });
        // A sleep ends only once block_for says zero, that is once the clock reads the deadline.
        c.advance(Duration::from_secs(29));
        c.advance(Duration::from_secs(1));
        let woke = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the sleeper woke");
        assert!(woke >= deadline);
        sleeper.join().unwrap();
    }

    #[test]
    fn timestamps_from_system_time() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_795_351_936, 599_105_000);
        let ts = timestamp_from_system(t);
        assert_eq!(ts.as_second(), 1_795_351_936);
        assert_eq!(ts.as_nanosecond(), 1_795_351_936_599_105_000);
    }

    #[test]
    fn the_real_clock_blocks_until_the_deadline() {
        let c = RealClock;
        let d = c.block_for(c.monotonic() + Duration::from_secs(60));
        assert!(d > Duration::from_secs(59) && d <= Duration::from_secs(60));
        assert_eq!(c.block_for(c.monotonic()), Duration::ZERO);
    }
}
