//! `prune`: apply a retention policy to one database's backups. Each backup is deleted manifest
//! first, so a prune that is killed leaves at most incomplete leftovers (which `cleanup`
//! removes), never a listed backup without its data.
//!
//! At scale (thousands of backups on S3) a prune is bound by round trips, so it works in
//! batches of up to [`BATCH`] backups, a few requests each: the marks are listed, the batch's
//! manifests deleted in one bulk request, the marks listed again, and the data of the backups
//! still unmarked deleted in one more. A backup pinned or held while the prune runs is kept:
//! one marked after the first look has its manifest put back (a pin that saw its backup listed
//! must not lose it; `mark` writes the mark and then looks for the manifest, so one of the two
//! sees the other). The day's SQL mirror goes with the last backup of its day.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::repo::generation_refs::{generation_snapshots, needed_snapshots};
use crate::repo::listing::Records;
use crate::repo::marks::MarkKind;
use crate::repo::repository::{DATA_SUFFIX, MANIFEST_SUFFIX};
use crate::repo::retention::{decide, Decision, Marks, RetentionPolicy};
use crate::repo::{BackupKind, Manifest, Repository};

/// Backups deleted per round: S3 deletes up to 1,000 keys in one request.
pub const BATCH: usize = 1000;
/// Requests at a time where objects go one by one (manifests put back, a store without bulk
/// delete).
const CONCURRENCY: usize = 16;

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

/// Decide for every backup of `db` and, unless `dry_run`, delete what no rule keeps (never the
/// snapshot of a replicated generation that is kept).
pub async fn prune(
    repo: &Repository,
    db: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<PruneReport> {
    prune_dropping(repo, db, policy, dry_run, now, &BTreeSet::new()).await
}

/// [`prune`], the generations in `dropping` counted as gone: a prune of replicated data that
/// deletes them in the same run (or would, in a dry run) no longer needs their snapshots.
pub async fn prune_dropping(
    repo: &Repository,
    db: &str,
    policy: &RetentionPolicy,
    dry_run: bool,
    now: DateTime<Utc>,
    dropping: &BTreeSet<String>,
) -> Result<PruneReport> {
    policy.check()?;
    let started = std::time::Instant::now();
    // Read before the listing: a generation recorded after this look started after it too,
    // and its snapshot is either unlisted or kept by its label.
    let generations = generation_snapshots(repo, db).await?;
    let listing = repo.list_with(db, Records::Bad).await?;
    let mirrors = listing.mirrors.clone();
    if listing.backups.is_empty() && listing.damaged.is_empty() && mirrors.is_empty() {
        return Err(Error::new(
            Kind::NotFound,
            format!("prune: no backups of {db} in {}", repo.url()),
        ));
    }
    let marks = Marks {
        pins: repo.marks(MarkKind::Pin, db).await?,
        holds: repo.marks(MarkKind::Hold, db).await?,
        bad: (listing.records.iter())
            .filter_map(|(id, r)| r.bad.clone().map(|b| (id.clone(), b)))
            .collect(),
        needed: needed_snapshots(&listing.backups, &generations, dropping, now),
    };
    let mut decisions = decide(policy, &listing.backups, &listing.damaged, &marks, now);
    tracing::debug!(
        database = db,
        backups = listing.backups.len(),
        ms = started.elapsed().as_millis() as u64,
        "prune: listed and decided"
    );
    let mut report = PruneReport {
        database: db.to_string(),
        dry_run,
        decisions: Vec::new(),
        deleted: 0,
        mirrors: Vec::new(),
    };
    if !dry_run {
        let by_id: BTreeMap<&str, &Manifest> =
            listing.backups.iter().map(|m| (m.id.as_str(), m)).collect();
        let doomed: Vec<&Manifest> = decisions
            .iter()
            .filter(|d| !d.keep)
            .filter_map(|d| by_id.get(d.id.as_str()).copied())
            .collect();
        // Damaged backups go only when a verify found them bad long enough ago; they have no
        // usable manifest, so one by one, manifest first.
        for d in decisions.iter().filter(|d| !d.keep && d.kind.is_none()) {
            if repo.mark_of(MarkKind::Pin, db, &d.id).await?.is_some() {
                continue;
            }
            repo.delete_backup_id(db, &d.id).await?;
            report.deleted += 1;
        }
        // The days whose scheduled backups go and that keep none: they ran, and the gap check
        // must not call them missing (recorded first, so a verify never sees neither).
        let kept_days: BTreeSet<chrono::NaiveDate> = decisions
            .iter()
            .filter(|d| d.keep && d.kind == Some(BackupKind::Scheduled))
            .filter_map(|d| d.created_at.map(|t| t.date_naive()))
            .collect();
        let pruned_days: BTreeSet<chrono::NaiveDate> = doomed
            .iter()
            .filter(|m| m.kind == BackupKind::Scheduled && m.good_at(now))
            .filter(|m| !marks.bad.contains_key(&m.id))
            .map(|m| m.created_at.date_naive())
            .filter(|d| !kept_days.contains(d))
            .collect();
        repo.record_pruned_days(db, &pruned_days).await?;
        let mut marked = BTreeSet::new();
        for batch in doomed.chunks(BATCH) {
            match delete_batch(repo, db, batch, policy, now).await {
                Ok((deleted, kept)) => {
                    report.deleted += deleted;
                    marked.extend(kept);
                    tracing::debug!(
                        database = db,
                        deleted = report.deleted,
                        ms = started.elapsed().as_millis() as u64,
                        "prune: batch deleted"
                    );
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "{} backup(s) deleted before this failure",
                        report.deleted
                    )))
                }
            }
        }
        for d in decisions.iter_mut().filter(|d| marked.contains(&d.id)) {
            d.keep = true;
            d.reasons = vec!["marked while the prune ran".into()];
        }
    }
    let kept_days: BTreeSet<String> = decisions
        .iter()
        .filter(|d| d.keep)
        .filter_map(|d| d.created_at.map(|t| t.format("%Y-%m-%d").to_string()))
        .collect();
    let gone: Vec<String> = mirrors
        .into_iter()
        .filter(|(day, _)| !kept_days.contains(day))
        .map(|(_, name)| name)
        .collect();
    if !dry_run {
        let keys = gone.iter().map(|n| repo.prefix(db).join(n.as_str()));
        repo.delete_keys(keys.collect()).await?;
    }
    report.mirrors = gone;
    if !dry_run {
        forget_old_events(repo, db, policy, now).await;
        // Day markers older than the oldest backup kept are past where gaps are looked for.
        let oldest = (decisions.iter())
            .filter(|d| d.keep)
            .filter_map(|d| d.created_at)
            .min();
        if let Some(t) = oldest {
            repo.forget_days_before(db, t.date_naive()).await?;
        }
    }
    report.decisions = decisions;
    Ok(report)
}

