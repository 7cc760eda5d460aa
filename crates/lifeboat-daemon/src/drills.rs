//! DR drills in the daemon: each database is drilled on `[daemon] drill_schedule` (quarterly by
//! default), the plan read from the repository's drill records (so a drill missed while the
//! daemon was down runs at its next start, and a database never drilled is drilled once it has
//! a good backup). A drill job runs under its own lease (`<db>/leases/drill-<slot>.…`), so two
//! daemons never drill one database for one slot twice. Like [`crate::plan`], the plan does no
//! I/O.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat::config::{Config, D1TargetFlags};
use lifeboat::drill::{DrillOptions, DrillRecord, Target, TargetSpec};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::leases::{Lease, Taken};
use lifeboat::repo::Repository;
use lifeboat::schedule::Schedule;

/// One due drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillDue {
    pub database: String,
    pub slot: DateTime<Utc>,
}

impl DrillDue {
    /// The job's name, the same on every daemon, distinct from the backups'.
    pub fn job(&self) -> String {
        self.slot.format("drill-%Y%m%dT%H%M%SZ").to_string()
    }
}

#[derive(Debug, Clone, Default)]
struct Entry {
    known: bool,
    refresh: bool,
    next_due: Option<DateTime<Utc>>,
    running: bool,
}

/// When each database's next drill is due.
#[derive(Debug, Default)]
pub struct DrillPlan {
    entries: BTreeMap<String, Entry>,
}

impl DrillPlan {
    /// Watch exactly these databases (new ones are read from the repository first).
    pub fn set_databases<'a>(&mut self, dbs: impl Iterator<Item = &'a str>) {
        let mut next = BTreeMap::new();
        for db in dbs {
            let e = self.entries.remove(db).unwrap_or_default();
            next.insert(db.to_string(), e);
        }
        self.entries = next;
    }

    /// Databases whose last drill has not been read yet (or must be read again).
    pub fn unknown(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.known || e.refresh)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The repository says `db` was last drilled at `last` (None: never). Plans the next drill:
    /// the first scheduled time after it, at once when that has passed or there was none.
    pub fn known(&mut self, db: &str, last: Option<DateTime<Utc>>, schedule: &Schedule) {
        if let Some(e) = self.entries.get_mut(db) {
            if !e.running {
                e.next_due = match last {
                    Some(l) => schedule.next_after(l),
                    None => Some(DateTime::<Utc>::UNIX_EPOCH),
                };
            }
            e.known = true;
            e.refresh = false;
        }
    }

    /// The drills due at `now` among the databases `ready` says may be drilled now (one with a
    /// good backup, whose backup is not running), marked running.
    pub fn due(
        &mut self,
        now: DateTime<Utc>,
        schedule: &Schedule,
        ready: impl Fn(&str) -> bool,
    ) -> Vec<DrillDue> {
        let mut out = Vec::new();
        for (db, e) in &mut self.entries {
            if !e.known || e.running || e.next_due.is_none_or(|d| d > now) || !ready(db) {
                continue;
            }
            // The slot is the last scheduled time passed; before the schedule's first, now.
            let slot = schedule.last_at_or_before(now).unwrap_or(now);
            e.running = true;
            out.push(DrillDue {
                database: db.clone(),
                slot,
            });
        }
        out
    }

    /// `db`'s drill ended (whatever its verdict): the next one is at the next scheduled time.
    pub fn finished(&mut self, db: &str, now: DateTime<Utc>, schedule: &Schedule) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            e.next_due = schedule.next_after(now);
        }
    }

    /// Try `db`'s drill again at `at` (another daemon holds it, or it could not run).
    pub fn retry_at(&mut self, db: &str, at: DateTime<Utc>) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            e.next_due = Some(at);
        }
    }

    /// Another daemon ran the drill: read when from the repository.
    pub fn refresh(&mut self, db: &str) {
        if let Some(e) = self.entries.get_mut(db) {
            e.running = false;
            e.refresh = true;
        }
    }

    /// Read every database's last drill again and plan from it (the schedule may have changed).
    pub fn replan(&mut self) {
        for e in self.entries.values_mut() {
            e.refresh = true;
        }
    }

    pub fn next_due(&self, db: &str) -> Option<DateTime<Utc>> {
        self.entries.get(db).and_then(|e| e.next_due)
    }
}

/// How a drill job ended.
#[derive(Debug)]
pub enum DrillOutcome {
    /// The drill ran (pass or fail: its record says) and its record was stored.
    Ran(Box<DrillRecord>),
    /// It could not run or its record could not be stored.
    Failed(Error),
    /// Another daemon holds it until then.
    Held { until: DateTime<Utc> },
    /// Another daemon ran it.
    Done,
}

