//! One probe of one container instance, as a pure state machine (the kubelet's probe `worker`).
//!
//! Owns when the probe is due (initialDelaySeconds after the container started, then every
//! periodSeconds), how raw outcomes count towards successThreshold and failureThreshold, and the
//! cached result it publishes. A liveness or startup probe that reached its failure threshold is
//! put on hold (the container is about to be killed; a new instance gets a new state), and a
//! startup probe that succeeded is done. Probe errors (the probe could not be run) are thrown
//! away. It reads no clock: every call takes `now`.
//!
//! ```text
//!   initial result: readiness Failure · liveness Success · startup Failure (not started)
//!
//!   outcome ──▶ same as the last one? run += 1 : run = 1
//!               run reached the threshold of its kind? ──no──▶ result unchanged
//!                        │ yes
//!                        ▼
//!               publish (changed? the syncer is told)
//!               liveness/startup failure ──▶ on hold (no more runs)
//!               startup success ──▶ done (no more runs)
//! ```

use std::time::{Duration, Instant};

use super::spec::{Kind, Timing};

/// The raw outcome of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success(String),
    /// Success, with something worth an event (an HTTP redirect that was not followed).
    Warning(String),
    Failure(String),
    /// The probe could not be run at all; the result is thrown away.
    Error(String),
}

/// The state of one probe of one container instance.
#[derive(Clone, Debug)]
pub struct ProbeState {
    pub kind: Kind,
    pub timing: Timing,
    next: Instant,
    last: Option<bool>,
    run: u32,
    result: bool,
    on_hold: bool,
    done: bool,
}

impl ProbeState {
    /// A probe for a container instance that started at `started` (seen at `now`).
    pub fn new(kind: Kind, timing: Timing, started: Instant, now: Instant) -> ProbeState {
        ProbeState {
            kind,
            timing,
            next: (started + timing.initial_delay).max(now),
            last: None,
            run: 0,
            // Readiness starts unready and startup unstarted; liveness is healthy until shown
            // otherwise.
            result: kind == Kind::Liveness,
            on_hold: false,
            done: false,
        }
    }

    /// Holds the first run back until `at` (the prober's start-up jitter).
    pub fn not_before(&mut self, at: Instant) {
        self.next = self.next.max(at);
    }

    /// When the probe should run next; `None` once it will never run again.
    pub fn due(&self) -> Option<Instant> {
        (!self.on_hold && !self.done).then_some(self.next)
    }

    /// The published result: ready, alive, or started.
    pub fn result(&self) -> bool {
        self.result
    }

    /// A liveness or startup probe that failed for good: the container must be killed.
    pub fn failed(&self) -> bool {
        matches!(self.kind, Kind::Liveness | Kind::Startup) && !self.result && self.on_hold
    }

    /// The run due at `at` was skipped (gated by the startup probe): try again a period later.
    pub fn skip(&mut self, at: Instant, now: Instant) {
        self.next = (at + self.timing.period).max(now);
    }

    /// Records the outcome of the run that was due at `at` and finished at `now`. Returns the
    /// new published result when it changed (or, for liveness and startup, failed for good).
    pub fn record(&mut self, outcome: &Outcome, at: Instant, now: Instant) -> Option<bool> {
        self.next = (at + self.timing.period).max(now);
        let ok = match outcome {
            Outcome::Success(_) | Outcome::Warning(_) => true,
            Outcome::Failure(_) => false,
            Outcome::Error(_) => return None,
        };
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.timing.success_threshold
        } else {
            self.timing.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let mut changed = self.result != ok;
        self.result = ok;
        match (self.kind, ok) {
            (Kind::Liveness | Kind::Startup, false) => {
                // A startup probe that never succeeded "changes" to failed here too: either
                // way the container is now to be killed.
                changed = true;
                self.on_hold = true;
                self.run = 0;
            }
            (Kind::Startup, true) => self.done = true,
            _ => {}
        }
        changed.then_some(ok)
    }

