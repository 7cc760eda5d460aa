//! The daemon: runs every database's backups on its schedule, unattended. Once a second it asks
//! the [`Plan`] what is due, runs it in a bounded pool (one job per database at a time, at most
//! `max_concurrent` in all), tells the channels what failed, shrank, went stale or recovered,
//! and checks staleness every `stale_check_interval`. SIGTERM or SIGINT stop it cleanly;
//! SIGHUP reloads the config (a bad one is refused, and the old one stays in force).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat::config::Config;
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::Repository;
use lifeboat::schedule::Schedule;
use lifeboat::source::Source;
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::alert_memory::{AlertMemory, DEFAULT_REPEAT_AFTER};
use crate::alerts::{channels, send, Channel, Event, EventKind, Ping};
use crate::job::{self, Outcome, Report};
use crate::metrics::Metrics;
use crate::plan::{Due, Plan};

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

/// What the daemon works with; replaced whole on reload.
struct Setup {
    config: Arc<Config>,
    repo: Arc<Repository>,
    channels: Vec<Channel>,
    sources: BTreeMap<String, Source>,
    /// Fleet members discovery refused (a name clash, a name that cannot be one): each fails.
    refused: Vec<lifeboat::config::fleet::Refused>,
    /// Fleet members dropped by the last discovery although their file is still there.
    passed_over: Vec<String>,
    /// Discovery warnings already logged (they recur every minute).
    said: std::collections::HashSet<String>,
}

impl Setup {
    fn new(config: Config, repo_flag: Option<&str>) -> Result<Setup> {
        if config.databases.is_empty() {
            return Err(Error::new(
                Kind::Config,
                "daemon: no database to back up: declare [[database]] (path, d1 or glob) in lifeboat.toml",
            ));
        }
        config.daemon.check()?;
        if let Some(policy) = &config.retention {
            policy.check()?;
        }
        let url = config.repository_url(repo_flag);
        let timeout = config
            .repository
            .timeout
            .unwrap_or(lifeboat::repo::store::DEFAULT_TIMEOUT);
        let repo = Repository::open_with_timeout(&url, true, timeout)?;
        let channels = channels(config.alerts.as_ref(), |k| std::env::var(k).ok());
        Ok(Setup {
            config: Arc::new(config),
            repo: Arc::new(repo),
            channels,
            sources: BTreeMap::new(),
            refused: Vec::new(),
            passed_over: Vec::new(),
            said: std::collections::HashSet::new(),
        })
    }

    /// Find the databases again (a fleet's glob finds new files, and loses vanished ones).
    fn discover(&mut self, plan: &mut Plan, metrics: &Metrics) -> Result<()> {
        let default = self.config.daemon.schedule()?;
        let mut sources = BTreeMap::new();
        let mut planned = Vec::new();
        let members = self.config.members();
        self.refused = members.refused;
        for warning in members.skipped {
            if self.said.insert(warning.clone()) {
                tracing::warn!("{warning}");
            }
        }
        // A member that left the fleet while its file is still there (it stopped being a
        // SQLite database) is a failure to tell, not a tenant that left.
        self.passed_over = self
            .sources
            .values()
            .filter(|s| s.fleet.is_some() && s.path.exists())
            .map(|s| s.name.clone())
            .collect();
        for s in members.sources {
            let schedule = match &s.schedule {
                Some(text) => Schedule::parse(text)?,
                None => default.clone(),
            };
            planned.push((s.name.clone(), schedule));
            sources.insert(s.name.clone(), s);
        }
        plan.set_databases(planned);
        self.passed_over.retain(|n| !sources.contains_key(n));
        let names: Vec<&String> = sources.keys().collect();
        metrics.set_fleet(&names);
        metrics.set_databases(names.len());
        self.sources = sources;
        Ok(())
    }

    fn ping_url(&self, source: &Source) -> Option<String> {
        source
            .ping_url
            .clone()
            .or_else(|| self.config.alerts.as_ref().and_then(|a| a.ping_url.clone()))
    }

    fn repeat_after(&self) -> Duration {
        self.config
            .alerts
            .as_ref()
            .and_then(|a| a.repeat_after)
            .unwrap_or(DEFAULT_REPEAT_AFTER)
    }
}