/// The event log goes with the backups: events older than `keep_within` (counted back from
/// now: the log is about what happened, not about a backup) are deleted. Best effort: an
/// event log that cannot be trimmed never fails a prune.
async fn forget_old_events(
    repo: &Repository,
    db: &str,
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) {
    let Some(window) = policy.keep_within.filter(|d| !d.is_zero()) else {
        return;
    };
    let Ok(window) = chrono::Duration::from_std(window) else {
        return;
    };
    match repo.forget_events(db, now - window).await {
        Ok(0) => {}
        Ok(n) => tracing::debug!(database = db, events = n, "prune: old events deleted"),
        Err(e) => tracing::warn!(database = db, "prune: old events not deleted: {e}"),
    }
}

/// Delete one batch of backups, each unless marked: every manifest first, then the marks read
/// again, then the data of those still unmarked. How many went, and the ids kept for a mark.
async fn delete_batch(
    repo: &Repository,
    db: &str,
    batch: &[&Manifest],
    policy: &RetentionPolicy,
    now: DateTime<Utc>,
) -> Result<(usize, BTreeSet<String>)> {
    let ids: BTreeSet<&str> = batch.iter().map(|m| m.id.as_str()).collect();
    let mut kept = repo.marked_among(db, &ids, policy, now).await?;
    let go: Vec<&Manifest> = batch
        .iter()
        .copied()
        .filter(|m| !kept.contains(&m.id))
        .collect();
    let manifests = go
        .iter()
        .map(|m| repo.key(db, &m.id, MANIFEST_SUFFIX))
        .collect();
    let deleting = repo.delete_keys(manifests).await;
    let ids: BTreeSet<&str> = go.iter().map(|m| m.id.as_str()).collect();
    let after = match deleting {
        Ok(()) => repo.marked_among(db, &ids, policy, now).await,
        Err(e) => Err(e),
    };
    // Not knowing which manifests went, or which backups were marked meanwhile: all stay.
    // Owned, for the same reason as in `delete_keys`.
    let back: Vec<Manifest> = match &after {
        Ok(marked) => go
            .iter()
            .filter(|m| marked.contains(&m.id))
            .map(|m| (*m).clone())
            .collect(),
        Err(_) => go.iter().map(|m| (*m).clone()).collect(),
    };
    let put: Vec<Result<()>> = futures::stream::iter(back)
        .map(|m| async move { put_back(repo, &m).await })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let after = after?;
    put.into_iter().collect::<Result<()>>()?;
    let gone: Vec<&&Manifest> = go.iter().filter(|m| !after.contains(&m.id)).collect();
    let deleted = gone.len();
    let data = (gone.iter())
        .flat_map(|m| {
            [
                repo.key(db, &m.id, DATA_SUFFIX),
                repo.bad_marker_key(db, &m.id),
                repo.record_key(db, &m.id),
            ]
        })
        .collect::<Vec<Key>>();
    repo.delete_keys(data).await?;
    kept.extend(after);
    Ok((deleted, kept))
}

