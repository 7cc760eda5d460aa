//! One replicated database's state between the daemon's turns, and when a turn must stat its
//! files: only when they may have changed (an inotify event, or no watch), or when its safety
//! sweep is due.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::error::Error;
use lifeboat::replicate::pace::Pace;
use lifeboat::replicate::{ReplicateOptions, Replicator};
use lifeboat::repo::leases::Lease;
use lifeboat::source::Source;

use super::watch::Watch;
use super::{Event, MAX_BACKOFF, RETRY_REFUSED};

/// What a stat of the database and its WAL says; a change means a sync is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    db_ino: u64,
    wal: Option<(u64, u64, i64, i64)>,
}

pub(super) fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let db = std::fs::metadata(path).ok()?;
    let wal = std::fs::metadata(lifeboat::replicate::wal::wal_path(path))
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
    Some(Fingerprint {
        db_ino: db.ino(),
        wal,
    })
}

/// How often every fingerprint is taken even without an event: what inotify cannot see
/// (another host's writes on a network file system it was not told of, a lost event) waits
/// at most this long.
pub(super) fn sweep_every(sync_interval: Duration) -> Duration {
    sync_interval
        .saturating_mul(10)
        .max(Duration::from_secs(30))
}

/// One replicated database.
pub(super) struct Db {
    pub(super) source: Source,
    pub(super) opts: ReplicateOptions,
    /// Open and idle (None while a task has it, or while it is not open).
    pub(super) replicator: Option<(Box<Replicator>, Lease)>,
    pub(super) open: bool,
    pub(super) busy: bool,
    /// Close it when it comes back (left the config, or changed); then start over with this.
    pub(super) closing: bool,
    pub(super) reopen: Option<(Source, ReplicateOptions)>,
    pub(super) next_poll: Instant,
    /// When it syncs (uploads), and how often it ticks in between while its WAL is busy.
    pub(super) pace: Pace,
    /// Its next tick is sooner than the daemon's poll: the daemon wakes for it.
    pub(super) hurry: bool,
    /// The fingerprint when the last good sync started, and the one the running sync started at.
    pub(super) shipped: Option<Fingerprint>,
    pub(super) started: Option<(Fingerprint, DateTime<Utc>)>,
    /// The fingerprint the tick that started the running background upload started at.
    pub(super) uploading: Option<(Fingerprint, DateTime<Utc>)>,
    /// Since when an unshipped change has waited.
    pub(super) pending_since: Option<DateTime<Utc>>,
    pub(super) last_sync: Instant,
    pub(super) renewed: Instant,
    pub(super) failures: u32,
    /// The last error logged, so the same one is logged once.
    pub(super) said: Option<String>,
    /// Another daemon on this host holds it but stopped renewing its lease (frozen, stopped):
    /// its lag is told from here, where it can be.
    pub(super) watching_holder: bool,
    /// Its directory is watched: a change wakes it ([`Watch`]); else it is stat-polled.
    pub(super) watched: bool,
    /// An event said its file or WAL changed since it was last fingerprinted.
    pub(super) dirty: bool,
    /// Its fingerprint when last looked at, and when every fingerprint was last taken.
    pub(super) seen: Option<Fingerprint>,
    pub(super) swept: Instant,
}

impl Db {
    pub(super) fn new(source: Source, opts: ReplicateOptions) -> Db {
        let pace = Pace::new(&opts, Instant::now());
        Db {
            source,
            opts,
            replicator: None,
            open: false,
            busy: false,
            closing: false,
            reopen: None,
            next_poll: Instant::now(),
            pace,
            hurry: false,
            shipped: None,
            started: None,
            uploading: None,
            pending_since: None,
            last_sync: Instant::now(),
            renewed: Instant::now(),
            failures: 0,
            said: None,
            watching_holder: false,
            watched: false,
            dirty: false,
            seen: None,
            swept: Instant::now(),
        }
    }

