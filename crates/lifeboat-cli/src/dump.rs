//! `lifeboat dump`: a SQL dump (sqlite3 or D1 dialect) of a stored backup or a live database.

use std::path::Path;
use std::time::Instant;

use crate::shared_args::{choice, ImageArgs, OutArgs, ScratchArgs};
use crate::{say_moved_aside, secs, Ctx};
use lifeboat::error::{Error, Result};
use lifeboat::fs::output_file::write_out;
use lifeboat::fs::scratch::scratch;
use lifeboat::repo::manifest::human_size;
use lifeboat::restore::image::open_read;
use lifeboat_sql::dump::{dump, Dialect};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat dump --db ./studio.db --out studio.sql                     # a live database (consistent snapshot)
  lifeboat dump --backup latest --db studio-platform-db --dialect d1 --out restore.sql
  lifeboat dump --backup backup-2026-11-20T020000Z --out - | sqlite3 copy.db

The last line of every dump is `-- lifeboat dump complete: N statements`: a dump without it is
truncated. Virtual tables (FTS5 …) cannot be dumped: lifeboat stops with an error naming the table.")]
pub struct Args {
    #[command(flatten)]
    image: ImageArgs,
    /// `sqlite` (for sqlite3) or `d1` (for wrangler d1 execute --file).
    #[arg(long, value_parser = choice::<Dialect>(Dialect::CHOICES), default_value = "sqlite")]
    dialect: Dialect,
    #[command(flatten)]
    output: OutArgs,
    #[command(flatten)]
    scratch: ScratchArgs,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let started = Instant::now();
    if args.output.out != "-" {
        ctx.refuse_inside_repository(Path::new(&args.output.out))?;
    }
    let dir = scratch(args.scratch.scratch_dir.as_deref())?;
    let (source, origin) = args
        .image
        .image(ctx, dir.path(), args.output.out == "-")
        .await?;
    let (dialect, out_arg, force) = (args.dialect, args.output.out.clone(), args.output.force);
    let origin2 = origin.clone();
    let (stats, moved) = tokio::task::spawn_blocking(move || {
        let conn = open_read(&source).map_err(|e| e.context("dump"))?;
        let written = write_out(&out_arg, force, "dump", &source, |w| {
            Ok(dump(&conn, dialect, &origin2, w)?)
        })?;
        let _ = conn.execute_batch("COMMIT");
        Ok::<_, Error>(written)
    })
    .await
    .map_err(|e| Error::task("dump", e))??;
    say_moved_aside(&args.output.out, moved);
    let msg = format!(
        "dumped {origin} ({:?} dialect) to {}: {} statements, {} tables, {} rows, {}  {}",
        args.dialect,
        if args.output.out == "-" {
            "stdout"
        } else {
            &args.output.out
        },
        stats.statements,
        stats.tables,
        stats.rows,
        human_size(stats.bytes),
        secs(started.elapsed().as_millis() as u64)
    );
    if args.output.out == "-" {
        if !ctx.out.quiet {
            say_err!("{msg}"); // stdout carries the SQL
        }
    } else {
        ctx.out.line(msg);
        ctx.out
            .json(&serde_json::json!({ "origin": origin, "out": args.output.out, "stats": stats }));
    }
    Ok(0)
}
