//! A SQLite database file as a source: its consistent image, streamed page by page from
//! `sqlite_dbpage` inside one read transaction (so the image is the database at one instant while
//! other processes keep reading and writing, in WAL or rollback-journal mode), with SQLite's online
//! backup API as the fallback where `sqlite_dbpage` is missing; and the checks and counts of an
//! image (`quick_check`, per-table rows, the schema hash).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
use crate::source::row_counter::PageCounter;

/// A SQLite database file to back up.
pub struct SqliteSource {
    pub path: PathBuf,
    /// This process holds the file open through SQLite: never open it outside SQLite (see
    /// `BackupOptions::held_open`), so [`SqliteSource::check`] checks nothing.
    held_open: bool,
}

/// Facts about an image, read from the image itself.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub sqlite_version: String,
    pub page_size: u64,
    pub page_count: u64,
    pub tables: BTreeMap<String, u64>,
    pub schema_sha256: String,
    /// Root page of each counted table's b-tree.
    pub roots: BTreeMap<String, u32>,
}

impl SqliteSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteSource {
            path: path.into(),
            held_open: false,
        }
    }

    /// See the field: the caller checked the file, and holds it open through SQLite.
    pub fn held_open(mut self, yes: bool) -> Self {
        self.held_open = yes;
        self
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::new(
            Kind::Database,
            format!("database {}: {msg}", self.path.display()),
        )
    }

    /// Check the file exists and starts with the SQLite header, before SQLite sees it
    /// (SQLite would happily treat an empty file as an empty database).
    pub fn check(&self) -> Result<()> {
        // Open through SQLite in this process (a replicator): opening it here would drop its locks.
        if self.held_open || crate::fs::held::is_held(&self.path) {
            return Ok(());
        }
        // Opening a FIFO would wait forever for a writer: look before opening.
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => return Err(self.err("is a directory, not a SQLite database")),
            Ok(m) if !m.is_file() => {
                return Err(self.err("is not a regular file (a FIFO, device or socket)"))
            }
            _ => {}
        }
        let mut f = std::fs::File::open(&self.path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.err("no such file"),
            _ => self.err(e),
        })?;
        if f.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(self.err("is a directory, not a SQLite database"));
        }
        let mut header = [0u8; 16];
        let n = read_up_to(&mut f, &mut header).map_err(|e| self.err(e))?;
        if n < 16 || &header != b"SQLite format 3\0" {
            return Err(self.err("not a SQLite database"));
        }
        Ok(())
    }

    /// Open the database read-only inside one read transaction (a live database is then read
    /// as it was at one instant), waiting at most `lock_timeout` for other processes' locks.
    pub fn open_read(&self, lock_timeout: Duration) -> Result<Connection> {
        self.check()?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| self.err(e))?;
        conn.busy_timeout(lock_timeout).map_err(|e| self.err(e))?;
        conn.execute_batch("BEGIN")
            .map_err(|e| self.classify(e, lock_timeout))?;
        // The first read starts the transaction: a lock or a hot journal shows up here.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| self.classify(e, lock_timeout))?;
        Ok(conn)
    }

    /// Copy a consistent image of the database to `dest` (a new file), waiting at most
    /// `lock_timeout` for locks held by other connections.
    pub fn snapshot_to(&self, dest: &Path, lock_timeout: Duration) -> Result<()> {
        self.check()?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let src = Connection::open_with_flags(&self.path, flags).map_err(|e| self.err(e))?;
        src.busy_timeout(lock_timeout).map_err(|e| self.err(e))?;
        // Touch the schema now so "not a database" and lock errors surface with a clear step.
        src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| self.classify(e, lock_timeout))?;

        let mut dst = Connection::open(dest).map_err(|e| {
            Error::sqlite(Kind::Internal, format!("snapshot {}", dest.display()), e)
        })?;
        dst.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;")
            .map_err(|e| Error::sqlite(Kind::Internal, "snapshot: prepare image", e))?;
        let deadline = Instant::now() + lock_timeout;
        {
            let backup = Backup::new(&src, &mut dst)
                .map_err(|e| Error::sqlite(Kind::Internal, "snapshot: start backup", e))?;
            // One step of -1 pages copies the whole database under one read transaction:
            // the image is the database at a single instant.
            loop {
                match backup.step(-1) {
                    Ok(StepResult::Done) => break,
                    Ok(StepResult::More) => continue,
                    Ok(StepResult::Busy) | Ok(StepResult::Locked) => {
                        if Instant::now() >= deadline {
                            return Err(self.err(format!(
                                "locked by another process for more than {}",
                                humantime::format_duration(lock_timeout)
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(self.classify(e, lock_timeout)),
                }
            }
        }
        drop(dst);
        Ok(())
    }

    /// Read a consistent image of the database and hand it to `page`, in order, in pieces.
    /// `start` gets the image's facts first. Everything happens inside one read transaction:
    /// the row counts, the schema and every page are the database at a single instant.
    ///
    /// Pages come from `sqlite_dbpage` (through SQLite's pager, so WAL content is included);
    /// where that table is missing, the online backup API copies the image into `scratch` and
    /// the copy is read back.
    pub fn read_image(
        &self,
        lock_timeout: Duration,
        scratch: &Path,
        start: &mut dyn FnMut(&ImageInfo),
        page: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<ImageInfo> {
        self.check()?;
        // One deadline for every wait: `--lock-timeout 5s` gives up after 5 s, not after each
        // of several steps has waited 5 s.
        let deadline = Instant::now() + lock_timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(|e| self.err(e))?;
        conn.busy_timeout(lock_timeout).map_err(|e| self.err(e))?;
        // Preparing reads the schema, which needs the lock: a lock is a lock, not a sign that
        // sqlite_dbpage is missing.
        let has_dbpage = match conn.prepare("SELECT 1 FROM sqlite_dbpage WHERE 0") {
            Ok(_) => true,
            Err(e) if is_busy(&e) || is_hot_journal(&e) => {
                return Err(self.classify(e, lock_timeout))
            }
            Err(_) => false,
        };
        conn.busy_timeout(remaining()).map_err(|e| self.err(e))?;
        if !has_dbpage {
            drop(conn);
            let image = scratch.join("image.sqlite");
            self.snapshot_to(&image, remaining().max(Duration::from_millis(1)))?;
            let info = inspect(&open_image(&image).map_err(|e| self.err(e))?)
                .map_err(|e| Error::sqlite(Kind::Database, "inspect image", e))?;
            start(&info);
            let mut f = std::fs::File::open(&image).map_err(|e| Error::io("read image", e))?;
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(|e| Error::io("read image", e))?;
                if n == 0 {
                    break;
                }
                page(&buf[..n]).map_err(|e| Error::io("stream image", e))?;
            }
            return Ok(info);
        }
        conn.execute_batch("BEGIN")
            .map_err(|e| self.classify(e, lock_timeout))?;
        // The first read below starts the read transaction that pins this instant.
        let step = Instant::now();
        let mut info = inspect_schema(&conn).map_err(|e| self.classify(e, lock_timeout))?;
        let mut counter = PageCounter::new(info.page_size as usize);
        start(&info);
        let mut stmt = conn
            .prepare("SELECT pgno, data FROM sqlite_dbpage('main') ORDER BY pgno")
            .map_err(|e| self.classify(e, lock_timeout))?;
        let mut rows = stmt.query([]).map_err(|e| self.classify(e, lock_timeout))?;
        let mut expected = 1i64;
        while let Some(row) = rows.next().map_err(|e| self.classify(e, lock_timeout))? {
            let pgno: i64 = row.get(0).map_err(|e| self.err(e))?;
            let data = row
                .get_ref(1)
                .and_then(|v| Ok(v.as_blob()?))
                .map_err(|e| self.err(e))?;
            if pgno != expected || data.len() as u64 != info.page_size {
                return Err(self.err(format!(
                    "sqlite_dbpage returned page {pgno} of {} bytes",
                    data.len()
                )));
            }
            counter.feed(data);
            page(data).map_err(|e| Error::io("stream image", e))?;
            expected += 1;
        }
        if (expected - 1) as u64 != info.page_count {
            return Err(self.err(format!(
                "read {} pages, expected {}",
                expected - 1,
                info.page_count
            )));
        }
        drop(rows);
        drop(stmt);
        // Row counts from the pages just read; SQLite counts any tree the walk cannot follow.
        for (table, root) in &info.roots {
            let n = match counter.rows(*root) {
                Some(n) => n,
                None => count_rows(&conn, table).map_err(|e| self.classify(e, lock_timeout))?,
            };
            info.tables.insert(table.clone(), n);
        }
        conn.execute_batch("COMMIT").map_err(|e| self.err(e))?;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "snapshot: image read"
        );
        Ok(info)
    }

    fn classify(&self, e: rusqlite::Error, lock_timeout: Duration) -> Error {
        if is_hot_journal(&e) {
            return self.err(format!(
                "has a hot journal ({}-journal): a process writing to it crashed in the middle of a transaction, and the journal must be rolled back before the database can be read; open it once read-write (for example `sqlite3 {} \"PRAGMA quick_check\"`, or start the application), then try again",
                self.path.display(),
                self.path.display()
            ));
        }
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
                self.err(format!(
                    "locked by another process for more than {}",
                    humantime::format_duration(lock_timeout)
                ))
            }
            Some(rusqlite::ErrorCode::NotADatabase) => self.err("not a SQLite database"),
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                self.err("database disk image is malformed")
            }
            _ => Error::sqlite(
                Kind::Database,
                format!("database {}", self.path.display()),
                e,
            ),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A read-only connection that finds a hot journal cannot roll it back: SQLITE_READONLY_ROLLBACK
/// ("attempt to write a readonly database", which says nothing useful).
pub fn is_hot_journal(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_READONLY_ROLLBACK)
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Quote an identifier for SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How thoroughly a restored image is checked before it replaces anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// `PRAGMA quick_check`: seconds on large databases.
    Quick,
    /// `PRAGMA integrity_check`: also checks indexes against tables; slow.
    Full,
}

impl std::fmt::Display for IntegrityCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IntegrityCheck::Quick => "quick_check",
            IntegrityCheck::Full => "integrity_check",
        })
    }
}

