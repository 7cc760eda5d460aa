//! Alerts: what went wrong (or right again), told to every configured channel at once. Each
//! channel is one file behind [`Channel`]; a send has a 10 s timeout and 3 retries with backoff
//! (`retry`), and a dead channel never blocks another. Channel URLs and SMTP credentials are
//! secrets: only their host is ever shown.

mod email;
mod facts;
mod http;
mod ping;
mod retry;
mod slack;
mod webhook;

use chrono::{DateTime, Utc};
pub use lifeboat::config::AlertsConfig;

pub use email::{Email, EmailSettings};
pub use ping::Ping;
pub use retry::timeout;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    BackupFailed,
    BackupStale,
    BackupShrunk,
    BackupRecovered,
    BackupSucceeded,
    PruneFailed,
    VerifyFailed,
    DrillFailed,
    DrillRtoBreached,
    ReplicationStalled,
    ReplicationRecovered,
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
            EventKind::VerifyFailed => "verify.failed",
            EventKind::DrillFailed => "drill.failed",
            EventKind::DrillRtoBreached => "drill.rto_breached",
            EventKind::ReplicationStalled => "replication.stalled",
            EventKind::ReplicationRecovered => "replication.recovered",
            EventKind::Test => "alert.test",
        }
    }

    /// The event in words, for a subject line.
    pub fn title(self) -> &'static str {
        match self {
            EventKind::BackupFailed => "backup failed",
            EventKind::BackupStale => "backup stale",
            EventKind::BackupShrunk => "backup shrank",
            EventKind::BackupRecovered => "backup recovered",
            EventKind::BackupSucceeded => "backup succeeded",
            EventKind::PruneFailed => "prune failed",
            EventKind::VerifyFailed => "backup failed verification",
            EventKind::DrillFailed => "DR drill failed",
            EventKind::DrillRtoBreached => "DR drill breached the RTO",
            EventKind::ReplicationStalled => "replication stalled",
            EventKind::ReplicationRecovered => "replication recovered",
            EventKind::Test => "test alert",
        }
    }

    /// A problem that stays open until the source is good again (`backup.recovered`).
    pub fn is_problem(self) -> bool {
        matches!(
            self,
            EventKind::BackupFailed
                | EventKind::BackupStale
                | EventKind::VerifyFailed
                | EventKind::ReplicationStalled
        )
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
    /// More facts, under `details` in the webhook's JSON. `last_good` (the newest good backup's
    /// id, or null when there is none) and `last_good_at` (RFC 3339) are shown by email and
    /// Slack; without `last_good` they say "unknown".
    pub details: serde_json::Value,
}

/// `backup.shrunk`: backup `m` lost rows past `shrink_alert`, and the backup before is held.
pub fn shrunk(m: &lifeboat::repo::Manifest, s: &lifeboat::backup::shrinkage::Shrinkage) -> Event {
    let tables: Vec<String> = s
        .tables
        .iter()
        .map(|(t, a, b)| format!("{t} {a} -> {b}"))
        .collect();
    Event {
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
        details: serde_json::json!({
            "backup": m.id,
            "held": s.held,
            "tables": s.tables,
            "last_good": m.id,
            "last_good_at": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }),
    }
}

/// `verify.failed`: backup `m` was checked and found bad (it no longer counts as good).
pub fn verify_failed(m: &lifeboat::repo::Manifest, r: &lifeboat::verify::VerifyReport) -> Event {
    Event {
        kind: EventKind::VerifyFailed,
        source: m.database.clone(),
        message: format!(
            "backup {} failed its {}: {}; it does not count as a good backup",
            m.id,
            r.rung,
            r.problem.as_deref().unwrap_or("?")
        ),
        at: chrono::Utc::now(),
        details: serde_json::json!({
            "backup": m.id,
            "check": r.rung.to_string(),
            "kind": r.problem_kind.map(|k| k.name()),
        }),
    }
}

/// `backup.succeeded` for a stored backup (sent only with `[alerts] on_success = true`).
pub fn succeeded(m: &lifeboat::repo::Manifest) -> Event {
    Event {
        kind: EventKind::BackupSucceeded,
        source: m.database.clone(),
        message: format!(
            "backup {} stored: {} tables, {} rows, {} bytes",
            m.id,
            m.tables.len(),
            m.total_rows(),
            m.stored_size
        ),
        at: chrono::Utc::now(),
        details: serde_json::json!({
            "backup": m.id,
            "kind": m.kind.to_string(),
            "stored_bytes": m.stored_size,
            "last_good": m.id,
            "last_good_at": m.created_at.to_rfc3339(),
        }),
    }
}

/// Where alerts go. Its `Debug` shows what [`Channel::shown`] does: never a secret.
#[derive(Clone)]
pub enum Channel {
    Webhook(String),
    Slack(String),
    Email(Email),
}

