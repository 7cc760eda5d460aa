//! The daemon's verifier: climbs the verification ladder on `[verify]`'s schedules, beside the
//! backups, never in their way. The catalogue of every database runs every
//! `catalogue_interval`; the rolling read and the sampled restore-tests run at their cron slots,
//! each database's slot under a lease (`read-<slot>`, `restore-test-<slot>`), so two daemons
//! never both do it and a slot missed while the daemon was down runs at the next start. One
//! verification runs at a time, one database after another; it takes no backup lease and blocks
//! no backup or prune.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::config::Config;
use lifeboat::error::Result;
use lifeboat::repo::leases::{Lease, Taken};
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::Repository;
use lifeboat::schedule::Schedule;
use lifeboat::verify::database::{verify_database, DatabaseVerification, Depth, Settings};

/// One round of verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    Catalogue,
    /// The rolling read of the slot at this time.
    Read(DateTime<Utc>),
    /// The sampled restore-tests of the slot at this time.
    RestoreTest(DateTime<Utc>),
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Work::Catalogue => "catalogue",
            Work::Read(_) => "read",
            Work::RestoreTest(_) => "restore-test",
        }
    }

    fn lease_job(self) -> Option<String> {
        let slot = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        match self {
            Work::Catalogue => None,
            Work::Read(t) => Some(format!("read-{}", slot(t))),
            Work::RestoreTest(t) => Some(format!("restore-test-{}", slot(t))),
        }
    }
}

/// When each rung is next due.
pub struct Verifier {
    last_catalogue: Option<Instant>,
    /// The slot to run next; at start the last one that has passed, so a missed slot runs now
    /// (its leases say whether it already ran).
    next_read: Option<DateTime<Utc>>,
    next_restore_test: Option<DateTime<Utc>>,
}

impl Verifier {
    pub fn new(config: &Config, now: DateTime<Utc>) -> Verifier {
        let last = |s: Result<Schedule>| s.ok().and_then(|s| s.last_at_or_before(now));
        Verifier {
            last_catalogue: None,
            next_read: last(config.verify.read_schedule()),
            next_restore_test: last(config.verify.restore_test_schedule()),
        }
    }

    /// What is due now, if anything (one at a time: the caller asks again when it finished).
    /// The first catalogue waits one interval after start: the start-up reads are the
    /// backups'.
    pub fn due(&mut self, config: &Config, now: DateTime<Utc>) -> Option<Work> {
        let next = |s: Result<Schedule>, t: DateTime<Utc>| s.ok().and_then(|s| s.next_after(t));
        if let Some(slot) = self.next_read.filter(|t| *t <= now) {
            self.next_read = next(config.verify.read_schedule(), now);
            return Some(Work::Read(slot));
        }
        if let Some(slot) = self.next_restore_test.filter(|t| *t <= now) {
            self.next_restore_test = next(config.verify.restore_test_schedule(), now);
            return Some(Work::RestoreTest(slot));
        }
        let started = *self.last_catalogue.get_or_insert_with(Instant::now);
        if started.elapsed() >= config.verify.catalogue_interval() {
            self.last_catalogue = Some(Instant::now());
            return Some(Work::Catalogue);
        }
        None
    }

    /// A reload: schedules may have changed.
    pub fn reload(&mut self, config: &Config, now: DateTime<Utc>) {
        let next = |s: Result<Schedule>| s.ok().and_then(|s| s.next_after(now));
        self.next_read = next(config.verify.read_schedule());
        self.next_restore_test = next(config.verify.restore_test_schedule());
    }
}

/// Run `work` over `databases`, one after another. Each database's result, or why it could not
/// be verified; a slot another daemon holds or finished is left out.
pub async fn run(
    repo: Arc<Repository>,
    config: Arc<Config>,
    databases: Vec<(String, Schedule)>,
    work: Work,
) -> Vec<(String, Result<DatabaseVerification>)> {
    let now = Utc::now();
    let depth = match work {
        Work::Catalogue => Depth::Catalogue,
        Work::Read(_) => match config.verify.read_subset() {
            Ok(s) => Depth::ReadSubset(s),
            Err(_) => return Vec::new(), // refused when the config was loaded
        },
        Work::RestoreTest(_) => Depth::Sample(config.verify.sample()),
    };
    let since = chrono::Duration::from_std(config.verify.window())
        .ok()
        .and_then(|d| now.checked_sub_signed(d));
    let shrink_alert = (config.retention.as_ref())
        .and_then(|r| r.shrink_alert)
        .unwrap_or(DEFAULT_SHRINK_ALERT);
    let ttl = config.daemon.lease_ttl();
    let mut out = Vec::new();
    for (db, schedule) in databases {
        let lease = match work.lease_job() {
            None => None,
            Some(job) => match repo.take_lease(&db, &job, ttl, Utc::now()).await {
                Ok(Taken::Mine(l)) => Some(l),
                Ok(Taken::Held(_)) | Ok(Taken::Done) => continue,
                Err(e) => {
                    out.push((db, Err(e.context("take the verification's lease"))));
                    continue;
                }
            },
        };
        let renewing = lease
            .clone()
            .map(|l| renew(Arc::clone(&repo), db.clone(), l, ttl));
        let settings = Settings {
            since,
            schedule,
            shrink_alert,
            scratch_dir: None,
        };
        let result = verify_database(&repo, &db, &depth, &settings, Utc::now()).await;
        if let Some(r) = renewing {
            r.abort();
        }
        if let Some(l) = lease {
            // Done whatever it found: a damaged backup is a finding, not a reason to run again.
            let failed = result.is_err();
            let closed = Lease {
                done: !failed,
                expires: if failed { Utc::now() } else { l.expires },
                ..l
            };
            let _ = repo.renew_lease(&db, &closed).await;
        }
        out.push((db, result));
    }
    out
}

/// Keep a lease alive while its verification runs (a restore-test of a large backup takes
/// longer than a lease).
fn renew(
    repo: Arc<Repository>,
    db: String,
    mut lease: Lease,
    ttl: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            lease.expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
            let _ = repo.renew_lease(&db, &lease).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_missed_slot_runs_at_start_and_then_each_slot_once() {
        let config = Config::parse(
            "[verify]\nread_schedule = \"30 3 * * *\"\nrestore_test_schedule = \"0 4 * * 0\"\n",
            |_| None,
        )
        .unwrap();
        // Monday 2026-12-07 10:00: the read's slot passed at 03:30, the restore-test's on
        // Sunday 04:00.
        let now = at("2026-12-07T10:00:00Z");
        let mut v = Verifier::new(&config, now);
        assert_eq!(
            v.due(&config, now),
            Some(Work::Read(at("2026-12-07T03:30:00Z")))
        );
        assert_eq!(
            v.due(&config, now),
            Some(Work::RestoreTest(at("2026-12-06T04:00:00Z")))
        );
        assert_eq!(v.due(&config, now), None);
        assert_eq!(v.due(&config, at("2026-12-08T03:29:59Z")), None);
        assert_eq!(
            v.due(&config, at("2026-12-08T03:30:00Z")),
            Some(Work::Read(at("2026-12-08T03:30:00Z")))
        );
        assert_eq!(
            Work::Read(at("2026-12-08T03:30:00Z")).lease_job().unwrap(),
            "read-20261208T033000Z"
        );
    }
}
