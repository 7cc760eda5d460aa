//! One scheduled job: back up one database for one slot, under the slot's lease, restore-test
//! what it stored (`verify_after_backup`), record how the run ended in the repository (failures too: `status` reads them from any machine), then prune
//! that database. What the job found is returned; telling the channels is the daemon's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::backup::shrinkage::Shrinkage;
use lifeboat::backup::unchanged::unchanged_since;
use lifeboat::backup::{prepare, store, BackupOptions};
use lifeboat::config::Config;
use lifeboat::error::{Error, Result};
use lifeboat::progress::Progress;
use lifeboat::repo::leases::{Lease, Taken};
use lifeboat::repo::manifest::BackupKind;
use lifeboat::repo::prune::PruneReport;
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::runs::Run;
use lifeboat::repo::{Manifest, Repository};
use lifeboat::source::Source;
use lifeboat::verify::{after_backup, VerifyReport};

use crate::plan::Due;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// A backup was stored.
    Backed {
        manifest: Box<Manifest>,
        shrinkage: Option<Shrinkage>,
        warnings: Vec<String>,
        /// The restore-test right after it (`verify_after_backup`).
        verified: Option<Box<VerifyReport>>,
    },
    /// The database is unchanged since its newest good backup (`id`): nothing to store.
    Skipped { since: String },
    /// The backup failed; the run is recorded as failed.
    Failed(Error),
    /// Another daemon holds the job's lease until `until`.
    Held { until: DateTime<Utc> },
    /// Another daemon ran this job to the end.
    Done,
}

impl Outcome {
    /// Whether the database is fresh after this job.
    pub fn fresh(&self) -> bool {
        matches!(self, Outcome::Backed { .. } | Outcome::Skipped { .. }) && self.bad().is_none()
    }

    /// The restore-test that found the backup just stored bad, if one did.
    pub fn bad(&self) -> Option<&VerifyReport> {
        match self {
            Outcome::Backed {
                verified: Some(v), ..
            } if v.damaged() => Some(v),
            _ => None,
        }
    }
}

/// What a job ended with, and how long it took.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub duration: Duration,
    /// The prune after the backup, when it failed.
    pub prune_error: Option<Error>,
    /// How many backups of each kind the repository holds after the prune (when it ran).
    pub kinds: Vec<(String, u64)>,
}

/// Run `due` for `source`.
pub async fn run(repo: &Arc<Repository>, config: &Config, source: &Source, due: &Due) -> Report {
    let started = Instant::now();
    let report = |outcome, prune: Option<Result<PruneReport>>| {
        let (prune_error, kinds) = match prune {
            Some(Err(e)) => (Some(e), Vec::new()),
            Some(Ok(r)) => (None, kept_by_kind(&r)),
            None => (None, Vec::new()),
        };
        Report {
            outcome,
            duration: started.elapsed(),
            prune_error,
            kinds,
        }
    };
    // An unchanged database needs no lease: the check only reads, and its record says so.
    // A replicated database is held open through SQLite by this process's replicator: never
    // fingerprinted (that opens the file outside SQLite, which would drop the replicator's locks).
    if source.replicate.is_none()
        && source
            .skip_unchanged
            .unwrap_or(config.daemon.skip_unchanged())
    {
        match unchanged_since(repo, source).await {
            Ok(Some(m)) => {
                let run = Run::skipped(m.id.clone());
                if let Err(e) = repo.record_run(&source.name, &run).await {
                    return report(Outcome::Failed(e.context("record the skip")), None);
                }
                return report(Outcome::Skipped { since: m.id }, None);
            }
            Ok(None) => {}
            // Whatever could not be checked is backed up.
            Err(e) => tracing::debug!(database = %source.name, "unchanged check: {e}"),
        }
    }
    let ttl = config.daemon.lease_ttl();
    let lease = match repo
        .take_lease(&source.name, &due.job(), ttl, Utc::now())
        .await
    {
        Ok(Taken::Mine(l)) => l,
        Ok(Taken::Held(l)) => return report(Outcome::Held { until: l.expires }, None),
        Ok(Taken::Done) => return report(Outcome::Done, None),
        Err(e) => return report(Outcome::Failed(e.context("take the job's lease")), None),
    };
    let renewing = renew_while_running(Arc::clone(repo), source.name.clone(), lease.clone(), ttl);
    let outcome = backup(repo, config, source).await;
    renewing.abort();
    let run = match &outcome {
        // Stored but bad: the run failed, and is tried again like any failure.
        o @ Outcome::Backed { manifest, .. } if o.bad().is_some() => Run::failed(format!(
            "backup {} was stored but failed its restore-test: {}",
            manifest.id,
            o.bad().and_then(|v| v.problem.as_deref()).unwrap_or("?")
        )),
        Outcome::Backed { manifest, .. } => Run::stored(manifest.id.clone()),
        Outcome::Failed(e) => Run::failed(e.to_string()),
        Outcome::Skipped { since } => Run::skipped(since.clone()),
        Outcome::Held { .. } | Outcome::Done => return report(outcome, None),
    };
    if let Err(e) = repo.record_run(&source.name, &run).await {
        tracing::warn!(database = %source.name, "the run could not be recorded for `status`: {e}");
    }
    // The failure also goes to the event log, for an incident's timeline (the run record
    // keeps only the last one).
    if let Outcome::Failed(e) = &outcome {
        let event = lifeboat::repo::events::Event::backup_failed(&source.name, e).with_details(
            serde_json::json!({
                "kind": e.kind.name(),
                "exit_code": e.kind.exit_code(),
                "job": due.job(),
            }),
        );
        repo.log_event_best_effort(&source.name, &event).await;
    }
    // A failed job's lease is given up (expired now), so a retry, here or on another daemon,
    // takes the job again as its next attempt; a finished one is closed for good.
    let failed = matches!(outcome, Outcome::Failed(_)) || outcome.bad().is_some();
    let closed = lease.closed(!failed);
    if let Err(e) = repo.renew_lease(&source.name, &closed).await {
        tracing::warn!(database = %source.name, "the job's lease could not be closed: {e}");
    }
    let pruned = match (&outcome, &config.retention) {
        (Outcome::Backed { .. }, Some(policy)) if config.daemon.prune() => {
            Some(prune_after(repo, &source.name, policy, config).await)
        }
        _ => None,
    };
    // Finished leases are only history: a week of it is plenty.
    let week_ago = Utc::now() - chrono::Duration::days(7);
    let _ = repo.forget_leases(&source.name, week_ago).await;
    report(outcome, pruned)
}