impl Channel {
    pub fn name(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Slack(_) => "slack",
            Channel::Email(_) => "email",
        }
    }

    /// The channel as it may be shown: its kind and host, never the URL (it is the secret).
    pub fn shown(&self) -> String {
        let host = match self {
            Channel::Webhook(u) | Channel::Slack(u) => host_of(u),
            Channel::Email(e) => e.host().to_string(),
        };
        format!("{} ({host})", self.name())
    }

    /// What is wrong with the channel's settings, if anything: it cannot send until fixed.
    pub fn problem(&self) -> Option<String> {
        match self {
            Channel::Webhook(u) | Channel::Slack(u) => {
                let web = url::Url::parse(u)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                let key = match self {
                    Channel::Webhook(_) => "the webhook URL",
                    _ => "the Slack webhook URL",
                };
                (!web).then(|| format!("{}: {key} is not an http(s) URL", self.name()))
            }
            Channel::Email(e) => e.problem().map(str::to_string),
        }
    }
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// The host of a URL, or `?`: all of a webhook URL that may be shown.
pub fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// The alert channels `cfg` (or, without it, the runbook's environment variables) switches on:
/// `BACKUP_ALERT_WEBHOOK_URL`, `SLACK_WEBHOOK_URL`, and `PLATFORM_ADMIN_EMAIL` with `SMTP_URL`
/// (and `SMTP_USERNAME`, `SMTP_PASSWORD`, `SMTP_FROM`). A channel set up wrong is still listed:
/// its [`Channel::problem`] says why it cannot send.
pub fn channels(cfg: Option<&AlertsConfig>, env: impl Fn(&str) -> Option<String>) -> Vec<Channel> {
    let (webhook, slack, email) = match cfg {
        Some(c) => (
            c.webhook_url.clone(),
            c.slack_webhook_url.clone(),
            EmailSettings {
                to: c.email_to.clone(),
                smtp_url: c.smtp_url.clone(),
                from: c.email_from.clone(),
                username: c.smtp_username.clone(),
                password: c.smtp_password.clone(),
                from_env: false,
            },
        ),
        None => (
            env("BACKUP_ALERT_WEBHOOK_URL"),
            env("SLACK_WEBHOOK_URL"),
            EmailSettings {
                to: env("PLATFORM_ADMIN_EMAIL"),
                smtp_url: env("SMTP_URL"),
                from: env("SMTP_FROM"),
                username: env("SMTP_USERNAME"),
                password: env("SMTP_PASSWORD"),
                from_env: true,
            },
        ),
    };
    let mut out = Vec::new();
    if let Some(u) = webhook.filter(|u| !u.is_empty()) {
        out.push(Channel::Webhook(u));
    }
    if let Some(u) = slack.filter(|u| !u.is_empty()) {
        out.push(Channel::Slack(u));
    }
    if let Some(e) = Email::new(&email) {
        out.push(Channel::Email(e));
    }
    out
}

/// How one channel's send ended.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub ok: bool,
    /// Attempts made: 1 to 4, or 0 when the settings are wrong ([`Channel::problem`]).
    pub attempts: u32,
    pub error: Option<String>,
}

/// The `alert.sent` record of `event` for the repository's event log: the alert's event name,
/// and per channel its kind, host and whether it was delivered (never a URL or a password).
/// None for an alert about no one database (`system_backup`).
pub fn sent_record(
    event: &Event,
    deliveries: &[Delivery],
) -> Option<lifeboat::repo::events::Event> {
    if deliveries.is_empty() || event.source == "system_backup" {
        return None;
    }
    let channels: Vec<serde_json::Value> = deliveries
        .iter()
        .map(|d| {
            // `shown()` is `kind (host)`.
            let (kind, host) = d.channel.split_once(' ').unwrap_or((&d.channel, ""));
            serde_json::json!({
                "channel": kind,
                "host": host.trim_matches(|c| c == '(' || c == ')'),
                "delivered": d.ok,
                "attempts": d.attempts,
            })
        })
        .collect();
    let told: Vec<String> = deliveries
        .iter()
        .map(|d| {
            let how = if d.ok { "delivered" } else { "not delivered" };
            format!("{} {how}", d.channel)
        })
        .collect();
    let summary = format!(
        "alert {} sent: {}: {}",
        event.kind.name(),
        told.join(", "),
        event.message
    );
    let mut record = lifeboat::repo::events::Event::new(
        lifeboat::repo::events::ALERT_SENT,
        &event.source,
        &summary,
    )
    .with_details(serde_json::json!({
        "event": event.kind.name(),
        "channels": channels,
        "delivered": deliveries.iter().all(|d| d.ok),
    }));
    if let Some(id) = event.details.get("backup").and_then(|b| b.as_str()) {
        record = record.with_backup(id);
    }
    Some(record)
}

/// Send `event` to every channel at once; each reports how it went.
pub async fn send(channels: &[Channel], event: &Event) -> Vec<Delivery> {
    let sends = channels.iter().map(|c| async move {
        let (ok, attempts, error) = match (c, c.problem()) {
            (_, Some(problem)) => (false, 0, Some(problem)),
            (Channel::Webhook(u), None) => http::post_json(u, webhook::body(event)).await,
            (Channel::Slack(u), None) => http::post_json(u, slack::body(event)).await,
            (Channel::Email(e), None) => e.send(event).await,
        };
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
