//! Reading a live WAL file from the outside: its header, and its frames from a known position
//! up to the last *commit* frame whose cumulative checksum holds (whole transactions only; a
//! transaction being written, or a torn frame, stops the scan). Never opens SQLite.
//!
//! Format (sqlite.org/fileformat2.html#walformat): a 32-byte header (magic, version, page size,
//! checkpoint sequence, salt-1, salt-2, checksum), then frames of a 24-byte header (page number,
//! database size in pages after a commit or 0, salts, cumulative checksum) and one page.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};

pub const WAL_HEADER: usize = 32;
pub const FRAME_HEADER: usize = 24;

/// The parsed 32-byte WAL header (kept whole: segments carry it so a restore can check the
/// checksum chain from its seed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalHeader {
    pub bytes: [u8; WAL_HEADER],
}

impl WalHeader {
    /// A header SQLite would accept: magic, a page size that is a power of two in range, and
    /// its own checksum.
    pub fn parse(bytes: &[u8]) -> Option<WalHeader> {
        let b: [u8; WAL_HEADER] = bytes.get(..WAL_HEADER)?.try_into().ok()?;
        let magic = be32(&b, 0);
        if magic & !1 != 0x377f0682 {
            return None;
        }
        let h = WalHeader { bytes: b };
        let ps = h.page_size();
        if !(512..=65536).contains(&ps) || !ps.is_power_of_two() {
            return None;
        }
        (checksum(h.big_endian(), &b[..24], [0, 0]) == h.checksum()).then_some(h)
    }

    pub fn big_endian(&self) -> bool {
        be32(&self.bytes, 0) & 1 == 1
    }

    pub fn page_size(&self) -> u32 {
        match be32(&self.bytes, 8) {
            1 => 65536,
            n => n,
        }
    }

    pub fn salts(&self) -> [u32; 2] {
        [be32(&self.bytes, 16), be32(&self.bytes, 20)]
    }

    /// How many times the WAL was reset (checkpoint sequence).
    pub fn checkpoint_seq(&self) -> u32 {
        be32(&self.bytes, 12)
    }

    /// The seed of the first frame's cumulative checksum.
    pub fn checksum(&self) -> [u32; 2] {
        [be32(&self.bytes, 24), be32(&self.bytes, 28)]
    }
}

/// A point in the WAL: `frame` frames of the WAL with these salts are behind it, and
/// `checksum` is the cumulative checksum of the last of them (the header's seed at frame 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub salts: [u32; 2],
    pub frame: u64,
    pub checksum: [u32; 2],
}

impl Position {
    /// The start of the WAL whose header this is.
    pub fn start_of(h: &WalHeader) -> Position {
        Position {
            salts: h.salts(),
            frame: 0,
            checksum: h.checksum(),
        }
    }
}

/// One transaction seen in a scan: frames `..end` (counted from the scan's start) and the
/// database size in pages once it is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub end: u64,
    pub db_pages: u32,
    /// It wrote every page of the database it left (VACUUM does; see [`Written`]).
    pub rewrote_all: bool,
    /// The schema cookie it left, when it wrote page 1.
    pub schema_cookie: Option<u32>,
}

/// The first of `commits` that looks like a VACUUM (every page rewritten, and the schema
/// cookie moved on from `cookie`, the one before them: a bulk load into a new database rewrites
/// every page too, but leaves the cookie), and the cookie after them all.
pub fn first_vacuum(commits: &[Commit], mut cookie: Option<u32>) -> (Option<usize>, Option<u32>) {
    let mut found = None;
    for (i, c) in commits.iter().enumerate() {
        if let Some(now) = c.schema_cookie {
            if found.is_none() && c.rewrote_all && cookie.is_some_and(|was| was != now) {
                found = Some(i);
            }
            cookie = Some(now);
        }
    }
    (found, cookie)
}

/// The pages one transaction wrote, to tell one that rewrote the whole database: VACUUM
/// copies every page of the new database in one transaction. Memory: a bit per page.
#[derive(Debug, Default)]
struct Written {
    bits: Vec<u64>,
    touched: Vec<usize>,
    distinct: u32,
    max: u32,
}

