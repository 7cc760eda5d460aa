//! Verification: proves a stored backup restores. Each backup is downloaded into a scratch
//! directory, its stored and image checksums compared with the manifest, and the image put
//! through SQLite's full `integrity_check` and the manifest's row counts and schema hash.

use std::path::Path;
use std::time::Instant;

use crate::progress::Progress;

use crate::error::{Error, Kind, Result};
use crate::fs::scratch::scratch;
use crate::repo::manifest::Manifest;
use crate::repo::repository::Repository;
use crate::restore::to_file::{check_image, fetch, IntegrityCheck};

/// The outcome for one backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub database: String,
    pub backup: String,
    pub ok: bool,
    /// What failed, when something did.
    pub problem: Option<String>,
    /// What kind of failure: `corrupt` is the backup's fault; `repository`, `disk_full` and
    /// the others are the environment's, and say nothing about the backup.
    pub problem_kind: Option<Kind>,
    pub tables: usize,
    pub rows: u64,
    pub duration_ms: u64,
}

/// Verify one backup; a failure is reported in the result, not as an error.
pub async fn verify(repo: &Repository, m: &Manifest, scratch_dir: Option<&Path>) -> VerifyReport {
    let started = Instant::now();
    let outcome = run(repo, m, scratch_dir).await;
    VerifyReport {
        database: m.database.clone(),
        backup: m.id.clone(),
        ok: outcome.is_ok(),
        problem_kind: outcome.as_ref().err().map(|e| e.kind),
        problem: outcome.err().map(|e| e.to_string()),
        tables: m.tables.len(),
        rows: m.total_rows(),
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

impl VerifyReport {
    /// A backup that failed before it could be downloaded (its manifest is damaged).
    pub fn failed(database: &str, backup: &str, kind: Kind, problem: String) -> VerifyReport {
        VerifyReport {
            database: database.to_string(),
            backup: backup.to_string(),
            ok: false,
            problem: Some(problem),
            problem_kind: Some(kind),
            tables: 0,
            rows: 0,
            duration_ms: 0,
        }
    }
}

async fn run(repo: &Repository, m: &Manifest, scratch_dir: Option<&Path>) -> Result<()> {
    let dir = scratch(scratch_dir)?;
    let image = dir.path().join("image.sqlite");
    fetch(
        repo,
        m,
        &image,
        crate::restore::to_file::FetchOptions::HASHED,
        &Progress::hidden(),
    )
    .await?;
    let m2 = m.clone();
    tokio::task::spawn_blocking(move || check_image(&image, &m2, IntegrityCheck::Full))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("check task: {e}")))?
}
