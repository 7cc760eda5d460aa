//! A backup of a D1 database: its export made into an image (`source::d1`), then stored by the
//! same pipeline as a SQLite file's, with the export kept as the day's SQL mirror when asked.

use crate::backup::pipeline::{backup, BackupOptions};
use crate::d1::{D1Config, Wrangler};
use crate::error::{Error, Result};
use crate::fs::scratch::scratch;
use crate::progress::Progress;
use crate::repo::manifest::{Manifest, SourceInfo};
use crate::repo::Repository;
use crate::source::d1::export_image;
use crate::source::Source;

/// Back up a D1 database: export, load (the proof that the export is whole), store.
pub async fn backup_d1(
    repo: &Repository,
    db: &Source,
    d1: &D1Config,
    wrangler_cmd: Option<&str>,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<Manifest> {
    let wrangler = Wrangler::new(wrangler_cmd, d1.config.clone());
    backup_d1_with(repo, db, d1, wrangler, opts, progress).await
}

pub(crate) async fn backup_d1_with(
    repo: &Repository,
    db: &Source,
    d1: &D1Config,
    wrangler: Wrangler,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<Manifest> {
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    let (w, d, dir) = (wrangler.clone(), d1.clone(), tmp.path().to_path_buf());
    let exported = tokio::task::spawn_blocking(move || export_image(&w, &d, &dir))
        .await
        .map_err(|e| Error::task("export the D1 database", e))?
        .map_err(|e| e.context(format!("backup {}: d1 {}", db.name, d1.database)))?;
    let mut opts = opts.clone();
    opts.source = Some(SourceInfo {
        kind: "d1".into(),
        path: format!(
            "{} ({})",
            d1.database,
            if d1.remote { "remote" } else { "local" }
        ),
    });
    opts.d1 = Some(exported.info);
    opts.mirror_file = db.sql_mirror.then(|| exported.export.clone());
    let image_db = Source {
        sql_mirror: db.sql_mirror,
        ..Source::file(db.name.clone(), exported.image)
    };
    backup(repo, &image_db, &opts, progress).await
}
