//! Alerts from one-shot commands (cron, CronJobs, CI): the configured channels hear of a
//! failure as the daemon's would, and the health ping hears of every run, unless `--no-alert`.

use std::time::Duration;

use lifeboat::error::{Error, Result};
use lifeboat::repo::Repository;
use lifeboat_daemon::alerts::{channels, send, sent_record, Channel, Event, EventKind, Ping};

use crate::Ctx;

/// One command's alerting.
pub struct Alerter {
    channels: Vec<Channel>,
    ping: Option<Ping>,
    /// The repository (URL, timeout), where a failure's last good backup is looked up.
    repo: Option<(String, Duration)>,
}

impl Alerter {
    /// The channels and ping of the config (or the environment); none with `off`.
    pub fn new(ctx: &Ctx, off: bool) -> Alerter {
        if off {
            return Alerter {
                channels: Vec::new(),
                ping: None,
                repo: None,
            };
        }
        let cfg = ctx.config.alerts.as_ref();
        let channels = channels(cfg, |k| std::env::var(k).ok());
        // Said at every run, not only when a failure finds the channel unable to send.
        for problem in channels.iter().filter_map(Channel::problem) {
            say_err!("lifeboat: warning: alerts: {problem}");
        }
        Alerter {
            channels,
            ping: cfg.and_then(|c| c.ping_url.as_deref()).map(Ping::new),
            repo: Some((
                ctx.config.repository_url(ctx.repo_flag.as_deref()),
                ctx.config
                    .repository
                    .timeout
                    .unwrap_or(lifeboat::repo::store::DEFAULT_TIMEOUT),
            )),
        }
    }

    pub async fn start(&self) {
        if let Some(p) = &self.ping {
            if !p.start().await {
                say_err!("lifeboat: warning: the health ping to {} failed", p.shown());
            }
        }
    }

    pub async fn succeeded(&self) {
        if let Some(p) = &self.ping {
            if !p.success().await {
                say_err!("lifeboat: warning: the health ping to {} failed", p.shown());
            }
        }
    }

    /// Tell every channel (and the ping) that `source` failed.
    pub async fn failed(&self, kind: EventKind, source: &str, e: &Error) {
        self.tell_failure(kind, source, e).await;
        self.fail_ping(e).await;
    }

    /// Tell the ping the run failed.
    pub async fn fail_ping(&self, e: &Error) {
        if let Some(p) = &self.ping {
            if !p.fail(&e.to_string()).await {
                say_err!("lifeboat: warning: the health ping to {} failed", p.shown());
            }
        }
    }

    /// Tell every channel that a backup shrank and which backup it holds.
    pub async fn shrunk(
        &self,
        m: &lifeboat::repo::Manifest,
        s: &lifeboat::backup::shrinkage::Shrinkage,
    ) {
        let event = lifeboat_daemon::alerts::shrunk(m, s);
        self.tell(&event).await;
    }

    /// Tell every channel that `source` failed (not the ping: a run pings once).
    pub async fn tell_failure(&self, kind: EventKind, source: &str, e: &Error) {
        if self.channels.is_empty() {
            return;
        }
        let at = chrono::Utc::now();
        let mut details =
            serde_json::json!({ "exit_code": e.kind.exit_code(), "kind": e.kind.name() });
        if source != "system_backup" {
            if let Some(found) = self.last_good(source, at).await {
                details["last_good"] = found.as_ref().map(|(id, _)| id.clone()).into();
                if let Some((_, t)) = found {
                    details["last_good_at"] =
                        t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into();
                }
            }
        }
        let event = Event {
            kind,
            source: source.to_string(),
            message: e.to_string(),
            at,
            details,
        };
        self.tell(&event).await;
    }

    /// `db`'s newest good backup (id, time), `Some(None)` when it has none, or `None` when the
    /// repository cannot say within the alert timeout (it may be what failed).
    async fn last_good(
        &self,
        db: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<Option<(String, chrono::DateTime<chrono::Utc>)>> {
        let (url, timeout) = self.repo.as_ref()?;
        let look = async {
            let repo = Repository::open_with_timeout(url, false, *timeout)?;
            let good = repo.newest_good(db, now).await?;
            Result::<_>::Ok(good.map(|m| (m.id, m.created_at)))
        };
        tokio::time::timeout(lifeboat_daemon::alerts::timeout(), look)
            .await
            .ok()?
            .ok()
    }

    /// Tell every channel of `event`; a channel that fails is a warning, never a failure. The
    /// sending goes to the database's event log (`alert.sent`), for an incident's timeline.
    pub async fn tell(&self, event: &Event) {
        let deliveries = send(&self.channels, event).await;
        if let (Some(record), Some((url, timeout))) =
            (sent_record(event, &deliveries), self.repo.as_ref())
        {
            if let Ok(repo) = Repository::open_with_timeout(url, false, *timeout) {
                repo.log_event_best_effort(&event.source, &record).await;
            }
        }
        for d in deliveries {
            if !d.ok {
                let tries = match d.attempts {
                    0 => "not sent".to_string(),
                    n => format!("not delivered after {n} attempt(s)"),
                };
                say_err!(
                    "lifeboat: warning: alert {} to {} {tries}: {}",
                    event.kind.name(),
                    d.channel,
                    d.error.as_deref().unwrap_or("?")
                );
            }
        }
    }
}
