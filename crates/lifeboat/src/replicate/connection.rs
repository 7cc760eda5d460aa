//! The replicator's SQLite connections and the checks before it takes a database: a file that
//! is there, SQLite, in WAL mode; and, for a process holding thousands of them, SQLite's
//! per-connection memory turned off ([`lean_sqlite`]).

use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Kind, Result};

/// A full disk (SQLITE_FULL, as a checkpoint meets it) is `Kind::DiskFull`: it passes once
/// space is freed, so a replicator retries rather than stops.
pub(super) fn db_err(what: String) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::sqlite(Kind::Database, &what, e)
}

pub(super) fn inode_of(path: &std::path::Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|e| Error::io_as(Kind::Database, format!("database {}", path.display()), e))
}

/// Open a connection of the replicator's: never creates the file, never checkpoints on its own
/// (not even when it closes last, which would delete the WAL the chain continues from).
pub(super) fn connect(path: &std::path::Path, timeout: Duration) -> Result<Connection> {
    let e = db_err(format!("database {}", path.display()));
    let mut c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&e)?;
    // Two of these per replicated database, for thousands of databases in a daemon: a small
    // page cache (they read the schema page, and checkpoint outside the cache).
    c.busy_timeout(timeout).map_err(&e)?;
    if timeout < Duration::from_secs(1) {
        c.busy_handler(Some(eager_busy(timeout))).map_err(&e)?;
    }
    c.execute_batch("PRAGMA cache_size=-64").map_err(&e)?;
    c.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(&e)?;
    c.execute_batch("PRAGMA wal_autocheckpoint=0").map_err(&e)?;
    Ok(c)
}

/// A busy handler that tries again every few tens of microseconds, for at most `limit`.
/// SQLite's own sleeps 1, 2, 5, 10… ms between tries, and a writer committing back to back
/// takes the write lock again long before that: the replicator's checkpoint would starve.
fn eager_busy(limit: Duration) -> impl FnMut(i32) -> bool + Send + 'static {
    let mut since = std::time::Instant::now();
    move |count| {
        if count == 0 {
            since = std::time::Instant::now();
        }
        if since.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_micros(20));
        true
    }
}

/// For a process that holds thousands of connections (a daemon replicating a fleet): no
/// lookaside memory, and no bulk page-cache allocation when a connection first reads. By
/// default SQLite allocates both as a connection starts (~100 KB of memory each, most of a
/// replicating fleet's). It can only be set before SQLite is first used in the process: false
/// when it was too late.
pub fn lean_sqlite() -> bool {
    use std::ffi::c_int;
    // SAFETY: SQLITE_CONFIG_LOOKASIDE takes two ints, SQLITE_CONFIG_PAGECACHE a pointer and two
    // ints (a null buffer and N = 0: no initial bulk allocation). Before SQLite is initialized
    // they set defaults; after, they fail with SQLITE_MISUSE and change nothing.
    let (a, b) = unsafe {
        (
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_LOOKASIDE,
                0 as c_int,
                0 as c_int,
            ),
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                0 as c_int,
                0 as c_int,
            ),
        )
    };
    a == rusqlite::ffi::SQLITE_OK && b == rusqlite::ffi::SQLITE_OK
}

/// A database file to replicate: there, a regular file, and SQLite (asked of SQLite itself).
pub(super) fn check_file(path: &std::path::Path) -> Result<()> {
    let bad = |m: &str| Error::new(Kind::Database, format!("database {}: {m}", path.display()));
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(bad("is not a regular file")),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad("no such file")),
        Err(e) => Err(Error::io_as(
            Kind::Database,
            format!("database {}", path.display()),
            e,
        )),
    }
}

/// The checks [`crate::replicate::Replicator::open`] makes of the file (there, SQLite, in WAL
/// mode), made before anything is written to the repository (`lifeboat replicate`'s lease): a
/// database that would be refused changes nothing. Through SQLite, with a connection that does
/// not checkpoint as it closes.
pub fn preflight(path: &std::path::Path) -> Result<()> {
    check_file(path)?;
    let c = connect(path, Duration::from_secs(1))?;
    require_wal(&c, path)
}

/// Refuse a database not in WAL mode, saying how to switch.
pub fn require_wal(c: &Connection, path: &std::path::Path) -> Result<()> {
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(db_err(format!("database {}", path.display())))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::new(
            Kind::Database,
            format!(
                "database {} is in journal_mode={mode}: replication needs WAL mode; switch it once with `sqlite3 {} 'PRAGMA journal_mode=WAL'`",
                path.display(),
                crate::text::shell_word(&path.display().to_string())
            ),
        ));
    }
    Ok(())
}
