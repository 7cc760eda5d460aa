//! `lifeboat backup`: take a consistent backup of one or more databases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::shared_args::choice;
use crate::{parse_duration, secs, Ctx};
use lifeboat::backup::{backup, backup_source, BackupOptions};
use lifeboat::error::{Error, Kind, Result, ResultExt};
use lifeboat::repo::manifest::{human_size, BackupKind, Manifest, SourceInfo};
use lifeboat::restore::to_file::IntegrityCheck;
use lifeboat::source::sql_dump::{load, open_dump, ImportOptions};
use lifeboat::source::Source;

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
    #[arg(long, value_parser = choice::<BackupKind>(BackupKind::CHOICES), default_value = "manual")]
    kind: BackupKind,
    /// Free text stored in the manifest.
    #[arg(long)]
    label: Option<String>,
    /// How long to wait for another process's lock on the database.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    lock_timeout: Duration,
    /// zstd level, 1–22 (default: the repository's compression_level, 1).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=22))]
    compression_level: Option<i32>,
    /// Directory for temporary files (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
    /// Store a SQL dump (sqlite3 .dump, wrangler d1 export, lifeboat dump; .gz/.zst) as a backup.
    #[arg(long, value_name = "FILE", conflicts_with = "db")]
    from_sql: Option<PathBuf>,
    /// With --from-sql: the database name to file it under (default: the file's stem).
    #[arg(long, value_name = "NAME", requires = "from_sql")]
    db_name: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    if let Some(file) = args.from_sql.clone() {
        return from_sql(ctx, args, &file).await;
    }
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
    let opts = options(ctx, &args);
    // Check every file source can be read (not missing, not SQLite, locked, hot journal)
    // before touching the repository, so bad input changes nothing.
    for db in dbs.iter().filter(|d| d.d1.is_none()) {
        lifeboat::source::sqlite::SqliteSource::new(&db.path)
            .open_read(args.lock_timeout)
            .step("backup")?;
    }
    let repo = ctx.repository(true).step("backup")?;
    let mut done = Vec::new();
    for db in &dbs {
        let pb = ctx.out.progress(&db.name);
        let m = backup_source(&repo, db, &opts, &crate::bar(&pb)).await;
        pb.finish_and_clear();
        done.push(m?);
    }
    report(ctx, &done);
    Ok(0)
}

/// `backup --from-sql`: load the dump into scratch space with the importer (which proves it
/// loads), then back that database up like any other.
async fn from_sql(ctx: &Ctx, args: Args, file: &Path) -> Result<i32> {
    let name = match &args.db_name {
        Some(n) => n.clone(),
        None => {
            let stem = file.file_name().and_then(|s| s.to_str()).unwrap_or("");
            stem.split('.').next().unwrap_or("").to_string()
        }
    };
    lifeboat::repo::repository::check_name(&name).map_err(|e| e.context("--db-name"))?;
    let sql_mirror = ctx
        .config
        .databases
        .iter()
        .any(|d| d.name == name && d.sql_mirror);
    let tmp = lifeboat::fs::scratch::scratch(args.scratch_dir.as_deref())?;
    let path = tmp.path().join("from-sql.sqlite");
    let (file_owned, path_owned) = (file.to_path_buf(), path.clone());
    tokio::task::spawn_blocking(move || {
        let reader = open_dump(&file_owned)?;
        let opts = ImportOptions {
            force: false,
            integrity: IntegrityCheck::Quick,
            foreign_key_check: true,
        };
        load(reader, &path_owned, &opts)
            .map_err(|e| e.context(format!("backup --from-sql {}", file_owned.display())))
    })
    .await
    .map_err(|e| Error::task("backup --from-sql", e))??;
    let opts = BackupOptions {
        source: Some(SourceInfo {
            kind: "sql-dump".into(),
            path: std::path::absolute(file)
                .unwrap_or_else(|_| file.to_path_buf())
                .display()
                .to_string(),
        }),
        ..options(ctx, &args)
    };
    let repo = ctx.repository(true).step("backup")?;
    let db = Source {
        name,
        path,
        sql_mirror,
        d1: None,
        wrangler: None,
    };
    let pb = ctx.out.progress(&db.name);
    let m = backup(&repo, &db, &opts, &crate::bar(&pb)).await;
    pb.finish_and_clear();
    report(ctx, &[m?]);
    Ok(0)
}

/// The options every backup command shares, from the flags and the config.
fn options(ctx: &Ctx, args: &Args) -> BackupOptions {
    BackupOptions {
        kind: args.kind,
        label: args.label.clone(),
        lock_timeout: args.lock_timeout,
        compression_level: args
            .compression_level
            .unwrap_or(ctx.config.repository.compression_level),
        scratch_dir: args.scratch_dir.clone(),
        ..BackupOptions::default()
    }
}

fn report(ctx: &Ctx, done: &[Manifest]) {
    let mut docs = Vec::new();
    for m in done {
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
        let mut doc = serde_json::to_value(m).unwrap_or_default();
        // The day's SQL mirror this backup wrote (after its manifest, which therefore does not
        // name it; the mirror's first line names the backup).
        let mirrored = ctx
            .config
            .all_databases()
            .iter()
            .any(|d| d.name == m.database && d.sql_mirror);
        if mirrored {
            let name = m.created_at.format("backup-%Y-%m-%d.sql").to_string();
            ctx.out
                .line(format!("  sql mirror: {}/backups/{name}", m.database));
            doc["sql_mirror"] = serde_json::Value::String(name);
        }
        docs.push(doc);
    }
    ctx.out.json(&serde_json::json!({ "backups": docs }));
}
