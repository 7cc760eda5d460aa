//! The spool: shipped WAL frames staged on local disk until the next upload.
//!
//! A checkpoint may only copy frames that are shipped. Staging them here (a plain write to
//! the page cache, no fsync) instead of uploading a segment each time lets the replicator
//! checkpoint about as often as SQLite's own autocheckpoint would, so the WAL stays short
//! and writers stay fast, while the repository still gets one segment per upload (every sync
//! interval), as Litestream's shadow WAL does.
//!
//! A piece is one would-be segment: its [`SegmentHeader`] and its frames, uncompressed, in
//! `<database file>.lifeboat-spool/`. Consecutive pieces of one WAL go up as one segment. A
//! piece survives `kill -9` (the next start uploads it before resuming the chain); a host
//! crash may lose or tear it (it is never fsynced), which its checksums tell: the chain then
//! stops before it, and the next start breaks or resumes it as for any frames the WAL lost.

use std::collections::VecDeque;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::suffixed;
use crate::replicate::layout::{self, Generation};
use crate::replicate::segment::{self, Link, SegmentHeader};
use crate::replicate::wal::{self, WalHeader, FRAME_HEADER};
use crate::repo::Repository;

const MAGIC: &[u8; 8] = b"LBSPOOL1";
const EXT: &str = ".frames";

/// One staged piece.
#[derive(Debug, Clone)]
struct Piece {
    path: PathBuf,
    header: SegmentHeader,
    /// Where its frames start in the file.
    data_at: u64,
}

/// What went up in one upload.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub segments: u64,
    pub bytes: u64,
    /// The commits those segments hold.
    pub commits: u64,
}

impl std::ops::AddAssign for Uploaded {
    fn add_assign(&mut self, more: Uploaded) {
        self.segments += more.segments;
        self.bytes += more.bytes;
        self.commits += more.commits;
    }
}

pub struct Spool {
    dir: PathBuf,
    pieces: VecDeque<Piece>,
    /// Bytes of frames staged and not uploaded yet.
    bytes: u64,
    /// The pieces of the segment whose upload failed last: it is tried again as it was.
    retry_run: Option<usize>,
    /// An upload running in the background, of the first pieces.
    in_flight: Option<tokio::task::JoinHandle<Outcome>>,
    /// Everything stored since this spool was made, also by uploads that then failed on a
    /// later segment (whose reports are lost with their error).
    stored: Uploaded,
}

/// How a background upload ended: how many of the first pieces went up, and the error that
/// stopped it, if one did.
struct Outcome {
    pieces: usize,
    uploaded: Uploaded,
    error: Option<Error>,
    /// How many pieces the segment that failed held.
    failed_run: Option<usize>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // A replicator dropped (its lease lost, the process stopping) uploads nothing more:
        // what is staged is uploaded by the next one, if its chain still goes on from there.
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
    }
}

impl Spool {
    /// The spool of the database file at `db`: empty in memory; [`Self::recover`] reads what
    /// a stopped replicator left.
    pub fn new(db: &Path) -> Spool {
        Spool {
            dir: suffixed(db, ".lifeboat-spool"),
            pieces: VecDeque::new(),
            bytes: 0,
            retry_run: None,
            in_flight: None,
            stored: Uploaded::default(),
        }
    }

