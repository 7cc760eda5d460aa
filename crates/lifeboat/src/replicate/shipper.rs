//! The replicator of one database: holds the WAL, ships its new whole transactions as
//! segments, runs its own checkpoints, and starts a new generation on every break.
//!
//! Checkpoint control (as Litestream does, without RESTART): connection `read` holds a read
//! transaction at all times, so SQLite cannot reset the WAL past frames not yet shipped (a
//! reader with a read mark blocks the reset; a reader on a fully checkpointed WAL, read mark 0,
//! blocks any further checkpoint, so at most one reset can happen, of frames it already saw).
//! Its own PASSIVE checkpoint (`checkpoint.rs`) runs with connection `write` holding the write
//! lock: everything committed is shipped, the read transaction is released for the checkpoint
//! and taken again, and only then may writers go on. A WAL larger than `truncate_wal_bytes`
//! gets a TRUNCATE checkpoint instead (it needs the write lock itself): `PRAGMA data_version`
//! before and after tells whether a commit slipped in between, and if one did, a new generation
//! starts. A reset is followed only when it is proven to come right after the last shipped
//! frame (`scan_new`); anything else is a break.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rusqlite::Connection;

pub(super) use super::connection::db_err;
use super::connection::{check_file, connect, inode_of, require_wal};
use super::spool::Spool;
use super::sync_report::joined;
pub use super::sync_report::{ReplicateOptions, SyncReport};

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::suffixed;
use crate::fs::target_lock::TargetLock;
use crate::replicate::layout::Generation;
use crate::replicate::segment::{CommitRecord, Link, SegmentHeader};
use crate::replicate::wal::{self, Position, Scan};
use crate::repo::Repository;
use crate::source::Source;

/// How long a checkpoint waits for the application's writers to let go of the write lock
/// before it tries again at the next sync. Short: a writer committing back to back lets go for
/// microseconds, and the waiting would only hold the sync back (the copying is done ahead
/// without the lock, so a checkpoint that cannot take it costs nothing but the WAL's reset).
const WRITE_LOCK_WAIT: Duration = Duration::from_millis(100);

/// At most this many bytes of frames staged (a ship that would pass it uploads first).
const SPOOL_BYTES: u64 = 1 << 30;

/// The generation being extended, and how far.
pub(super) struct Chain {
    pub(super) generation: Generation,
    pub(super) link: Link,
    /// The header of the WAL the link's position is in, when known (to prove a reset).
    pub(super) wal: Option<wal::WalHeader>,
}

/// Owned (`Send + 'static`), so a daemon can keep thousands open between syncs and move each
/// to a worker for its sync.
pub struct Replicator {
    pub(super) repo: Arc<Repository>,
    pub(super) source: Source,
    pub(super) opts: ReplicateOptions,
    pub(super) read: Connection,
    pub(super) write: Connection,
    pub(super) inode: u64,
    pub(super) chain: Option<Chain>,
    /// Shipped frames staged locally until the next upload.
    spool: Spool,
    /// Frames shipped since the last checkpoint, and when that was.
    pub(super) since_checkpoint: (u64, Instant),
    /// The schema cookie the last shipped commit left, once one wrote page 1 (tells a VACUUM).
    pub(super) cookie: Option<u32>,
    /// Where the chain stood when `read` took its read transaction with every frame up to the
    /// WAL's end shipped: a reset under that transaction then lost nothing (see `scan_new`).
    pub(super) read_from: Option<Position>,
    /// Every frame `read`'s transaction can see is shipped (a ship ended after it began).
    pub(super) read_covered: bool,
    /// The WAL's salts when `read` took its read transaction: a chain gone on into another WAL
    /// since means that transaction is on read mark 0 (see `moved_to_new_wal`).
    read_salts: Option<[u32; 2]>,
    /// One replicator per database file on this machine.
    _lock: TargetLock,
    /// Nothing else in this process opens the file outside SQLite while this holds it.
    held: crate::fs::held::Held,
}

