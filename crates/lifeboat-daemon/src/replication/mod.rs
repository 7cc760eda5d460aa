//! Replication inside the daemon: every database with `replicate = true` (or its own
//! `sync_interval`) keeps a [`Replicator`] open between syncs, which holds the read transaction
//! that keeps its unshipped frames in the WAL.
//!
//! Nothing runs per database. The daemon's loop calls [`Replication::poll`]. It stats each
//! database's `-wal` (and the file's inode) once per sync interval, and queues a sync only when
//! that changed, a checkpoint is due, or the lease needs renewing. At most `[replication]
//! workers` syncs run at once, each on a blocking thread ([`work`]). A database is replicated
//! by one daemon at a time, under the lease `<db>/leases/replicate.<attempt>.json`.
//!
//! Lag is how long the oldest unshipped change has waited: from the poll that first saw the
//! WAL differ from what the last good sync started from, to now; 0 when the last sync covered
//! everything. Its resolution is the sync interval.

mod work;

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::error::{Error, Kind};
use lifeboat::replicate::{ReplicateOptions, ReplicationConfig, Replicator, SyncReport};
use lifeboat::repo::leases::Lease;
use lifeboat::repo::Repository;
use lifeboat::source::Source;
use tokio::task::JoinSet;

pub use work::Done;
use work::Work;
pub use work::LEASE_JOB;

/// How long to wait before trying again a database that could not be opened (not in WAL
/// mode, its file missing) or that another daemon holds.
const RETRY_REFUSED: Duration = Duration::from_secs(60);
/// The longest wait between attempts while the repository fails.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a stat of the database and its WAL says; a change means a sync is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    db_ino: u64,
    wal: Option<(u64, u64, i64, i64)>,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let db = std::fs::metadata(path).ok()?;
    let wal = std::fs::metadata(lifeboat::replicate::wal::wal_path(path))
        .ok()
        .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
    Some(Fingerprint {
        db_ino: db.ino(),
        wal,
    })
}

/// One replicated database.
struct Db {
    source: Source,
    opts: ReplicateOptions,
    /// Open and idle (None while a task has it, or while it is not open).
    replicator: Option<(Box<Replicator>, Lease)>,
    open: bool,
    busy: bool,
    /// Close it when it comes back (left the config, or changed); then start over with this.
    closing: bool,
    reopen: Option<(Source, ReplicateOptions)>,
    next_poll: Instant,
    /// The fingerprint when the last good sync started, and the one the running sync started at.
    shipped: Option<Fingerprint>,
    started: Option<(Fingerprint, DateTime<Utc>)>,
    /// Since when an unshipped change has waited.
    pending_since: Option<DateTime<Utc>>,
    last_sync: Instant,
    renewed: Instant,
    failures: u32,
    /// The last error logged, so the same one is logged once.
    said: Option<String>,
}

impl Db {
    fn new(source: Source, opts: ReplicateOptions) -> Db {
        Db {
            source,
            opts,
            replicator: None,
            open: false,
            busy: false,
            closing: false,
            reopen: None,
            next_poll: Instant::now(),
            shipped: None,
            started: None,
            pending_since: None,
            last_sync: Instant::now(),
            renewed: Instant::now(),
            failures: 0,
            said: None,
        }
    }

    fn backoff(&self) -> Duration {
        let base = self.opts.sync_interval.max(Duration::from_millis(500));
        base.saturating_mul(1 << self.failures.min(6))
            .min(MAX_BACKOFF)
    }
}

/// What happened to a database in a task that just ended: the daemon counts it and alerts.
#[derive(Debug)]
pub enum Event {
    Shipped {
        database: String,
        report: SyncReport,
    },
    /// A new generation started for a reason other than a first run (a break).
    Break { database: String, reason: String },
    /// A sync, or an open, failed (each failure is counted). `told` the first time this error
    /// is seen; `refused` when the database itself is the problem (not in WAL mode, gone),
    /// retried every minute.
    Failed {
        database: String,
        error: Error,
        refused: bool,
        told: bool,
    },
}

