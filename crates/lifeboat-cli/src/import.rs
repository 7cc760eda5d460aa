//! `lifeboat import`: build a SQLite database from any SQL dump.

use std::path::PathBuf;

use crate::shared_args::choice;
use crate::{secs, Ctx};
use lifeboat::error::{Error, Result};
use lifeboat::restore::to_file::IntegrityCheck;
use lifeboat::source::sql_dump::{import_file, ImportOptions};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat import backup.sql --to studio.db                 # a sqlite3 .dump or a lifeboat dump
  lifeboat import d1-export.sql.gz --to studio.db           # wrangler d1 export, gzip'd
  lifeboat import dump.sql.zst --to studio.db --force       # move an existing studio.db aside

Accepts sqlite3 .dump output, wrangler d1 export output (both INSERT forms), lifeboat dumps;
plain, .gz or .zst. A lifeboat dump without its final `-- lifeboat dump complete` line is refused
as truncated. On any error nothing is left behind and the target is untouched.")]
pub struct Args {
    /// The dump to load.
    file: PathBuf,
    /// The database file to create.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Replace an existing file; the old one is moved to <PATH>.pre-import-<time>.
    #[arg(long)]
    force: bool,
    /// `quick` (PRAGMA quick_check) or `full` (PRAGMA integrity_check) after the load.
    #[arg(long, value_parser = choice::<IntegrityCheck>(IntegrityCheck::CHOICES), default_value = "quick")]
    integrity_check: IntegrityCheck,
    /// Load even when rows point at missing parent rows (foreign_key_check fails).
    #[arg(long)]
    no_fk_check: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    ctx.refuse_inside_repository(&args.to)?;
    let opts = ImportOptions {
        force: args.force,
        integrity: args.integrity_check,
        foreign_key_check: !args.no_fk_check,
    };
    let (file, to) = (args.file.clone(), args.to.clone());
    let stats = tokio::task::spawn_blocking(move || import_file(&file, &to, &opts))
        .await
        .map_err(|e| Error::task("import", e))??;
    if let Some(aside) = &stats.moved_aside {
        ctx.out.line(format!(
            "previous database moved aside to {}",
            aside.display()
        ));
    }
    ctx.out.line(format!(
        "imported {} into {}: {} statements ({} rows bound, {} executed as text)  {}",
        args.file.display(),
        args.to.display(),
        stats.statements,
        stats.rows_bound,
        stats.executed,
        secs(stats.duration_ms)
    ));
    ctx.out.json_of(&stats)?;
    Ok(0)
}
