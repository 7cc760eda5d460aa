//! Backups: a source's consistent image, compressed and uploaded, with the manifest written last
//! (a backup exists only once its manifest does). [`pipeline`] stores an image; [`d1`] makes a D1
//! database's export into one first. [`backup_source`] takes any [`Source`].

pub mod d1;
pub mod pipeline;

pub use pipeline::{backup, BackupOptions};

use crate::error::Result;
use crate::progress::Progress;
use crate::repo::{Manifest, Repository};
use crate::source::Source;

/// Back up `source`, whatever it is: a SQLite file is read page by page, a D1 database exported
/// through wrangler first.
pub async fn backup_source(
    repo: &Repository,
    source: &Source,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<Manifest> {
    match &source.d1 {
        Some(d1) => {
            d1::backup_d1(repo, source, d1, source.wrangler.as_deref(), opts, progress).await
        }
        None => backup(repo, source, opts, progress).await,
    }
}
