//! The per-database metrics: what the daemon last learnt of each database, turned into series
//! at every scrape. Keeping the facts (not the series) lets the exposition switch between one
//! series per database and one `database="_all"` aggregate when the fleet crosses
//! `metrics_max_databases`, without leaving stale per-database series behind.
//!
//! Aggregates, chosen so that an alert rule written for one database works for the fleet:
//! - `lifeboat_backup_last_success_timestamp_seconds`: the *oldest* last success of the fleet
//!   (0 when any database has none), so `time() - x > 26h` fires when any database is stale;
//! - `lifeboat_backup_size_bytes`: the sum of each database's newest backup;
//! - `lifeboat_backup_failures_total{reason}`: every failure of the fleet, a counter that
//!   never goes down (it also counts databases that have left the fleet);
//! - `lifeboat_backups{kind}`: the sum over the fleet.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The `database` label of the aggregate series.
pub const ALL: &str = "_all";

/// Distinct reasons (and kinds) kept; later ones count as [`OTHER`], so a caller that passes
/// free text cannot grow the series without bound.
pub const MAX_VALUES: usize = 16;
pub const OTHER: &str = "other";

/// `value`, or [`OTHER`] when `known` is full and does not hold it.
pub(super) fn bounded<'a, V>(known: &BTreeMap<String, V>, value: &'a str) -> &'a str {
    if known.len() >= MAX_VALUES && !known.contains_key(value) {
        OTHER
    } else {
        value
    }
}