impl Written {
    fn add(&mut self, page: u32) {
        let (w, b) = ((page / 64) as usize, page % 64);
        if w >= self.bits.len() {
            self.bits.resize(w + 1, 0);
        }
        if self.bits[w] == 0 {
            self.touched.push(w);
        }
        if self.bits[w] & (1 << b) == 0 {
            self.bits[w] |= 1 << b;
            self.distinct += 1;
        }
        self.max = self.max.max(page);
    }

    /// Whether the transaction wrote exactly pages 1..=`db_pages` (a database of one page is
    /// rewritten by any change, so it never counts); then forget it for the next one.
    fn every_page(&mut self, db_pages: u32) -> bool {
        let all = db_pages >= 2 && self.distinct == db_pages && self.max <= db_pages;
        for w in self.touched.drain(..) {
            self.bits[w] = 0;
        }
        (self.distinct, self.max) = (0, 0);
        all
    }
}

/// What a scan found after its start: the committed transactions, and the position after the
/// last of them.
#[derive(Debug, Clone)]
pub struct Scan {
    pub header: WalHeader,
    pub from: Position,
    pub commits: Vec<Commit>,
    pub to: Position,
}

/// `<db>-wal`.
pub fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Whether the WAL of database `db` holds `frames` frames past `from` (the chain's link; from
/// the WAL's start when it is in another WAL, or `None`): the frame there carries the WAL's
/// salts, so it was written since the last reset. A hint read without SQLite's locks, for when
/// to look again, never for what to ship.
///
/// Only the `-wal` file is opened. SQLite holds its POSIX locks on the database and `-shm`
/// files, and closing any descriptor of those in this process would drop them all: a reset
/// could then come over frames not yet shipped.
pub fn written_past(db: &Path, from: Option<Position>, frames: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let Ok(f) = File::open(wal_path(db)) else {
        return false;
    };
    let mut b = [0u8; WAL_HEADER];
    if f.read_exact_at(&mut b, 0).is_err() {
        return false;
    }
    let Some(h) = WalHeader::parse(&b) else {
        return false;
    };
    let n = match from {
        Some(p) if p.salts == h.salts() => p.frame + frames,
        _ => frames,
    };
    let size = FRAME_HEADER as u64 + h.page_size() as u64;
    let mut fh = [0u8; FRAME_HEADER];
    let at = WAL_HEADER as u64 + n.saturating_sub(1) * size;
    f.read_exact_at(&mut fh, at).is_ok() && [be32(&fh, 8), be32(&fh, 12)] == h.salts()
}

/// The WAL's header, when it has a valid one (a missing, empty or truncated WAL has none).
pub fn read_header(wal: &Path) -> Result<Option<WalHeader>> {
    let mut f = match File::open(wal) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("read {}", wal.display()), e)),
    };
    let mut b = [0u8; WAL_HEADER];
    match read_full(&mut f, &mut b) {
        Ok(true) => Ok(WalHeader::parse(&b)),
        Ok(false) => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", wal.display()), e)),
    }
}

