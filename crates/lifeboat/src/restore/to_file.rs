//! Full restore: picks a backup, downloads it while checking its sha256, decompresses into a
//! temp file of its own next to the target, checks the image (quick or full integrity check,
//! row counts, schema) and only then moves any old database aside and renames the new one into
//! place (see [`crate::fs::atomic_replace`]).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::progress::Progress;
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{check_target, FileId, Placement};
use crate::fs::durable_writer::FileWriter;
use crate::fs::page_set::Frontier;
use crate::repo::manifest::Manifest;
use crate::repo::repository::{DataReader, Repository};
pub use crate::restore::select::{parse_time, select, Selection, Selector, Skipped};
pub use crate::source::sqlite::IntegrityCheck;
use crate::source::sqlite::{inspect, open_image};

/// How [`fetch`] treats the image it writes.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Also hash the decompressed image (verify, dump) and compare it with the manifest.
    pub hash_image: bool,
    /// The image will be fsynced and kept (a full restore). Scratch images are not fsynced, but
    /// are written back as they grow all the same: left dirty in the page cache, an 800 MB image
    /// took the kernel 3.3 s of system time to write instead of 1.2 s (measured here).
    pub durable: bool,
    /// Read and check every byte, but keep nothing: `dest` is ignored (verify's read rung).
    pub discard: bool,
}

impl FetchOptions {
    /// A scratch image to read from (partial restores).
    pub const SCRATCH: Self = Self {
        hash_image: false,
        durable: false,
        discard: false,
    };
    /// A scratch image whose own sha256 is checked too (verify, dump).
    pub const HASHED: Self = Self {
        hash_image: true,
        durable: false,
        discard: false,
    };
    /// Every stored and image byte checked against the manifest, nothing written.
    pub const READ_ONLY: Self = Self {
        hash_image: true,
        durable: false,
        discard: true,
    };
    /// The image a full restore keeps.
    pub const DURABLE: Self = Self {
        hash_image: false,
        durable: true,
        discard: false,
    };
}

/// Download the data object of `m` into `dest` (created new), checking the stored sha256 as the
/// bytes arrive. Returns the image's sha256 when `opts.hash_image` is set.
pub async fn fetch(
    repo: &Repository,
    m: &Manifest,
    dest: &Path,
    opts: FetchOptions,
    progress: &Progress,
) -> Result<Option<String>> {
    start(repo, m, dest, opts, None, progress)
        .await?
        .finish()
        .await
}

/// [`fetch`] into the scratch image `dest`, which exists, while another writer fills it too
/// (a restore to a point writes its segments' pages beside it): every byte is still read and
/// checked, but only the pages `frontier` leaves to the snapshot are written. Started here,
/// it goes on by itself; [`Fetching::finish`] waits for it and checks it.
pub async fn start_filling(
    repo: &Repository,
    m: &Manifest,
    dest: &Path,
    frontier: std::sync::Arc<Frontier>,
    progress: &Progress,
) -> Result<Fetching> {
    start(
        repo,
        m,
        dest,
        FetchOptions::SCRATCH,
        Some(frontier),
        progress,
    )
    .await
}

/// A fetch under way: its download and decoding run on tasks of their own.
pub struct Fetching {
    manifest: Manifest,
    pump: Option<tokio::task::JoinHandle<Result<()>>>,
    decode: tokio::task::JoinHandle<Result<Decoded>>,
}

