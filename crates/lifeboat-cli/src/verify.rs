//! `lifeboat verify`: the catalogue's findings across a window (gaps, schema drift, shrinkage,
//! damage), then the harder rungs on the backups chosen: restore-tests (the latest, a sample,
//! a window, every one, or ids given) or a rolling read of every byte. Replicated generations:
//! their segments' names always, and a replay of the newest chain (or every chain in the window,
//! or those given) onto its snapshot in scratch.

use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;

use crate::alerting::Alerter;
use crate::{database_names, parse_duration, secs, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::retention::DEFAULT_SHRINK_ALERT;
use lifeboat::repo::Repository;
use lifeboat::schedule::Schedule;
use lifeboat::verify::chain::{self, ChainReport, Replay};
use lifeboat::verify::choose::Subset;
use lifeboat::verify::database::{verify_database, DatabaseVerification, Depth, Settings};
use lifeboat::verify::findings::{Finding, Severity};
use lifeboat::verify::VerifyReport;
use lifeboat_daemon::alerts::EventKind;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat verify                       # last 30 days' findings, restore-test the latest backup
  lifeboat verify --sample 3            # ... and restore-test 3 (the newest, then untested ones)
  lifeboat verify --read-subset 1/30    # read a different thirtieth of all backups each run
  lifeboat verify --all --json          # the whole history, every backup restore-tested
  lifeboat verify --all --catalogue     # the whole history's findings, no data read
  lifeboat verify backup-2026-11-20T020000Z --db studio-platform-db
  lifeboat verify --catalogue --generation gen-20261202T101530250Z-1a2b3c4d --db shop

Replicated databases: the segments' names of every generation in the window are checked (every
commit once, no gap, no overlap); the newest generation's chain (every one in the window with
--all or --since; those given with --generation) is replayed onto its snapshot in scratch, every
checksum checked, then quick_check. A broken chain is damage (exit 6).

Exit codes: 0 clean, 1 warnings only (schema drift, shrinkage, foreign keys), 6 damage or a gap,
4/8/9 when the repository or the scratch disk kept a check from running (never 6).")]
pub struct Args {
    /// Backup ids, or `latest`: restore-test just these (no window findings).
    #[arg(value_name = "ID|latest", conflicts_with_all = ["all", "since", "sample", "read_subset", "catalogue"])]
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
    /// Only the catalogue rung: findings from manifests and object sizes, no data read.
    #[arg(long, conflicts_with_all = ["sample", "read_subset"])]
    catalogue: bool,
    /// Replay this replicated generation's chain (repeatable; instead of the default choice).
    #[arg(long, value_name = "GEN-ID")]
    generation: Vec<String>,
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Directory for the temporary images (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
    /// Send no alert when verification fails.
    #[arg(long)]
    no_alert: bool,
}

const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 86_400);

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    let now = Utc::now();
    let depth = if !args.backups.is_empty() {
        Depth::Ids(args.backups.clone())
    } else if args.catalogue {
        Depth::Catalogue
    } else if let Some(s) = args.read_subset {
        Depth::ReadSubset(s)
    } else if let Some(n) = args.sample {
        Depth::Sample(n)
    } else if args.all || args.since.is_some() {
        Depth::Window
    } else {
        Depth::Latest
    };
    let since = match args.all {
        true => None,
        false => chrono::Duration::from_std(args.since.unwrap_or(DEFAULT_WINDOW))
            .ok()
            .and_then(|d| now.checked_sub_signed(d)),
    };
    let shrink_alert = (ctx.config.retention.as_ref())
        .and_then(|r| r.shrink_alert)
        .unwrap_or(DEFAULT_SHRINK_ALERT);
    let replay = if !args.generation.is_empty() {
        Replay::Ids(args.generation.clone())
    } else {
        match depth {
            Depth::Window => Replay::Window,
            Depth::Latest | Depth::Sample(_) => Replay::Newest,
            _ => Replay::Nothing,
        }
    };
    let mut results = Vec::new();
    let mut chains = Vec::new();
    for name in &names {
        let settings = Settings {
            since,
            schedule: schedule_for(ctx, name)?,
            shrink_alert,
            scratch_dir: args.scratch_dir.clone(),
        };
        let mut r = verify_database(&repo, name, &depth, &settings, now).await?;
        for n in &r.notes {
            ctx.out.line(n);
        }
        if replay != Replay::Nothing {
            let (windows, _) = chain::catalogue(&repo, name, since).await?;
            let (found, reports) =
                chain::replay(&repo, &windows, &replay, args.scratch_dir.as_deref()).await?;
            r.findings.extend(found);
            chains.extend(reports);
        }
        results.push(r);
    }
    if let Replay::Ids(ids) = &replay {
        if let Some(id) = ids
            .iter()
            .find(|id| !chains.iter().any(|c| &c.generation == *id))
        {
            return Err(Error::new(
                Kind::NotFound,
                format!("verify: no generation {id} (see `lifeboat list --pitr`)"),
            ));
        }
    }
    let reports: Vec<VerifyReport> = results.iter().flat_map(|r| r.reports.clone()).collect();
    show(ctx, &results, &reports, &chains);
    let result = outcome(&results, &reports, &chains, &repo, args.catalogue);
    if let Err(e) = &result {
        tell(ctx, &args, &results, e).await;
    }
    result
}

