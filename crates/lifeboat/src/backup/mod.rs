//! Backups: a source's consistent image, compressed and uploaded, with the manifest written last
//! (a backup exists only once its manifest does). [`pipeline`] stores an image; [`d1`] makes a D1
//! database's export into one first; a SQL dump is loaded into one (`source::sql_dump`);
//! [`unchanged`] tells a scheduled run which databases it may skip.
//!
//! Two steps for any [`Source`]: [`prepare`] checks it (and loads a dump) before the repository
//! is touched, so bad input changes nothing; [`store`] backs it up.

pub mod d1;
pub mod pipeline;
pub mod shrinkage;
pub mod unchanged;

pub use pipeline::{backup, BackupOptions};

use std::path::Path;

use crate::d1::D1Config;
use crate::error::{Error, Result, ResultExt};
use crate::progress::Progress;
use crate::repo::manifest::SourceInfo;
use crate::repo::{Manifest, Repository};
use crate::source::sql_dump::{load, open_dump, ImportOptions};
use crate::source::sqlite::{IntegrityCheck, SqliteSource};
use crate::source::Source;

/// A source checked and ready to store.
pub enum Prepared {
    /// A SQLite file that opens and reads.
    File(Source),
    /// A D1 database: its export runs when it is stored.
    D1(Source, D1Config),
    /// A SQL dump loaded into a checked image (kept in scratch until the value is dropped).
    Dump {
        image: Source,
        info: SourceInfo,
        _scratch: tempfile::TempDir,
    },
}

impl Prepared {
    pub fn name(&self) -> &str {
        match self {
            Prepared::File(s) | Prepared::D1(s, _) => &s.name,
            Prepared::Dump { image, .. } => &image.name,
        }
    }
}

/// Check `source` before anything is written: a file must open and read (not missing, not
/// SQLite, locked past the timeout, a hot journal); a dump must load into a checked database.
pub async fn prepare(source: &Source, opts: &BackupOptions) -> Result<Prepared> {
    if let Some(d1) = &source.d1 {
        return Ok(Prepared::D1(source.clone(), d1.clone()));
    }
    if let Some(file) = &source.sql_dump {
        return load_dump(source, file, opts).await;
    }
    // Waiting for another process's lock blocks: off the async threads, or a daemon waiting
    // on a locked database would stall everything else it runs.
    let (path, lock_timeout, held) = (source.path.clone(), opts.lock_timeout, opts.held_open);
    tokio::task::spawn_blocking(move || {
        SqliteSource::new(&path)
            .held_open(held)
            .open_read(lock_timeout)
            .map(drop)
    })
    .await
    .map_err(|e| Error::task("backup", e))?
    .step("backup")?;
    Ok(Prepared::File(source.clone()))
}

/// A stored backup, and what shrank since the previous one (if anything did).
#[derive(Debug, Clone)]
pub struct Stored {
    pub manifest: Manifest,
    pub shrinkage: Option<shrinkage::Shrinkage>,
    /// What went wrong after the backup was stored (it stands): for the operator's eyes.
    pub warnings: Vec<String>,
}

/// Back up a prepared source, then check it for shrinkage against the previous good backup
/// (`shrink_alert`). The backup stands whatever that check finds; a check that cannot run is a
/// warning, not a failure.
pub async fn store(
    repo: &Repository,
    prepared: &Prepared,
    opts: &BackupOptions,
    shrink_alert: f64,
    progress: &Progress,
) -> Result<Stored> {
    let manifest = store_only(repo, prepared, opts, progress).await?;
    let mut warnings = Vec::new();
    let shrinkage = match shrinkage::check(repo, &manifest, shrink_alert).await {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "the shrinkage check could not run, so no backup is held: {e}"
            ));
            None
        }
    };
    Ok(Stored {
        manifest,
        shrinkage,
        warnings,
    })
}

async fn store_only(
    repo: &Repository,
    prepared: &Prepared,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<Manifest> {
    match prepared {
        Prepared::File(s) => backup(repo, s, opts, progress).await,
        Prepared::D1(s, d1) => {
            d1::backup_d1(repo, s, d1, s.wrangler.as_deref(), opts, progress).await
        }
        Prepared::Dump { image, info, .. } => {
            let opts = BackupOptions {
                source: Some(info.clone()),
                ..opts.clone()
            };
            backup(repo, image, &opts, progress).await
        }
    }
}

/// Load a dump into scratch space with the importer (which proves it loads and passes its
/// checks); the image is then backed up like any database file.
async fn load_dump(source: &Source, file: &Path, opts: &BackupOptions) -> Result<Prepared> {
    let scratch = crate::fs::scratch::scratch(opts.scratch_dir.as_deref())?;
    let path = scratch.path().join("from-sql.sqlite");
    let (file_owned, path_owned) = (file.to_path_buf(), path.clone());
    tokio::task::spawn_blocking(move || {
        let reader = open_dump(&file_owned)?;
        let opts = ImportOptions {
            force: false,
            integrity: IntegrityCheck::Quick,
            foreign_key_check: true,
        };
        load(reader, &path_owned, &opts)
            .map_err(|e| e.context(format!("backup --from-sql {}", file_owned.display())))
    })
    .await
    .map_err(|e| Error::task("backup --from-sql", e))??;
    let info = SourceInfo {
        kind: "sql-dump".into(),
        path: std::path::absolute(file)
            .unwrap_or_else(|_| file.to_path_buf())
            .display()
            .to_string(),
    };
    let image = Source {
        sql_mirror: source.sql_mirror,
        ..Source::file(source.name.clone(), path)
    };
    Ok(Prepared::Dump {
        image,
        info,
        _scratch: scratch,
    })
}