/// Run the daemon until SIGTERM or SIGINT (or, with `once`, until every database is done).
pub async fn run(opts: Options, config: Config) -> Result<i32> {
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
    let mut daemon = Daemon {
        setup,
        plan,
        metrics,
        memory,
        jobs: JoinSet::new(),
        queue: VecDeque::new(),
        in_flight: std::collections::HashSet::new(),
        counts: BTreeMap::new(),
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
}

impl Daemon {
    async fn serve(&mut self, opts: &Options) -> Result<i32> {
        let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_discovery = Instant::now();
        let mut last_stale_check: Option<Instant> = None;
        tracing::info!(
            databases = self.plan.len(),
            repository = %self.setup.repo.url(),
            "lifeboat daemon started"
        );
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => self.reload(opts),
                Some(done) = self.jobs.join_next(), if !self.jobs.is_empty() => self.finished(done),
                _ = tick.tick() => {
                    self.metrics.tick();
                    if last_discovery.elapsed() >= Duration::from_secs(60) {
                        last_discovery = Instant::now();
                        if let Err(e) = self.setup.discover(&mut self.plan, &self.metrics) {
                            tracing::error!("discovery: {e}");
                        }
                        self.tell_refused();
                    }
                    self.learn_unknown().await;
                    let now = Utc::now();
                    self.queue.extend(self.plan.due(now));
                    self.start_jobs();
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

    /// Fleet members discovery refused are failed databases: told like a failed backup.
    fn tell_refused(&mut self) {
        let now = Utc::now();
        let mut events = Vec::new();
        {
            let mut memory = self.memory.lock().expect("alert memory");
            for r in &self.setup.refused {
                tracing::error!(database = %r.name, fleet = %r.fleet, "refused: {}", r.error);
                // Remembered under the fleet: a configured database of the same name that backs
                // up fine must not "recover" the clash, nor make it told again.
                let key = format!("{}: {}", r.fleet, r.name);
                if memory.should_tell(EventKind::BackupFailed, &key, now) {
                    events.push(event(
                        EventKind::BackupFailed,
                        &r.name,
                        r.error.to_string(),
                        serde_json::json!({ "fleet": r.fleet, "kind": r.error.kind.name() }),
                    ));
                }
            }
        }
        for name in &self.setup.passed_over {
            let key = format!("passed over: {name}");
            if memory_tell(&self.memory, EventKind::BackupFailed, &key, now) {
                events.push(event(
                    EventKind::BackupFailed,
                    name,
                    format!("{name}: its file is still there but is no longer taken as a SQLite database (see the daemon's log); it is not backed up"),
                    serde_json::json!({ "kind": "database" }),
                ));
            }
        }
        for e in events {
            self.tell(e);
        }
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

    /// Start queued jobs while the pool has room.
    fn start_jobs(&mut self) {
        let max = self.setup.config.daemon.max_concurrent();
        while self.jobs.len() < max {
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

    /// A job ended: log it, plan the next, tell the channels.
    fn finished(&mut self, done: std::result::Result<(Due, Report), tokio::task::JoinError>) {
        let (due, report) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("a backup job ended abnormally: {e}");
                return;
            }
        };
        self.in_flight.remove(&due.database);
        let db = due.database.as_str();
        let now = Utc::now();
        let ms = report.duration.as_millis() as u64;
        match &report.outcome {
            Outcome::Backed { manifest, .. } => self.metrics.backup_finished(
                db,
                true,
                None,
                report.duration,
                manifest.stored_size,
                now,
            ),
            Outcome::Failed(e) => self.metrics.backup_finished(
                db,
                false,
                Some(e.kind.name()),
                report.duration,
                0,
                now,
            ),
            Outcome::Skipped { .. } => self.metrics.backup_skipped(db, now),
            Outcome::Held { .. } | Outcome::Done => {}
        }
        if !report.kinds.is_empty() {
            self.counts.retain(|(d, _), _| d != db);
            for (kind, n) in &report.kinds {
                self.counts.insert((db.to_string(), kind.clone()), *n);
            }
        } else if let Outcome::Backed { manifest, .. } = &report.outcome {
            // No prune ran: one more of its kind.
            *self
                .counts
                .entry((db.to_string(), manifest.kind.to_string()))
                .or_default() += 1;
        }
        for ((d, kind), n) in self.counts.iter().filter(|((d, _), _)| d == db) {
            self.metrics.set_backups(d, kind, *n);
        }
        match &report.outcome {
            Outcome::Backed { manifest, .. } => tracing::info!(
                database = db,
                outcome = "ok",
                duration_ms = ms,
                bytes = manifest.stored_size,
                backup = %manifest.id,
                "backup"
            ),
            Outcome::Skipped { since } => tracing::info!(
                database = db,
                outcome = "skipped",
                duration_ms = ms,
                bytes = 0u64,
                unchanged_since = %since,
                "backup"
            ),
            Outcome::Failed(e) => tracing::error!(
                database = db,
                outcome = "failed",
                duration_ms = ms,
                bytes = 0u64,
                error = %e,
                "backup"
            ),
            Outcome::Held { until } => tracing::info!(
                database = db,
                outcome = "held_elsewhere",
                duration_ms = ms,
                bytes = 0u64,
                until = %until,
                "backup"
            ),
            Outcome::Done => tracing::info!(
                database = db,
                outcome = "done_elsewhere",
                duration_ms = ms,
                bytes = 0u64,
                "backup"
            ),
        }
        match &report.outcome {
            Outcome::Held { until } => {
                self.plan
                    .retry_at(db, *until + chrono::Duration::seconds(1));
                return;
            }
            // Another daemon stored it: its time comes from the repository.
            Outcome::Done => {
                self.plan.finished(db, false, now);
                self.plan.refresh(db);
                return;
            }
            Outcome::Failed(_) => self
                .plan
                .failed(db, now, self.setup.config.daemon.retry_after()),
            o => self.plan.finished(db, o.fresh(), now),
        }
        let mut events = Vec::new();
        let mut memory = self.memory.lock().expect("alert memory");
        match &report.outcome {
            Outcome::Failed(e) => {
                if memory.should_tell(EventKind::BackupFailed, db, now) {
                    events.push(event(
                        EventKind::BackupFailed,
                        db,
                        e.to_string(),
                        serde_json::json!({
                            "exit_code": e.kind.exit_code(),
                            "kind": e.kind.name(),
                            "slot": due.slot,
                        }),
                    ));
                }
            }
            Outcome::Backed {
                manifest,
                shrinkage,
                warnings,
            } => {
                for w in warnings {
                    tracing::warn!(database = db, backup = %manifest.id, "{w}");
                }
                if memory.recovered(db) {
                    events.push(recovered(db, &manifest.id));
                }
                if self
                    .setup
                    .config
                    .alerts
                    .as_ref()
                    .is_some_and(|a| a.on_success)
                {
                    events.push(crate::alerts::succeeded(manifest));
                }
                if let Some(s) = shrinkage {
                    let tables: Vec<String> = s
                        .tables
                        .iter()
                        .map(|(t, a, b)| format!("{t} {a} -> {b}"))
                        .collect();
                    if memory.should_tell(EventKind::BackupShrunk, db, now) {
                        events.push(event(
                            EventKind::BackupShrunk,
                            db,
                            format!(
                                "backup {} has far fewer rows than the one before ({}); {} is held until `lifeboat release {}`",
                                manifest.id,
                                tables.join(", "),
                                s.held,
                                s.held
                            ),
                            serde_json::json!({ "backup": manifest.id, "held": s.held, "tables": s.tables }),
                        ));
                    }
                }
            }
            Outcome::Skipped { since } => {
                if memory.recovered(db) {
                    events.push(recovered(db, since));
                }
            }
            Outcome::Held { .. } | Outcome::Done => {}
        }
        if let Some(e) = &report.prune_error {
            tracing::error!(database = db, "prune after the backup failed: {e}");
            if memory.should_tell(EventKind::PruneFailed, db, now) {
                events.push(event(
                    EventKind::PruneFailed,
                    db,
                    e.to_string(),
                    serde_json::json!({ "kind": e.kind.name() }),
                ));
            }
        }
        drop(memory);
        for e in events {
            self.tell(e);
        }
    }

    /// Databases whose newest good backup is older than `max_age`: read the repository again
    /// (another daemon may have backed them up), then tell those still stale, and the
    /// recovery of those that no longer are.
    async fn check_staleness(&mut self, now: DateTime<Utc>) {
        let status = self.setup.config.status.clone();
        let max_age = status.max_age.unwrap_or(lifeboat::status::DEFAULT_MAX);
        let stale = self.plan.stale(now, max_age);
        for db in stale {
            if let Ok(f) = fresh_at(&self.setup.repo, &db, &status, now).await {
                self.plan.known(&db, f.at);
            }
            let still = self.plan.stale(now, max_age).contains(&db);
            if still {
                tracing::warn!(database = %db, "stale: no good backup younger than max_age");
            }
            let ev = {
                let mut memory = self.memory.lock().expect("alert memory");
                if still && memory.should_tell(EventKind::BackupStale, &db, now) {
                    let age = self
                        .plan
                        .fresh_at(&db)
                        .map(|f| lifeboat::status::hours((now - f).num_seconds()));
                    Some(event(
                        EventKind::BackupStale,
                        &db,
                        match &age {
                            Some(a) => format!(
                                "no good backup younger than max_age ({}): the newest is {a} old",
                                lifeboat::status::hours(max_age.as_secs() as i64)
                            ),
                            None => "no good backup at all".to_string(),
                        },
                        serde_json::json!({ "last_good_at": self.plan.fresh_at(&db) }),
                    ))
                } else if !still && memory.recovered(&db) {
                    Some(recovered(&db, "the newest backup"))
                } else {
                    None
                }
            };
            if let Some(e) = ev {
                self.tell(e);
            }
        }
    }

    /// Send `event` to every channel, without holding up the loop.
    fn tell(&self, mut event: Event) {
        let channels = self.setup.channels.clone();
        let metrics = self.metrics.clone();
        let repo = Arc::clone(&self.setup.repo);
        ALERTS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            // A problem's alert names the last good backup (email and Slack show it).
            if event.kind != EventKind::BackupRecovered && event.details.get("last_good").is_none()
            {
                let found = tokio::time::timeout(
                    crate::alerts::timeout(),
                    repo.newest_good(&event.source, Utc::now()),
                )
                .await;
                if let Ok(Ok(good)) = found {
                    event.details["last_good"] = good.as_ref().map(|m| m.id.clone()).into();
                    event.details["last_good_at"] = good.map(|m| m.created_at.to_rfc3339()).into();
                }
            }
            for d in send(&channels, &event).await {
                let kind = d.channel.split(' ').next().unwrap_or("?");
                metrics.alert_sent(kind, d.ok);
                if d.ok {
                    tracing::info!(event = event.kind.name(), source = %event.source, channel = %d.channel, "alert sent");
                } else {
                    tracing::warn!(
                        event = event.kind.name(),
                        source = %event.source,
                        channel = %d.channel,
                        attempts = d.attempts,
                        "alert not delivered: {}",
                        d.error.as_deref().unwrap_or("?")
                    );
                }
            }
            ALERTS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
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
        tracing::info!(
            running = self.jobs.len(),
            "stopping: no new jobs; running ones get {}",
            humantime::format_duration(timeout)
        );
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.jobs.is_empty() {
            match tokio::time::timeout_at(deadline, self.jobs.join_next()).await {
                Ok(Some(done)) => self.finished(done),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        aborted = self.jobs.len(),
                        "shutdown timeout: aborting the running backups (no manifest written)"
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

fn memory_tell(
    memory: &Mutex<AlertMemory>,
    kind: EventKind,
    key: &str,
    now: DateTime<Utc>,
) -> bool {
    memory
        .lock()
        .expect("alert memory")
        .should_tell(kind, key, now)
}

/// Alerts being sent: the process waits for them (at most a send's retries) before it ends.
static ALERTS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

async fn flush_alerts() {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(45);
    while ALERTS_IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) > 0
        && tokio::time::Instant::now() < give_up
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
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

fn event(kind: EventKind, source: &str, message: String, details: serde_json::Value) -> Event {
    Event {
        kind,
        source: source.to_string(),
        message,
        at: Utc::now(),
        details,
    }
}

fn recovered(db: &str, backup: &str) -> Event {
    event(
        EventKind::BackupRecovered,
        db,
        format!("{db} has a good backup again ({backup})"),
        serde_json::json!({ "backup": backup }),
    )
}

fn signal_error(e: std::io::Error) -> Error {
    Error::new(Kind::Internal, format!("daemon: cannot watch signals: {e}"))
}
