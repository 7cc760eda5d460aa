//! lifeboat: backup and disaster recovery for multi-tenant SQLite and Cloudflare D1 databases.
//! This crate is the engine; the `lifeboat` binary (crate `lifeboat-cli`) parses arguments and
//! prints, and SQL text is `lifeboat-sql`'s.
//!
//! Data flows one way, and the folders are layered in that order (each uses only those before
//! it; docs/architecture.md):
//!
//! [`fs`] (durable writes, atomic replace, scratch) → [`repo`] (stores, layout, claims, manifest)
//! → [`d1`] (wrangler and the D1 target) → [`source`] (SQLite file, D1, SQL dump) → [`backup`]
//! → [`restore`] (select, fetch, check, place) → [`tenant`] (map, export, restore) → [`verify`]
//! → [`drill`] (DR drills: restore, check, time) → [`status`] (what the repository says of each
//! database's backups) → [`incident`] (an incident's timeline from the repository's records).
//! [`config`] reads `lifeboat.toml` into the types of all of them; [`demo`] generates sample data.

pub mod backup;
pub mod config;
pub mod d1;
pub mod demo;
pub mod drill;
pub mod duration;
pub mod error;
pub mod fs;
pub mod incident;
pub mod process;
pub mod progress;
pub mod replicate;
pub mod repo;
pub mod restore;
pub mod schedule;
pub mod source;
pub mod status;
pub mod tenant;
pub mod text;
pub mod verify;

pub use error::{Error, Kind, Result};
