//! Snapshots: turns a source database into a stored backup. Streams a consistent image of the
//! source through sha256 and multi-threaded zstd into a multipart upload (bounded memory: a few
//! chunks in flight), then writes the manifest last as the commit point.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::progress::Progress;
use bytes::Bytes;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Kind, Result, ResultExt};
use crate::fs::scratch::scratch;
use crate::repo::manifest::{BackupKind, Manifest, SourceInfo, FORMAT_VERSION};
use crate::repo::repository::{backup_id, Repository, DATA_SUFFIX};
use crate::source::sqlite::{ImageInfo, SqliteSource};
use crate::source::Source;

/// zstd level 1: on the 800 MB benchmark, level 3 stored 3% less for 38% more time and twice the memory.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 1;
/// Size of the chunks handed from the compressor to the uploader.
const CHUNK: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct BackupOptions {
    pub kind: BackupKind,
    pub label: Option<String>,
    pub lock_timeout: Duration,
    pub compression_level: i32,
    /// Where temporary files go; the system temp dir when unset.
    pub scratch_dir: Option<PathBuf>,
    /// Recorded as the manifest's source instead of the database file (`backup --from-sql`).
    pub source: Option<SourceInfo>,
    /// Recorded in the manifest for a D1 source.
    pub d1: Option<crate::d1::wrangler::D1Info>,
    /// The backup holds only this tenant's rows (a tenant restore's safety backup).
    pub tenant: Option<String>,
    /// With sql_mirror: store this file as the mirror (a D1 source's original export) instead
    /// of dumping the image.
    pub mirror_file: Option<PathBuf>,
    /// The caller holds the database open through SQLite in this process (the replicator):
    /// never open the file outside SQLite, because closing that descriptor drops every POSIX
    /// lock this process holds on it, SQLite's own included (then another process's last close
    /// checkpoints and deletes the WAL under the replicator). No check of the header and no
    /// fingerprint then; the caller checked the file.
    pub held_open: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            kind: BackupKind::Manual,
            label: None,
            lock_timeout: Duration::from_secs(30),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            scratch_dir: None,
            source: None,
            d1: None,
            tenant: None,
            mirror_file: None,
            held_open: false,
        }
    }
}

