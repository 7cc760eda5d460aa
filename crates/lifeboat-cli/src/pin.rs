//! `lifeboat pin ID --reason …`: a backup no retention rule may delete.

use crate::{single_database_name, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::marks::MarkKind;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat pin backup-2026-11-20T020000Z --reason \"before the billing migration\"
  lifeboat unpin backup-2026-11-20T020000Z")]
pub struct Args {
    /// The backup's id.
    #[arg(value_name = "ID")]
    id: String,
    /// Why it is kept (shown by `lifeboat prune`).
    #[arg(long)]
    reason: String,
    /// The database (default: the only configured one, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    repo.mark(MarkKind::Pin, &db, &args.id, &args.reason)
        .await
        .map_err(|e| e.context("pin"))?;
    ctx.out.line(format!(
        "pinned {db} {}: {}",
        args.id,
        lifeboat::text::escape(&args.reason)
    ));
    ctx.out.json(
        &serde_json::json!({"database": db, "id": args.id, "pinned": true, "reason": args.reason}),
    );
    Ok(0)
}
