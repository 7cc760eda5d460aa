//! `lifeboat cleanup`: remove what interrupted backups left behind: objects without a manifest,
//! stale claims, and (on S3) multipart uploads nobody will complete; also what a killed
//! compaction or replicator left: a segment's staged file (local) or its unfinished upload
//! (S3). A leftover whose backup is still running on this machine is never touched, whatever
//! its age.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{database_names, parse_duration, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::claim::Holder;
use lifeboat::repo::manifest::human_size;
use lifeboat::repo::repository::Leftover;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat cleanup --dry-run
  lifeboat cleanup --db studio-platform-db --older-than 6h

A leftover whose backup is still running on this machine (its claim names a live process) is
kept whatever its age; one from another machine is judged by its age alone.")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Leave leftovers younger than this alone: they may be a backup still running elsewhere.
    #[arg(long, value_parser = parse_age, default_value = "1h")]
    older_than: Duration,
    /// Show what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// A `--older-than` value: a duration that can be subtracted from now (a value out of range
/// is refused, never taken as zero).
fn parse_age(s: &str) -> std::result::Result<Duration, String> {
    let d = parse_duration(s)?;
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|c| Utc::now().checked_sub_signed(c))
        .map(|_| d)
        .ok_or_else(|| format!("{s} is out of range"))
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let age = chrono::Duration::from_std(args.older_than)
        .map_err(|e| Error::new(Kind::Config, format!("--older-than: {e}")))?;
    let cutoff = Utc::now() - age;
    let mut done = Vec::new();
    for name in database_names(ctx, &repo, args.db.as_deref()).await? {
        let listing = repo.list(&name).await?;
        let mut protected: BTreeSet<String> = BTreeSet::new();
        let mut recorded: BTreeSet<String> = BTreeSet::new();
        let candidates: Vec<(&Leftover, bool)> = listing
            .incomplete
            .iter()
            .map(|l| (l, false))
            .chain(listing.claimed.iter().map(|l| (l, true)))
            .collect();
        let mut claims = Vec::new();
        for (l, _) in &candidates {
            claims.push(repo.read_claim(&name, &l.id).await);
        }
        // A day's SQL mirror being uploaded (`backup-YYYY-MM-DD.sql#N`) belongs to whichever
        // backup of this database is running.
        let running = claims
            .iter()
            .flatten()
            .any(|c| c.holder() == Holder::Running);
        for ((l, complete), claim) in candidates.into_iter().zip(claims) {
            let is_mirror = !l.id.contains('T');
            let uploads: Vec<String> = claim
                .iter()
                .flat_map(|c| c.uploads.iter().map(|u| u.upload_id.clone()))
                .collect();
            recorded.extend(uploads.iter().cloned());
            let keep = match claim.as_ref().map(|c| (c.holder(), c.pid)) {
                Some((Holder::Running, pid)) => {
                    Some(format!("its backup is running (pid {pid} on this machine)"))
                }
                None if is_mirror && running => {
                    Some("the day's SQL mirror, being written by a running backup".to_string())
                }
                _ if l.last_modified > cutoff => Some(format!(
                    "younger than {}",
                    humantime::format_duration(args.older_than)
                )),
                _ => None,
            };
            if let Some(why) = keep {
                protected.extend(uploads);
                ctx.out.line(format!("keep    {name}  {}  ({why})", l.id));
                continue;
            }
            if !args.dry_run {
                if let Some(c) = &claim {
                    repo.abort_uploads(c).await?;
                }
                repo.remove_leftover(&name, l).await?;
            }
            let what = if complete {
                "its stale claim"
            } else {
                "incomplete"
            };
            report(
                ctx,
                &mut done,
                &name,
                &l.id,
                what,
                l.size,
                args.dry_run,
                &uploads,
            );
        }
        // Verify records of backups that are gone (a prune ran while a verify wrote one).
        if !listing.orphan_records.is_empty() {
            let gone = if args.dry_run {
                listing.orphan_records.clone()
            } else {
                repo.forget_orphan_records(&name, &listing.orphan_records)
                    .await?
            };
            for id in gone {
                let verb = if args.dry_run {
                    "would remove"
                } else {
                    "removed"
                };
                ctx.out.line(format!(
                    "{verb} {name}  {id}  (the verify record of a backup that is gone)"
                ));
            }
        }
        // Segments a killed compaction or replicator was placing (local repositories).
        for s in lifeboat::replicate::layout::local_staging(&repo, &name) {
            if s.modified > cutoff {
                let age = humantime::format_duration(args.older_than);
                ctx.out
                    .line(format!("keep    {name}  {}  (younger than {age})", s.name));
                continue;
            }
            if !args.dry_run {
                match std::fs::remove_file(&s.path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(Error::io(
                            format!("cleanup: delete {}", s.path.display()),
                            e,
                        ))
                    }
                    _ => {}
                }
            }
            let what = "a segment's interrupted upload";
            report(
                ctx,
                &mut done,
                &name,
                &s.name,
                what,
                s.size,
                args.dry_run,
                &[],
            );
        }
        // Uploads no claim names (the claim itself was lost): S3's own list, where it has one.
        match repo.incomplete_uploads(&name).await? {
            Some(found) => {
                for u in found {
                    let old = u.initiated.is_none_or(|t: DateTime<Utc>| t <= cutoff);
                    if recorded.contains(&u.upload_id) || protected.contains(&u.upload_id) || !old {
                        continue;
                    }
                    if !args.dry_run {
                        repo.abort_upload(&u.key, &u.upload_id).await?;
                    }
                    report(ctx, &mut done, &name, &u.key, "unclaimed upload", 0, args.dry_run, &[u.upload_id]);
                }
            }
            None if repo.url().starts_with("s3://") => ctx.out.line(format!(
                "note    {name}  this S3 server cannot list incomplete uploads (ListMultipartUploads); those named in claims were handled"
            )),
            None => {}
        }
    }
    ctx.out
        .json(&serde_json::json!({ "dry_run": args.dry_run, "removed": done }));
    Ok(0)
}

#[allow(clippy::too_many_arguments)]
fn report(
    ctx: &Ctx,
    done: &mut Vec<serde_json::Value>,
    db: &str,
    id: &str,
    what: &str,
    size: u64,
    dry_run: bool,
    uploads: &[String],
) {
    let verb = if dry_run { "would remove" } else { "removed" };
    let aborted = match uploads.len() {
        0 => String::new(),
        n => format!(", {n} S3 upload(s) aborted"),
    };
    ctx.out.line(format!(
        "{verb}  {db}  {id}  {what}  {}{aborted}",
        human_size(size)
    ));
    done.push(
        serde_json::json!({"database": db, "id": id, "what": what, "uploads_aborted": uploads}),
    );
}