/// Write `m`'s manifest again (a conditional create: one put back by another prune is fine).
async fn put_back(repo: &Repository, m: &Manifest) -> Result<()> {
    let key = repo.key(&m.database, &m.id, MANIFEST_SUFFIX);
    let opts = PutOptions::from(PutMode::Create);
    match repo
        .backend()
        .store
        .put_opts(&key, PutPayload::from(m.to_json()), opts)
        .await
    {
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(repo.err("put back manifest", e)),
    }
}

impl Repository {
    /// Which of `ids` (backups of `db`) are pinned, or held by a hold in force at `now`: each
    /// marks folder listed once (S3 lists what was written before), and only the holds among
    /// `ids` read, for their time.
    async fn marked_among(
        &self,
        db: &str,
        ids: &BTreeSet<&str>,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> Result<BTreeSet<String>> {
        if ids.is_empty() {
            return Ok(BTreeSet::new());
        }
        let (pins, holds) = futures::try_join!(
            self.mark_ids(MarkKind::Pin, db),
            self.mark_ids(MarkKind::Hold, db)
        )?;
        let mut marked: BTreeSet<String> = pins
            .into_iter()
            .filter(|id| ids.contains(id.as_str()))
            .collect();
        for id in holds.iter().filter(|id| ids.contains(id.as_str())) {
            let hold = self.mark_of(MarkKind::Hold, db, id).await?;
            if hold.is_some_and(|h| policy.hold_active(&h, now)) {
                marked.insert(id.clone());
            }
        }
        Ok(marked)
    }

    /// Delete objects, gone already being fine: in bulk where the store can (S3: 1,000 keys a
    /// request), and whatever the bulk delete did not confirm one by one (a provider without
    /// bulk delete, a key it refused), so an error is about a key, not the method.
    pub async fn delete_keys(&self, keys: Vec<Key>) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let store = &self.backend().store;
        let stream = futures::stream::iter(keys.clone().into_iter().map(Ok)).boxed();
        let confirmed: BTreeSet<Key> = store
            .delete_stream(stream)
            .filter_map(|r| async move { r.ok() })
            .collect()
            .await;
        // Owned keys: a stream of borrowed ones makes the future fail rustc's higher-ranked
        // Send check where the daemon spawns it (rust-lang/rust#102211).
        let unconfirmed: Vec<Key> = keys
            .into_iter()
            .filter(|k| !confirmed.contains(k))
            .collect();
        let single: Vec<Result<()>> = futures::stream::iter(unconfirmed)
            .map(|key| async move {
                match store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(e) => Err(self.err("delete", e)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        single.into_iter().collect()
    }
}
