//! One piece of a replicated database's work, run on a blocking thread: SQLite calls and WAL
//! reads never hold up the runtime's workers, and the pool is bounded by `[replication]
//! workers` because the daemon starts no more than that many at once. The replicator moves
//! into the task and comes back with its result.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat::error::Result;
use lifeboat::replicate::{ReplicateOptions, Replicator, SyncReport};
use lifeboat::repo::leases::{Lease, Taken};
use lifeboat::repo::Repository;
use lifeboat::source::Source;

/// The lease's job name: one replicator per database across daemons and `lifeboat replicate`.
pub use lifeboat::replicate::lease::LEASE_JOB;
use lifeboat::replicate::lease::{self, Renewal};

/// What to do.
pub enum Work {
    /// Take the lease, open the replicator (resume the chain, or start a generation).
    Open {
        source: Source,
        opts: ReplicateOptions,
        ttl: Duration,
    },
    /// Ship what is new (and checkpoint when due); renew the lease first when `renew`.
    /// A sync uploads what is staged before it ends; a database whose WAL fills fast
    /// (`hurry`, see `lifeboat::replicate::pace`) ticks instead, and its upload, started
    /// when `upload`, runs in the background.
    Sync {
        replicator: Box<Replicator>,
        lease: Lease,
        renew: Option<Duration>,
        hurry: bool,
        upload: bool,
    },
    /// Ship what is committed, release the WAL and give the lease up.
    Close {
        replicator: Box<Replicator>,
        lease: Lease,
    },
}

/// How it ended.
pub enum Done {
    Opened {
        replicator: Box<Replicator>,
        lease: Lease,
        report: SyncReport,
    },
    /// Another daemon replicates it, until `until` unless renewed.
    Held {
        until: chrono::DateTime<Utc>,
    },
    /// Another process on this host holds the database file's replication lock (`owner`: the
    /// pid it wrote); no lease was taken. `expired`: that holder is a daemon whose lease
    /// expired then (it stopped renewing: frozen, or stopped).
    Locked {
        owner: String,
        expired: Option<chrono::DateTime<Utc>>,
    },
    Synced {
        replicator: Box<Replicator>,
        lease: Lease,
        /// The lease was pushed forward.
        renewed: bool,
        /// An upload was asked for.
        upload: bool,
        result: Result<SyncReport>,
    },
    /// Another daemon took the database over (this one's lease had expired): the replicator
    /// was dropped, shipping nothing more.
    Lost,
    /// Opening failed (the lease, if taken, was given up).
    Failed(lifeboat::error::Error),
    Closed(Result<SyncReport>),
}

/// Run `work` on a blocking thread, driving its repository calls from there.
pub async fn run(repo: Arc<Repository>, work: Work) -> Done {
    let handle = tokio::runtime::Handle::current();
    let task = tokio::task::spawn_blocking(move || handle.block_on(run_here(repo, work)));
    match task.await {
        Ok(done) => done,
        Err(e) => Done::Failed(lifeboat::error::Error::new(
            lifeboat::error::Kind::Internal,
            format!("replication task: {e}"),
        )),
    }
}

async fn run_here(repo: Arc<Repository>, work: Work) -> Done {
    match work {
        Work::Open { source, opts, ttl } => {
            // Another process on this host holds the file (a daemon frozen past its lease, or
            // a `lifeboat replicate`), and with it the WAL. Taking its expired lease would only
            // make it step back at its next renewal, dropping what it has not shipped, while
            // the open here is refused: nobody would replicate. Wait for it instead.
            let lock = lifeboat::fs::atomic_replace::suffixed(&source.path, ".replicate");
            if let Some(owner) = lifeboat::fs::target_lock::held_elsewhere(&lock) {
                return match repo.newest_lease(&source.name, LEASE_JOB, ttl).await {
                    Ok(Some(l)) if !l.done && !l.abandoned(Utc::now()) => {
                        Done::Held { until: l.expires }
                    }
                    Ok(l) => Done::Locked {
                        owner,
                        expired: l.filter(|l| !l.done).map(|l| l.expires),
                    },
                    Err(e) => Done::Failed(e.context("read the replication lease")),
                };
            }
            // A database that would be refused (gone, not SQLite, not in WAL mode) is retried
            // every minute: without a lease object written each time.
            if let Err(e) = lifeboat::replicate::connection::preflight(&source.path) {
                return Done::Failed(e);
            }
            let lease = match repo
                .take_lease(&source.name, LEASE_JOB, ttl, Utc::now())
                .await
            {
                Ok(Taken::Mine(l)) => l,
                Ok(Taken::Held(l)) => return Done::Held { until: l.expires },
                // Never written by a replicator (its lease is never done): take the next attempt.
                Ok(Taken::Done) => return Done::Held { until: Utc::now() },
                Err(e) => return Done::Failed(e.context("take the replication lease")),
            };
            match Replicator::open(Arc::clone(&repo), &source, opts).await {
                Ok((r, report)) => Done::Opened {
                    replicator: Box::new(r),
                    lease,
                    report,
                },
                Err(e) => {
                    lease::give_up(&repo, &source.name, lease).await;
                    Done::Failed(e)
                }
            }
        }
        Work::Sync {
            mut replicator,
            mut lease,
            renew,
            hurry,
            upload,
        } => {
            let mut renewed = false;
            if let Some(ttl) = renew {
                let db = replicator.database().to_string();
                match lease::renew(&repo, &db, &lease, ttl).await {
                    Renewal::Renewed(next) => {
                        lease = next;
                        renewed = true;
                    }
                    Renewal::NotRenewed => {}
                    // Another daemon replicates it now.
                    Renewal::TakenOver => {
                        drop(replicator);
                        return Done::Lost;
                    }
                }
            }
            let result = if hurry {
                replicator.tick(upload).await
            } else {
                replicator.sync().await
            };
            Done::Synced {
                replicator,
                lease,
                renewed,
                upload: upload || !hurry,
                result,
            }
        }
        Work::Close { replicator, lease } => {
            let db = replicator.database().to_string();
            let result = replicator.close().await;
            lease::give_up(&repo, &db, lease).await;
            Done::Closed(result)
        }
    }
}
