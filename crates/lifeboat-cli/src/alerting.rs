//! Alerts from one-shot commands (cron, CronJobs, CI): the configured channels hear of a
//! failure as the daemon's would, and the health ping hears of every run, unless `--no-alert`.

use lifeboat::error::Error;
use lifeboat_daemon::alerts::{channels, send, Channel, Event, EventKind, Ping};

use crate::Ctx;

/// One command's alerting.
pub struct Alerter {
    channels: Vec<Channel>,
    ping: Option<Ping>,
}

impl Alerter {
    /// The channels and ping of the config (or the environment); none with `off`.
    pub fn new(ctx: &Ctx, off: bool) -> Alerter {
        if off {
            return Alerter {
                channels: Vec::new(),
                ping: None,
            };
        }
        let cfg = ctx.config.alerts.as_ref();
        Alerter {
            channels: channels(cfg, |k| std::env::var(k).ok()),
            ping: cfg.and_then(|c| c.ping_url.as_deref()).map(Ping::new),
        }
    }

    pub async fn start(&self) {
        if let Some(p) = &self.ping {
            if !p.start().await {
                eprintln!("lifeboat: warning: the health ping to {} failed", p.shown());
            }
        }
    }

    pub async fn succeeded(&self) {
        if let Some(p) = &self.ping {
            if !p.success().await {
                eprintln!("lifeboat: warning: the health ping to {} failed", p.shown());
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
                eprintln!("lifeboat: warning: the health ping to {} failed", p.shown());
            }
        }
    }

    /// Tell every channel that a backup shrank and which backup it holds.
    pub async fn shrunk(
        &self,
        m: &lifeboat::repo::Manifest,
        s: &lifeboat::backup::shrinkage::Shrinkage,
    ) {
        let tables: Vec<String> = s
            .tables
            .iter()
            .map(|(t, a, b)| format!("{t} {a} -> {b}"))
            .collect();
        let event = Event {
            kind: EventKind::BackupShrunk,
            source: m.database.clone(),
            message: format!(
                "backup {} has far fewer rows than the one before ({}); {} is held until `lifeboat release {}`",
                m.id,
                tables.join(", "),
                s.held,
                s.held
            ),
            at: chrono::Utc::now(),
            details: serde_json::json!({ "backup": m.id, "held": s.held, "tables": s.tables }),
        };
        self.tell(&event).await;
    }

    /// Tell every channel that `source` failed (not the ping: a run pings once).
    pub async fn tell_failure(&self, kind: EventKind, source: &str, e: &Error) {
        let event = Event {
            kind,
            source: source.to_string(),
            message: e.to_string(),
            at: chrono::Utc::now(),
            details: serde_json::json!({ "exit_code": e.kind.exit_code(), "kind": e.kind.name() }),
        };
        self.tell(&event).await;
    }

    /// Tell every channel of `event`; a channel that fails is a warning, never a failure.
    pub async fn tell(&self, event: &Event) {
        for d in send(&self.channels, event).await {
            if !d.ok {
                eprintln!(
                    "lifeboat: warning: alert {} to {} not delivered after {} attempt(s): {}",
                    event.kind.name(),
                    d.channel,
                    d.attempts,
                    d.error.as_deref().unwrap_or("?")
                );
            }
        }
    }
}
