//! The plan: which database's backup is due when, decided from the schedules, the clock and what
//! the repository says, with no I/O of its own, so tests drive it with any clock.
//!
//! - A database is due when a scheduled time has passed since its newest good backup (or the
//!   last check that found it unchanged). At start, and after the host wakes from sleep, that
//!   catches up a missed run at once: if the newest good backup is older than one schedule
//!   interval, a scheduled time has passed since it.
//! - Each database runs one job at a time; the pool around the plan bounds how many run at once.
//! - A job is one slot, the scheduled time it stands for: two daemons compute the same slot, and
//!   the slot's lease in the repository lets only one of them run it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeboat::schedule::Schedule;

/// One due job: back up `database` for the scheduled time `slot`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub database: String,
    pub slot: DateTime<Utc>,
}

impl Due {
    /// The job's name, the same on every daemon: its lease's name.
    pub fn job(&self) -> String {
        self.slot.format("backup-%Y%m%dT%H%M%SZ").to_string()
    }
}

/// What the plan knows of one database.
#[derive(Debug, Clone)]
struct Entry {
    schedule: Schedule,
    /// When the newest good backup (or unchanged check) was; None: none yet, or not read yet.
    fresh_at: Option<DateTime<Utc>>,
    /// Whether `fresh_at` has been read from the repository.
    known: bool,
    /// Read it again (another daemon ran its job): only `fresh_at` changes.
    refresh: bool,
    /// The next time a job is due.
    next_due: Option<DateTime<Utc>>,
    running: bool,
}

/// The plan for every database the daemon watches.
#[derive(Debug, Default)]
pub struct Plan {
    entries: BTreeMap<String, Entry>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    /// Watch exactly these databases (after discovery or a config reload): new ones start
    /// unknown (their repository state is read before they are planned), vanished ones are
    /// dropped, and a changed schedule is replanned from the last fresh time.
    pub fn set_databases(&mut self, dbs: Vec<(String, Schedule)>) {
        let mut next = BTreeMap::new();
        for (name, schedule) in dbs {
            let entry = match self.entries.remove(&name) {
                Some(mut e) => {
                    if e.schedule != schedule {
                        e.next_due = e.known.then(|| due_after(&schedule, e.fresh_at)).flatten();
                        e.schedule = schedule;
                    }
                    e
                }
                None => Entry {
                    schedule,
                    fresh_at: None,
                    known: false,
                    refresh: false,
                    next_due: None,
                    running: false,
                },
            };
            next.insert(name, entry);
        }
        self.entries = next;
    }