impl IntegrityCheck {
    /// Every level by name, with what it does, as `--integrity-check` offers them.
    pub const CHOICES: &'static [(&'static str, &'static str)] = &[
        ("quick", "`PRAGMA quick_check`: seconds on large databases"),
        (
            "full",
            "`PRAGMA integrity_check`: also checks indexes against tables; slow",
        ),
    ];
}

impl std::str::FromStr for IntegrityCheck {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            _ => Err(format!("unknown check {s:?} (quick or full)")),
        }
    }
}

/// Read page size, page count, per-table row counts (SQLite's `count(*)`) and the schema hash.
pub fn inspect(conn: &Connection) -> rusqlite::Result<ImageInfo> {
    let mut info = inspect_schema(conn)?;
    for t in info.roots.keys() {
        info.tables.insert(t.clone(), count_rows(conn, t)?);
    }
    Ok(info)
}

fn count_rows(conn: &Connection, table: &str) -> rusqlite::Result<u64> {
    let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
    Ok(conn.query_row(&sql, [], |r| r.get::<_, i64>(0))? as u64)
}

/// Everything [`inspect`] reads except the row counts: cheap, schema only.
pub fn inspect_schema(conn: &Connection) -> rusqlite::Result<ImageInfo> {
    let page_size = conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))? as u64;
    let page_count = conn.query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))? as u64;
    let sqlite_version: String = conn.query_row("SELECT sqlite_version()", [], |r| r.get(0))?;
    let mut hasher = Sha256::new();
    let mut roots = BTreeMap::new();
    let mut stmt = conn.prepare(
        "SELECT type, name, tbl_name, coalesce(sql, ''), rootpage FROM sqlite_schema ORDER BY type, name",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (ty, name, tbl, sql): (String, String, String, String) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        for part in [&ty, &name, &tbl, &sql] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        // Virtual tables keep their rows in shadow tables, which are counted themselves.
        let is_virtual = sql
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("CREATE VIRTUAL");
        if ty == "table" && !is_virtual {
            roots.insert(name, r.get::<_, Option<i64>>(4)?.unwrap_or(0) as u32);
        }
    }
    Ok(ImageInfo {
        sqlite_version,
        page_size,
        page_count,
        tables: BTreeMap::new(),
        schema_sha256: hex::encode(hasher.finalize()),
        roots,
    })
}

