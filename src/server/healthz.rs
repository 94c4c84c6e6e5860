//! `/healthz` as the kubelet answers it: named checks, their verdict and its text, and the
//! sync loop's check.
//!
//! Owns the wording of Kubernetes' healthz handler (`apiserver/pkg/server/healthz`): all checks
//! passing is `200 ok` (`?verbose`: a `[+]name ok` line each and `healthz check passed`); any
//! failing is `500` with `[-]name failed: reason withheld` for it (the reason goes to the log,
//! not to the public endpoint) and `healthz check failed`; `?exclude=name` skips a check;
//! `/healthz/NAME` runs one check alone (`ok`, or `500 internal server error: …`). The kubelet
//! API's `/healthz` has `ping`, `log` and `syncloop`; the healthz port (`--healthz-port`, 10248)
//! only `ping`, as the kubelet's `healthz.InstallHandler(mux)`. The sync loop fails when its
//! last iteration is older than 5 minutes (the kubelet's `syncLoopHealthCheck`: twice the
//! 1-minute resync, at least 5 minutes); vk-cri's sync loop is the relist, which stops while the
//! runtime does not answer, as the kubelet's loop does while the runtime has errors. Pure.

use std::time::{Duration, Instant};

/// How old the sync loop's last iteration may be.
pub const SYNC_LOOP_MAX_AGE: Duration = Duration::from_secs(300);

/// One named check's result.
pub type Checked = (&'static str, Result<(), String>);

/// The kubelet's `syncLoopHealthCheck`: `last` is when the loop last went round (`None`: not
/// yet, which passes).
pub fn sync_loop(last: Option<Instant>, now: Instant) -> Result<(), String> {
    match last {
        Some(at) if now.saturating_duration_since(at) > SYNC_LOOP_MAX_AGE => {
            Err("sync Loop took longer than expected".into())
        }
        _ => Ok(()),
    }
}

/// A healthz answer: status and body (`text/plain; charset=utf-8`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `/healthz` over `checks` (in order), with the request's `verbose` and `exclude` parameters.
pub fn root(checks: &[Checked], verbose: bool, exclude: &[&str]) -> Answer {
    let mut out = String::new();
    let mut failed = false;
    let mut unmatched: Vec<&str> = exclude.to_vec();
    for (name, result) in checks {
        if let Some(i) = unmatched.iter().position(|e| e == name) {
            unmatched.remove(i);
            out.push_str(&format!("[+]{name} excluded: ok\n"));
            continue;
        }
        match result {
            Ok(()) => out.push_str(&format!("[+]{name} ok\n")),
            Err(_) => {
                failed = true;
                out.push_str(&format!("[-]{name} failed: reason withheld\n"));
            }
        }
    }
    if !unmatched.is_empty() {
        let quoted: Vec<String> = unmatched.iter().map(|e| format!("{e:?}")).collect();
        out.push_str(&format!(
            "warn: some health checks cannot be excluded: no matches for {}\n",
            quoted.join(",")
        ));
    }
    if failed {
        // Go's http.Error adds the newline.
        out.push_str("healthz check failed\n");
        return Answer {
            status: 500,
            body: out,
        };
    }
    if !verbose {
        return Answer {
            status: 200,
            body: "ok".into(),
        };
    }
    out.push_str("healthz check passed\n");
    Answer {
        status: 200,
        body: out,
    }
}

/// `/healthz/NAME`: that check alone; `None` when there is no such check (404).
pub fn one(checks: &[Checked], name: &str) -> Option<Answer> {
    let (_, result) = checks.iter().find(|(n, _)| *n == name)?;
    Some(match result {
        Ok(()) => Answer {
            status: 200,
            body: "ok".into(),
        },
        Err(e) => Answer {
            status: 500,
            body: format!("internal server error: {e}\n"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(sync: Result<(), String>) -> Vec<Checked> {
        vec![("ping", Ok(())), ("log", Ok(())), ("syncloop", sync)]
    }

    #[test]
    fn passing_checks_say_ok_and_verbose_lists_them() {
        assert_eq!(
            root(&checks(Ok(())), false, &[]),
            Answer {
                status: 200,
                body: "ok".into()
            }
        );
        assert_eq!(
            root(&checks(Ok(())), true, &[]).body,
            "[+]ping ok\n[+]log ok\n[+]syncloop ok\nhealthz check passed\n"
        );
    }

    #[test]
    fn a_failing_check_is_500_with_its_reason_withheld_unless_excluded() {
        let bad = checks(Err("sync Loop took longer than expected".into()));
        assert_eq!(
            root(&bad, false, &[]),
            Answer {
                status: 500,
                body: "[+]ping ok\n[+]log ok\n[-]syncloop failed: reason withheld\nhealthz check failed\n"
                    .into()
            }
        );
        assert_eq!(
            root(&bad, true, &["syncloop", "nope"]).body,
            "[+]ping ok\n[+]log ok\n[+]syncloop excluded: ok\nwarn: some health checks cannot be excluded: no matches for \"nope\"\nhealthz check passed\n"
        );
        assert_eq!(
            one(&bad, "syncloop"),
            Some(Answer {
                status: 500,
                body: "internal server error: sync Loop took longer than expected\n".into()
            })
        );
        assert_eq!(one(&bad, "ping").map(|a| a.status), Some(200));
        assert_eq!(one(&bad, "other"), None);
    }

    #[test]
    fn the_sync_loop_may_be_five_minutes_old() {
        let t0 = Instant::now();
        assert_eq!(
            sync_loop(None, t0 + Duration::from_secs(3600)),
            Ok(()),
            "not started yet"
        );
        assert_eq!(sync_loop(Some(t0), t0 + SYNC_LOOP_MAX_AGE), Ok(()));
        assert!(sync_loop(Some(t0), t0 + SYNC_LOOP_MAX_AGE + Duration::from_secs(1)).is_err());
    }
}