impl Replicator {
    /// Open `source` for replication: WAL mode required; resume the newest generation when
    /// the WAL still holds where its chain stopped, else start a new one.
    pub async fn open(
        repo: Arc<Repository>,
        source: &Source,
        opts: ReplicateOptions,
    ) -> Result<(Replicator, SyncReport)> {
        // Held before anything opens the file: from here on nothing else in this process opens
        // it outside SQLite (a daemon's backup of the same file may run right now, and closing
        // such a descriptor would drop every POSIX lock the process holds on it, ours included).
        // So the file is checked through SQLite only.
        let held = crate::fs::held::hold(&source.path);
        check_file(&source.path)?;
        let lock = TargetLock::acquire(&suffixed(&source.path, ".replicate")).map_err(|e| {
            if e.kind == Kind::TargetExists {
                Error::new(
                    Kind::Database,
                    format!(
                        "another `lifeboat replicate` is already replicating {}",
                        source.path.display()
                    ),
                )
            } else {
                e
            }
        })?;
        let read = connect(&source.path, opts.lock_timeout)?;
        require_wal(&read, &source.path)?;
        let write = connect(&source.path, WRITE_LOCK_WAIT)?;
        let mut r = Replicator {
            repo,
            inode: inode_of(&source.path)?,
            source: source.clone(),
            opts,
            read,
            write,
            chain: None,
            spool: Spool::new(&source.path),
            since_checkpoint: (0, Instant::now()),
            cookie: None,
            read_from: None,
            read_covered: false,
            read_salts: None,
            _lock: lock,
            held,
        };
        // What a replicator stopped with `kill -9` left staged goes up first, so the chain
        // below is read with it.
        let db = source.name.clone();
        let left = r.spool.recover(&r.repo, &db, r.opts.segment_frames).await?;
        let mut report = match r.resume().await? {
            Ok(chain) => {
                r.cookie = r.schema_cookie();
                tracing::info!(
                    database = %r.source.name,
                    generation = %chain.generation.id,
                    seq = chain.link.seq,
                    "resuming the chain"
                );
                r.chain = Some(chain);
                let (more, broke) = r.ship().await?;
                match broke {
                    Some(why) => r.new_generation(&why).await?,
                    None => more,
                }
            }
            Err(reason) => r.new_generation(&reason).await?,
        };
        report.stored(left);
        r.upload_into(&mut report).await?;
        Ok((r, report))
    }

    /// The generation id being extended.
    /// Whether writers added at least `frames` frames to the WAL since the last ship (a hint:
    /// [`wal::written_past`]).
    pub fn wal_grew(&self, frames: u64) -> bool {
        wal::written_past(&self.source.path, self.link_position(), frames)
    }

    pub fn generation(&self) -> Option<&str> {
        self.chain.as_ref().map(|c| c.generation.id.as_str())
    }

    /// Hold a read transaction on `read` (a statement must run for it to take its read mark).
    pub(super) fn begin_read(&mut self) -> Result<()> {
        self.read_from = None;
        self.read_covered = false;
        let e = db_err(format!("database {}", self.source.path.display()));
        if !self.read.is_autocommit() {
            self.read.execute_batch("COMMIT").map_err(&e)?;
        }
        self.read.execute_batch("BEGIN").map_err(&e)?;
        self.read
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(&e)?;
        self.read_salts = wal::read_header(&wal::wal_path(&self.source.path))?.map(|h| h.salts());
        Ok(())
    }

    /// The schema cookie as the read transaction sees it (None if it cannot be read: then no
    /// VACUUM is told until a commit writes page 1).
    pub(super) fn schema_cookie(&self) -> Option<u32> {
        self.read
            .query_row("PRAGMA schema_version", [], |r| r.get::<_, i64>(0))
            .ok()
            .map(|v| v as u32)
    }