/// Scan the WAL at `wal`, whose header is `header`, from `from` (a position in that same WAL):
/// every whole transaction after it whose frames carry the header's salts and whose checksums
/// chain. Reads each frame once, a page at a time.
pub fn scan(wal: &Path, header: &WalHeader, from: Position) -> Result<Scan> {
    let err = |e| Error::io(format!("read {}", wal.display()), e);
    if from.salts != header.salts() {
        return Err(Error::new(
            Kind::Internal,
            "WAL scan from a position of another WAL",
        ));
    }
    let mut f = File::open(wal).map_err(err)?;
    let frame_size = FRAME_HEADER + header.page_size() as usize;
    let mut buf = vec![0u8; frame_size];
    let offset = WAL_HEADER as u64 + from.frame * frame_size as u64;
    use std::io::Seek;
    f.seek(std::io::SeekFrom::Start(offset)).map_err(err)?;
    let mut f = std::io::BufReader::with_capacity(256 * 1024, f);
    let (mut sum, mut n, mut commits) = (from.checksum, 0u64, Vec::new());
    let mut to = from;
    let mut written = Written::default();
    let mut cookie = None;
    while read_full(&mut f, &mut buf).map_err(err)? {
        let Some(next) = check_frame(header, &buf, sum) else {
            break;
        };
        sum = next;
        n += 1;
        let page = be32(&buf, 0);
        written.add(page);
        if page == 1 {
            cookie = Some(be32(&buf, FRAME_HEADER + 40));
        }
        let db_pages = be32(&buf, 4);
        if db_pages != 0 {
            let rewrote_all = written.every_page(db_pages);
            commits.push(Commit {
                end: n,
                db_pages,
                rewrote_all,
                schema_cookie: cookie.take(),
            });
            to = Position {
                salts: from.salts,
                frame: from.frame + n,
                checksum: sum,
            };
        }
    }
    Ok(Scan {
        header: header.clone(),
        from,
        commits,
        to,
    })
}

/// Whether the WAL at `wal`, whose header is now `now`, is the WAL `old` reset exactly once
/// with `end` as its last frame: salt-1 one more (SQLite's
/// reset), and in the file the old WAL's frame at `end` still there with no frame of the old
/// WAL after it. SQLite rewrites a reset WAL from its start and never clears the rest, so old
/// frames after `end` (never shipped, then checkpointed away) would still be in the file.
/// The frame after `end` is read first: a writer filling the new WAL overwrites it only after
/// the frame at `end`, which is read second.
pub fn reset_once_after(
    wal: &Path,
    old: &WalHeader,
    now: &WalHeader,
    end: Position,
) -> Result<bool> {
    use std::os::unix::fs::FileExt;
    if end.frame == 0 || end.salts != old.salts() || !reset_once(old, now) {
        return Ok(false);
    }
    let f = File::open(wal).map_err(|e| Error::io(format!("read {}", wal.display()), e))?;
    let size = (FRAME_HEADER + old.page_size() as usize) as u64;
    let slot = |frame: u64| WAL_HEADER as u64 + (frame - 1) * size;
    let mut next = vec![0u8; size as usize];
    let after_end = match f.read_exact_at(&mut next, slot(end.frame + 1)) {
        Ok(()) => check_frame(old, &next, end.checksum).is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(Error::io(format!("read {}", wal.display()), e)),
    };
    let mut fh = [0u8; FRAME_HEADER];
    let at_end = match f.read_exact_at(&mut fh, slot(end.frame)) {
        Ok(()) => {
            [be32(&fh, 8), be32(&fh, 12)] == end.salts
                && [be32(&fh, 16), be32(&fh, 20)] == end.checksum
                && be32(&fh, 4) != 0
        }
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(Error::io(format!("read {}", wal.display()), e)),
    };
    Ok(at_end && !after_end)
}

/// Whether `now` is the header SQLite writes when it resets the WAL `old` once: salt-1 one
/// more, the same page size. (The checkpoint sequence in the header is the writing
/// connection's own count: with two connections resetting in turn it proves nothing.)
pub fn reset_once(old: &WalHeader, now: &WalHeader) -> bool {
    now.salts()[0] == old.salts()[0].wrapping_add(1) && now.page_size() == old.page_size()
}

