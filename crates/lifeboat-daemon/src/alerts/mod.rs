//! Alerts: what went wrong (or right again), told to every configured channel at once. Each
//! channel is one file behind [`Channel`]; a send has a 10 s timeout and 3 retries with backoff,
//! and a dead channel never blocks another. Channel URLs are secrets: only their host is ever
//! shown.

mod http;
mod ping;
mod slack;
mod webhook;

use chrono::{DateTime, Utc};
pub use lifeboat::config::AlertsConfig;

pub use ping::Ping;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    BackupFailed,
    BackupStale,
    BackupShrunk,
    BackupRecovered,
    BackupSucceeded,
    PruneFailed,
    Test,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::BackupFailed => "backup.failed",
            EventKind::BackupStale => "backup.stale",
            EventKind::BackupShrunk => "backup.shrunk",
            EventKind::BackupRecovered => "backup.recovered",
            EventKind::BackupSucceeded => "backup.succeeded",
            EventKind::PruneFailed => "prune.failed",
            EventKind::Test => "alert.test",
        }
    }

    /// A problem that stays open until the source is good again (`backup.recovered`).
    pub fn is_problem(self) -> bool {
        matches!(self, EventKind::BackupFailed | EventKind::BackupStale)
    }
}

/// One alert.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// `system_backup`, or the database's name.
    pub source: String,
    pub message: String,
    pub at: DateTime<Utc>,
    /// More facts, under `details` in the webhook's JSON.
    pub details: serde_json::Value,
}

/// Where alerts go.
#[derive(Debug, Clone)]
pub enum Channel {
    Webhook(String),
    Slack(String),
}

impl Channel {
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Slack(_) => "slack",
        }
    }

    fn url(&self) -> &str {
        match self {
            Channel::Webhook(u) | Channel::Slack(u) => u,
        }
    }

    /// The channel as it may be shown: its kind and host, never the URL (it is the secret).
    pub fn shown(&self) -> String {
        format!("{} ({})", self.name(), host_of(self.url()))
    }
}

/// The host of a URL, or `?`: all of a webhook URL that may be shown.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The alert channels `cfg` (or, without it, the environment) switches on.
pub fn channels(cfg: Option<&AlertsConfig>, env: impl Fn(&str) -> Option<String>) -> Vec<Channel> {
    let (webhook, slack) = match cfg {
        Some(c) => (c.webhook_url.clone(), c.slack_webhook_url.clone()),
        None => (env("BACKUP_ALERT_WEBHOOK_URL"), env("SLACK_WEBHOOK_URL")),
    };
    let mut out = Vec::new();
    if let Some(u) = webhook.filter(|u| !u.is_empty()) {
        out.push(Channel::Webhook(u));
    }
    if let Some(u) = slack.filter(|u| !u.is_empty()) {
        out.push(Channel::Slack(u));
    }
    out
}

/// How one channel's send ended.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub ok: bool,
    /// Attempts made (1 to 4).
    pub attempts: u32,
    pub error: Option<String>,
}

/// Send `event` to every channel at once; each reports how it went.
pub async fn send(channels: &[Channel], event: &Event) -> Vec<Delivery> {
    let sends = channels.iter().map(|c| async move {
        let body = match c {
            Channel::Webhook(_) => webhook::body(event),
            Channel::Slack(_) => slack::body(event),
        };
        let (ok, attempts, error) = http::post_json(c.url(), body).await;
        if let Some(e) = &error {
            tracing::warn!("alert {} to {}: {e}", event.kind.name(), c.shown());
        }
        Delivery {
            channel: c.shown(),
            ok,
            attempts,
            error,
        }
    });
    futures::future::join_all(sends).await
}
