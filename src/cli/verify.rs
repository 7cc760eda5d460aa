//! `lifeboat verify`: download backups into scratch space and prove they restore.

use std::path::PathBuf;

use crate::cli::{database_names, secs, Ctx};
use crate::error::{Error, Kind, Result};
use crate::restore::{select, Selector};
use crate::verify::{verify, VerifyReport};

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
    if names.is_empty() {
        return Err(Error::new(
            Kind::NotFound,
            format!("no backups in {}", repo.url()),
        ));
    }
    let mut reports: Vec<VerifyReport> = Vec::new();
    for name in &names {
        let manifests = if args.all {
            let listing = repo.list(name).await?;
            for (id, why) in listing.damaged {
                reports.push(VerifyReport {
                    database: name.clone(),
                    backup: id,
                    ok: false,
                    problem: Some(why),
                    tables: 0,
                    rows: 0,
                    duration_ms: 0,
                });
            }
            listing.backups
        } else {
            let sel = Selector::Id(args.backup.clone().unwrap_or_else(|| "latest".into()));
            vec![select(&repo, name, &sel).await?]
        };
        for m in manifests {
            let r = verify(&repo, &m, args.scratch_dir.as_deref()).await;
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
            reports.push(r);
        }
    }
    let failed = reports.iter().filter(|r| !r.ok).count();
    ctx.out.json(
        &serde_json::json!({ "verified": reports.len(), "failed": failed, "reports": reports }),
    );
    if failed > 0 {
        let first = reports
            .iter()
            .find(|r| !r.ok)
            .and_then(|r| r.problem.clone());
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "{failed} of {} backup(s) failed verification: {}",
                reports.len(),
                first.unwrap_or_default()
            ),
        ));
    }
    Ok(0)
}
