//! The database a read-only command (dump, export, tenants map) reads: a stored backup, downloaded
//! and checked into scratch, or a live database file, read inside one read transaction.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::progress::Progress;
use crate::repo::{Manifest, Repository};
use crate::restore::to_file::{fetch, FetchOptions};
use crate::source::sqlite::SqliteSource;

/// Download backup `m` into `dir` and check it; its path and a description.
pub async fn fetch_image(repo: &Repository, m: &Manifest, dir: &Path) -> Result<(PathBuf, String)> {
    let image = dir.join("image.sqlite");
    fetch(repo, m, &image, FetchOptions::HASHED, &Progress::hidden()).await?;
    Ok((image, format!("backup {} of {}", m.id, m.database)))
}

/// A live database file, checked to be one; its path and a description.
pub fn live_image(path: &Path) -> Result<(PathBuf, String)> {
    SqliteSource::new(path).check()?;
    Ok((path.to_path_buf(), format!("database {}", path.display())))
}

/// Open a database read-only inside one read transaction (a live database is read as it was at
/// one instant).
pub fn open_read(path: &Path) -> Result<rusqlite::Connection> {
    SqliteSource::new(path).open_read(Duration::from_secs(30))
}