    /// How long after `now` the probe is due (zero when overdue), for tests and logs.
    pub fn due_in(&self, now: Instant) -> Option<Duration> {
        self.due().map(|d| d.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(delay: u64, period: u64, success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
            termination_grace: None,
        }
    }

    const S: u64 = 1;

    /// Runs `outcomes` one period apart from t0, returning the published changes.
    fn drive(p: &mut ProbeState, t0: Instant, outcomes: &[Outcome]) -> Vec<Option<bool>> {
        let mut out = Vec::new();
        let mut at = t0;
        for o in outcomes {
            let due = p.due().expect("due");
            assert!(due <= at + Duration::from_millis(1), "due at the tick");
            out.push(p.record(o, due, at));
            at = due + p.timing.period;
        }
        out
    }

    fn ok() -> Outcome {
        Outcome::Success(String::new())
    }
    fn bad() -> Outcome {
        Outcome::Failure("no".into())
    }

    #[test]
    fn the_first_run_waits_for_the_initial_delay_after_the_start() {
        let t0 = Instant::now();
        let started = t0;
        let p = ProbeState::new(
            Kind::Readiness,
            timing(5, 2, 1, 3),
            started,
            t0 + Duration::from_secs(S),
        );
        assert_eq!(p.due(), Some(started + Duration::from_secs(5)));
        // Seen long after the delay: due at once.
        let p = ProbeState::new(
            Kind::Readiness,
            timing(5, 2, 1, 3),
            started,
            t0 + Duration::from_secs(60),
        );
        assert_eq!(p.due_in(t0 + Duration::from_secs(60)), Some(Duration::ZERO));
    }

    #[test]
    fn initial_results_per_kind() {
        let t0 = Instant::now();
        assert!(!ProbeState::new(Kind::Readiness, timing(0, 1, 1, 1), t0, t0).result());
        assert!(ProbeState::new(Kind::Liveness, timing(0, 1, 1, 1), t0, t0).result());
        assert!(!ProbeState::new(Kind::Startup, timing(0, 1, 1, 1), t0, t0).result());
    }

    #[test]
    fn readiness_flips_only_at_the_thresholds_and_keeps_probing() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Readiness, timing(0, 1, 2, 3), t0, t0);
        let changes = drive(
            &mut p,
            t0,
            &[
                ok(),
                ok(),
                ok(),
                bad(),
                bad(),
                ok(),
                bad(),
                bad(),
                bad(),
                bad(),
                ok(),
                ok(),
            ],
        );
        assert_eq!(
            changes,
            [
                None,
                Some(true), // two successes
                None,
                None,
                None,
                None, // a success breaks the run of failures
                None,
                None,
                Some(false), // three failures in a row
                None,
                None,
                Some(true),
            ]
        );
        assert!(p.due().is_some(), "readiness never stops");
    }

    #[test]
    fn errors_are_thrown_away_without_breaking_a_run() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Liveness, timing(0, 1, 1, 2), t0, t0);
        let changes = drive(&mut p, t0, &[bad(), Outcome::Error("x".into()), bad()]);
        assert_eq!(changes, [None, None, Some(false)]);
        assert!(p.failed());
    }

    #[test]
    fn liveness_failure_puts_the_probe_on_hold() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Liveness, timing(0, 10, 1, 3), t0, t0);
        let changes = drive(&mut p, t0, &[ok(), bad(), bad(), bad()]);
        assert_eq!(changes, [None, None, None, Some(false)]);
        assert!(p.failed());
        assert_eq!(
            p.due(),
            None,
            "no more runs on a container about to be killed"
        );
    }

    #[test]
    fn a_warning_counts_as_success() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Readiness, timing(0, 10, 1, 3), t0, t0);
        assert_eq!(
            drive(&mut p, t0, &[Outcome::Warning("redirect".into())]),
            [Some(true)]
        );
    }

    #[test]
    fn startup_is_done_after_success_and_fails_like_liveness() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Startup, timing(0, 1, 1, 2), t0, t0);
        assert_eq!(drive(&mut p, t0, &[bad(), ok()]), [None, Some(true)]);
        assert_eq!(p.due(), None);
        assert!(!p.failed());
        let mut p = ProbeState::new(Kind::Startup, timing(0, 1, 1, 2), t0, t0);
        assert_eq!(drive(&mut p, t0, &[bad(), bad()]), [None, Some(false)]);
        assert!(p.failed());
    }

    #[test]
    fn runs_follow_the_period_and_an_overrun_runs_at_once() {
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Readiness, timing(0, 10, 1, 3), t0, t0);
        p.record(&ok(), t0, t0 + Duration::from_millis(300));
        assert_eq!(p.due(), Some(t0 + Duration::from_secs(10)));
        let at = t0 + Duration::from_secs(10);
        p.record(&ok(), at, at + Duration::from_secs(12));
        assert_eq!(p.due(), Some(at + Duration::from_secs(12)));
        p.skip(at + Duration::from_secs(12), at + Duration::from_secs(12));
        assert_eq!(p.due(), Some(at + Duration::from_secs(22)));
    }
}
