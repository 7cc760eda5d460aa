//! `lifeboat restores`: the records that tenant restores leave in the repository.

use crate::{database_names, Ctx};
use lifeboat::error::Result;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat restores
  lifeboat restores --db studio-platform-db --json")]
pub struct Args {
    /// Only this database.
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let mut all = Vec::new();
    for name in database_names(ctx, &repo, args.db.as_deref()).await? {
        for r in repo.records(&name).await? {
            let changed: u64 = r["tables"]
                .as_array()
                .map(|ts| {
                    ts.iter()
                        .map(|t| {
                            t["delete"].as_u64().unwrap_or(0)
                                + t["insert"].as_u64().unwrap_or(0)
                                + t["update"].as_u64().unwrap_or(0)
                        })
                        .sum()
                })
                .unwrap_or(0);
            ctx.out.line(format!(
                "{name}  {}  tenant {}  from {}  into {}  {changed} row changes  safety backup {}",
                r["at"].as_str().unwrap_or("?"),
                lifeboat::text::escape(r["tenant"].as_str().unwrap_or("?")),
                r["backup"].as_str().unwrap_or("?"),
                lifeboat::text::escape(r["into"].as_str().unwrap_or("?")),
                r["safety_backup"].as_str().unwrap_or("none")
            ));
            all.push(r);
        }
    }
    ctx.out.json(&serde_json::json!({ "restores": all }));
    Ok(0)
}
