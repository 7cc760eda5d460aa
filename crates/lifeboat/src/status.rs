//! Status: for each database, the last good backup and its age, what the repository holds, the
//! newest emergency backup, holds and pins, and how the last run ended; and a state (OK,
//! WARNING, CRITICAL) that monitoring can act on. Everything is read from the repository, so
//! any machine that can read it sees the same.
//!
//! A scheduled run that finds a database unchanged since its newest good backup records the
//! skip; the database is then as fresh as that check: its age counts from the later of the
//! backup and the check.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repo::manifest::FUTURE_SLACK;
use crate::repo::marks::MarkKind;
use crate::repo::runs::Run;
use crate::repo::Repository;

/// `[status]` in lifeboat.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// WARNING when the last good backup is older than this (default 25 h).
    #[serde(default, with = "crate::duration::optional")]
    pub warn_age: Option<Duration>,
    /// CRITICAL when it is older than this (default 26 h).
    #[serde(default, with = "crate::duration::optional")]
    pub max_age: Option<Duration>,
}

pub const DEFAULT_WARN: Duration = Duration::from_secs(25 * 3600);
pub const DEFAULT_MAX: Duration = Duration::from_secs(26 * 3600);

/// How a database, or all of them, stand (Nagios' order: worse is greater).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum State {
    Ok,
    Warning,
    Critical,
}

impl State {
    /// The Nagios exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            State::Ok => 0,
            State::Warning => 1,
            State::Critical => 2,
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Ok => "OK",
            State::Warning => "WARNING",
            State::Critical => "CRITICAL",
        })
    }
}

/// One database's status.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    pub database: String,
    pub state: State,
    /// Why the state is not OK.
    pub reasons: Vec<String>,
    pub last_good: Option<String>,
    pub last_good_at: Option<DateTime<Utc>>,
    pub last_good_age_seconds: Option<i64>,
    /// When the last run found the database unchanged since `last_good` (and skipped it).
    pub unchanged_checked_at: Option<DateTime<Utc>>,
    /// The age the state is judged by: since the later of the last good backup and that check.
    pub age_seconds: Option<i64>,
    /// The newest backup's source (a path for a SQLite file).
    pub source_path: Option<String>,
    /// The fleet whose glob found this database, now that its file is gone (see
    /// [`DatabaseStatus::left_fleet`]).
    pub left_fleet: Option<String>,
    pub backups: usize,
    /// The backups by kind (`scheduled`, `manual`, `emergency`, `safety`).
    pub backups_by_kind: std::collections::BTreeMap<String, usize>,
    pub stored_bytes: u64,
    pub damaged: usize,
    /// Backups a verify found bad (they do not count as good).
    pub bad: usize,
    /// The last restore-test of the last good backup, when it had one.
    pub last_good_restore_test: Option<crate::repo::verify_record::Check>,
    pub newest_emergency: Option<String>,
    pub holds: Vec<String>,
    pub pins: Vec<String>,
    pub last_run: Option<Run>,
    pub last_failure: Option<Run>,
    /// When the daemon backs it up next, by its schedule (set by the caller, which has the
    /// config; None for a database the config does not name).
    pub next_run: Option<DateTime<Utc>>,
    /// The last DR drill (set by the caller: `status` reads it, the daemon does not need it).
    pub last_drill: Option<crate::drill::LastDrill>,
    /// Its continuous replication, when it has any (set by the caller, like `last_drill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication: Option<crate::replicate::lag::ReplicationStatus>,
}

