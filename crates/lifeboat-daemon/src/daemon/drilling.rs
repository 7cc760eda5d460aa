//! The daemon's drills: keeping the drill plan in step with the databases, reading when each
//! was last drilled, starting due drills in the same bounded pool as backups (backups first),
//! and what a finished drill leads to: its log line and the `drill.failed` and
//! `drill.rto_breached` alerts.

use std::sync::Arc;

use chrono::Utc;
use lifeboat::drill::Verdict;

use super::telling::event;
use super::Daemon;
use crate::alerts::EventKind;
use crate::drills::{DrillDue, DrillOutcome};

impl Daemon {
    /// Follow the plan's databases, read the new ones' last drill, and queue the due drills.
    pub(super) async fn plan_drills(&mut self) {
        let Ok(schedule) = self.setup.config.daemon.drill_schedule() else {
            return; // refused when the config was loaded
        };
        self.drills.set_databases(self.plan.databases());
        let unknown = self.drills.unknown();
        if !unknown.is_empty() {
            let repo = &self.setup.repo;
            let found: Vec<_> = futures::StreamExt::collect(futures::StreamExt::buffer_unordered(
                futures::stream::iter(unknown.into_iter().map(|db| async move {
                    let last = lifeboat::drill::last_drill_at(repo, &db).await;
                    (db, last)
                })),
                16,
            ))
            .await;
            for (db, last) in found {
                match last {
                    Ok(last) => self.drills.known(&db, last, &schedule),
                    Err(e) => tracing::warn!(database = %db, "reading its drill records: {e}"),
                }
            }
        }
        let (plan, in_flight) = (&self.plan, &self.in_flight);
        // A drill restores the newest good backup: wait for the first, and for a running one.
        let due = self.drills.due(Utc::now(), &schedule, |db| {
            plan.fresh_at(db).is_some() && !in_flight.contains(db)
        });
        self.drill_queue.extend(due);
    }

    /// Start queued drills while the pool (shared with backups) has room, and no backup waits.
    /// Drills take at most `max_concurrent - 1` places (one when it is 1), so with two or more
    /// a backup always finds one free.
    pub(super) fn start_drills(&mut self) {
        let max = self.setup.config.daemon.max_concurrent();
        let drill_max = max.saturating_sub(1).max(1);
        while self.jobs.len() + self.drill_jobs.len() < max
            && self.drill_jobs.len() < drill_max
            && self.queue.is_empty()
        {
            let Some(due) = self.drill_queue.pop_front() else {
                return;
            };
            let repo = Arc::clone(&self.setup.repo);
            let config = Arc::clone(&self.setup.config);
            tracing::info!(database = %due.database, slot = %due.slot, "drill started");
            self.drill_jobs.spawn(async move {
                let outcome = crate::drills::run(&repo, &config, &due).await;
                (due, outcome)
            });
        }
    }

    /// A drill ended: log it, plan the next, tell the channels when it failed or was slow.
    pub(super) fn drill_finished(
        &mut self,
        done: std::result::Result<(DrillDue, DrillOutcome), tokio::task::JoinError>,
    ) {
        let (due, outcome) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("a drill ended abnormally: {e}");
                return;
            }
        };
        let db = due.database.as_str();
        let now = Utc::now();
        let schedule = self.setup.config.daemon.drill_schedule().ok();
        let record = match outcome {
            DrillOutcome::Held { until } => {
                tracing::info!(database = db, outcome = "held_elsewhere", "drill");
                self.drills
                    .retry_at(db, until + chrono::Duration::seconds(1));
                return;
            }
            DrillOutcome::Done => {
                tracing::info!(database = db, outcome = "done_elsewhere", "drill");
                self.drills.refresh(db);
                return;
            }
            DrillOutcome::Failed(e) => {
                tracing::error!(
                    database = db,
                    outcome = "failed",
                    "drill could not run: {e}"
                );
                let retry = now
                    + chrono::Duration::from_std(self.setup.config.daemon.retry_after())
                        .unwrap_or_default();
                self.drills.retry_at(db, retry);
                if self.memory_tells(EventKind::DrillFailed, db) {
                    self.tell(event(
                        EventKind::DrillFailed,
                        db,
                        format!("the DR drill could not run: {e}"),
                        serde_json::json!({ "kind": e.kind.name(), "slot": due.slot }),
                    ));
                }
                return;
            }
            DrillOutcome::Ran(r) => r,
        };
        if let Some(s) = &schedule {
            self.drills.finished(db, now, s);
        }
        let verdict = match record.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        };
        let line = format!(
            "drill {verdict}: {} in all (RTO {}), record {}",
            lifeboat::drill::report::ms_text(record.total_ms),
            humantime::format_duration(std::time::Duration::from_secs_f64(record.rto_seconds)),
            record.record.as_deref().unwrap_or("?")
        );
        if record.verdict == Verdict::Pass {
            tracing::info!(
                database = db,
                outcome = verdict,
                duration_ms = record.total_ms as u64,
                "{line}"
            );
        } else {
            tracing::error!(
                database = db,
                outcome = verdict,
                duration_ms = record.total_ms as u64,
                "{line}: {}",
                record.failure().unwrap_or_default()
            );
        }
        let details = serde_json::json!({
            "record": record.record,
            "verdict": verdict,
            "backup": record.backup.as_ref().map(|b| b.id.clone()),
            "total_ms": record.total_ms.round() as u64,
            "rto_seconds": record.rto_seconds,
            "rpo_seconds": record.rpo_seconds,
            "exit_code": record.exit_code(),
            "slot": due.slot,
        });
        // Failed for a reason other than time: a step or a data check.
        let broken = record.steps.iter().any(|s| !s.ok) || record.checks.iter().any(|c| !c.ok);
        if broken && self.memory_tells(EventKind::DrillFailed, db) {
            let why = record.failure().unwrap_or_default();
            self.tell(event(
                EventKind::DrillFailed,
                db,
                format!("the DR drill failed: {why}"),
                details.clone(),
            ));
        }
        if record.rto_breached && self.memory_tells(EventKind::DrillRtoBreached, db) {
            self.tell(event(
                EventKind::DrillRtoBreached,
                db,
                format!(
                    "the DR drill took {}, longer than the RTO of {}",
                    lifeboat::drill::report::ms_text(record.total_ms),
                    humantime::format_duration(std::time::Duration::from_secs_f64(
                        record.rto_seconds
                    ))
                ),
                details,
            ));
        }
    }

    fn memory_tells(&self, kind: EventKind, db: &str) -> bool {
        self.memory
            .lock()
            .expect("alert memory")
            .should_tell(kind, db, Utc::now())
    }
}