    pub fn databases(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Databases whose repository state has not been read yet, or must be read again.
    pub fn unknown(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.known || e.refresh)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The repository says `db`'s newest good backup (or unchanged check) was at `fresh_at`.
    /// The first time, that plans its next job (at once if a scheduled time has passed since);
    /// afterwards it only says how fresh it is (a failed database is retried at its next
    /// scheduled time, not at every look).
    pub fn known(&mut self, db: &str, fresh_at: Option<DateTime<Utc>>) {
        if let Some(e) = self.entries.get_mut(db) {
            e.fresh_at = e.fresh_at.max(fresh_at);
            e.refresh = false;
            if !e.known && !e.running {
                e.next_due = due_after(&e.schedule, e.fresh_at);
            }
            e.known = true;
        }
    }

    /// The jobs due at `now`, marked running. Each database has at most one job at a time.
    pub fn due(&mut self, now: DateTime<Utc>) -> Vec<Due> {
        let mut out = Vec::new();
        for (name, e) in &mut self.entries {
            if !e.known || e.running {
                continue;
            }
            if e.next_due.is_some_and(|d| d <= now) {
                // The slot is the latest scheduled time passed: after a long sleep, one run
                // catches up, not one per missed time.
                let Some(slot) = e.schedule.last_at_or_before(now) else {
                    continue;
                };
                e.running = true;
                out.push(Due {
                    database: name.clone(),
                    slot,
                });
            }
        }
        out
    }

    /// `db`'s job ended at `now`; `fresh` when it left a good backup (or found the database
    /// unchanged). Whatever the outcome, the next job is at the next scheduled time: a failure
    /// never stops later runs.
    pub fn finished(&mut self, db: &str, fresh: bool, now: DateTime<Utc>) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            if fresh {
                e.fresh_at = e.fresh_at.max(Some(now));
            }
            e.next_due = e.schedule.next_after(now);
        }
    }

    /// `db`'s job failed at `now`: try again after `retry_after`, or at the next scheduled time
    /// if that comes first. The retry stands for the same scheduled time (its lease's next
    /// attempt).
    pub fn failed(&mut self, db: &str, now: DateTime<Utc>, retry_after: std::time::Duration) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            let retry =
                now + chrono::Duration::from_std(retry_after).unwrap_or(chrono::Duration::MAX);
            e.next_due = e.schedule.next_after(now).min(Some(retry)).or(Some(retry));
        }
    }

    /// `db`'s job could not run now (another daemon holds its lease): try again at `at`.
    pub fn retry_at(&mut self, db: &str, at: DateTime<Utc>) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            e.next_due = Some(at);
        }
    }

    /// Read how fresh `db` is from the repository again (another daemon ran its job).
    pub fn refresh(&mut self, db: &str) {
        if let Some(e) = self.entries.get_mut(db) {
            e.refresh = true;
        }
    }

    /// When `db` is next due.
    pub fn next_due(&self, db: &str) -> Option<DateTime<Utc>> {
        self.entries.get(db).and_then(|e| e.next_due)
    }

    /// When `db` was last known fresh.
    pub fn fresh_at(&self, db: &str) -> Option<DateTime<Utc>> {
        self.entries.get(db).and_then(|e| e.fresh_at)
    }

    /// Databases not fresh within `max_age` at `now`: known ones whose job is neither queued
    /// nor running (a database waiting for its first backup is not told stale meanwhile).
    pub fn stale(&self, now: DateTime<Utc>, max_age: std::time::Duration) -> Vec<String> {
        let max_age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        self.entries
            .iter()
            .filter(|(_, e)| e.known && !e.running && e.fresh_at.is_none_or(|f| now - f > max_age))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// The first scheduled time after `fresh_at` (at once, the epoch, when there is no backup).
fn due_after(schedule: &Schedule, fresh_at: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match fresh_at {
        Some(t) => schedule.next_after(t),
        None => Some(DateTime::<Utc>::UNIX_EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily() -> Schedule {
        Schedule::parse("0 2 * * *").unwrap()
    }

    fn plan(dbs: &[&str]) -> Plan {
        let mut p = Plan::new();
        p.set_databases(dbs.iter().map(|d| (d.to_string(), daily())).collect());
        p
    }

    #[test]
    fn next_run_times_follow_the_schedule() {
        let mut p = plan(&["a"]);
        assert!(
            p.due(at("2026-12-06T12:00:00Z")).is_empty(),
            "unknown: not planned"
        );
        p.known("a", Some(at("2026-12-06T02:00:07Z")));
        assert_eq!(p.next_due("a"), Some(at("2026-12-07T02:00:00Z")));
        assert!(p.due(at("2026-12-07T01:59:59Z")).is_empty());
        let due = p.due(at("2026-12-07T02:00:00Z"));
        assert_eq!(
            due,
            vec![Due {
                database: "a".into(),
                slot: at("2026-12-07T02:00:00Z")
            }]
        );
        assert_eq!(due[0].job(), "backup-20261207T020000Z");
        // One job at a time per database.
        assert!(p.due(at("2026-12-07T02:00:30Z")).is_empty());
        p.finished("a", true, at("2026-12-07T02:00:40Z"));
        assert_eq!(p.next_due("a"), Some(at("2026-12-08T02:00:00Z")));
        assert_eq!(p.fresh_at("a"), Some(at("2026-12-07T02:00:40Z")));
    }

    #[test]
    fn missed_runs_are_caught_up_at_once_and_only_once() {
        // Started at 09:00; the newest good backup is from yesterday 02:00, 31 h old: more than
        // one interval, so the 02:00 of today was missed and runs at once, as today's slot.
        let mut p = plan(&["a", "b", "c"]);
        p.known("a", Some(at("2026-12-05T02:00:05Z")));
        // b has never been backed up: at once.
        p.known("b", None);
        // c was backed up by another daemon at today's 02:00: not due.
        p.known("c", Some(at("2026-12-06T02:00:09Z")));
        let due = p.due(at("2026-12-06T09:00:00Z"));
        let names: Vec<&str> = due.iter().map(|d| d.database.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(due.iter().all(|d| d.slot == at("2026-12-06T02:00:00Z")));
        // The host sleeps three days after a's job: one catch-up run each on waking, not three
        // (b's job is still running: nothing more for b).
        p.finished("a", true, at("2026-12-06T09:01:00Z"));
        let woke = at("2026-12-09T15:00:00Z");
        let due = p.due(woke);
        let names: Vec<&str> = due.iter().map(|d| d.database.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert!(due.iter().all(|d| d.slot == at("2026-12-09T02:00:00Z")));
        // A restart just after the scheduled time (the newest backup is 23 h 59 min old, less
        // than an interval) still runs today's slot: a scheduled time passed since it.
        let mut q = plan(&["a"]);
        q.known("a", Some(at("2026-12-05T02:00:30Z")));
        assert_eq!(q.due(at("2026-12-06T02:00:10Z")).len(), 1);
    }

    #[test]
    fn failures_never_stop_later_runs_and_held_jobs_retry() {
        let mut p = plan(&["a"]);
        p.known("a", Some(at("2026-12-05T02:00:05Z")));
        assert_eq!(p.due(at("2026-12-06T02:00:00Z")).len(), 1);
        p.finished("a", false, at("2026-12-06T02:00:03Z"));
        assert_eq!(p.fresh_at("a"), Some(at("2026-12-05T02:00:05Z")));
        assert_eq!(p.next_due("a"), Some(at("2026-12-07T02:00:00Z")));
        assert_eq!(p.due(at("2026-12-07T02:00:00Z")).len(), 1);
        // Another daemon holds the lease until 02:02: try again then, for the same slot.
        p.retry_at("a", at("2026-12-07T02:02:00Z"));
        assert!(p.due(at("2026-12-07T02:01:00Z")).is_empty());
        let due = p.due(at("2026-12-07T02:02:00Z"));
        assert_eq!(due[0].slot, at("2026-12-07T02:00:00Z"));
    }

    #[test]
    fn a_failed_job_is_retried_for_the_same_scheduled_time() {
        let mut p = plan(&["a"]);
        p.known("a", Some(at("2026-12-05T02:00:05Z")));
        assert_eq!(p.due(at("2026-12-06T02:00:00Z")).len(), 1);
        p.failed(
            "a",
            at("2026-12-06T02:00:03Z"),
            std::time::Duration::from_secs(900),
        );
        assert!(p.due(at("2026-12-06T02:15:02Z")).is_empty());
        let due = p.due(at("2026-12-06T02:15:03Z"));
        assert_eq!(due[0].slot, at("2026-12-06T02:00:00Z"));
        // Never later than the next scheduled time.
        p.failed(
            "a",
            at("2026-12-07T01:50:00Z"),
            std::time::Duration::from_secs(900),
        );
        assert_eq!(p.next_due("a"), Some(at("2026-12-07T02:00:00Z")));
    }

    #[test]
    fn staleness_fires_and_clears() {
        let max_age = std::time::Duration::from_secs(26 * 3600);
        let mut p = plan(&["a", "b"]);
        p.known("a", Some(at("2026-12-05T02:00:00Z")));
        p.known("b", Some(at("2026-12-06T02:00:00Z")));
        assert!(p.stale(at("2026-12-06T04:00:00Z"), max_age).is_empty());
        assert_eq!(p.stale(at("2026-12-06T04:00:01Z"), max_age), ["a"]);
        // Queued or running: not told stale while its job may make it fresh.
        let _ = p.due(at("2026-12-06T04:00:02Z"));
        assert!(p.stale(at("2026-12-06T04:00:03Z"), max_age).is_empty());
        p.finished("a", true, at("2026-12-06T04:01:00Z"));
        assert!(p.stale(at("2026-12-06T05:00:00Z"), max_age).is_empty());
        // A look at the repository that finds nothing newer never makes a failed database due
        // again before its next scheduled time.
        let _ = p.due(at("2026-12-07T02:00:00Z"));
        p.finished("b", false, at("2026-12-07T02:00:01Z"));
        p.refresh("b");
        assert_eq!(p.unknown(), ["b"]);
        p.known("b", None);
        assert!(p.unknown().is_empty());
        assert!(p.due(at("2026-12-07T09:00:00Z")).is_empty());
        assert_eq!(p.next_due("b"), Some(at("2026-12-08T02:00:00Z")));
    }

    #[test]
    fn reload_keeps_state_and_replans_changed_schedules() {
        let mut p = plan(&["a", "b"]);
        p.known("a", Some(at("2026-12-06T02:00:00Z")));
        p.known("b", Some(at("2026-12-06T02:00:00Z")));
        p.set_databases(vec![
            ("a".into(), Schedule::parse("0 * * * *").unwrap()),
            ("c".into(), daily()),
        ]);
        assert_eq!(p.databases().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(p.next_due("a"), Some(at("2026-12-06T03:00:00Z")));
        assert_eq!(p.unknown(), ["c"]);
    }
}
