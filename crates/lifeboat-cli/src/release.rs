//! `lifeboat release ID`: lift the hold a shrinking backup put on the backup before it.

use crate::{single_database_name, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::marks::MarkKind;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:
  lifeboat release backup-2026-11-20T020000Z    # after checking the drop was meant")]
pub struct Args {
    /// The held backup's id.
    #[arg(value_name = "ID")]
    id: String,
    /// The database (default: the only configured one, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    let was = repo.unmark(MarkKind::Hold, &db, &args.id).await?;
    ctx.out.line(if was {
        format!(
            "released {db} {}: retention decides about it again",
            args.id
        )
    } else {
        format!("{db} {} was not held", args.id)
    });
    ctx.out
        .json(&serde_json::json!({"database": db, "id": args.id, "was_held": was}));
    Ok(0)
}
