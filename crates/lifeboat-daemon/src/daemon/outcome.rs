//! What a finished job leads to: its log line, its metrics, its next time in the plan, and the
//! alerts it calls for (failed, shrunk, recovered, succeeded, prune failed).

use chrono::Utc;

use super::telling::{event, recovered};
use super::Daemon;
use crate::alerts::EventKind;
use crate::job::{Outcome, Report};
use crate::plan::Due;

impl Daemon {
    /// A job ended: log it, plan the next, tell the channels.
    pub(super) fn finished(
        &mut self,
        done: std::result::Result<(Due, Report), tokio::task::JoinError>,
    ) {
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
        // One line per job: the database, the outcome, the duration and the bytes.
        let (outcome, bytes, detail) = match &report.outcome {
            Outcome::Backed { manifest, .. } => ("ok", manifest.stored_size, manifest.id.clone()),
            Outcome::Skipped { since } => ("skipped", 0, format!("unchanged since {since}")),
            Outcome::Failed(e) => ("failed", 0, e.to_string()),
            Outcome::Held { until } => ("held_elsewhere", 0, format!("until {until}")),
            Outcome::Done => ("done_elsewhere", 0, String::new()),
        };
        if matches!(report.outcome, Outcome::Failed(_)) {
            tracing::error!(
                database = db,
                outcome,
                duration_ms = ms,
                bytes,
                detail,
                "backup"
            );
        } else {
            tracing::info!(
                database = db,
                outcome,
                duration_ms = ms,
                bytes,
                detail,
                "backup"
            );
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
            o if matches!(o, Outcome::Failed(_)) || o.bad().is_some() => {
                self.plan
                    .failed(db, now, self.setup.config.daemon.retry_after())
            }
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
            o @ Outcome::Backed { manifest, .. } if o.bad().is_some() => {
                let v = o.bad().expect("bad");
                tracing::error!(database = db, backup = %manifest.id, "restore-test failed: {}", v.problem.as_deref().unwrap_or("?"));
                if memory.should_tell(EventKind::VerifyFailed, db, now) {
                    events.push(crate::alerts::verify_failed(manifest, v));
                }
            }
            Outcome::Backed {
                manifest,
                shrinkage,
                warnings,
                verified,
            } => {
                for w in warnings
                    .iter()
                    .chain(verified.iter().flat_map(|v| &v.warnings))
                {
                    tracing::warn!(database = db, backup = %manifest.id, "{w}");
                }
                if let Some(v) = verified.as_ref().filter(|v| !v.ok) {
                    tracing::warn!(database = db, backup = %manifest.id, "could not be restore-tested: {}", v.problem.as_deref().unwrap_or("?"));
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
                    if memory.should_tell(EventKind::BackupShrunk, db, now) {
                        events.push(crate::alerts::shrunk(manifest, s));
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
}
