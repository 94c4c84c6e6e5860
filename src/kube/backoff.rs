//! Exponential backoff with jitter, as pure arithmetic.
//!
//! Owns how long to wait before retry number N, given a random fraction and the server's
//! `Retry-After`. It must not sleep, read clocks or draw random numbers: callers (the client's
//! retry loop, the watch driver) pass randomness in and do the sleeping.

use std::time::Duration;

/// How retries back off: `initial * 2^attempt`, capped at `max`, plus up to `jitter * delay`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first retry (attempt 0), before jitter.
    pub initial: Duration,
    /// Upper bound of the exponential part, and of an honoured `Retry-After`.
    pub max: Duration,
    /// Fraction of the delay added at random (0.0 = none, 1.0 = up to double), so that many
    /// nodes restarted together do not retry in lockstep.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    /// 200ms, 400ms, 800ms … up to 30s, +0–50%.
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(30),
            jitter: 0.5,
        }
    }
}

impl BackoffPolicy {
    /// The wait before retry `attempt` (0-based). `random` is a uniform draw from `[0, 1)`
    /// (clamped). A `retry_after` from the server is a lower bound, itself capped at `max`.
    pub fn delay(&self, attempt: u32, random: f64, retry_after: Option<Duration>) -> Duration {
        let factor = 2u32.checked_pow(attempt.min(31)).unwrap_or(u32::MAX);
        let base = self
            .initial
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let jittered = base + base.mul_f64(jitter * random);
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.max)),
            None => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            jitter: 0.5,
        }
    }

    #[test]
    fn doubles_until_the_cap() {
        let p = policy();
        let delays: Vec<u128> = (0..9).map(|a| p.delay(a, 0.0, None).as_millis()).collect();
        assert_eq!(
            delays,
            vec![100, 200, 400, 800, 1600, 3200, 6400, 10000, 10000]
        );
        assert_eq!(p.delay(u32::MAX, 0.0, None), Duration::from_secs(10));
    }

    #[test]
    fn jitter_adds_up_to_the_fraction() {
        let p = policy();
        assert_eq!(p.delay(0, 0.0, None), Duration::from_millis(100));
        assert_eq!(p.delay(0, 0.5, None), Duration::from_millis(125));
        assert_eq!(p.delay(0, 1.0, None), Duration::from_millis(150));
        // Out-of-range randomness is clamped, never panics.
        assert_eq!(p.delay(0, 7.0, None), Duration::from_millis(150));
        assert_eq!(p.delay(0, -1.0, None), Duration::from_millis(100));
        assert_eq!(p.delay(0, f64::NAN, None), Duration::from_millis(100));
    }

    #[test]
    fn retry_after_is_a_capped_lower_bound() {
        let p = policy();
        assert_eq!(
            p.delay(0, 0.0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        // A longer computed delay wins over a short Retry-After.
        assert_eq!(
            p.delay(6, 0.0, Some(Duration::from_secs(1))),
            Duration::from_millis(6400)
        );
        assert_eq!(
            p.delay(0, 0.0, Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
    }
}
