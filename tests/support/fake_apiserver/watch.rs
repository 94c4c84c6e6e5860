//! Streams a watch the way the watch cache does: one event per HTTP chunk (`{"type":...,
//! "object":...}\n`), selector transitions as ADDED/DELETED, BOOKMARKs only when a
//! resourceVersion was given (periodically, and twice shortly before `timeoutSeconds`), an
//! ERROR 410 event then a clean end for a too-old resourceVersion, a clean end at the timeout,
//! and an abrupt close when a test drops all watches.
//!
//! Owns: the watch loop. Must not change state.

use std::time::{Duration, Instant};

use serde_json::Value;

use vk_cri::httpd::ChunkedWriter;

use super::api::WatchPlan;
use super::status::Status;
use super::store::{self, Change, EventType, Res};
use super::Shared;

/// `{"type":"T","object":...}\n`
pub fn event_line(kind: &str, object: &str) -> String {
    format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n")
}

/// A BOOKMARK event as the cache sends it: the kind's zero value with only the RV set.
pub fn bookmark_line(res: Res, rv: u64) -> String {
    let extra = match res {
        Res::Pods => ",\"spec\":{\"containers\":null},\"status\":{}",
        Res::Nodes => ",\"spec\":{},\"status\":{\"daemonEndpoints\":{\"kubeletEndpoint\":{\"Port\":0}},\"nodeInfo\":{\"machineID\":\"\",\"systemUUID\":\"\",\"bootID\":\"\",\"kernelVersion\":\"\",\"osImage\":\"\",\"containerRuntimeVersion\":\"\",\"kubeletVersion\":\"\",\"kubeProxyVersion\":\"\",\"operatingSystem\":\"\",\"architecture\":\"\"}}",
        Res::Leases => ",\"spec\":{}",
        Res::Services => ",\"spec\":{},\"status\":{\"loadBalancer\":{}}",
        _ => "",
    };
    let object = format!(
        "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{rv}\",\"creationTimestamp\":null}}{extra}}}",
        res.kind(),
        res.api_version()
    );
    event_line("BOOKMARK", &object)
}

pub fn error_line(status: &Status) -> String {
    event_line("ERROR", &status.to_json())
}

fn in_scope(plan: &WatchPlan, obj: &Value) -> bool {
    plan.namespace
        .as_deref()
        .is_none_or(|ns| store::meta_str(obj, "namespace") == ns)
        && plan.selector.matches(obj)
}

/// The event a change produces for this watch, if any.
fn event_for(plan: &WatchPlan, change: &Change) -> Option<String> {
    if change.res != plan.res {
        return None;
    }
    let now = in_scope(plan, &change.object);
    let before = change.old.as_ref().is_some_and(|o| in_scope(plan, o));
    let kind = match (change.kind, before, now) {
        (EventType::Deleted, _, true) => EventType::Deleted,
        (EventType::Deleted, _, false) => return None,
        (_, false, true) => EventType::Added,
        (_, true, true) => EventType::Modified,
        (_, true, false) => EventType::Deleted,
        (_, false, false) => return None,
    };
    Some(event_line(kind.as_str(), &store::to_json(&change.object)))
}

/// When the bookmarks are due: periodically, and at 2 s and 1 s before the timeout.
fn bookmark_times(start: Instant, timeout: Duration, interval: Duration) -> Vec<Instant> {
    let end = start + timeout;
    let mut times = Vec::new();
    if !interval.is_zero() {
        let mut t = start + interval;
        while t + Duration::from_secs(2) < end {
            times.push(t);
            t += interval;
        }
    }
    if timeout > Duration::from_secs(2) {
        times.push(end - Duration::from_secs(2));
        times.push(end - Duration::from_secs(1));
    }
    times.sort();
    times
}

/// Streams `plan` until the timeout, the client leaving, the server stopping or a drop.
pub fn stream(shared: &Shared, plan: WatchPlan, mut w: ChunkedWriter<'_>) {
    let start = match &plan.start {
        Err(expired) => {
            if w.write_chunk(error_line(expired).as_bytes()).is_ok() {
                let _ = w.finish();
            }
            return;
        }
        Ok(s) => s.clone(),
    };
    for obj in &start.initial {
        if w.write_chunk(event_line("ADDED", &store::to_json(obj)).as_bytes())
            .is_err()
        {
            return;
        }
    }
    let began = Instant::now();
    let end = began + plan.timeout;
    let mut bookmarks = if plan.bookmarks {
        bookmark_times(began, plan.timeout, shared.config.bookmark_interval)
    } else {
        Vec::new()
    };
    let mut last = start.from_rv;
    loop {
        let mut lines = Vec::new();
        let mut dropped;
        {
            let mut inner = shared.lock();
            loop {
                dropped = inner.faults.watch_epoch != plan.epoch;
                let now = Instant::now();
                let pending = inner.store.rv > last;
                let due = bookmarks.first().is_some_and(|t| *t <= now);
                if dropped || pending || due || now >= end {
                    break;
                }
                let next = bookmarks.first().copied().unwrap_or(end).min(end);
                // Wake at least every 100 ms to notice a client that left.
                let wait = next
                    .saturating_duration_since(now)
                    .min(Duration::from_millis(100));
                inner = shared.wait(inner, wait);
                if w.peer_closed() || w.server_stopping() {
                    return;
                }
            }
            if dropped {
                // Abrupt: no terminating chunk, the connection closes.
                return;
            }
            if last < inner.store.horizon {
                // This watcher fell behind the retained history.
                lines.push(error_line(&super::status::watch_expired(
                    last,
                    inner.store.horizon,
                )));
            } else if inner.store.rv > last {
                lines.extend(
                    inner
                        .store
                        .changes_after(last)
                        .filter_map(|c| event_for(&plan, c)),
                );
                last = inner.store.rv;
            }
            let now = Instant::now();
            if bookmarks.first().is_some_and(|t| *t <= now) {
                while bookmarks.first().is_some_and(|t| *t <= now) {
                    bookmarks.remove(0);
                }
                if inner.store.rv >= start.from_rv && lines.is_empty() {
                    lines.push(bookmark_line(plan.res, inner.store.rv));
                }
            }
        }
        let expired = lines
            .first()
            .is_some_and(|l| l.starts_with("{\"type\":\"ERROR\""));
        for line in &lines {
            if w.write_chunk(line.as_bytes()).is_err() {
                return;
            }
        }
        if expired || Instant::now() >= end {
            let _ = w.finish();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmark_shape_matches_the_fixture() {
        assert_eq!(
            bookmark_line(Res::Pods, 2700),
            "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"2700\",\"creationTimestamp\":null},\"spec\":{\"containers\":null},\"status\":{}}}\n"
        );
    }

    #[test]
    fn bookmarks_come_periodically_and_before_the_timeout() {
        let t0 = Instant::now();
        let times = bookmark_times(t0, Duration::from_secs(20), Duration::from_secs(60));
        assert_eq!(
            times,
            vec![t0 + Duration::from_secs(18), t0 + Duration::from_secs(19)]
        );
        let times = bookmark_times(t0, Duration::from_secs(10), Duration::from_secs(3));
        assert_eq!(times.len(), 4);
        assert!(bookmark_times(t0, Duration::from_secs(2), Duration::ZERO).is_empty());
    }
}
