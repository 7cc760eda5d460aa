//! `lifeboat backup`: take a consistent backup of one or more databases.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alerting::Alerter;
use crate::shared_args::choice;
use crate::{parse_duration, secs, Ctx};
use lifeboat::backup::{prepare, store, BackupOptions, Stored};
use lifeboat::error::{Error, Kind, Result, ResultExt};
use lifeboat::repo::manifest::{human_size, BackupKind};
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::runs::Run;
use lifeboat::source::Source;
use lifeboat::text::shell_word;
use lifeboat_daemon::alerts::EventKind;

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
    /// An emergency backup before something risky (a migration): `--kind emergency`, kept by
    /// `keep_emergency_within`; prints the command that restores it.
    #[arg(long, conflicts_with = "kind")]
    emergency: bool,
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
    /// Send no alert and no health ping for this run.
    #[arg(long)]
    no_alert: bool,
    /// With --from-sql: the database name to file it under (default: the file's stem).
    #[arg(long, value_name = "NAME", requires = "from_sql")]
    db_name: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let alerter = Alerter::new(ctx, args.no_alert);
    alerter.start().await;
    let told = std::cell::Cell::new(false);
    let result = backup_all(ctx, &args, &alerter, &told).await;
    match &result {
        Ok(_) => alerter.succeeded().await,
        // Failures of single databases were told as they happened.
        Err(e) if told.get() => alerter.fail_ping(e).await,
        Err(e) => {
            alerter
                .failed(EventKind::BackupFailed, "system_backup", e)
                .await
        }
    }
    result
}

async fn backup_all(
    ctx: &Ctx,
    args: &Args,
    alerter: &Alerter,
    told: &std::cell::Cell<bool>,
) -> Result<i32> {
    let sources = match &args.from_sql {
        Some(file) => vec![dump_source(ctx, args, file)?],
        None if args.db.is_empty() => ctx.config.all_databases(),
        None => args
            .db
            .iter()
            .map(|d| ctx.config.database(d))
            .collect::<Result<Vec<_>>>()?,
    };
    if sources.is_empty() {
        return Err(Error::new(
            Kind::Config,
            "no database given: pass --db NAME|PATH or declare [[database]] in lifeboat.toml",
        ));
    }
    for (i, a) in sources.iter().enumerate() {
        if let Some(b) = sources[..i].iter().find(|b| b.name == a.name && b != &a) {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "{} and {} would both be filed as database {:?}; declare them with names of their own in lifeboat.toml",
                    b.path.display(),
                    a.path.display(),
                    a.name
                ),
            ));
        }
    }
    let opts = options(ctx, args);
    if let Some(r) = &ctx.config.retention {
        r.check_shrink_alert()?;
    }
    let shrink_alert = ctx
        .config
        .retention
        .as_ref()
        .and_then(|r| r.shrink_alert)
        .unwrap_or(DEFAULT_SHRINK_ALERT);
    // Every source is checked (a dump loaded) before the repository is touched, so bad input
    // changes nothing.
    let mut prepared = Vec::new();
    for source in &sources {
        match prepare(source, &opts).await {
            Ok(p) => prepared.push(p),
            // The alert names the database that could not be read, not the run.
            Err(e) => {
                alerter
                    .tell_failure(EventKind::BackupFailed, &source.name, &e)
                    .await;
                told.set(true);
                return Err(e);
            }
        }
    }
    let repo = ctx.repository(true).step("backup")?;
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for p in &prepared {
        let pb = ctx.out.progress(p.name());
        let m = store(&repo, p, &opts, shrink_alert, &crate::bar(&pb)).await;
        pb.finish_and_clear();
        // A stored backup records its run in the repository, for `status` on any machine. A
        // failed one writes nothing (a failed command changes nothing): it reaches the operator
        // by its exit code and the alerts.
        if let Ok(stored) = &m {
            let run = Run {
                at: chrono::Utc::now(),
                ok: true,
                backup: Some(stored.manifest.id.clone()),
                error: None,
            };
            if let Err(e) = repo.record_run(p.name(), &run).await {
                eprintln!(
                    "lifeboat: warning: {}: the run could not be recorded for `status`: {e}",
                    p.name()
                );
            }
        }
        match m {
            Ok(stored) => done.push(stored),
            // One database's failure does not stop the others: each is tried and recorded.
            Err(e) => {
                alerter
                    .tell_failure(EventKind::BackupFailed, p.name(), &e)
                    .await;
                told.set(true);
                if prepared.len() == 1 {
                    return Err(e);
                }
                eprintln!("lifeboat: error: {e}");
                failures.push(e);
            }
        }
    }
    report(ctx, &done, &repo.absolute_url());
    for s in &done {
        if let Some(shrunk) = &s.shrinkage {
            alerter.shrunk(&s.manifest, shrunk).await;
        }
    }
    match failures.into_iter().next() {
        None => Ok(0),
        Some(first) => Err(Error::new(
            first.kind,
            format!(
                "{} of {} backups failed (the first: {first})",
                prepared.len() - done.len(),
                prepared.len()
            ),
        )),
    }
}

/// `backup --from-sql FILE`: the dump as a source, filed under `--db-name` or the file's stem.
fn dump_source(ctx: &Ctx, args: &Args, file: &Path) -> Result<Source> {
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
    Ok(Source {
        name,
        sql_mirror,
        sql_dump: Some(file.to_path_buf()),
        ..Source::default()
    })
}

/// The options every backup command shares, from the flags and the config.
fn options(ctx: &Ctx, args: &Args) -> BackupOptions {
    BackupOptions {
        kind: if args.emergency {
            BackupKind::Emergency
        } else {
            args.kind
        },
        label: args.label.clone(),
        lock_timeout: args.lock_timeout,
        compression_level: args
            .compression_level
            .unwrap_or(ctx.config.repository.compression_level),
        scratch_dir: args.scratch_dir.clone(),
        ..BackupOptions::default()
    }
}

fn report(ctx: &Ctx, done: &[Stored], repo_url: &str) {
    let mut docs = Vec::new();
    for Stored {
        manifest: m,
        shrinkage,
        warnings,
    } in done
    {
        for w in warnings {
            eprintln!("lifeboat: warning: {} {}: {w}", m.database, m.id);
        }
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
        if let Some(s) = shrinkage {
            let what: Vec<String> = s
                .tables
                .iter()
                .map(|(t, a, b)| format!("{} {a} -> {b}", lifeboat::text::escape(t)))
                .collect();
            // A warning whatever the output mode: it is what the operator must see.
            eprintln!(
                "lifeboat: warning: {} {}: rows dropped by more than the shrink_alert since {}: {}; {} is held from pruning until `lifeboat release {}` (or hold_within)",
                m.database,
                m.id,
                s.held,
                what.join(", "),
                s.held,
                s.held
            );
            doc["shrinkage"] = serde_json::to_value(s).unwrap_or_default();
        }
        if m.kind == BackupKind::Emergency {
            // Scenario 3's way back, should the migration go wrong.
            let target = match &m.d1 {
                Some(d1) => format!(
                    "--to-d1 {} {} --force",
                    shell_word(&d1.database),
                    if d1.remote { "--remote" } else { "--local" }
                ),
                None => format!("--to {} --force", shell_word(&m.source.path)),
            };
            let command = format!(
                "lifeboat restore --repo {} --db {} --backup {} {target}",
                shell_word(repo_url),
                shell_word(&m.database),
                m.id
            );
            ctx.out.line(format!("  to restore it: {command}"));
            doc["restore_command"] = command.into();
        }
        docs.push(doc);
    }
    ctx.out.json(&serde_json::json!({ "backups": docs }));
}
