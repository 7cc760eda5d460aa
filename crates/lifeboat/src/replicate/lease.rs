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
    pub async fn keep(&mut self, repo: &Repository) -> bool {
        if self.renewed.elapsed() < self.ttl / 3 {
            return true;
        }
        match renew(repo, &self.db, &self.lease, self.ttl).await {
            Renewal::Renewed(next) => {
                self.lease = next;
                self.renewed = Instant::now();
                true
            }
            Renewal::NotRenewed => true,
            Renewal::TakenOver => false,
        }
    }

    /// Expire it now, so another replicator may take the database over at once.
    pub async fn give_up(self, repo: &Repository) {
        give_up(repo, &self.db, self.lease).await
    }
}

/// What renewing a replication lease did.
pub enum Renewal {
    /// Pushed forward: the lease as it now stands.
    Renewed(Lease),
    /// Not written (the repository failed; logged): still held until it expires.
    NotRenewed,
    /// Another replicator took the database over, this lease having expired.
    TakenOver,
}

/// Push `lease` (on `db`) `ttl` into the future, unless another replicator took it over: never
/// renew a lease that is no longer the newest attempt. A check that cannot be made does not
/// stop the renewal.
pub async fn renew(repo: &Repository, db: &str, lease: &Lease, ttl: Duration) -> Renewal {
    if let Ok(false) = repo.lease_still_mine(db, lease, ttl).await {
        return Renewal::TakenOver;
    }
    let mut next = lease.clone();
    next.expires = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default();
    match repo.renew_lease(db, &next).await {
        Ok(()) => Renewal::Renewed(next),
        Err(e) => {
            tracing::warn!(database = %db, "the replication lease could not be renewed: {e}");
            Renewal::NotRenewed
        }
    }
}

/// Expire `lease` (on `db`) now, so another replicator may take the database over at once.
pub async fn give_up(repo: &Repository, db: &str, lease: Lease) {
    if let Err(e) = repo.renew_lease(db, &lease.closed(false)).await {
        tracing::warn!(database = %db, "the replication lease could not be given up: {e}");
    }
}

/// The one-line refusal when `held` (another replicator's lease) keeps this one from `db`.
pub fn held_elsewhere(db: &str, held: &Lease) -> Error {
    let who = match (&held.holder.host, held.holder.pid) {
        // `newest_lease`'s stand-in for a lease object it could not read (still being
        // written, or damaged): held for its time to live from when it was written.
        (None, 0) => format!(
            "its lease object {db}/leases/{LEASE_JOB}.{}.json cannot be read yet",
            held.attempt
        ),
        (Some(h), pid) => format!("host {h}, pid {pid}"),
        (None, pid) => format!("pid {pid}"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::claim::Claim;

    fn lease(host: Option<&str>, pid: u32) -> Lease {
        Lease {
            job: LEASE_JOB.into(),
            attempt: 4,
            holder: Claim {
                pid,
                host: host.map(String::from),
                ..Claim::mine()
            },
            expires: chrono::DateTime::parse_from_rfc3339("2026-12-07T22:00:00Z")
                .unwrap()
                .to_utc(),
            done: false,
        }
    }

    #[test]
    fn the_refusal_names_the_holder_or_the_lease_it_cannot_read() {
        let e = held_elsewhere("app", &lease(Some("db1"), 4242));
        assert_eq!(e.kind, Kind::Database);
        assert_eq!(
            e.to_string(),
            "app is replicated into this repository by another lifeboat (host db1, pid 4242), \
             whose lease runs until 2026-12-07T22:00:00Z unless it renews it: stop that one first"
        );
        let e = held_elsewhere("app", &lease(None, 0)).to_string();
        assert!(
            e.contains("(its lease object app/leases/replicate.4.json cannot be read yet)"),
            "{e}"
        );
        assert!(!e.contains("pid 0"), "{e}");
    }
}