/// One database's lag.
pub struct Lag<'a> {
    pub database: &'a str,
    /// Seconds the oldest unshipped change has waited; 0 when none waits; None when the
    /// database is not replicated here (refused, or held by another daemon) and none waits.
    pub seconds: Option<f64>,
    /// The last error of its syncs, while they fail.
    pub error: Option<&'a str>,
}

/// Every replicated database of the daemon.
pub struct Replication {
    repo: Arc<Repository>,
    config: ReplicationConfig,
    lease_ttl: Duration,
    dbs: BTreeMap<String, Db>,
    queue: VecDeque<(String, Work)>,
    running: JoinSet<(String, Done)>,
}

impl Replication {
    pub fn new(repo: Arc<Repository>, config: ReplicationConfig, lease_ttl: Duration) -> Self {
        Replication {
            repo,
            config,
            lease_ttl,
            dbs: BTreeMap::new(),
            queue: VecDeque::new(),
            running: JoinSet::new(),
        }
    }

    /// How often the loop should call [`Replication::poll`]: the shortest sync interval,
    /// within 50 ms and 1 s.
    pub fn poll_every(&self) -> Duration {
        self.dbs
            .values()
            .map(|d| d.opts.sync_interval)
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }

    pub fn len(&self) -> usize {
        self.dbs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// The databases to replicate are now `sources` (those with `replicate` set), in
    /// `repo`: new ones are opened at the next poll, vanished or changed ones closed.
    pub fn reconcile<'a>(
        &mut self,
        repo: &Arc<Repository>,
        config: &ReplicationConfig,
        lease_ttl: Duration,
        sources: impl Iterator<Item = &'a Source>,
    ) {
        let moved = repo.url() != self.repo.url();
        self.repo = Arc::clone(repo);
        self.config = config.clone();
        self.lease_ttl = lease_ttl;
        let mut wanted: BTreeMap<String, (Source, ReplicateOptions)> = BTreeMap::new();
        for s in sources.filter(|s| replicable(s)) {
            let opts = config.options(s.replicate);
            wanted.insert(s.name.clone(), (s.clone(), opts));
        }
        for (name, db) in self.dbs.iter_mut() {
            match wanted.remove(name) {
                Some((s, o)) if !moved && s.path == db.source.path && same(&o, &db.opts) => {
                    db.source = s;
                }
                Some(new) => {
                    db.closing = true;
                    db.reopen = Some(new);
                }
                None => {
                    db.closing = true;
                    db.reopen = None;
                }
            }
        }
        for (name, (s, o)) in wanted {
            self.dbs.insert(name, Db::new(s, o));
        }
    }

    /// One turn: stat the databases whose poll is due, queue the syncs (and opens, closes)
    /// they need, start what the workers have room for.
    pub fn poll(&mut self) {
        let now = Instant::now();
        let wall = Utc::now();
        let mut done_closing = Vec::new();
        for (name, db) in self.dbs.iter_mut() {
            if db.busy || db.next_poll > now {
                continue;
            }
            if db.closing {
                match db.replicator.take() {
                    Some((replicator, lease)) => {
                        db.busy = true;
                        self.queue
                            .push_back((name.clone(), Work::Close { replicator, lease }));
                    }
                    None => done_closing.push(name.clone()),
                }
                continue;
            }
            db.next_poll = now + db.opts.sync_interval;
            let fp = fingerprint(&db.source.path);
            let Some((replicator, lease)) = db.replicator.take() else {
                db.busy = true;
                db.started = fp.map(|f| (f, wall));
                self.queue.push_back((
                    name.clone(),
                    Work::Open {
                        source: db.source.clone(),
                        opts: db.opts.clone(),
                        ttl: self.lease_ttl,
                    },
                ));
                continue;
            };
            let changed = fp != db.shipped;
            if changed && db.pending_since.is_none() {
                db.pending_since = Some(wall);
            }
            let checkpoint = replicator.checkpoint_pending()
                && db.last_sync.elapsed() >= db.opts.checkpoint_interval;
            let renew = db.renewed.elapsed() >= self.lease_ttl / 3;
            if !(changed || checkpoint || renew || db.failures > 0) {
                db.replicator = Some((replicator, lease));
                continue;
            }
            db.busy = true;
            db.started = fp.map(|f| (f, wall));
            self.queue.push_back((
                name.clone(),
                Work::Sync {
                    replicator,
                    lease,
                    renew: renew.then_some(self.lease_ttl),
                },
            ));
        }
        for name in done_closing {
            self.closed(&name);
        }
        self.start();
    }

