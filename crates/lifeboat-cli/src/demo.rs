//! `lifeboat demo`: the README's first command. Builds a realistic multi-tenant database, then
//! runs backup, list, verify, restore and a tenant restore against a local repository
//! (`lifeboat::demo::walkthrough`), printing each step with its time.

use std::path::PathBuf;

use indicatif::ProgressDrawTarget;

use crate::{secs, Ctx};
use lifeboat::demo::walkthrough::{run as run_demo, Demo, Step};
use lifeboat::error::Result;
use lifeboat::repo::manifest::human_size;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat demo
  lifeboat demo --size 800 --dir /tmp/lifeboat-bench")]
pub struct Args {
    /// Working directory for the sample database, repository and restored copy.
    #[arg(long, default_value = "lifeboat-demo")]
    dir: PathBuf,
    /// Approximate size of the sample database in MB.
    #[arg(long, default_value_t = 50)]
    size: u64,
    /// Random seed for the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only generate the sample database (the benchmarks use this).
    #[arg(long)]
    generate_only: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let out = &ctx.out;
    let demo = Demo {
        repo_url: ctx
            .repo_flag
            .clone()
            .unwrap_or_else(|| format!("file://{}", args.dir.join("repo").display())),
        dir: args.dir,
        size_mb: args.size,
        seed: args.seed,
        generate_only: args.generate_only,
    };
    // The backup's bar shows from the end of the generation on.
    let pb = out.progress("backup");
    let shown = !pb.is_hidden();
    pb.set_draw_target(ProgressDrawTarget::hidden());
    let summary = run_demo(&demo, &crate::bar(&pb), |step| {
        match step {
            Step::BackedUp { .. } => pb.finish_and_clear(),
            Step::Generated { .. } if shown => pb.set_draw_target(ProgressDrawTarget::stderr()),
            _ => {}
        }
        out.line(line(&step));
    })
    .await;
    pb.finish_and_clear();
    let summary = summary?;
    if demo.generate_only {
        return Ok(0);
    }
    out.line(format!(
        "Done. Try: lifeboat list --repo {}   |   sqldiff {} {}",
        demo.repo_url,
        summary.database.display(),
        summary.restored.display()
    ));
    out.json(&serde_json::json!({
        "database": summary.database, "generated_bytes": summary.generated_bytes,
        "tenants": summary.tenants, "backup": summary.backup, "verify": summary.verify,
        "restore": summary.restore,
    }));
    Ok(0)
}

/// The line a step prints.
fn line(step: &Step) -> String {
    match step {
        Step::Generated {
            path,
            bytes,
            tenants,
            rows,
            internal_rows,
            ms,
        } => {
            let of_which = if *internal_rows > 0 {
                format!(
                    " ({} generated + {internal_rows} in SQLite's own sqlite_sequence)",
                    rows - internal_rows
                )
            } else {
                String::new()
            };
            format!(
                "1. generated {}: {}, {tenants} tenants, {rows} rows{of_which}  {}",
                path.display(),
                human_size(*bytes),
                secs(*ms)
            )
        }
        Step::BackedUp {
            manifest: m,
            repo_url,
            ms,
        } => format!(
            "2. backup  {}  {} -> {} ({:.1}x) in {repo_url}  {}",
            m.id,
            human_size(m.image_size),
            human_size(m.stored_size),
            m.ratio(),
            secs(*ms)
        ),
        Step::Listed {
            complete,
            incomplete,
            newest,
            ms,
        } => format!(
            "3. list    {complete} complete backup(s), {incomplete} incomplete; newest {}  {}",
            newest.unwrap_or("-"),
            secs(*ms)
        ),
        Step::Verified(r) => format!(
            "4. verify  {}  sha256 ok, integrity_check ok, {} tables, {} rows  {}",
            r.backup,
            r.tables,
            r.rows,
            secs(r.duration_ms)
        ),
        Step::Restored { report: r, ms } => format!(
            "5. restore {} -> {}  {} tables, {} rows, same schema and row counts as the source  {}",
            r.backup,
            r.target.display(),
            r.tables,
            r.rows,
            secs(*ms)
        ),
        Step::TenantRestored {
            tenant,
            lost,
            inserted,
            bookings_now,
            ms,
        } => format!(
            "6. tenant  deleted {lost} bookings of tenant studio-3 ({tenant}); restore --tenant put {inserted} rows back, {bookings_now} bookings now, other tenants untouched  {}",
            secs(*ms)
        ),
    }
}
