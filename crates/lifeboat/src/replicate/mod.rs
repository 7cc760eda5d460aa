//! Continuous replication of a SQLite database in WAL mode (issue 14): every sync interval its
//! new whole transactions go to the repository as an immutable segment, chained to the one
//! before; a generation is a snapshot (an ordinary backup) and the chain after it; a restore
//! to a point in time applies a generation's chain to its snapshot up to the last commit seen
//! at or before that time.
//!
//! [`wal`] reads the live WAL from outside SQLite; [`segment`] is the stored segment format;
//! [`layout`] where generations and segments live; [`compact`] merges them as they
//! age into [`compacted`] segments (`seekable` their zstd frames); [`shipper`] the replicator
//! (breaks), `new_generation` its new generations, `sync_report` its options and reports,
//! `checkpoint` its checkpoints, `resume` its restarts, [`spool`] the frames it
//! shipped, staged locally until their upload, [`pace`] how often it ticks,
//! [`connection`] its SQLite connections, and [`lease`] the one replicator per database
//! across hosts;
//! [`pitr`] the restore (`apply` its chain, `page_writer` its writes, `pooled` the buffers
//! its frames are decompressed into); [`settings`] the `[replication]` section; [`retain`] what
//! `pitr_within` keeps; [`lag`] how far behind the repository is, for `status`.

pub mod apply;
mod checkpoint;
pub mod compact;
pub mod compacted;
pub mod connection;
pub mod lag;
pub mod layout;
pub mod lease;
mod new_generation;
pub mod pace;
mod page_writer;
pub mod pitr;
mod pooled;
mod resume;
pub mod retain;
mod seekable;
pub mod segment;
pub mod settings;
pub mod shipper;
pub mod spool;
mod sync_report;
pub mod wal;

pub use pitr::{choose, restore_point, PitrReport, PitrTarget, Point};
pub use settings::ReplicationConfig;
pub use shipper::{ReplicateOptions, Replicator, SyncReport};
