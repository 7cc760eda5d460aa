//! `lifeboat backup`: take a consistent backup of one or more databases, and restore-test each
//! from the repository (`verify_after_backup`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::alerting::Alerter;
use crate::shared_args::choice;
use crate::{parse_duration, secs, Ctx};
use chrono::{DateTime, Utc};
use lifeboat::backup::unchanged::unchanged_since;
use lifeboat::backup::{prepare, store, BackupOptions, Stored};
use lifeboat::config::fleet::{Members, Refused};
use lifeboat::error::{Error, Kind, Result, ResultExt};
use lifeboat::repo::events::{Event as BackupEvent, LOG_TIMEOUT};
use lifeboat::repo::manifest::{human_size, BackupKind, Manifest};
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::runs::Run;
use lifeboat::source::Source;
use lifeboat::text::shell_word;
use lifeboat::verify::{after_backup, VerifyReport};
use lifeboat_daemon::alerts::EventKind;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat backup                                   # every database in lifeboat.toml
  lifeboat backup --db ./studio.db --repo file:///var/backups/lifeboat
  lifeboat backup --db studio-platform-db --kind emergency --label before-migration-42
  lifeboat backup --kind scheduled                  # skips databases unchanged since their newest good backup
  lifeboat backup --db tenants                      # every database the fleet `tenants` (a glob) finds now")]
