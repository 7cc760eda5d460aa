//! The daemon: runs every database's backups on its schedule, unattended. Once a second it asks
//! the [`Plan`] what is due, runs it in a bounded pool (one job per database at a time, at most
//! `max_concurrent` in all), tells the channels what failed, shrank, went stale or recovered,
//! and checks staleness every `stale_check_interval`. Beside the backups, the [`Verifier`]
//! climbs the verification ladder on `[verify]`'s schedules ([`verifying`]). SIGTERM or SIGINT stop it cleanly;
//! SIGHUP reloads the config (a bad one is refused, and the old one stays in force).
//!
//! [`setup`] holds what a config gives the loop, [`outcome`] what a finished job leads to,
//! [`telling`] the alerts, [`drilling`] the DR drills (their own schedule, the same pool).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::config::Config;
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::Repository;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::alert_memory::AlertMemory;
use crate::alerts::Ping;
use crate::drills::{DrillDue, DrillOutcome, DrillPlan};
use crate::job::{self, Outcome, Report};
use crate::metrics::Metrics;
use crate::plan::{Due, Plan};
use crate::replication::Replication;
use crate::verifier::Verifier;

mod drilling;
mod outcome;
mod replicating;
mod setup;
mod telling;
mod verifying;

use setup::Setup;
use telling::flush_alerts;

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config file, read again on SIGHUP (None: `./lifeboat.toml` if it exists).
    pub config_path: Option<PathBuf>,
    /// `--repo`, over the config's.
    pub repo_flag: Option<String>,
    /// How long running backups get to finish after SIGTERM before they are aborted.
    pub shutdown_timeout: Duration,
    /// Back every database up once, now, and exit (no schedule, no signals but SIGTERM).
    pub once: bool,
    /// Serve `/metrics` and `/healthz` here.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Run the daemon until SIGTERM or SIGINT (or, with `once`, until every database is done).
pub async fn run(opts: Options, config: Config) -> Result<i32> {
    if !opts.once && !lifeboat::replicate::connection::lean_sqlite() {
        tracing::debug!("SQLite was already in use: connections keep their lookaside memory");
    }
    let mut setup = Setup::new(config, opts.repo_flag.as_deref())?;
    let metrics = Metrics::new(setup.config.daemon.metrics_max_databases());
    // The loop's repository reads (at start, staleness checks) may take a few timeouts on a
    // slow store: /healthz must not call the daemon dead for that.
    let timeout = setup
        .config
        .repository
        .timeout
        .unwrap_or(lifeboat::repo::store::DEFAULT_TIMEOUT);
    metrics.set_liveness_window(crate::metrics::DEFAULT_LIVENESS.max(timeout * 4));
    let mut plan = Plan::new();
    setup.discover(&mut plan, &metrics)?;
    let memory = Arc::new(Mutex::new(AlertMemory::new(setup.repeat_after())));
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = match opts.metrics_addr {
        Some(addr) => {
            metrics.tick();
            let (_, handle) = crate::metrics::serve(addr, metrics.clone(), async move {
                let _ = server_stopped.await;
            })
            .await?;
            Some(handle)
        }
        None => None,
    };
    let verifier = Verifier::new(&setup.config, Utc::now());
    let mut replication = Replication::new(
        Arc::clone(&setup.repo),
        setup.config.replication.clone(),
        setup.config.daemon.lease_ttl(),
    );
    if !opts.once {
        raise_fd_limit();
        tame_malloc();
        replication.reconcile(
            &setup.repo,
            &setup.config.replication,
            setup.config.daemon.lease_ttl(),
            setup.sources.values(),
        );
    }
    let mut daemon = Daemon {
        replication,
        lag_watched: Instant::now(),
        verifier,
        verifying: JoinSet::new(),
        told_bad: BTreeMap::new(),
        setup,
        plan,
        metrics,
        memory,
        jobs: JoinSet::new(),
        queue: VecDeque::new(),
        in_flight: std::collections::HashSet::new(),
        counts: BTreeMap::new(),
        drills: DrillPlan::default(),
        drill_jobs: JoinSet::new(),
        drill_queue: VecDeque::new(),
    };
    daemon.tell_refused();
    let code = if opts.once {
        daemon.once(&opts).await
    } else {
        daemon.serve(&opts).await
    };
    let _ = stop_server.send(());
    if let Some(h) = server {
        let _ = h.await;
    }
    code
}

