//! lifeboat: backup and disaster recovery for multi-tenant SQLite and Cloudflare D1 databases.
//!
//! Data flows one way: [`source`] (a live database) → [`snapshot`] (a consistent image and its
//! [`manifest`]) → [`repository`] (the layout on an object store, via [`store`]) → [`restore`]
//! and [`verify`]. [`cli`] is a thin layer over these.

pub mod aside;
pub mod claim;
pub mod cli;
pub mod config;
pub mod d1;
pub mod d1_restore;
pub mod d1_tenant;
pub mod demo;
pub mod dump;
pub mod error;
pub mod file_writer;
pub mod import;
pub mod insert;
pub mod literal;
pub mod manifest;
pub mod pages;
pub mod place;
pub mod repository;
pub mod restore;
pub mod s3_uploads;
pub mod scratch;
pub mod select;
pub mod snapshot;
pub mod source;
pub mod sqltext;
pub mod store;
pub mod target_lock;
pub mod tenant;
pub mod tenant_apply;
pub mod tenant_copy;
pub mod tenant_export;
pub mod tenant_fk;
pub mod tenant_restore;
pub mod tenant_sql;
pub mod text;
pub mod upload;
pub mod verify;

pub use error::{Error, Kind, Result};
