//! Compaction: restore time must not grow with the number of tiny segments. As each window of
//! `[replication] compact_windows` closes (default 1 min, then 1 h, UTC-aligned by commit time),
//! the segments of the level below whose last commit falls in it are merged into one compacted
//! segment of the next level ([`super::compacted`]): only the last version of each page. A
//! restore reads the widest segments that fit ([`layout::plan`]), so the newest point of a
//! one-hour chain costs a few dozen reads, not 3,600.
//!
//! Above the levels, one *rollup* ([`ROLLUP`]): everything from the first compacted commit to
//! the newest closed first-level window, rebuilt from the previous rollup and the windows after
//! it, at most the database's size. A restore to a recent point then reads the snapshot, the
//! rollup and the last window's segments, whatever the workload: on a database whose pages are
//! all written every minute, sixty one-minute windows would each be nearly the database.
//!
//! Shipped segments stay while younger than `pitr_fine_within` (every commit a restore point);
//! older ones are deleted once a compacted segment that covers them was listed before this run
//! started (written by an earlier run: a restore that listed before it was written is long
//! done), so older points are the ends of the compacted windows. Compacted segments stay until
//! their generation goes, but rollups: one older than the newest listed before this run goes
//! (the same rule). Never touched: the shipped segment holding the snapshot's base (a
//! restore to the base stops inside it), and the newest one (a resumed replicator reads it; it
//! is in no closed window). Everything is written before anything it replaces is deleted.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::fs::page_set::PageSet;
use crate::replicate::compacted::{
    self, is_rollup, CompactedHeader, CompactedReader, Page, RecordHash, FULL, FULL_SHARE, ROLLUP,
};
use crate::replicate::layout::{self, Generation, Window};
use crate::replicate::segment::{compacted_name, Link, SegmentName, SegmentReader};
use crate::replicate::wal;
use crate::repo::Repository;

/// Compacted segments up to this size are written in one request (a conditional create); larger
/// ones are streamed from scratch as a multipart upload.
const SMALL: u64 = 8 << 20;

#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// One window length per level, each a multiple of the one before.
    pub windows: Vec<Duration>,
    /// Shipped segments younger than this are kept (every commit a point).
    pub fine_within: Duration,
    pub dry_run: bool,
    pub scratch_dir: Option<PathBuf>,
}

/// What a compaction of one database wrote and deleted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CompactReport {
    pub database: String,
    pub dry_run: bool,
    /// Compacted segments written (or to write), `<generation>/<name>`.
    pub written: Vec<String>,
    /// Segments merged into them.
    pub merged: usize,
    /// Shipped segments deleted (or to delete): older than `pitr_fine_within` and compacted.
    pub deleted: usize,
}

/// The window a time falls in, as its start in seconds since the epoch.
fn window_of(t: DateTime<Utc>, span: Duration) -> i64 {
    let s = span.as_secs().max(1) as i64;
    t.timestamp().div_euclid(s)
}

