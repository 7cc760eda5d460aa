//! `lifeboat restore --tenant … --into PATH`: one tenant's rows back from a backup into a live
//! database. Prints what changed (only the tables that changed, unless `--verbose`).

use std::path::Path;

use crate::{secs, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::repository::Repository;
use lifeboat::tenant::restore::{restore_tenant, Safety, TenantRestoreOptions, TenantSource};
use lifeboat::text::{escape, shell_word};

pub struct Opts {
    pub options: TenantRestoreOptions,
    pub verbose: bool,
}

pub async fn run(
    ctx: &Ctx,
    repo: &Repository,
    source: TenantSource<'_>,
    tenant: &str,
    into: &Path,
    opts: &Opts,
) -> Result<i32> {
    let cfg = ctx.config.tenancy_for(Some(source.database()));
    let report = restore_tenant(repo, source, into, &cfg, tenant, &opts.options)
        .await
        .map_err(|e| e.context("restore --tenant"))?;
    let shown = escape(tenant);
    let verb = if report.dry_run { "would" } else { "did" };
    let mut unchanged = 0;
    for c in &report.tables {
        if !c.changes() && !opts.verbose {
            unchanged += 1;
            continue;
        }
        ctx.out.line(format!(
            "  {:<28} {verb} delete {:>6}  insert {:>6}  update {:>6}",
            escape(&c.table),
            c.delete,
            c.insert,
            c.update
        ));
    }
    if unchanged > 0 {
        ctx.out.line(format!(
            "  ({unchanged} other table(s) of the tenant already equal the backup; --verbose lists them)"
        ));
    }
    for (t, n) in &report.globals_inserted {
        ctx.out.line(format!(
            "  {:<28} {} {n} referenced global row(s) missing from the live database",
            escape(t),
            if report.dry_run {
                "would insert"
            } else {
                "inserted"
            }
        ));
    }
    for s in &report.full_scans {
        ctx.out.line(format!(
            "  full scan: {} has no index that leads to a tenant's rows, so it is read whole; to avoid it: {}",
            escape(&s.table),
            s.suggestion
        ));
    }
    if let Some(id) = &report.safety_backup {
        // Undoing one tenant's restore should not roll the other tenants back: the undo is a
        // tenant-scoped restore of the safety backup, not a full one.
        let scope = match report.safety {
            Safety::Tenant => "the tenant's rows as they were",
            _ => "the whole database as it was",
        };
        // Absolute paths: the undo command works from any directory.
        let into_abs = std::path::absolute(into).unwrap_or_else(|_| into.to_path_buf());
        let url = repo.absolute_url();
        ctx.out.line(format!(
            "safety backup of {into}: {id} ({scope}; to undo just this tenant: lifeboat restore --repo {url} --db {db} --tenant {t} --backup {id} --into {abs})",
            into = into.display(),
            url = shell_word(&url),
            abs = shell_word(&into_abs.display().to_string()),
            db = shell_word(source.database()),
            t = shell_word(tenant),
        ));
    }
    for w in &report.warnings {
        say_err!("lifeboat: warning: {}", escape(w));
    }
    let changed = report.tables.iter().any(|t| t.changes()) || !report.globals_inserted.is_empty();
    if !report.dry_run && !changed {
        ctx.out.line(
            "nothing to change: the tenant already equals the backup (no safety backup kept)",
        );
    }
    if report.dry_run {
        ctx.out.line(format!(
            "dry run: nothing changed ({})",
            secs(report.duration_ms)
        ));
    } else {
        ctx.out.line(format!(
            "restored tenant {shown} from {} into {} in {} (live database write-locked for {}){}",
            escape(&source.label()),
            into.display(),
            secs(report.duration_ms),
            secs(report.write_lock_ms.unwrap_or(0)),
            report
                .record
                .as_ref()
                .map(|r| format!("; record {}/restores/{r}", source.database()))
                .unwrap_or_default()
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(0)
}