    /// Nothing staged, nothing being uploaded.
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty() && self.in_flight.is_none()
    }

    /// Bytes of frames staged and not uploaded yet.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Every segment stored since this spool was made (a segment tried again once).
    pub fn stored(&self) -> Uploaded {
        self.stored
    }

    /// Stage `header.frames` frames of the WAL at `wal_file` from `header.start` on: read
    /// again and checked against the checksum chain, written under a temporary name, then
    /// renamed (a piece is whole or absent after a `kill -9`).
    pub fn stage(&mut self, wal_file: &Path, wal: &WalHeader, header: SegmentHeader) -> Result<()> {
        let io = |e| Error::io(format!("stage frames in {}", self.dir.display()), e);
        match std::fs::create_dir(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io(e)),
            _ => {}
        }
        let name = piece_name(&header);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let path = self.dir.join(&name);
        let json = serde_json::to_vec(&header)
            .map_err(|e| Error::new(Kind::Internal, format!("spool header: {e}")))?;
        let written = write_piece(&tmp, &json, wal_file, wal, &header)
            .and_then(|()| std::fs::rename(&tmp, &path).map_err(io));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        self.bytes += frame_bytes(&header);
        self.pieces.push_back(Piece {
            path,
            data_at: (MAGIC.len() + 4 + json.len()) as u64,
            header,
        });
        Ok(())
    }

    /// Upload `header.frames` frames of the WAL at `wal_file` as one segment, straight from
    /// the WAL, after every staged piece: for when the local disk is too full to stage them
    /// (the WAL can then only shrink once they are shipped without the spool).
    pub async fn send_direct(
        &mut self,
        repo: &Arc<Repository>,
        max_frames: u64,
        wal_file: &Path,
        header: &SegmentHeader,
    ) -> Result<Uploaded> {
        let mut done = self.upload(repo, max_frames).await?;
        let (file, h) = (wal_file.to_path_buf(), header.clone());
        let body = tokio::task::spawn_blocking(move || direct(&file, &h))
            .await
            .unwrap_or_else(|e| Err(Error::new(Kind::Internal, format!("encode: {e}"))))?;
        let direct = Uploaded {
            segments: 1,
            bytes: body.len() as u64,
            commits: header.commits.len() as u64,
        };
        let name = segment::object_name(header);
        layout::put_segment(repo, &header.database, &header.generation, &name, body).await?;
        self.stored += direct;
        done += direct;
        Ok(done)
    }

    /// Upload every staged piece, oldest first (after the background upload running, if
    /// one is): consecutive pieces of one WAL (and generation) as one segment of at most
    /// `max_frames` frames (a larger piece alone). A piece is removed once its segment is
    /// stored; on an error the rest stays staged.
    pub async fn upload(&mut self, repo: &Arc<Repository>, max_frames: u64) -> Result<Uploaded> {
        let mut done = self.finish().await?;
        if self.start(repo, max_frames) {
            let more = self.finish().await?;
            done += more;
        }
        Ok(done)
    }

    /// Start uploading every staged piece in the background, unless an upload is running or
    /// nothing is staged. Whether one was started.
    pub fn start(&mut self, repo: &Arc<Repository>, max_frames: u64) -> bool {
        if self.in_flight.is_some() || self.pieces.is_empty() || uploads_held() {
            return false;
        }
        let pieces: Vec<Piece> = self.pieces.iter().cloned().collect();
        let repo = Arc::clone(repo);
        let dir = self.dir.clone();
        let retry = self.retry_run;
        self.in_flight = Some(tokio::spawn(async move {
            send(&repo, &dir, &pieces, max_frames, retry).await
        }));
        true
    }

    /// The background upload's result once it has ended (`None` while it runs, or when none
    /// was started): what went up is no longer staged.
    pub async fn ended(&mut self) -> Option<Result<Uploaded>> {
        if self.in_flight.as_ref().is_some_and(|h| h.is_finished()) {
            Some(self.finish().await)
        } else {
            None
        }
    }

    /// Wait for the background upload, if one runs.
    pub async fn finish(&mut self) -> Result<Uploaded> {
        let Some(h) = self.in_flight.take() else {
            return Ok(Uploaded::default());
        };
        let outcome = h
            .await
            .map_err(|e| Error::new(Kind::Internal, format!("upload of staged frames: {e}")))?;
        self.retry_run = outcome.failed_run;
        self.stored += outcome.uploaded;
        for _ in 0..outcome.pieces {
            let p = self.pieces.pop_front().expect("piece");
            self.bytes -= frame_bytes(&p.header);
            let _ = std::fs::remove_file(&p.path);
        }
        match outcome.error {
            Some(e) => Err(e),
            None => Ok(outcome.uploaded),
        }
    }

    /// Read what a replicator of this file left staged (stopped with `kill -9`), keep the
    /// pieces that continue their generation's stored chain, and upload them. Pieces already
    /// stored, or after a gap, or torn (a host crash) are dropped: the chain then ends before
    /// them, as if the replicator had been stopped there.
    pub async fn recover(
        &mut self,
        repo: &Arc<Repository>,
        db: &str,
        max_frames: u64,
    ) -> Result<Uploaded> {
        let mut left = self.read_dir()?;
        left.sort_by(|a, b| {
            (&a.header.generation, a.header.first_seq())
                .cmp(&(&b.header.generation, b.header.first_seq()))
        });
        let mut tail: Option<(String, Option<Link>)> = None;
        for p in left {
            if tail.as_ref().is_none_or(|(g, _)| *g != p.header.generation) {
                let end = match layout::read_generation(repo, db, &p.header.generation).await? {
                    Some(g) => Some(chain_end(repo, db, &g).await?.0),
                    None => None,
                };
                tail = Some((p.header.generation.clone(), end));
            }
            let (_, end) = tail.as_mut().expect("tail");
            let keep = match end {
                Some(link) if p.header.prev == *link && p.header.database == db => {
                    *link = p.header.end_link();
                    true
                }
                _ => false,
            };
            if keep {
                self.bytes += frame_bytes(&p.header);
                self.pieces.push_back(p);
            } else {
                tracing::info!(database = db, piece = %p.path.display(), "dropping a staged piece its chain does not continue with");
                let _ = std::fs::remove_file(&p.path);
            }
        }
        // A torn piece fails its checksums: it and what follows it are dropped.
        let mut done = Uploaded::default();
        while !self.pieces.is_empty() {
            match self.upload(repo, max_frames).await {
                Ok(u) => {
                    done += u;
                }
                Err(e) if e.kind == Kind::Corrupt => {
                    tracing::warn!(database = db, "staged frames left by a stopped replicator are damaged (a crash of the host?), dropped: {e}");
                    self.clear();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Forget and remove every staged piece (a background upload is stopped first).
    pub fn clear(&mut self) {
        if let Some(h) = self.in_flight.take() {
            h.abort();
        }
        self.retry_run = None;
        for p in self.pieces.drain(..) {
            let _ = std::fs::remove_file(&p.path);
        }
        self.bytes = 0;
    }

    /// Remove the directory when nothing is staged (a clean stop leaves nothing behind).
    pub fn close(&self) {
        if self.pieces.is_empty() {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }

    fn read_dir(&self) -> Result<Vec<Piece>> {
        let list = match std::fs::read_dir(&self.dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read {}", self.dir.display()), e)),
        };
        let mut pieces = Vec::new();
        for entry in list.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(EXT) {
                // A temporary piece a kill cut short.
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            match read_piece(&path) {
                Some(p) => pieces.push(p),
                None => {
                    tracing::warn!(piece = %path.display(), "a staged piece is unreadable (a crash of the host?): dropped");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        Ok(pieces)
    }
}

/// Upload `pieces`, oldest first, as segments of consecutive pieces.
async fn send(
    repo: &Repository,
    dir: &Path,
    pieces: &[Piece],
    max_frames: u64,
    first_run: Option<usize>,
) -> Outcome {
    let mut outcome = Outcome {
        pieces: 0,
        uploaded: Uploaded::default(),
        error: None,
        failed_run: None,
    };
    while outcome.pieces < pieces.len() {
        let run = &pieces[outcome.pieces..];
        // A run that failed goes again as it was (the same segment, bytes and name: if its
        // store had it after all, the write is no error), however many pieces came since.
        let n = match first_run {
            Some(n) if outcome.pieces == 0 => n.min(run.len()),
            _ => run_len(run, max_frames),
        };
        let (run, dir) = (run[..n].to_vec(), dir.to_path_buf());
        // Compressing is CPU work: off the runtime's workers.
        let encoded = tokio::task::spawn_blocking(move || encode(&run, &dir))
            .await
            .unwrap_or_else(|e| Err(Error::new(Kind::Internal, format!("encode: {e}"))));
        let stored = match encoded {
            Ok((header, body)) => {
                let name = segment::object_name(&header);
                let up = Uploaded {
                    segments: 1,
                    bytes: body.len() as u64,
                    commits: header.commits.len() as u64,
                };
                layout::put_segment(repo, &header.database, &header.generation, &name, body)
                    .await
                    .and_then(|()| fault_lost_answer())
                    .map(|()| {
                        tracing::debug!(database = %header.database, segment = %name, pieces = n, "uploaded");
                        up
                    })
            }
            Err(e) => Err(e),
        };
        match stored {
            Ok(up) => {
                outcome.pieces += n;
                outcome.uploaded += up;
            }
            Err(e) => {
                outcome.error = Some(e);
                outcome.failed_run = Some(n);
                break;
            }
        }
    }
    outcome
}

/// One segment of consecutive pieces: its header and its stored bytes. A piece that fails its
/// checksums, or is gone (deleted by a user or a temporary files cleaner), is `Kind::Corrupt`:
/// its frames cannot be had again.
fn encode(run: &[Piece], dir: &Path) -> Result<(SegmentHeader, Vec<u8>)> {
    let header = merged(run.iter().map(|p| &p.header));
    let wal = header.header()?;
    let what = format!("the staged frames in {}", dir.display());
    let mut input: Box<dyn Read> = Box::new(std::io::empty());
    for p in run {
        let io = |e| Error::io(format!("read {}", p.path.display()), e);
        let mut f = std::fs::File::open(&p.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::new(
                Kind::Corrupt,
                format!("{} is gone (deleted while staged)", p.path.display()),
            ),
            _ => io(e),
        })?;
        f.seek(SeekFrom::Start(p.data_at)).map_err(io)?;
        let len = p.header.frames * (FRAME_HEADER as u64 + header.page_size as u64);
        input = Box::new(input.chain(std::io::BufReader::with_capacity(1 << 20, f).take(len)));
    }
    let body = segment::encode_frames(input, &what, &wal, header.start, &header)
        .map_err(|e| Error::new(Kind::Corrupt, e.to_string()))?;
    Ok((header, body))
}

/// A segment of frames read straight from the WAL (a change under the read is
/// `Kind::Database`, as when staging).
fn direct(wal_file: &Path, header: &SegmentHeader) -> Result<Vec<u8>> {
    let wal = header.header()?;
    let input = segment::wal_frames(wal_file, header)?;
    let what = wal_file.display().to_string();
    segment::encode_frames(input, &what, &wal, header.start, header)
}

/// How many of the first pieces go up together.
fn run_len(pieces: &[Piece], max_frames: u64) -> usize {
    let first = &pieces[0].header;
    let mut frames = first.frames;
    let mut n = 1;
    for (prev, p) in pieces.iter().zip(pieces.iter().skip(1)) {
        let h = &p.header;
        if h.generation != first.generation
            || h.wal_header != first.wal_header
            || h.prev != prev.header.end_link()
            || h.start != prev.header.end
            || frames + h.frames > max_frames
        {
            break;
        }
        frames += h.frames;
        n += 1;
    }
    n
}

/// A piece's bytes at `tmp`: the magic, the header's length and JSON, then the frames read
/// from the WAL, checked as they are copied.
fn write_piece(
    tmp: &Path,
    json: &[u8],
    wal_file: &Path,
    wal: &WalHeader,
    header: &SegmentHeader,
) -> Result<()> {
    let io = |e| Error::io(format!("stage frames in {}", tmp.display()), e);
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(tmp).map_err(io)?);
    out.write_all(MAGIC).map_err(io)?;
    out.write_all(&(json.len() as u32).to_be_bytes())
        .map_err(io)?;
    out.write_all(json).map_err(io)?;
    let mut input = segment::wal_frames(wal_file, header)?;
    let what = wal_file.display().to_string();
    segment::copy_frames(&mut input, &mut out, &what, wal, header.start, header)
        .map_err(|e| e.context(format!("stage frames in {}", tmp.display())))?;
    out.flush().map_err(io)
}

/// Fault injection for the test suite, in debug builds only: `LIFEBOAT_FAULT=hold-uploads`
/// keeps every piece staged, as a replicator killed before its upload would leave them;
/// `hold-uploads-while=PATH` only while the file at PATH exists (a test lets them go).
fn uploads_held() -> bool {
    cfg!(debug_assertions)
        && std::env::var("LIFEBOAT_FAULT").is_ok_and(|f| {
            f.split(',').any(|f| {
                f == "hold-uploads"
                    || f.strip_prefix("hold-uploads-while=")
                        .is_some_and(|p| Path::new(p).exists())
            })
        })
}

/// The bytes of a piece's frames.
pub fn frame_bytes(h: &SegmentHeader) -> u64 {
    h.frames * (FRAME_HEADER as u64 + h.page_size as u64)
}

/// Fault injection for the test suite, in debug builds only: `LIFEBOAT_FAULT=lost-answer`
/// makes the first segment stored fail as if the store's answer had been lost (a timeout
/// after the write landed).
fn fault_lost_answer() -> Result<()> {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let asked = cfg!(debug_assertions)
        && std::env::var("LIFEBOAT_FAULT").is_ok_and(|f| f.split(',').any(|f| f == "lost-answer"));
    if asked && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(Error::new(
            Kind::Repository,
            "write segment: the answer was lost (LIFEBOAT_FAULT=lost-answer)",
        ));
    }
    Ok(())
}

fn piece_name(h: &SegmentHeader) -> String {
    format!(
        "{}-{:012}-{:012}{EXT}",
        h.generation,
        h.first_seq(),
        h.last_seq()
    )
}

fn read_piece(path: &Path) -> Option<Piece> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut head = [0u8; 12];
    f.read_exact(&mut head).ok()?;
    if &head[..8] != MAGIC {
        return None;
    }
    let len = wal::be32(&head, 8) as usize;
    if len > 16 << 20 {
        return None;
    }
    let mut json = vec![0u8; len];
    f.read_exact(&mut json).ok()?;
    let header: SegmentHeader = serde_json::from_slice(&json).ok()?;
    let data_at = (12 + len) as u64;
    let want = data_at + header.frames * (FRAME_HEADER as u64 + header.page_size as u64);
    (f.metadata().ok()?.len() == want && !header.commits.is_empty()).then(|| Piece {
        path: path.to_path_buf(),
        header,
        data_at,
    })
}

/// One header for consecutive pieces of one WAL: the first's start, the last's end, the
/// commits of all (their frame counts made relative to the first's start).
fn merged<'a>(mut pieces: impl Iterator<Item = &'a SegmentHeader>) -> SegmentHeader {
    let mut h = pieces.next().expect("a piece").clone();
    for p in pieces {
        let done = h.frames;
        h.commits
            .extend(p.commits.iter().map(|c| segment::CommitRecord {
                end: c.end + done,
                ..c.clone()
            }));
        h.frames += p.frames;
        h.end = p.end;
    }
    h
}

/// Where a generation's stored chain ends: the link after its last contiguous segment (or its
/// start), and the header of the WAL that segment's frames are from. `bool`: it has segments.
pub async fn chain_end(
    repo: &Repository,
    db: &str,
    generation: &Generation,
) -> Result<(Link, Option<WalHeader>, bool)> {
    let segs = layout::segments(repo, db, &generation.id).await?;
    let contiguous = segs
        .iter()
        .scan(generation.start.seq + 1, |next, s| {
            (s.first_seq == *next).then(|| {
                *next = s.last_seq + 1;
                s
            })
        })
        .last();
    let Some(last) = contiguous else {
        return Ok((generation.start, None, false));
    };
    let bytes = layout::read_segment(repo, db, &generation.id, &last.name).await?;
    let reader = segment::SegmentReader::open(&bytes, &last.name)?;
    Ok((reader.header.end_link(), reader.header.header().ok(), true))
}
