//! Applying a generation's chain to its snapshot for a restore (or a verify's replay), newest
//! segment first: a page written by a newer segment is never written again by an older one, so
//! a restore writes each page once however many segments changed it (an hour of segments on a
//! database whose pages are all written holds many versions of each). Every segment is still
//! read whole and checked: the shipped ones against the WAL checksum chain and their commit
//! frames, the compacted ones against their digest (BLAKE3, sha256 in format 1); and the links: each segment's `prev` is the
//! end of the one before, the oldest's the generation's start.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Kind, Result};
use crate::fs::page_set::{Frontier, PageSet};
use crate::replicate::compacted::{CompactedReader, FULL};
use crate::replicate::layout::{self, Generation};
use crate::replicate::page_writer::PageWriter;
use crate::replicate::pitr::Point;
use crate::replicate::segment::{Link, SegmentName, SegmentReader};
use crate::replicate::wal;
use crate::repo::Repository;

/// Where an application stands, going back from the newest segment.
struct Applied<'a> {
    g: &'a Generation,
    /// Tells the snapshot's writer which pages are settled.
    frontier: &'a Frontier,
    /// Applying the last piece, page-ordered: each run written settles every page up to it.
    settling: bool,
    out: PageWriter,
    /// The link the segment before must end at: the `prev` of the one just applied.
    expect_end: Option<Link>,
    /// The database's size after the point restored: pages past it are not written.
    db_pages: Option<u32>,
    /// Pages written by newer segments.
    done: PageSet,
    segments: u64,
    written: u64,
    /// The run of consecutive pages being gathered: its first page and how many.
    run: Option<(u32, u32)>,
}

impl Applied<'_> {
    fn broken(&self, name: &SegmentName, what: &str) -> Error {
        Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: segment {} does not continue the chain: {what}",
                self.g.id, name.name
            ),
        )
    }

    /// Write `page` unless a newer segment did, or it lies past the database's end. Pages
    /// that follow each other are written together (a compacted segment's are in page order:
    /// one write per page cost more in the kernel than all the rest of the restore).
    fn put(&mut self, this: &mut PageSet, pgno: u32, page: &[u8], frame: InFrame) -> Result<()> {
        if self.done.contains(pgno) || self.db_pages.is_some_and(|n| pgno > n) {
            return Ok(());
        }
        let ps = self.g.page_size as u64;
        match self.run {
            Some((first, n)) if pgno == first + n && (n as u64) * ps < RUN_BYTES => {
                self.run = Some((first, n + 1));
            }
            _ => {
                self.end_run();
                self.run = Some((pgno, 1));
            }
        }
        let at = (pgno as u64 - 1) * ps;
        match frame {
            Some((frame, from)) => self.out.page_in(at, frame, from, page.len())?,
            None => self.out.page(at, page)?,
        }
        this.insert(pgno);
        self.written += 1;
        Ok(())
    }

    /// The run gathered so far is whole: the pages it holds are the segments' (written yet or
    /// not, the snapshot's writer leaves them alone), and while the last, page-ordered piece
    /// is applied, every page up to its end is settled.
    fn end_run(&mut self) {
        if let Some((first, n)) = self.run.take() {
            if self.settling {
                self.frontier.settle_run(first, first + n - 1);
            }
        }
    }
}

/// Where a page lies in a decompressed frame, when it does (it is written from there).
type InFrame<'a> = Option<(&'a std::sync::Arc<crate::replicate::pooled::Pooled>, usize)>;

/// A stored segment, downloaded (or a local repository's, in place).
type Stored = std::io::BufReader<std::fs::File>;

/// A file removed when this goes.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The most bytes of consecutive pages written as one.
const RUN_BYTES: u64 = 1024 * 1024;

/// The segments a restore to `point` applies, oldest first: the widest that end at or before
/// it ([`layout::plan`]), and for a point inside a shipped segment (the snapshot's base) that
/// segment, up to its commit.
pub(crate) fn chain_plan(point: &Point) -> Result<Vec<&SegmentName>> {
    let g = &point.window.generation;
    let pieces = &point.window.pieces;
    let mut plan = layout::plan(pieces, g.start.seq + 1, |s| s.last_seq <= point.seq);
    let end = plan.last().map_or(g.start.seq, |s| s.last_seq);
    if end < point.seq {
        plan.extend(
            (pieces.iter())
                .filter(|s| s.level == 0 && s.first_seq == end + 1 && s.last_seq > point.seq)
                .take(1),
        );
    }
    let reach = plan.last().map_or(g.start.seq, |s| s.last_seq);
    if reach < point.seq {
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: its segments end at commit {reach} before commit {}",
                g.id, point.seq
            ),
        ));
    }
    Ok(plan)
}

