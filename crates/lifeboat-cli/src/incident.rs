//! `lifeboat incident new|list`: start a post-incident review as a Markdown file whose timeline
//! is pre-filled from the repository's records of the window, and list those started.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::incident::{list, render, slug, timeline, write_new, Header, Timeline};

use crate::{database_names, Ctx};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat incident new --title \"tenant 42 lost bookings\"             # the last 24 h
  lifeboat incident new --title \"D1 outage\" --since 6h --db studio-platform-db
  lifeboat incident new --title \"bad migration\" --since 2026-03-01T08:00:00Z --out docs
  lifeboat incident list --out docs")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Start `incidents/<date>-<title>.md`: the runbook's post-incident sections, the timeline
    /// filled in from the repository (backups, failures, alerts sent, restores, drills).
    New(NewArgs),
    /// List the incident files: date, title, file.
    List(ListArgs),
}

#[derive(clap::Args, Debug)]
struct NewArgs {
    /// What happened, in a few words (the file's heading and name).
    #[arg(long)]
    title: String,
    /// Start of the timeline: RFC 3339 (`2026-03-01T08:00:00Z`), a date (`2026-03-01`, UTC
    /// midnight) or a duration back from now (`6h`, `3d`).
    #[arg(long, value_name = "TIME", default_value = "24h")]
    since: String,
    /// Only this database (a configured or discovered name, a fleet or a file path; default:
    /// all of them).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Directory under which `incidents/` is (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ListArgs {
    /// Directory under which `incidents/` is (default: the current directory).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    match args.command {
        Sub::New(a) => new(ctx, a).await,
        Sub::List(a) => list_them(ctx, a),
    }
}

/// `--since`: a time, a date, or a duration back from `now`.
fn since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let t = s.trim();
    let at = DateTime::parse_from_rfc3339(t)
        .map(|t| t.to_utc())
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            let d = humantime::parse_duration(t).ok()?;
            now.checked_sub_signed(chrono::Duration::from_std(d).ok()?)
        });
    match at {
        Some(at) if at <= now => Ok(at),
        Some(_) => Err(Error::new(
            Kind::Config,
            format!("--since {s:?} is in the future"),
        )),
        None => Err(Error::new(
            Kind::Config,
            format!("--since {s:?}: give an RFC 3339 time (2026-03-01T08:00:00Z), a date (2026-03-01) or a duration (6h, 3d)"),
        )),
    }
}

async fn new(ctx: &Ctx, a: NewArgs) -> Result<i32> {
    let now = Utc::now();
    let since = since(&a.since, now)?;
    if a.title.trim().is_empty() {
        return Err(Error::new(Kind::Config, "--title is empty"));
    }
    // A --db that names nothing is bad usage, said before anything is written.
    let named = match &a.db {
        Some(f) => Some(ctx.config.select(f)?),
        None => None,
    };
    let url = ctx.config.repository_url(ctx.repo_flag.as_deref());
    // During an incident the repository may be what failed: the file is still written, with
    // what could not be read said in it.
    let (dbs, found) = match gather(ctx, a.db.as_deref(), since, now).await {
        Ok((dbs, t)) => (dbs, Ok(t)),
        Err(e) => {
            let dbs = named
                .map(|m| m.sources.into_iter().map(|s| s.name).collect())
                .unwrap_or_default();
            (dbs, Err(e))
        }
    };
    let note = found
        .as_ref()
        .err()
        .map(|e| format!("the repository could not be read, so the timeline is empty: {e}"));
    let t = found.unwrap_or_default();
    let header = Header {
        title: a.title.trim(),
        opened: now,
        since,
        until: now,
        databases: &dbs,
        repository: &url,
        note: note.clone(),
    };
    let text = render(&header, &t);
    let path = write_new(
        &a.out,
        &now.format("%Y-%m-%d").to_string(),
        &slug(&a.title),
        &text,
    )?;
    if let Some(n) = &note {
        say_err!("lifeboat: warning: {n}");
    }
    ctx.out.line(path.display().to_string());
    ctx.out.json(&serde_json::json!({
        "file": path,
        "title": a.title.trim(),
        "since": since,
        "until": now,
        "databases": dbs,
        "timeline": t.entries,
        "note": note,
    }));
    Ok(0)
}

/// The databases the window covers, and their timeline.
async fn gather(
    ctx: &Ctx,
    flag: Option<&str>,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(Vec<String>, Timeline)> {
    let repo = ctx.repository(false)?;
    let dbs = database_names(ctx, &repo, flag).await?;
    let t = timeline(&repo, &dbs, since, until).await?;
    Ok((dbs, t))
}

fn list_them(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let found = list(&a.out)?;
    if found.is_empty() {
        ctx.out.line(format!(
            "no incidents in {}",
            a.out.join(lifeboat::incident::FOLDER).display()
        ));
    }
    for l in &found {
        ctx.out.line(format!(
            "{}  {}  {}",
            l.date,
            lifeboat::text::escape(&l.title),
            l.file.display()
        ));
    }
    ctx.out.json(&serde_json::json!({ "incidents": found }));
    Ok(0)
}
