//! Metrics: what the daemon did, for Prometheus (`/metrics`), and whether its scheduler loop is
//! alive (`/healthz`). The daemon records events on a [`Metrics`] (cheap to clone, shared); the
//! server in [`serve`] encodes them with `prometheus-client` at each scrape.
//!
//! Series (Prometheus conventions; per-database ones are aggregated above the cap, see `fleet`):
//! - `lifeboat_backup_last_success_timestamp_seconds{database}` (gauge)
//! - `lifeboat_backup_duration_seconds{outcome}` (histogram; `ok` or `failed`, no database)
//! - `lifeboat_backup_size_bytes{database}` (gauge)
//! - `lifeboat_backup_failures_total{database,reason}` (counter)
//! - `lifeboat_backups{database,kind}` (gauge)
//! - `lifeboat_alerts_sent_total{channel,outcome}` (counter)
//! - `lifeboat_databases` (gauge), `lifeboat_metrics_aggregated` (gauge, 0 or 1)
//! - `lifeboat_replication_lag_seconds{database}` (gauge; aggregated: the largest),
//!   `lifeboat_replication_{commits,bytes,breaks,errors}_total{database}` (counters),
//!   `lifeboat_replicated_databases` (gauge)
//!
//! Cardinality stays bounded: database names are the only free-form label values, and above
//! `max_databases` they collapse to `database="_all"`. Reasons, kinds and channels are short
//! tokens (`[a-z0-9_]`, at most 32 characters, at most 16 distinct values each, later ones
//! count as `other`); tenant ids never become labels.

mod fleet;
mod server;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use fleet::ALL;
pub use server::serve;

/// The default of `[daemon] metrics_max_databases`.
pub const DEFAULT_MAX_DATABASES: usize = 500;

/// The default liveness window of `/healthz`: the scheduler loop must [`Metrics::tick`] at
/// least this often (tick every third of it, so one slow turn is not a restart).
pub const DEFAULT_LIVENESS: Duration = Duration::from_secs(60);

/// Upper bounds of the backup duration buckets, in seconds: a small database takes well under
/// a second, a large one or a D1 export many minutes.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

type Outcome = [(&'static str, &'static str); 1];
type ChannelOutcome = [(&'static str, String); 2];

/// The daemon's metrics and liveness, shared between the scheduler and the server.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("aggregated", &self.aggregated())
            .finish_non_exhaustive()
    }
}

struct Inner {
    registry: Registry,
    fleet: Arc<fleet::Fleet>,
    durations: Family<Outcome, Histogram, fn() -> Histogram>,
    alerts: Family<ChannelOutcome, Counter>,
    /// Channel kinds seen, to bound them.
    channels: Mutex<fleet::Values>,
    databases: Gauge,
    live: Liveness,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl Metrics {
    /// Metrics for a fleet whose per-database series are aggregated above `max_databases`
    /// databases; `/healthz` wants a tick within [`DEFAULT_LIVENESS`].
    pub fn new(max_databases: usize) -> Metrics {
        let fleet = Arc::new(fleet::Fleet::new(max_databases));
        let durations: Family<Outcome, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let alerts = Family::<ChannelOutcome, Counter>::default();
        let databases = Gauge::default();

        let mut registry = Registry::default();
        registry.register(
            "lifeboat_backup_duration_seconds",
            "How long backup jobs took, by outcome",
            durations.clone(),
        );
        registry.register(
            "lifeboat_alerts_sent",
            "Alerts sent, by channel kind and outcome (ok, failed)",
            alerts.clone(),
        );
        registry.register(
            "lifeboat_databases",
            "Databases in the fleet",
            databases.clone(),
        );
        registry.register_collector(Box::new(fleet.clone()));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                fleet,
                durations,
                alerts,
                channels: Mutex::default(),
                databases,
                live: Liveness::new(DEFAULT_LIVENESS),
            }),
        }
    }

    /// How long `/healthz` stays 200 after the last [`Metrics::tick`]. Until the first tick, the
    /// window counts from [`Metrics::new`], so a slow start is not taken for a dead loop.
    pub fn set_liveness_window(&self, window: Duration) {
        self.inner.live.set_window(window)
    }

    /// One backup job ended (ok, or failed with a short reason such as the error kind name:
    /// "source", "repository", "disk_full"). A success sets the last-success time and size.
    pub fn backup_finished(
        &self,
        database: &str,
        ok: bool,
        reason: Option<&str>,
        duration: Duration,
        bytes: u64,
        at: DateTime<Utc>,
    ) {
        let outcome = if ok { "ok" } else { "failed" };
        self.inner
            .durations
            .get_or_create(&[("outcome", outcome)])
            .observe(duration.as_secs_f64());
        if ok {
            self.inner.fleet.success(database, unix(at), Some(bytes));
        } else {
            self.inner
                .fleet
                .failure(database, &token(reason.unwrap_or("unknown")));
        }
    }

    /// A scheduled backup was skipped because the database is unchanged: it counts as fresh.
    pub fn backup_skipped(&self, database: &str, at: DateTime<Utc>) {
        self.inner.fleet.success(database, unix(at), None)
    }

    /// The newest good backup the repository holds, as the daemon finds it at start-up (or
    /// after a reload): without it a database reads 0 ("never") until its next backup. Never
    /// moves the time backwards.
    pub fn set_last_success(&self, database: &str, at: DateTime<Utc>) {
        self.inner.fleet.success(database, unix(at), None)
    }

    /// How many backups the repository holds for `database` of this kind.
    pub fn set_backups(&self, database: &str, kind: &str, count: u64) {
        self.inner.fleet.backups(database, &token(kind), count)
    }

    /// One alert was sent (or failed for good) on a channel kind: webhook, slack, email, ping.
    pub fn alert_sent(&self, channel: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        let channel = {
            let mut known = self
                .inner
                .channels
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            known.intern(&token(channel)).to_string()
        };
        let labels = [("channel", channel), ("outcome", outcome.to_string())];
        self.inner.alerts.get_or_create(&labels).inc();
    }

    /// A replicated database's lag in seconds (None: not replicating it now).
    pub fn replication_lag(&self, database: &str, lag: Option<f64>) {
        self.inner.fleet.replication_lag(database, lag)
    }

    /// A replicated database shipped `commits` transactions in `bytes` of segments.
    pub fn replication_shipped(&self, database: &str, commits: u64, bytes: u64) {
        self.inner
            .fleet
            .replication_count(database, [commits, bytes, 0, 0])
    }

    /// A replicated database's chain broke (a new generation started).
    pub fn replication_break(&self, database: &str) {
        self.inner.fleet.replication_count(database, [0, 0, 1, 0])
    }

    /// A replicated database's sync or open failed.
    pub fn replication_error(&self, database: &str) {
        self.inner.fleet.replication_count(database, [0, 0, 0, 1])
    }

    /// How many databases the fleet has (`lifeboat_databases`); above the cap, per-database
    /// series are aggregated even before each database has been seen.
    pub fn set_databases(&self, n: usize) {
        self.inner
            .databases
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.inner.fleet.set_size(n);
    }

    /// The fleet is exactly these databases (after a discovery): the others' series are
    /// dropped, so a vanished database never looks stale, and `lifeboat_databases` is set.
    pub fn set_fleet<S: AsRef<str>>(&self, names: &[S]) {
        let names: Vec<&str> = names.iter().map(AsRef::as_ref).collect();
        let n = self.inner.fleet.set_members(&names);
        self.inner
            .databases
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The scheduler loop is alive.
    pub fn tick(&self) {
        self.inner.live.tick()
    }

    /// Whether the per-database series are aggregated into `database="_all"`.
    pub fn aggregated(&self) -> bool {
        self.inner.fleet.aggregated()
    }

    /// The Prometheus text format (0.0.4), as `/metrics` serves it by default.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail, and our collector never fails either.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.inner.registry);
        out
    }

    /// The OpenMetrics text format, for scrapers that ask for it.
    pub fn render_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// `/healthz`: alive or not, and one line saying why.
    pub fn health(&self) -> (bool, String) {
        self.inner.live.health()
    }
}

