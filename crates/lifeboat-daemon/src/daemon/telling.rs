//! What the daemon tells the channels outside a job's end: fleet members refused or passed
//! over, databases gone stale (or fresh again), and the sending itself, which never holds up the
//! loop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{fresh_at, Daemon};
use crate::alert_memory::AlertMemory;
use crate::alerts::{send, Event, EventKind};

impl Daemon {
    /// Fleet members discovery refused are failed databases: told like a failed backup.
    pub(super) fn tell_refused(&mut self) {
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

    /// Databases whose newest good backup is older than `max_age`: read the repository again
    /// (another daemon may have backed them up), then tell those still stale, and the
    /// recovery of those that no longer are.
    pub(super) async fn check_staleness(&mut self, now: DateTime<Utc>) {
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
    pub(super) fn tell(&self, mut event: Event) {
        let channels = self.setup.channels.clone();
        let metrics = self.metrics.clone();
        let repo = Arc::clone(&self.setup.repo);
        ALERTS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            // A problem's alert names the last good backup (email and Slack show it).
            let recovery = matches!(
                event.kind,
                EventKind::BackupRecovered | EventKind::ReplicationRecovered
            );
            if !recovery && event.details.get("last_good").is_none() {
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
            let deliveries = send(&channels, &event).await;
            if let Some(record) = crate::alerts::sent_record(&event, &deliveries) {
                repo.log_event_best_effort(&event.source, &record).await;
            }
            for d in deliveries {
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

pub(super) async fn flush_alerts() {
    let give_up = tokio::time::Instant::now() + Duration::from_secs(45);
    while ALERTS_IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) > 0
        && tokio::time::Instant::now() < give_up
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) fn event(
    kind: EventKind,
    source: &str,
    message: String,
    details: serde_json::Value,
) -> Event {
    Event {
        kind,
        source: source.to_string(),
        message,
        at: Utc::now(),
        details,
    }
}

pub(super) fn recovered(db: &str, backup: &str) -> Event {
    event(
        EventKind::BackupRecovered,
        db,
        format!("{db} has a good backup again ({backup})"),
        serde_json::json!({ "backup": backup }),
    )
}
