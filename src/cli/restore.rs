//! `lifeboat restore`: restore a whole database from a backup into a file.

use std::path::PathBuf;

use crate::cli::{secs, single_database_name, Ctx};
use crate::error::{Result, ResultExt};
use crate::manifest::human_size;
use crate::restore::{parse_time, restore, select, IntegrityCheck, RestoreOptions, Selector};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat restore --db ./studio.db --to ./restored.db
  lifeboat restore --db studio-platform-db --backup backup-2026-11-20T020000Z --to ./studio.db --force
  lifeboat restore --db studio-platform-db --at 2026-11-20T03:00Z --to ./before-incident.db")]
pub struct Args {
    /// Database whose backup to restore (a configured name or a file path; default: the only
    /// configured database, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Backup id, or `latest`.
    #[arg(
        long,
        value_name = "ID|latest",
        default_value = "latest",
        conflicts_with = "at"
    )]
    backup: String,
    /// Use the newest backup taken at or before this UTC time (e.g. 2026-11-20T03:00Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// File to restore into.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Replace an existing file; the old one (and its -wal/-shm) is moved to <PATH>.pre-restore-<time>.
    #[arg(long)]
    force: bool,
    /// `quick` (PRAGMA quick_check) or `full` (PRAGMA integrity_check, slow on large databases).
    #[arg(long, value_enum, default_value_t = IntegrityCheck::Quick)]
    integrity_check: IntegrityCheck,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let sel = match &args.at {
        Some(t) => Selector::At(parse_time(t)?),
        None => Selector::Id(args.backup.clone()),
    };
    let repo = ctx.repository(false).step("restore")?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    let m = select(&repo, &db, &sel).await.step("restore")?;
    let opts = RestoreOptions {
        force: args.force,
        integrity: args.integrity_check,
    };
    let pb = ctx.out.progress(&m.id);
    let report = restore(&repo, &m, &args.to, &opts, &pb).await;
    pb.finish_and_clear();
    let report = report.step("restore")?;
    if let Some(aside) = &report.moved_aside {
        ctx.out.line(format!(
            "previous database moved aside to {}",
            aside.display()
        ));
    }
    ctx.out.line(format!(
        "restored {} {} to {}  {}  {} tables  {} rows  checked ({:?})  {}",
        m.database,
        m.id,
        report.target.display(),
        human_size(report.image_size),
        report.tables,
        report.rows,
        args.integrity_check,
        secs(report.duration_ms)
    ));
    ctx.out
        .json(&serde_json::to_value(&report).map_err(crate::cli::internal)?);
    Ok(0)
}