/// Compact every generation of `db` (see the module's comment).
pub async fn compact(
    repo: &Repository,
    db: &str,
    opts: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactReport> {
    let mut report = CompactReport {
        database: db.to_string(),
        dry_run: opts.dry_run,
        ..CompactReport::default()
    };
    let fine_until = chrono::Duration::from_std(opts.fine_within)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    for w in layout::windows(repo, db).await? {
        let listed_at_start = w.pieces.clone();
        let mut pieces = w.pieces.clone();
        for (i, span) in opts.windows.iter().enumerate() {
            let level = (i + 1) as u8;
            for group in closed_groups(&w.generation, &pieces, level, *span) {
                let name = compacted_name(
                    (group[0].first_seq, group[0].first_at),
                    (
                        group[group.len() - 1].last_seq,
                        group[group.len() - 1].last_at,
                    ),
                    level,
                );
                report.merged += group.len();
                report.written.push(format!("{}/{name}", w.generation.id));
                if !opts.dry_run {
                    merge(repo, &w.generation, &group, level, &name, opts).await?;
                }
                if let Some(n) = crate::replicate::segment::parse_name(&name) {
                    pieces.push(n);
                }
            }
            pieces.sort_by(|a, b| {
                (a.first_seq, b.last_seq, b.level).cmp(&(b.first_seq, a.last_seq, a.level))
            });
        }
        if let Some(group) = rollup_inputs(&pieces) {
            let (first, last) = (&group[0], &group[group.len() - 1]);
            let name = compacted_name(
                (first.first_seq, first.first_at),
                (last.last_seq, last.last_at),
                ROLLUP,
            );
            report.merged += group.len();
            // A dry run names it a rollup: whether it would be full is known once it is made.
            let name = match opts.dry_run {
                true => name,
                false => merge(repo, &w.generation, &group, ROLLUP, &name, opts).await?,
            };
            report.written.push(format!("{}/{name}", w.generation.id));
        }
        let mut doomed = deletable(&w, &listed_at_start, fine_until);
        // Rollups older than the newest one listed before this run: superseded.
        let mut rollups: Vec<&SegmentName> = (listed_at_start.iter())
            .filter(|p| is_rollup(p.level))
            .collect();
        rollups.sort_by_key(|p| (p.last_seq, p.level == FULL));
        rollups.pop();
        doomed.extend(rollups.into_iter().map(|p| p.name.clone()));
        report.deleted += doomed.len();
        if !opts.dry_run && !doomed.is_empty() {
            layout::delete_segments(repo, db, &w.generation.id, &doomed).await?;
        }
    }
    Ok(report)
}

/// What the next rollup merges: from the first level-1 segment to the newest one's end, the
/// widest segments there (the previous rollup first); `None` when that is no more than the
/// newest rollup already covers, or a single segment.
fn rollup_inputs(pieces: &[SegmentName]) -> Option<Vec<SegmentName>> {
    let l1 = pieces.iter().filter(|p| p.level == 1);
    let from = l1.clone().map(|p| p.first_seq).min()?;
    let to = l1.map(|p| p.last_seq).max()?;
    let newest = (pieces.iter())
        .filter(|p| is_rollup(p.level) && p.first_seq == from)
        .map(|p| p.last_seq)
        .max();
    if newest.is_some_and(|n| n >= to) {
        return None;
    }
    // Only the newest rollup is an input; the others it superseded are not read again.
    let mut usable: Vec<SegmentName> = (pieces.iter())
        .filter(|p| !is_rollup(p.level) || Some(p.last_seq) == newest)
        .cloned()
        .collect();
    usable.sort_by(|a, b| {
        (a.first_seq, b.last_seq, b.level).cmp(&(b.first_seq, a.last_seq, a.level))
    });
    let plan: Vec<SegmentName> = layout::plan(&usable, from, |p| p.last_seq <= to)
        .into_iter()
        .cloned()
        .collect();
    (plan.len() > 1 && plan.last().is_some_and(|p| p.last_seq == to)).then_some(plan)
}

/// The groups of level `level - 1` segments to merge into level `level`: consecutive segments
/// whose last commits fall in one window that has closed (a later segment of that level is in
/// a later window), not compacted at this level yet.
fn closed_groups(
    g: &Generation,
    pieces: &[SegmentName],
    level: u8,
    span: Duration,
) -> Vec<Vec<SegmentName>> {
    let below: Vec<&SegmentName> = pieces
        .iter()
        .filter(|p| p.level == level - 1 && p.first_seq > g.base_seq)
        .collect();
    // A window compacted already: a segment of this level covers its first commit (its shipped
    // segments may be partly deleted since, past `pitr_fine_within`).
    let done: Vec<(u64, u64)> = (pieces.iter())
        .filter(|p| p.level == level)
        .map(|p| (p.first_seq, p.last_seq))
        .collect();
    let compacted = |seq: u64| done.iter().any(|(a, b)| *a <= seq && seq <= *b);
    let newest = below.iter().map(|p| window_of(p.last_at, span)).max();
    let mut out: Vec<Vec<SegmentName>> = Vec::new();
    let mut cur: Vec<SegmentName> = Vec::new();
    let mut flush = |cur: &mut Vec<SegmentName>| {
        let whole = cur.windows(2).all(|p| p[1].first_seq == p[0].last_seq + 1);
        let key = cur.first().map(|p| window_of(p.last_at, span));
        if whole && key.is_some_and(|k| Some(k) < newest) && !compacted(cur[0].first_seq) {
            out.push(std::mem::take(cur));
        }
        cur.clear();
    };
    for p in below {
        // One window per group; a window whose segments do not follow each other (damage, or
        // a segment copied in) is left as it is, for verify to name.
        let same = cur.last().is_some_and(|c: &SegmentName| {
            window_of(c.last_at, span) == window_of(p.last_at, span)
        });
        if !same {
            flush(&mut cur);
        }
        cur.push(p.clone());
    }
    flush(&mut cur);
    out
}

/// Shipped segments older than `fine_until` that a compacted segment listed at the start of
/// this run covers, by name.
fn deletable(w: &Window, listed: &[SegmentName], fine_until: DateTime<Utc>) -> Vec<String> {
    let g = &w.generation;
    let compacted: Vec<&SegmentName> = listed.iter().filter(|p| p.level > 0).collect();
    let newest = listed
        .iter()
        .filter(|p| p.level == 0)
        .map(|p| p.last_seq)
        .max();
    listed
        .iter()
        .filter(|p| p.level == 0 && p.first_seq > g.base_seq && p.last_at < fine_until)
        .filter(|p| Some(p.last_seq) != newest)
        .filter(|p| {
            compacted
                .iter()
                .any(|c| c.first_seq <= p.first_seq && p.last_seq <= c.last_seq)
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Merge `group` into one compacted segment `name` of `level`, through a sparse scratch file
/// (memory: one page and the set of page numbers), and store it; its name. A rollup that holds
/// at least 1 in [`FULL_SHARE`] of the database's pages, or that starts from a full one, is
/// made full: the pages it lacks come from the snapshot.
async fn merge(
    repo: &Repository,
    g: &Generation,
    group: &[SegmentName],
    level: u8,
    name: &str,
    opts: &CompactOptions,
) -> Result<String> {
    let dir = crate::fs::scratch::scratch(opts.scratch_dir.as_deref())?;
    let path = dir.path().join("merge.pages");
    let io = |e| Error::io(format!("compact: scratch {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let ps = g.page_size as u64;
    let mut pgnos = PageSet::default();
    let mut prev: Option<Link> = None;
    let mut expect: Option<Link> = None;
    let mut db_pages = 0u32;
    let broken = |n: &SegmentName, what: &str| {
        Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: segment {} cannot be compacted: {what}",
                g.id, n.name
            ),
        )
    };
    let part = dir.path().join("segment");
    for n in group {
        let stored = layout::download_segment(repo, &g.database, &g.id, &n.name, &part).await?;
        let mut put = |pgno: u32, page: &[u8]| -> Result<()> {
            if pgno == 0 {
                return Err(broken(n, "a page 0"));
            }
            file.seek(SeekFrom::Start((pgno as u64 - 1) * ps))
                .map_err(io)?;
            file.write_all(page).map_err(io)?;
            pgnos.insert(pgno);
            Ok(())
        };
        let (p, e) = if n.level == 0 {
            let mut r = SegmentReader::open_read(stored, &n.name)?;
            let h = r.header.clone();
            if h.generation != g.id || h.page_size != g.page_size || h.database != g.database {
                return Err(broken(n, "it belongs to another generation"));
            }
            if (h.first_seq(), h.last_seq()) != (n.first_seq, n.last_seq) {
                return Err(broken(n, "its name and its content disagree"));
            }
            while let Some(frame) = r.next_frame()? {
                let size = wal::be32(frame, 4);
                if size != 0 {
                    db_pages = size;
                }
                put(wal::be32(frame, 0), &frame[wal::FRAME_HEADER..])?;
            }
            r.finish()?;
            (h.prev, h.end_link())
        } else {
            let mut r = CompactedReader::open(stored, &n.name)?;
            let h = r.header.clone();
            if h.generation != g.id || h.page_size != g.page_size || h.database != g.database {
                return Err(broken(n, "it belongs to another generation"));
            }
            while let Some(Page {
                pgno, bytes: page, ..
            }) = r.next_page()?
            {
                put(pgno, page)?;
            }
            db_pages = h.db_pages;
            (h.prev, h.end)
        };
        if expect.is_some_and(|x| x != p) {
            return Err(broken(n, "it does not continue the segment before it"));
        }
        prev.get_or_insert(p);
        expect = Some(e);
    }
    let (Some(prev), Some(end)) = (prev, expect) else {
        return Ok(name.to_string());
    };
    // Pages past the database's end after the window are gone from it.
    let mut kept: Vec<u32> = (1..=db_pages).filter(|p| pgnos.contains(*p)).collect();
    let (first, last) = (&group[0], &group[group.len() - 1]);
    let full = level == ROLLUP
        && (first.level == FULL || kept.len() as u64 * FULL_SHARE >= db_pages as u64);
    let (level, name) = match full {
        true => (
            FULL,
            compacted_name(
                (first.first_seq, first.first_at),
                (last.last_seq, last.last_at),
                FULL,
            ),
        ),
        false => (level, name.to_string()),
    };
    // A full rollup's other pages: the snapshot's (zeros past its end, as a restore leaves).
    let snapshot = match full && kept.len() < db_pages as usize {
        true => Some(snapshot_image(repo, g, dir.path()).await?),
        false => None,
    };
    if full {
        kept = (1..=db_pages).collect();
    }
    let mut page = vec![0u8; ps as usize];
    let mut read_page = |file: &mut std::fs::File, pgno: u32| -> Result<Vec<u8>> {
        let from = match &snapshot {
            Some(snap) if !pgnos.contains(pgno) => snap,
            _ => &*file,
        };
        let at = (pgno as u64 - 1) * ps;
        use std::os::unix::fs::FileExt;
        page.fill(0);
        let mut n = 0;
        while n < page.len() {
            match from.read_at(&mut page[n..], at + n as u64).map_err(io)? {
                0 => break,
                k => n += k,
            }
        }
        Ok(page.clone())
    };
    let mut hash = RecordHash::default();
    for p in &kept {
        let bytes = read_page(&mut file, *p)?;
        hash.add(*p, &bytes);
    }
    let header = CompactedHeader {
        format_version: compacted::FORMAT,
        database: g.database.clone(),
        generation: g.id.clone(),
        page_size: g.page_size,
        level,
        first_seq: first.first_seq,
        last_seq: last.last_seq,
        first_at: first.first_at,
        last_at: last.last_at,
        prev,
        end,
        db_pages,
        pages: kept.len() as u64,
        sha256: String::new(),
        blake3: hash.hex(),
        replaces: group.iter().map(|n| n.name.clone()).collect(),
    };
    // Written to scratch first: memory stays one page whatever the window's size.
    let out_path = dir.path().join("compacted.seg.zst");
    let out = std::fs::File::create(&out_path).map_err(io)?;
    let records = kept
        .iter()
        .map(|p| read_page(&mut file, *p).map(|b| (*p, b)));
    let out = compacted::encode(std::io::BufWriter::new(out), &header, records)?;
    out.into_inner()
        .map_err(|e| Error::io("write compacted segment", e.into_error()))?
        .sync_all()
        .map_err(io)?;
    let size = std::fs::metadata(&out_path).map_err(io)?.len();
    if size <= SMALL {
        let body = std::fs::read(&out_path).map_err(io)?;
        layout::put_compacted(repo, &g.database, &g.id, &name, body).await?;
    } else {
        layout::upload_compacted(repo, &g.database, &g.id, &name, &out_path).await?;
    }
    tracing::info!(database = %g.database, generation = %g.id, segment = name, pages = kept.len(), "compacted");
    Ok(name)
}

/// The generation's snapshot, fetched into `dir` (its sha256 checked) and opened.
async fn snapshot_image(
    repo: &Repository,
    g: &Generation,
    dir: &std::path::Path,
) -> Result<std::fs::File> {
    let m = crate::replicate::pitr::snapshot_manifest(repo, g)
        .await
        .map_err(|e| e.context("a full rollup"))?;
    let path = dir.join("snapshot.sqlite");
    crate::restore::to_file::fetch(
        repo,
        &m,
        &path,
        crate::restore::to_file::FetchOptions::SCRATCH,
        &crate::progress::Progress::hidden(),
    )
    .await?;
    std::fs::File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::segment::parse_name;

    fn t(s: u32) -> String {
        format!("20261202T1000{:02}000Z", s)
    }

    /// A segment of `level` for commits `a..=b`, its last commit at second `s` of 10:00.
    fn seg(a: u64, b: u64, s: u32, level: u8) -> SegmentName {
        let name = match level {
            0 => format!("{a:012}-{b:012}-{}-{}.seg.zst", t(s), t(s)),
            l => format!("{a:012}-{b:012}-{}-{}.L{l}.seg.zst", t(s), t(s)),
        };
        parse_name(&name).unwrap()
    }

    fn names(groups: &[Vec<SegmentName>]) -> Vec<Vec<(u64, u64)>> {
        (groups.iter())
            .map(|g| g.iter().map(|p| (p.first_seq, p.last_seq)).collect())
            .collect()
    }

    #[test]
    fn only_closed_windows_and_never_the_base_segment() {
        let g = crate::replicate::layout::test_generation(1);
        let span = Duration::from_secs(10);
        // The base segment (1-2), window 0 (3-5), window 1 (6-7), window 2 still open (8).
        let pieces = vec![
            seg(1, 2, 1, 0),
            seg(3, 4, 2, 0),
            seg(5, 5, 9, 0),
            seg(6, 7, 12, 0),
            seg(8, 8, 25, 0),
        ];
        let groups = closed_groups(&g, &pieces, 1, span);
        assert_eq!(names(&groups), vec![vec![(3, 4), (5, 5)], vec![(6, 7)]]);
        // Window 0 compacted, and its first shipped segment deleted since: nothing to redo.
        let pieces = vec![
            seg(1, 2, 1, 0),
            seg(3, 5, 9, 1),
            seg(5, 5, 9, 0),
            seg(6, 7, 12, 0),
            seg(8, 8, 25, 0),
        ];
        assert_eq!(
            names(&closed_groups(&g, &pieces, 1, span)),
            vec![vec![(6, 7)]]
        );
        // A gap inside a window: that window is not compacted.
        let pieces = vec![seg(3, 3, 2, 0), seg(5, 5, 3, 0), seg(6, 6, 15, 0)];
        assert!(closed_groups(&g, &pieces, 1, span).is_empty());
    }

    #[test]
    fn rollups_grow_from_the_previous_one() {
        let mut pieces = vec![seg(3, 5, 9, 1), seg(6, 7, 12, 1), seg(8, 9, 25, 0)];
        let r = rollup_inputs(&pieces).unwrap();
        assert_eq!(r.iter().map(|p| p.last_seq).collect::<Vec<_>>(), vec![5, 7]);
        pieces.push(seg(3, 7, 12, ROLLUP));
        assert!(rollup_inputs(&pieces).is_none(), "nothing new");
        pieces.push(seg(8, 9, 25, 1));
        let r = rollup_inputs(&pieces).unwrap();
        assert_eq!(
            r.iter().map(|p| (p.level, p.last_seq)).collect::<Vec<_>>(),
            vec![(ROLLUP, 7), (1, 9)]
        );
    }

    #[test]
    fn shipped_segments_go_when_old_and_compacted_never_the_newest() {
        let g = crate::replicate::layout::test_generation(1);
        let listed = vec![
            seg(1, 2, 1, 0),
            seg(3, 4, 2, 0),
            seg(3, 4, 2, 1),
            seg(5, 5, 30, 0),
        ];
        let w = Window {
            generation: g,
            segments: Vec::new(),
            pieces: listed.clone(),
            gap_after: None,
        };
        let until = DateTime::parse_from_rfc3339("2026-12-02T11:00:00Z")
            .unwrap()
            .to_utc();
        // Not the base segment (1-2), not the newest (5), not an uncompacted one.
        let gone = deletable(&w, &listed, until);
        assert_eq!(gone.len(), 1);
        assert!(gone[0].starts_with("000000000003-000000000004") && !gone[0].contains(".L"));
        // Younger than pitr_fine_within: kept.
        let early = DateTime::parse_from_rfc3339("2026-12-02T10:00:01Z")
            .unwrap()
            .to_utc();
        assert!(deletable(&w, &listed, early).is_empty());
    }
}
