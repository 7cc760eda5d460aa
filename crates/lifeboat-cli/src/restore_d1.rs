//! `lifeboat restore --to-d1` and `restore --tenant … --into-d1`: a backup, or one tenant of it,
//! into a Cloudflare D1 database; prints the steps and what changed.

use crate::restore::Args;
use crate::{secs, Ctx};
use lifeboat::config::D1TargetFlags;
use lifeboat::d1::D1Target;
use lifeboat::error::{Result, ResultExt};
use lifeboat::repo::{Manifest, Repository};
use lifeboat::restore::to_d1::restore_backup_d1;
use lifeboat::tenant::to_d1::restore_tenant_from_backup_d1;

/// The D1 database `name` as a restore target, from the config and the flags.
fn d1_target(ctx: &Ctx, args: &Args, name: &str, m: &Manifest) -> Result<D1Target> {
    let remote = if args.local {
        Some(false)
    } else if args.remote {
        Some(true)
    } else {
        None
    };
    let flags = D1TargetFlags {
        remote,
        wrangler_config: args.wrangler_config.clone(),
        max_import_file: args.max_import_file,
    };
    ctx.config.d1_target(name, &m.database, &flags)
}

pub async fn to_d1(
    ctx: &Ctx,
    args: &Args,
    repo: &Repository,
    m: &Manifest,
    name: &str,
) -> Result<i32> {
    let target = d1_target(ctx, args, name, m)?;
    let report = restore_backup_d1(repo, m, &target, args.force, args.dry_run)
        .await
        .step("restore")?;
    ctx.out.line(format!(
        "  download and check {}  {}",
        m.id,
        secs(report.fetch_ms)
    ));
    for (step, ms) in &report.steps {
        ctx.out.line(format!("  {step}  {}", secs(*ms)));
    }
    if let Some(id) = &report.safety_backup {
        ctx.out.line(format!(
            "safety backup of the target before it was replaced: {id} (database {})",
            target.backup_name
        ));
    }
    let place = if report.remote { "remote" } else { "local" };
    if report.dry_run {
        let drop = match report.would_drop {
            0 => String::new(),
            n => format!("back it up, drop its {n} tables, views and triggers and "),
        };
        ctx.out.line(format!(
            "dry run: {} {} downloaded and checked; would {drop}import {} tables, {} rows into D1 database {} ({place}) in {} atomic file(s); nothing changed",
            m.database, m.id, report.manifest_tables, report.rows, report.database, report.import_parts
        ));
    } else {
        let event = lifeboat::repo::events::Event::new(
            lifeboat::repo::events::RESTORE_DONE,
            &m.database,
            &format!(
                "restored {} into D1 database {} ({place})",
                m.id, report.database
            ),
        )
        .with_backup(&m.id)
        .with_details(serde_json::json!({
            "d1": report.database,
            "remote": report.remote,
            "safety_backup": report.safety_backup,
        }));
        repo.log_event_best_effort(&m.database, &event).await;
        ctx.out.line(format!(
            "restored {} {} into D1 database {} ({place}): {} tables (backup: {}), {} rows, row counts match",
            m.database,
            m.id,
            report.database,
            report.tables,
            report.manifest_tables,
            report.rows
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(0)
}

/// `restore --tenant … --into-d1 DB`.
pub async fn tenant_into_d1(
    ctx: &Ctx,
    args: &Args,
    repo: &Repository,
    m: &Manifest,
    tenant: &str,
    name: &str,
) -> Result<i32> {
    let target = d1_target(ctx, args, name, m)?;
    let cfg = ctx.config.tenancy_for(Some(&m.database));
    let report = restore_tenant_from_backup_d1(
        repo,
        m,
        &target,
        &cfg,
        tenant,
        !args.no_safety_backup,
        args.dry_run,
    )
    .await
    .step("restore --tenant")?;
    for (step, ms) in &report.steps {
        ctx.out.line(format!("  {step}  {}", secs(*ms)));
    }
    if let Some(id) = &report.safety_backup {
        ctx.out.line(format!(
            "safety backup of the target: {id} (database {})",
            target.backup_name
        ));
    }
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    let tenant = lifeboat::text::escape(tenant);
    if report.dry_run {
        ctx.out.line(format!(
            "dry run: would replace tenant {tenant}'s rows in D1 database {} with the {rows} rows in {} tables of {} (dropping and recreating {} trigger(s)); nothing changed",
            report.database,
            report.tables.len(),
            m.id,
            report.triggers_recreated
        ));
    } else {
        ctx.out.line(format!(
            "restored tenant {tenant} from {} into D1 database {}: {rows} rows in {} tables match the backup; {} trigger(s) dropped and recreated",
            m.id,
            report.database,
            report.tables.len(),
            report.triggers_recreated
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(0)
}
