//! `prune`: apply a retention policy to one database's backups. Each backup is deleted manifest
//! first, so a prune that is killed leaves at most an incomplete leftover (which `cleanup`
//! removes), never a listed backup without its data.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::repo::marks::MarkKind;
use crate::repo::retention::{decide, Decision, Marks, RetentionPolicy};
use crate::repo::Repository;

/// What a prune decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub database: String,
    pub dry_run: bool,
    /// Every backup, newest first, damaged ones last.
    pub decisions: Vec<Decision>,
    pub deleted: usize,
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
    let marks = Marks {
        pins: repo.marks(MarkKind::Pin, db).await?,
        holds: repo.marks(MarkKind::Hold, db).await?,
    };
    let decisions = decide(policy, &listing.backups, &listing.damaged, &marks, now);
    let mut deleted = 0;
    if !dry_run {
        for d in decisions.iter().filter(|d| !d.keep) {
            match listing.backups.iter().find(|m| m.id == d.id) {
                Some(m) => repo.delete_backup(m).await?,
                None => repo.delete_backup_id(db, &d.id).await?,
            }
            deleted += 1;
        }
    }
    Ok(PruneReport {
        database: db.to_string(),
        dry_run,
        decisions,
        deleted,
    })
}
