//! Sources: what a backup reads. A SQLite file ([`sqlite`], its rows counted off the pages as they
//! stream past by [`row_counter`]); a D1 database, exported through wrangler and loaded into an
//! image ([`d1`]); a SQL dump, loaded into a checked database ([`sql_dump`]). [`fleet`] finds the
//! database files of a `[[database]] glob`.

pub mod d1;
pub mod fleet;
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
    /// When the daemon backs it up (cron, UTC); `[daemon] schedule` when unset.
    pub schedule: Option<String>,
    /// Skip a scheduled backup when unchanged since the newest good one; `[daemon]`'s when unset.
    pub skip_unchanged: Option<bool>,
    /// Its own health-ping URL, over `[alerts] ping_url`.
    pub ping_url: Option<String>,
    /// For a database a `[[database]] glob` found: the fleet (the entry's name, else its glob).
    pub fleet: Option<String>,
    /// Replicated continuously, synced this often (`[[database]] replicate`/`sync_interval`).
    pub replicate: Option<std::time::Duration>,
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