pub struct Args {
    /// Database to back up: a configured or discovered name, a fleet's name (every database its
    /// glob finds) or a file path (repeatable; default: all of them).
    #[arg(long, value_name = "NAME|PATH")]
    db: Vec<String>,
    /// Why this backup is taken. A scheduled backup skips a database unchanged since its newest
    /// good backup (`skip_unchanged`, on by default) and records the skip; manual and emergency
    /// backups always back up.
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
    /// Do not restore-test the new backup from the repository (`[daemon] verify_after_backup`,
    /// on by default, does it right after the upload).
    #[arg(long)]
    no_verify: bool,
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

/// What one command backs up: the databases, and those refused before any work (a fleet's
/// clashing names, an unreadable glob).
struct Plan {
    sources: Vec<Source>,
    refused: Vec<Refused>,
}

fn plan(ctx: &Ctx, args: &Args) -> Result<Plan> {
    let members = match &args.from_sql {
        Some(file) => Members {
            sources: vec![dump_source(ctx, args, file)?],
            ..Members::default()
        },
        None if args.db.is_empty() => ctx.config.members(),
        None => {
            let mut all = Members::default();
            for flag in &args.db {
                let m = ctx.config.select(flag)?;
                all.sources.extend(m.sources);
                all.refused.extend(m.refused);
                all.skipped.extend(m.skipped);
            }
            all
        }
    };
    for w in &members.skipped {
        say_err!("lifeboat: warning: {w}");
    }
    let mut sources: Vec<Source> = Vec::new();
    for s in members.sources {
        // `--db a --db a`, or a fleet and one of its databases: one backup each.
        if !sources.contains(&s) {
            sources.push(s);
        }
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
    Ok(Plan {
        sources,
        refused: members.refused,
    })
}

async fn backup_all(
    ctx: &Ctx,
    args: &Args,
    alerter: &Alerter,
    told: &std::cell::Cell<bool>,
) -> Result<i32> {
    let Plan { sources, refused } = plan(ctx, args)?;
    if sources.is_empty() && refused.is_empty() {
        if ctx.config.has_fleets() && args.from_sql.is_none() {
            // A fleet may be empty (no tenant yet): nothing to do is not a failure.
            ctx.out
                .line("no databases: the globs in lifeboat.toml find none; nothing to back up");
            ctx.out
                .json(&serde_json::json!({ "backups": [], "skipped": [] }));
            return Ok(0);
        }
        return Err(Error::new(
            Kind::Config,
            "no database given: pass --db NAME|PATH or declare [[database]] in lifeboat.toml",
        ));
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
    let total = sources.len() + refused.len();
    // One database's failure does not stop the others: each is tried, told and counted.
    let mut failures: Vec<Error> = Vec::new();
    let fail = |e: Error, failures: &mut Vec<Error>| {
        if total > 1 {
            say_err!("lifeboat: error: {e}");
        }
        failures.push(e);
        told.set(true);
    };
    for r in refused {
        log_failure(ctx, &r.name, &r.error).await;
        alerter
            .tell_failure(EventKind::BackupFailed, &r.name, &r.error)
            .await;
        fail(r.error, &mut failures);
    }
    // Every source is checked (a dump loaded) before the repository is touched, so bad input
    // changes nothing. A fleet's database that fails its check is that database's failure
    // only: tenants come and go, and one locked or half-written file must not stop the rest.
    let mut prepared = Vec::new();
    for source in &sources {
        match prepare(source, &opts).await {
            Ok(p) => prepared.push((source, p)),
            Err(e) if source.fleet.is_some() && total > 1 => {
                log_failure(ctx, &source.name, &e).await;
                alerter
                    .tell_failure(EventKind::BackupFailed, &source.name, &e)
                    .await;
                fail(e, &mut failures);
            }
            // The alert names the database that could not be read, not the run.
            Err(e) => {
                log_failure(ctx, &source.name, &e).await;
                alerter
                    .tell_failure(EventKind::BackupFailed, &source.name, &e)
                    .await;
                told.set(true);
                return Err(e);
            }
        }
    }
    let repo = ctx.repository(true).step("backup")?;
    let verify = ctx.config.daemon.verify_after_backup() && !args.no_verify;
    let mut verified: HashMap<String, VerifyReport> = HashMap::new();
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    for (source, p) in &prepared {
        if may_skip(ctx, &opts, source) {
            match unchanged_since(&repo, source).await {
                Ok(Some(m)) => {
                    let run = Run::skipped(m.id.clone());
                    match repo.record_run(&source.name, &run).await {
                        Ok(()) => {
                            skipped.push((m, run.at));
                            continue;
                        }
                        Err(e) => {
                            let e = e.context(format!(
                                "{}: unchanged since {}, but the skip could not be recorded",
                                source.name, m.id
                            ));
                            log_failure(ctx, &source.name, &e).await;
                            alerter
                                .tell_failure(EventKind::BackupFailed, &source.name, &e)
                                .await;
                            fail(e, &mut failures);
                            continue;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => say_err!(
                    "lifeboat: warning: {}: could not tell whether it changed, so it is backed up: {e}",
                    source.name
                ),
            }
        }
        let pb = ctx.out.progress(p.name());
        let m = store(&repo, p, &opts, shrink_alert, &crate::bar(&pb)).await;
        pb.finish_and_clear();
        // A stored backup records its run in the repository, for `status` on any machine. A
        // failed one records no run (a failed command changes no state): it reaches the
        // operator by its exit code and the alerts, and the incident timeline by the event log.
        let mut bad = None;
        if let (Ok(stored), true) = (&m, verify) {
            let v = after_backup(&repo, &stored.manifest, args.scratch_dir.as_deref()).await;
            if v.damaged() {
                alerter
                    .tell(&lifeboat_daemon::alerts::verify_failed(
                        &stored.manifest,
                        &v,
                    ))
                    .await;
                told.set(true);
                bad = Some(Error::new(
                    Kind::Corrupt,
                    format!(
                        "{}: backup {} was stored but failed its restore-test, so it does not count as good: {}",
                        p.name(),
                        stored.manifest.id,
                        v.problem.as_deref().unwrap_or("?")
                    ),
                ));
            }
            verified.insert(stored.manifest.id.clone(), v);
        }
        if let Ok(stored) = &m {
            let run = match &bad {
                Some(e) => Run::failed(e.to_string()),
                None => Run::stored(stored.manifest.id.clone()),
            };
            if let Err(e) = repo.record_run(p.name(), &run).await {
                say_err!(
                    "lifeboat: warning: {}: the run could not be recorded for `status`: {e}",
                    p.name()
                );
            }
        }
        match m {
            Ok(stored) => {
                done.push(stored);
                if let Some(e) = bad {
                    log_failure(ctx, p.name(), &e).await;
                    fail(e, &mut failures);
                }
            }
            Err(e) => {
                log_failure(ctx, p.name(), &e).await;
                alerter
                    .tell_failure(EventKind::BackupFailed, p.name(), &e)
                    .await;
                fail(e, &mut failures);
            }
        }
    }
    if total == 1 {
        if let Some(only) = failures.pop() {
            return Err(only);
        }
    }
    let mirrored: HashSet<&str> = sources
        .iter()
        .filter(|s| s.sql_mirror)
        .map(|s| s.name.as_str())
        .collect();
    report(
        ctx,
        &done,
        &skipped,
        &mirrored,
        &repo.absolute_url(),
        &verified,
    );
    let on_success = ctx.config.alerts.as_ref().is_some_and(|a| a.on_success);
    for s in &done {
        if let Some(shrunk) = &s.shrinkage {
            alerter.shrunk(&s.manifest, shrunk).await;
        }
        if on_success {
            alerter
                .tell(&lifeboat_daemon::alerts::succeeded(&s.manifest))
                .await;
        }
    }
    let failed = failures.len();
    match failures.into_iter().next() {
        None => Ok(0),
        Some(first) => Err(Error::new(
            first.kind,
            format!("{failed} of {total} backups failed (the first: {first})"),
        )),
    }
}

/// A failed backup goes to the repository's event log: the run record keeps only the last
/// failure, an incident's timeline needs them all. Only for a database the repository already
/// holds: a mistyped path never creates a repository, nor a database in one. Best effort: the
/// failure is the command's outcome, not the log's.
async fn log_failure(ctx: &Ctx, db: &str, e: &Error) {
    let Ok(repo) = ctx.repository(false) else {
        return;
    };
    let known = tokio::time::timeout(LOG_TIMEOUT, repo.holds(db)).await;
    if matches!(known, Ok(Ok(true))) {
        repo.log_event_best_effort(db, &BackupEvent::backup_failed(db, e))
            .await;
    }
}

/// Whether this run may skip `source` when unchanged: scheduled backups only (manual and
/// emergency ones always back up), per the database's `skip_unchanged`, else `[daemon]`'s
/// (default on).
fn may_skip(ctx: &Ctx, opts: &BackupOptions, source: &Source) -> bool {
    opts.kind == BackupKind::Scheduled
        && source
            .skip_unchanged
            .unwrap_or_else(|| ctx.config.daemon.skip_unchanged())
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
    let sql_mirror = ctx.config.database(&name).is_ok_and(|d| d.sql_mirror);
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

fn report(
    ctx: &Ctx,
    done: &[Stored],
    skipped: &[(Manifest, DateTime<Utc>)],
    mirrored: &HashSet<&str>,
    repo_url: &str,
    verified: &HashMap<String, VerifyReport>,
) {
    let mut docs = Vec::new();
    for Stored {
        manifest: m,
        shrinkage,
        warnings,
    } in done
    {
        for w in warnings {
            say_err!("lifeboat: warning: {} {}: {w}", m.database, m.id);
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
        if let Some(v) = verified.get(&m.id) {
            let line = match (&v.problem, v.ok) {
                (_, true) => format!(
                    "  restore-tested from the repository: ok  {}",
                    secs(v.duration_ms)
                ),
                (Some(p), false) if v.damaged() => format!("  restore-test FAILED: {p}"),
                (p, false) => format!(
                    "  could not be restore-tested (the backup is stored): {}",
                    p.as_deref().unwrap_or("?")
                ),
            };
            ctx.out.line(line);
            for w in &v.warnings {
                say_err!("lifeboat: warning: {} {}: {w}", m.database, m.id);
            }
            doc["restore_test"] = serde_json::to_value(v).unwrap_or_default();
        }
        // The day's SQL mirror this backup wrote (after its manifest, which therefore does not
        // name it; the mirror's first line names the backup).
        if mirrored.contains(m.database.as_str()) {
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
            say_err!(
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
    let mut skips = Vec::new();
    for (m, at) in skipped {
        ctx.out
            .line(format!("{}  unchanged since {}, skipped", m.database, m.id));
        skips.push(serde_json::json!({
            "database": m.database,
            "unchanged_since": m.id,
            "backup_created_at": m.created_at,
            "checked_at": at,
        }));
    }
    ctx.out
        .json(&serde_json::json!({ "backups": docs, "skipped": skips }));
}
