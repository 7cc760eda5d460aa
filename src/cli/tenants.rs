//! `lifeboat tenants map`: how every table's rows belong to a tenant.

use std::path::PathBuf;

use crate::cli::dump::{open_read, source_image};
use crate::cli::Ctx;
use crate::error::Result;
use crate::scratch::scratch;
use crate::tenant::{discover, TenancyConfig};

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
    /// Read a stored backup: its id or `latest`.
    #[arg(long, value_name = "ID|latest")]
    backup: Option<String>,
    /// With --backup: the database's name. Without: a live database file (or configured name).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

/// The tenancy settings for `--db` (a configured name, or a path: the configured database at
/// that path, or of that name), else the only configured database's, else the defaults.
pub(crate) fn tenancy_for(ctx: &Ctx, db: Option<&str>) -> TenancyConfig {
    let cfg = &ctx.config;
    let found = match db {
        None => match cfg.databases.as_slice() {
            [only] => Some(only),
            _ => None,
        },
        Some(flag) => cfg.databases.iter().find(|d| d.name == flag).or_else(|| {
            let given = std::fs::canonicalize(flag).ok();
            let name = cfg.database(flag).ok().map(|d| d.name);
            cfg.databases.iter().find(|d| {
                let path = d
                    .path
                    .as_ref()
                    .and_then(|p| std::fs::canonicalize(cfg.base_dir.join(p)).ok());
                (given.is_some() && path == given) || name.as_deref() == Some(d.name.as_str())
            })
        }),
    };
    found.and_then(|d| d.tenancy.clone()).unwrap_or_default()
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let Sub::Map(a) = args.command;
    let dir = scratch(a.scratch_dir.as_deref())?;
    let (path, origin) = source_image(ctx, &a.backup, &None, &a.db, dir.path(), false).await?;
    let cfg = tenancy_for(ctx, a.db.as_deref());
    let map = tokio::task::spawn_blocking(move || discover(&open_read(&path)?, &cfg))
        .await
        .map_err(crate::cli::internal)??;
    ctx.out.line(format!(
        "tenancy of {origin}: tenant table {} (key {})",
        map.tenant_table, map.tenant_key
    ));
    for table in map.tables.keys() {
        ctx.out.line(format!(
            "  {:<28} {}",
            crate::text::escape(table),
            crate::text::escape(&map.describe(table))
        ));
    }
    ctx.out
        .json(&serde_json::to_value(&map).map_err(crate::cli::internal)?);
    Ok(0)
}
