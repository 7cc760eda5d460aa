//! Replication inside the daemon: every database with `replicate = true` (or its own
//! `sync_interval`) keeps a [`Replicator`] open between syncs, which holds the read transaction
//! that keeps its unshipped frames in the WAL.
//!
//! Nothing runs per database. The daemon's loop calls [`Replication::poll`] every sync
//! interval. It reads the inotify events queued since ([`watch`]: one watch per directory),
//! stats the `-wal` (and the file's inode) of the databases they name, of those not watched,
//! and of those whose safety sweep is due ([`db`]), and queues a sync only when that changed,
//! a checkpoint is due, or the lease needs renewing. At most `[replication]
//! workers` syncs run at once, each on a blocking thread ([`work`]). A database is replicated
//! by one daemon at a time, under the lease `<db>/leases/replicate.<attempt>.json`.
//!
//! Lag is how long the oldest unshipped change has waited: from the poll that first saw the
//! WAL differ from what the last good sync started from, to now; 0 when the last sync covered
//! everything. Its resolution is the sync interval (an event is read at the next poll).

mod db;
mod watch;
mod work;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::error::{Error, Kind};
use lifeboat::replicate::{ReplicateOptions, ReplicationConfig, SyncReport};
use lifeboat::repo::Repository;
use lifeboat::source::Source;
use tokio::task::JoinSet;

use db::{failed, replicable, same, shipped, Db};
use watch::Watch;

pub use work::Done;
use work::Work;
pub use work::LEASE_JOB;

