//! The repository: where backups live. Object-store backends behind one small interface
//! ([`store`]), the layout of names ([`repository`]), the listing ([`listing`]), uploads ([`upload`],
//! S3 multipart step by step in [`s3_uploads`]), who holds a backup id ([`claim`]) and the
//! on-disk format of a backup's record ([`manifest`]), and which backups a policy keeps
//! ([`retention`]); the newest good backup read cheaply, for skipping ([`newest_good`]); what
//! verification found per backup ([`verify_record`]); what happened to each database, for
//! incident timelines ([`events`]); the snapshots replicated generations stand on
//! ([`generation_refs`]).

pub mod claim;
pub mod drills;
pub mod events;
pub mod generation_refs;
pub mod leases;
pub mod listing;
pub mod manifest;
pub mod marks;
pub mod newest_good;
pub mod prune;
pub mod repository;
pub mod retention;
pub mod runs;
pub mod s3_uploads;
pub mod store;
pub mod upload;
pub mod verify_record;

pub use manifest::{BackupKind, Manifest};
pub use repository::Repository;
