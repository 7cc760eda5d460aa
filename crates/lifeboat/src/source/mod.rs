//! Sources: what a backup reads. A SQLite file ([`sqlite`], its rows counted off the pages as they
//! stream past by [`row_counter`]); a D1 database, exported through wrangler and loaded into an
//! image ([`d1`]); a SQL dump, loaded into a checked database ([`sql_dump`]).

pub mod d1;
pub mod row_counter;
pub mod sql_dump;
pub mod sqlite;

use std::path::PathBuf;

/// A source: a database lifeboat protects, by its name in the repository. A SQLite file, a D1
/// database reached through wrangler, or a SQL dump; `backup::prepare` and `backup::store` take
/// any of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub name: String,
    /// The database file (empty for a D1 database or a dump).
    pub path: PathBuf,
    pub sql_mirror: bool,
    /// For a D1 database: where it is, and how to run wrangler.
    pub d1: Option<crate::d1::D1Config>,
    pub wrangler: Option<String>,
    /// For a SQL dump (`backup --from-sql`): the dump, loaded into a checked image first.
    pub sql_dump: Option<PathBuf>,
}

impl Source {
    /// A SQLite database file under `name`.
    pub fn file(name: impl Into<String>, path: impl Into<PathBuf>) -> Source {
        Source {
            name: name.into(),
            path: path.into(),
            ..Source::default()
        }
    }
}
