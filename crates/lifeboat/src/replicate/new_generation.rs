//! Starting a new generation: a snapshot (an ordinary backup) taken while the replicator holds
//! the WAL, then a chain from where the WAL stood before it. What every break ends in.

use std::time::Instant;

use chrono::Utc;

use crate::backup::BackupOptions;
use crate::error::{Error, Kind, Result};
use crate::progress::Progress;
use crate::replicate::layout::{self, FileStamp, Generation};
use crate::replicate::segment::Link;
use crate::replicate::shipper::{Chain, Replicator, SyncReport};
use crate::replicate::wal::{self, Position};

impl Replicator {
    /// Start a new generation: a snapshot (an ordinary backup) taken while the WAL is held,
    /// then the chain from where the WAL stood before it. Commits up to the WAL's position
    /// after the snapshot may or may not be in it, so restores start there (`base_seq`).
    pub(super) async fn new_generation(&mut self, reason: &str) -> Result<SyncReport> {
        // The old chain's staged frames go up first: its window reaches the break.
        let mut up = SyncReport::default();
        if let Some(lost) = self.upload_staged(&mut up).await? {
            tracing::warn!(database = %self.source.name, "{lost}");
        }
        tracing::warn!(database = %self.source.name, reason, "starting a new generation");
        self.chain = None;
        self.begin_read()?;
        self.cookie = self.schema_cookie();
        let path = wal::wal_path(&self.source.path);
        let start_wal = wal::read_header(&path)?;
        let start = match &start_wal {
            Some(h) => Some(wal::scan(&path, h, Position::start_of(h))?.to),
            None => None,
        };
        // The WAL the read transaction began on ended at or before `start` (as after a ship).
        self.read_from = start;
        let created_at = Utc::now();
        let id = layout::new_generation_id(created_at);
        let opts = BackupOptions {
            label: Some(format!("replication snapshot ({id})")),
            lock_timeout: self.opts.lock_timeout,
            held_open: true,
            ..BackupOptions::default()
        };
        let manifest =
            crate::backup::backup(&self.repo, &self.source, &opts, &Progress::hidden()).await?;
        let link = Link {
            seq: 0,
            position: start,
        };
        let mut generation = Generation {
            format_version: 1,
            id: id.clone(),
            database: self.source.name.clone(),
            created_at,
            reason: reason.to_string(),
            snapshot: manifest.id.clone(),
            source_path: std::path::absolute(&self.source.path)
                .unwrap_or_default()
                .display()
                .to_string(),
            inode: self.inode,
            page_size: manifest.page_size as u32,
            start: link,
            base_seq: 0,
            base_at: Utc::now(),
            quiet: None,
        };
        self.chain = Some(Chain {
            generation: generation.clone(),
            link,
            wal: start_wal.clone(),
        });
        // Every commit the snapshot may hold: restores start after the last of them.
        match self.scan_new(&link)? {
            Ok(Some(s)) => generation.base_seq = s.commits.len() as u64,
            Ok(None) => {}
            Err(why) => {
                self.chain = None;
                return Err(Error::new(
                    Kind::Database,
                    format!("{}: {why} while its snapshot was taken", self.source.name),
                ));
            }
        }
        generation.base_at = Utc::now();
        if start.is_none() {
            // The file first, then the WAL: a commit after the stamp leaves the WAL not empty
            // (or, checkpointed, the file changed), so a restart never resumes past it.
            let stamp = FileStamp::of(&self.source.path);
            if wal::read_header(&path)?.is_none() {
                generation.quiet = stamp;
            }
        }
        if let Err(e) = layout::put_generation(&self.repo, &generation).await {
            // Not a generation yet: the next sync starts one again.
            self.chain = None;
            return Err(e);
        }
        self.chain = Some(Chain {
            generation,
            link,
            wal: start_wal,
        });
        self.since_checkpoint = (0, Instant::now());
        let (mut report, broke) = self.ship().await?;
        if let Some(why) = broke {
            return Err(Error::new(
                Kind::Database,
                format!(
                    "{}: {why}, just after a new generation started",
                    self.source.name
                ),
            ));
        }
        report.new_generation = Some(reason.to_string());
        report.add(&up);
        tracing::info!(database = %self.source.name, generation = %id, snapshot = %manifest.id, "generation started");
        Ok(report)
    }
}