struct Daemon {
    /// The replicated databases, and when their lag was last published.
    replication: Replication,
    lag_watched: Instant,
    /// When each rung of verification is due, the round running (one at a time), and the bad
    /// backups already told.
    verifier: Verifier,
    verifying: JoinSet<verifying::Round>,
    told_bad: BTreeMap<String, std::collections::BTreeSet<String>>,
    setup: Setup,
    plan: Plan,
    metrics: Metrics,
    memory: Arc<Mutex<AlertMemory>>,
    jobs: JoinSet<(Due, Report)>,
    queue: VecDeque<Due>,
    /// Databases whose job runs now.
    in_flight: std::collections::HashSet<String>,
    /// Backups per (database, kind), for `lifeboat_backups`.
    counts: BTreeMap<(String, String), u64>,
    /// When each database's next DR drill is due.
    drills: DrillPlan,
    /// Running drills: they share the pool (`max_concurrent`) with backups.
    drill_jobs: JoinSet<(DrillDue, DrillOutcome)>,
    drill_queue: VecDeque<DrillDue>,
}

/// How often the daemon looks for a replicated database whose WAL fills fast between its polls
/// ([`Replication::burst`]; only databases an event marked as changed are looked at): every
/// 10 ms while events come, every 100 ms otherwise (each look wakes the daemon's threads: 100
/// a second cost an idle fleet of 1,000 databases 1.5 % of a core).
const BURST_LOOK: Duration = Duration::from_millis(10);
const BURST_IDLE: Duration = Duration::from_millis(100);

impl Daemon {
    async fn serve(&mut self, opts: &Options) -> Result<i32> {
        let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_discovery = Instant::now();
        let mut last_stale_check: Option<Instant> = None;
        let mut repl_every = self.replication.poll_every();
        let mut repl_tick = tokio::time::interval(repl_every);
        repl_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_burst = Instant::now() + BURST_IDLE;
        tracing::info!(
            databases = self.plan.len(),
            replicated = self.replication.len(),
            repository = %self.setup.repo.url(),
            "lifeboat daemon started"
        );
        loop {
            // A database whose WAL fills fast ticks sooner than the replication poll.
            let hurry = self.replication.next_hurry();
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload(opts),
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => {
                    self.finished(done);
                    self.start_drills();
                }
                Some(done) = self.drill_jobs.join_next(), if !self.drill_jobs.is_empty() => {
                    self.drill_finished(done);
                    self.start_jobs();
                }
                Some(done) = self.verifying.join_next(), if !self.verifying.is_empty() => self.verified(done),
                Some((name, done)) = self.replication.next_done(), if self.replication.working() => {
                    self.replicated(name, done);
                }
                _ = tokio::time::sleep_until(hurry.unwrap_or_else(Instant::now).into()), if hurry.is_some() => {
                    self.replicate_turn();
                }
                _ = tokio::time::sleep_until(next_burst.into()), if !self.replication.is_empty() => {
                    let (due, events) = self.replication.burst();
                    if due {
                        self.replicate_turn();
                    }
                    next_burst = Instant::now() + if events { BURST_LOOK } else { BURST_IDLE };
                }
                _ = repl_tick.tick(), if !self.replication.is_empty() => {
                    self.replicate_turn();
                    // Reloads and discoveries change the shortest sync interval.
                    if self.replication.poll_every() != repl_every {
                        repl_every = self.replication.poll_every();
                        repl_tick = tokio::time::interval(repl_every);
                        repl_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                _ = tick.tick() => {
                    self.metrics.tick();
                    if last_discovery.elapsed() >= Duration::from_secs(60) {
                        last_discovery = Instant::now();
                        if let Err(e) = self.setup.discover(&mut self.plan, &self.metrics) {
                            tracing::error!("discovery: {e}");
                        }
                        self.replicate_what_is_found();
                        self.tell_refused();
                        trim_malloc();
                    }
                    self.learn_unknown().await;
                    let now = Utc::now();
                    self.queue.extend(self.plan.due(now));
                    self.start_jobs();
                    self.start_verification();
                    self.plan_drills().await;
                    self.start_drills();
                    let interval = self.setup.config.daemon.stale_check_interval();
                    if last_stale_check.is_none_or(|t| t.elapsed() >= interval) {
                        last_stale_check = Some(Instant::now());
                        self.check_staleness(now).await;
                    }
                }
            }
        }
        self.shut_down(opts.shutdown_timeout).await;
        Ok(0)
    }

    /// `--once`: every database now, then exit; the exit code is the first failure's.
    async fn once(&mut self, opts: &Options) -> Result<i32> {
        // Its own job name, to the millisecond: two `--once` runs never share one.
        let now = Utc::now();
        let slot = DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now);
        for db in self.plan.databases() {
            self.queue.push_back(Due {
                database: db.to_string(),
                slot,
            });
        }
        let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let mut first_failure: Option<Kind> = self.setup.refused.first().map(|r| r.error.kind);
        loop {
            self.start_jobs();
            if self.jobs.is_empty() {
                break;
            }
            tokio::select! {
                _ = term.recv() => {
                    self.queue.clear();
                    self.shut_down(opts.shutdown_timeout).await;
                    return Ok(0);
                }
                _ = int.recv() => {
                    self.queue.clear();
                    self.shut_down(opts.shutdown_timeout).await;
                    return Ok(0);
                }
                _ = hup.recv() => tracing::info!("SIGHUP ignored: --once reads its config once"),
                Some(done) = self.jobs.join_next() => {
                    if let Ok((_, Report { outcome: Outcome::Failed(e), .. })) = &done {
                        first_failure.get_or_insert(e.kind);
                    }
                    self.finished(done);
                }
            }
        }
        flush_alerts().await;
        Ok(first_failure.map_or(0, |k| k.exit_code()))
    }

