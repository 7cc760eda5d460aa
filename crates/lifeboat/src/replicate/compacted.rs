//! Compacted segments: a window of consecutive segments merged into one, keeping only the
//! last version of each page (what applying them all in order leaves). Inside (after zstd,
//! with its checksum): the magic `LBCMP001`, a big-endian u32 length, a JSON header
//! ([`CompactedHeader`]), then one record per page in page order: its number (big-endian u32)
//! and its bytes. The WAL checksum chain no longer applies to merged pages, so the header
//! carries its own proof: a digest of the records (BLAKE3; sha256 in format 1), their count, and the links of the chain
//! it replaces (the segment before it and the end of its last), so the next segment still
//! continues it. Named like a segment with its level: `<first>-<last>-<first-at>-<last-at>.L1.seg.zst`.

use std::io::{Read, Write};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Kind, Result};
use crate::replicate::pooled::Pooled;
use crate::replicate::seekable;
use crate::replicate::segment::Link;
use crate::replicate::wal;

const MAGIC: &[u8; 8] = b"LBCMP001";

/// The level of a rollup: one compacted segment from the first compacted commit to the end of
/// the newest closed window of the first level (at most the database's size), so a restore to
/// a recent point reads the snapshot, one rollup and the last window's segments, however many
/// windows came before. Replaced by the next one; rollups overlap each other by design.
pub const ROLLUP: u8 = 255;
/// The level of a *full* rollup: a rollup that also holds every page it did not change, taken
/// from the generation's snapshot, so a restore reads it instead of the snapshot. Written when
/// the rollup changed at least [`FULL_SHARE`] of the database's pages: a restore then reads
/// about the database's size once (a rollup of a database whose pages are all written is the
/// database's size already, and read on top of the snapshot it doubled a restore's time).
pub const FULL: u8 = 254;
/// The share of the database's pages (1 in this many) a rollup must hold to be made full.
pub const FULL_SHARE: u64 = 4;

/// Whether `level` is a rollup's, full or not.
pub fn is_rollup(level: u8) -> bool {
    level == ROLLUP || level == FULL
}
const MAX_HEADER: u32 = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CompactedHeader {
    pub format_version: u32,
    pub database: String,
    pub generation: String,
    pub page_size: u32,
    /// 1: merged shipped segments; 2 and up: merged segments of the level below; [`ROLLUP`]:
    /// everything from the first compacted commit; [`FULL`]: that and every other page.
    pub level: u8,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// The link the first merged segment continued, and the end of the last one.
    pub prev: Link,
    pub end: Link,
    /// The database's size in pages after commit `last_seq`.
    pub db_pages: u32,
    /// How many page records follow, and the digest (hex) of all of them: their BLAKE3
    /// (format 2), or their sha256 (format 1, written before the twelfth session; BLAKE3 is
    /// about four times faster, and a rollup is the database's size).
    pub pages: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub blake3: String,
    /// The segments it replaces, by name.
    pub replaces: Vec<String>,
}

fn corrupt(what: &str, m: impl std::fmt::Display) -> Error {
    Error::new(
        Kind::Corrupt,
        format!("compacted segment {what} is corrupt: {m}"),
    )
}

/// Uncompressed bytes per frame of the body: each is decompressed on its own, so a restore
/// reads a rollup on several threads ([`seekable`]).
const FRAME_BYTES: usize = 2 * 1024 * 1024;

