//! Alert memory: what the daemon has told and which problems are open, so the same (event,
//! source) is not told again within `repeat_after`, and a source whose problem cleared gets one
//! `backup.recovered`. Pure: the caller gives the time.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::alerts::EventKind;

/// The default `repeat_after`.
pub const DEFAULT_REPEAT_AFTER: Duration = Duration::from_secs(6 * 3600);

#[derive(Debug)]
pub struct AlertMemory {
    repeat_after: chrono::Duration,
    sent: BTreeMap<(EventKind, String), DateTime<Utc>>,
    /// Sources with a problem told (failed or stale) and not yet recovered.
    open: BTreeSet<String>,
}

impl AlertMemory {
    pub fn new(repeat_after: Duration) -> AlertMemory {
        AlertMemory {
            repeat_after: chrono::Duration::from_std(repeat_after).unwrap_or(chrono::Duration::MAX),
            sent: BTreeMap::new(),
            open: BTreeSet::new(),
        }
    }

    /// A reloaded config's `repeat_after`.
    pub fn set_repeat_after(&mut self, repeat_after: Duration) {
        self.repeat_after =
            chrono::Duration::from_std(repeat_after).unwrap_or(chrono::Duration::MAX);
    }

    /// Whether to tell `kind` about `source` now; if so, it is remembered as told (and, for a
    /// problem, as open until [`AlertMemory::recovered`]).
    pub fn should_tell(&mut self, kind: EventKind, source: &str, now: DateTime<Utc>) -> bool {
        if kind.is_problem() {
            self.open.insert(source.to_string());
        }
        let key = (kind, source.to_string());
        match self.sent.get(&key) {
            Some(last) if now - *last < self.repeat_after => false,
            _ => {
                self.sent.insert(key, now);
                true
            }
        }
    }

    /// `source` is good again: true when a problem was open (tell `backup.recovered` once).
    /// Its problems may be told again at once should they come back.
    pub fn recovered(&mut self, source: &str) -> bool {
        let was = self.open.remove(source);
        if was {
            self.sent
                .retain(|(kind, s), _| !(s == source && kind.is_problem()));
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn repeat_after_and_recovered() {
        let mut m = AlertMemory::new(DEFAULT_REPEAT_AFTER);
        let f = EventKind::BackupFailed;
        assert!(m.should_tell(f, "a", at("2026-12-06T02:00:00Z")));
        assert!(!m.should_tell(f, "a", at("2026-12-06T07:59:59Z")));
        // Another source, or another event, is told.
        assert!(m.should_tell(f, "b", at("2026-12-06T03:00:00Z")));
        assert!(m.should_tell(EventKind::BackupStale, "a", at("2026-12-06T04:00:00Z")));
        assert!(m.should_tell(f, "a", at("2026-12-06T08:00:00Z")));
        assert!(m.recovered("a"));
        assert!(!m.recovered("a"), "told once");
        assert!(!m.recovered("c"), "never failed");
        // Failing again right after recovering is told at once.
        assert!(m.should_tell(f, "a", at("2026-12-06T08:05:00Z")));
    }

    #[test]
    fn shrinkage_is_not_a_problem_to_recover_from() {
        let mut m = AlertMemory::new(DEFAULT_REPEAT_AFTER);
        assert!(m.should_tell(EventKind::BackupShrunk, "a", at("2026-12-06T02:00:00Z")));
        assert!(!m.recovered("a"));
    }
}
