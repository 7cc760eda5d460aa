//! What a replicator is asked to do ([`ReplicateOptions`]) and what one of its syncs or ticks
//! did ([`SyncReport`]).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ReplicateOptions {
    pub sync_interval: Duration,
    /// A PASSIVE checkpoint once this many frames were shipped since the last one…
    pub checkpoint_frames: u64,
    /// …or this long after it, when anything was shipped.
    pub checkpoint_interval: Duration,
    /// The safety valve: a WAL file larger than this gets a TRUNCATE checkpoint.
    pub truncate_wal_bytes: u64,
    /// At most this many frames per segment (cut at a commit; one larger transaction is
    /// one segment of its own).
    pub segment_frames: u64,
    pub lock_timeout: Duration,
}

impl Default for ReplicateOptions {
    fn default() -> Self {
        ReplicateOptions {
            sync_interval: Duration::from_secs(1),
            checkpoint_frames: 1000,
            checkpoint_interval: Duration::from_secs(60),
            truncate_wal_bytes: 512 * 1024 * 1024,
            segment_frames: 8192,
            lock_timeout: Duration::from_secs(30),
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    /// Commits shipped (staged, or stored at once on a full disk).
    pub commits: u64,
    /// Segments stored.
    pub segments: u64,
    /// The commits those segments hold.
    pub stored_commits: u64,
    /// Bytes of the segments stored (compressed).
    pub bytes: u64,
    /// A new generation was started, and why.
    pub new_generation: Option<String>,
    pub checkpoint: Option<&'static str>,
    /// Frames shipped (staged; uploaded segments are counted in `segments`).
    pub frames: u64,
    /// A background upload ended well in this call: everything staged before it started is
    /// stored.
    #[serde(skip)]
    pub upload_ended: bool,
    /// Everything shipped up to the end of this call is stored (nothing staged is left).
    #[serde(skip)]
    pub all_stored: bool,
    /// A background upload of everything staged so far was started ([`Replicator::tick`]).
    #[serde(skip)]
    pub upload_started: bool,
}

impl SyncReport {
    /// Count what an upload stored.
    pub fn stored(&mut self, up: super::spool::Uploaded) {
        self.segments += up.segments;
        self.bytes += up.bytes;
        self.stored_commits += up.commits;
    }

    /// Count what `more` did too (not its break or checkpoint, which the caller tells).
    pub fn add(&mut self, more: &SyncReport) {
        self.commits += more.commits;
        self.stored_commits += more.stored_commits;
        self.segments += more.segments;
        self.bytes += more.bytes;
        self.frames += more.frames;
    }
}

/// A sync's staging and its upload, told as one report (a break the upload made wins).
pub(super) fn joined(mut staged: SyncReport, up: SyncReport) -> SyncReport {
    staged.add(&up);
    if up.new_generation.is_some() {
        staged.new_generation = up.new_generation;
    }
    staged.upload_ended |= up.upload_ended;
    staged.upload_started |= up.upload_started;
    staged.all_stored = up.all_stored;
    staged
}
