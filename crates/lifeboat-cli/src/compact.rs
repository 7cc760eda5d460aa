//! `lifeboat compact`: merge each replicated database's segments into the compacted windows of
//! `[replication] compact_windows` as they close, and delete shipped segments older than
//! `pitr_fine_within` once compacted. `lifeboat prune` runs the same after its own work.

use std::path::PathBuf;

use crate::{database_names, Ctx};
use lifeboat::error::Result;
use lifeboat::replicate::compact::{compact, CompactOptions, CompactReport};
use lifeboat::repo::Repository;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat compact --dry-run
  lifeboat compact --db shop --json

Windows close by commit time, UTC-aligned ([replication] compact_windows, default [\"1m\", \"1h\"]):
a restore reads the widest compacted segments that fit, then the shipped ones. Shipped segments
stay while younger than pitr_fine_within (default 24h: every commit a restore point); older
ones go once compacted, and the older points are the compacted windows' ends. Safe beside a
running replicator, and run twice at once.")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Say what would be written and deleted; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Directory for the merge's scratch file (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    let mut docs = Vec::new();
    for name in names {
        let r = compact_one(ctx, &repo, &name, args.dry_run, args.scratch_dir.clone()).await?;
        docs.push(r);
    }
    ctx.out.json_of(&serde_json::json!({ "databases": docs }))?;
    Ok(0)
}

/// Compact one database and say what was done (nothing for one that is not replicated).
pub async fn compact_one(
    ctx: &Ctx,
    repo: &Repository,
    name: &str,
    dry_run: bool,
    scratch_dir: Option<PathBuf>,
) -> Result<CompactReport> {
    let cfg = &ctx.config.replication;
    let opts = CompactOptions {
        windows: cfg.compact_windows()?,
        fine_within: cfg.pitr_fine_within(),
        dry_run,
        scratch_dir,
    };
    let r = compact(repo, name, &opts, chrono::Utc::now())
        .await
        .map_err(|e| e.context(format!("compact {name}")))?;
    if !r.written.is_empty() || r.deleted > 0 {
        let (w, d) = match dry_run {
            true => ("would write", "would delete"),
            false => ("wrote", "deleted"),
        };
        ctx.out.line(format!(
            "{name}: {w} {} compacted segment(s) from {} segment(s); {d} {} shipped segment(s) older than pitr_fine_within",
            r.written.len(),
            r.merged,
            r.deleted
        ));
    }
    Ok(r)
}