async fn start(
    repo: &Repository,
    m: &Manifest,
    dest: &Path,
    opts: FetchOptions,
    fill: Option<std::sync::Arc<Frontier>>,
    progress: &Progress,
) -> Result<Fetching> {
    let (size, data) = repo.data(m).await?;
    if size != m.stored_size {
        return Err(corrupt_backup(
            m,
            format!(
                "stored object is {size} bytes but the manifest says {} (truncated or replaced)",
                m.stored_size
            ),
        ));
    }
    progress.set_length(size);
    let (dest, pb) = (dest.to_path_buf(), progress.clone());
    let (pump, decode) = match data {
        DataReader::File(file) => (
            None,
            tokio::task::spawn_blocking(move || decompress(file, &dest, opts, fill, &pb)),
        ),
        DataReader::Stream(mut stream) => {
            let (tx, rx) = mpsc::channel::<Bytes>(4);
            let pump = tokio::spawn(async move {
                while let Some(chunk) = stream.next().await {
                    if tx.send(chunk?).await.is_err() {
                        break; // the decoder stopped early; it reports why
                    }
                }
                Ok::<_, Error>(())
            });
            let reader = ChannelReader {
                rx,
                current: Bytes::new(),
            };
            let decode =
                tokio::task::spawn_blocking(move || decompress(reader, &dest, opts, fill, &pb));
            (Some(pump), decode)
        }
    };
    Ok(Fetching {
        manifest: m.clone(),
        pump,
        decode,
    })
}

fn corrupt_backup(m: &Manifest, msg: String) -> Error {
    Error::new(Kind::Corrupt, format!("backup {} is corrupt: {msg}", m.id))
}

impl Fetching {
    /// Wait for the fetch and check what arrived against the manifest; the image's sha256
    /// when it was hashed.
    pub async fn finish(self) -> Result<Option<String>> {
        let m = &self.manifest;
        let corrupt = |msg: String| corrupt_backup(m, msg);
        let task_err =
            |e: tokio::task::JoinError| Error::new(Kind::Internal, format!("decode task: {e}"));
        let decoded = self.decode.await.map_err(task_err)?;
        if let Some(pump) = self.pump {
            // A failed download explains a short stream better than the decoder can.
            pump.await.map_err(task_err)??;
        }
        // A local write failure (disk full) is not the backup's fault: report it as it is.
        let d = decoded.map_err(|e| match e.kind {
            Kind::Corrupt => corrupt(e.to_string()),
            _ => e,
        })?;
        if d.stored_sha256 != m.stored_sha256 {
            return Err(corrupt(
                "sha256 of the stored object does not match the manifest".into(),
            ));
        }
        if d.written != m.image_size {
            return Err(corrupt(format!(
                "image is {} bytes, manifest says {}",
                d.written, m.image_size
            )));
        }
        if let Some(sha) = &d.image_sha256 {
            if *sha != m.image_sha256 {
                return Err(corrupt(
                    "sha256 of the image does not match the manifest".into(),
                ));
            }
        }
        Ok(d.image_sha256)
    }
}

struct Decoded {
    written: u64,
    stored_sha256: String,
    image_sha256: Option<String>,
}

/// Decompress `input` into `dest`, hashing the stored bytes (all of them, including any after
/// the zstd frame) and, when asked, the image. Three threads share the work: this one
/// decompresses, one hashes the stored bytes, one writes (as the `zstd` CLI does).
/// With `fill`, `dest` exists and only the pages it does not leave out are written.
fn decompress(
    input: impl Read,
    dest: &Path,
    opts: FetchOptions,
    fill: Option<std::sync::Arc<Frontier>>,
    pb: &Progress,
) -> Result<Decoded> {
    let dest = if opts.discard {
        Path::new("/dev/null")
    } else {
        dest
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(!opts.discard && fill.is_none())
        .open(dest)
        .map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
    let werr = |e| Error::io(format!("write {}", dest.display()), e);
    let mut out = match fill {
        Some(skip) => FileWriter::filling(file, skip),
        None if opts.durable => FileWriter::new(file),
        None => FileWriter::scratch(file),
    };
    let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let hasher = std::thread::spawn(move || {
        let mut h = Sha256::new();
        for c in chunks {
            h.update(&c);
        }
        hex::encode(h.finalize())
    });
    let input_failed = std::cell::Cell::new(false);
    let hashing = HashingReader {
        inner: input,
        to_hasher,
        pb,
        failed: &input_failed,
    };
    // A read of the stored object that failed (EIO on a local or network file system) says
    // nothing about the backup: only what the decoder finds in bytes that arrived is corruption.
    let read_error = |e: std::io::Error, what: &str| {
        if input_failed.get() {
            Error::new(Kind::Repository, format!("read backup data: {e}"))
        } else {
            Error::new(Kind::Corrupt, format!("{what}: {e}"))
        }
    };
    let mut dec =
        zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1024 * 1024, hashing))
            .map_err(|e| Error::new(Kind::Internal, format!("decompress: {e}")))?;
    let mut image_hasher = opts.hash_image.then(Sha256::new);
    let mut written = 0u64;
    loop {
        let buf = read_full(&mut dec, out.buffer(), OUT_BUF)
            .map_err(|e| read_error(e, "decompression failed"))?;
        if buf.is_empty() {
            break;
        }
        if let Some(h) = image_hasher.as_mut() {
            h.update(&buf);
        }
        written += buf.len() as u64;
        if let Err(e) = out.send_owned(buf) {
            // The writer stopped: its own error (disk full, ...) says why.
            return Err(werr(out.finish().err().unwrap_or(e)));
        }
    }
    out.finish().map_err(werr)?;
    // Hash whatever follows the frame too: trailing bytes must fail the checksum.
    let mut rest = dec.finish().into_inner();
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| read_error(e, "read after frame"))?;
    drop(rest);
    let stored_sha256 = hasher
        .join()
        .map_err(|_| Error::new(Kind::Internal, "hasher thread panicked"))?;
    Ok(Decoded {
        written,
        stored_sha256,
        image_sha256: image_hasher.map(|h| hex::encode(h.finalize())),
    })
}

