//! `lifeboat release ID`: lift the hold a shrinking backup put on the backup before it.

use crate::Ctx;
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
    crate::unpin::remove_mark(
        ctx,
        MarkKind::Hold,
        &args.id,
        args.db.as_deref(),
        ["released", "held"],
    )
    .await
}
