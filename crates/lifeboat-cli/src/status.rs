//! `lifeboat status`: how each database's backups stand, for people (`--json`) and for monitoring
//! (`--nagios`; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).

use crate::{database_names, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::manifest::human_size;
use lifeboat::status::{database_status, hours, DatabaseStatus, State};
use lifeboat::text::escape;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat status
  lifeboat status --db studio-platform-db --json
  lifeboat status --nagios          # one line and perfdata, for Nagios, Icinga, check_mk

States: CRITICAL when there is no good backup, the last good one is older than max_age (default 26h)
or the last run failed; WARNING when it is older than warn_age (default 25h) or a backup is damaged.
A scheduled run that found a database unchanged since its last good backup makes it fresh as of
that check. A fleet's database whose file is gone is OK (not backed up any more, backups kept).
Set them under [status] in lifeboat.toml. Exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the
repository could not be read).")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// One Nagios plugin line with perfdata.
    #[arg(long, conflicts_with = "json")]
    nagios: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    match gather(ctx, &args).await {
        Ok(all) => Ok(show(ctx, &args, &all)),
        Err(e) => {
            if args.nagios {
                say_out!("LIFEBOAT UNKNOWN - {}", e.to_string().replace('|', "/"));
            } else {
                say_err!("lifeboat: error: status: {e}");
                ctx.out
                    .json(&serde_json::json!({"state": "UNKNOWN", "error": e.to_string()}));
            }
            Ok(3)
        }
    }
}