/// Decompressed bytes are handed to the writer in buffers of this size.
const OUT_BUF: usize = 1024 * 1024;

/// Read up to `len` bytes (fewer only at the end of the stream) into `buf`, whatever it held.
fn read_full(r: &mut impl Read, mut buf: Vec<u8>, len: usize) -> std::io::Result<Vec<u8>> {
    buf.resize(len, 0); // zeroes only what a new or shorter buffer lacks
    let mut n = 0;
    while n < len {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    Ok(buf)
}

/// A blocking `Read` over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.current = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// A `Read` that hands a copy of what passes through it to the hasher thread, and notes when
/// reading the stored object itself failed.
struct HashingReader<'a, R> {
    inner: R,
    to_hasher: std::sync::mpsc::SyncSender<Vec<u8>>,
    pb: &'a Progress,
    failed: &'a std::cell::Cell<bool>,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|e| {
            if e.kind() != std::io::ErrorKind::Interrupted {
                self.failed.set(true)
            }
        })?;
        if n > 0 {
            self.to_hasher
                .send(buf[..n].to_vec())
                .map_err(|_| std::io::Error::other("hasher stopped"))?;
        }
        self.pb.inc(n as u64);
        Ok(n)
    }
}

/// Download `m` into `dir/image.sqlite` and check it (sha256, `quick_check`, row counts,
/// schema): the image the partial restores (into D1, one tenant) work from.
pub async fn fetch_checked(repo: &Repository, m: &Manifest, dir: &Path) -> Result<PathBuf> {
    let (image, check) = fetch_checking(repo, m, dir).await?;
    tokio::task::spawn_blocking(move || check.wait())
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("check task: {e}")))??;
    Ok(image)
}

/// [`fetch_checked`] that returns as soon as the download is in place (its sha256 checked),
/// with `quick_check`, row counts and schema still running on a thread of their own. The
/// caller may read the image meanwhile, but must [`PendingCheck::wait`] for a clean result
/// before it changes anything for good.
pub async fn fetch_checking(
    repo: &Repository,
    m: &Manifest,
    dir: &Path,
) -> Result<(PathBuf, PendingCheck)> {
    let image = dir.join("image.sqlite");
    fetch(repo, m, &image, FetchOptions::SCRATCH, &Progress::hidden()).await?;
    let (img, man) = (image.clone(), m.clone());
    let check = std::thread::spawn(move || check_image(&img, &man, IntegrityCheck::Quick));
    Ok((image, PendingCheck(Some(check))))
}

/// The check of a fetched image, still running. Dropping it waits for it (the thread reads
/// files in a scratch directory that is about to be removed).
pub struct PendingCheck(Option<std::thread::JoinHandle<Result<()>>>);

