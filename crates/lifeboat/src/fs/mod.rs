//! Files on local disks, written so that nothing is lost: the durable writer, the atomic replace
//! of a target (private temp, one writer per target, the old file kept aside, no-replace renames)
//! and scratch directories. The lowest layer of the engine: it knows nothing of backups.

pub mod atomic_replace;
pub mod durable_writer;
pub mod held;
pub mod move_aside;
pub mod output_file;
pub mod page_set;
pub mod scratch;
pub mod target_lock;
