//! Status: for each database, the last good backup and its age, what the repository holds, the
//! newest emergency backup, holds and pins, and how the last run ended; and a state (OK,
//! WARNING, CRITICAL) that monitoring can act on. Everything is read from the repository, so
//! any machine that can read it sees the same.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repo::marks::MarkKind;
use crate::repo::repository::Listing;
use crate::repo::runs::Run;
use crate::repo::{Manifest, Repository};

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

const DEFAULT_WARN: Duration = Duration::from_secs(25 * 3600);
const DEFAULT_MAX: Duration = Duration::from_secs(26 * 3600);

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
    pub backups: usize,
    pub stored_bytes: u64,
    pub damaged: usize,
    pub newest_emergency: Option<String>,
    pub holds: Vec<String>,
    pub pins: Vec<String>,
    pub last_run: Option<Run>,
    pub last_failure: Option<Run>,
}

/// The newest good backup of a listing: a whole-database backup a restore may pick (not a
/// safety backup), not dated in the future (a minute of clock skew allowed).
pub fn newest_good(listing: &Listing, now: DateTime<Utc>) -> Option<&Manifest> {
    listing
        .backups
        .iter()
        .filter(|m| m.kind.selectable() && m.tenant.is_none())
        .find(|m| m.created_at <= now + chrono::Duration::minutes(1))
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
    let good = newest_good(&listing, now);
    let age = good.map(|m| (now - m.created_at).num_seconds().max(0));
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
            format!(
                "last good backup is {} old (max_age {})",
                hours(a),
                hours(max.as_secs() as i64)
            ),
        ),
        Some(a) if a as u64 > warn.as_secs() => worse(
            State::Warning,
            format!(
                "last good backup is {} old (warn_age {})",
                hours(a),
                hours(warn.as_secs() as i64)
            ),
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
        worse(
            State::Warning,
            format!("{} damaged backup(s)", listing.damaged.len()),
        );
    }
    Ok(DatabaseStatus {
        database: db.to_string(),
        state,
        reasons,
        last_good: good.map(|m| m.id.clone()),
        last_good_at: good.map(|m| m.created_at),
        last_good_age_seconds: age,
        backups: listing.backups.len(),
        stored_bytes: listing.backups.iter().map(|m| m.stored_size).sum(),
        damaged: listing.damaged.len(),
        newest_emergency: listing
            .backups
            .iter()
            .find(|m| m.kind == crate::repo::BackupKind::Emergency)
            .map(|m| m.id.clone()),
        holds: holds.into_keys().collect(),
        pins: pins.into_keys().collect(),
        last_run,
        last_failure,
    })
}

/// `26h`, `3d 2h`: an age for people.
pub fn hours(secs: i64) -> String {
    let h = secs / 3600;
    match h {
        0 => format!("{}m", secs / 60),
        1..=47 => format!("{h}h"),
        _ => format!("{}d {}h", h / 24, h % 24),
    }
}