/// Back up `db` into `repo`. Nothing is visible in the repository as a backup until the
/// manifest is written; on failure the partial data object is removed.
pub async fn backup(
    repo: &Repository,
    db: &Source,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<Manifest> {
    let started = Instant::now();
    let source = SqliteSource::new(&db.path).held_open(opts.held_open);
    source.check()?;
    // Taken before the file is read, so a write racing this backup makes the next scheduled
    // run back up again, never skip. Only a user's database file has one worth keeping.
    let fingerprint =
        (opts.source.is_none() && opts.d1.is_none() && opts.tenant.is_none() && !opts.held_open)
            .then(|| crate::backup::unchanged::fingerprint(&db.path).ok())
            .flatten();
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    let created_at = Utc::now();
    let id = claim_id(repo, &db.name, created_at).await.step("backup")?;

    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let (to_upload, upload_rx) = mpsc::channel::<Bytes>(1);
    let complete = Arc::new(AtomicBool::new(false));
    // The stored bytes are hashed on their way to the upload, off the compressing thread.
    let hash_stored = async move {
        let (mut rx, mut h, mut n) = (rx, Sha256::new(), 0u64);
        while let Some(chunk) = rx.recv().await {
            h.update(&chunk);
            n += chunk.len() as u64;
            if to_upload.send(chunk).await.is_err() {
                break;
            }
        }
        (hex::encode(h.finalize()), n)
    };
    let producer = tokio::task::spawn_blocking({
        let (level, timeout, pb) = (opts.compression_level, opts.lock_timeout, progress.clone());
        let scratch_dir = tmp.path().to_path_buf();
        let complete = complete.clone();
        let tee_path = (db.sql_mirror && opts.mirror_file.is_none())
            .then(|| tmp.path().join("mirror-image.sqlite"));
        move || -> Result<(ImageInfo, Digests)> {
            let mut sink = CompressSink::new(level, tx)?;
            // With sql_mirror, keep a copy of this very image to dump after the upload.
            let mut tee = match &tee_path {
                Some(p) => Some(std::io::BufWriter::new(
                    std::fs::File::create(p).map_err(|e| Error::io("sql mirror: image copy", e))?,
                )),
                None => None,
            };
            let info = source.read_image(
                timeout,
                &scratch_dir,
                &mut |info| pb.set_length(info.page_size * info.page_count),
                &mut |data| {
                    pb.inc(data.len() as u64);
                    if let Some(t) = tee.as_mut() {
                        t.write_all(data)?;
                    }
                    sink.write(data)
                },
            )?;
            if let Some(t) = tee.as_mut() {
                t.flush()
                    .map_err(|e| Error::io("sql mirror: image copy", e))?;
            }
            let digests = sink.finish(&complete)?;
            Ok((info, digests))
        }
    });
    let ((stored_sha256, stored_size), uploaded, produced) = tokio::join!(
        hash_stored,
        repo.upload(&db.name, &id, upload_rx, complete),
        producer
    );
    let produced = produced
        .map_err(|e| Error::new(Kind::Internal, format!("snapshot task: {e}")))
        .and_then(|r| r);
    let (info, digests) = match (uploaded, produced) {
        (Ok(true), Ok((info, mut digests))) => {
            digests.stored_sha256 = stored_sha256;
            digests.stored_size = stored_size;
            (info, digests)
        }
        // The upload failed: the producer only saw a closed channel.
        (Err(e), _) => {
            repo.discard(&db.name, &id).await;
            return Err(e.context("backup"));
        }
        (_, Err(e)) => {
            repo.discard(&db.name, &id).await;
            return Err(e.context("backup: snapshot"));
        }
        (Ok(false), Ok(_)) => {
            repo.discard(&db.name, &id).await;
            return Err(Error::new(Kind::Internal, "backup: upload abandoned"));
        }
    };
    // The day's SQL mirror is made now, into scratch space (so a database that cannot be
    // dumped, with FTS5 tables say, is known before the manifest claims a mirror), and uploaded
    // only once the backup exists: a backup that fails never replaces the day's good mirror.
    let (sql_mirror, mirror_file, mirror_error) = if db.sql_mirror {
        let name = format!("{}.sql", created_at.format("backup-%Y-%m-%d"));
        let made = match &opts.mirror_file {
            Some(file) => Ok(file.clone()),
            None => {
                let (image, out) = (
                    tmp.path().join("mirror-image.sqlite"),
                    tmp.path().join("mirror.sql"),
                );
                let origin = format!("backup {id} of {}", db.name);
                render_mirror(image, out, origin).await
            }
        };
        match made {
            Ok(file) => (Some(name), Some(file), None),
            Err(e) => (None, None, Some(e)),
        }
    } else {
        (None, None, None)
    };
    if digests.image_size != info.page_size * info.page_count {
        repo.discard(&db.name, &id).await;
        return Err(Error::new(
            Kind::Internal,
            format!(
                "backup: image is {} bytes, expected {} pages of {}",
                digests.image_size, info.page_count, info.page_size
            ),
        ));
    }

    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        id: id.clone(),
        database: db.name.clone(),
        kind: opts.kind,
        created_at,
        source: opts.source.clone().unwrap_or_else(|| SourceInfo {
            kind: "sqlite".into(),
            path: std::path::absolute(&db.path)
                .unwrap_or_else(|_| db.path.clone())
                .display()
                .to_string(),
        }),
        sqlite_version: info.sqlite_version,
        page_size: info.page_size,
        page_count: info.page_count,
        image_size: digests.image_size,
        stored_size: digests.stored_size,
        compression: "zstd".into(),
        data_object: format!("{id}{DATA_SUFFIX}"),
        stored_sha256: digests.stored_sha256,
        image_sha256: digests.image_sha256,
        tables: info.tables,
        schema_sha256: info.schema_sha256,
        duration_ms: started.elapsed().as_millis() as u64,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        label: opts.label.clone(),
        // Not recorded: the mirror is uploaded after the manifest (so that a failed backup never
        // replaces the day's good mirror), and a manifest cannot vouch for what comes after it.
        // The dump's first line names the backup it came from.
        sql_mirror: None,
        tenant: opts.tenant.clone(),
        d1: opts.d1.clone(),
        fingerprint,
    };
    // The claim must still be there: if it is gone, so is (or was) the repository, or a cleanup
    // took this backup for dead; either way committing now would be a lie.
    let ours = repo
        .read_claim(&db.name, &id)
        .await
        .is_some_and(|c| c.pid == std::process::id());
    if !ours {
        repo.discard(&db.name, &id).await;
        return Err(Error::new(
            Kind::Repository,
            format!(
                "backup: repository {}: this backup's claim on {id} disappeared while it ran (the repository was deleted or cleaned up); nothing was committed",
                repo.url()
            ),
        ));
    }
    if let Err(e) = repo.commit(&manifest).await {
        repo.discard(&db.name, &id).await;
        return Err(e.context("backup"));
    }
    if let Some(e) = mirror_error {
        repo.release(&db.name, &id).await;
        return Err(e.context(format!(
            "backup {id} of {} is complete, but its SQL mirror could not be made; the day's mirror, if any, is the previous backup's",
            db.name
        )));
    }
    if let (Some(name), Some(file)) = (&sql_mirror, &mirror_file) {
        // The upload replaces the object only once complete: if it fails, the day's mirror is
        // still the previous backup's.
        let claim = (db.name.as_str(), id.as_str());
        let written = upload_file(repo, &repo.mirror_key(&db.name, name), claim, file).await;
        if let Err(e) = written {
            repo.release(&db.name, &id).await;
            return Err(e.context(format!(
                "backup {id} of {} is complete, but its SQL mirror {name} was not uploaded (the day's mirror, if any, is the previous backup's)",
                db.name
            )));
        }
    }
    // The claim goes last: until then, a killed backup's uploads are named in it.
    repo.release(&db.name, &id).await;
    drop(tmp);
    Ok(manifest)
}