/// Whether the scheduler loop ticked recently. Monotonic time, so a wall-clock jump neither
/// kills nor revives it.
struct Liveness {
    start: Instant,
    /// Milliseconds since `start` of the last tick.
    last_ms: AtomicU64,
    ticked: AtomicBool,
    window_ms: AtomicU64,
}

impl Liveness {
    fn new(window: Duration) -> Liveness {
        Liveness {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            ticked: AtomicBool::new(false),
            window_ms: AtomicU64::new(millis(window)),
        }
    }

    fn set_window(&self, window: Duration) {
        self.window_ms.store(millis(window), Ordering::Relaxed)
    }

    fn tick(&self) {
        self.last_ms
            .fetch_max(millis(self.start.elapsed()), Ordering::Relaxed);
        self.ticked.store(true, Ordering::Relaxed);
    }

    fn health(&self) -> (bool, String) {
        let now = millis(self.start.elapsed());
        let age = now.saturating_sub(self.last_ms.load(Ordering::Relaxed));
        let window = self.window_ms.load(Ordering::Relaxed);
        let alive = age <= window;
        let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
        let line = match (alive, self.ticked.load(Ordering::Relaxed)) {
            (true, true) => format!("ok: scheduler loop ticked {} ago", secs(age)),
            (true, false) => format!("ok: starting ({} since start)", secs(age)),
            (false, true) => format!(
                "unhealthy: scheduler loop last ticked {} ago (window {})",
                secs(age),
                secs(window)
            ),
            (false, false) => format!(
                "unhealthy: scheduler loop has not ticked in the {} since start",
                secs(age)
            ),
        };
        (alive, line)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn unix(at: DateTime<Utc>) -> f64 {
    at.timestamp_millis() as f64 / 1000.0
}

/// A bounded label value: lowercase ASCII letters, digits and `_`, at most 32 characters.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .take(32)
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => c,
            _ => '_',
        })
        .collect();
    if t.is_empty() {
        "unknown".into()
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_bounded() {
        assert_eq!(token("disk_full"), "disk_full");
        assert_eq!(token("Not Found!"), "not_found_");
        assert_eq!(token(""), "unknown");
        assert_eq!(token(&"x".repeat(100)).len(), 32);
        assert_eq!(token("ünïcode"), "_n_code");
    }

    #[test]
    fn liveness_follows_ticks() {
        let live = Liveness::new(Duration::from_secs(3600));
        let (alive, line) = live.health();
        assert!(alive && line.starts_with("ok: starting"), "{line}");
        live.tick();
        let (alive, line) = live.health();
        assert!(
            alive && line.starts_with("ok: scheduler loop ticked"),
            "{line}"
        );
        live.set_window(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        let (alive, line) = live.health();
        assert!(!alive && line.starts_with("unhealthy: scheduler loop last ticked"));
        assert!(!line.contains('\n'));
    }
}