/// What [`apply`] wrote.
pub(crate) struct Written {
    pub segments: u64,
    /// How many page writes.
    pub writes: u64,
    /// The database's size in pages at the point, when a segment says it.
    pub db_pages: Option<u32>,
}

/// Write the generation's segments up to commit `point.seq` into the file at `path`, each page
/// where it belongs, while the snapshot's writer fills in the rest behind `frontier` (so each
/// page of the image is written once; writing over the snapshot's pages as the kernel wrote
/// them back cost a quarter of the restore): the widest segments that end at or before it
/// ([`layout::plan`]), and for a point inside a shipped segment (the snapshot's base) that
/// segment up to its commit. The caller settles every page ([`Frontier::finish`]) once this
/// returns, whatever it returns.
pub(crate) async fn apply(
    repo: &Repository,
    point: &Point,
    path: &Path,
    frontier: &Frontier,
) -> Result<Written> {
    let g = &point.window.generation;
    let plan = chain_plan(point)?;
    let io = |e| Error::io(format!("write {}", path.display()), e);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut st = Applied {
        g,
        frontier,
        settling: false,
        out: PageWriter::new(file),
        expect_end: None,
        db_pages: None,
        done: PageSet::default(),
        segments: 0,
        written: 0,
        run: None,
    };
    // Each segment is downloaded beside the image, then read from there (a local
    // repository's are read in place). Named after the image, so a run killed mid-way leaves
    // a temp file the next restore to that target removes.
    let part = Removed(crate::fs::atomic_replace::suffixed(path, ".segment"));
    for (i, name) in plan.iter().rev().enumerate() {
        if i + 1 == plan.len() && name.level > 0 {
            // The oldest piece, compacted, is in page order: from here on each run settles.
            frontier.settle(&st.done, 0);
            st.settling = true;
        }
        let stored =
            layout::download_segment(repo, &g.database, &g.id, &name.name, &part.0).await?;
        if name.level == 0 {
            apply_shipped(&mut st, name, stored, point.seq)?;
        } else {
            apply_compacted(&mut st, name, stored)?;
        }
    }
    if st.expect_end.is_some_and(|e| e != g.start) {
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "generation {}: its first segment does not continue the generation's start",
                g.id
            ),
        ));
    }
    // Every page the segments wrote is the snapshot's writer's to leave alone.
    frontier.settle(&st.done, u32::MAX);
    let (segments, writes, db_pages) = (st.segments, st.written, st.db_pages);
    st.out.finish()?;
    Ok(Written {
        segments,
        writes,
        db_pages,
    })
}

/// A shipped segment, checked frame by frame against the WAL checksum chain, up to commit
/// `until` when it holds it.
fn apply_shipped(
    st: &mut Applied,
    name: &SegmentName,
    stored: impl Read,
    until: u64,
) -> Result<()> {
    let mut reader = SegmentReader::open_read(stored, &name.name)?;
    let h = reader.header.clone();
    let g = st.g;
    if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
        return Err(st.broken(name, "it belongs to another generation"));
    }
    if (h.first_seq(), h.last_seq()) != (name.first_seq, name.last_seq)
        || h.first_seq() != h.prev.seq + 1
    {
        return Err(st.broken(name, "its name and its content disagree"));
    }
    if st.expect_end.is_some_and(|e| e != h.end_link()) {
        return Err(st.broken(name, "the next segment does not start where it ends"));
    }
    // Its frames start where its `prev` stood in the same WAL, or at frame 0 of a new one.
    match h.prev.position {
        Some(p) if p.salts == h.start.salts => {
            if h.start != p {
                return Err(st.broken(name, "it starts elsewhere in the WAL"));
            }
        }
        _ => {
            if h.start != wal::Position::start_of(&h.header()?) {
                return Err(st.broken(name, "a new WAL that does not start at its frame 0"));
            }
        }
    }
    let stop = h.commits.iter().find(|c| c.seq == until.min(h.last_seq()));
    if st.db_pages.is_none() {
        st.db_pages = stop.map(|c| c.db_pages);
        st.db_pages.inspect(|&n| st.frontier.set_last(n));
    }
    let stop_frame = stop.map_or(h.frames, |c| c.end);
    st.segments += 1;
    let mut this = PageSet::default();
    let mut commits = h.commits.iter().peekable();
    let mut n = 0u64;
    while let Some(frame) = reader.next_frame()? {
        n += 1;
        let pgno = wal::be32(frame, 0);
        let size = wal::be32(frame, 4);
        if pgno == 0 {
            return Err(st.broken(name, "a frame for page 0"));
        }
        let at_commit = commits.peek().is_some_and(|c| c.end == n);
        if (size != 0) != at_commit {
            return Err(st.broken(name, "its commit frames are not the ones it lists"));
        }
        if commits
            .next_if(|c| c.end == n)
            .is_some_and(|c| c.db_pages != size)
        {
            return Err(st.broken(name, "a commit's size is not its frame's"));
        }
        st.put(&mut this, pgno, &frame[wal::FRAME_HEADER..], None)?;
        if n == stop_frame {
            break;
        }
    }
    // A segment read to its end also proves zstd's own checksum and that nothing follows.
    if n == h.frames {
        reader.finish()?;
    }
    st.end_run();
    st.done.absorb(&mut this);
    st.expect_end = Some(h.prev);
    Ok(())
}

