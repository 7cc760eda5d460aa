//! `lifeboat verify`: the catalogue's findings across a window (gaps, schema drift, shrinkage,
//! damage), then the harder rungs on the backups chosen: restore-tests (the latest, a sample,
//! a window, every one, or ids given) or a rolling read of every byte.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use crate::{database_names, parse_duration, secs, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::listing::Listing;
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::{Manifest, Repository};
use lifeboat::restore::to_file::{select, Selector};
use lifeboat::schedule::Schedule;
use lifeboat::verify::choose::{groups, in_groups, sample, Cursor, Subset};
use lifeboat::verify::findings::{findings, Finding, Severity, Window};
use lifeboat::verify::{read, record, record_catalogue, restore_test, VerifyReport};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat verify                       # last 30 days' findings, restore-test the latest backup
  lifeboat verify --sample 3            # ... and restore-test 3 (the newest, then untested ones)
  lifeboat verify --read-subset 1/30    # read a different thirtieth of all backups each run
  lifeboat verify --all --json          # the whole history, every backup restore-tested
  lifeboat verify backup-2026-11-20T020000Z --db studio-platform-db

Exit codes: 0 clean, 1 warnings only (schema drift, shrinkage, foreign keys), 6 damage or a gap,
4/8/9 when the repository or the scratch disk kept a check from running (never 6).")]
pub struct Args {
    /// Backup ids, or `latest`: restore-test just these (no window findings).
    #[arg(value_name = "ID|latest", conflicts_with_all = ["all", "since", "sample", "read_subset"])]
    backups: Vec<String>,
    /// The whole history: findings over all of it, every backup restore-tested.
    #[arg(long, conflicts_with = "since")]
    all: bool,
    /// The window for findings (default 30d); alone, also restore-test every backup in it.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    since: Option<Duration>,
    /// Restore-test N backups of the window: the newest, then never-tested ones.
    #[arg(long, value_name = "N", conflicts_with = "all")]
    sample: Option<usize>,
    /// Read every byte of the next n t-ths of all backups (rolling; the cursor is kept in the
    /// repository), instead of restore-testing.
    #[arg(long, value_name = "n/t", conflicts_with_all = ["all", "sample"])]
    read_subset: Option<Subset>,
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Directory for the temporary images (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

/// What one database's verify found.
#[derive(serde::Serialize)]
struct DbResult {
    database: String,
    findings: Vec<Finding>,
}

const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    let now = Utc::now();
    let mut reports: Vec<VerifyReport> = Vec::new();
    let mut results: Vec<DbResult> = Vec::new();
    for name in &names {
        let mut found = Vec::new();
        let chosen: Vec<Manifest> = if args.backups.is_empty() {
            let listing = repo.list(name).await?;
            record_catalogue(&repo, name, &listing).await?;
            let listing = repo.list(name).await?;
            let since = match (args.all, args.since) {
                (true, _) => None,
                (false, d) => chrono::Duration::from_std(d.unwrap_or(DEFAULT_WINDOW))
                    .ok()
                    .and_then(|d| now.checked_sub_signed(d)),
            };
            let schedule = schedule_for(ctx, name)?;
            let skipped_days = repo.skipped_days(name).await?;
            let shrink_alert = (ctx.config.retention.as_ref())
                .and_then(|r| r.shrink_alert)
                .unwrap_or(DEFAULT_SHRINK_ALERT);
            let window = Window {
                since,
                now,
                schedule: &schedule,
                skipped_days: &skipped_days,
                shrink_alert,
            };
            found = findings(&listing, &window);
            if let Some(subset) = args.read_subset {
                let cursor = Cursor::load(&repo, name).await?;
                let (gs, next) = groups(subset, cursor);
                for m in in_groups(&listing.backups, subset.t, &gs) {
                    reports.push(checked(&repo, read(&repo, m).await).await?);
                }
                next.save(&repo, name).await?;
                Vec::new()
            } else {
                choose(&args, &listing, since, now, name, &repo, ctx).await?
            }
        } else {
            let mut v = Vec::new();
            for id in &args.backups {
                v.push(pick(ctx, &repo, name, id, &mut reports).await?);
            }
            v.into_iter().flatten().collect()
        };
        for m in &chosen {
            let r = restore_test(&repo, m, args.scratch_dir.as_deref()).await;
            reports.push(checked(&repo, r).await?);
        }
        for r in reports
            .iter()
            .filter(|r| r.database == *name && r.damaged())
        {
            let known = found
                .iter()
                .any(|f| matches!(f, Finding::Damage { backup, .. } if *backup == r.backup));
            if !known {
                found.push(Finding::Damage {
                    backup: r.backup.clone(),
                    problem: r.problem.clone().unwrap_or_default(),
                });
            }
        }
        results.push(DbResult {
            database: name.clone(),
            findings: found,
        });
    }
    show(ctx, &results, &reports);
    outcome(&results, &reports, &repo)
}

/// The backups to restore-test when no ids were given.
async fn choose(
    args: &Args,
    listing: &Listing,
    since: Option<chrono::DateTime<Utc>>,
    now: chrono::DateTime<Utc>,
    name: &str,
    repo: &Repository,
    ctx: &Ctx,
) -> Result<Vec<Manifest>> {
    let in_window = |m: &&Manifest| since.is_none_or(|s| m.created_at >= s);
    if let Some(n) = args.sample {
        let candidates: Vec<&Manifest> = listing.good(now).filter(in_window).collect();
        return Ok(sample(listing, &candidates, n)
            .into_iter()
            .cloned()
            .collect());
    }
    if args.all || args.since.is_some() {
        return Ok(listing.backups.iter().filter(in_window).cloned().collect());
    }
    let mut none = Vec::new();
    Ok(pick(ctx, repo, name, "latest", &mut none)
        .await?
        .into_iter()
        .collect())
}

/// Resolve one id (or `latest`): damaged backups passed over become failures, not warnings.
async fn pick(
    ctx: &Ctx,
    repo: &Repository,
    name: &str,
    id: &str,
    reports: &mut Vec<VerifyReport>,
) -> Result<Option<Manifest>> {
    match select(repo, name, &Selector::Id(id.to_string())).await {
        Ok(sel) => {
            if sel.selector != sel.manifest.id {
                ctx.out.line(sel.describe());
            }
            // A damaged backup newer than the one verified is a failure of the repository's
            // newest state, not something to pass over in silence.
            for sk in sel.skipped.iter().filter(|s| s.damaged()) {
                reports.push(VerifyReport::failed(
                    name,
                    &sk.id,
                    Kind::Corrupt,
                    sk.reason.clone(),
                ));
            }
            Ok(Some(sel.manifest))
        }
        // Every candidate is damaged: that is this database's verification result.
        Err(e) if e.kind == Kind::Corrupt => {
            reports.push(VerifyReport::failed(name, id, e.kind, e.to_string()));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Keep a check's result in the backup's verify record.
async fn checked(repo: &Repository, mut r: VerifyReport) -> Result<VerifyReport> {
    record(repo, &mut r).await?;
    Ok(r)
}

/// The database's schedule: its own, the daemon's, or the default.
fn schedule_for(ctx: &Ctx, name: &str) -> Result<Schedule> {
    let own = ctx
        .config
        .all_databases()
        .into_iter()
        .find(|d| d.name == name)
        .and_then(|d| d.schedule);
    match own {
        Some(text) => Schedule::parse(&text),
        None => ctx.config.daemon.schedule(),
    }
}

fn show(ctx: &Ctx, results: &[DbResult], reports: &[VerifyReport]) {
    for res in results {
        for f in &res.findings {
            ctx.out.line(format!("{}  {}", res.database, f.describe()));
        }
    }
    for r in reports {
        let line = match (&r.problem, r.pruned) {
            (_, true) => format!(
                "gone  {}  {}  deleted by a prune while it was checked",
                r.database, r.backup
            ),
            (None, _) => format!(
                "ok    {}  {}  {}, {} tables, {} rows  {}",
                r.database,
                r.backup,
                match r.rung {
                    lifeboat::repo::verify_record::Rung::Read => "read: sha256 stored and image",
                    _ => "restore-test: sha256, integrity_check, foreign_key_check",
                },
                r.tables,
                r.rows,
                secs(r.duration_ms)
            ),
            (Some(p), _) => format!("FAIL  {}  {}  {p}", r.database, r.backup),
        };
        ctx.out.line(line);
        for w in &r.warnings {
            ctx.out
                .line(format!("warn  {}  {}  {w}", r.database, r.backup));
        }
    }
    let failed = reports.iter().filter(|r| !r.ok && !r.pruned).count();
    ctx.out.json(&serde_json::json!({
        "verified": reports.len(),
        "failed": failed,
        "reports": reports,
        "databases": results,
    }));
}

/// The exit: damage or a gap (6) before the environment's failures (4, 8, 9: a network outage
/// is never "corrupt"), before warnings (1).
fn outcome(results: &[DbResult], reports: &[VerifyReport], repo: &Repository) -> Result<i32> {
    let errors: Vec<(&str, &Finding)> = (results.iter())
        .flat_map(|r| r.findings.iter().map(move |f| (r.database.as_str(), f)))
        .filter(|(_, f)| f.severity() == Severity::Error)
        .collect();
    let failed: Vec<&VerifyReport> = reports.iter().filter(|r| !r.ok && !r.pruned).collect();
    let warned = (results.iter())
        .any(|r| r.findings.iter().any(|f| f.severity() == Severity::Warning))
        || reports.iter().any(|r| !r.warnings.is_empty());
    if let Some((db, first)) = errors.first() {
        let damaged = errors
            .iter()
            .filter(|(_, f)| matches!(f, Finding::Damage { .. }))
            .count();
        let gaps = errors.len() - damaged;
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "{damaged} backup(s) failed verification, {gaps} day(s) without a good scheduled backup; first: {db} {}",
                first.describe().split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    if let Some(first) = failed.first() {
        let kind = first.problem_kind.unwrap_or(Kind::Internal);
        return Err(Error::new(
            kind,
            format!(
                "{} of {} backup(s) could not be verified: {} {}",
                failed.len(),
                reports.len(),
                first.backup,
                first.problem.clone().unwrap_or_default()
            ),
        ));
    }
    if reports.is_empty() && results.iter().all(|r| r.findings.is_empty()) {
        return Err(Error::new(
            Kind::NotFound,
            format!("no backups to verify in {}", repo.url()),
        ));
    }
    Ok(if warned { 1 } else { 0 })
}
