//! Leases: who runs a scheduled job, so two daemons on one repository never run the same job
//! twice. A lease is an object `<db>/leases/<job>.<attempt>.json`, made with a conditional
//! create (local files and S3 alike), naming its holder (host, boot, pid) and an expiry that the
//! holder pushes forward while it works. A job is one schedule slot (`backup-20261206T020000Z`):
//! both daemons compute the same slot, so only one create succeeds. A lease whose holder died
//! (expired, or its process gone on this host) is taken over by creating the next attempt, which
//! again only one daemon can do. A finished job's lease says `done`, and nobody runs it again.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repo::claim::{Claim, Holder};
use crate::repo::Repository;

/// The content of a lease object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub job: String,
    pub attempt: u32,
    pub holder: Claim,
    pub expires: DateTime<Utc>,
    #[serde(default)]
    pub done: bool,
}

impl Lease {
    /// Whether nobody holds this lease any more: expired, or its process is gone.
    pub fn abandoned(&self, now: DateTime<Utc>) -> bool {
        !self.done && (self.expires <= now || self.holder.holder() == Holder::Gone)
    }

    /// The lease as its job ends: done for good when `ran`; otherwise given up (expired now),
    /// so a retry, here or on another daemon, takes the job as its next attempt.
    pub fn closed(self, ran: bool) -> Lease {
        Lease {
            done: ran,
            expires: if ran { self.expires } else { Utc::now() },
            ..self
        }
    }
}

fn same_holder(a: &Claim, b: &Claim) -> bool {
    (a.pid, &a.host, &a.boot_id, a.claimed_at) == (b.pid, &b.host, &b.boot_id, b.claimed_at)
}

/// What trying to take a job's lease found.
#[derive(Debug, Clone)]
pub enum Taken {
    /// This process holds it now.
    Mine(Lease),
    /// Someone else holds it, until `expires` unless renewed.
    Held(Lease),
    /// The job ran to the end already.
    Done,
}

impl Repository {
    fn lease_prefix(&self, db: &str) -> Key {
        self.backend().root.clone().join(db).join("leases")
    }

    fn lease_key(&self, db: &str, job: &str, attempt: u32) -> Key {
        self.lease_prefix(db)
            .join(format!("{job}.{attempt}.json").as_str())
    }

    /// The newest attempt's lease for `job`, if any. A lease that cannot be read yet (a
    /// store that lists an object while it is still being written) counts as held for `ttl`
    /// from when it was written: never as abandoned on sight.
    pub async fn newest_lease(
        &self,
        db: &str,
        job: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<Lease>> {
        let store = &self.backend().store;
        let prefix = self.lease_prefix(db);
        let mut listing = store.list(Some(&prefix));
        let mut newest: Option<(u32, DateTime<Utc>)> = None;
        let head = format!("{job}.");
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list leases", e))?;
            let Some(attempt) = meta
                .location
                .filename()
                .and_then(|n| n.strip_prefix(head.as_str()))
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if newest.is_none_or(|(a, _)| attempt > a) {
                newest = Some((attempt, meta.last_modified));
            }
        }
        let Some((attempt, written)) = newest else {
            return Ok(None);
        };
        let key = self.lease_key(db, job, attempt);
        let bytes = match store.get(&key).await {
            Ok(g) => g.bytes().await.map_err(|e| self.err("read a lease", e))?,
            Err(object_store::Error::NotFound { .. }) => Default::default(),
            Err(e) => return Err(self.err("read a lease", e)),
        };
        Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Lease {
                job: job.to_string(),
                attempt,
                holder: Claim {
                    pid: 0,
                    host: None,
                    boot_id: None,
                    claimed_at: written,
                    uploads: Vec::new(),
                },
                expires: written + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
                done: false,
            }
        })))
    }

    /// Take `job`'s lease on `db` for `ttl`, unless someone holds it or it is done.
    pub async fn take_lease(
        &self,
        db: &str,
        job: &str,
        ttl: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Result<Taken> {
        let attempt = match self.newest_lease(db, job, ttl).await? {
            None => 0,
            Some(l) if l.done => return Ok(Taken::Done),
            Some(l) if !l.abandoned(now) => return Ok(Taken::Held(l)),
            Some(l) => l.attempt + 1,
        };
        let lease = Lease {
            job: job.to_string(),
            attempt,
            holder: Claim::mine(),
            expires: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
            done: false,
        };
        let opts = PutOptions::from(PutMode::Create);
        let body = PutPayload::from(serde_json::to_vec(&lease).expect("lease serializes"));
        match self
            .backend()
            .store
            .put_opts(&self.lease_key(db, job, attempt), body, opts)
            .await
        {
            // Read it back: a store whose conditional create is not atomic (s3s-fs checks, then
            // writes) can let two creates through, and only the last one's content stands.
            Ok(_) => match self.newest_lease(db, job, ttl).await? {
                Some(l) if l.attempt == lease.attempt && same_holder(&l.holder, &lease.holder) => {
                    Ok(Taken::Mine(lease))
                }
                Some(l) => Ok(Taken::Held(l)),
                None => Ok(Taken::Held(lease)),
            },
            // Another daemon made this attempt first: it holds the job.
            Err(object_store::Error::AlreadyExists { .. }) => {
                match self.newest_lease(db, job, ttl).await? {
                    Some(l) if l.done => Ok(Taken::Done),
                    Some(l) => Ok(Taken::Held(l)),
                    None => Ok(Taken::Held(lease)),
                }
            }
            Err(e) => Err(self.err("take a lease", e)),
        }
    }

    /// Whether `lease` is still its job's newest attempt, held by this process: false once
    /// another daemon took the job over (this one's lease having expired meanwhile).
    pub async fn lease_still_mine(
        &self,
        db: &str,
        lease: &Lease,
        ttl: std::time::Duration,
    ) -> Result<bool> {
        Ok(self
            .newest_lease(db, &lease.job, ttl)
            .await?
            .is_some_and(|l| l.attempt == lease.attempt && same_holder(&l.holder, &lease.holder)))
    }

    /// Push a held lease's expiry forward, or mark it done. Only the holder writes its attempt's
    /// object, so a plain put is safe.
    pub async fn renew_lease(&self, db: &str, lease: &Lease) -> Result<()> {
        let body = PutPayload::from(serde_json::to_vec(lease).expect("lease serializes"));
        self.backend()
            .store
            .put(&self.lease_key(db, &lease.job, lease.attempt), body)
            .await
            .map_err(|e| self.err("renew a lease", e))?;
        Ok(())
    }

    /// Delete `db`'s finished or abandoned leases older than `before` (best effort).
    pub async fn forget_leases(&self, db: &str, before: DateTime<Utc>) -> Result<usize> {
        let store = &self.backend().store;
        let mut listing = store.list(Some(&self.lease_prefix(db)));
        let mut old = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list leases", e))?;
            if meta.last_modified < before {
                old.push(meta.location);
            }
        }
        let n = old.len();
        for key in old {
            let _ = store.delete(&key).await;
        }
        Ok(n)
    }
}
