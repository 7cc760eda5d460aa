//! Segments: the WAL frames of whole transactions shipped in one sync, as one immutable zstd
//! object. Inside (after zstd): the magic `LBSEG001`, a big-endian u32 length, a JSON header
//! ([`SegmentHeader`]: its commits with the time each was seen, and the chain links), then the
//! frames exactly as they were in the WAL (24-byte header and page each), so a restore checks
//! SQLite's own cumulative checksums from the WAL header's seed or the previous segment's end.

use std::io::{Read, Write};
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::error::{Error, Kind, Result};
use crate::replicate::wal::{self, check_frame, Position, WalHeader, FRAME_HEADER};

const MAGIC: &[u8; 8] = b"LBSEG001";
/// Segment headers are small (one line per commit); a larger one is damage, not data.
const MAX_HEADER: u32 = 16 * 1024 * 1024;

/// A transaction in a segment: its sequence number in the generation, the frames of the
/// segment up to and including its commit frame, the database's size after it, and when the
/// replicator saw it (a frame carries no time: the resolution is the sync interval).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitRecord {
    pub seq: u64,
    pub end: u64,
    pub db_pages: u32,
    pub at: DateTime<Utc>,
}

/// Where the chain stood: after commit `seq` (0: the generation's start), at `position` in the
/// WAL (none: the WAL was empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub seq: u64,
    pub position: Option<Position>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentHeader {
    pub format_version: u32,
    pub database: String,
    pub generation: String,
    pub page_size: u32,
    /// The 32-byte header of the WAL its frames are from, hex.
    pub wal_header: String,
    /// The previous segment's end (or the generation's start): the link this one continues.
    pub prev: Link,
    /// Its frames' start in their WAL: `prev`'s position in the same WAL, or frame 0 of a new
    /// one (a reset the replicator saw while it held the WAL).
    pub start: Position,
    pub end: Position,
    pub frames: u64,
    pub commits: Vec<CommitRecord>,
}

impl SegmentHeader {
    pub fn first_seq(&self) -> u64 {
        self.commits.first().map_or(0, |c| c.seq)
    }
    pub fn last_seq(&self) -> u64 {
        self.commits.last().map_or(0, |c| c.seq)
    }
    pub fn end_link(&self) -> Link {
        Link {
            seq: self.last_seq(),
            position: Some(self.end),
        }
    }
    pub fn header(&self) -> Result<WalHeader> {
        hex::decode(&self.wal_header)
            .ok()
            .and_then(|b| WalHeader::parse(&b))
            .ok_or_else(|| corrupt(self, "its WAL header is not valid"))
    }
}

fn corrupt(h: &SegmentHeader, what: &str) -> Error {
    Error::new(
        Kind::Corrupt,
        format!(
            "segment {}-{} of generation {} is corrupt: {what}",
            h.first_seq(),
            h.last_seq(),
            h.generation
        ),
    )
}

/// The object name: first and last commit, first and last commit time, so a listing alone
/// gives each generation's window. Fixed width: names sort in commit order.
pub fn object_name(h: &SegmentHeader) -> String {
    let t = |c: Option<&CommitRecord>| c.map_or(String::new(), |c| stamp(c.at));
    format!(
        "{:012}-{:012}-{}-{}.seg.zst",
        h.first_seq(),
        h.last_seq(),
        t(h.commits.first()),
        t(h.commits.last())
    )
}

/// What a segment's name says. `level` 0 is a segment as shipped; 1 and up a compacted one
/// (`….L1.seg.zst`, see `compacted`), which an older lifeboat does not parse and so never uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    pub name: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub level: u8,
}

pub fn parse_name(name: &str) -> Option<SegmentName> {
    let stem = name.strip_suffix(".seg.zst")?;
    let (stem, level) = match stem.rsplit_once(".L") {
        Some((s, l)) => (s, l.parse::<u8>().ok().filter(|l| *l > 0)?),
        None => (stem, 0),
    };
    let mut parts = stem.splitn(4, '-');
    let first_seq = parts.next()?.parse().ok()?;
    let last_seq = parts.next()?.parse().ok()?;
    let first_at = parse_stamp(parts.next()?)?;
    let last_at = parse_stamp(parts.next()?)?;
    (first_seq <= last_seq && first_seq > 0).then(|| SegmentName {
        name: name.to_string(),
        first_seq,
        last_seq,
        first_at,
        last_at,
        level,
    })
}