async fn gather(ctx: &Ctx, args: &Args) -> Result<Vec<DatabaseStatus>> {
    let repo = ctx.repository(false)?;
    let mut names = database_names(ctx, &repo, args.db.as_deref()).await?;
    if args.db.is_none() {
        // Every database the repository holds, configured or not, and every configured one,
        // even before its first backup (none is CRITICAL).
        let held = repo.databases().await?;
        let configured = ctx.config.all_databases().into_iter().map(|d| d.name);
        for name in held.into_iter().chain(configured) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let now = chrono::Utc::now();
    // Each configured (or discovered) database's schedule, for its next run under the daemon.
    let default = ctx.config.daemon.schedule()?;
    let schedules: std::collections::HashMap<String, Option<String>> = ctx
        .config
        .all_databases()
        .into_iter()
        .map(|d| (d.name, d.schedule))
        .collect();
    // Replicated databases' files, to tell what their WAL holds that the repository does not.
    let replicated: std::collections::HashMap<String, std::path::PathBuf> = ctx
        .config
        .members()
        .sources
        .into_iter()
        .filter(|s| s.replicate.is_some() && s.d1.is_none() && s.sql_dump.is_none())
        .map(|s| (s.name, s.path))
        .collect();
    let max_lag = ctx.config.replication.max_lag();
    let mut all = Vec::new();
    for name in names {
        let mut s = database_status(&repo, &name, &ctx.config.status, now).await?;
        // An unreadable drill record says nothing of the backups: shown as none.
        s.last_drill = lifeboat::drill::last_drill(&repo, &name)
            .await
            .unwrap_or_else(|e| {
                say_err!("lifeboat: warning: {e}");
                None
            });
        s.replication = lifeboat::replicate::lag::replication_status(
            &repo,
            &name,
            replicated.get(&name).map(|p| p.as_path()),
            now,
        )
        .await
        .unwrap_or_else(|e| {
            say_err!("lifeboat: warning: {name}: replication: {e}");
            None
        });
        if let Some(lag) = s.replication.as_ref().and_then(|r| r.lag_seconds) {
            if lag > max_lag.as_secs() as i64 {
                s.replication_lagging(lag, max_lag);
            }
        }
        // A fleet's database whose file is gone is not stale: nothing is left to back up.
        if let Some(own) = schedules.get(&name) {
            let schedule = match own {
                Some(text) => lifeboat::schedule::Schedule::parse(text)?,
                None => default.clone(),
            };
            s.next_run = schedule.next_after(now);
        }
        if ctx.config.has_fleets() && !schedules.contains_key(&name) {
            if let Some(fleet) = s
                .source_path
                .as_deref()
                .and_then(|p| ctx.config.left_fleet(p))
            {
                s.left_fleet(fleet);
            }
        }
        all.push(s);
    }
    // Files a fleet finds and cannot back up are failures to show, not silence.
    for r in ctx.config.members().refused {
        if args.db.as_deref().is_some_and(|d| d != r.name) {
            continue;
        }
        match all.iter_mut().find(|s| s.database == r.name) {
            Some(s) => s.refused(&r.fleet, &r.error.to_string()),
            None => {
                let mut s = database_status(&repo, &r.name, &ctx.config.status, now).await?;
                s.refused(&r.fleet, &r.error.to_string());
                all.push(s);
            }
        }
    }
    Ok(all)
}

fn show(ctx: &Ctx, args: &Args, all: &[DatabaseStatus]) -> i32 {
    let state = all.iter().map(|s| s.state).max().unwrap_or(State::Critical);
    if args.nagios {
        let bad: Vec<&DatabaseStatus> = all.iter().filter(|s| s.state != State::Ok).collect();
        let summary = match (all.len(), bad.as_slice()) {
            (0, _) => "no databases".to_string(),
            (n, []) => format!("{n} database(s) backed up"),
            (n, bad) => format!(
                "{} of {n} database(s): {}",
                bad.len(),
                bad.iter()
                    .map(|s| format!("{} {}", s.database, s.reasons.join("; ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let warn = ctx
            .config
            .status
            .warn_age
            .map_or(25 * 3600, |d| d.as_secs());
        let max = ctx.config.status.max_age.map_or(26 * 3600, |d| d.as_secs());
        let perf: Vec<String> = all
            .iter()
            .map(|s| {
                format!(
                    "'{}_age'={};{warn};{max} '{}_backups'={}",
                    s.database,
                    s.age_seconds.map_or("U".into(), |a| format!("{a}s")),
                    s.database,
                    s.backups
                )
            })
            .collect();
        say_out!(
            "LIFEBOAT {state} - {} | {}",
            escape(&summary).replace('|', "/"),
            perf.join(" ")
        );
        return state.exit_code();
    }
    for s in all {
        let last = match (&s.last_good, s.last_good_age_seconds) {
            (Some(id), Some(age)) => format!("last good {id} ({} ago)", hours(age)),
            _ => "no good backup".to_string(),
        };
        ctx.out.line(format!(
            "{:<8} {}  {last}  {} backup(s), {}",
            s.state.to_string(),
            escape(&s.database),
            s.backups,
            human_size(s.stored_bytes)
        ));
        for why in &s.reasons {
            ctx.out.line(format!("  {}", escape(why)));
        }
        if let Some(id) = &s.last_good {
            let tested = match &s.last_good_restore_test {
                Some(c) => format!(
                    "restore-tested {} ({} ago)",
                    c.at.format("%Y-%m-%d %H:%M:%S"),
                    hours((chrono::Utc::now() - c.at).num_seconds().max(0))
                ),
                None => "never restore-tested (`lifeboat verify` does it)".into(),
            };
            ctx.out.line(format!("  {id}: {tested}"));
        }
        if let (Some(id), Some(at)) = (&s.last_good, s.unchanged_checked_at) {
            ctx.out.line(format!(
                "  unchanged since {id}, checked at {} ({} ago)",
                at.format("%Y-%m-%d %H:%M:%S"),
                hours(s.age_seconds.unwrap_or(0))
            ));
        }
        if let Some(next) = s.next_run {
            ctx.out.line(format!(
                "  next scheduled run (daemon): {}",
                next.format("%Y-%m-%d %H:%M UTC")
            ));
        }
        if let Some(d) = &s.last_drill {
            ctx.out.line(format!(
                "  last drill: {} ({}), {}{}",
                d.started_at.format("%Y-%m-%d %H:%M UTC"),
                match d.verdict {
                    lifeboat::drill::Verdict::Pass => "pass",
                    lifeboat::drill::Verdict::Fail => "fail",
                },
                lifeboat::drill::report::ms_text(d.total_ms),
                if d.rto_breached { ", RTO breached" } else { "" }
            ));
        }
        if let Some(r) = &s.replication {
            let lag = match (r.lag_seconds, r.unshipped_commits) {
                (Some(0), _) => "lag 0 (the local WAL holds nothing unshipped)".to_string(),
                (Some(l), Some(n)) => format!(
                    "lag at most {} ({n} commit(s) in the local WAL not yet shipped)",
                    hours(l)
                ),
                _ => "lag unknown here (the database file is not on this machine, or its WAL was checkpointed away since)".to_string(),
            };
            ctx.out.line(format!(
                "  replicated: newest commit {} seen {} ({} ago), generation {}; {lag}",
                r.newest_commit,
                r.newest_commit_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                hours(
                    (chrono::Utc::now() - r.newest_commit_at)
                        .num_seconds()
                        .max(0)
                ),
                r.generation
            ));
        }
        if let Some(fleet) = &s.left_fleet {
            ctx.out.line(format!(
                "  gone from fleet {}: its file no longer exists, so it is not backed up any more; its backups stay under retention",
                escape(fleet)
            ));
        }
        if let Some(e) = &s.newest_emergency {
            ctx.out.line(format!("  newest emergency backup: {e}"));
        }
        if !s.holds.is_empty() {
            ctx.out.line(format!("  held: {}", s.holds.join(", ")));
        }
        if !s.pins.is_empty() {
            ctx.out.line(format!("  pinned: {}", s.pins.join(", ")));
        }
        if let Some(f) = &s.last_failure {
            ctx.out.line(format!(
                "  last failure: {} {}",
                f.at.format("%Y-%m-%d %H:%M:%S"),
                escape(f.error.as_deref().unwrap_or(""))
            ));
        }
    }
    if all.is_empty() {
        ctx.out.line("no databases: nothing is backed up");
    }
    ctx.out
        .json(&serde_json::json!({"state": state, "databases": all}));
    state.exit_code()
}
