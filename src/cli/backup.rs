//! `lifeboat backup`: take a consistent backup of one or more databases.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{parse_duration, secs, Ctx};
use crate::error::{Error, Kind, Result, ResultExt};
use crate::manifest::{human_size, BackupKind};
use crate::snapshot::{backup, BackupOptions};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat backup                                   # every database in lifeboat.toml
  lifeboat backup --db ./studio.db --repo file:///var/backups/lifeboat
  lifeboat backup --db studio-platform-db --kind emergency --label before-migration-42")]
pub struct Args {
    /// Database to back up: a configured name or a file path (repeatable; default: all configured).
    #[arg(long, value_name = "NAME|PATH")]
    db: Vec<String>,
    /// Why this backup is taken.
    #[arg(long, value_enum, default_value_t = BackupKind::Manual)]
    kind: BackupKind,
    /// Free text stored in the manifest.
    #[arg(long)]
    label: Option<String>,
    /// How long to wait for another process's lock on the database.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    lock_timeout: Duration,
    /// zstd level (default: the repository's compression_level, 3).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: Option<i32>,
    /// Directory for the temporary image (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let dbs = if args.db.is_empty() {
        ctx.config.all_databases()
    } else {
        args.db
            .iter()
            .map(|d| ctx.config.database(d))
            .collect::<Result<Vec<_>>>()?
    };
    if dbs.is_empty() {
        return Err(Error::new(
            Kind::Config,
            "no database given: pass --db NAME|PATH or declare [[database]] in lifeboat.toml",
        ));
    }
    let opts = BackupOptions {
        kind: args.kind,
        label: args.label,
        lock_timeout: args.lock_timeout,
        compression_level: args
            .compression_level
            .unwrap_or(ctx.config.repository.compression_level),
        scratch_dir: args.scratch_dir,
    };
    // Check every source before touching the repository, so bad input changes nothing.
    for db in &dbs {
        crate::source::SqliteSource::new(&db.path)
            .check()
            .step("backup")?;
    }
    let repo = ctx.repository(true).step("backup")?;
    let mut done = Vec::new();
    for db in &dbs {
        let pb = ctx.out.progress(&db.name);
        let m = backup(&repo, db, &opts, &pb).await;
        pb.finish_and_clear();
        let m = m?;
        ctx.out.line(format!(
            "{}  {}  {} -> {} ({:.1}x)  {} tables  {} rows  {}",
            m.database,
            m.id,
            human_size(m.image_size),
            human_size(m.stored_size),
            m.ratio(),
            m.tables.len(),
            m.total_rows(),
            secs(m.duration_ms)
        ));
        done.push(m);
    }
    ctx.out.json(&serde_json::json!({ "backups": done }));
    Ok(0)
}
