//! The replicator's own checkpoints: PASSIVE after shipping, with every commit shipped under the
//! write lock first; TRUNCATE as the safety valve for a WAL that application readers keep from
//! shrinking. Never RESTART (it blocked writers indefinitely in litestream#724).

use std::time::Instant;

use rusqlite::Connection;

use crate::error::Result;
use crate::replicate::shipper::{db_err, Replicator, SyncReport};

/// How long a complete checkpoint waits for a writer to reset the WAL (see `follow_reset`).
const RESET_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a checkpoint under the write lock waits for another connection's checkpoint.
const CHECKPOINT_LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

impl Replicator {
    /// Everything committed shipped under the write lock, then a PASSIVE checkpoint with the
    /// read transaction released, taken again before writers go on.
    pub(super) async fn checkpoint_passive(&mut self) -> Result<SyncReport> {
        let e = db_err(format!("checkpoint {}", self.source.path.display()));
        fault_pause();
        let (mut report, broke) = self.checkpoint_ahead().await?;
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        fault_pause();
        let locked = Instant::now();
        match self.write.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                tracing::debug!(database = %self.source.name, waited_ms = locked.elapsed().as_millis() as u64, "checkpoint: the write lock was not free");
                return Ok(report); // writers are busy: next time
            }
            Err(err) => return Err(e(err)),
        }
        let shipped = self.ship().await;
        let shipped_ms = locked.elapsed().as_millis() as u64;
        let done = match &shipped {
            Ok((_, None)) => self
                .end_read()
                .and_then(|()| passive_to_the_end(&self.read).map_err(&e))
                .and_then(|()| self.begin_read_shipped())
                // Under the write lock: nothing came after the frames just shipped.
                .map(|()| self.read_covered = true),
            _ => Ok(()),
        };
        let _ = self.write.execute_batch("ROLLBACK");
        let (more, broke) = shipped?;
        done?;
        report.add(&more);
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        report.checkpoint = Some("passive");
        self.since_checkpoint = (0, Instant::now());
        tracing::debug!(
            database = %self.source.name,
            writers_held_ms = locked.elapsed().as_millis() as u64,
            shipped_ms,
            "checkpoint"
        );
        let (more, broke) = self.follow_reset().await?;
        report.add(&more);
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        Ok(report)
    }

    /// After a complete checkpoint `read` holds read mark 0, which blocks every checkpoint
    /// until it moves. An application that checkpoints after each commit (SQLite's
    /// autocheckpoint, once its WAL is past 1,000 frames) would then sort the whole new WAL at
    /// every commit in vain. So once a writer has reset the WAL, as one busy writing does at
    /// once, the read transaction moves onto the new WAL. A writer that does not write within
    /// `RESET_WAIT` is met at the next sync instead (`moved_to_new_wal`).
    async fn follow_reset(&mut self) -> Result<(SyncReport, Option<String>)> {
        let Some(p) = self.read_from else {
            return Ok((SyncReport::default(), None));
        };
        let path = crate::replicate::wal::wal_path(&self.source.path);
        let since = Instant::now();
        loop {
            let now = crate::replicate::wal::read_header(&path)?;
            if now.is_some_and(|h| h.salts() != p.salts) {
                return self.checkpoint_ahead().await;
            }
            if since.elapsed() >= RESET_WAIT {
                return Ok((SyncReport::default(), None));
            }
            tokio::time::sleep(std::time::Duration::from_micros(250)).await;
        }
    }

    /// The read transaction moved to the WAL's end, with a PASSIVE checkpoint on the way: the
    /// bulk of a checkpoint's copying, with the application's writers going on, so the part
    /// under the write lock copies only what they wrote meanwhile.
    ///
    /// It ships first, unless a ship ended since `read` took its read transaction, so every
    /// frame `read` can see is shipped. The new read transaction is taken on `write` before
    /// `read` lets go, so one is held throughout: a read mark past 0 forbids any reset, and read mark 0
    /// (taken on a WAL fully copied, which `read`'s mark kept from going past shipped frames)
    /// forbids any checkpoint, so a reset can only follow the shipped end. The checkpoint then
    /// copies every frame up to `write`'s mark, and they are all shipped before `read` reads
    /// again: when nothing was committed meanwhile, `read` finds the WAL fully copied and takes
    /// read mark 0, which lets the next writer reset the WAL over them.
    pub(super) async fn checkpoint_ahead(&mut self) -> Result<(SyncReport, Option<String>)> {
        let e = db_err(format!("checkpoint {}", self.source.path.display()));
        let mut report = SyncReport::default();
        if !self.read_covered {
            let broke;
            (report, broke) = self.ship().await?;
            if broke.is_some() {
                return Ok((report, broke));
            }
        }
        // Else `write` still holds the read transaction a failed call left it.
        if self.write.is_autocommit() {
            self.write.execute_batch("BEGIN").map_err(&e)?;
            if let Err(err) = self
                .write
                .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
                    r.get::<_, i64>(0)
                })
            {
                let _ = self.write.execute_batch("ROLLBACK");
                return Err(e(err));
            }
            self.end_read()?;
            self.read_from = self.link_position();
            self.read
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                .map_err(&e)?;
        }
        let shipped = self.ship().await;
        let began = match &shipped {
            Ok((_, None)) => self.begin_read_shipped(),
            _ => self.begin_read(),
        };
        // Only with `read` holding a read transaction again may `write` let go of its own.
        if began.is_ok() {
            self.write.execute_batch("COMMIT").map_err(&e)?;
        }
        began?;
        let (more, broke) = shipped?;
        report.add(&more);
        Ok((report, broke))
    }

    /// The safety valve for a WAL that PASSIVE checkpoints cannot keep small (readers of the
    /// application's holding old snapshots): TRUNCATE, which waits for them.
    pub(super) async fn checkpoint_truncate(
        &mut self,
        mut report: SyncReport,
    ) -> Result<SyncReport> {
        let e = db_err(format!("checkpoint {}", self.source.path.display()));
        match self.write.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                return Ok(report);
            }
            Err(err) => return Err(e(err)),
        }
        let shipped = self.ship().await;
        let before = match &shipped {
            Ok((_, None)) => self
                .begin_read_shipped()
                .and_then(|()| data_version(&self.read).map_err(&e)),
            _ => Ok(0),
        };
        let _ = self.write.execute_batch("ROLLBACK");
        let (more, broke) = shipped?;
        let before = before?;
        report.add(&more);
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        self.end_read()?;
        let truncated = self
            .read
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(&e);
        self.begin_read()?;
        let after = data_version(&self.read).map_err(&e)?;
        truncated?;
        self.since_checkpoint = (0, Instant::now());
        if after != before {
            let r = self
                .new_generation(
                    "a commit raced the TRUNCATE checkpoint (its frames may be gone from the WAL)",
                )
                .await?;
            return Ok(r);
        }
        // Nothing committed since everything was shipped: the WAL was emptied with no frame
        // unshipped, and the next writer starts it again.
        self.read_from = self.link_position();
        report.checkpoint = Some("truncate");
        Ok(report)
    }
}

/// A PASSIVE checkpoint, tried again while another connection's checkpoint holds the
/// checkpoint lock (an application's autocheckpoint, after each of its commits once the WAL is
/// long): with the write lock held, that one ends soon, and the WAL can only be reset once
/// every frame is copied. Gives up after `CHECKPOINT_LOCK_WAIT`. Frames an application reader
/// still needs are not waited for (that is the TRUNCATE valve's job).
fn passive_to_the_end(c: &Connection) -> rusqlite::Result<()> {
    let since = Instant::now();
    loop {
        let busy: i64 = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(0))?;
        if busy == 0 || since.elapsed() >= CHECKPOINT_LOCK_WAIT {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_micros(50));
    }
}

/// Fault injection for the test suite, in debug builds only: `LIFEBOAT_FAULT=checkpoint-pause=MS`
/// stops a checkpoint MS milliseconds before and after its copying ahead, so the tests can
/// commit in those windows.
fn fault_pause() {
    if !cfg!(debug_assertions) {
        return;
    }
    let faults = std::env::var("LIFEBOAT_FAULT").unwrap_or_default();
    if let Some(ms) = faults
        .split(',')
        .find_map(|f| f.strip_prefix("checkpoint-pause="))
        .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0))
}