    /// Its fingerprint now. A stat only when the files may have changed: an event marked it
    /// dirty, it is not watched, it was never looked at, or its safety sweep is due (which
    /// also tries again to watch one that could not be); else the last fingerprint seen, which
    /// no event has contradicted.
    pub(super) fn look(
        &mut self,
        name: &str,
        now: Instant,
        watch: &mut Watch,
    ) -> Option<Fingerprint> {
        let sweep = watch.sweeping()
            && now.saturating_duration_since(self.swept) >= sweep_every(self.opts.sync_interval);
        if sweep {
            self.swept = now;
            if !self.watched {
                self.watched = watch.watch(name, &self.source.path);
            }
        }
        if self.watched && !self.dirty && !sweep && self.seen.is_some() {
            return self.seen;
        }
        self.dirty = false;
        self.seen = fingerprint(&self.source.path);
        self.seen
    }

    /// Start watching it; its first sweep falls at a random point of the sweep interval, so a
    /// fleet's sweeps are spread over it.
    pub(super) fn watch(&mut self, name: &str, watch: &mut Watch) {
        self.watched = watch.watch(name, &self.source.path);
        let every = sweep_every(self.opts.sync_interval).as_millis().max(1) as u64;
        let now = Instant::now();
        self.swept = now
            .checked_sub(Duration::from_millis(rand::random::<u64>() % every))
            .unwrap_or(now);
    }

    /// Made due now if its WAL gathered `checkpoint_frames` frames since its last ship (its
    /// ticks' pace guesses from the last rate, and a writer speeding up outruns it). Looked at
    /// only when an event marked it dirty and it is idle: two small reads of the `-wal` file
    /// ([`Replicator::wal_grew`]).
    pub(super) fn burst(&mut self, now: Instant) -> bool {
        if !self.dirty || self.busy || self.closing || self.next_poll <= now {
            return false;
        }
        let grew = (self.replicator.as_ref())
            .is_some_and(|(r, _)| r.wal_grew(self.opts.checkpoint_frames));
        if grew {
            self.next_poll = now;
        }
        grew
    }

    pub(super) fn backoff(&self) -> Duration {
        let base = self.opts.sync_interval.max(Duration::from_millis(500));
        base.saturating_mul(1 << self.failures.min(6))
            .min(MAX_BACKOFF)
    }
}

/// A sync (or an open) that started at `started` shipped everything up to then: nothing waits
/// unless the files changed since.
pub(super) fn shipped(db: &mut Db, started: Option<(Fingerprint, DateTime<Utc>)>) {
    let Some((fp, at)) = started else {
        return;
    };
    db.shipped = Some(fp);
    db.pending_since = if fingerprint(&db.source.path) == Some(fp) {
        None
    } else {
        // Changed while it ran: what changed has waited since the sync started, at the most.
        Some(at)
    };
}

pub(super) fn failed(
    db: &mut Db,
    name: &str,
    error: Error,
    refused: bool,
    now: Instant,
) -> Option<Event> {
    let text = error.to_string();
    let new = db.said.as_deref() != Some(text.as_str());
    if new {
        if refused {
            tracing::error!(database = %name, "not replicated: {text}");
        } else {
            tracing::warn!(database = %name, "replication: {text} (retrying)");
        }
        db.said = Some(text);
    }
    db.failures = db.failures.saturating_add(1);
    db.next_poll = now + if refused { RETRY_REFUSED } else { db.backoff() };
    // A failing open of a database that has a WAL leaves its changes waiting.
    if !refused && db.pending_since.is_none() {
        db.pending_since = Some(Utc::now());
    }
    Some(Event::Failed {
        database: name.to_string(),
        error,
        refused,
        told: new,
    })
}

/// Whether `source` is a replicated SQLite file.
pub(super) fn replicable(s: &Source) -> bool {
    s.replicate.is_some() && s.d1.is_none() && s.sql_dump.is_none()
}

/// Whether two databases' replication options are the same (a reload keeps its replicator).
pub(super) fn same(a: &ReplicateOptions, b: &ReplicateOptions) -> bool {
    (
        a.sync_interval,
        a.checkpoint_frames,
        a.checkpoint_interval,
        a.truncate_wal_bytes,
    ) == (
        b.sync_interval,
        b.checkpoint_frames,
        b.checkpoint_interval,
        b.truncate_wal_bytes,
    )
}