    /// [`Self::begin_read`] with every frame up to the WAL's end shipped: either under the
    /// write lock, or with `write` holding a read transaction since before the frames a
    /// checkpoint could copy were shipped (then a read on a fully copied WAL, the only kind a
    /// reset may follow, means nothing came after them).
    pub(super) fn begin_read_shipped(&mut self) -> Result<()> {
        self.begin_read()?;
        self.read_from = self.link_position();
        Ok(())
    }

    /// Whether the chain went on into a WAL reset under the read transaction held (which is
    /// then on read mark 0, blocking every checkpoint until it moves; see `follow_reset`).
    fn moved_to_new_wal(&self) -> bool {
        matches!((self.read_salts, self.link_position()), (Some(r), Some(l)) if r != l.salts)
    }

    /// A ship found nothing more to send. Every frame `read` can see is shipped, and the WAL it
    /// began on ended at or before the link: if it ended before, frames after its end keep
    /// SQLite from resetting that WAL while the transaction lasts (read mark 0 forbids the
    /// checkpoint a reset needs, any other mark the reset itself); if exactly there, a reset
    /// can only follow the link; and one reset already seen under it was the only one.
    fn shipped_to_the_end(&mut self) {
        self.read_covered = true;
        if !self.read.is_autocommit() {
            self.read_from = self.link_position();
        }
    }

    /// Where the chain's last shipped frame ends in the WAL.
    pub(super) fn link_position(&self) -> Option<Position> {
        self.chain.as_ref().and_then(|c| c.link.position)
    }

    pub(super) fn end_read(&mut self) -> Result<()> {
        self.read_from = None;
        if !self.read.is_autocommit() {
            self.read
                .execute_batch("COMMIT")
                .map_err(db_err(format!("database {}", self.source.path.display())))?;
        }
        Ok(())
    }

    /// The new committed frames after `link`, read while the read transaction is held.
    /// `Err(reason)` on a change that breaks the chain.
    ///
    /// A WAL whose salts changed was reset under that transaction (see the module's comment),
    /// and the chain goes on at the new WAL's frame 0 only when nothing after `link` was lost:
    /// the read transaction was taken with everything up to the WAL's end shipped
    /// (`read_from`), or the old WAL's frames still in the file prove the reset came right
    /// after `link`. Anything else is a break.
    pub(super) fn scan_new(
        &self,
        link: &Link,
    ) -> Result<std::result::Result<Option<Scan>, String>> {
        let path = wal::wal_path(&self.source.path);
        let Some(h) = wal::read_header(&path)? else {
            return Ok(Ok(None));
        };
        if let Some(c) = &self.chain {
            if h.page_size() != c.generation.page_size {
                return Ok(Err(format!(
                    "the page size changed from {} to {}",
                    c.generation.page_size,
                    h.page_size()
                )));
            }
        }
        let from = match link.position {
            Some(p) if p.salts == h.salts() => p,
            Some(p) => {
                // No check of the salts: a writer starting a WAL emptied by another connection's
                // TRUNCATE gives it random ones.
                let ours = self.read_from == Some(p);
                let old = self.chain.as_ref().and_then(|c| c.wal.as_ref());
                let proven = match old {
                    Some(o) if !ours => wal::reset_once_after(&path, o, &h, p)?,
                    _ => ours,
                };
                if !proven {
                    tracing::debug!(read_from = ?self.read_from, link = ?p, now = ?h.salts(), "reset not proven");
                    return Ok(Err(
                        "the WAL was reset over frames lifeboat had not shipped".into(),
                    ));
                }
                Position::start_of(&h)
            }
            None => Position::start_of(&h),
        };
        Ok(Ok(Some(wal::scan(&path, &h, from)?)))
    }

