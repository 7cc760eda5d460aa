//! `lifeboat alert test`: a test message on every configured channel (and the health ping), each
//! result printed; exit 1 if any channel failed.

use lifeboat::error::{Error, Kind, Result};
use lifeboat_daemon::alerts::{channels, send, Event, EventKind, Ping};

use crate::Ctx;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Channels: [alerts] webhook_url, slack_webhook_url, email_to with smtp_url, ping_url in
lifeboat.toml; without [alerts], the runbook's BACKUP_ALERT_WEBHOOK_URL, SLACK_WEBHOOK_URL and
PLATFORM_ADMIN_EMAIL with SMTP_URL (SMTP_USERNAME, SMTP_PASSWORD, SMTP_FROM). Only hosts are shown."
)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Send a test message on every configured channel.
    Test,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let Sub::Test = args.command;
    let cfg = ctx.config.alerts.as_ref();
    let chans = channels(cfg, |k| std::env::var(k).ok());
    let ping = cfg.and_then(|c| c.ping_url.as_deref()).map(Ping::new);
    if chans.is_empty() && ping.is_none() {
        return Err(Error::new(
            Kind::Config,
            "alert test: no channel configured ([alerts] in lifeboat.toml, or BACKUP_ALERT_WEBHOOK_URL / SLACK_WEBHOOK_URL / PLATFORM_ADMIN_EMAIL with SMTP_URL)",
        ));
    }
    let event = Event {
        kind: EventKind::Test,
        source: "system_backup".into(),
        message: "lifeboat alert test: if you read this, alerts reach you".into(),
        at: chrono::Utc::now(),
        details: serde_json::Value::Null,
    };
    let mut results = Vec::new();
    for d in send(&chans, &event).await {
        results.push((d.channel, d.ok, d.error));
    }
    if let Some(p) = &ping {
        let ok = p.success().await;
        results.push((
            format!("ping ({})", p.shown()),
            ok,
            (!ok).then(|| "failed".to_string()),
        ));
    }
    let mut failed = 0;
    for (channel, ok, error) in &results {
        ctx.out.line(format!(
            "{:<4} {channel}{}",
            if *ok { "ok" } else { "FAIL" },
            error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        failed += usize::from(!ok);
    }
    ctx.out.json(&serde_json::json!({
        "channels": results.iter().map(|(c, ok, e)| serde_json::json!({"channel": c, "ok": ok, "error": e})).collect::<Vec<_>>(),
    }));
    Ok(if failed > 0 { 1 } else { 0 })
}