/// Dump `image` in the D1 dialect into the file `out` (the day's SQL mirror, before upload).
async fn render_mirror(image: PathBuf, out: PathBuf, origin: String) -> Result<PathBuf> {
    tokio::task::spawn_blocking(move || {
        let conn = crate::source::sqlite::open_image(&image)
            .map_err(|e| Error::sqlite(Kind::Internal, "open image copy", e))?;
        let file = std::fs::File::create(&out).map_err(|e| Error::io("sql mirror", e))?;
        let mut w = std::io::BufWriter::with_capacity(1024 * 1024, file);
        lifeboat_sql::dump::dump(&conn, lifeboat_sql::dump::Dialect::D1, &origin, &mut w)?;
        w.flush().map_err(|e| Error::io("sql mirror", e))?;
        Ok(out)
    })
    .await
    .map_err(|e| Error::new(Kind::Internal, format!("sql mirror task: {e}")))?
}

/// Upload a local file to `key` as it is (overwriting).
async fn upload_file(
    repo: &Repository,
    key: &object_store::path::Path,
    claim: (&str, &str),
    file: &Path,
) -> Result<()> {
    let file = file.to_path_buf();
    stream_to(repo, key, claim, move |sink| {
        let mut f = std::fs::File::open(&file)
            .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
        std::io::copy(&mut f, sink)
            .map(|_| ())
            .map_err(|e| Error::io(format!("upload {}", file.display()), e))
    })
    .await
}

