//! `prune`: apply a retention policy to one database's backups. Each backup is deleted manifest
//! first, so a prune that is killed leaves at most an incomplete leftover (which `cleanup`
//! removes), never a listed backup without its data. Marks are read again before each deletion
//! and after its manifest is gone, so a backup pinned or held while the prune runs is kept (its
//! manifest put back). The day's SQL mirror goes with the last backup of its day.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::repo::marks::MarkKind;
use crate::repo::repository::{DATA_SUFFIX, MANIFEST_SUFFIX};
use crate::repo::retention::{decide, Decision, Marks, RetentionPolicy};
use crate::repo::{Manifest, Repository};

/// What a prune decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub database: String,
    pub dry_run: bool,
    /// Every backup, newest first, damaged ones last.
    pub decisions: Vec<Decision>,
    pub deleted: usize,
    /// Day mirrors (`backup-YYYY-MM-DD.sql`) deleted, or to delete in a dry run: no backup of
    /// their day is kept.
    pub mirrors: Vec<String>,
}

/// Decide for every backup of `db` and, unless `dry_run`, delete what no rule keeps.
pub async fn prune(
    repo: &Repository,
    db: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneReport> {
    policy.check()?;
    let listing = repo.list(db).await?;
    let mirrors = listing.mirrors.clone();
    if listing.backups.is_empty() && listing.damaged.is_empty() && mirrors.is_empty() {
        return Err(Error::new(
            Kind::NotFound,
            format!("prune: no backups of {db} in {}", repo.url()),
        ));
    }
    let marks = read_marks(repo, db).await?;
    let mut decisions = decide(policy, &listing.backups, &listing.damaged, &marks, now);
    let mut report = PruneReport {
        database: db.to_string(),
        dry_run,
        decisions: Vec::new(),
        deleted: 0,
        mirrors: Vec::new(),
    };
    for d in decisions.iter_mut().filter(|d| !d.keep) {
        let Some(m) = listing.backups.iter().find(|m| m.id == d.id) else {
            continue; // damaged ones are never deleted
        };
        if dry_run {
            continue;
        }
        match delete_unless_marked(repo, m, policy, now).await {
            Ok(true) => report.deleted += 1,
            Ok(false) => {
                d.keep = true;
                d.reasons = vec!["marked while the prune ran".into()];
            }
            Err(e) => {
                return Err(e.context(format!(
                    "prune {db}: {} backup(s) deleted before this failure",
                    report.deleted
                )))
            }
        }
    }
    let kept_days: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d.keep)
        .filter_map(|d| d.created_at.map(|t| t.format("%Y-%m-%d").to_string()))
        .collect();
    for (day, name) in mirrors {
        if kept_days.contains(&day) {
            continue;
        }
        if !dry_run {
            repo.delete_object(db, &name).await?;
        }
        report.mirrors.push(name);
    }
    report.decisions = decisions;
    Ok(report)
}

async fn read_marks(repo: &Repository, db: &str) -> Result<Marks> {
    Ok(Marks {
        pins: repo.marks(MarkKind::Pin, db).await?,
        holds: repo.marks(MarkKind::Hold, db).await?,
    })
}

/// Whether `m` is pinned, or held by a hold that has not run out.
async fn marked(
    repo: &Repository,
    m: &Manifest,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<bool> {
    let marks = read_marks(repo, &m.database).await?;
    Ok(marks.pins.contains_key(&m.id)
        || marks
            .holds
            .get(&m.id)
            .is_some_and(|h| policy.hold_active(h, now)))
}

/// Delete `m` unless a mark appears: checked before, and again once the manifest is gone (a pin
/// that saw the backup listed must not lose it); then the manifest is put back. Whether it went.
async fn delete_unless_marked(
    repo: &Repository,
    m: &Manifest,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<bool> {
    if marked(repo, m, policy, now).await? {
        return Ok(false);
    }
    repo.delete_object(&m.database, &format!("{}{MANIFEST_SUFFIX}", m.id))
        .await?;
    if marked(repo, m, policy, now).await? {
        repo.commit(m).await?;
        return Ok(false);
    }
    repo.delete_object(&m.database, &format!("{}{DATA_SUFFIX}", m.id))
        .await?;
    Ok(true)
}

impl Repository {
    /// Delete one object of `db`'s backups folder (gone already is fine).
    pub async fn delete_object(&self, db: &str, name: &str) -> Result<()> {
        match self
            .backend()
            .store
            .delete(&self.prefix(db).join(name))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", e)),
        }
    }
}