/// A failed verify alerts as the daemon's verifier does: `verify.failed` per database with
/// damage or a gap; a check the environment kept from running, once, for the whole run.
async fn tell(ctx: &Ctx, args: &Args, results: &[DatabaseVerification], e: &Error) {
    let alerter = Alerter::new(ctx, args.no_alert);
    let mut told = false;
    for r in results {
        let errors: Vec<&Finding> = (r.findings.iter())
            .filter(|f| f.severity() == Severity::Error)
            .collect();
        if let Some(first) = errors.first() {
            let what = first
                .describe()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            let e = Error::new(
                Kind::Corrupt,
                format!("{} finding(s), the first: {what}", errors.len()),
            );
            alerter
                .tell_failure(EventKind::VerifyFailed, &r.database, &e)
                .await;
            told = true;
        }
    }
    if !told && e.kind != Kind::NotFound && e.kind != Kind::Config {
        alerter
            .tell_failure(EventKind::VerifyFailed, "system_backup", e)
            .await;
    }
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

fn show(
    ctx: &Ctx,
    results: &[DatabaseVerification],
    reports: &[VerifyReport],
    chains: &[ChainReport],
) {
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
    for c in chains {
        ctx.out.line(match &c.problem {
            None => format!(
                "ok    {}  {}  chain: {} segment(s), {} frame(s) to commit {} onto {}, quick_check, {} tables, {} rows  {}",
                c.database,
                c.generation,
                c.segments,
                c.frames,
                c.seq,
                c.snapshot,
                c.tables,
                c.rows,
                secs(c.duration_ms)
            ),
            Some(p) => format!("FAIL  {}  {}  chain: {p}", c.database, c.generation),
        });
    }
    let failed = reports.iter().filter(|r| !r.ok && !r.pruned).count();
    ctx.out.json(&serde_json::json!({
        "verified": reports.len(),
        "failed": failed,
        "reports": reports,
        "chains": chains,
        "databases": results,
    }));
}

/// The exit: damage or a gap (6) before the environment's failures (4, 8, 9: a network outage
/// is never "corrupt"), before warnings (1).
fn outcome(
    results: &[DatabaseVerification],
    reports: &[VerifyReport],
    chains: &[ChainReport],
    repo: &Repository,
    catalogue: bool,
) -> Result<i32> {
    let errors: Vec<(&str, &Finding)> = (results.iter())
        .flat_map(|r| r.findings.iter().map(move |f| (r.database.as_str(), f)))
        .filter(|(_, f)| f.severity() == Severity::Error)
        .collect();
    let failed: Vec<&VerifyReport> = reports.iter().filter(|r| !r.ok && !r.pruned).collect();
    let warned = (results.iter())
        .any(|r| r.findings.iter().any(|f| f.severity() == Severity::Warning))
        || reports.iter().any(|r| !r.warnings.is_empty());
    if let Some((db, first)) = errors.first() {
        let count = |f: fn(&Finding) -> bool| errors.iter().filter(|(_, e)| f(e)).count();
        let damaged = count(|f| matches!(f, Finding::Damage { .. }));
        let broken = count(|f| matches!(f, Finding::Chain { .. }));
        let gaps = errors.len() - damaged - broken;
        let chains = match broken {
            0 => String::new(),
            n => format!(", {n} replication chain problem(s)"),
        };
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "{damaged} backup(s) failed verification, {gaps} day(s) without a good scheduled backup{chains}; first: {db} {}",
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
    // A chain that could not be replayed (the network, the scratch disk): its own kind.
    if let Some(c) = chains.iter().find(|c| !c.ok) {
        return Err(Error::new(
            c.problem_kind.unwrap_or(Kind::Internal),
            format!(
                "generation {} of {} could not be verified: {}",
                c.generation,
                c.database,
                c.problem.clone().unwrap_or_default()
            ),
        ));
    }
    if reports.is_empty()
        && chains.is_empty()
        && results.iter().all(|r| r.findings.is_empty())
        && !catalogue
    {
        return Err(Error::new(
            Kind::NotFound,
            format!("no backups to verify in {}", repo.url()),
        ));
    }
    Ok(if warned { 1 } else { 0 })
}