impl PendingCheck {
    /// `quick_check` of a local database file (no manifest to compare with), on a thread.
    pub fn quick(path: &Path) -> PendingCheck {
        let path = path.to_path_buf();
        PendingCheck(Some(std::thread::spawn(move || {
            let corrupt = |msg: String| {
                Error::new(
                    Kind::Corrupt,
                    format!("{} is corrupt: {msg}", path.display()),
                )
            };
            let found: String = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .and_then(|c| c.query_row("PRAGMA quick_check", [], |r| r.get(0)))
            .map_err(|e| corrupt(e.to_string()))?;
            if found == "ok" {
                Ok(())
            } else {
                Err(corrupt(format!("quick_check: {found}")))
            }
        })))
    }

    /// Wait for the check (blocking) and return its verdict.
    pub fn wait(mut self) -> Result<()> {
        self.join()
    }

    fn join(&mut self) -> Result<()> {
        match self.0.take() {
            Some(h) => h
                .join()
                .map_err(|_| Error::new(Kind::Internal, "check thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for PendingCheck {
    fn drop(&mut self) {
        let _ = self.join();
    }
}

/// Check a downloaded image against its manifest: SQLite's own check, then row counts and schema.
pub fn check_image(path: &Path, m: &Manifest, level: IntegrityCheck) -> Result<()> {
    let corrupt =
        |msg: String| Error::new(Kind::Corrupt, format!("backup {} is corrupt: {msg}", m.id));
    let info = check_and_count(path, level, corrupt, &format!("check backup {}", m.id))?;
    if info.tables != m.tables {
        let diff = m
            .tables
            .iter()
            .find(|(t, n)| info.tables.get(*t) != Some(n))
            .map(|(t, n)| match info.tables.get(t) {
                Some(got) => format!("table {t} has {got} rows, manifest says {n}"),
                None => format!("table {t} is missing, manifest says {n} rows"),
            })
            .unwrap_or_else(|| "the image has tables the manifest does not list".into());
        return Err(corrupt(format!("row counts differ: {diff}")));
    }
    if info.schema_sha256 != m.schema_sha256 {
        return Err(corrupt("schema hash differs from the manifest".into()));
    }
    Ok(())
}

/// SQLite's own check of an image (`quick_check` or `integrity_check`) and its row counts, run
/// side by side (they read the same pages). What SQLite says about the content is an error made
/// by `corrupt`; any other failure (a full scratch disk, an I/O error) is the machine's, said
/// with `step`.
pub fn check_and_count(
    path: &Path,
    level: IntegrityCheck,
    corrupt: impl Fn(String) -> Error,
    step: &str,
) -> Result<crate::source::sqlite::ImageInfo> {
    let pragma = match level {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let (checked, info) = std::thread::scope(|s| {
        let check = s.spawn(|| -> rusqlite::Result<String> {
            mapped(path)?.query_row(pragma, [], |r| r.get(0))
        });
        let info = mapped(path).and_then(|c| inspect(&c));
        (check.join(), info)
    });
    let failed = |what: &str, e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt) | Some(rusqlite::ErrorCode::NotADatabase) => {
            corrupt(format!("{what}: {e}"))
        }
        _ => Error::sqlite(
            Kind::Internal,
            format!("{step}: {what} ({})", path.display()),
            e,
        ),
    };
    let first = checked
        .map_err(|_| Error::new(Kind::Internal, "integrity check thread panicked"))?
        .map_err(|e| failed(pragma, e))?;
    if first != "ok" {
        return Err(corrupt(format!("{pragma}: {first}")));
    }
    info.map_err(|e| failed("reading image", e))
}

/// The image opened to be read through a memory map: the check and the counts read every
/// page, and through `pread` a fifth of their time was the kernel's copying. The image is this
/// process's own temp file, which nothing else truncates while it is mapped.
fn mapped(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let c = open_image(path)?;
    c.query_row("PRAGMA mmap_size = 1099511627776", [], |_| Ok(()))?;
    Ok(c)
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub force: bool,
    pub integrity: IntegrityCheck,
    /// Download and check, then report what would happen; change nothing.
    pub dry_run: bool,
    /// Where a dry run downloads the image (the system temp dir when unset).
    pub scratch_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RestoreReport {
    pub backup: String,
    /// The file written (a symbolic link's destination when the target was a link).
    pub target: PathBuf,
    /// The symbolic link given as the target, when it was one.
    pub link: Option<PathBuf>,
    /// Where the previous database was moved, when there was one.
    pub moved_aside: Option<PathBuf>,
    /// Where an earlier restore killed while moving the old database aside had moved it: that
    /// move was finished first.
    pub earlier_aside: Option<PathBuf>,
    /// A dry run: nothing was changed; `moved_aside` is what would have been moved.
    pub dry_run: bool,
    /// With a dry run: whether an existing database would be moved aside.
    pub would_move_aside: bool,
    pub image_size: u64,
    pub tables: usize,
    pub rows: u64,
    pub duration_ms: u64,
}

/// Restore `m` to `target`. On any failure the target is left exactly as it was. Only one
/// lifeboat command writes a target at a time; the image is built in a temp file of this run's
/// own, checked, and renamed into place (the same file that was checked).
pub async fn restore(
    repo: &Repository,
    m: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    refuse_tenant_scoped(m)?;
    if opts.dry_run {
        return dry_run(repo, m, target, opts, progress).await;
    }
    let placement = Placement::prepare(target, opts.force, "restore")?;
    let tmp = placement.tmp().to_path_buf();

    let step = Instant::now();
    fetch(repo, m, &tmp, FetchOptions::DURABLE, progress).await?;
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "restore: download and decompress"
    );
    let checked = FileId::of(&tmp);
    let step = Instant::now();
    let (check_tmp, check_m, level) = (tmp.clone(), m.clone(), opts.integrity);
    tokio::task::spawn_blocking(move || check_image(&check_tmp, &check_m, level))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("check task: {e}")))??;
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "restore: check image"
    );
    let checked_target = placement.target().clone();
    let earlier_aside = placement.recovered().map(Path::to_path_buf);
    // The image was fsynced as its writer finished (FetchOptions::DURABLE).
    let moved_aside = placement.commit(checked)?;
    Ok(RestoreReport {
        backup: m.id.clone(),
        target: checked_target.path,
        link: checked_target.link,
        moved_aside,
        earlier_aside,
        dry_run: false,
        would_move_aside: false,
        image_size: m.image_size,
        tables: m.tables.len(),
        rows: m.total_rows(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}

/// A backup that holds one tenant's rows only (a tenant restore's safety backup) must never
/// become a whole database: it would lose every other tenant.
pub fn refuse_tenant_scoped(m: &Manifest) -> Result<()> {
    match &m.tenant {
        Some(t) => Err(Error::new(
            Kind::Config,
            format!(
                "backup {} holds only tenant {}'s rows (the safety backup of a tenant restore): restore it with --tenant {} --into DB",
                m.id,
                crate::text::escape(t),
                crate::text::escape(t)
            ),
        )),
        None => Ok(()),
    }
}

/// `restore --dry-run`: the same target checks and the same download and checks, into scratch
/// space; nothing next to the target is created, moved or locked.
async fn dry_run(
    repo: &Repository,
    m: &Manifest,
    target: &Path,
    opts: &RestoreOptions,
    progress: &Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let checked = check_target(target, opts.force)?;
    let dir = crate::fs::scratch::scratch(opts.scratch_dir.as_deref())?;
    let image = dir.path().join("image.sqlite");
    fetch(repo, m, &image, FetchOptions::SCRATCH, progress).await?;
    let (img, man, level) = (image.clone(), m.clone(), opts.integrity);
    tokio::task::spawn_blocking(move || check_image(&img, &man, level))
        .await
        .map_err(|e| Error::new(Kind::Internal, format!("check task: {e}")))??;
    // The target may have changed while the backup was checked: look again.
    let again = check_target(target, opts.force)?;
    Ok(RestoreReport {
        backup: m.id.clone(),
        target: again.path,
        link: checked.link,
        moved_aside: None,
        earlier_aside: None,
        dry_run: true,
        would_move_aside: again.exists,
        image_size: m.image_size,
        tables: m.tables.len(),
        rows: m.total_rows(),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
