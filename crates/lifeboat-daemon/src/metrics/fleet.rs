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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// The `database` label of the aggregate series.
pub const ALL: &str = "_all";

/// Distinct reasons (and kinds, channels) kept; later ones count as [`OTHER`], so a caller that
/// passes free text cannot grow the series without bound.
pub const MAX_VALUES: usize = 16;
pub const OTHER: &str = "other";

/// A label value, stored once however many databases use it.
pub type Label = Arc<str>;

/// The values one label has taken: at most [`MAX_VALUES`], then [`OTHER`].
#[derive(Debug, Default)]
pub struct Values(BTreeSet<Label>);

impl Values {
    pub fn intern(&mut self, value: &str) -> Label {
        if let Some(v) = self.0.get(value) {
            return v.clone();
        }
        let value = if self.0.len() >= MAX_VALUES {
            OTHER
        } else {
            value
        };
        let v = self
            .0
            .get(value)
            .cloned()
            .unwrap_or_else(|| Arc::from(value));
        self.0.insert(v.clone());
        v
    }
}

/// The count for `key` in a small sorted list (a database has a few reasons and kinds).
fn slot<'a>(list: &'a mut Vec<(Label, u64)>, key: &Label) -> &'a mut u64 {
    let i = match list.binary_search_by(|(k, _)| k.as_ref().cmp(key.as_ref())) {
        Ok(i) => i,
        Err(i) => {
            list.insert(i, (key.clone(), 0));
            i
        }
    };
    &mut list[i].1
}

/// What is known of one database: a few dozen bytes, as fleets may be large.
#[derive(Debug, Default)]
struct Db {
    /// Unix seconds of the newest good (or skipped-as-unchanged) backup.
    last_success: Option<f64>,
    /// Bytes of the newest good backup.
    size: Option<u64>,
    failures: Vec<(Label, u64)>,
    backups: Vec<(Label, u64)>,
    /// Set for a replicated database.
    repl: Option<Box<Repl>>,
}

/// What is known of a replicated database.
#[derive(Debug, Default, Clone, Copy)]
struct Repl {
    /// Seconds the oldest unshipped change has waited (None: not replicating now).
    lag: Option<f64>,
    /// Counters: commits, segment bytes, breaks (new generations), failed syncs.
    counts: [u64; 4],
}

#[derive(Debug, Default)]
struct State {
    dbs: BTreeMap<Box<str>, Db>,
    /// What `set_databases` said, which may exceed the databases seen so far.
    fleet_size: usize,
    /// Failures of the whole fleet by reason: the aggregate counter, only ever increased.
    failures_all: BTreeMap<Label, u64>,
    reasons: Values,
    kinds: Values,
    /// The replication counters of the whole fleet, only ever increased.
    repl_all: [u64; 4],
}

