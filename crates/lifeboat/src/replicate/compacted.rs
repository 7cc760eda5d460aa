//! Compacted segments: a window of consecutive segments merged into one, keeping only the
//! last version of each page (what applying them all in order leaves). Inside (after zstd,
//! with its checksum): the magic `LBCMP001`, a big-endian u32 length, a JSON header
//! ([`CompactedHeader`]), then one record per page in page order: its number (big-endian u32)
//! and its bytes. The WAL checksum chain no longer applies to merged pages, so the header
//! carries its own proof: the sha256 of the records, their count, and the links of the chain
//! it replaces (the segment before it and the end of its last), so the next segment still
//! continues it. Named like a segment with its level: `<first>-<last>-<first-at>-<last-at>.L1.seg.zst`.

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
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
    /// How many page records follow, and the sha256 (hex) of all of them.
    pub pages: u64,
    pub sha256: String,
    /// The segments it replaces, by name.
    pub replaces: Vec<String>,
}

fn corrupt(what: &str, m: impl std::fmt::Display) -> Error {
    Error::new(
        Kind::Corrupt,
        format!("compacted segment {what} is corrupt: {m}"),
    )
}

/// Write a compacted segment: `header` (its `pages` and `sha256` already those of `records`),
/// then `records` (page number, page), compressed. The body goes to `out`.
pub fn encode<W: Write>(
    out: W,
    header: &CompactedHeader,
    records: impl Iterator<Item = Result<(u32, Vec<u8>)>>,
) -> Result<W> {
    let io = |e| Error::io("write compacted segment", e);
    let json = serde_json::to_vec(header)
        .map_err(|e| Error::new(Kind::Internal, format!("compacted header: {e}")))?;
    let mut z = zstd::Encoder::new(out, 3).map_err(io)?;
    z.include_checksum(true).map_err(io)?;
    z.write_all(MAGIC).map_err(io)?;
    z.write_all(&(json.len() as u32).to_be_bytes())
        .map_err(io)?;
    z.write_all(&json).map_err(io)?;
    for r in records {
        let (pgno, page) = r?;
        z.write_all(&pgno.to_be_bytes()).map_err(io)?;
        z.write_all(&page).map_err(io)?;
    }
    z.finish().map_err(io)
}

/// The sha256 a header records, over records in order.
#[derive(Default)]
pub struct RecordHash(Sha256);

impl RecordHash {
    pub fn add(&mut self, pgno: u32, page: &[u8]) {
        self.0.update(pgno.to_be_bytes());
        self.0.update(page);
    }
    pub fn hex(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// A stored compacted segment being read: its header, then its pages one at a time; the
/// sha256 and the count are checked after the last.
pub struct CompactedReader<R: Read> {
    pub header: CompactedHeader,
    what: String,
    /// The records, hashed as they pass (the sha256 of the records is the sha256 of the bytes
    /// after the header): on a thread of its own, as a rollup is about the database's size.
    input: HashedRead<R>,
    read: u64,
    last_pgno: u32,
    buf: Vec<u8>,
}

/// A `Read` whose bytes a thread of its own hashes (sha256), handed over a megabyte at a time.
struct HashedRead<R> {
    inner: R,
    buf: Vec<u8>,
    at: usize,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    hasher: Option<std::thread::JoinHandle<String>>,
}

impl<R: Read> HashedRead<R> {
    fn new(inner: R) -> Self {
        let (tx, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let hasher = std::thread::spawn(move || {
            let mut h = Sha256::new();
            for c in chunks {
                h.update(&c);
            }
            hex::encode(h.finalize())
        });
        HashedRead {
            inner,
            buf: Vec::new(),
            at: 0,
            tx: Some(tx),
            hasher: Some(hasher),
        }
    }

    /// The sha256 (hex) of everything read through it.
    fn finish(&mut self) -> std::io::Result<String> {
        drop(self.tx.take());
        self.hasher
            .take()
            .ok_or_else(|| std::io::Error::other("hashed twice"))?
            .join()
            .map_err(|_| std::io::Error::other("hasher thread panicked"))
    }
}

impl<R: Read> Read for HashedRead<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            self.buf.resize(1 << 20, 0);
            let mut n = 0;
            while n < self.buf.len() {
                match self.inner.read(&mut self.buf[n..]) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(n);
            self.at = 0;
            if n == 0 {
                return Ok(0);
            }
            let sent = self.tx.as_ref().map(|tx| tx.send(self.buf.clone()));
            if !matches!(sent, Some(Ok(()))) {
                return Err(std::io::Error::other("hasher stopped"));
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl<'a, S: Read> CompactedReader<zstd::Decoder<'a, std::io::BufReader<S>>> {
    /// Open a stored compacted segment read from `stored` (a downloaded file: memory stays
    /// one page).
    pub fn open(stored: S, what: &str) -> Result<Self> {
        let mut input = zstd::Decoder::new(stored).map_err(|e| corrupt(what, e))?;
        let mut magic = [0u8; 12];
        if !wal::read_full(&mut input, &mut magic).map_err(|e| corrupt(what, e))?
            || &magic[..8] != MAGIC
        {
            return Err(corrupt(what, "not a lifeboat compacted segment"));
        }
        let len = wal::be32(&magic, 8);
        if len > MAX_HEADER {
            return Err(corrupt(what, "header too large"));
        }
        let mut json = vec![0u8; len as usize];
        if !wal::read_full(&mut input, &mut json).map_err(|e| corrupt(what, e))? {
            return Err(corrupt(what, "truncated header"));
        }
        let header: CompactedHeader =
            serde_json::from_slice(&json).map_err(|e| corrupt(what, format!("header: {e}")))?;
        if header.format_version != 1 {
            return Err(corrupt(
                what,
                format!("unknown format_version {}", header.format_version),
            ));
        }
        if !(512..=65536).contains(&header.page_size) || !header.page_size.is_power_of_two() {
            return Err(corrupt(what, "its page size is not valid"));
        }
        Ok(CompactedReader {
            buf: vec![0u8; 4 + header.page_size as usize],
            header,
            what: what.to_string(),
            input: HashedRead::new(input),
            read: 0,
            last_pgno: 0,
        })
    }
}

impl<R: Read> CompactedReader<R> {
    /// The next page (number, bytes); `None` after the last, once everything it records held.
    pub fn next_page(&mut self) -> Result<Option<(u32, &[u8])>> {
        if self.read == self.header.pages {
            let mut rest = Vec::new();
            self.input
                .read_to_end(&mut rest)
                .map_err(|e| corrupt(&self.what, e))?;
            if !rest.is_empty() {
                return Err(corrupt(&self.what, "bytes after its last page"));
            }
            let got = self.input.finish().map_err(|e| corrupt(&self.what, e))?;
            if got != self.header.sha256 {
                return Err(corrupt(&self.what, "its pages do not match their sha256"));
            }
            return Ok(None);
        }
        let ok =
            wal::read_full(&mut self.input, &mut self.buf).map_err(|e| corrupt(&self.what, e))?;
        if !ok {
            return Err(corrupt(&self.what, "truncated"));
        }
        let pgno = wal::be32(&self.buf, 0);
        // In page order, each once, none past the database's end.
        if pgno <= self.last_pgno || pgno > self.header.db_pages {
            return Err(corrupt(&self.what, format!("page {pgno} out of order")));
        }
        self.last_pgno = pgno;
        self.read += 1;
        Ok(Some((pgno, &self.buf[4..])))
    }
}
