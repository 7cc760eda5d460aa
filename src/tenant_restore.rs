//! Single-tenant restore into a live database, end to end: download and check the backup, make
//! the tenant's rows equal to the backup's ([`crate::tenant_apply`]), keep what they replaced as
//! a safety backup, and leave a record in the repository. The live database keeps serving: it is
//! only locked while the tenant's rows are written.
//!
//! The safety backup is, by default, the tenant's rows as they were, copied under the same
//! write lock just before they change, and stored as a `safety` backup that only
//! `restore --tenant` accepts; it is stored after the commit, so no network I/O happens while
//! the database is locked, and if storing it fails the copy is kept next to the database.
//! `--safety-backup full` takes a full backup of the live database first instead (its cost
//! follows the database's size, not the tenant's).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use indicatif::ProgressBar;
use serde::Serialize;

use crate::config::Database;
use crate::error::{Error, Kind, Result, ResultExt};
use crate::manifest::{BackupKind, Manifest};
use crate::repository::Repository;
use crate::restore::fetch_checking;
use crate::scratch::scratch;
use crate::snapshot::{backup, BackupOptions};
use crate::tenant::TenancyConfig;
use crate::tenant_apply::{prepare, Changed, TableChange, TenantChanges};
use crate::tenant_copy::FullScan;

pub use crate::tenant_sql::key_list;

/// What a tenant restore keeps of what it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Safety {
    /// The tenant's rows as they were (default): cheap, and exactly what the restore replaced.
    Tenant,
    /// A full backup of the live database, taken before.
    Full,
    /// Nothing (`--no-safety-backup`).
    Off,
}

impl std::str::FromStr for Safety {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tenant" => Ok(Safety::Tenant),
            "full" => Ok(Safety::Full),
            "off" | "none" => Ok(Safety::Off),
            _ => Err(format!("{s:?}: expected tenant, full or off")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantRestoreOptions {
    pub dry_run: bool,
    pub safety: Safety,
    /// How long to wait for other writers before giving up on the write lock.
    pub lock_timeout: Duration,
    pub scratch_dir: Option<PathBuf>,
}

/// What a tenant restore did (or, with a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct TenantRestoreReport {
    pub tenant: String,
    pub backup: String,
    pub database: String,
    pub into: PathBuf,
    pub dry_run: bool,
    pub at: chrono::DateTime<Utc>,
    pub duration_ms: u64,
    /// How long the live database's write lock was held.
    pub write_lock_ms: Option<u64>,
    pub tables: Vec<TableChange>,
    pub globals_inserted: std::collections::BTreeMap<String, u64>,
    pub full_scans: Vec<FullScan>,
    pub safety: Safety,
    /// The id of the safety backup in the repository.
    pub safety_backup: Option<String>,
    /// Where the safety copy was kept when it could not be stored in the repository.
    pub safety_kept_at: Option<PathBuf>,
    /// The restore record's name under `<db>/restores/`.
    pub record: Option<String>,
    /// Things that went wrong after the restore itself succeeded.
    pub warnings: Vec<String>,
}

/// Restore `tenant` from backup `m` into the live database `into`.
pub async fn restore_tenant(
    repo: &Repository,
    m: &Manifest,
    into: &Path,
    cfg: &TenancyConfig,
    tenant: &str,
    opts: &TenantRestoreOptions,
) -> Result<TenantRestoreReport> {
    let started = Instant::now();
    crate::source::SqliteSource::new(into).check()?;
    let tmp = scratch(opts.scratch_dir.as_deref())?;

    // Download and check the backup and prepare the restore (an unknown tenant or a schema
    // mismatch fails here), while a full safety backup, if asked for, runs beside it.
    let plan = async {
        let (image, check) = fetch_checking(repo, m, tmp.path()).await?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "tenant: fetched");
        let (into, cfg, tenant, dir, opts2) = (
            into.to_path_buf(),
            cfg.clone(),
            tenant.to_string(),
            tmp.path().to_path_buf(),
            opts.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let prepared = prepare(&into, &image, &cfg, &tenant, &dir, opts2.lock_timeout);
            let prepared = match prepared {
                // Whatever reading a damaged image ran into, its check explains better.
                Err(e) => return Err(check.wait().err().unwrap_or(e).into()),
                Ok(p) => p,
            };
            if opts2.dry_run {
                // A dry run reports nothing from an image that has not passed its check.
                let planned = prepared.plan();
                check.wait()?;
                return Ok((planned?, None));
            }
            prepared
                .apply(|| check.wait())
                .map(|(changes, copy)| (changes, Some(copy)))
        })
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("tenant restore task: {e}")))
    };
    let full_safety = async {
        if opts.dry_run || opts.safety != Safety::Full {
            return Ok(None);
        }
        let sm = backup(
            repo,
            &live_database(m, into),
            &safety_options(m, tenant, None),
            &ProgressBar::hidden(),
        )
        .await
        .step("safety backup")?;
        Ok::<_, Error>(Some(sm))
    };
    let (applied, safety) = tokio::join!(plan, full_safety);
    let applied = applied?;
    let ((changes, live_copy), full) = match (applied, safety) {
        (Ok(done), Ok(sm)) => (done, sm),
        (Err(f), Ok(Some(sm))) => {
            if f.changed == Changed::No {
                // Nothing changed, so the safety backup protects nothing: remove it.
                remove_backup(repo, &sm).await;
                return Err(f.error);
            }
            return Err(f.error.context(format!(
                "the safety backup {} of the database as it was is kept",
                sm.id
            )));
        }
        (Err(f), _) => return Err(f.error),
        (Ok(_), Err(e)) => return Err(e),
    };
    let TenantChanges {
        tables,
        globals_inserted,
        full_scans,
        write_lock_ms,
    } = changes;
    let mut report = TenantRestoreReport {
        tenant: tenant.to_string(),
        backup: m.id.clone(),
        database: m.database.clone(),
        into: into.to_path_buf(),
        dry_run: opts.dry_run,
        at: Utc::now(),
        duration_ms: 0,
        write_lock_ms,
        tables,
        globals_inserted,
        full_scans,
        safety: opts.safety,
        safety_backup: full.map(|sm| sm.id),
        safety_kept_at: None,
        record: None,
        warnings: Vec::new(),
    };
    if opts.dry_run {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    if let (Safety::Tenant, Some(copy)) = (opts.safety, live_copy) {
        store_tenant_copy(repo, m, into, tenant, &copy, &mut report).await;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => match repo.put_record(&m.database, tenant, body).await {
            Ok(name) => report.record = Some(name),
            Err(e) => report
                .warnings
                .push(format!("the restore record was not written: {e}")),
        },
        Err(e) => report
            .warnings
            .push(format!("the restore record was not written: {e}")),
    }
    Ok(report)
}