/// Run `produce` on a blocking thread and stream what it writes into a multipart upload to
/// `key`; the upload completes only if `produce` succeeds.
async fn stream_to(
    repo: &Repository,
    key: &object_store::path::Path,
    claim: (&str, &str),
    produce: impl FnOnce(&mut ChunkSink) -> Result<()> + Send + 'static,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let complete = Arc::new(AtomicBool::new(false));
    let producer = tokio::task::spawn_blocking({
        let complete = complete.clone();
        move || -> Result<()> {
            let mut sink = ChunkSink {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            produce(&mut sink)?;
            sink.send_buffered().map_err(|e| Error::io("upload", e))?;
            complete.store(true, Ordering::SeqCst);
            Ok(())
        }
    });
    let (uploaded, produced) =
        tokio::join!(repo.upload_to(key, rx, complete, Some(claim)), producer);
    let produced = produced.map_err(|e| Error::new(Kind::Internal, format!("upload task: {e}")))?;
    match (uploaded, produced) {
        (Ok(true), Ok(())) => Ok(()),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        (Ok(false), Ok(())) => Err(Error::new(Kind::Internal, "upload abandoned")),
    }
}

/// Claim the id for `at`; when another backup holds it, take the next free second.
async fn claim_id(repo: &Repository, db: &str, at: chrono::DateTime<Utc>) -> Result<String> {
    let mut t = at;
    for _ in 0..120 {
        let id = backup_id(t);
        if repo.claim(db, &id).await? {
            return Ok(id);
        }
        t += chrono::Duration::seconds(1);
    }
    Err(Error::new(
        Kind::Repository,
        "could not claim a backup id: 120 consecutive ids are taken",
    ))
}

/// Checksums and sizes produced while compressing.
#[derive(Debug, Clone)]
pub struct Digests {
    pub image_sha256: String,
    pub image_size: u64,
    pub stored_sha256: String,
    pub stored_size: u64,
}

/// The image side of the pipeline: compresses the image with zstd on all cores and hands the
/// output on in chunks, while a second thread hashes the image (so hashing overlaps with
/// reading pages). Blocking; runs off the async runtime.
struct CompressSink {
    enc: zstd::stream::write::Encoder<'static, ChunkSink>,
    batch: Vec<u8>,
    to_hasher: std::sync::mpsc::SyncSender<Bytes>,
    hasher: std::thread::JoinHandle<(String, u64)>,
}

/// Pages are batched into pieces of this size for the hasher and the compressor.
const BATCH: usize = 1024 * 1024;

impl CompressSink {
    fn new(level: i32, tx: mpsc::Sender<Bytes>) -> Result<Self> {
        let io = |e| Error::io("compress", e);
        let sink = ChunkSink {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let mut enc = zstd::stream::write::Encoder::new(sink, level).map_err(io)?;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
        enc.multithread(threads).map_err(io)?;
        enc.include_checksum(true).map_err(io)?;
        let (to_hasher, batches) = std::sync::mpsc::sync_channel::<Bytes>(4);
        let hasher = std::thread::spawn(move || {
            let (mut h, mut n) = (Sha256::new(), 0u64);
            for b in batches {
                h.update(&b);
                n += b.len() as u64;
            }
            (hex::encode(h.finalize()), n)
        });
        Ok(CompressSink {
            enc,
            batch: Vec::with_capacity(BATCH),
            to_hasher,
            hasher,
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.batch.extend_from_slice(data);
        if self.batch.len() >= BATCH {
            self.send_batch()?;
        }
        Ok(())
    }

    fn send_batch(&mut self) -> std::io::Result<()> {
        let batch = Bytes::from(std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(BATCH),
        ));
        self.enc.write_all(&batch)?;
        self.to_hasher
            .send(batch)
            .map_err(|_| std::io::Error::other("image hasher stopped"))
    }

    /// Flush everything, then mark the stream `complete` while the channel is still open, so
    /// the uploader never mistakes a finished stream for an abandoned one.
    fn finish(mut self, complete: &AtomicBool) -> Result<Digests> {
        let io = |e| Error::io("compress", e);
        self.send_batch().map_err(io)?;
        drop(self.to_hasher);
        let mut sink = self.enc.finish().map_err(io)?;
        sink.send_buffered().map_err(io)?;
        let (image_sha256, image_size) = self
            .hasher
            .join()
            .map_err(|_| Error::new(Kind::Internal, "image hasher panicked"))?;
        complete.store(true, Ordering::SeqCst);
        Ok(Digests {
            image_sha256,
            image_size,
            // Filled in by the caller, which hashes the stored bytes on their way out.
            stored_sha256: String::new(),
            stored_size: 0,
        })
    }
}

/// A `Write` that sends what it is given on in `CHUNK`-sized pieces.
struct ChunkSink {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkSink {
    fn send_buffered(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "upload stopped"))
    }
}

impl Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffered()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