/// The cumulative checksum after `frame` (header and page), when the frame belongs to this WAL
/// (its salts) and its stored checksum is the one that follows `prev`.
pub fn check_frame(header: &WalHeader, frame: &[u8], prev: [u32; 2]) -> Option<[u32; 2]> {
    if frame.len() != FRAME_HEADER + header.page_size() as usize
        || [be32(frame, 8), be32(frame, 12)] != header.salts()
        || be32(frame, 0) == 0
    {
        return None;
    }
    let be = header.big_endian();
    let sum = checksum(be, &frame[FRAME_HEADER..], checksum(be, &frame[..8], prev));
    (sum == [be32(frame, 16), be32(frame, 20)]).then_some(sum)
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `s`.
pub fn checksum(big_endian: bool, data: &[u8], s: [u32; 2]) -> [u32; 2] {
    let (mut s1, mut s2) = (s[0], s[1]);
    for w in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (be32(w, 0), be32(w, 4))
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s1 = s1.wrapping_add(a).wrapping_add(s2);
        s2 = s2.wrapping_add(b).wrapping_add(s1);
    }
    [s1, s2]
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Fill `buf`; false when the input ends first (a short tail is not a frame).
pub fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => return Ok(false),
            k => n += k,
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn written_past_counts_frames_of_the_current_wal_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);
             INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);",
        )
        .unwrap();
        let h = read_header(&wal_path(&p)).unwrap().expect("a header");
        let s = scan(&wal_path(&p), &h, Position::start_of(&h)).unwrap();
        let n = s.to.frame;
        assert!(written_past(&p, None, n) && !written_past(&p, None, n + 1));
        assert!(written_past(&p, Some(s.to), 0) && !written_past(&p, Some(s.to), 1));
        c.execute_batch("INSERT INTO t VALUES (3);").unwrap();
        assert!(written_past(&p, Some(s.to), 1));
        // Reset, then rewritten over the old frames: only the new WAL's frames count, from
        // its start, whatever the old position said.
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); INSERT INTO t VALUES (4);")
            .unwrap();
        assert!(written_past(&p, Some(s.to), 1) && !written_past(&p, Some(s.to), 2));
        assert!(!written_past(&dir.path().join("none.db"), None, 1));
    }

    #[test]
    fn scans_whole_transactions_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);
             INSERT INTO t VALUES (randomblob(5000)); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let wal = wal_path(&p);
        let h = read_header(&wal).unwrap().expect("a header");
        let s = scan(&wal, &h, Position::start_of(&h)).unwrap();
        assert_eq!(s.commits.len(), 3);
        assert_eq!(s.to.frame, s.commits.last().unwrap().end);
        // Nothing new: an empty scan from the end.
        let again = scan(&wal, &h, s.to).unwrap();
        assert!(again.commits.is_empty());
        assert_eq!(again.to, s.to);
        c.execute_batch("INSERT INTO t VALUES (2);").unwrap();
        let more = scan(&wal, &h, s.to).unwrap();
        assert_eq!(more.commits.len(), 1);
        // A wrong seed checks nothing.
        let bad = Position {
            checksum: [1, 2],
            ..s.to
        };
        assert!(scan(&wal, &h, bad).unwrap().commits.is_empty());
    }

    #[test]
    fn vacuum_is_told_from_ordinary_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(x); CREATE INDEX tx ON t(x);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
             INSERT INTO t SELECT randomblob(200) FROM n;
             DELETE FROM t WHERE rowid % 3 = 0; UPDATE t SET x = randomblob(200);",
        )
        .unwrap();
        let wal = wal_path(&p);
        let h = read_header(&wal).unwrap().expect("a header");
        let before = scan(&wal, &h, Position::start_of(&h)).unwrap();
        // The bulk load into the new database rewrote every page, but is no VACUUM.
        let (none, cookie) = first_vacuum(&before.commits, None);
        assert_eq!(none, None);
        assert!(cookie.is_some());
        c.execute_batch("VACUUM").unwrap();
        let vacuum = scan(&wal, &h, before.to).unwrap();
        assert_eq!(vacuum.commits.len(), 1);
        assert_eq!(first_vacuum(&vacuum.commits, cookie).0, Some(0));
        // Not knowing the cookie before, nothing is called a VACUUM.
        assert_eq!(first_vacuum(&vacuum.commits, None).0, None);
        c.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        let after = scan(&wal, &h, vacuum.to).unwrap();
        let cookie = first_vacuum(&vacuum.commits, cookie).1;
        assert_eq!(first_vacuum(&after.commits, cookie).0, None);
    }
}