    fn start(&mut self) {
        let workers = self.config.workers();
        while self.running.len() < workers {
            let Some((name, work)) = self.queue.pop_front() else {
                return;
            };
            let repo = Arc::clone(&self.repo);
            self.running
                .spawn(async move { (name, work::run(repo, work).await) });
        }
    }

    /// Whether tasks run or wait.
    pub fn working(&self) -> bool {
        !self.running.is_empty()
    }

    /// The next task to end.
    pub async fn next_done(&mut self) -> Option<(String, Done)> {
        loop {
            match self.running.join_next().await? {
                Ok(done) => return Some(done),
                // A task that panicked lost its replicator: the database is opened again.
                Err(e) => tracing::error!("replication task: {e}"),
            }
        }
    }

    /// A task ended: keep its replicator, learn its lag, say what the daemon must count.
    pub fn finished(&mut self, name: &str, done: Done) -> Vec<Event> {
        let mut events = Vec::new();
        let now = Instant::now();
        let wall = Utc::now();
        let Some(db) = self.dbs.get_mut(name) else {
            return events;
        };
        db.busy = false;
        let started = db.started.take();
        match done {
            Done::Opened {
                replicator,
                lease,
                report,
            } => {
                tracing::info!(database = %name, generation = replicator.generation().unwrap_or("-"), "replicating");
                db.open = true;
                db.replicator = Some((replicator, lease));
                // Spread the renewals over the third of a lease: a fleet opened at once would
                // otherwise renew all its leases in the same turn.
                let third = (self.lease_ttl / 3).as_millis().max(1) as u64;
                db.renewed = now
                    .checked_sub(Duration::from_millis(rand::random::<u64>() % third))
                    .unwrap_or(now);
                db.said = None;
                db.failures = 0;
                shipped(db, started);
                if let Some(reason) = report.new_generation.clone() {
                    if reason != "first run" {
                        events.push(Event::Break {
                            database: name.to_string(),
                            reason,
                        });
                    }
                }
                events.push(Event::Shipped {
                    database: name.to_string(),
                    report,
                });
            }
            Done::Held { until } => {
                if db.said.as_deref() != Some("held") {
                    tracing::info!(database = %name, until = %until, "replicated by another daemon: taking over when its lease expires");
                    db.said = Some("held".into());
                }
                let wait = (until - wall).to_std().unwrap_or_default();
                db.next_poll = now + wait.clamp(Duration::from_secs(1), RETRY_REFUSED);
            }
            Done::Synced {
                replicator,
                lease,
                renewed,
                result,
            } => {
                db.replicator = Some((replicator, lease));
                if renewed {
                    db.renewed = now;
                }
                match result {
                    Ok(report) => {
                        if db.failures > 0 {
                            tracing::info!(database = %name, "replicating again");
                        }
                        db.failures = 0;
                        db.said = None;
                        db.last_sync = now;
                        shipped(db, started);
                        if let Some(reason) = report.new_generation.clone() {
                            events.push(Event::Break {
                                database: name.to_string(),
                                reason,
                            });
                        }
                        events.push(Event::Shipped {
                            database: name.to_string(),
                            report,
                        });
                    }
                    Err(error) => {
                        let refused = error.kind == Kind::Database;
                        if refused {
                            // The database itself changed (mode, gone): open it afresh later.
                            db.closing = true;
                            db.reopen = Some((db.source.clone(), db.opts.clone()));
                        }
                        events.extend(failed(db, name, error, refused, now));
                    }
                }
            }
            Done::Lost => {
                tracing::warn!(database = %name, "another daemon took replication over (this daemon's lease had expired): stopped here");
                db.open = false;
                db.pending_since = None;
                db.said = Some("held".into());
                db.next_poll = now + RETRY_REFUSED;
            }
            Done::Failed(error) => {
                let refused = matches!(error.kind, Kind::Database | Kind::Config);
                events.extend(failed(db, name, error, refused, now));
            }
            Done::Closed(result) => {
                if let Err(e) = result {
                    tracing::warn!(database = %name, "closing its replicator: {e}");
                }
                self.closed(name);
            }
        }
        self.start();
        events
    }

