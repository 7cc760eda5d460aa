//! `lifeboat tenants map`: how every table's rows belong to a tenant.

use crate::shared_args::{ImageArgs, ScratchArgs};
use crate::Ctx;
use lifeboat::error::{Error, Result};
use lifeboat::fs::scratch::scratch;
use lifeboat::restore::image::open_read;
use lifeboat::tenant::map::discover;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat tenants map --db ./studio.db
  lifeboat tenants map --backup latest --db studio-platform-db --json

Defaults: tenant table `tenants`, tenant column `tenant_id`; change them, exclude tables or add links
the schema lacks with `tenancy = { table = \"…\", column = \"…\", exclude = […], links = { \"t.col\" = \"parent\" } }`
on the [[database]] in lifeboat.toml.")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Print the tenancy map.
    Map(MapArgs),
}

#[derive(clap::Args, Debug)]
struct MapArgs {
    #[command(flatten)]
    image: ImageArgs,
    #[command(flatten)]
    scratch: ScratchArgs,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let Sub::Map(a) = args.command;
    let dir = scratch(a.scratch.scratch_dir.as_deref())?;
    let (path, origin) = a.image.image(ctx, dir.path(), false).await?;
    let cfg = ctx.config.tenancy_for(a.image.db.as_deref());
    let map = tokio::task::spawn_blocking(move || discover(&open_read(&path)?, &cfg))
        .await
        .map_err(|e| Error::task("read the tenancy map", e))??;
    ctx.out.line(format!(
        "tenancy of {origin}: tenant table {} (key {})",
        map.tenant_table, map.tenant_key
    ));
    for table in map.tables.keys() {
        ctx.out.line(format!(
            "  {:<28} {}",
            lifeboat::text::escape(table),
            lifeboat::text::escape(&map.describe(table))
        ));
    }
    ctx.out
        .json(&serde_json::to_value(&map).map_err(|e| Error::task("tenancy map as JSON", e))?);
    Ok(0)
}