/// Write a compacted segment: `header` (its `pages` and digest already those of `records`),
/// then `records` (page number, page), compressed: the header in a frame of its own, the
/// records in frames of about [`FRAME_BYTES`], then their seek table. The body goes to `out`.
pub fn encode<W: Write>(
    out: W,
    header: &CompactedHeader,
    records: impl Iterator<Item = Result<(u32, Vec<u8>)>>,
) -> Result<W> {
    let io = |e| Error::io("write compacted segment", e);
    let json = serde_json::to_vec(header)
        .map_err(|e| Error::new(Kind::Internal, format!("compacted header: {e}")))?;
    let mut z = seekable::FramesWriter::new(out, 3).map_err(io)?;
    let mut buf = Vec::with_capacity(FRAME_BYTES + 4 + header.page_size as usize);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&(json.len() as u32).to_be_bytes());
    buf.extend_from_slice(&json);
    z.frame(&buf).map_err(io)?;
    buf.clear();
    for r in records {
        let (pgno, page) = r?;
        buf.extend_from_slice(&pgno.to_be_bytes());
        buf.extend_from_slice(&page);
        if buf.len() >= FRAME_BYTES {
            z.frame(&buf).map_err(io)?;
            buf.clear();
        }
    }
    if !buf.is_empty() {
        z.frame(&buf).map_err(io)?;
    }
    z.finish().map_err(io)
}

/// The format a compacted segment is written in: 2 (BLAKE3, seekable frames).
pub const FORMAT: u32 = 2;

/// The digest (BLAKE3) a header of [`FORMAT`] records, over records in order.
#[derive(Default)]
pub struct RecordHash(blake3::Hasher);

impl RecordHash {
    pub fn add(&mut self, pgno: u32, page: &[u8]) {
        self.0.update(&pgno.to_be_bytes());
        self.0.update(page);
    }
    pub fn hex(self) -> String {
        self.0.finalize().to_hex().to_string()
    }
}

/// The digest a header's format records, computed as records go by.
enum RecordsDigest {
    Sha256(Sha256),
    Blake3(Box<blake3::Hasher>),
}

impl RecordsDigest {
    fn of(h: &CompactedHeader) -> RecordsDigest {
        match h.format_version {
            1 => RecordsDigest::Sha256(Sha256::new()),
            _ => RecordsDigest::Blake3(Box::default()),
        }
    }
    fn update(&mut self, bytes: &[u8]) {
        match self {
            RecordsDigest::Sha256(d) => d.update(bytes),
            RecordsDigest::Blake3(d) => {
                d.update(bytes);
            }
        }
    }
    fn hex(self) -> String {
        match self {
            RecordsDigest::Sha256(d) => hex::encode(d.finalize()),
            RecordsDigest::Blake3(d) => d.finalize().to_hex().to_string(),
        }
    }
}

/// A stored compacted segment being read: its header, then its pages one at a time; the
/// digest and the count are checked after the last.
pub struct CompactedReader {
    pub header: CompactedHeader,
    what: String,
    body: Body,
    read: u64,
    last_pgno: u32,
}

/// Where the records come from. Either way they are hashed (the digest of the records is
/// the digest of the bytes after the header) on a thread of their own, as a rollup is about
/// the database's size.
enum Body {
    /// Frames listed by a seek table, decompressed ahead on several threads: the one being
    /// read, and where.
    Frames {
        frames: seekable::ParallelFrames,
        cur: Arc<Pooled>,
        at: usize,
        hasher: Hasher,
    },
    /// One zstd stream (written before the seek table), read a page at a time.
    Stream {
        input: Box<dyn Read + Send>,
        chunk: Arc<Pooled>,
        at: usize,
        hasher: Hasher,
        page: Vec<u8>,
    },
}

/// A thread hashing the chunks it is handed, in order (the header's digest).
struct Hasher {
    tx: Option<std::sync::mpsc::SyncSender<Arc<Pooled>>>,
    thread: Option<std::thread::JoinHandle<String>>,
}

