//! The replication lease: one replicator per database and repository, whichever host it runs
//! on. On one host the database file's lock already lets one replicator open it; two hosts
//! replicating two different files under one database name into one repository would each start
//! generations, and a restore to a point would take whichever covers that time: the wrong
//! database, as far as the user is concerned. Every replicator, `lifeboat replicate` and the
//! daemon alike, takes the lease `<db>/leases/replicate.<attempt>.json` before it opens the
//! database, renews it every third of its time to live, and stops once another took it over.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::error::{Error, Kind, Result};
use crate::repo::leases::{Lease, Taken};
use crate::repo::Repository;

/// The lease's job name.
pub const LEASE_JOB: &str = "replicate";

/// A replication lease this process holds.
pub struct ReplicationLease {
    db: String,
    lease: Lease,
    ttl: Duration,
    renewed: Instant,
}

impl ReplicationLease {
    /// Take `db`'s lease for `ttl`. `Ok(Err(lease))`: another replicator holds it (`lease`
    /// says who, and until when unless it renews).
    pub async fn take(
        repo: &Repository,
        db: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<ReplicationLease, Lease>> {
        match repo.take_lease(db, LEASE_JOB, ttl, Utc::now()).await? {
            Taken::Mine(lease) => Ok(Ok(ReplicationLease {
                db: db.to_string(),
                lease,
                ttl,
                renewed: Instant::now(),
            })),
            Taken::Held(lease) => Ok(Err(lease)),
            // A replicator never marks its lease done.
            Taken::Done => Err(Error::new(
                Kind::Repository,
                format!("the replication lease of {db} is marked done, which no replicator writes"),
            )),
        }
    }

    /// Renew it once a third of its time to live has passed since the last renewal. False when
    /// another replicator took the database over (this one's lease having expired meanwhile:
    /// frozen, or cut off from the repository); then this one must ship nothing more. A
    /// renewal that fails is logged and tried again next time.
    pub async fn keep(&mut self, repo: &Repository) -> Result<bool> {
        if self.renewed.elapsed() < self.ttl / 3 {
            return Ok(true);
        }
        if !repo
            .lease_still_mine(&self.db, &self.lease, self.ttl)
            .await?
        {
            return Ok(false);
        }
        let mut next = self.lease.clone();
        next.expires = Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or_default();
        match repo.renew_lease(&self.db, &next).await {
            Ok(()) => {
                self.lease = next;
                self.renewed = Instant::now();
            }
            Err(e) => {
                tracing::warn!(database = %self.db, "the replication lease could not be renewed: {e}")
            }
        }
        Ok(true)
    }

    /// Expire it now, so another replicator may take the database over at once.
    pub async fn give_up(self, repo: &Repository) {
        if let Err(e) = repo.renew_lease(&self.db, &self.lease.closed(false)).await {
            tracing::warn!(database = %self.db, "the replication lease could not be given up: {e}");
        }
    }
}

/// The one-line refusal when `held` (another replicator's lease) keeps this one from `db`.
pub fn held_elsewhere(db: &str, held: &Lease) -> Error {
    let who = match &held.holder.host {
        Some(h) => format!("host {h}, pid {}", held.holder.pid),
        None => format!("pid {}", held.holder.pid),
    };
    Error::new(
        Kind::Database,
        format!(
            "{db} is replicated into this repository by another lifeboat ({who}), whose lease \
             runs until {} unless it renews it: stop that one first",
            held.expires
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
}
