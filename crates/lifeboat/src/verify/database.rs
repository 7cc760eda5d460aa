//! One database's verification, as `lifeboat verify` and the daemon's verifier run it: the
//! catalogue (damage recorded, findings across the window), then the harder rung on the backups
//! the [`Depth`] chooses, every result kept in the backups' verify records.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Kind, Result};
use crate::repo::listing::{Listing, Records};
use crate::repo::{Manifest, Repository};
use crate::restore::to_file::{select, Selector};
use crate::schedule::Schedule;
use crate::verify::chain;
use crate::verify::choose::{groups, in_groups, sample, Cursor, Subset};
use crate::verify::findings::{findings, Finding, Window};
use crate::verify::{read, record, record_catalogue, restore_test, VerifyReport};

/// How far past the catalogue to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Depth {
    /// The catalogue only: no data read.
    Catalogue,
    /// Restore-test the latest good backup.
    Latest,
    /// Restore-test every backup in the window.
    Window,
    /// Restore-test N backups of the window: the newest, then never-tested ones.
    Sample(usize),
    /// Read the next groups of a rolling read (every byte checked, nothing restored).
    ReadSubset(Subset),
    /// Restore-test these ids (or `latest`), with no window findings.
    Ids(Vec<String>),
}

/// What to judge the history against.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The window's start (None: the whole history).
    pub since: Option<DateTime<Utc>>,
    pub schedule: Schedule,
    pub shrink_alert: f64,
    pub scratch_dir: Option<PathBuf>,
}

/// One database's result.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseVerification {
    pub database: String,
    pub findings: Vec<Finding>,
    #[serde(skip)]
    pub reports: Vec<VerifyReport>,
    /// What was chosen and passed over (`backup latest = …`), for the operator.
    #[serde(skip)]
    pub notes: Vec<String>,
    /// The backups this verification found bad that were not before: what to alert.
    pub newly_bad: Vec<String>,
}

/// Verify database `db` as `depth` says.
pub async fn verify_database(
    repo: &Repository,
    db: &str,
    depth: &Depth,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<DatabaseVerification> {
    let mut out = DatabaseVerification {
        database: db.to_string(),
        findings: Vec::new(),
        reports: Vec::new(),
        notes: Vec::new(),
        newly_bad: Vec::new(),
    };
    let chosen: Vec<Manifest> = match depth {
        Depth::Ids(ids) => {
            let mut v = Vec::new();
            for id in ids {
                v.extend(pick(repo, db, id, &mut out).await?);
            }
            v
        }
        _ => {
            // The catalogue needs only the bad backups' records; choosing needs them all.
            let records = match depth {
                Depth::Catalogue => Records::Bad,
                _ => Records::All,
            };
            let mut listing = repo.list_with(db, records).await?;
            let (newly_bad, stale) = record_catalogue(repo, db, &listing).await?;
            out.newly_bad = newly_bad;
            if stale {
                listing = repo.list_with(db, records).await?; // with the records just written
            }
            let skipped_days = repo.covered_days(db).await?;
            let window = Window {
                since: settings.since,
                now,
                schedule: &settings.schedule,
                skipped_days: &skipped_days,
                shrink_alert: settings.shrink_alert,
            };
            out.findings = findings(&listing, &window);
            // Replicated generations' catalogue: their segments' names, from a listing.
            let (_, chains) = chain::catalogue(repo, db, settings.since).await?;
            out.findings.extend(chains);
            choose(repo, db, depth, &listing, settings, now, &mut out).await?
        }
    };
    for m in &chosen {
        let mut r = restore_test(repo, m, settings.scratch_dir.as_deref()).await;
        record(repo, &mut r).await?;
        out.reports.push(r);
    }
    out.newly_bad.extend(
        (out.reports.iter())
            .filter(|r| r.newly_bad)
            .map(|r| r.backup.clone()),
    );
    // Damage the deeper rungs found, named once.
    for r in out.reports.iter().filter(|r| r.damaged()) {
        let known = (out.findings.iter())
            .any(|f| matches!(f, Finding::Damage { backup, .. } if *backup == r.backup));
        if !known {
            out.findings.push(Finding::Damage {
                backup: r.backup.clone(),
                problem: r.problem.clone().unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The backups to restore-test when no ids were given (a rolling read is done here).
async fn choose(
    repo: &Repository,
    db: &str,
    depth: &Depth,
    listing: &Listing,
    settings: &Settings,
    now: DateTime<Utc>,
    out: &mut DatabaseVerification,
) -> Result<Vec<Manifest>> {
    let in_window = |m: &&Manifest| settings.since.is_none_or(|s| m.created_at >= s);
    Ok(match depth {
        Depth::Catalogue | Depth::Ids(_) => Vec::new(),
        Depth::Sample(n) => {
            let candidates: Vec<&Manifest> = listing.good(now).filter(in_window).collect();
            sample(listing, &candidates, *n)
                .into_iter()
                .cloned()
                .collect()
        }
        Depth::Window => listing.backups.iter().filter(in_window).cloned().collect(),
        Depth::ReadSubset(subset) => {
            let cursor = Cursor::load(repo, db).await?;
            let (gs, next) = groups(*subset, cursor);
            let mut unread = false;
            for m in in_groups(&listing.backups, subset.t, &gs) {
                let mut r = read(repo, m).await;
                record(repo, &mut r).await?;
                // Kept from reading (the network, not the backup): these groups again next time.
                unread |= !r.ok && !r.damaged() && !r.pruned;
                out.reports.push(r);
            }
            if unread {
                out.notes.push(format!(
                    "{db}: some backups could not be read; the next --read-subset reads the same groups again"
                ));
            } else {
                next.save(repo, db).await?;
            }
            Vec::new()
        }
        Depth::Latest => pick(repo, db, "latest", out).await?.into_iter().collect(),
    })
}

/// Resolve one id (or `latest`): damaged backups passed over become failures, not warnings.
async fn pick(
    repo: &Repository,
    db: &str,
    id: &str,
    out: &mut DatabaseVerification,
) -> Result<Option<Manifest>> {
    match select(repo, db, &Selector::Id(id.to_string())).await {
        Ok(sel) => {
            if sel.selector != sel.manifest.id {
                out.notes.push(sel.describe());
            }
            // A damaged backup newer than the one verified is a failure of the repository's
            // newest state, not something to pass over in silence.
            for sk in sel.skipped.iter().filter(|s| s.damaged()) {
                out.reports.push(VerifyReport::failed(
                    db,
                    &sk.id,
                    Kind::Corrupt,
                    sk.reason.clone(),
                ));
            }
            Ok(Some(sel.manifest))
        }
        // Every candidate is damaged: that is this database's verification result.
        Err(e) if e.kind == Kind::Corrupt => {
            out.reports
                .push(VerifyReport::failed(db, id, e.kind, e.to_string()));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
