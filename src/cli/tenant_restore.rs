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
use crate::restore::fetch_checking;
use crate::scratch::scratch;
use crate::snapshot::{backup, BackupOptions};
use crate::tenant_restore::{restore_tenant, Mode};

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
    let cfg = tenancy_for(ctx, Some(&m.database));

    // Download and check the backup and plan the restore (an unknown tenant or a schema
    // mismatch fails here) while the safety backup of the live database runs: the two take
    // about as long, and neither changes anything.
    // A real run only needs to know the restore can go ahead; it computes the changes as it
    // applies them.
    let first = if opts.dry_run {
        Mode::Plan
    } else {
        Mode::Check
    };
    // The image's quick_check runs beside the planning and the apply's diff; the apply writes
    // nothing until the check has passed.
    let plan = async {
        let (image, check) = fetch_checking(repo, m, tmp.path())
            .await
            .step("restore --tenant")?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "tenant: fetched");
        let (into, img, cfg, tenant) = (
            into.to_path_buf(),
            image.clone(),
            cfg.clone(),
            tenant.to_string(),
        );
        let planned = tokio::task::spawn_blocking(move || {
            let planned = restore_tenant(&into, &img, &cfg, &tenant, first, || Ok(()));
            match planned {
                // Whatever reading a damaged image ran into, the check explains it better.
                Err(e) => Err(check.wait().err().unwrap_or(e)),
                // A dry run reports nothing from an image that has not passed its check.
                Ok(p) if first == Mode::Plan => check.wait().map(|()| (p, None)),
                Ok(p) => Ok((p, Some(check))),
            }
        })
        .await
        .map_err(crate::cli::internal)??;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "tenant: planned");
        Ok::<_, crate::error::Error>((image, planned))
    };
    let safety = async {
        if opts.dry_run || !opts.safety_backup {
            return Ok(None);
        }
        let db = Database {
            name: m.database.clone(),
            path: into.to_path_buf(),
            sql_mirror: false,
            d1: None,
            wrangler: None,
        };
        let bopts = BackupOptions {
            kind: BackupKind::Safety,
            label: Some(format!("before restoring tenant {tenant} from {}", m.id)),
            ..BackupOptions::default()
        };
        let sm = backup(repo, &db, &bopts, &ProgressBar::hidden())
            .await
            .step("safety backup")?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "tenant: safety backup"
        );
        Ok::<_, crate::error::Error>(Some(sm))
    };
    let (planned, safety) = tokio::join!(plan, safety);
    let ((image, (plan, check)), safety) = match (planned, safety) {
        (Ok(p), Ok(sm)) => (p, sm),
        (Err(e), Ok(Some(sm))) => {
            // Nothing was changed, so the safety backup protects nothing: remove it.
            remove_safety_backup(repo, &sm).await;
            return Err(e);
        }
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
    };
    let changes = match check {
        None => plan,
        Some(check) => {
            let (into, cfg, tenant) = (into.to_path_buf(), cfg, tenant.to_string());
            let applied = tokio::task::spawn_blocking(move || {
                restore_tenant(&into, &image, &cfg, &tenant, Mode::Apply, || check.wait())
            })
            .await
            .map_err(crate::cli::internal)?;
            match (applied, &safety) {
                (Ok(c), _) => c,
                (Err(e), Some(sm)) => {
                    // Rolled back: nothing changed, so the safety backup protects nothing.
                    remove_safety_backup(repo, sm).await;
                    return Err(e);
                }
                (Err(e), None) => return Err(e),
            }
        }
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "tenant: applied");
    if let Some(sm) = &safety {
        // Undoing one tenant's restore should not roll the other tenants back: suggest the
        // tenant-scoped restore of the safety backup, not a full one.
        ctx.out.line(format!(
            "safety backup of {into}: {id} (to undo just this tenant: lifeboat restore --repo {url} --db {db} --tenant {tenant} --backup {id} --into {into})",
            into = into.display(),
            id = sm.id,
            db = m.database,
            url = repo.url(),
        ));
    }
    let safety = safety.map(|sm| sm.id);
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
        let body = serde_json::to_vec_pretty(&record).map_err(crate::cli::internal)?;
        let name = repo
            .put_record(&m.database, tenant, body)
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

/// Remove a safety backup that turned out not to be needed (the restore changed nothing).
async fn remove_safety_backup(repo: &Repository, sm: &Manifest) {
    if let Err(d) = repo.delete_backup(sm).await {
        tracing::warn!("could not remove the unneeded safety backup {}: {d}", sm.id);
    }
}