/// What is known of one database.
#[derive(Debug, Default)]
struct Db {
    /// Unix seconds of the newest good (or skipped-as-unchanged) backup.
    last_success: Option<f64>,
    /// Bytes of the newest good backup.
    size: Option<u64>,
    failures: BTreeMap<String, u64>,
    backups: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct State {
    dbs: BTreeMap<String, Db>,
    /// What `set_databases` said, which may exceed the databases seen so far.
    fleet_size: usize,
    /// Failures of the whole fleet by reason: the aggregate counter, only ever increased.
    failures_all: BTreeMap<String, u64>,
    /// Every backup kind seen, to bound them.
    kinds: BTreeMap<String, ()>,
}

/// The per-database facts, shared by the recorder and the scrape.
#[derive(Debug)]
pub struct Fleet {
    max: usize,
    state: Mutex<State>,
}

impl Fleet {
    pub fn new(max: usize) -> Fleet {
        Fleet {
            max,
            state: Mutex::new(State::default()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic elsewhere must not take metrics down with it: the data is still sound.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    pub fn success(&self, database: &str, at: f64, size: Option<u64>) {
        self.with(|s| {
            let db = s.dbs.entry(database.to_string()).or_default();
            db.last_success = Some(db.last_success.map_or(at, |t| t.max(at)));
            if size.is_some() {
                db.size = size;
            }
        })
    }

    pub fn failure(&self, database: &str, reason: &str) {
        self.with(|s| {
            let reason = bounded(&s.failures_all, reason);
            let db = s.dbs.entry(database.to_string()).or_default();
            *db.failures.entry(reason.to_string()).or_default() += 1;
            *s.failures_all.entry(reason.to_string()).or_default() += 1;
        })
    }

    pub fn backups(&self, database: &str, kind: &str, count: u64) {
        self.with(|s| {
            let kinds = &mut s.kinds;
            let kind = bounded(kinds, kind);
            kinds.insert(kind.to_string(), ());
            let db = s.dbs.entry(database.to_string()).or_default();
            db.backups.insert(kind.to_string(), count);
        })
    }

    pub fn set_size(&self, n: usize) {
        self.with(|s| s.fleet_size = n)
    }

    /// The fleet is exactly `names`: forget the others (a vanished database must not look stale
    /// for ever), and know the new ones (with no success yet).
    pub fn set_members(&self, names: &[&str]) {
        self.with(|s| {
            let keep: std::collections::BTreeSet<&str> = names.iter().copied().collect();
            s.dbs.retain(|name, _| keep.contains(name.as_str()));
            for name in keep {
                s.dbs.entry(name.to_string()).or_default();
            }
            s.fleet_size = names.len();
        })
    }

    /// Whether the series are aggregated: more databases than the cap, by the daemon's count
    /// or by the ones seen.
    pub fn aggregated(&self) -> bool {
        self.with(|s| s.aggregated(self.max))
    }
}

impl State {
    fn aggregated(&self, max: usize) -> bool {
        self.fleet_size.max(self.dbs.len()) > max
    }
}

const LAST_SUCCESS: &str = "lifeboat_backup_last_success_timestamp_seconds";
const SIZE: &str = "lifeboat_backup_size_bytes";
const FAILURES: &str = "lifeboat_backup_failures";
const BACKUPS: &str = "lifeboat_backups";

impl Collector for Fleet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let aggregated = state.aggregated(self.max);

        let mut e = encoder.encode_descriptor(
            LAST_SUCCESS,
            "Unix time of the newest good backup (a skip of an unchanged database counts); 0 when there is none. database=\"_all\": the oldest of the fleet",
            None,
            MetricType::Gauge,
        )?;
        if aggregated {
            let oldest = state
                .dbs
                .values()
                .map(|d| d.last_success.unwrap_or(0.0))
                .reduce(f64::min);
            if let Some(oldest) = oldest {
                ConstGauge::new(oldest).encode(e.encode_family(&[("database", ALL)])?)?;
            }
        } else {
            for (name, db) in &state.dbs {
                let v = db.last_success.unwrap_or(0.0);
                ConstGauge::new(v).encode(e.encode_family(&[("database", name.as_str())])?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            SIZE,
            "Bytes of the newest good backup. database=\"_all\": the sum over the fleet",
            None,
            MetricType::Gauge,
        )?;
        if aggregated {
            let sum: u64 = state.dbs.values().filter_map(|d| d.size).sum();
            ConstGauge::new(sum).encode(e.encode_family(&[("database", ALL)])?)?;
        } else {
            for (name, db) in &state.dbs {
                if let Some(size) = db.size {
                    ConstGauge::new(size)
                        .encode(e.encode_family(&[("database", name.as_str())])?)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            FAILURES,
            "Backup jobs that failed, by reason (the error kind). database=\"_all\": the whole fleet's",
            None,
            MetricType::Counter,
        )?;
        if aggregated {
            for (reason, n) in &state.failures_all {
                let labels = [("database", ALL), ("reason", reason.as_str())];
                ConstCounter::new(*n).encode(e.encode_family(&labels)?)?;
            }
        } else {
            for (name, db) in &state.dbs {
                for (reason, n) in &db.failures {
                    let labels = [("database", name.as_str()), ("reason", reason.as_str())];
                    ConstCounter::new(*n).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            BACKUPS,
            "Backups the repository holds, by kind. database=\"_all\": the sum over the fleet",
            None,
            MetricType::Gauge,
        )?;
        if aggregated {
            let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
            for db in state.dbs.values() {
                for (kind, n) in &db.backups {
                    *sums.entry(kind.as_str()).or_default() += n;
                }
            }
            for (kind, n) in sums {
                let labels = [("database", ALL), ("kind", kind)];
                ConstGauge::new(n).encode(e.encode_family(&labels)?)?;
            }
        } else {
            for (name, db) in &state.dbs {
                for (kind, n) in &db.backups {
                    let labels = [("database", name.as_str()), ("kind", kind.as_str())];
                    ConstGauge::new(*n).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        let e = encoder.encode_descriptor(
            "lifeboat_metrics_aggregated",
            "1 when the fleet has more databases than metrics_max_databases, and the per-database series are one database=\"_all\" series",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(aggregated)).encode(e)?;
        Ok(())
    }
}
