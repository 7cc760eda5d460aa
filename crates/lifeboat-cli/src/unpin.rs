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
    remove_mark(
        ctx,
        MarkKind::Pin,
        &args.id,
        args.db.as_deref(),
        ["unpinned", "pinned"],
    )
    .await
}

/// Remove a mark (a pin, a hold) from backup `id`; `words` are the past tenses of taking it
/// off and of having it (`unpinned`, `pinned`).
pub async fn remove_mark(
    ctx: &Ctx,
    kind: MarkKind,
    id: &str,
    db: Option<&str>,
    words: [&str; 2],
) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let db = single_database_name(ctx, &repo, db).await?;
    let was = repo.unmark(kind, &db, id).await?;
    let [done, had] = words;
    ctx.out.line(if was {
        format!("{done} {db} {id}")
    } else {
        format!("{db} {id} was not {had}")
    });
    ctx.out
        .json(&serde_json::json!({"database": db, "id": id, format!("was_{had}"): was}));
    Ok(0)
}
