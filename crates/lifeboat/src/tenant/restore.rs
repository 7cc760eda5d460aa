//! Single-tenant restore into a live database, end to end: download and check the backup, make
//! the tenant's rows equal to the backup's ([`crate::tenant::apply`]), keep what they replaced as
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

use crate::progress::Progress;
use crate::text::shell_word;
use chrono::Utc;
use serde::Serialize;

use crate::backup::pipeline::{backup, BackupOptions};
use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{siblings, suffixed};
use crate::fs::scratch::scratch;
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::repository::Repository;
use crate::restore::to_file::fetch_checking;
use crate::source::Source;
use crate::tenant::apply::{prepare, Changed, TableChange, TenantChanges};
use crate::tenant::copy::FullScan;
use crate::tenant::map::TenancyConfig;

pub use crate::tenant::rows::key_list;

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

/// Where the tenant's rows come from.
#[derive(Debug, Clone, Copy)]
pub enum TenantSource<'a> {
    /// A backup in the repository, downloaded and checked against its manifest.
    Backup(&'a Manifest),
    /// A local SQLite file (a tenant's rows kept next to the database by an earlier restore,
    /// or a tenant export), checked with `quick_check`, filed under `database` for records and
    /// safety backups.
    File { path: &'a Path, database: &'a str },
}

impl TenantSource<'_> {
    /// The backup id, or the file, for reports and labels.
    pub fn label(&self) -> String {
        match self {
            TenantSource::Backup(m) => m.id.clone(),
            TenantSource::File { path, .. } => path.display().to_string(),
        }
    }

    /// The database name in the repository.
    pub fn database(&self) -> &str {
        match self {
            TenantSource::Backup(m) => &m.database,
            TenantSource::File { database, .. } => database,
        }
    }
}

