//! `lifeboat cleanup`: remove incomplete backups (objects without a manifest) left by crashes.

use std::time::Duration;

use chrono::Utc;

use crate::cli::{database_names, parse_duration, Ctx};
use crate::error::Result;
use crate::manifest::human_size;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat cleanup --dry-run
  lifeboat cleanup --db studio-platform-db --older-than 6h")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Leave leftovers younger than this alone: they may be a backup still running.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    older_than: Duration,
    /// Show what would be removed.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let cutoff = Utc::now() - chrono::Duration::from_std(args.older_than).unwrap_or_default();
    let mut removed = Vec::new();
    for name in database_names(ctx, &repo, args.db.as_deref()).await? {
        for l in repo.list(&name).await?.incomplete {
            if l.last_modified > cutoff {
                ctx.out.line(format!(
                    "keep    {name}  {}  (younger than {})",
                    l.id,
                    humantime::format_duration(args.older_than)
                ));
                continue;
            }
            if !args.dry_run {
                repo.remove_leftover(&name, &l).await?;
            }
            let verb = if args.dry_run {
                "would remove"
            } else {
                "removed"
            };
            ctx.out
                .line(format!("{verb}  {name}  {}  {}", l.id, human_size(l.size)));
            removed.push(serde_json::json!({"database": name, "id": l.id, "objects": l.objects}));
        }
    }
    ctx.out
        .json(&serde_json::json!({ "dry_run": args.dry_run, "removed": removed }));
    Ok(0)
}
