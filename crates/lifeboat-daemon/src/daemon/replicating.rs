//! The daemon's side of replication ([`crate::replication`]): a turn of polling, what a
//! finished sync leads to (metrics, logs), and the lag watch: `replication.stalled` when a
//! database's oldest unshipped change has waited longer than `[replication] max_lag`, told once,
//! and `replication.recovered` when it ships again (its lag back under half of `max_lag`: a
//! busy database's lag is rarely exactly 0, and the half keeps it from flapping).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::telling::event;
use super::Daemon;
use crate::alerts::EventKind;
use crate::replication::Event;

impl Daemon {
    /// One turn: poll the replicated databases; once a second, publish their lag and alert.
    pub(super) fn replicate_turn(&mut self) {
        self.replication.poll();
        if self.lag_watched.elapsed() >= Duration::from_secs(1) {
            self.lag_watched = Instant::now();
            self.watch_lag(Utc::now());
        }
    }

    /// After a discovery or a reload: replicate the sources that ask for it (and stop those
    /// that left).
    pub(super) fn replicate_what_is_found(&mut self) {
        self.replication.reconcile(
            &self.setup.repo,
            &self.setup.config.replication,
            self.setup.config.daemon.lease_ttl(),
            self.setup.sources.values(),
        );
    }

    /// A replication task ended.
    pub(super) fn replicated(&mut self, name: String, done: crate::replication::Done) {
        for ev in self.replication.finished(&name, done) {
            match ev {
                Event::Shipped { database, report } => {
                    if report.commits > 0 || report.bytes > 0 {
                        self.metrics
                            .replication_shipped(&database, report.commits, report.bytes);
                    }
                }
                Event::Break { database, reason } => {
                    tracing::warn!(database = %database, "replication chain broke, new generation: {reason}");
                    self.metrics.replication_break(&database);
                }
                Event::Failed { database, .. } => self.metrics.replication_error(&database),
            }
        }
    }

    /// Publish every replicated database's lag; tell the stalled ones and the recovered ones.
    pub(super) fn watch_lag(&mut self, now: DateTime<Utc>) {
        let max_lag = self.setup.config.replication.max_lag();
        let mut events = Vec::new();
        {
            let mut memory = self.memory.lock().expect("alert memory");
            for lag in self.replication.lags(now) {
                self.metrics.replication_lag(lag.database, lag.seconds);
                // Remembered apart from the database's backups: a good backup does not
                // "recover" a stalled replication, nor the other way round.
                let key = format!("replication: {}", lag.database);
                let stalled = lag.seconds.is_some_and(|s| s > max_lag.as_secs_f64());
                if stalled && memory.should_tell(EventKind::ReplicationStalled, &key, now) {
                    let waited = lag.seconds.unwrap_or_default().round() as i64;
                    tracing::error!(database = %lag.database, lag_seconds = waited, "replication stalled");
                    events.push(event(
                        EventKind::ReplicationStalled,
                        lag.database,
                        format!(
                            "changes committed {} ago are not in the repository yet (max_lag {}){}",
                            humantime::format_duration(Duration::from_secs(waited as u64)),
                            humantime::format_duration(max_lag),
                            lag.error
                                .map(|e| format!("; the last error: {e}"))
                                .unwrap_or_default()
                        ),
                        serde_json::json!({
                            "lag_seconds": waited,
                            "max_lag_seconds": max_lag.as_secs(),
                        }),
                    ));
                } else if lag
                    .seconds
                    .is_some_and(|s| s <= max_lag.as_secs_f64() / 2.0)
                    && memory.recovered(&key)
                {
                    tracing::info!(database = %lag.database, "replication recovered");
                    events.push(event(
                        EventKind::ReplicationRecovered,
                        lag.database,
                        format!("{} ships its changes again: nothing waits", lag.database),
                        serde_json::json!({}),
                    ));
                }
            }
        }
        for e in events {
            self.tell(e);
        }
    }
}