/// The status of database `db`.
pub async fn database_status(
    repo: &Repository,
    db: &str,
    cfg: &StatusConfig,
    now: DateTime<Utc>,
) -> Result<DatabaseStatus> {
    let listing = repo.list(db).await?;
    let holds = repo.marks(MarkKind::Hold, db).await?;
    let pins = repo.marks(MarkKind::Pin, db).await?;
    let (last_run, last_failure) = repo.runs(db).await?;
    let good = listing.good(now).next();
    // A skip of this very backup, not dated in the future: fresh as of the check.
    let checked = last_run
        .as_ref()
        .filter(|r| r.ok && r.skipped && r.at <= now + FUTURE_SLACK)
        .filter(|r| good.is_some_and(|g| r.backup.as_deref() == Some(g.id.as_str())))
        .map(|r| r.at);
    let fresh_at = good.map(|m| checked.map_or(m.created_at, |c| c.max(m.created_at)));
    let age = fresh_at.map(|t| (now - t).num_seconds().max(0));
    let aged = |a: i64| match (good, checked) {
        (Some(g), Some(_)) => format!("{} was last checked unchanged {} ago", g.id, hours(a)),
        _ => format!("last good backup is {} old", hours(a)),
    };
    let (warn, max) = (
        cfg.warn_age.unwrap_or(DEFAULT_WARN),
        cfg.max_age.unwrap_or(DEFAULT_MAX),
    );
    let mut state = State::Ok;
    let mut reasons = Vec::new();
    let mut worse = |s: State, why: String| {
        state = state.max(s);
        reasons.push(why);
    };
    match age {
        None => worse(State::Critical, "no good backup".into()),
        Some(a) if a as u64 > max.as_secs() => worse(
            State::Critical,
            format!("{} (max_age {})", aged(a), hours(max.as_secs() as i64)),
        ),
        Some(a) if a as u64 > warn.as_secs() => worse(
            State::Warning,
            format!("{} (warn_age {})", aged(a), hours(warn.as_secs() as i64)),
        ),
        Some(_) => {}
    }
    if let Some(r) = last_run.as_ref().filter(|r| !r.ok) {
        worse(
            State::Critical,
            format!("the last run failed: {}", r.error.as_deref().unwrap_or("?")),
        );
    }
    if !listing.damaged.is_empty() {
        worse(State::Warning, damaged_reason(listing.damaged.len()));
    }
    let bad: Vec<&str> = listing
        .backups
        .iter()
        .filter(|m| listing.bad(&m.id).is_some())
        .map(|m| m.id.as_str())
        .collect();
    if let Some(newest) = bad.first() {
        worse(
            State::Warning,
            format!(
                "{} backup(s) failed verification, the newest {newest}: {}",
                bad.len(),
                listing.bad(newest).map_or("", |b| b.problem.as_str())
            ),
        );
    }
    Ok(DatabaseStatus {
        database: db.to_string(),
        state,
        reasons,
        last_good: good.map(|m| m.id.clone()),
        last_good_at: good.map(|m| m.created_at),
        last_good_age_seconds: good.map(|m| (now - m.created_at).num_seconds().max(0)),
        unchanged_checked_at: checked,
        age_seconds: age,
        source_path: listing.backups.first().map(|m| m.source.path.clone()),
        left_fleet: None,
        backups: listing.backups.len(),
        backups_by_kind: listing.backups.iter().fold(Default::default(), |mut m, b| {
            *m.entry(b.kind.to_string()).or_default() += 1;
            m
        }),
        stored_bytes: listing.backups.iter().map(|m| m.stored_size).sum(),
        damaged: listing.damaged.len(),
        bad: bad.len(),
        last_good_restore_test: good
            .and_then(|m| listing.records.get(&m.id))
            .and_then(|r| r.restore_test.clone()),
        newest_emergency: listing
            .backups
            .iter()
            .find(|m| m.kind == crate::repo::BackupKind::Emergency)
            .map(|m| m.id.clone()),
        holds: holds.into_keys().collect(),
        pins: pins.into_keys().collect(),
        last_run,
        last_failure,
        next_run: None,
        last_drill: None,
        replication: None,
    })
}

impl DatabaseStatus {
    /// The database's file left `fleet` (a glob no longer finds it, and its directory is still
    /// there): nothing is left to back up, so it is not stale and its last run is history. Its
    /// backups stay under retention; only damage among them still counts.
    /// A fleet found a file under this name that it cannot back up (a name clash, a name
    /// that cannot be one): CRITICAL, whatever its backups say.
    pub fn refused(&mut self, fleet: &str, why: &str) {
        self.state = State::Critical;
        self.reasons
            .push(format!("a file of fleet {fleet} is not backed up: {why}"));
    }

    /// Its replication's commits have waited longer than `max_lag`: WARNING at least.
    pub fn replication_lagging(&mut self, lag_seconds: i64, max_lag: std::time::Duration) {
        if self.state == State::Ok {
            self.state = State::Warning;
        }
        self.reasons.push(format!(
            "replication lag {} exceeds max_lag {}: committed changes are not in the repository (is the replicator running?)",
            hours(lag_seconds),
            hours(max_lag.as_secs() as i64)
        ));
    }

    pub fn left_fleet(&mut self, fleet: String) {
        self.state = State::Ok;
        self.reasons.clear();
        if self.damaged > 0 {
            self.state = State::Warning;
            self.reasons.push(damaged_reason(self.damaged));
        }
        self.left_fleet = Some(fleet);
    }
}

fn damaged_reason(n: usize) -> String {
    format!("{n} damaged backup(s)")
}

/// `26h`, `3d 2h`: an age for people.
pub fn hours(secs: i64) -> String {
    let h = secs / 3600;
    match h {
        0 if secs < 60 => format!("{secs}s"),
        0 => format!("{}m", secs / 60),
        1..=47 => format!("{h}h"),
        _ => format!("{}d {}h", h / 24, h % 24),
    }
}