/// The name of a compacted segment of `level` (1 and up) for commits `first..=last`.
pub fn compacted_name(
    first: (u64, DateTime<Utc>),
    last: (u64, DateTime<Utc>),
    level: u8,
) -> String {
    format!(
        "{:012}-{:012}-{}-{}.L{level}.seg.zst",
        first.0,
        last.0,
        stamp(first.1),
        stamp(last.1)
    )
}

fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%S%3fZ").to_string()
}

fn parse_stamp(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Compress `header.frames` frames read from `input` (the frames from `from` on, as they were
/// in the WAL `wal`): each checked against SQLite's checksum chain again, so what is stored is
/// what the scan vouched for. `what` names the input in errors.
pub fn encode_frames(
    mut input: impl Read,
    what: &str,
    wal: &WalHeader,
    from: Position,
    header: &SegmentHeader,
) -> Result<Vec<u8>> {
    let io = |e| Error::io(format!("segment from {what}"), e);
    let json = serde_json::to_vec(header)
        .map_err(|e| Error::new(Kind::Internal, format!("segment header: {e}")))?;
    let mut z = zstd::Encoder::new(Vec::new(), 3).map_err(io)?;
    z.include_checksum(true).map_err(io)?;
    z.write_all(MAGIC).map_err(io)?;
    z.write_all(&(json.len() as u32).to_be_bytes())
        .map_err(io)?;
    z.write_all(&json).map_err(io)?;
    copy_frames(&mut input, &mut z, what, wal, from, header)?;
    z.finish().map_err(io)
}

/// Copy `header.frames` frames from `input` to `out`, each checked against SQLite's checksum
/// chain from `from` on, the last ending where `header` says: a frame that is not what the
/// scan vouched for is `Kind::Database` ("changed while it was read").
pub fn copy_frames(
    input: &mut impl Read,
    out: &mut impl Write,
    what: &str,
    wal: &WalHeader,
    from: Position,
    header: &SegmentHeader,
) -> Result<()> {
    let read = |e| Error::io(format!("read {what}"), e);
    let write = |e| Error::io("write the frames", e);
    let mut buf = vec![0u8; FRAME_HEADER + wal.page_size() as usize];
    let mut sum = from.checksum;
    let changed = || Error::new(Kind::Database, format!("{what} changed while it was read"));
    for _ in 0..header.frames {
        if !wal::read_full(input, &mut buf).map_err(read)? {
            return Err(changed());
        }
        sum = check_frame(wal, &buf, sum).ok_or_else(changed)?;
        out.write_all(&buf).map_err(write)?;
    }
    if sum != header.end.checksum {
        return Err(changed());
    }
    Ok(())
}

/// The frames `header` names, read from the WAL file at `wal_file` (`header.start` on).
pub fn wal_frames(wal_file: &Path, header: &SegmentHeader) -> Result<impl Read> {
    use std::io::Seek;
    let read = |e| Error::io(format!("read {}", wal_file.display()), e);
    let mut f = std::fs::File::open(wal_file).map_err(read)?;
    let size = FRAME_HEADER as u64 + header.page_size as u64;
    f.seek(std::io::SeekFrom::Start(
        wal::WAL_HEADER as u64 + header.start.frame * size,
    ))
    .map_err(read)?;
    Ok(std::io::BufReader::with_capacity(1 << 20, f).take(header.frames * size))
}

/// A stored segment being read: its header, then its frames one at a time, each checked
/// against the WAL checksum chain.
pub struct SegmentReader<R: Read> {
    pub header: SegmentHeader,
    wal: WalHeader,
    input: R,
    sum: [u32; 2],
    read: u64,
    buf: Vec<u8>,
}

impl<'a> SegmentReader<zstd::Decoder<'a, std::io::BufReader<&'a [u8]>>> {
    /// Open a stored (compressed) segment held in memory.
    pub fn open(stored: &'a [u8], what: &str) -> Result<Self> {
        Self::open_read(stored, what)
    }
}

impl<'a, S: Read> SegmentReader<zstd::Decoder<'a, std::io::BufReader<S>>> {
    /// Open a stored (compressed) segment read from `stored` (a downloaded file: memory
    /// stays one frame).
    pub fn open_read(stored: S, what: &str) -> Result<Self> {
        let bad = |m: String| Error::new(Kind::Corrupt, format!("segment {what} is corrupt: {m}"));
        let mut input = zstd::Decoder::new(stored).map_err(|e| bad(e.to_string()))?;
        let mut magic = [0u8; 12];
        if !wal::read_full(&mut input, &mut magic).map_err(|e| bad(e.to_string()))?
            || &magic[..8] != MAGIC
        {
            return Err(bad("not a lifeboat segment".into()));
        }
        let len = wal::be32(&magic, 8);
        if len > MAX_HEADER {
            return Err(bad("header too large".into()));
        }
        let mut json = vec![0u8; len as usize];
        if !wal::read_full(&mut input, &mut json).map_err(|e| bad(e.to_string()))? {
            return Err(bad("truncated header".into()));
        }
        let header: SegmentHeader =
            serde_json::from_slice(&json).map_err(|e| bad(format!("header: {e}")))?;
        if header.format_version != 1 {
            return Err(bad(format!(
                "unknown format_version {}",
                header.format_version
            )));
        }
        let wal = header.header()?;
        if wal.page_size() != header.page_size || wal.salts() != header.start.salts {
            return Err(corrupt(&header, "its WAL header does not match it"));
        }
        let sum = header.start.checksum;
        Ok(SegmentReader {
            buf: vec![0u8; FRAME_HEADER + header.page_size as usize],
            header,
            wal,
            input,
            sum,
            read: 0,
        })
    }
}

impl<R: Read> SegmentReader<R> {
    /// The next frame (header and page), checked; `None` after the last.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>> {
        if self.read == self.header.frames {
            return Ok(None);
        }
        let ok = wal::read_full(&mut self.input, &mut self.buf)
            .map_err(|e| corrupt(&self.header, &e.to_string()))?;
        if !ok {
            return Err(corrupt(&self.header, "truncated"));
        }
        self.sum = check_frame(&self.wal, &self.buf, self.sum)
            .ok_or_else(|| corrupt(&self.header, "a frame fails its WAL checksum"))?;
        self.read += 1;
        if self.read == self.header.frames && self.sum != self.header.end.checksum {
            return Err(corrupt(&self.header, "the chain ends at another checksum"));
        }
        Ok(Some(&self.buf))
    }

    /// After the last frame: nothing may follow, and zstd's own checksum must hold.
    pub fn finish(mut self) -> Result<()> {
        let mut rest = Vec::new();
        self.input
            .read_to_end(&mut rest)
            .map_err(|e| corrupt(&self.header, &e.to_string()))?;
        if !rest.is_empty() {
            return Err(corrupt(&self.header, "bytes after its last frame"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let at = DateTime::parse_from_rfc3339("2026-12-02T10:15:30.250Z")
            .unwrap()
            .to_utc();
        let h = SegmentHeader {
            format_version: 1,
            database: "d".into(),
            generation: "g".into(),
            page_size: 4096,
            wal_header: String::new(),
            prev: Link {
                seq: 0,
                position: None,
            },
            start: Position {
                salts: [1, 2],
                frame: 0,
                checksum: [0, 0],
            },
            end: Position {
                salts: [1, 2],
                frame: 3,
                checksum: [5, 6],
            },
            frames: 3,
            commits: vec![
                CommitRecord {
                    seq: 7,
                    end: 2,
                    db_pages: 2,
                    at,
                },
                CommitRecord {
                    seq: 8,
                    end: 3,
                    db_pages: 2,
                    at: at + chrono::Duration::milliseconds(1001),
                },
            ],
        };
        let name = object_name(&h);
        assert_eq!(
            name,
            "000000000007-000000000008-20261202T101530250Z-20261202T101531251Z.seg.zst"
        );
        let n = parse_name(&name).unwrap();
        assert_eq!((n.first_seq, n.last_seq, n.first_at), (7, 8, at));
        assert!(parse_name("x.seg.zst").is_none());
        let c = compacted_name((7, at), (9, at), 2);
        let n = parse_name(&c).unwrap();
        assert_eq!((n.first_seq, n.last_seq, n.level), (7, 9, 2));
        assert!(parse_name(&c.replace(".L2", ".L0")).is_none());
        assert!(parse_name(&c.replace(".L2", ".Lx")).is_none());
    }
}