    /// One sync: look for a replaced file, ship what is new, checkpoint when due.
    pub async fn sync(&mut self) -> Result<SyncReport> {
        // What is staged goes up even when staging more failed (a full disk: uploading it
        // frees the space staging needs).
        let staged = self.stage_and_checkpoint().await;
        let mut up = SyncReport::default();
        self.upload_into(&mut up).await?;
        up.all_stored = self.spool.is_empty();
        Ok(joined(staged?, up))
    }

    /// Upload what is staged, without shipping more: a replicator stopping on an error leaves
    /// nothing only on local disk that it could have uploaded.
    pub async fn flush(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.upload_into(&mut report).await?;
        report.all_stored = self.spool.is_empty();
        self.spool.close();
        Ok(report)
    }

    /// A sync whose upload runs in the background: started when `upload`, its result told
    /// by the first tick after it ended. Between uploads a tick only stages what it ships
    /// and checkpoints as soon as `checkpoint_frames` are, and an upload never holds the
    /// checkpoints up (see `pace`).
    pub async fn tick(&mut self, upload: bool) -> Result<SyncReport> {
        let mut up = SyncReport::default();
        // The last background upload first: a failed one stops this tick (no staging, no
        // checkpoint, as a failing repository always stopped them), and is tried again at the
        // next upload.
        if let Some(ended) = self.spool.ended().await {
            up.upload_ended = ended.is_ok();
            if let Some(why) = self.settled(ended, &mut up)? {
                let more = self.new_generation(&why).await?;
                up.add(&more);
                up.new_generation = more.new_generation;
            }
        }
        // Much staged (a slow repository): upload before staging more, so the spool stays
        // well within its bound (and `ship`, often under the write lock, need not upload).
        if self.spool.bytes() >= SPOOL_BYTES / 4 * 3 {
            self.upload_into(&mut up).await?;
        }
        // The uploads go on even when staging failed (a full disk: they free its space).
        let staged = self.stage_and_checkpoint().await;
        if upload {
            up.upload_started = self.spool.start(&self.repo, self.opts.segment_frames);
        }
        up.all_stored = self.spool.is_empty();
        Ok(joined(staged?, up))
    }

    /// Upload what is staged, counted in `report`; a break (see `upload_staged`) starts a new
    /// generation.
    async fn upload_into(&mut self, report: &mut SyncReport) -> Result<()> {
        if let Some(why) = self.upload_staged(report).await? {
            let more = self.new_generation(&why).await?;
            report.add(&more);
            report.new_generation = more.new_generation;
        }
        Ok(())
    }

    /// Upload what is staged, counted in `report`. Staged frames that fail their checksums
    /// (damaged on the local disk) cannot be had again: they are dropped, and the reason for
    /// the break they make is returned.
    pub(super) async fn upload_staged(
        &mut self,
        report: &mut SyncReport,
    ) -> Result<Option<String>> {
        let uploaded = self
            .spool
            .upload(&self.repo, self.opts.segment_frames)
            .await;
        self.settled(uploaded, report)
    }

    fn settled(
        &mut self,
        uploaded: Result<super::spool::Uploaded>,
        report: &mut SyncReport,
    ) -> Result<Option<String>> {
        match uploaded {
            Ok(u) => {
                report.stored(u);
                Ok(None)
            }
            Err(e) if e.kind == Kind::Corrupt => {
                self.spool.clear();
                Ok(Some(format!(
                    "staged frames were damaged before their upload: {e}"
                )))
            }
            Err(e) => Err(e),
        }
    }

