//! Point-in-time restore: the generation whose window holds the time, its snapshot fetched and
//! checked, then its segments applied frame by frame (each checked against the WAL checksum
//! chain and the previous segment's end; a compacted segment page by page, checked against
//! its sha256) up to the last commit seen at or before the time,
//! never past it and never from another generation; then `quick_check` and row counts, and
//! the same placement as any restore (temp file, never overwrite without --force, old file
//! kept aside).

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{check_target, FileId, Placement};
use crate::progress::Progress;
use crate::replicate::compacted::CompactedReader;
use crate::replicate::layout::{self, Generation, Window};
use crate::replicate::segment::{Link, SegmentName, SegmentReader};
use crate::replicate::wal;
use crate::repo::Repository;
use crate::restore::to_file::{check_image, fetch, FetchOptions, RestoreOptions};
use crate::source::sqlite::{inspect, open_image, IntegrityCheck};

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
    let m = repo.manifest(&g.database, &g.snapshot).await.map_err(|e| {
        e.context(format!(
            "generation {}: its snapshot {} cannot be read",
            g.id, g.snapshot
        ))
    })?;
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
    fetch(repo, &m, &tmp, FetchOptions::SCRATCH, progress).await?;
    let (img, man) = (tmp.clone(), m.clone());
    tokio::task::spawn_blocking(move || check_image(&img, &man, IntegrityCheck::Quick))
        .await
        .map_err(|e| Error::task("check snapshot", e))??;
    let (segments, frames) = apply(repo, point, &tmp).await?;
    let (img, level) = (tmp.clone(), opts.integrity);
    let info = tokio::task::spawn_blocking(move || check_result(&img, level))
        .await
        .map_err(|e| Error::task("check restored image", e))??;
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

/// Apply the generation's segments to the snapshot at `path`, up to commit `point.seq`: the
/// widest segments that end at or before it ([`layout::plan`]), then, for a point inside a
/// shipped segment (the snapshot's base), that segment up to its commit.
/// Returns (segments read, frames or pages written).
async fn apply(repo: &Repository, point: &Point, path: &Path) -> Result<(u64, u64)> {
    let g = &point.window.generation;
    let pieces = &point.window.pieces;
    let mut plan = layout::plan(pieces, g.start.seq + 1, |s| s.last_seq <= point.seq);
    let end = plan.last().map_or(g.start.seq, |s| s.last_seq);
    if end < point.seq {
        plan.extend(
            pieces
                .iter()
                .filter(|s| s.level == 0 && s.first_seq == end + 1 && s.last_seq > point.seq)
                .take(1),
        );
    }
    let io = |e| Error::io(format!("restore: write {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut state = Applied {
        expect: g.start,
        db_pages: None,
        segments: 0,
        written: 0,
    };
    // Each segment is downloaded beside the image, then read from there.
    let dir = path.parent().unwrap_or(Path::new("."));
    let part = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Error::io(format!("restore: a segment file in {}", dir.display()), e))?;
    for name in plan {
        if state.expect.seq >= point.seq {
            break;
        }
        let stored =
            layout::download_segment(repo, &g.database, &g.id, &name.name, part.path()).await?;
        if name.level == 0 {
            apply_shipped(g, name, stored, point.seq, &mut file, &mut state)?;
        } else {
            apply_compacted(g, name, stored, &mut file, &mut state)?;
        }
    }
    if state.expect.seq < point.seq {
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: its segments end at commit {} before commit {}",
                g.id, state.expect.seq, point.seq
            ),
        ));
    }
    if let Some(pages) = state.db_pages {
        file.set_len(pages as u64 * g.page_size as u64)
            .map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    Ok((state.segments, state.written))
}

/// Where an application of segments stands.
struct Applied {
    /// The link the next segment must continue.
    expect: Link,
    /// The database's size after the last commit applied.
    db_pages: Option<u32>,
    segments: u64,
    /// Frames or pages written.
    written: u64,
}

fn broken(g: &Generation, name: &SegmentName, what: &str) -> Error {
    Error::new(
        Kind::Corrupt,
        format!(
            "generation {}: segment {} does not continue the chain: {what}",
            g.id, name.name
        ),
    )
}

