//! Starting the verifier's rounds and telling what they found: each newly bad backup once, as
//! `verify.failed`; gaps, drift and shrinkage in the log.

use std::sync::Arc;

use chrono::Utc;
use lifeboat::schedule::Schedule;
use lifeboat::verify::findings::{Finding, Severity};

use super::Daemon;
use crate::alerts::{Event, EventKind};
use crate::verifier::{self, Work};

/// A finished round: the work and each database's result.
pub(super) type Round = (
    Work,
    Vec<(
        String,
        lifeboat::error::Result<lifeboat::verify::database::DatabaseVerification>,
    )>,
);

impl Daemon {
    /// Start the verifier's next round if one is due and none runs.
    pub(super) fn start_verification(&mut self) {
        if !self.verifying.is_empty() {
            return;
        }
        let now = Utc::now();
        let Some(work) = self.verifier.due(&self.setup.config, now) else {
            return;
        };
        let Ok(default) = self.setup.config.daemon.schedule() else {
            return;
        };
        let databases: Vec<(String, Schedule)> = (self.setup.sources.values())
            .map(|s| {
                let own = s.schedule.as_deref().and_then(|t| Schedule::parse(t).ok());
                (s.name.clone(), own.unwrap_or_else(|| default.clone()))
            })
            .collect();
        tracing::info!(
            rung = work.name(),
            databases = databases.len(),
            "verification started"
        );
        let repo = Arc::clone(&self.setup.repo);
        let config = Arc::clone(&self.setup.config);
        self.verifying.spawn(async move {
            let found = verifier::run(repo, config, databases, work).await;
            (work, found)
        });
    }

    /// What a round found: logged per database; newly bad backups alerted.
    pub(super) fn verified(&mut self, done: Result<Round, tokio::task::JoinError>) {
        let Ok((work, found)) = done else {
            tracing::error!("verification task failed");
            return;
        };
        let mut events = Vec::new();
        for (db, result) in found {
            let v = match result {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(database = %db, rung = work.name(), "could not be verified: {e}");
                    continue;
                }
            };
            let problems = v
                .findings
                .iter()
                .filter(|f| f.severity() == Severity::Error)
                .count();
            tracing::info!(
                database = %db,
                rung = work.name(),
                checked = v.reports.len(),
                findings = v.findings.len(),
                problems,
                "verified"
            );
            for f in &v.findings {
                match f.severity() {
                    Severity::Error => tracing::error!(database = %db, "{}", f.describe()),
                    Severity::Warning => tracing::warn!(database = %db, "{}", f.describe()),
                }
            }
            for r in v
                .reports
                .iter()
                .filter(|r| !r.ok && !r.damaged() && !r.pruned)
            {
                tracing::warn!(database = %db, backup = %r.backup, "could not be checked: {}", r.problem.as_deref().unwrap_or("?"));
            }
            // Told once: only what this round found bad (another daemon, or an earlier round,
            // told the rest), and never twice by this daemon.
            let told = self.told_bad.entry(db.clone()).or_default();
            let new: Vec<(&String, &String)> = (v.findings.iter())
                .filter_map(|f| match f {
                    Finding::Damage { backup, problem } => Some((backup, problem)),
                    _ => None,
                })
                .filter(|(b, _)| v.newly_bad.contains(b) && !told.contains(*b))
                .collect();
            if let Some((first, problem)) = new.first() {
                let ids: Vec<&String> = new.iter().map(|(b, _)| *b).collect();
                events.push(Event {
                    kind: EventKind::VerifyFailed,
                    source: db.clone(),
                    message: format!(
                        "{} backup(s) failed verification ({}), the first {first}: {problem}; they do not count as good backups",
                        ids.len(),
                        work.name()
                    ),
                    at: Utc::now(),
                    details: serde_json::json!({ "backups": ids, "check": work.name() }),
                });
                told.extend(ids.into_iter().cloned());
            }
        }
        for e in events {
            self.tell(e);
        }
    }
}