/// The target `[daemon] drill_target` names, for database `db`. The daemon replaces what a
/// file or D1 target holds (`--force`): it is a drill's own, and each drill restores again.
pub fn target(config: &Config, db: &str) -> Result<Target> {
    let spec: TargetSpec = config
        .daemon
        .drill_target
        .as_deref()
        .unwrap_or("scratch")
        .parse()
        .map_err(|e: String| Error::new(Kind::Config, format!("[daemon] drill_target: {e}")))?;
    let target = match spec {
        TargetSpec::Scratch => Target::Scratch,
        TargetSpec::File(p) => Target::File(config.base_dir.join(p)),
        TargetSpec::D1(name) => Target::D1(config.d1_target(
            &name,
            db,
            &D1TargetFlags {
                remote: None,
                wrangler_config: None,
                max_import_file: lifeboat::d1::target::D1_MAX_IMPORT_FILE,
            },
        )?),
    };
    config.refuse_protected_drill_target(&target, None)?;
    Ok(target)
}

/// Run `due`'s drill under its lease, store its record, close the lease.
pub async fn run(repo: &Arc<Repository>, config: &Config, due: &DrillDue) -> DrillOutcome {
    let db = due.database.as_str();
    let ttl = config.daemon.lease_ttl();
    let lease = match repo.take_lease(db, &due.job(), ttl, Utc::now()).await {
        Ok(Taken::Mine(l)) => l,
        Ok(Taken::Held(l)) => return DrillOutcome::Held { until: l.expires },
        Ok(Taken::Done) => return DrillOutcome::Done,
        Err(e) => return DrillOutcome::Failed(e.context("take the drill's lease")),
    };
    let renewing = renew(Arc::clone(repo), db.to_string(), lease.clone(), ttl);
    let outcome = match target(config, db) {
        Err(e) => DrillOutcome::Failed(e),
        Ok(target) => {
            let opts = DrillOptions {
                target,
                force: true,
                rto: config.objectives.rto(),
                checks: config.drill.checks_for(db),
                scratch_dir: None,
            };
            let mut record = lifeboat::drill::drill(repo, db, &opts).await;
            match lifeboat::drill::store(repo, &mut record).await {
                Ok(_) => DrillOutcome::Ran(Box::new(record)),
                Err(e) => DrillOutcome::Failed(e.context("store the drill record")),
            }
        }
    };
    renewing.abort();
    // A drill that ran is done, whatever its verdict; one that could not run is given up, so a
    // retry (here or on another daemon) takes the next attempt.
    let ran = matches!(outcome, DrillOutcome::Ran(_));
    let closed = Lease {
        done: ran,
        expires: if ran { lease.expires } else { Utc::now() },
        ..lease
    };
    if let Err(e) = repo.renew_lease(db, &closed).await {
        tracing::warn!(database = %db, "the drill's lease could not be closed: {e}");
    }
    outcome
}

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
            if let Err(e) = repo.renew_lease(&db, &lease).await {
                tracing::warn!(database = %db, "the drill's lease could not be renewed: {e}");
            }
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
    fn quarterly_drills_missed_ones_at_once() {
        let q = Schedule::parse("0 3 1 */3 *").unwrap();
        let mut p = DrillPlan::default();
        p.set_databases(["a", "b", "c"].into_iter());
        p.known("a", Some(at("2026-10-01T03:00:05Z")), &q);
        p.known("b", Some(at("2026-07-01T03:00:05Z")), &q); // October's was missed
        p.known("c", None, &q); // never drilled
        assert_eq!(p.next_due("a"), Some(at("2027-01-01T03:00:00Z")));
        let now = at("2026-12-07T10:00:00Z");
        // c has no good backup yet: not ready.
        let due = p.due(now, &q, |db| db != "c");
        assert_eq!(
            due,
            vec![DrillDue {
                database: "b".into(),
                slot: at("2026-10-01T03:00:00Z")
            }]
        );
        assert_eq!(due[0].job(), "drill-20261001T030000Z");
        assert!(p.due(now, &q, |_| true).iter().all(|d| d.database == "c"));
        p.finished("b", at("2026-12-07T10:01:00Z"), &q);
        assert_eq!(p.next_due("b"), Some(at("2027-01-01T03:00:00Z")));
        assert!(p.due(at("2026-12-31T23:59:59Z"), &q, |_| true).is_empty());
        let due = p.due(at("2027-01-01T03:00:00Z"), &q, |_| true);
        assert_eq!(due.len(), 2, "{due:?}");
    }
}
