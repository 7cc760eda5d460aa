//! The replicator's own checkpoints: PASSIVE after shipping, with every commit shipped under the
//! write lock first; TRUNCATE as the safety valve for a WAL that application readers keep from
//! shrinking. Never RESTART (it blocked writers indefinitely in litestream#724).

use std::time::Instant;

use rusqlite::Connection;

use crate::error::Result;
use crate::replicate::shipper::{db_err, Replicator, SyncReport};

impl Replicator {
    /// Everything committed shipped under the write lock, then a PASSIVE checkpoint with the
    /// read transaction released, taken again before writers go on.
    pub(super) async fn checkpoint_passive(&mut self) -> Result<SyncReport> {
        let e = db_err(format!("checkpoint {}", self.source.path.display()));
        self.checkpoint_ahead()?;
        let locked = Instant::now();
        match self.write.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                return Ok(SyncReport::default()); // writers are busy: next time
            }
            Err(err) => return Err(e(err)),
        }
        let shipped = self.ship().await;
        let done = match &shipped {
            Ok((_, None)) => self
                .end_read()
                .and_then(|()| {
                    self.read
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                        .map_err(&e)
                })
                .and_then(|_| self.begin_read()),
            _ => Ok(()),
        };
        let _ = self.write.execute_batch("ROLLBACK");
        let (mut report, broke) = shipped?;
        done?;
        if let Some(why) = broke {
            return self.new_generation(&why).await;
        }
        report.checkpoint = Some("passive");
        self.since_checkpoint = (0, Instant::now());
        tracing::debug!(
            database = %self.source.name,
            writers_held_ms = locked.elapsed().as_millis() as u64,
            "checkpoint"
        );
        Ok(report)
    }

    /// The bulk of a checkpoint's copying, with the application's writers going on, so the
    /// part under the write lock copies only what they wrote meanwhile. The read transaction
    /// moves to the WAL's end: taken on `write` before it is let go on `read`, so one is held
    /// throughout and SQLite can reset no frame away (a read mark past 0 forbids any reset). A
    /// PASSIVE checkpoint then copies every frame up to that mark; shipped or not, they stay in
    /// the WAL.
    fn checkpoint_ahead(&mut self) -> Result<()> {
        let e = db_err(format!("checkpoint {}", self.source.path.display()));
        // `write` still holds the read transaction a failed call left it: hand it back first.
        if !self.write.is_autocommit() {
            self.begin_read()?;
            return self.write.execute_batch("COMMIT").map_err(&e);
        }
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
        let copied = self
            .end_read()
            .and_then(|()| {
                self.read
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0))
                    .map_err(&e)
            })
            .and_then(|_| self.begin_read());
        // Only with `read` holding a read transaction again may `write` let go of its own.
        if !self.read.is_autocommit() {
            self.write.execute_batch("COMMIT").map_err(&e)?;
        }
        copied
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
                .begin_read()
                .and_then(|()| data_version(&self.read).map_err(&e)),
            _ => Ok(0),
        };
        let _ = self.write.execute_batch("ROLLBACK");
        let (more, broke) = shipped?;
        let before = before?;
        report.commits += more.commits;
        report.segments += more.segments;
        report.bytes += more.bytes;
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
        report.checkpoint = Some("truncate");
        Ok(report)
    }
}

fn data_version(c: &Connection) -> rusqlite::Result<i64> {
    c.query_row("PRAGMA data_version", [], |r| r.get(0))
}
