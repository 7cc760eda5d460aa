//! `lifeboat prune`: apply the `[retention]` policy of lifeboat.toml; every backup is listed with
//! KEEP or DELETE and the rules that decided it; before them, `[replication] pitr_within` applied
//! to the database's replicated generations (a kept generation's snapshot is never deleted).

use crate::alerting::Alerter;
use crate::{database_names, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::replicate::retain::{prune_generations, GenerationPrune};
use lifeboat::repo::prune::prune_dropping;
use lifeboat::text::escape;
use lifeboat_daemon::alerts::EventKind;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat prune --dry-run
  lifeboat prune --db studio-platform-db --json

The policy is `[retention]` in lifeboat.toml (restic's rules; buckets in UTC, weeks Monday to Sunday):
  keep_within = \"90d\"   keep_last = 7   keep_daily = 7   keep_weekly = 4   keep_monthly = 12
  keep_hourly, keep_yearly, keep_emergency_within = \"30d\", min_keep = 3
  shrink_alert = 0.5, hold_within = \"30d\" (the shrinkage hold)
Never deleted: the newest good backup, the min_keep newest, backups dated in the future, pinned and
held ones (`lifeboat pin`, `lifeboat release`), backups this lifeboat cannot read. Safety backups
(taken by restores) follow keep_emergency_within only. A day's SQL mirror goes with its day.

Replicated data: `[replication] pitr_within` (default 7d). A generation whose whole window ended
before now - pitr_within goes (its record and segments, then its snapshot unless [retention] keeps
it); the generation reaching back to that boundary, every later one and the newest are kept. The
snapshot of a kept generation is never deleted. Then the generations kept are compacted as
`lifeboat compact` does.")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Say what would be deleted; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Send no alert if the prune fails.
    #[arg(long)]
    no_alert: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let result = prune_all(ctx, &args).await;
    if let Err(e) = &result {
        Alerter::new(ctx, args.no_alert)
            .failed(EventKind::PruneFailed, "system_backup", e)
            .await;
    }
    result
}

async fn prune_all(ctx: &Ctx, args: &Args) -> Result<i32> {
    let Some(policy) = ctx.config.retention.clone() else {
        return Err(Error::new(
            Kind::Config,
            "prune: no [retention] policy in lifeboat.toml (see `lifeboat prune --help`)",
        ));
    };
    policy.check()?;
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    let mut docs = Vec::new();
    let mut generations = Vec::new();
    let mut compacted = Vec::new();
    let pitr_within = ctx.config.replication.pitr_within();
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for name in names {
        let now = chrono::Utc::now();
        let gens = prune_generations(&repo, &name, pitr_within, args.dry_run, now)
            .await
            .map_err(|e| e.context(format!("prune {name}: replicated generations")))?;
        show_generations(ctx, &gens, verb);
        let report = prune_dropping(&repo, &name, &policy, args.dry_run, now, &gens.dropping())
            .await
            .map_err(|e| e.context(format!("prune {name}")))?;
        if !gens.decisions.is_empty() {
            generations.push(gens);
            compacted
                .push(crate::compact::compact_one(ctx, &repo, &name, args.dry_run, None).await?);
        }
        let to_delete = report.decisions.iter().filter(|d| !d.keep).count();
        ctx.out.line(format!(
            "{name}: {} backup(s), keep {}, {verb} {to_delete}",
            report.decisions.len(),
            report.decisions.len() - to_delete
        ));
        for d in &report.decisions {
            ctx.out.line(format!(
                "  {:<6} {:<28} {:<9} {}",
                if d.keep { "KEEP" } else { "DELETE" },
                d.id,
                d.kind.map_or("damaged".to_string(), |k| k.to_string()),
                escape(&d.reasons.join(", "))
            ));
        }
        for name in &report.mirrors {
            ctx.out.line(format!(
                "  {verb} the day mirror {name} (no backup of its day is kept)"
            ));
        }
        docs.push(report);
    }
    ctx.out
        .json_of(&serde_json::json!({ "databases": docs, "generations": generations, "compacted": compacted }))?;
    Ok(0)
}

/// The generations' decisions, when the database is replicated.
fn show_generations(ctx: &Ctx, g: &GenerationPrune, verb: &str) {
    if g.decisions.is_empty() {
        return;
    }
    let gone = g.decisions.iter().filter(|d| !d.keep).count();
    ctx.out.line(format!(
        "{}: {} replicated generation(s), keep {}, {verb} {gone} (pitr_within: restores reach back to {})",
        g.database,
        g.decisions.len(),
        g.decisions.len() - gone,
        g.boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    ));
    let t = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("-".to_string(), |t| {
            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
    };
    for d in &g.decisions {
        ctx.out.line(format!(
            "  {:<6} {:<32} {} .. {}  {}",
            if d.keep { "KEEP" } else { "DELETE" },
            d.id,
            t(d.from),
            t(d.to),
            escape(&d.reason)
        ));
    }
}