/// Open an image file of ours (never a user's database) for checks. Read-write without
/// create: an image of a WAL database keeps its WAL header, and SQLite needs to create the
/// -shm file to read it; nothing is written to the image itself.
pub fn open_image(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_missing_and_non_sqlite_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SqliteSource::new(dir.path().join("nope.db"));
        assert!(missing
            .check()
            .unwrap_err()
            .to_string()
            .contains("no such file"));
        let text = dir.path().join("t.db");
        std::fs::write(&text, "hello, this is not sqlite at all").unwrap();
        let e = SqliteSource::new(&text).check().unwrap_err();
        assert_eq!(e.kind, Kind::Database);
        assert!(e.to_string().contains("not a SQLite database"));
        let empty = dir.path().join("e.db");
        std::fs::write(&empty, "").unwrap();
        assert!(SqliteSource::new(&empty).check().is_err());
    }

    #[test]
    fn this_build_streams_pages_from_sqlite_dbpage() {
        // .cargo/config.toml compiles SQLite with SQLITE_ENABLE_DBPAGE_VTAB; without it backups
        // fall back to a temporary copy, which is correct but slower.
        let c = Connection::open_in_memory().unwrap();
        assert!(c.prepare("SELECT 1 FROM sqlite_dbpage WHERE 0").is_ok());
    }

    #[test]
    fn page_walk_counts_equal_sqlite_counts() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.db");
        let c = Connection::open(&src).unwrap();
        // Multi-level table and index trees, overflow pages, and free pages with stale cells.
        c.execute_batch(
            "CREATE TABLE r (id INTEGER PRIMARY KEY, v TEXT);
             CREATE TABLE nr (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
             CREATE TABLE plain (a, b);
             CREATE TABLE empty (x);
             CREATE INDEX r_v ON r(v);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 30000)
             INSERT INTO r SELECT i, printf('%08d-%s', i, hex(randomblob(20))) FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
             INSERT INTO nr SELECT printf('key-%06d-%s', i, hex(randomblob(8))), randomblob(i % 700) FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
             INSERT INTO plain SELECT i, randomblob(9000) FROM n;
             DELETE FROM r WHERE id % 3 = 0;
             DELETE FROM nr WHERE k LIKE 'key-01%';",
        )
        .unwrap();
        let want = inspect(&c).unwrap().tables;
        let source = SqliteSource::new(&src);
        let got = source
            .read_image(Duration::from_secs(1), dir.path(), &mut |_| {}, &mut |_| {
                Ok(())
            })
            .unwrap()
            .tables;
        assert_eq!(got, want);
        assert!(want["r"] == 20000 && want["plain"] == 300 && want["empty"] == 0);
        // The walk itself, with no fallback to SQLite, fed in uneven pieces.
        let info = inspect(&c).unwrap();
        let bytes = std::fs::read(&src).unwrap();
        let mut counter = PageCounter::new(info.page_size as usize);
        for piece in bytes.chunks(1000) {
            counter.feed(piece);
        }
        for (table, root) in &info.roots {
            assert_eq!(counter.rows(*root), Some(want[table]), "table {table}");
        }
    }

    #[test]
    fn snapshot_and_inspect() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("s.db");
        let c = Connection::open(&src).unwrap();
        c.execute_batch(
            "CREATE TABLE \"odd \"\"name\"(x); INSERT INTO \"odd \"\"name\" VALUES (1),(2);",
        )
        .unwrap();
        let img = dir.path().join("img.db");
        SqliteSource::new(&src)
            .snapshot_to(&img, Duration::from_secs(1))
            .unwrap();
        let info = inspect(&open_image(&img).unwrap()).unwrap();
        assert_eq!(info.tables["odd \"name"], 2);
        assert_eq!(info.schema_sha256.len(), 64);
    }
}