fn write_page(file: &mut std::fs::File, ps: u64, pgno: u32, page: &[u8]) -> Result<()> {
    let io = |e| Error::io("restore: write the image", e);
    file.seek(SeekFrom::Start((pgno as u64 - 1) * ps))
        .map_err(io)?;
    file.write_all(page).map_err(io)
}

/// A shipped segment, checked frame by frame against the WAL checksum chain, up to `until`.
fn apply_shipped(
    g: &Generation,
    name: &SegmentName,
    stored: impl std::io::Read,
    until: u64,
    file: &mut std::fs::File,
    st: &mut Applied,
) -> Result<()> {
    let mut reader = SegmentReader::open_read(stored, &name.name)?;
    let h = reader.header.clone();
    let broken = |what: &str| broken(g, name, what);
    if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
        return Err(broken("it belongs to another generation"));
    }
    if h.prev != st.expect || h.first_seq() != st.expect.seq + 1 {
        return Err(broken("its previous link is not the last segment's end"));
    }
    if (h.first_seq(), h.last_seq()) != (name.first_seq, name.last_seq) {
        return Err(broken("its name and its content disagree"));
    }
    match st.expect.position {
        Some(p) if p.salts == h.start.salts => {
            if h.start != p {
                return Err(broken("it starts elsewhere in the WAL"));
            }
        }
        _ => {
            if h.start != wal::Position::start_of(&h.header()?) {
                return Err(broken("a new WAL that does not start at its frame 0"));
            }
        }
    }
    st.segments += 1;
    let mut commits = h.commits.iter().peekable();
    let mut n = 0u64;
    let mut done = false;
    while let Some(frame) = reader.next_frame()? {
        n += 1;
        let pgno = wal::be32(frame, 0);
        let size = wal::be32(frame, 4);
        if pgno == 0 {
            return Err(broken("a frame for page 0"));
        }
        write_page(file, g.page_size as u64, pgno, &frame[wal::FRAME_HEADER..])?;
        st.written += 1;
        let at_commit = commits.peek().is_some_and(|c| c.end == n);
        if (size != 0) != at_commit {
            return Err(broken("its commit frames are not the ones it lists"));
        }
        if let Some(c) = commits.next_if(|c| c.end == n) {
            if c.db_pages != size {
                return Err(broken("a commit's size is not its frame's"));
            }
            st.db_pages = Some(size);
            st.expect.seq = c.seq;
            if c.seq == until {
                done = true;
                break;
            }
        }
    }
    // A segment read to its end also proves zstd's own checksum and that nothing follows.
    if !done || h.last_seq() == until {
        reader.finish()?;
        st.expect = h.end_link();
    }
    Ok(())
}

/// A compacted segment: its links, then its pages, then its sha256 and count.
fn apply_compacted(
    g: &Generation,
    name: &SegmentName,
    stored: impl std::io::Read,
    file: &mut std::fs::File,
    st: &mut Applied,
) -> Result<()> {
    let mut reader = CompactedReader::open(stored, &name.name)?;
    let h = reader.header.clone();
    let broken = |what: &str| broken(g, name, what);
    if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
        return Err(broken("it belongs to another generation"));
    }
    if h.prev != st.expect || h.first_seq != st.expect.seq + 1 {
        return Err(broken("its previous link is not the last segment's end"));
    }
    if (h.first_seq, h.last_seq, h.level) != (name.first_seq, name.last_seq, name.level)
        || h.end.seq != h.last_seq
    {
        return Err(broken("its name and its content disagree"));
    }
    st.segments += 1;
    while let Some((pgno, page)) = reader.next_page()? {
        write_page(file, g.page_size as u64, pgno, page)?;
        st.written += 1;
    }
    st.db_pages = Some(h.db_pages);
    st.expect = h.end;
    Ok(())
}

/// SQLite's own check of the result, and its row counts.
fn check_result(path: &Path, level: IntegrityCheck) -> Result<crate::source::sqlite::ImageInfo> {
    let corrupt = |m: String| Error::new(Kind::Corrupt, format!("restored image: {m}"));
    let c = open_image(path).map_err(|e| corrupt(e.to_string()))?;
    let pragma = match level {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let got: String = c
        .query_row(pragma, [], |r| r.get(0))
        .map_err(|e| corrupt(format!("{pragma}: {e}")))?;
    if got != "ok" {
        return Err(corrupt(format!("{pragma}: {got}")));
    }
    inspect(&c).map_err(|e| corrupt(e.to_string()))
}
