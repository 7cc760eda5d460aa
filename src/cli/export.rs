//! `lifeboat export --tenant`: one tenant's whole data graph, out of a backup or a live database.

use std::path::PathBuf;
use std::time::Instant;

use crate::cli::dump::{open_read, source_image, write_out};
use crate::cli::tenants::tenancy_for;
use crate::cli::{secs, Ctx};
use crate::dump::{dump_filtered, Dialect};
use crate::error::{Error, Kind, Result};
use crate::import::{load, open_dump, ImportOptions};
use crate::place::{FileId, Placement};
use crate::restore::IntegrityCheck;
use crate::scratch::scratch;
use crate::tenant::discover;
use crate::tenant_export::{check_tenant, filter, write_json, Format};

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
    /// Export from a stored backup: its id or `latest`.
    #[arg(long, value_name = "ID|latest", conflicts_with = "at")]
    backup: Option<String>,
    /// Export from the newest backup taken at or before this UTC time.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// With --backup/--at: the database's name. Without: a live database file (or configured name).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// SQL dialect for --format sql.
    #[arg(long, value_enum, default_value_t = Dialect::Sqlite)]
    dialect: Dialect,
    /// Output file (`-` for stdout, json and sql only).
    #[arg(long, value_name = "FILE|-")]
    out: String,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let started = Instant::now();
    if args.format == Format::Sqlite && args.out == "-" {
        return Err(Error::new(Kind::Config, "--format sqlite needs --out FILE"));
    }
    if args.out != "-" {
        ctx.refuse_inside_repository(std::path::Path::new(&args.out))?;
    }
    let dir = scratch(args.scratch_dir.as_deref())?;
    let (path, origin) = source_image(
        ctx,
        &args.backup,
        &args.at,
        &args.db,
        dir.path(),
        args.out == "-",
    )
    .await?;
    let cfg = tenancy_for(ctx, args.db.as_deref());
    let (tenant, format, dialect, out, force) = (
        args.tenant.clone(),
        args.format,
        args.dialect,
        args.out.clone(),
        args.force,
    );
    let scratch_path = dir.path().to_path_buf();
    let origin2 = origin.clone();
    let rows = tokio::task::spawn_blocking(move || -> Result<u64> {
        let conn = open_read(&path)?;
        let map = discover(&conn, &cfg)?;
        check_tenant(&conn, &map, &tenant)?;
        let label = format!("tenant {tenant} of {origin2}");
        match format {
            Format::Json => {
                let (owned, referenced) = write_out(&out, force, "export", &path, |w| {
                    write_json(&conn, &map, &tenant, &origin2, w)
                })?;
                Ok(owned.values().sum::<u64>() + referenced.values().sum::<u64>())
            }
            Format::Sql => {
                let f = filter(&map, &tenant);
                Ok(write_out(&out, force, "export", &path, |w| {
                    dump_filtered(&conn, dialect, &label, w, Some(&f))
                })?
                .rows)
            }
            Format::Sqlite => {
                let target = PathBuf::from(&out);
                // The output is a database: with --force an existing one is moved aside, as a
                // restore does; the database being read is never the output.
                // Like a dump, an export never replaces a database (an application's live
                // database would be left holding one tenant); --force replaces other files.
                crate::cli::dump::refuse_database(&crate::place::resolve_links(&target)?.0, &path)?;
                let placement = Placement::prepare(&target, force, "export")?;
                crate::cli::dump::refuse_database(&placement.target().path, &path)?;
                let tmp = placement.tmp().to_path_buf();
                let sql = scratch_path.join("tenant.sql");
                let f = filter(&map, &tenant);
                let file = std::fs::File::create(&sql).map_err(|e| Error::io("export", e))?;
                let mut w = std::io::BufWriter::new(file);
                let stats = dump_filtered(&conn, Dialect::Sqlite, &label, &mut w, Some(&f))?;
                std::io::Write::flush(&mut w).map_err(|e| Error::io("export", e))?;
                let opts = ImportOptions {
                    force: false,
                    integrity: IntegrityCheck::Quick,
                    foreign_key_check: true,
                };
                load(open_dump(&sql)?, &tmp, &opts)?;
                if let Some(aside) = placement.commit(FileId::of(&tmp))? {
                    eprintln!(
                        "lifeboat: previous {out} moved aside to {}",
                        aside.display()
                    );
                }
                Ok(stats.rows)
            }
        }
    })
    .await
    .map_err(crate::cli::internal)??;
    let msg = format!(
        "exported tenant {} of {origin} as {:?} to {}: {rows} rows  {}",
        crate::text::escape(&args.tenant),
        args.format,
        if args.out == "-" { "stdout" } else { &args.out },
        secs(started.elapsed().as_millis() as u64)
    );
    if args.out == "-" {
        if !ctx.out.quiet {
            eprintln!("{msg}");
        }
    } else {
        ctx.out.line(msg);
    }
    ctx.out.json(&serde_json::json!({
        "tenant": args.tenant, "origin": origin, "format": format!("{:?}", args.format).to_lowercase(),
        "out": args.out, "rows": rows, "duration_ms": started.elapsed().as_millis() as u64,
    }));
    Ok(0)
}