    async fn stage_and_checkpoint(&mut self) -> Result<SyncReport> {
        // A new generation that failed half-way (the repository was down): start it again,
        // rather than shipping nothing for ever.
        if self.chain.is_none() {
            return self
                .new_generation("the last attempt to start a generation failed")
                .await;
        }
        let inode = inode_of(&self.source.path)?;
        if inode != self.inode {
            self.read = connect(&self.source.path, self.opts.lock_timeout)?;
            self.write = connect(&self.source.path, WRITE_LOCK_WAIT)?;
            self.held = crate::fs::held::hold(&self.source.path);
            require_wal(&self.read, &self.source.path)?;
            self.inode = inode;
            self.begin_read()?;
            return self.new_generation("the database file was replaced").await;
        }
        let (mut report, broke) = self.ship().await?;
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        let wal_size = std::fs::metadata(wal::wal_path(&self.source.path))
            .map(|m| m.len())
            .unwrap_or(0);
        // Idle: the read transaction moves to the WAL's end (cheap: nothing to ship or copy). An
        // application's own TRUNCATE or RESTART checkpoint waits, holding the write lock, for
        // every reader to reach the end and then to let go (read mark 0, at the next move); it
        // would otherwise wait for lifeboat's next checkpoint while no one can write.
        let idle = report.commits == 0 && wal_size > 0;
        if self.moved_to_new_wal() || idle {
            let (more, broke) = self.checkpoint_ahead().await?;
            if let Some(why) = broke {
                return self.new_generation(&why).await;
            }
            report.add(&more);
        }
        let (frames, at) = self.since_checkpoint;
        if wal_size > self.opts.truncate_wal_bytes {
            return self.checkpoint_truncate(report).await;
        }
        if frames >= self.opts.checkpoint_frames
            || (frames > 0 && at.elapsed() >= self.opts.checkpoint_interval)
        {
            let more = self.checkpoint_passive().await?;
            report.add(&more);
            report.checkpoint = more.checkpoint;
            report.new_generation = more.new_generation;
        }
        Ok(report)
    }

    /// Ship every whole transaction committed when it starts, in segments of at most
    /// `segment_frames`. One scan of the WAL: what writers commit meanwhile waits for the next
    /// sync, so a writer that never pauses cannot keep a sync (and its checkpoint) from ending.
    /// A break found on the way is returned (the caller starts a new generation).
    pub(super) async fn ship(&mut self) -> Result<(SyncReport, Option<String>)> {
        let mut report = SyncReport::default();
        let Some(link) = self.chain.as_ref().map(|c| c.link) else {
            return Ok((report, None));
        };
        let scan = match self.scan_new(&link)? {
            Ok(Some(s)) if !s.commits.is_empty() => s,
            Ok(_) => {
                self.shipped_to_the_end();
                return Ok((report, None));
            }
            Err(reason) => return Ok((report, Some(reason))),
        };
        let limit = self.opts.segment_frames.max(1);
        let mut rest = &scan.commits[..];
        let mut from = scan.from;
        let mut done = 0u64; // frames of the scan already shipped
        while !rest.is_empty() {
            let link = self.chain.as_ref().expect("chain").link;
            let take = rest
                .iter()
                .take_while(|c| c.end - done <= limit)
                .count()
                .max(1);
            // A VACUUM ends its segment, then the generation: the issue asks for a fresh base.
            let (vacuum, _) = wal::first_vacuum(&rest[..take], self.cookie);
            let take = vacuum.map_or(take, |i| i + 1);
            let commits = &rest[..take];
            let cookie = wal::first_vacuum(commits, self.cookie).1;
            let last = commits[take - 1];
            let end = if take == rest.len() {
                scan.to
            } else {
                // The checksum after a commit that is not the scan's last: read it from its
                // frame header.
                self.position_after(&scan, last.end)?
            };
            let at = Utc::now();
            let chain = self.chain.as_ref().expect("chain");
            let header = SegmentHeader {
                format_version: 1,
                database: self.source.name.clone(),
                generation: chain.generation.id.clone(),
                page_size: scan.header.page_size(),
                wal_header: hex::encode(scan.header.bytes),
                prev: link,
                start: from,
                end,
                frames: last.end - done,
                commits: commits
                    .iter()
                    .enumerate()
                    .map(|(i, c)| CommitRecord {
                        seq: link.seq + 1 + i as u64,
                        end: c.end - done,
                        db_pages: c.db_pages,
                        at,
                    })
                    .collect(),
            };
            // A long backlog (a WAL that grew while lifeboat was stopped) goes up as it is
            // staged: the spool never holds more than its bound, however long the WAL.
            if self.spool.bytes() + super::spool::frame_bytes(&header) > SPOOL_BYTES {
                if let Some(why) = self.upload_staged(&mut report).await? {
                    return Ok((report, Some(why)));
                }
            }
            let wal_file = wal::wal_path(&self.source.path);
            match self.spool.stage(&wal_file, &scan.header, header.clone()) {
                Ok(()) => {}
                // The spool's disk is full: straight up from the WAL, or the WAL (on that disk
                // too, most often) could never be checkpointed to make room.
                Err(e) if e.kind == Kind::DiskFull => {
                    tracing::warn!(database = %self.source.name, "{e}: uploading from the WAL");
                    // What is staged first (a damaged piece breaks the chain here).
                    if let Some(why) = self.upload_staged(&mut report).await? {
                        return Ok((report, Some(why)));
                    }
                    let seg = self.opts.segment_frames;
                    let up = self
                        .spool
                        .send_direct(&self.repo, seg, &wal_file, &header)
                        .await?;
                    report.stored(up);
                }
                Err(e) => return Err(e),
            }
            tracing::trace!(database = %self.source.name, first = header.first_seq(), last = header.last_seq(), "staged");
            report.commits += take as u64;
            report.frames += last.end - done;
            self.since_checkpoint.0 += last.end - done;
            let chain = self.chain.as_mut().expect("chain");
            chain.link = header.end_link();
            chain.wal = Some(scan.header.clone());
            self.cookie = cookie;
            if vacuum.is_some() {
                return Ok((report, Some("VACUUM rewrote the whole database".into())));
            }
            (rest, from, done) = (&rest[take..], end, last.end);
        }
        self.shipped_to_the_end();
        Ok((report, None))
    }