    /// Read, for the databases new to the plan, when they were last fresh.
    async fn learn_unknown(&mut self) {
        let unknown = self.plan.unknown();
        if unknown.is_empty() {
            return;
        }
        let repo = &self.setup.repo;
        let status = &self.setup.config.status;
        let now = Utc::now();
        let found: Vec<(String, Result<Fresh>)> =
            futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                futures::stream::iter(unknown.into_iter().map(|db| async move {
                    let fresh = fresh_at(repo, &db, status, now).await;
                    (db, fresh)
                })),
                16,
            ))
            .await;
        for (db, fresh) in found {
            match fresh {
                Ok(f) => {
                    if let Some(at) = f.at {
                        self.metrics.set_last_success(&db, at);
                    }
                    self.counts.retain(|(d, _), _| *d != db);
                    for (kind, n) in &f.kinds {
                        self.counts.insert((db.clone(), kind.clone()), *n as u64);
                        self.metrics.set_backups(&db, kind, *n as u64);
                    }
                    self.plan.known(&db, f.at)
                }
                // Planned as never backed up: it runs now, and its own error tells the rest.
                Err(e) => {
                    tracing::warn!(database = %db, "reading its backups: {e}");
                    self.plan.known(&db, None);
                }
            }
        }
    }

    /// Start queued jobs while the pool (shared with drills) has room.
    fn start_jobs(&mut self) {
        let max = self.setup.config.daemon.max_concurrent();
        while self.jobs.len() + self.drill_jobs.len() < max {
            let Some(due) = self.queue.pop_front() else {
                return;
            };
            let Some(source) = self.setup.sources.get(&due.database).cloned() else {
                // Vanished from the fleet since it was planned.
                self.plan.finished(&due.database, false, Utc::now());
                continue;
            };
            // A tenant deleted since the last discovery left the fleet: not a failure.
            if source.fleet.is_some() && !source.path.exists() {
                tracing::info!(database = %source.name, "its file is gone: left the fleet");
                self.plan.finished(&due.database, false, Utc::now());
                continue;
            }
            // Dropped and found again by a reload while its job still runs: one at a time.
            if !self.in_flight.insert(due.database.clone()) {
                self.plan
                    .retry_at(&due.database, Utc::now() + chrono::Duration::seconds(30));
                continue;
            }
            let repo = Arc::clone(&self.setup.repo);
            let config = Arc::clone(&self.setup.config);
            let ping = self.setup.ping_url(&source).map(|u| Ping::new(&u));
            self.jobs.spawn(async move {
                if let Some(p) = &ping {
                    p.start().await;
                }
                let report = job::run(&repo, &config, &source, &due).await;
                if let Some(p) = &ping {
                    match &report.outcome {
                        Outcome::Failed(e) => {
                            p.fail(&e.to_string()).await;
                        }
                        Outcome::Backed { .. } | Outcome::Skipped { .. } => {
                            p.success().await;
                        }
                        Outcome::Held { .. } | Outcome::Done => {}
                    }
                }
                (due, report)
            });
        }
    }

    /// SIGHUP: read the config again; a bad one is refused and the old one stays in force.
    fn reload(&mut self, opts: &Options) {
        let loaded = Config::load(opts.config_path.as_deref())
            .and_then(|c| {
                c.daemon.schedule()?;
                Ok(c)
            })
            .and_then(|c| Setup::new(c, opts.repo_flag.as_deref()));
        // A channel that cannot work (a bad address, email without a server) is a bad config.
        let loaded = loaded.and_then(|setup| {
            match setup
                .channels
                .iter()
                .find_map(|c| c.problem().map(|p| (c.shown(), p)))
            {
                Some((channel, problem)) => Err(Error::new(
                    Kind::Config,
                    format!("alert channel {channel}: {problem}"),
                )),
                None => Ok(setup),
            }
        });
        match loaded {
            Ok(mut setup) => {
                // Another repository: what the old one said of freshness says nothing here.
                let same_repository = setup.repo.url() == self.setup.repo.url();
                let mut plan = if same_repository {
                    std::mem::take(&mut self.plan)
                } else {
                    Plan::new()
                };
                if let Err(e) = setup.discover(&mut plan, &self.metrics) {
                    if same_repository {
                        self.plan = plan;
                    }
                    tracing::error!("config reload refused, the old config stays in force: {e}");
                    return;
                }
                self.plan = plan;
                self.memory
                    .lock()
                    .expect("alert memory")
                    .set_repeat_after(setup.repeat_after());
                self.setup = setup;
                self.replicate_what_is_found();
                self.verifier.reload(&self.setup.config, Utc::now());
                self.drills.replan();
                tracing::info!(databases = self.plan.len(), "config reloaded");
            }
            Err(e) => {
                tracing::error!("config reload refused, the old config stays in force: {e}")
            }
        }
    }

    /// Stop taking jobs; give the running ones `timeout`, then abort them (no manifest is
    /// written by an aborted backup: what it left is an incomplete leftover for `cleanup`).
    async fn shut_down(&mut self, timeout: Duration) {
        self.queue.clear();
        // Replicators ship what is committed and give their leases up first: that is quick,
        // and what a SIGTERM is for.
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.replication.is_empty() {
            tracing::info!(
                replicated = self.replication.len(),
                "stopping: closing the replicators"
            );
            self.replication.shut_down(deadline).await;
        }
        // Verification writes only records: stopped at once, it is done again next time.
        self.verifying.abort_all();
        self.drill_queue.clear();
        // A drill is only a test: stop it now (its scratch space is removed as it unwinds).
        self.drill_jobs.abort_all();
        while self.drill_jobs.join_next().await.is_some() {}
        tracing::info!(
            running = self.jobs.len(),
            "stopping: no new jobs; running ones get {}",
            humantime::format_duration(timeout)
        );
        while !self.jobs.is_empty() {
            match tokio::time::timeout_at(deadline, self.jobs.join_next()).await {
                Ok(Some(done)) => self.finished(done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        aborted = self.jobs.len(),
                        "shutdown timeout: aborting the running backups (one not yet committed writes no manifest; one being restore-tested stays, its test undone)"
                    );
                    self.jobs.abort_all();
                    while self.jobs.join_next().await.is_some() {}
                    break;
                }
            }
        }
        flush_alerts().await;
        tracing::info!("lifeboat daemon stopped");
    }
}

