//! `lifeboat export --tenant`: one tenant's whole data graph, out of a backup or a live database.

use std::time::Instant;

use crate::shared_args::{choice, ImageArgs, OutArgs, ScratchArgs};
use crate::{say_moved_aside, secs, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::fs::scratch::scratch;
use lifeboat::tenant::export::{export_tenant, ExportRequest, Format};
use lifeboat_sql::dump::Dialect;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat export --tenant 0f8a3c1e-… --db ./studio.db --format json --out tenant.json
  lifeboat export --tenant 0f8a3c1e-… --backup latest --db studio-platform-db --format sqlite --out tenant.db
  lifeboat export --tenant 0f8a3c1e-… --backup latest --format sql --dialect d1 --out tenant.sql

The export holds every row of the tenant in every table (see `lifeboat tenants map`), the
tenant's own row, and the global rows those rows reference (users, plans …): in JSON under
\"referenced\"; in SQL and SQLite as ordinary rows, so the result passes foreign_key_check.")]
pub struct Args {
    /// The tenant's id (its primary key in the tenant table).
    #[arg(long)]
    tenant: String,
    #[command(flatten)]
    image: ImageArgs,
    #[arg(long, value_parser = choice::<Format>(Format::CHOICES), default_value = "json")]
    format: Format,
    /// SQL dialect for --format sql.
    #[arg(long, value_parser = choice::<Dialect>(Dialect::CHOICES), default_value = "sqlite")]
    dialect: Dialect,
    #[command(flatten)]
    output: OutArgs,
    #[command(flatten)]
    scratch: ScratchArgs,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let started = Instant::now();
    if args.format == Format::Sqlite && args.output.out == "-" {
        return Err(Error::new(Kind::Config, "--format sqlite needs --out FILE"));
    }
    if args.output.out != "-" {
        ctx.refuse_inside_repository(std::path::Path::new(&args.output.out))?;
    }
    let dir = scratch(args.scratch.scratch_dir.as_deref())?;
    let (image, origin) = args
        .image
        .image(ctx, dir.path(), args.output.out == "-")
        .await?;
    let request = ExportRequest {
        image,
        origin: origin.clone(),
        tenancy: ctx.config.tenancy_for(args.image.db.as_deref()),
        tenant: args.tenant.clone(),
        format: args.format,
        dialect: args.dialect,
        out: args.output.out.clone(),
        force: args.output.force,
        scratch: dir.path().to_path_buf(),
    };
    let exported = tokio::task::spawn_blocking(move || export_tenant(&request))
        .await
        .map_err(|e| Error::task("export", e))??;
    say_moved_aside(&args.output.out, exported.moved_aside);
    let rows = exported.rows;
    let msg = format!(
        "exported tenant {} of {origin} as {:?} to {}: {rows} rows  {}",
        lifeboat::text::escape(&args.tenant),
        args.format,
        if args.output.out == "-" {
            "stdout"
        } else {
            &args.output.out
        },
        secs(started.elapsed().as_millis() as u64)
    );
    if args.output.out == "-" {
        // stdout carries the export: nothing else may be written there, --json or not.
        if !ctx.out.quiet {
            say_err!("{msg}");
        }
        return Ok(0);
    }
    ctx.out.line(msg);
    ctx.out.json(&serde_json::json!({
        "tenant": args.tenant, "origin": origin, "format": format!("{:?}", args.format).to_lowercase(),
        "out": args.output.out, "rows": rows, "duration_ms": started.elapsed().as_millis() as u64,
    }));
    Ok(0)
}