/// Store the tenant's rows as they were as a safety backup; if that fails, keep the copy next
/// to the live database, so what the restore replaced is never lost.
async fn store_tenant_copy(
    repo: &Repository,
    m: &Manifest,
    into: &Path,
    tenant: &str,
    copy: &Path,
    report: &mut TenantRestoreReport,
) {
    let db = Database {
        path: copy.to_path_buf(),
        ..live_database(m, into)
    };
    let opts = safety_options(m, tenant, Some(tenant.to_string()));
    match backup(repo, &db, &opts, &ProgressBar::hidden()).await {
        Ok(sm) => report.safety_backup = Some(sm.id),
        Err(e) => {
            let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
            let mut kept = into.as_os_str().to_os_string();
            kept.push(format!(".pre-tenant-restore-{stamp}"));
            let kept = PathBuf::from(kept);
            match crate::place::rename_noreplace(copy, &kept)
                .or_else(|_| std::fs::copy(copy, &kept).map(|_| ()))
            {
                Ok(()) => {
                    report.warnings.push(format!(
                        "the safety backup could not be stored in the repository ({e}); the tenant's rows as they were are kept in {} (lifeboat backup --db {} --label … stores them)",
                        kept.display(),
                        kept.display()
                    ));
                    report.safety_kept_at = Some(kept);
                }
                Err(io) => report.warnings.push(format!(
                    "the safety backup could not be stored in the repository ({e}) nor kept next to the database ({io})"
                )),
            }
        }
    }
}

fn live_database(m: &Manifest, into: &Path) -> Database {
    Database {
        name: m.database.clone(),
        path: into.to_path_buf(),
        sql_mirror: false,
        d1: None,
        wrangler: None,
    }
}

fn safety_options(m: &Manifest, tenant: &str, scope: Option<String>) -> BackupOptions {
    let what = if scope.is_some() {
        "tenant rows before restoring"
    } else {
        "before restoring"
    };
    BackupOptions {
        kind: BackupKind::Safety,
        label: Some(format!("{what} tenant {tenant} from {}", m.id)),
        tenant: scope,
        ..BackupOptions::default()
    }
}

/// Remove a safety backup that turned out not to be needed (the restore changed nothing).
async fn remove_backup(repo: &Repository, sm: &Manifest) {
    if let Err(d) = repo.delete_backup(sm).await {
        tracing::warn!("could not remove the unneeded safety backup {}: {d}", sm.id);
    }
}
