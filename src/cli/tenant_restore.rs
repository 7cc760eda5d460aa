//! `lifeboat restore --tenant`: one tenant's rows back from a backup into a live database.

use std::path::Path;
use std::time::Instant;

use chrono::Utc;
use indicatif::ProgressBar;

use crate::cli::tenants::tenancy_for;
use crate::cli::{secs, Ctx};
use crate::config::Database;
use crate::error::{Result, ResultExt};
use crate::manifest::{BackupKind, Manifest};
use crate::repository::Repository;
use crate::restore::fetch_checked;
use crate::snapshot::{backup, scratch, BackupOptions};
use crate::tenant_restore::restore_tenant;

pub struct Opts {
    pub dry_run: bool,
    pub safety_backup: bool,
}

pub async fn run(
    ctx: &Ctx,
    repo: &Repository,
    m: &Manifest,
    tenant: &str,
    into: &Path,
    opts: &Opts,
) -> Result<i32> {
    let started = Instant::now();
    crate::source::SqliteSource::new(into)
        .check()
        .step("restore --tenant")?;
    let tmp = scratch(None)?;
    let image = fetch_checked(repo, m, tmp.path())
        .await
        .step("restore --tenant")?;
    let cfg = tenancy_for(ctx, Some(&m.database));

    // Check the plan first (an unknown tenant or a schema mismatch changes nothing, and takes
    // no safety backup), then back the live database up, then apply.
    let plan = {
        let (into, image, cfg, tenant) = (
            into.to_path_buf(),
            image.clone(),
            cfg.clone(),
            tenant.to_string(),
        );
        tokio::task::spawn_blocking(move || restore_tenant(&into, &image, &cfg, &tenant, true))
            .await
            .map_err(crate::cli::internal)??
    };
    let mut safety = None;
    let changes = if opts.dry_run {
        plan
    } else {
        if opts.safety_backup {
            let db = Database {
                name: m.database.clone(),
                path: into.to_path_buf(),
                sql_mirror: false,
                d1: None,
                wrangler: None,
            };
            let bopts = BackupOptions {
                kind: BackupKind::Emergency,
                label: Some(format!("before restoring tenant {tenant} from {}", m.id)),
                ..BackupOptions::default()
            };
            let sm = backup(repo, &db, &bopts, &ProgressBar::hidden())
                .await
                .step("safety backup")?;
            ctx.out.line(format!(
                "safety backup of {}: {} (restore it to undo this)",
                into.display(),
                sm.id
            ));
            safety = Some(sm.id);
        }
        let (into, image, cfg, tenant) =
            (into.to_path_buf(), image.clone(), cfg, tenant.to_string());
        tokio::task::spawn_blocking(move || restore_tenant(&into, &image, &cfg, &tenant, false))
            .await
            .map_err(crate::cli::internal)??
    };
    let verb = if opts.dry_run { "would" } else { "did" };
    for c in &changes.tables {
        ctx.out.line(format!(
            "  {:<28} {verb} delete {:>6}  insert {:>6}  update {:>6}",
            c.table, c.delete, c.insert, c.update
        ));
    }
    for (t, n) in &changes.globals_inserted {
        ctx.out.line(format!(
            "  {t:<28} inserted {n} referenced global row(s) missing from the live database"
        ));
    }
    let duration_ms = started.elapsed().as_millis() as u64;
    let record = serde_json::json!({
        "tenant": tenant, "backup": m.id, "database": m.database, "into": into.display().to_string(),
        "dry_run": opts.dry_run, "at": Utc::now(), "duration_ms": duration_ms,
        "safety_backup": safety, "tables": changes.tables, "globals_inserted": changes.globals_inserted,
    });
    if opts.dry_run {
        ctx.out
            .line(format!("dry run: nothing changed ({})", secs(duration_ms)));
    } else {
        let name = format!("{}-{tenant}.json", Utc::now().format("%Y-%m-%dT%H%M%SZ"));
        let body = serde_json::to_vec_pretty(&record).map_err(crate::cli::internal)?;
        repo.put_record(&m.database, &name, body)
            .await
            .step("restore record")?;
        ctx.out.line(format!(
            "restored tenant {tenant} from {} into {} in {}; record {}/restores/{name}",
            m.id,
            into.display(),
            secs(duration_ms),
            m.database
        ));
    }
    ctx.out.json(&record);
    Ok(0)
}
