//! `lifeboat unpin ID`: let retention decide about a pinned backup again.

use crate::{single_database_name, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::marks::MarkKind;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The backup's id.
    #[arg(value_name = "ID")]
    id: String,
    /// The database (default: the only configured one, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    let was = repo.unmark(MarkKind::Pin, &db, &args.id).await?;
    ctx.out.line(if was {
        format!("unpinned {db} {}", args.id)
    } else {
        format!("{db} {} was not pinned", args.id)
    });
    ctx.out
        .json(&serde_json::json!({"database": db, "id": args.id, "was_pinned": was}));
    Ok(0)
}
