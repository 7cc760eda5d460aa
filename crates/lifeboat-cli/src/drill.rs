//! `lifeboat drill`: the runbook's quarterly DR drill, done and timed: restore the latest good
//! backup into a target, check it, run the data checks, compare the time with the RTO, keep the
//! record in the repository and print the checklist. `--history` shows the past drills.

use std::path::PathBuf;

use crate::{database_names, single_database_name, Ctx};
use lifeboat::config::D1TargetFlags;
use lifeboat::drill::report::{history_markdown, markdown, next_drill, trend_ms};
use lifeboat::drill::{drill, history, store, DrillOptions, Target, TargetSpec};
use lifeboat::error::{Error, Kind, Result, ResultExt};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat drill                                   # latest good backup into scratch space, checked, timed
  lifeboat drill --db studio-platform-db --target d1:studio-platform-db-drill --local
  lifeboat drill --target ./drill.db --force       # leave the restored file there
  lifeboat drill --history                         # past drills, the RTO trend, last and next drill

Data checks come from [[drill.check]] (name, sql, expect = \"> 0\" | \">= N\" | \"< N\" | \"<= N\" |
\"= N\" | \"!= N\" | \"within 26h of backup\"); the RTO from [objectives] rto (default 1h).
Exit codes: 0 pass; 1 a data check failed or the RTO was breached; 4 repository unreachable;
5 no backup; 6 corrupt backup or a failed integrity check; 7 the target exists (use --force).")]
pub struct Args {
    /// The database to drill (a configured name or a file path; default: the only one).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Where to restore: `scratch` (removed afterwards), a file (left in place), or `d1:NAME`.
    #[arg(long, value_name = "scratch|PATH|d1:NAME", default_value = "scratch", value_parser = parse_target)]
    target: TargetSpec,
    /// Replace an existing file target (moved aside) or a non-empty D1 target (backed up first).
    #[arg(long)]
    force: bool,
    /// With d1:NAME: the local development database (`wrangler --local`, the default).
    #[arg(long, conflicts_with = "remote")]
    local: bool,
    /// With d1:NAME: a remote D1 database (`wrangler --remote`).
    #[arg(long)]
    remote: bool,
    /// With d1:NAME: the wrangler configuration file (`-c`).
    #[arg(long, value_name = "FILE")]
    wrangler_config: Option<PathBuf>,
    /// Show the past drills (oldest first) with the trend of their total time.
    #[arg(long, conflicts_with_all = ["target", "force", "local", "remote", "wrangler_config"])]
    history: bool,
    /// Directory for scratch space (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

fn parse_target(s: &str) -> std::result::Result<TargetSpec, String> {
    s.parse()
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let schedule = ctx.config.daemon.drill_schedule()?;
    if args.history {
        return show_history(ctx, &args, &schedule).await;
    }
    let target = match &args.target {
        TargetSpec::Scratch => Target::Scratch,
        TargetSpec::File(p) => {
            // Refused before anything is done, as restore does.
            ctx.refuse_inside_repository(p).step("drill")?;
            lifeboat::fs::atomic_replace::check_target(p, args.force).step("drill")?;
            Target::File(p.clone())
        }
        TargetSpec::D1(_) => Target::Scratch, // resolved below, once the database is known
    };
    let repo = ctx.repository(false).step("drill")?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    let target = match &args.target {
        TargetSpec::D1(name) => {
            let flags = D1TargetFlags {
                remote: if args.remote {
                    Some(true)
                } else if args.local {
                    Some(false)
                } else {
                    None
                },
                wrangler_config: args.wrangler_config.clone(),
                max_import_file: lifeboat::d1::target::D1_MAX_IMPORT_FILE,
            };
            Target::D1(ctx.config.d1_target(name, &db, &flags)?)
        }
        _ => target,
    };
    // `--db PATH` of a database the config does not name: its own file is protected too.
    let drilled = match args.db.as_deref() {
        Some(flag) => Some(ctx.config.database(flag)?.path),
        None => None,
    };
    ctx.config
        .refuse_protected_drill_target(&target, drilled.as_deref())?;
    let opts = DrillOptions {
        target,
        force: args.force,
        rto: ctx.config.objectives.rto(),
        checks: ctx.config.drill.checks_for(&db),
        scratch_dir: args.scratch_dir.clone(),
    };
    let mut record = drill(&repo, &db, &opts).await;
    // No backup at all: nothing was drilled, and a record would make the repository hold a
    // database (a mistyped --db) that it does not.
    let stored = match (&record.backup, &record.error) {
        (None, Some(e)) if e.kind == Kind::NotFound.name() => Ok(String::new()),
        _ => store(&repo, &mut record).await,
    };
    ctx.out.line(markdown(&record, &schedule));
    ctx.out.json_of(&record)?;
    if let Err(e) = stored {
        say_err!("lifeboat: error: drill: the record could not be stored: {e}");
        // The drill's own failure says more; a passing drill without its record is not done.
        return Ok(match record.exit_code() {
            0 => e.kind.exit_code(),
            code => code,
        });
    }
    if let Some(why) = record.failure() {
        say_err!(
            "lifeboat: error: drill of {}: {}",
            lifeboat::text::escape(&db),
            lifeboat::text::escape(&why)
        );
    }
    Ok(record.exit_code())
}

async fn show_history(
    ctx: &Ctx,
    args: &Args,
    schedule: &lifeboat::schedule::Schedule,
) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    if names.is_empty() {
        return Err(Error::new(
            Kind::NotFound,
            format!("no databases in {}", repo.url()),
        ));
    }
    let now = chrono::Utc::now();
    let mut docs = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (drills, unreadable) = history(&repo, name).await?;
        for u in &unreadable {
            say_err!(
                "lifeboat: warning: drill record {}",
                lifeboat::text::escape(u)
            );
        }
        if i > 0 {
            ctx.out.line("");
        }
        ctx.out.line(history_markdown(name, &drills, schedule, now));
        let last = drills.last();
        docs.push(serde_json::json!({
            "database": name,
            "drills": drills,
            "trend_ms": trend_ms(&drills),
            "last_drill": last.map(|r| serde_json::json!({"started_at": r.started_at, "verdict": r.verdict})),
            "next_drill": next_drill(schedule, last.map(|r| r.started_at), now),
            "unreadable": unreadable,
        }));
    }
    ctx.out.json(&serde_json::json!({ "databases": docs }));
    Ok(0)
}