impl State {
    fn db(&mut self, name: &str) -> &mut Db {
        self.dbs.entry(Box::from(name)).or_default()
    }
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
            let db = s.db(database);
            db.last_success = Some(db.last_success.map_or(at, |t| t.max(at)));
            if size.is_some() {
                db.size = size;
            }
        })
    }

    pub fn failure(&self, database: &str, reason: &str) {
        self.with(|s| {
            let reason = s.reasons.intern(reason);
            *slot(&mut s.db(database).failures, &reason) += 1;
            *s.failures_all.entry(reason).or_default() += 1;
        })
    }

    pub fn backups(&self, database: &str, kind: &str, count: u64) {
        self.with(|s| {
            let kind = s.kinds.intern(kind);
            *slot(&mut s.db(database).backups, &kind) = count;
        })
    }

    /// A replicated database's lag now (None: it is not being replicated, e.g. refused).
    pub fn replication_lag(&self, database: &str, lag: Option<f64>) {
        self.with(|s| s.db(database).repl.get_or_insert_default().lag = lag)
    }

    /// Add to a replicated database's counters (commits, bytes, breaks, errors).
    pub fn replication_count(&self, database: &str, add: [u64; 4]) {
        self.with(|s| {
            for (all, n) in s.repl_all.iter_mut().zip(add) {
                *all += n;
            }
            let r = s.db(database).repl.get_or_insert_default();
            for (c, n) in r.counts.iter_mut().zip(add) {
                *c += n;
            }
        })
    }

    pub fn set_size(&self, n: usize) {
        self.with(|s| s.fleet_size = n)
    }

    /// The fleet is exactly `names`: forget the others (a vanished database must not look stale
    /// for ever), and know the new ones (with no success yet). Returns how many there are.
    pub fn set_members(&self, names: &[&str]) -> usize {
        self.with(|s| {
            let keep: BTreeSet<&str> = names.iter().copied().collect();
            s.dbs.retain(|name, _| keep.contains(name.as_ref()));
            for name in &keep {
                s.db(name);
            }
            s.fleet_size = keep.len();
            keep.len()
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
            "Unix time of the newest good backup (a skip of an unchanged database counts); 0 when there is none. database=\"_all\": the oldest of the fleet.",
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
                ConstGauge::new(v).encode(e.encode_family(&[("database", name.as_ref())])?)?;
            }
        }

        let mut e = encoder.encode_descriptor(
            SIZE,
            "Bytes of the newest good backup. database=\"_all\": the sum over the fleet.",
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
                        .encode(e.encode_family(&[("database", name.as_ref())])?)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            FAILURES,
            "Backup jobs that failed, by reason (the error kind). database=\"_all\": the whole fleet's.",
            None,
            MetricType::Counter,
        )?;
        if aggregated {
            for (reason, n) in &state.failures_all {
                let labels = [("database", ALL), ("reason", reason.as_ref())];
                ConstCounter::new(*n).encode(e.encode_family(&labels)?)?;
            }
        } else {
            for (name, db) in &state.dbs {
                for (reason, n) in &db.failures {
                    let labels = [("database", name.as_ref()), ("reason", reason.as_ref())];
                    ConstCounter::new(*n).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        let mut e = encoder.encode_descriptor(
            BACKUPS,
            "Backups the repository holds, by kind. database=\"_all\": the sum over the fleet.",
            None,
            MetricType::Gauge,
        )?;
        if aggregated {
            let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
            for db in state.dbs.values() {
                for (kind, n) in &db.backups {
                    *sums.entry(kind.as_ref()).or_default() += n;
                }
            }
            for (kind, n) in sums {
                let labels = [("database", ALL), ("kind", kind)];
                ConstGauge::new(n).encode(e.encode_family(&labels)?)?;
            }
        } else {
            for (name, db) in &state.dbs {
                for (kind, n) in &db.backups {
                    let labels = [("database", name.as_ref()), ("kind", kind.as_ref())];
                    ConstGauge::new(*n).encode(e.encode_family(&labels)?)?;
                }
            }
        }

        encode_replication(&state, aggregated, &mut encoder)?;

        let e = encoder.encode_descriptor(
            "lifeboat_metrics_aggregated",
            "1 when the fleet has more databases than metrics_max_databases, and the per-database series are one database=\"_all\" series.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(aggregated)).encode(e)?;
        Ok(())
    }
}

const REPL_COUNTERS: [(&str, &str); 4] = [
    (
        "lifeboat_replication_commits",
        "Transactions shipped by the replicator. database=\"_all\": the whole fleet's.",
    ),
    (
        "lifeboat_replication_bytes",
        "Bytes of the segments stored (compressed). database=\"_all\": the whole fleet's.",
    ),
    (
        "lifeboat_replication_breaks",
        "New generations started because the chain broke (an outside checkpoint, VACUUM, the file replaced). database=\"_all\": the whole fleet's.",
    ),
    (
        "lifeboat_replication_errors",
        "Syncs or opens that failed (the repository, a database not in WAL mode). database=\"_all\": the whole fleet's.",
    ),
];

fn encode_replication(
    state: &State,
    aggregated: bool,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let repl = || {
        state
            .dbs
            .iter()
            .filter_map(|(n, d)| d.repl.as_deref().map(|r| (n.as_ref(), r)))
    };
    let e = encoder.encode_descriptor(
        "lifeboat_replicated_databases",
        "Databases being replicated now (their replicator is open).",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(repl().filter(|(_, r)| r.lag.is_some()).count() as i64).encode(e)?;
    let mut e = encoder.encode_descriptor(
        "lifeboat_replication_lag_seconds",
        "How long the oldest change not yet shipped has waited (0: all shipped; resolution: the sync interval). database=\"_all\": the largest of the fleet.",
        None,
        MetricType::Gauge,
    )?;
    if aggregated {
        if let Some(max) = repl().filter_map(|(_, r)| r.lag).reduce(f64::max) {
            ConstGauge::new(max).encode(e.encode_family(&[("database", ALL)])?)?;
        }
    } else {
        for (name, r) in repl() {
            if let Some(lag) = r.lag {
                ConstGauge::new(lag).encode(e.encode_family(&[("database", name)])?)?;
            }
        }
    }
    for (i, (name, help)) in REPL_COUNTERS.iter().enumerate() {
        let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        if aggregated {
            if repl().next().is_some() || state.repl_all[i] > 0 {
                ConstCounter::new(state.repl_all[i])
                    .encode(e.encode_family(&[("database", ALL)])?)?;
            }
        } else {
            for (db, r) in repl() {
                ConstCounter::new(r.counts[i]).encode(e.encode_family(&[("database", db)])?)?;
            }
        }
    }
    Ok(())
}