/// The backups a prune kept, counted by kind (damaged ones under `damaged`).
fn kept_by_kind(r: &PruneReport) -> Vec<(String, u64)> {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for d in r.decisions.iter().filter(|d| d.keep) {
        let kind = d.kind.map_or("damaged".to_string(), |k| k.to_string());
        *counts.entry(kind).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Push the lease's expiry forward every third of its life until aborted (backups, drills and
/// verifications all outlast a lease on a large database).
pub(crate) fn renew_while_running(
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
                tracing::warn!(database = %db, job = %lease.job, "the lease could not be renewed: {e}");
            }
        }
    })
}

/// The backup itself: check the source, store it, check it for shrinkage.
async fn backup(repo: &Repository, config: &Config, source: &Source) -> Outcome {
    let opts = BackupOptions {
        kind: BackupKind::Scheduled,
        compression_level: config.repository.compression_level,
        // Replicated here: read through SQLite only (see `lifeboat::fs::held`).
        held_open: source.replicate.is_some() && source.d1.is_none() && source.sql_dump.is_none(),
        ..BackupOptions::default()
    };
    let shrink_alert = config
        .retention
        .as_ref()
        .and_then(|r| r.shrink_alert)
        .unwrap_or(DEFAULT_SHRINK_ALERT);
    let prepared = match prepare(source, &opts).await {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    match store(repo, &prepared, &opts, shrink_alert, &Progress::hidden()).await {
        Ok(s) => {
            let verified = match config.daemon.verify_after_backup() {
                true => Some(Box::new(after_backup(repo, &s.manifest, None).await)),
                false => None,
            };
            Outcome::Backed {
                manifest: Box::new(s.manifest),
                shrinkage: s.shrinkage,
                warnings: s.warnings,
                verified,
            }
        }
        Err(e) => Outcome::Failed(e),
    }
}

/// Prune after a backup, as `lifeboat prune` does: a replicated database's generations past
/// `pitr_within` first (their snapshots are then judged like any backup), the backups, then
/// compaction of the generations kept.
async fn prune_after(
    repo: &Repository,
    db: &str,
    policy: &lifeboat::repo::retention::RetentionPolicy,
    config: &Config,
) -> Result<PruneReport> {
    use lifeboat::replicate::compact::{compact, CompactOptions};
    use lifeboat::replicate::retain::prune_generations;
    let now = Utc::now();
    let r = &config.replication;
    let gens = prune_generations(repo, db, r.pitr_within(), false, now)
        .await
        .map_err(|e| e.context("replicated generations"))?;
    let report =
        lifeboat::repo::prune::prune_dropping(repo, db, policy, false, now, &gens.dropping())
            .await?;
    if !gens.decisions.is_empty() {
        let opts = CompactOptions {
            windows: r.compact_windows()?,
            fine_within: r.pitr_fine_within(),
            dry_run: false,
            scratch_dir: None,
        };
        compact(repo, db, &opts, now)
            .await
            .map_err(|e| e.context("compact"))?;
    }
    Ok(report)
}
