//! How far a replicated database's repository copy is behind, as a one-shot `status` can tell
//! from outside the replicator: the newest replicated commit (from the repository), and, when
//! the database file is on this machine, the commits its WAL holds past the newest segment.
//!
//! The lag is an upper bound on how long the oldest unshipped commit has waited: such a commit
//! was made after the replicator's last scan, which is just before the newest commit's "seen
//! at" time, so the lag is now − that time when any commit is unshipped, and 0 when none is.
//! The daemon's own lag (`lifeboat_replication_lag_seconds`) is measured from when it first
//! saw the WAL change.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::replicate::layout;
use crate::replicate::segment::SegmentReader;
use crate::replicate::wal::{self, Position};
use crate::repo::Repository;

/// What `status` shows of a replicated database.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationStatus {
    /// The newest generation.
    pub generation: String,
    pub generations: usize,
    /// The newest commit a restore reaches, and when the replicator saw it.
    pub newest_commit: u64,
    pub newest_commit_at: DateTime<Utc>,
    /// Commits in the local WAL not yet in the repository; None when the file is not here (or
    /// is another file than the generation's), or its WAL was deleted since (a checkpoint while
    /// nothing replicated: the next start of the replicator begins a new generation).
    pub unshipped_commits: Option<u64>,
    /// Seconds the oldest unshipped commit has waited at most (0 when none waits); None when
    /// the local file cannot tell.
    pub lag_seconds: Option<i64>,
}

/// The replication status of `db`, if it has any generation; `local` is its file when the
/// config names one.
pub async fn replication_status(
    repo: &Repository,
    db: &str,
    local: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<Option<ReplicationStatus>> {
    let windows = layout::windows(repo, db).await?;
    let Some(newest) = windows.last() else {
        return Ok(None);
    };
    let (seq, at) = newest.last();
    let mut status = ReplicationStatus {
        generation: newest.generation.id.clone(),
        generations: windows.len(),
        newest_commit: seq,
        newest_commit_at: at,
        unshipped_commits: None,
        lag_seconds: None,
    };
    let Some(path) = local else {
        return Ok(Some(status));
    };
    let same_file = {
        use std::os::unix::fs::MetadataExt;
        let abs = std::path::absolute(path).unwrap_or_default();
        abs.display().to_string() == newest.generation.source_path
            && std::fs::metadata(path).is_ok_and(|m| m.ino() == newest.generation.inode)
    };
    if !same_file {
        return Ok(Some(status));
    }
    // Where the newest contiguous segment ended in the WAL.
    let mut position = newest.generation.start.position;
    let mut next = newest.generation.start.seq + 1;
    let mut last = None;
    for s in &newest.segments {
        if s.first_seq != next {
            break;
        }
        next = s.last_seq + 1;
        last = Some(s);
    }
    if let Some(s) = last {
        let bytes = layout::read_segment(repo, db, &newest.generation.id, &s.name).await?;
        position = SegmentReader::open(&bytes, &s.name)?
            .header
            .end_link()
            .position;
    }
    let wal_path = wal::wal_path(path);
    let unshipped = match wal::read_header(&wal_path)? {
        // Nothing was ever in the chain's WAL, and there is none: nothing waits.
        None if position.is_none() => 0,
        // The WAL the chain continues from is gone (checkpointed and deleted by the last
        // connection to close while nothing replicated): what it held cannot be told.
        None => return Ok(Some(status)),
        Some(h) => {
            // Same WAL: what follows the position; a reset one: all it holds.
            let from = match position {
                Some(p) if p.salts == h.salts() => p,
                _ => Position::start_of(&h),
            };
            wal::scan(&wal_path, &h, from)?.commits.len() as u64
        }
    };
    status.unshipped_commits = Some(unshipped);
    status.lag_seconds = Some(if unshipped == 0 {
        0
    } else {
        (now - at).num_seconds().max(0)
    });
    Ok(Some(status))
}
