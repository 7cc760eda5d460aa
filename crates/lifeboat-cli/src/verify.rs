//! `lifeboat verify`: download backups into scratch space and prove they restore.

use std::path::PathBuf;

use crate::{database_names, secs, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::restore::to_file::{select, Selector};
use lifeboat::verify::{verify, VerifyReport};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat verify                       # the latest backup of each database
  lifeboat verify backup-2026-11-20T020000Z --db studio-platform-db
  lifeboat verify --all --json")]
pub struct Args {
    /// Backup id, or `latest` (the default).
    #[arg(value_name = "ID|latest", conflicts_with = "all")]
    backup: Option<String>,
    /// Verify every complete backup.
    #[arg(long)]
    all: bool,
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Directory for the temporary images (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    let mut reports: Vec<VerifyReport> = Vec::new();
    for name in &names {
        let manifests = if args.all {
            let listing = repo.list(name).await?;
            for (id, why) in listing.damaged {
                reports.push(VerifyReport::failed(name, &id, Kind::Corrupt, why));
            }
            listing.backups
        } else {
            let id = args.backup.clone().unwrap_or_else(|| "latest".into());
            // Damaged backups passed over become failures below, not warnings.
            let sel = match select(&repo, name, &Selector::Id(id)).await {
                Ok(sel) => {
                    if sel.selector != sel.manifest.id {
                        ctx.out.line(sel.describe());
                    }
                    sel
                }
                // Every candidate is damaged: that is this database's verification result.
                Err(e) if e.kind == Kind::Corrupt => {
                    reports.push(VerifyReport::failed(name, "latest", e.kind, e.to_string()));
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A damaged backup newer than the one verified is a failure of the repository's
            // newest state, not something to pass over in silence.
            for sk in &sel.skipped {
                if sk.damaged() {
                    reports.push(VerifyReport::failed(
                        name,
                        &sk.id,
                        Kind::Corrupt,
                        sk.reason.clone(),
                    ));
                }
            }
            vec![sel.manifest]
        };
        for m in manifests {
            reports.push(verify(&repo, &m, args.scratch_dir.as_deref()).await);
        }
    }
    for r in &reports {
        match &r.problem {
            None => ctx.out.line(format!(
                "ok    {}  {}  sha256, integrity_check, {} tables, {} rows  {}",
                r.database,
                r.backup,
                r.tables,
                r.rows,
                secs(r.duration_ms)
            )),
            Some(p) => ctx
                .out
                .line(format!("FAIL  {}  {}  {p}", r.database, r.backup)),
        }
    }
    if reports.is_empty() {
        return Err(Error::new(
            Kind::NotFound,
            format!("no backups to verify in {}", repo.url()),
        ));
    }
    let failed: Vec<&VerifyReport> = reports.iter().filter(|r| !r.ok).collect();
    ctx.out.json(
        &serde_json::json!({ "verified": reports.len(), "failed": failed.len(), "reports": reports }),
    );
    let Some(first) = failed.first() else {
        return Ok(0);
    };
    // Damage decides the exit code when there is any; otherwise the environment's failure
    // (repository unreachable: 4, scratch disk full: 8) does, so a network outage is never
    // reported as a corrupt backup.
    let kind = if failed.iter().any(|r| r.problem_kind == Some(Kind::Corrupt)) {
        Kind::Corrupt
    } else {
        first.problem_kind.unwrap_or(Kind::Internal)
    };
    let what = if kind == Kind::Corrupt {
        "failed verification"
    } else {
        "could not be verified"
    };
    Err(Error::new(
        kind,
        format!(
            "{} of {} backup(s) {what}: {} {}",
            failed.len(),
            reports.len(),
            first.backup,
            first.problem.clone().unwrap_or_default()
        ),
    ))
}