/// How long to wait before trying again a database that could not be opened (not in WAL
/// mode, its file missing) or that another daemon holds.
pub(crate) const RETRY_REFUSED: Duration = Duration::from_secs(60);
/// The longest wait between attempts while the repository fails.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    /// For a database another daemon on this host holds but stopped renewing (frozen): since
    /// its lease ended, then 0 once it renews again.
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
    /// (directories, databases) watched, as last logged, and whether that may have changed
    /// since (logged at the next poll: one line for a whole reconcile, none while stopping).
    told_watched: (usize, usize),
    watch_changed: bool,
    stopping: bool,
    /// What wakes a database when it changes.
    watch: Watch,
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
            told_watched: (0, 0),
            watch_changed: false,
            stopping: false,
            watch: Watch::new(),
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

    /// When the busiest database's next tick is due, if one ticks sooner than the daemon
    /// polls (its WAL fills fast): the daemon wakes for it.
    pub fn next_hurry(&self) -> Option<Instant> {
        self.dbs
            .values()
            .filter(|d| d.hurry && !d.busy)
            .map(|d| d.next_poll)
            .min()
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
                    // Left the config and came back before its close (two reloads in a
                    // row): start it again once closed, or it would stay dropped.
                    if db.closing && db.reopen.is_none() {
                        db.reopen = Some((s.clone(), o));
                    }
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
            let mut db = Db::new(s, o);
            db.watch(&name, &mut self.watch);
            self.dbs.insert(name, db);
        }
        self.watch_changed = true;
    }

    /// Log how many databases changes wake, when that changed.
    fn tell_watched(&mut self) {
        self.watch_changed = false;
        let now = (
            self.watch.directories(),
            self.dbs.values().filter(|d| d.watched).count(),
        );
        if now != self.told_watched {
            self.told_watched = now;
            if self.watch.running() {
                tracing::info!(
                    directories = now.0,
                    databases = now.1,
                    polled = self.dbs.len() - now.1,
                    "replication wakes on change (inotify)"
                );
            }
        }
    }

    /// Between polls: whether a database's WAL just gathered `checkpoint_frames` frames since
    /// its last ship (a burst after a pause, a writer speeding up), each made due at once
    /// ([`Db::burst`]), so its checkpoint comes as SQLite's own would instead of a whole sync
    /// interval of WAL later (333 MB for an unpaced writer), as `lifeboat replicate` does
    /// (`Pace::sleep`). Only the databases this turn's events name are looked at: one without
    /// new events wrote nothing since it was last looked at. Whether one is due now, and
    /// whether any event came (the daemon looks again sooner then).
    pub fn burst(&mut self) -> (bool, bool) {
        let woken = self.wake();
        let now = Instant::now();
        let mut any = false;
        for name in &woken {
            if let Some(db) = self.dbs.get_mut(name) {
                any |= db.burst(now);
            }
        }
        (any, !woken.is_empty())
    }

    /// Mark the databases the queued events name as dirty; their names.
    fn wake(&mut self) -> std::collections::BTreeSet<String> {
        let woken = self.watch.drain();
        for name in &woken.dirty {
            if let Some(db) = self.dbs.get_mut(name) {
                db.dirty = true;
            }
        }
        for name in &woken.lost {
            if let Some(db) = self.dbs.get_mut(name) {
                db.watched = false;
                db.dirty = true;
            }
        }
        if !woken.lost.is_empty() {
            self.watch_changed = true;
        }
        woken.dirty
    }

    /// One turn: read the events, stat the databases whose poll is due and that may have
    /// changed, queue the syncs (and opens, closes) they need, start what the workers have
    /// room for.
    pub fn poll(&mut self) {
        let _ = self.wake();
        if self.watch_changed && !self.stopping {
            self.tell_watched();
        }
        let now = Instant::now();
        let wall = Utc::now();
        let mut done_closing = Vec::new();
        // Due within half a tick counts as due: a tick a little earlier than the last one
        // (timer jitter) would otherwise leave every database that was due until the tick
        // after, one sync interval late (a third of a fleet's polls were, measured).
        let due = now + self.poll_every() / 2;
        for (name, db) in self.dbs.iter_mut() {
            if db.busy || db.next_poll > due {
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
            let fp = db.look(name, now, &mut self.watch);
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
                db.hurry = false;
                continue;
            }
            // A failing one syncs (its backoff paces it).
            let hurry = db.hurry && db.failures == 0;
            let upload = db.pace.upload_due(due);
            db.busy = true;
            db.started = fp.map(|f| (f, wall));
            self.queue.push_back((
                name.clone(),
                Work::Sync {
                    replicator,
                    lease,
                    renew: renew.then_some(self.lease_ttl),
                    hurry,
                    upload,
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
                // Its holder renews again: nothing waits on this daemon's account.
                if db.watching_holder {
                    db.pending_since = None;
                }
            }
            Done::Locked { owner, expired } => {
                let said = match expired {
                    Some(t) => format!("held by lifeboat process {owner} on this host, whose replication lease expired at {t} (stopped or frozen?)"),
                    None => "locked".to_string(),
                };
                if db.said.as_deref() != Some(said.as_str()) {
                    tracing::warn!(database = %name, pid = %owner, "replicated by another lifeboat process on this host (its lease may have expired: a process stopped or frozen): waiting for it to let the database go");
                    db.said = Some(said);
                }
                // A daemon that stopped renewing stopped replicating: the lag counts from its
                // lease's end, told here (its own daemon cannot, frozen).
                if let Some(t) = expired {
                    db.watching_holder = true;
                    db.pending_since.get_or_insert(t);
                }
                db.next_poll =
                    now + (self.lease_ttl / 3).clamp(Duration::from_secs(1), RETRY_REFUSED);
            }
            Done::Synced {
                replicator,
                lease,
                renewed,
                upload,
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
                        // Only what is stored is shipped (the lag counts on until then): a
                        // background upload covers what the tick that started it saw.
                        if report.upload_ended {
                            let at = db.uploading.take();
                            shipped(db, at);
                        }
                        if report.all_stored {
                            db.uploading = None;
                            shipped(db, started);
                        } else if report.upload_started {
                            db.uploading = started;
                        }
                        let wait = db.pace.after(upload, report.frames, now);
                        let hurry = db.pace.ticking();
                        if hurry != db.hurry {
                            tracing::debug!(database = %name, wait_ms = wait.as_millis() as u64, hurry, "ticks between syncs");
                        }
                        db.hurry = hurry;
                        if db.hurry {
                            db.next_poll = now + wait;
                        }
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
        // Its directory's watch goes with the last database in it.
        self.watch.unwatch(name);
        if let Some((s, o)) = db.reopen {
            let mut fresh = Db::new(s, o);
            fresh.next_poll = db.next_poll;
            fresh.said = db.said;
            fresh.failures = db.failures;
            fresh.watch(name, &mut self.watch);
            self.dbs.insert(name.to_string(), fresh);
        }
        self.watch_changed = true;
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
                    .or((db.open || db.watching_holder).then_some(0.0)),
                error: db
                    .said
                    .as_deref()
                    .filter(|s| !["held", "locked"].contains(s)),
            })
            .collect()
    }

    /// Stop: let running tasks end, then close every replicator (shipping what is committed)
    /// and give its lease up, until `deadline`.
    pub async fn shut_down(&mut self, deadline: tokio::time::Instant) {
        self.stopping = true;
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