/// A compacted segment: its links, then its pages, then its digest and count.
fn apply_compacted(st: &mut Applied, name: &SegmentName, stored: Stored) -> Result<()> {
    let mut reader = CompactedReader::open(stored, &name.name)?;
    let h = reader.header.clone();
    let g = st.g;
    if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
        return Err(st.broken(name, "it belongs to another generation"));
    }
    if (h.first_seq, h.last_seq, h.level) != (name.first_seq, name.last_seq, name.level)
        || h.end.seq != h.last_seq
        || h.first_seq != h.prev.seq + 1
    {
        return Err(st.broken(name, "its name and its content disagree"));
    }
    if st.expect_end.is_some_and(|e| e != h.end) {
        return Err(st.broken(name, "the next segment does not start where it ends"));
    }
    if name.level == FULL && h.pages != h.db_pages as u64 {
        return Err(st.broken(name, "a full rollup that lacks pages"));
    }
    if st.db_pages.is_none() {
        st.db_pages = Some(h.db_pages);
        st.frontier.set_last(h.db_pages);
    }
    st.segments += 1;
    let mut this = PageSet::default();
    while let Some(p) = reader.next_page()? {
        st.put(&mut this, p.pgno, p.bytes, p.frame)?;
    }
    st.end_run();
    st.done.absorb(&mut this);
    st.expect_end = Some(h.prev);
    Ok(())
}

/// Read a stored segment of generation `g` through and check it as a restore would (its
/// generation, its name, its checksums: the WAL chain and commit frames of a shipped one, the
/// digest of a compacted one), without applying it: what a verify does with the segments a
/// restore to the newest point does not read.
pub fn check_stored(g: &Generation, name: &SegmentName, stored: Stored) -> Result<()> {
    let broken = |what: &str| {
        Error::new(
            Kind::Corrupt,
            format!("generation {}: segment {}: {what}", g.id, name.name),
        )
    };
    if name.level == 0 {
        let mut r = SegmentReader::open_read(stored, &name.name)?;
        let h = r.header.clone();
        if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
            return Err(broken("it belongs to another generation"));
        }
        if (h.first_seq(), h.last_seq()) != (name.first_seq, name.last_seq) {
            return Err(broken("its name and its content disagree"));
        }
        let mut commits = h.commits.iter().peekable();
        let mut n = 0u64;
        while let Some(frame) = r.next_frame()? {
            n += 1;
            let size = wal::be32(frame, 4);
            if (size != 0) != commits.next_if(|c| c.end == n).is_some() {
                return Err(broken("its commit frames are not the ones it lists"));
            }
        }
        r.finish()
    } else {
        let mut r = CompactedReader::open(stored, &name.name)?;
        let h = r.header.clone();
        if h.generation != g.id || h.database != g.database || h.page_size != g.page_size {
            return Err(broken("it belongs to another generation"));
        }
        if (h.first_seq, h.last_seq, h.level) != (name.first_seq, name.last_seq, name.level) {
            return Err(broken("its name and its content disagree"));
        }
        while r.next_page()?.is_some() {}
        Ok(())
    }
}
