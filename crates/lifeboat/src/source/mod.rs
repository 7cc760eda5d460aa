//! Sources: what a backup reads. A SQLite file ([`sqlite`], its rows counted off the pages as they
//! stream past by [`row_counter`]); a D1 database, exported through wrangler and loaded into an
//! image ([`d1`]); a SQL dump, loaded into a checked database ([`sql_dump`]).

pub mod d1;
pub mod row_counter;
pub mod sql_dump;
pub mod sqlite;

use std::path::PathBuf;

/// A source: a database lifeboat protects, by its name in the repository. A SQLite file, or a
/// D1 database reached through wrangler; `backup::backup_source` takes either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// The database file (empty for a D1 database).
    pub path: PathBuf,
    pub sql_mirror: bool,
    /// For a D1 database: where it is, and how to run wrangler.
    pub d1: Option<crate::d1::D1Config>,
    pub wrangler: Option<String>,
}
