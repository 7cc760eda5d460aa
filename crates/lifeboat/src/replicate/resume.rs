//! A restart: the newest generation's chain goes on when the WAL still holds where it stopped
//! (or provably reset once right after it); anything else is a break, told with its reason.

use crate::error::{Error, Result};
use crate::replicate::layout::{self, FileStamp};
use crate::replicate::shipper::{Chain, Replicator};
use crate::replicate::spool;
use crate::replicate::wal::{self, Position};

impl Replicator {
    /// The newest generation's chain, when it can go on: same file, and the WAL still holds
    /// the position its last segment ended at. `Err(reason)`: a new generation is needed.
    ///
    /// The read transaction is taken after the repository is read and before the WAL is
    /// looked at, so what the WAL shows is what the transaction holds.
    pub(super) async fn resume(&mut self) -> Result<std::result::Result<Chain, String>> {
        let db = &self.source.name;
        let Some(id) = layout::generation_ids(&self.repo, db).await?.pop() else {
            return Ok(Err("first run".into()));
        };
        let Some(generation) = layout::read_generation(&self.repo, db, &id).await? else {
            return Ok(Err(format!("generation {id} was never finished")));
        };
        let path = std::path::absolute(&self.source.path).unwrap_or_default();
        if generation.source_path != path.display().to_string() || generation.inode != self.inode {
            return Ok(Err("the database file was replaced".into()));
        }
        let (link, old_wal, stored) = spool::chain_end(&self.repo, db, &generation).await?;
        self.begin_read()?;
        let Some(pos) = link.position else {
            let wal_empty = wal::read_header(&wal::wal_path(&self.source.path))?.is_none();
            if !stored
                && wal_empty
                && generation.quiet.is_some()
                && generation.quiet == FileStamp::of(&self.source.path)
            {
                return Ok(Ok(Chain {
                    generation,
                    link,
                    wal: None,
                }));
            }
            return Ok(Err(
                "the chain started on an empty WAL, and the database file changed since (or the WAL is no longer empty)".into(),
            ));
        };
        if !self.wal_holds(pos)? && !self.reset_after(old_wal.as_ref(), pos)? {
            let now = wal::read_header(&wal::wal_path(&self.source.path))?;
            if let (Some(old), Some(now)) = (&old_wal, &now) {
                if now.salts() != pos.salts && wal::reset_once(old, now) {
                    return Ok(Err(
                        "the WAL was reset once since the chain stopped, and the new WAL has overwritten the frames that would prove nothing was lost in between".into(),
                    ));
                }
            }
            return Ok(Err(
                "the WAL no longer holds where the chain stopped (checkpointed and reset while lifeboat was not running)".into(),
            ));
        }
        // The WAL still ends where the chain stopped: as after a ship, a reset under the read
        // transaction can only follow it.
        let path = wal::wal_path(&self.source.path);
        if let Some(h) = wal::read_header(&path)?.filter(|h| h.salts() == pos.salts) {
            if self.wal_holds(pos)? && wal::scan(&path, &h, pos)?.commits.is_empty() {
                self.read_from = Some(pos);
            }
        }
        Ok(Ok(Chain {
            generation,
            link,
            wal: old_wal,
        }))
    }

    /// Whether the WAL was reset once, right after `pos` (lifeboat's own complete checkpoint
    /// just before it was stopped): the chain then goes on at the new WAL's frame 0.
    fn reset_after(&self, old: Option<&wal::WalHeader>, pos: Position) -> Result<bool> {
        let path = wal::wal_path(&self.source.path);
        match (old, wal::read_header(&path)?) {
            (Some(old), Some(now)) => wal::reset_once_after(&path, old, &now, pos),
            _ => Ok(false),
        }
    }

    /// Whether the WAL is still the one `pos` is in, with the same frame at it.
    fn wal_holds(&self, pos: Position) -> Result<bool> {
        let path = wal::wal_path(&self.source.path);
        let Some(h) = wal::read_header(&path)? else {
            return Ok(false);
        };
        if h.salts() != pos.salts {
            return Ok(false);
        }
        if pos.frame == 0 {
            return Ok(h.checksum() == pos.checksum);
        }
        use std::os::unix::fs::FileExt;
        let f = std::fs::File::open(&path).map_err(|e| Error::io("read WAL", e))?;
        let size = wal::FRAME_HEADER as u64 + h.page_size() as u64;
        let mut fh = [0u8; wal::FRAME_HEADER];
        let at = wal::WAL_HEADER as u64 + (pos.frame - 1) * size;
        if f.read_exact_at(&mut fh, at).is_err() {
            return Ok(false);
        }
        Ok([wal::be32(&fh, 8), wal::be32(&fh, 12)] == pos.salts
            && [wal::be32(&fh, 16), wal::be32(&fh, 20)] == pos.checksum
            && wal::be32(&fh, 4) != 0)
    }
}