    /// A database's replicator is closed: forget it, or start over with its new settings.
    fn closed(&mut self, name: &str) {
        let Some(db) = self.dbs.remove(name) else {
            return;
        };
        if let Some((s, o)) = db.reopen {
            let mut fresh = Db::new(s, o);
            fresh.next_poll = db.next_poll;
            fresh.said = db.said;
            fresh.failures = db.failures;
            self.dbs.insert(name.to_string(), fresh);
        }
    }

    /// Each database's lag now.
    pub fn lags(&self, now: DateTime<Utc>) -> Vec<Lag<'_>> {
        self.dbs
            .iter()
            .map(|(name, db)| Lag {
                database: name,
                seconds: db
                    .pending_since
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .or(db.open.then_some(0.0)),
                error: db.said.as_deref().filter(|s| *s != "held"),
            })
            .collect()
    }

    /// Stop: let running tasks end, then close every replicator (shipping what is committed)
    /// and give its lease up, until `deadline`.
    pub async fn shut_down(&mut self, deadline: tokio::time::Instant) {
        for db in self.dbs.values_mut() {
            db.closing = true;
            db.reopen = None;
            db.next_poll = Instant::now();
        }
        // Queued syncs hold their replicators: close those instead (dropping one would lose
        // what it has not shipped yet); queued opens are dropped.
        for (name, work) in std::mem::take(&mut self.queue) {
            match work {
                Work::Sync {
                    replicator, lease, ..
                }
                | Work::Close { replicator, lease } => self
                    .queue
                    .push_back((name, Work::Close { replicator, lease })),
                Work::Open { .. } => {
                    if let Some(db) = self.dbs.get_mut(&name) {
                        db.busy = false;
                    }
                }
            }
        }
        loop {
            self.poll();
            if self.running.is_empty() {
                break;
            }
            match tokio::time::timeout_at(deadline, self.next_done()).await {
                Ok(Some((name, done))) => {
                    // Replicators that come back are closed at the next poll.
                    if let Some(db) = self.dbs.get_mut(&name) {
                        db.next_poll = Instant::now();
                    }
                    self.finished(&name, done);
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        running = self.running.len(),
                        "shutdown timeout: replicators not closed (the next start resumes their chains)"
                    );
                    self.running.abort_all();
                    break;
                }
            }
        }
        self.dbs.clear();
    }
}

/// Whether `source` is a replicated SQLite file.
fn replicable(s: &Source) -> bool {
    s.replicate.is_some() && s.d1.is_none() && s.sql_dump.is_none()
}

fn same(a: &ReplicateOptions, b: &ReplicateOptions) -> bool {
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

/// A sync (or an open) that started at `started` shipped everything up to then: nothing waits
/// unless the files changed since.
fn shipped(db: &mut Db, started: Option<(Fingerprint, DateTime<Utc>)>) {
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

fn failed(db: &mut Db, name: &str, error: Error, refused: bool, now: Instant) -> Option<Event> {
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
