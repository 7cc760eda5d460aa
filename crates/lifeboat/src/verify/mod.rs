//! Verification: proves stored backups restore, rung by rung, and keeps what it found in each
//! backup's verify record ([`crate::repo::verify_record`]):
//! 1. **catalogue**: manifests parse, data objects exist at their recorded size, no gaps
//!    ([`findings`], from the listing alone);
//! 2. **read**: every stored byte read and checked against the manifest's checksums, nothing
//!    written ([`read`]; a rolling subset each run, [`choose`]);
//! 3. **restore-test**: restored into scratch, `integrity_check` and `foreign_key_check` run,
//!    row counts and schema hash compared with the manifest ([`restore_test`]).
//!
//! Replicated generations have the same rungs in [`chain`]: their segments' names, then a
//! replay of the chain onto its snapshot in scratch.
//!
//! A failure that is the backup's own (kind [`Kind::Corrupt`]) marks it bad; the network's or
//! the scratch disk's says nothing about the backup and is reported with its own kind.

pub mod chain;
pub mod choose;
pub mod database;
pub mod findings;
pub mod rungs;

use std::path::Path;
use std::time::Instant;

use chrono::Utc;

use crate::error::{Error, Kind, Result};
use crate::fs::scratch::scratch;
use crate::progress::Progress;
use crate::repo::manifest::Manifest;
use crate::repo::repository::Repository;
use crate::repo::verify_record::{Check, Rung, VerifyRecord};
use crate::restore::to_file::{check_image, fetch, FetchOptions, IntegrityCheck};
use crate::source::sqlite::open_image;

/// The outcome of one check of one backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub database: String,
    pub backup: String,
    pub rung: Rung,
    pub ok: bool,
    /// What failed, when something did.
    pub problem: Option<String>,
    /// What kind of failure: `corrupt` is the backup's fault; `repository`, `disk_full` and
    /// the others are the environment's, and say nothing about the backup.
    pub problem_kind: Option<Kind>,
    /// What passed but deserves a look (foreign key violations, which the source has too).
    pub warnings: Vec<String>,
    pub tables: usize,
    pub rows: u64,
    pub duration_ms: u64,
    /// Deleted by a prune while it was being checked: no finding, no record.
    pub pruned: bool,
    /// This check is the one that found the backup bad (it was not before): what to alert.
    pub newly_bad: bool,
}