/// What the repository says of a database's freshness.
pub struct Fresh {
    /// Its newest good backup, or a later run that found it unchanged since that backup.
    pub at: Option<DateTime<Utc>>,
    /// Its backups, by kind.
    pub kinds: Vec<(String, usize)>,
}

/// When `db` was last fresh, by the repository.
pub async fn fresh_at(
    repo: &Repository,
    db: &str,
    status: &lifeboat::status::StatusConfig,
    now: DateTime<Utc>,
) -> Result<Fresh> {
    let s = lifeboat::status::database_status(repo, db, status, now).await?;
    Ok(Fresh {
        at: s.last_good_at.max(s.unchanged_checked_at),
        kinds: s.backups_by_kind.into_iter().collect(),
    })
}

/// Each replicator holds two connections (the database, its WAL and shm: about 6 descriptors):
/// a fleet needs more than the usual soft limit of 1024, so raise it to the hard limit.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                tracing::warn!("could not raise the open files limit");
            }
        }
    }
}

/// glibc gives each thread that contends an arena of its own and keeps freed memory in it: a
/// fleet's start (a thousand chains resumed, snapshots taken, verifications) leaves hundreds of
/// MB resident that nothing uses. Two arenas, and the free memory handed back every minute.
fn tame_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn trim_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn signal_error(e: std::io::Error) -> Error {
    Error::new(Kind::Internal, format!("daemon: cannot watch signals: {e}"))
}