impl Hasher {
    fn new(header: &CompactedHeader) -> Self {
        let (tx, chunks) = std::sync::mpsc::sync_channel::<Arc<Pooled>>(4);
        let mut h = RecordsDigest::of(header);
        let thread = std::thread::spawn(move || {
            for c in chunks {
                h.update(&c[..]);
            }
            h.hex()
        });
        Hasher {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn add(&self, chunk: &Arc<Pooled>) -> std::io::Result<()> {
        match self.tx.as_ref().map(|tx| tx.send(chunk.clone())) {
            Some(Ok(())) => Ok(()),
            _ => Err(std::io::Error::other("hasher stopped")),
        }
    }

    /// The digest (hex) of everything handed over.
    fn finish(&mut self) -> std::io::Result<String> {
        drop(self.tx.take());
        self.thread
            .take()
            .ok_or_else(|| std::io::Error::other("hashed twice"))?
            .join()
            .map_err(|_| std::io::Error::other("hasher thread panicked"))
    }
}

/// Read into `buf` until it is full or the input ends; how much was read (a chunk of records,
/// whose last may be short; [`wal::read_full`] where only a full buffer will do).
fn fill(input: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A page read back: its number and bytes, and when it was read from a frame, that frame and
/// where the page starts in it (a restore writes it from there, without a copy).
pub struct Page<'a> {
    pub pgno: u32,
    pub bytes: &'a [u8],
    pub frame: Option<(&'a Arc<Pooled>, usize)>,
}

impl CompactedReader {
    /// Open a stored compacted segment read from `stored` (a downloaded file: memory stays a
    /// few frames).
    pub fn open(stored: std::io::BufReader<std::fs::File>, what: &str) -> Result<Self> {
        let c = |e| corrupt(what, e);
        if let Some(list) = seekable::frames(stored.get_ref()).map_err(c)? {
            let file = stored.into_inner();
            let first = *list.first().ok_or_else(|| corrupt(what, "no frames"))?;
            let head = seekable::read_frame(&file, first).map_err(c)?;
            let (header, rest) = parse_header(&head, what)?;
            if !rest.is_empty() {
                return Err(corrupt(what, "pages in its header's frame"));
            }
            let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            return Ok(CompactedReader {
                body: Body::Frames {
                    frames: seekable::ParallelFrames::start(file, list, 1, workers),
                    cur: Arc::default(),
                    at: 0,
                    hasher: Hasher::new(&header),
                },
                header,
                what: what.to_string(),
                read: 0,
                last_pgno: 0,
            });
        }
        let mut input = zstd::Decoder::with_buffer(stored).map_err(c)?;
        let mut magic = [0u8; 12];
        if !wal::read_full(&mut input, &mut magic).map_err(c)? || &magic[..8] != MAGIC {
            return Err(corrupt(what, "not a lifeboat compacted segment"));
        }
        let len = wal::be32(&magic, 8);
        if len > MAX_HEADER {
            return Err(corrupt(what, "header too large"));
        }
        let mut json = magic.to_vec();
        json.resize(12 + len as usize, 0);
        if !wal::read_full(&mut input, &mut json[12..]).map_err(c)? {
            return Err(corrupt(what, "truncated header"));
        }
        let (header, _) = parse_header(&json, what)?;
        Ok(CompactedReader {
            body: Body::Stream {
                input: Box::new(input),
                chunk: Arc::default(),
                at: 0,
                hasher: Hasher::new(&header),
                page: vec![0u8; 4 + header.page_size as usize],
            },
            header,
            what: what.to_string(),
            read: 0,
            last_pgno: 0,
        })
    }

    /// The next page; `None` after the last, once everything it records held.
    pub fn next_page(&mut self) -> Result<Option<Page<'_>>> {
        let what = &self.what;
        let c = |e| corrupt(what, e);
        let record = 4 + self.header.page_size as usize;
        if self.read == self.header.pages {
            let got = match &mut self.body {
                Body::Frames {
                    frames,
                    cur,
                    at,
                    hasher,
                } => {
                    if *at != cur.len() || frames.next_frame().is_some() {
                        return Err(corrupt(what, "bytes after its last page"));
                    }
                    hasher.finish().map_err(c)?
                }
                Body::Stream {
                    input,
                    chunk,
                    at,
                    hasher,
                    ..
                } => {
                    let mut rest = Vec::new();
                    input.read_to_end(&mut rest).map_err(c)?;
                    if *at != chunk.len() || !rest.is_empty() {
                        return Err(corrupt(what, "bytes after its last page"));
                    }
                    hasher.finish().map_err(c)?
                }
            };
            let (want, name) = match self.header.format_version {
                1 => (&self.header.sha256, "sha256"),
                _ => (&self.header.blake3, "BLAKE3 digest"),
            };
            if got != *want {
                return Err(corrupt(
                    what,
                    format!("its pages do not match their {name}"),
                ));
            }
            return Ok(None);
        }
        let (bytes, frame): (&[u8], _) = match &mut self.body {
            Body::Frames {
                frames,
                cur,
                at,
                hasher,
            } => {
                if *at == cur.len() {
                    let next = match frames.next_frame() {
                        Some(f) => f.map_err(c)?,
                        None => return Err(corrupt(what, "truncated")),
                    };
                    if next.is_empty() || next.len() % record != 0 {
                        return Err(corrupt(what, "a frame that does not hold whole pages"));
                    }
                    *cur = Arc::new(next);
                    *at = 0;
                    hasher.add(cur).map_err(c)?;
                }
                *at += record;
                let cur: &Arc<Pooled> = cur;
                (&cur[*at - record..*at], Some((cur, *at - record + 4)))
            }
            Body::Stream {
                input,
                chunk,
                at,
                hasher,
                page,
            } => {
                let mut n = 0;
                while n < record {
                    if *at == chunk.len() {
                        let mut next = vec![0u8; 1 << 20];
                        let k = fill(input.as_mut(), &mut next).map_err(c)?;
                        if k == 0 {
                            return Err(corrupt(what, "truncated"));
                        }
                        next.truncate(k);
                        *chunk = Arc::new(Pooled::unpooled(next));
                        *at = 0;
                        hasher.add(chunk).map_err(c)?;
                    }
                    let k = (record - n).min(chunk.len() - *at);
                    page[n..n + k].copy_from_slice(&chunk[*at..*at + k]);
                    (n, *at) = (n + k, *at + k);
                }
                (&page[..], None)
            }
        };
        let pgno = wal::be32(bytes, 0);
        // In page order, each once, none past the database's end.
        if pgno <= self.last_pgno || pgno > self.header.db_pages {
            return Err(corrupt(what, format!("page {pgno} out of order")));
        }
        self.last_pgno = pgno;
        self.read += 1;
        Ok(Some(Page {
            pgno,
            bytes: &bytes[4..],
            frame,
        }))
    }
}

/// The header at the start of `bytes` (magic, length, JSON), checked; and what follows it.
fn parse_header<'a>(bytes: &'a [u8], what: &str) -> Result<(CompactedHeader, &'a [u8])> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(corrupt(what, "not a lifeboat compacted segment"));
    }
    let len = wal::be32(bytes, 8);
    if len > MAX_HEADER {
        return Err(corrupt(what, "header too large"));
    }
    let end = 12 + len as usize;
    if bytes.len() < end {
        return Err(corrupt(what, "truncated header"));
    }
    let header: CompactedHeader = serde_json::from_slice(&bytes[12..end])
        .map_err(|e| corrupt(what, format!("header: {e}")))?;
    if header.format_version == 0 || header.format_version > FORMAT {
        return Err(corrupt(
            what,
            format!("unknown format_version {}", header.format_version),
        ));
    }
    if !(512..=65536).contains(&header.page_size) || !header.page_size.is_power_of_two() {
        return Err(corrupt(what, "its page size is not valid"));
    }
    Ok((header, &bytes[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: u32 = 1024;

    /// A header of `format` for `pages`: format 1 with their sha256, else their BLAKE3.
    fn header(pages: &[(u32, Vec<u8>)], format: u32) -> CompactedHeader {
        let (mut blake, mut sha) = (RecordHash::default(), Sha256::new());
        for (p, b) in pages {
            blake.add(*p, b);
            sha.update(p.to_be_bytes());
            sha.update(b);
        }
        let (sha256, blake3) = match format {
            1 => (hex::encode(sha.finalize()), String::new()),
            _ => (String::new(), blake.hex()),
        };
        let at = "2026-12-02T10:00:00Z".parse().unwrap();
        CompactedHeader {
            format_version: format,
            database: "db".into(),
            generation: "g".into(),
            page_size: PS,
            level: 1,
            first_seq: 1,
            last_seq: 2,
            first_at: at,
            last_at: at,
            prev: Link {
                seq: 0,
                position: None,
            },
            end: Link {
                seq: 2,
                position: None,
            },
            db_pages: 100_000,
            pages: pages.len() as u64,
            sha256,
            blake3,
            replaces: vec![],
        }
    }

    fn pages(n: u32) -> Vec<(u32, Vec<u8>)> {
        (1..=n)
            .map(|p| (p * 2, (0..PS).map(|i| (i * p % 251) as u8).collect()))
            .collect()
    }

    fn read_all(path: &std::path::Path) -> Result<Vec<(u32, Vec<u8>)>> {
        let f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut r = CompactedReader::open(f, "test")?;
        let mut out = Vec::new();
        while let Some(Page {
            pgno: p, bytes: b, ..
        }) = r.next_page()?
        {
            out.push((p, b.to_vec()));
        }
        Ok(out)
    }

    /// A segment written as one zstd stream, as before the seek table.
    fn one_stream(h: &CompactedHeader, pages: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let json = serde_json::to_vec(h).unwrap();
        let mut z = zstd::Encoder::new(Vec::new(), 3).unwrap();
        z.write_all(MAGIC).unwrap();
        z.write_all(&(json.len() as u32).to_be_bytes()).unwrap();
        z.write_all(&json).unwrap();
        for (p, b) in pages {
            z.write_all(&p.to_be_bytes()).unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap()
    }

    #[test]
    fn both_formats_read_back_and_a_changed_page_fails_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        // About five frames of records.
        let pages = pages(5 * FRAME_BYTES as u32 / (PS + 4) + 3);
        let h = header(&pages, FORMAT);
        let old = header(&pages, 1);
        let framed = dir.path().join("framed.zst");
        let out = std::fs::File::create(&framed).unwrap();
        encode(out, &h, pages.iter().map(|p| Ok(p.clone()))).unwrap();
        let file = std::fs::File::open(&framed).unwrap();
        assert!(seekable::frames(&file).unwrap().unwrap().len() >= 5);
        assert_eq!(read_all(&framed).unwrap(), pages);
        let stream = dir.path().join("stream.zst");
        // Format 1, as written before: one zstd stream, a sha256.
        std::fs::write(&stream, one_stream(&old, &pages)).unwrap();
        assert_eq!(read_all(&stream).unwrap(), pages);
        // The same header over other bytes: caught at the end, in both layouts.
        let mut other = pages.clone();
        other[pages.len() / 2].1[7] ^= 1;
        let out = std::fs::File::create(&framed).unwrap();
        encode(out, &h, other.iter().map(|p| Ok(p.clone()))).unwrap();
        let e = read_all(&framed).unwrap_err();
        assert!(e.to_string().contains("BLAKE3"), "{e}");
        std::fs::write(&stream, one_stream(&old, &other)).unwrap();
        let e = read_all(&stream).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        // One page fewer than the header counts.
        let out = std::fs::File::create(&framed).unwrap();
        encode(out, &h, pages[1..].iter().map(|p| Ok(p.clone()))).unwrap();
        assert!(read_all(&framed).is_err());
        // Pages out of order.
        let mut swapped = pages.clone();
        swapped.swap(0, 1);
        let out = std::fs::File::create(&framed).unwrap();
        encode(out, &h, swapped.iter().map(|p| Ok(p.clone()))).unwrap();
        let e = read_all(&framed).unwrap_err();
        assert!(e.to_string().contains("out of order"), "{e}");
    }
}