/// Restore `tenant` from `source` into the live database `into`.
pub async fn restore_tenant(
    repo: &Repository,
    source: TenantSource<'_>,
    into: &Path,
    cfg: &TenancyConfig,
    tenant: &str,
    opts: &TenantRestoreOptions,
) -> Result<TenantRestoreReport> {
    let started = Instant::now();
    crate::source::sqlite::SqliteSource::new(into).check()?;
    remove_stale_copies(into);
    let earlier = kept_copies(into, cfg, source.database());
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    // The copy of the tenant's live rows: in scratch for a dry run; for a restore next to the
    // live database, where it is kept (before the commit) as what the restore replaced.
    let (live_copy_at, keep_as) = if opts.dry_run {
        (
            tmp.path().join("live-tenant.sqlite"),
            tmp.path().join("kept.sqlite"),
        )
    } else {
        (
            suffixed(
                into,
                &format!(
                    ".lifeboat-tenant-copy-{}-{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                ),
            ),
            suffixed(
                into,
                &format!(
                    ".pre-tenant-restore-{}",
                    Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                ),
            ),
        )
    };

    // A full safety backup (if asked for) runs while the backup is downloaded and checked; the
    // restore writes nothing until it has been stored.
    let (safety_done, safety_ready) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let plan = async {
        let (image, check) = match source {
            TenantSource::Backup(m) => fetch_checking(repo, m, tmp.path()).await?,
            TenantSource::File { path, .. } => {
                crate::source::sqlite::SqliteSource::new(path).check()?;
                (
                    path.to_path_buf(),
                    crate::restore::to_file::PendingCheck::quick(path),
                )
            }
        };
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "tenant: fetched");
        let downloaded = matches!(source, TenantSource::Backup(_));
        let (into, cfg, tenant, dir, opts2) = (
            into.to_path_buf(),
            cfg.clone(),
            tenant.to_string(),
            tmp.path().to_path_buf(),
            opts.clone(),
        );
        let (copy_at, keep_as) = (live_copy_at.clone(), keep_as.clone());
        tokio::task::spawn_blocking(move || {
            let prepared = prepare(
                &into,
                &image,
                &cfg,
                &tenant,
                &dir,
                &copy_at,
                opts2.lock_timeout,
            );
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
            // A downloaded image is needed no more once checked (the backup's rows are in their
            // copy): removing an image of hundreds of MB takes the file system a while, so it
            // is done beside the writes rather than after them.
            let remover = std::cell::Cell::new(None);
            let ready = || {
                check.wait()?;
                if downloaded {
                    remover.set(Some(std::thread::spawn(move || {
                        let _ = std::fs::remove_file(&image);
                    })));
                }
                match safety_ready.recv() {
                    Ok(r) => r,
                    Err(_) => Err(Error::new(Kind::Internal, "safety backup: no word")),
                }
            };
            let applied = prepared
                .apply(&keep_as, ready)
                .map(|(changes, kept)| (changes, Some(kept)));
            if let Some(h) = remover.take() {
                let _ = h.join();
            }
            applied
        })
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("tenant restore task: {e}")))
    };
    let full_safety = async {
        if opts.dry_run || opts.safety != Safety::Full {
            let _ = safety_done.send(Ok(()));
            return Ok(None);
        }
        let sm = backup(
            repo,
            &live_database(source.database(), into),
            &safety_options(&source.label(), tenant, None),
            &Progress::hidden(),
        )
        .await;
        let _ = safety_done.send(match &sm {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::new(
                e.kind,
                format!("safety backup: {e}; nothing was changed"),
            )),
        });
        sm.map(Some).map_err(|e| e.context("safety backup"))
    };
    let (applied, safety) = tokio::join!(plan, full_safety);
    let applied = applied?;
    let ((changes, kept), full) = match (applied, safety) {
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
        ..
    } = changes;
    let mut report = TenantRestoreReport {
        tenant: tenant.to_string(),
        backup: source.label(),
        database: source.database().to_string(),
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
        warnings: earlier,
    };
    if opts.dry_run {
        report.duration_ms = started.elapsed().as_millis() as u64;
        return Ok(report);
    }
    let changed = report.tables.iter().any(|t| t.changes()) || !report.globals_inserted.is_empty();
    match (opts.safety, kept) {
        // Nothing changed: nothing to undo, so no safety backup is kept.
        (_, Some(copy)) if !changed => {
            let _ = std::fs::remove_file(copy);
            if let (Safety::Full, Some(id)) = (opts.safety, report.safety_backup.take()) {
                if let Ok(sm) = repo.manifest(source.database(), &id).await {
                    remove_backup(repo, &sm).await;
                }
            }
        }
        (Safety::Tenant, Some(copy)) => {
            store_tenant_copy(repo, source, tenant, into, &copy, &mut report).await
        }
        (_, Some(copy)) => {
            let _ = std::fs::remove_file(copy);
        }
        (_, None) => {}
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    match serde_json::to_vec_pretty(&report) {
        Ok(body) => match repo.put_record(source.database(), tenant, body).await {
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

/// Store the tenant's rows as they were (kept next to the live database before the commit) as a
/// safety backup, then remove the local copy; if storing fails, the copy stays where it is.
async fn store_tenant_copy(
    repo: &Repository,
    source: TenantSource<'_>,
    tenant: &str,
    into: &Path,
    copy: &Path,
    report: &mut TenantRestoreReport,
) {
    let db = live_database(source.database(), copy);
    let opts = safety_options(&source.label(), tenant, Some(tenant.to_string()));
    match backup(repo, &db, &opts, &Progress::hidden()).await {
        Ok(sm) => {
            report.safety_backup = Some(sm.id);
            let _ = std::fs::remove_file(copy);
        }
        Err(e) => {
            report.warnings.push(format!(
                "the safety backup could not be stored in the repository ({e}); the tenant's rows as they were are kept in {} (to undo just this tenant: lifeboat restore --db {} --tenant {} --from-file {} --into {})",
                copy.display(),
                shell_word(source.database()),
                shell_word(tenant),
                shell_word(&copy.display().to_string()),
                shell_word(&into.display().to_string()),
            ));
            report.safety_kept_at = Some(copy.to_path_buf());
        }
    }
}

/// Tenants' rows that earlier restores kept next to `live` (`<live>.pre-tenant-restore-*`) and
/// never stored (killed after their commit, or the repository refused them): said at every
/// tenant restore of this database, with the command that puts each back, until they are gone.
fn kept_copies(live: &Path, cfg: &TenancyConfig, database: &str) -> Vec<String> {
    let mut notes = Vec::new();
    for (path, _) in siblings(live, ".pre-tenant-restore-") {
        // The copy holds one tenant: its own row in the tenant table says which.
        let tenant = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()
        .and_then(|c| {
            let map = crate::tenant::map::discover(&c, cfg).ok()?;
            c.query_row(
                &format!(
                    "SELECT {} FROM {} LIMIT 1",
                    lifeboat_sql::quote_ident(&map.tenant_key),
                    lifeboat_sql::quote_ident(&map.tenant_table)
                ),
                [],
                |r| r.get::<_, String>(0),
            )
            .ok()
        })
        .unwrap_or_else(|| "T".to_string());
        notes.push(format!(
            "{} holds tenant {}'s rows as they were before an earlier restore (its safety backup was not stored); to put them back: lifeboat restore --db {} --tenant {} --from-file {} --into {}",
            path.display(),
            tenant,
            shell_word(database),
            shell_word(&tenant),
            shell_word(&path.display().to_string()),
            shell_word(&live.display().to_string()),
        ));
    }
    notes
}

/// Remove the working copies that tenant restores killed before their commit left next to
/// `live` (`<live>.lifeboat-tenant-copy-<pid>-…`, their process gone): they protect nothing.
fn remove_stale_copies(live: &Path) {
    for (path, rest) in siblings(live, ".lifeboat-tenant-copy-") {
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !crate::process::pid_alive(pid)) {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn live_database(name: &str, into: &Path) -> Source {
    Source::file(name, into)
}

fn safety_options(from: &str, tenant: &str, scope: Option<String>) -> BackupOptions {
    let what = if scope.is_some() {
        "tenant rows before restoring"
    } else {
        "before restoring"
    };
    BackupOptions {
        kind: BackupKind::Safety,
        label: Some(format!("{what} tenant {tenant} from {from}")),
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