impl VerifyReport {
    fn of(m: &Manifest, rung: Rung, started: Instant, outcome: Result<Vec<String>>) -> Self {
        let (warnings, err) = match outcome {
            Ok(w) => (w, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        VerifyReport {
            database: m.database.clone(),
            backup: m.id.clone(),
            rung,
            ok: err.is_none(),
            problem_kind: err.as_ref().map(|e| e.kind),
            problem: err.map(|e| e.to_string()),
            warnings,
            tables: m.tables.len(),
            rows: m.total_rows(),
            duration_ms: started.elapsed().as_millis() as u64,
            pruned: false,
            newly_bad: false,
        }
    }

    /// A backup that failed before it could be downloaded (its manifest is damaged).
    pub fn failed(database: &str, backup: &str, kind: Kind, problem: String) -> VerifyReport {
        VerifyReport {
            database: database.to_string(),
            backup: backup.to_string(),
            rung: Rung::Catalogue,
            ok: false,
            problem: Some(problem),
            problem_kind: Some(kind),
            warnings: Vec::new(),
            tables: 0,
            rows: 0,
            duration_ms: 0,
            pruned: false,
            newly_bad: false,
        }
    }

    /// Whether the failure is the backup's own.
    pub fn damaged(&self) -> bool {
        !self.ok && !self.pruned && self.problem_kind == Some(Kind::Corrupt)
    }
}

/// Restore-test one backup (the repository's copy, downloaded into scratch); a failure is
/// reported in the result, not as an error.
pub async fn restore_test(
    repo: &Repository,
    m: &Manifest,
    scratch_dir: Option<&Path>,
) -> VerifyReport {
    let started = Instant::now();
    let outcome = run_restore_test(repo, m, scratch_dir).await;
    VerifyReport::of(m, Rung::RestoreTest, started, outcome)
}

/// Read every byte of one backup and check it against the manifest's checksums (stored and
/// image sha256, zstd's frame checksum, the image size), writing nothing.
pub async fn read(repo: &Repository, m: &Manifest) -> VerifyReport {
    let started = Instant::now();
    let outcome = fetch(
        repo,
        m,
        Path::new("/dev/null"),
        FetchOptions::READ_ONLY,
        &Progress::hidden(),
    )
    .await
    .map(|_| Vec::new());
    VerifyReport::of(m, Rung::Read, started, outcome)
}

async fn run_restore_test(
    repo: &Repository,
    m: &Manifest,
    scratch_dir: Option<&Path>,
) -> Result<Vec<String>> {
    let dir = scratch(scratch_dir)?;
    let image = dir.path().join("image.sqlite");
    fetch(repo, m, &image, FetchOptions::HASHED, &Progress::hidden()).await?;
    let m2 = m.clone();
    // The foreign key check reads the same pages as the integrity check and the row counts:
    // on its own connection beside them (it was a third of the test's time after them).
    tokio::task::spawn_blocking(move || {
        let (checked, fks) = std::thread::scope(|s| {
            let fks = s.spawn(|| foreign_keys(&image, &m2));
            (check_image(&image, &m2, IntegrityCheck::Full), fks.join())
        });
        checked?;
        fks.map_err(|_| Error::new(Kind::Internal, "foreign key check thread panicked"))?
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("check task: {e}")))?
}

/// `PRAGMA foreign_key_check` on the image. Violations are warnings, not damage: SQLite does
/// not enforce foreign keys unless the app asks, so a faithful copy has whatever the source has.
fn foreign_keys(image: &Path, m: &Manifest) -> Result<Vec<String>> {
    let failed = |e| {
        Error::sqlite(
            Kind::Internal,
            format!("check backup {}: foreign_key_check", m.id),
            e,
        )
    };
    let conn = open_image(image).map_err(failed)?;
    let mut stmt = conn.prepare("PRAGMA foreign_key_check").map_err(failed)?;
    let mut rows = stmt.query([]).map_err(failed)?;
    let (mut n, mut first) = (0u64, None);
    while let Some(r) = rows.next().map_err(failed)? {
        n += 1;
        if first.is_none() {
            let (table, parent): (String, String) =
                (r.get(0).map_err(failed)?, r.get(2).map_err(failed)?);
            let rowid: Option<i64> = r.get(1).map_err(failed)?;
            first = Some(format!(
                "{table} row {} -> {parent}",
                rowid.map_or("?".into(), |r| r.to_string())
            ));
        }
    }
    Ok(match first {
        Some(f) => vec![format!(
            "foreign_key_check: {n} row(s) reference a missing parent, the first {f} (the source has them too unless restored data is damaged)"
        )],
        None => Vec::new(),
    })
}

/// Keep a report in its backup's verify record: a pass, or a failure of the backup's own
/// (which makes it bad). An environment's failure records nothing. A backup deleted meanwhile
/// (a prune) is marked `pruned` and gets no record. Returns the record written.
pub async fn record(repo: &Repository, r: &mut VerifyReport) -> Result<Option<VerifyRecord>> {
    if !r.ok && r.problem_kind != Some(Kind::Corrupt) {
        return Ok(None);
    }
    if !r.ok {
        match repo.manifest(&r.database, &r.backup).await {
            Err(e) if e.kind == Kind::NotFound => {
                r.pruned = true;
                return Ok(None);
            }
            _ => {}
        }
    }
    let at = Utc::now();
    let check = Check {
        at,
        ok: r.ok,
        problem: r.problem.clone(),
        duration_ms: r.duration_ms,
    };
    let rec = repo
        .record_check(&r.database, &r.backup, r.rung, check)
        .await?;
    r.newly_bad = rec.bad.as_ref().is_some_and(|b| b.since == at);
    Ok(Some(rec))
}

/// Whether a damaged listing entry can be judged bad: only a data object missing or cut short,
/// under a manifest this lifeboat reads. A manifest it cannot parse may be a newer lifeboat's
/// (or one byte away from whole): never judged, so never deleted by retention.
fn judgeable(problem: &str) -> bool {
    problem.starts_with("data object ")
}

/// Record the catalogue's damage (a data object missing or cut short, a manifest that is not a
/// manifest) on the backups not yet known bad; returns the ids that became bad, and whether the
/// listing is stale (something changed since it was read). Each problem is looked at again
/// first: a prune deleting the backup between the listing's pages looks like a missing object.
pub async fn record_catalogue(
    repo: &Repository,
    db: &str,
    listing: &crate::repo::listing::Listing,
) -> Result<(Vec<String>, bool)> {
    use object_store::ObjectStoreExt;
    let mut newly = Vec::new();
    let mut stale = false;
    for (id, problem) in &listing.damaged {
        if !judgeable(problem) || listing.bad(id).is_some() {
            continue;
        }
        match repo.manifest(db, id).await {
            Err(e) if e.kind == Kind::NotFound => {
                stale = true; // pruned meanwhile
                continue;
            }
            Err(e) if e.kind != Kind::Corrupt => return Err(e),
            Err(_) => {}
            Ok(m) => {
                let key = repo.prefix(db).join(m.data_object.as_str());
                let whole = match repo.backend().store.head(&key).await {
                    Ok(meta) => meta.size == m.stored_size,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(repo.err("check data object", e)),
                };
                if whole {
                    stale = true; // it was being written or replaced while listed
                    continue;
                }
            }
        }
        let check = Check {
            at: Utc::now(),
            ok: false,
            problem: Some(problem.clone()),
            duration_ms: 0,
        };
        repo.record_check(db, id, Rung::Catalogue, check).await?;
        newly.push(id.clone());
        stale = true;
    }
    Ok((newly, stale))
}

/// Restore-test a backup just written (`verify_after_backup`): the repository's copy, not the
/// local temp file, so what the store kept is what is proven. The result is recorded.
pub async fn after_backup(
    repo: &Repository,
    m: &Manifest,
    scratch_dir: Option<&Path>,
) -> VerifyReport {
    fault::corrupt_upload(repo, m).await;
    let mut r = restore_test(repo, m, scratch_dir).await;
    if let Err(e) = record(repo, &mut r).await {
        r.warnings
            .push(format!("the result could not be recorded: {e}"));
    }
    r
}

/// Fault injection for the test suite, compiled into debug builds only:
/// `LIFEBOAT_FAULT=corrupt-upload` flips one byte in the middle of each data object just
/// stored, before `verify_after_backup` reads it (a disk or a provider that damaged the
/// upload), so the tests prove the damage is caught end to end.
mod fault {
    use super::*;

    pub async fn corrupt_upload(repo: &Repository, m: &Manifest) {
        if !cfg!(debug_assertions)
            || std::env::var("LIFEBOAT_FAULT").as_deref() != Ok("corrupt-upload")
        {
            return;
        }
        use object_store::{ObjectStoreExt, PutPayload};
        let key = repo.key(&m.database, &m.id, crate::repo::repository::DATA_SUFFIX);
        let store = &repo.backend().store;
        let Ok(got) = store.get(&key).await else {
            return;
        };
        let Ok(bytes) = got.bytes().await else {
            return;
        };
        let mut v = bytes.to_vec();
        let mid = v.len() / 2;
        if let Some(b) = v.get_mut(mid) {
            *b ^= 0x10;
        }
        let _ = store.put(&key, PutPayload::from(v)).await;
    }
}