    fn position_after(&self, scan: &Scan, frames: u64) -> Result<Position> {
        use std::os::unix::fs::FileExt;
        let path = wal::wal_path(&self.source.path);
        let f = std::fs::File::open(&path).map_err(|e| Error::io("read WAL", e))?;
        let size = wal::FRAME_HEADER as u64 + scan.header.page_size() as u64;
        let mut fh = [0u8; wal::FRAME_HEADER];
        let frame = scan.from.frame + frames;
        f.read_exact_at(&mut fh, wal::WAL_HEADER as u64 + (frame - 1) * size)
            .map_err(|e| Error::io("read WAL", e))?;
        Ok(Position {
            salts: scan.from.salts,
            frame,
            checksum: [wal::be32(&fh, 16), wal::be32(&fh, 20)],
        })
    }

    /// Ship what is left and release the WAL (the next start resumes the chain).
    pub async fn close(mut self) -> Result<SyncReport> {
        // What is staged goes up even when shipping the rest failed (a full disk).
        let shipped = self.ship().await;
        let mut up = SyncReport::default();
        self.upload_into(&mut up).await?;
        let report = joined(shipped?.0, up);
        self.end_read()?;
        self.spool.close();
        Ok(report)
    }

    /// Whether frames were shipped since the last checkpoint: a sync is due within
    /// `checkpoint_interval` even if nothing more is written.
    pub fn checkpoint_pending(&self) -> bool {
        self.since_checkpoint.0 > 0
    }

    /// Every segment this replicator stored since it was opened, and the commits they hold (a
    /// segment tried again once; commits only a new generation's snapshot holds are not
    /// among them). Counted as they are stored, so a sync that failed after storing some is
    /// counted too.
    pub fn stored(&self) -> super::spool::Uploaded {
        self.spool.stored()
    }

    /// The database's configured name.
    pub fn database(&self) -> &str {
        &self.source.name
    }

    pub fn path(&self) -> PathBuf {
        self.source.path.clone()
    }
}
