//! Point-in-time restore: the generation whose window holds the time, its snapshot fetched
//! (its stored sha256 checked as it arrives), then its segments applied (`apply`: each
//! checked, the shipped ones against the WAL checksum chain, the compacted ones against their
//! sha256, every link) up to the last commit seen at or before the time, never past it and
//! never from another generation; then `quick_check` and row counts on the result, and the
//! same placement as any restore (temp file, never overwrite without --force, old file kept
//! aside).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{check_target, FileId, Placement};
use crate::fs::page_set::Frontier;
use crate::progress::Progress;
use crate::replicate::apply::{apply, chain_plan};
use crate::replicate::compacted::FULL;
use crate::replicate::layout::{self, Generation, Window};
use crate::repo::Repository;
use crate::restore::to_file::{start_filling, RestoreOptions};
use crate::source::sqlite::IntegrityCheck;

/// What to restore to.
#[derive(Debug, Clone, Copy)]
pub enum PitrTarget {
    At(DateTime<Utc>),
    Latest,
}

/// A restorable point: a commit of a generation.
#[derive(Debug, Clone)]
pub struct Point {
    pub window: Window,
    pub seq: u64,
    /// When the replicator saw that commit (the snapshot's base for `base_seq`).
    pub at: DateTime<Utc>,
}

/// The newest commit seen at or before the target, in the newest generation that has one;
/// `None` when no generation reaches back that far (or none exists). Older than
/// `pitr_fine_within`, where shipped segments were compacted away, the points are the ends of
/// the compacted windows.
pub fn choose(windows: &[Window], target: PitrTarget) -> Option<Point> {
    for w in windows.iter().rev() {
        let g = &w.generation;
        let t = match target {
            PitrTarget::Latest => w.last().1,
            PitrTarget::At(t) => t,
        };
        if t < g.base_at {
            continue;
        }
        let mut point = (g.base_seq, g.base_at);
        if let Some(s) = layout::plan(&w.pieces, g.start.seq + 1, |s| s.last_at <= t).last() {
            if s.last_seq >= g.base_seq {
                point = (s.last_seq, s.last_at.max(g.base_at));
            }
        }
        return Some(Point {
            window: w.clone(),
            seq: point.0,
            at: point.1,
        });
    }
    None
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PitrReport {
    pub generation: String,
    pub snapshot: String,
    /// False when a full rollup stood in for the snapshot.
    pub snapshot_read: bool,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub segments: u64,
    pub frames: u64,
    pub target: PathBuf,
    pub moved_aside: Option<PathBuf>,
    pub dry_run: bool,
    pub image_size: u64,
    pub tables: std::collections::BTreeMap<String, u64>,
    pub rows: u64,
    pub duration_ms: u64,
}

/// Restore `point` into `target` (see the module's comment).
pub async fn restore_point(
    repo: &Repository,
    point: &Point,
    target: &Path,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<PitrReport> {
    let started = Instant::now();
    let g = &point.window.generation;
    // A full rollup holds every page: the snapshot is not read at all then.
    let full = chain_plan(point)?.iter().any(|s| s.level == FULL);
    let m = match full {
        true => None,
        false => Some(snapshot_manifest(repo, g).await?),
    };
    let (placement, scratch) = if opts.dry_run {
        check_target(target, opts.force)?;
        (
            None,
            Some(crate::fs::scratch::scratch(opts.scratch_dir.as_deref())?),
        )
    } else {
        (
            Some(Placement::prepare(target, opts.force, "restore")?),
            None,
        )
    };
    let tmp = match (&placement, &scratch) {
        (Some(p), _) => p.tmp().to_path_buf(),
        (None, Some(s)) => s.path().join("image.sqlite"),
        _ => unreachable!(),
    };
    // The segments' pages and the snapshot's others are written side by side, each page once
    // (see `Frontier`). The snapshot's bytes are proven by the stored sha256 as they arrive;
    // SQLite's own check runs once, on the result.
    let io = |e| Error::io(format!("write {}", tmp.display()), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io)?;
    let page_size = g.page_size as u64;
    let frontier = Arc::new(Frontier::new(page_size));
    let filling = match &m {
        Some(m) => Some(start_filling(repo, m, &tmp, frontier.clone(), progress).await?),
        None => None,
    };
    let chain = apply(repo, point, &tmp, &frontier).await;
    frontier.finish();
    let chain_ms = started.elapsed().as_millis();
    let filled = match filling {
        Some(f) => f.finish().await.map(|_| ()),
        None => Ok(()),
    };
    let chain = chain?;
    filled?;
    if let Some(pages) = chain.db_pages {
        file.set_len(pages as u64 * page_size).map_err(io)?;
    }
    let (segments, frames) = (chain.segments, chain.writes);
    let fetch_ms = started.elapsed().as_millis();
    // The image is made durable while SQLite checks it (the check reads the page cache): only
    // the placement needs it on disk.
    let synced = tokio::task::spawn_blocking(move || file.sync_all());
    let (img, level) = (tmp.clone(), opts.integrity);
    let info = tokio::task::spawn_blocking(move || check_result(&img, level))
        .await
        .map_err(|e| Error::task("check restored image", e));
    synced
        .await
        .map_err(|e| Error::task("sync restored image", e))?
        .map_err(io)?;
    let info = info??;
    tracing::debug!(
        chain_ms,
        snapshot_ms = fetch_ms - chain_ms,
        check_ms = started.elapsed().as_millis() - fetch_ms,
        "restore to a point"
    );
    let image_size = std::fs::metadata(&tmp).map(|m| m.len()).unwrap_or(0);
    let (target_path, moved_aside) = match placement {
        Some(p) => {
            let t = p.target().path.clone();
            (t, p.commit(FileId::of(&tmp))?)
        }
        None => (target.to_path_buf(), None),
    };
    Ok(PitrReport {
        generation: g.id.clone(),
        snapshot: g.snapshot.clone(),
        snapshot_read: !full,
        seq: point.seq,
        at: point.at,
        segments,
        frames,
        target: target_path,
        moved_aside,
        dry_run: opts.dry_run,
        image_size,
        rows: info.tables.values().sum(),
        tables: info.tables,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// The manifest of generation `g`'s snapshot, whose pages must be the segments' size.
pub(crate) async fn snapshot_manifest(
    repo: &Repository,
    g: &Generation,
) -> Result<crate::repo::manifest::Manifest> {
    let m = repo.manifest(&g.database, &g.snapshot).await.map_err(|e| {
        e.context(format!(
            "generation {}: its snapshot {} cannot be read",
            g.id, g.snapshot
        ))
    })?;
    if m.page_size != g.page_size as u64 {
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: its snapshot {} has pages of {} bytes, its segments {}",
                g.id, g.snapshot, m.page_size, g.page_size
            ),
        ));
    }
    Ok(m)
}

/// SQLite's own check of the result, and its row counts.
fn check_result(path: &Path, level: IntegrityCheck) -> Result<crate::source::sqlite::ImageInfo> {
    let corrupt = |m: String| Error::new(Kind::Corrupt, format!("restored image: {m}"));
    crate::restore::to_file::check_and_count(path, level, corrupt, "check the restored image")
}
