//! Log lines a pod can trigger again and again (a failing step retried every 2 s) are logged
//! once per state change: the first failure, a different failure, and the recovery, never the
//! same failure again.
//!
//! Owns [`Repeats`], kept per pod by the syncer: under a topic (the step that failed) it
//! remembers the last message logged and how often it came back since. Pure: it decides, the
//! caller logs.

use std::collections::HashMap;

/// The failures last logged for one pod, by topic.
#[derive(Debug, Default)]
pub struct Repeats {
    last: HashMap<&'static str, (String, u32)>,
}

impl Repeats {
    /// Whether `message` under `topic` is news (log it): it is unless the same message was the
    /// last one logged there.
    pub fn news(&mut self, topic: &'static str, message: &str) -> bool {
        match self.last.get_mut(topic) {
            Some((last, again)) if last == message => {
                *again += 1;
                false
            }
            _ => {
                self.last.insert(topic, (message.to_string(), 0));
                true
            }
        }
    }

    /// The step under `topic` succeeded: a later failure is news again. How often the last
    /// failure came back unlogged, if there was one (for the recovery's log line).
    pub fn clear(&mut self, topic: &'static str) -> Option<u32> {
        self.last.remove(topic).map(|(_, again)| again)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_per_change_and_again_after_a_recovery() {
        let mut r = Repeats::default();
        assert!(r.news("volumes", "configmap \"a\" not found"));
        assert!(!r.news("volumes", "configmap \"a\" not found"));
        assert!(!r.news("volumes", "configmap \"a\" not found"));
        assert!(r.news("sandbox", "no network"), "topics are apart");
        assert!(
            r.news("volumes", "secret \"b\" not found"),
            "a different failure"
        );
        assert!(!r.news("volumes", "secret \"b\" not found"));
        assert_eq!(r.clear("volumes"), Some(1));
        assert_eq!(r.clear("volumes"), None, "nothing was failing");
        assert!(
            r.news("volumes", "secret \"b\" not found"),
            "news after a recovery"
        );
    }
}
