//! SQL dumps in: builds a SQLite database from a `sqlite3 .dump`, a `wrangler d1 export` (both
//! INSERT forms) or a lifeboat dump, plain, `.sql.gz` or `.sql.zst`. INSERT values are parsed
//! and bound to cached prepared statements; everything else goes to SQLite as written. The load
//! runs in one transaction with journal and sync off; indexes, triggers and views are created
//! after the data (no trigger fires during the load); the result is checked and renamed into place.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection};

use crate::error::{Error, Kind, Result};
use crate::insert::{parse_insert, Value};
use crate::place::{place, prepare, TempGuard};
use crate::restore::IntegrityCheck;
use crate::sqltext::{Splitter, Statement, Trailer};

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub force: bool,
    pub integrity: IntegrityCheck,
    pub foreign_key_check: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImportStats {
    pub statements: u64,
    /// INSERT rows bound through cached prepared statements.
    pub rows_bound: u64,
    /// Statements handed to SQLite as text.
    pub executed: u64,
    pub duration_ms: u64,
    /// Where an existing target was moved, with `--force`.
    pub moved_aside: Option<PathBuf>,
}

/// Open a dump, decompressing `.gz` and `.zst` by extension.
pub fn open_dump(path: &Path) -> Result<Box<dyn BufRead + Send>> {
    let file = std::fs::File::open(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            Kind::Config
        } else {
            Kind::Internal
        };
        Error::new(kind, format!("import {}: {e}", path.display()))
    })?;
    let name = path.to_string_lossy().to_ascii_lowercase();
    let reader: Box<dyn Read + Send> = if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::new(file).map_err(|e| Error::io("import: zstd", e))?)
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1024 * 1024, reader)))
}

/// Import the dump at `input` into a new database at `target`.
pub fn import_file(input: &Path, target: &Path, opts: &ImportOptions) -> Result<ImportStats> {
    let started = Instant::now();
    let reader = open_dump(input)?;
    let tmp = prepare(target, opts.force)?;
    let mut guard = TempGuard::new(&tmp);
    let mut stats =
        load(reader, &tmp, opts).map_err(|e| e.context(format!("import {}", input.display())))?;
    stats.moved_aside = place(&tmp, target)?;
    guard.disarm();
    stats.duration_ms = started.elapsed().as_millis() as u64;
    Ok(stats)
}

fn line_err(line: u64, msg: impl std::fmt::Display) -> Error {
    Error::new(Kind::Corrupt, format!("line {line}: {msg}"))
}

/// Build a database at `path` (a new file) from a dump, and check it.
pub fn load(reader: impl BufRead + Send, path: &Path, opts: &ImportOptions) -> Result<ImportStats> {
    let conn = Connection::open(path)
        .map_err(|e| Error::sqlite(Kind::Internal, format!("create {}", path.display()), e))?;
    // The page cache barely matters here (measured: 16 MB and 64 MB load equally fast).
    conn.execute_batch("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-32768; PRAGMA threads=2;")
        .map_err(|e| Error::sqlite(Kind::Internal, "import: settings", e))?;
    conn.set_prepared_statement_cache_capacity(256);
    conn.execute_batch("BEGIN")
        .map_err(|e| Error::sqlite(Kind::Internal, "import: begin", e))?;
    let started = Instant::now();
    let mut stats = ImportStats::default();
    let mut later: Vec<Statement> = Vec::new();
    // Splitting and parsing run on a second thread; this one only feeds SQLite.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(16);
    let trailer = std::thread::scope(|scope| -> Result<Trailer> {
        scope.spawn(move || parse_all(reader, tx));
        for msg in rx {
            let batch = match msg {
                Msg::Batch(b) => b,
                Msg::Failed(e) => return Err(line_err(e.line, e.message)),
                Msg::Done(t) => return Ok(t),
            };
            for item in batch {
                stats.statements += 1;
                match item {
                    Item::Skip => {}
                    Item::Rollback(line) => {
                        return Err(line_err(
                            line,
                            "the dump rolls back (the database it came from had errors)",
                        ))
                    }
                    Item::Later(st) => later.push(st),
                    Item::Exec(st) => exec(&conn, &st, &mut stats)?,
                    Item::Insert { st, sql, rows } => {
                        let mut stmt = conn.prepare_cached(&sql).map_err(|e| sql_err(&st, e))?;
                        for row in &rows {
                            stmt.execute(params_from_iter(row.iter()))
                                .map_err(|e| sql_err(&st, e))?;
                            stats.rows_bound += 1;
                        }
                    }
                }
            }
        }
        Err(Error::new(
            Kind::Internal,
            "import: the parser stopped without a word",
        ))
    })?;
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "import: statements loaded"
    );
    if trailer.lifeboat_header {
        match trailer.complete {
            None => {
                return Err(Error::new(
                    Kind::Corrupt,
                    "the dump has no `-- lifeboat dump complete` line: it is truncated",
                ))
            }
            Some(n) if n != stats.statements => {
                return Err(Error::new(
                    Kind::Corrupt,
                    format!(
                        "the dump says it holds {n} statements but {} were read",
                        stats.statements
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    let step = Instant::now();
    // The index sorter sizes its memory from cache_size: shrink it before building indexes.
    conn.execute_batch("PRAGMA cache_size=-8192;")
        .map_err(|e| Error::sqlite(Kind::Internal, "import: settings", e))?;
    for st in &later {
        exec(&conn, st, &mut stats)?;
    }
    conn.execute_batch("COMMIT")
        .map_err(|e| Error::sqlite(Kind::Corrupt, "import: commit", e))?;
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "import: indexes, triggers, commit"
    );
    let step = Instant::now();
    check(&conn, path, opts)?;
    tracing::debug!(ms = step.elapsed().as_millis() as u64, "import: checks");
    drop(conn);
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
    Ok(stats)
}

/// SQLite's own check and the foreign-key check, side by side on two connections (the data is
/// committed and no longer changes).
fn check(conn: &Connection, path: &Path, opts: &ImportOptions) -> Result<()> {
    let pragma = match opts.integrity {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    let (integrity, foreign) = std::thread::scope(|s| {
        let fk = s.spawn(|| -> Result<()> {
            if !opts.foreign_key_check {
                return Ok(());
            }
            let fk_err = |e| Error::sqlite(Kind::Internal, "foreign_key_check", e);
            let other = crate::source::open_image(path).map_err(fk_err)?;
            let mut stmt = other.prepare("PRAGMA foreign_key_check").map_err(fk_err)?;
            let mut rows = stmt.query([]).map_err(fk_err)?;
            if let Some(r) = rows.next().map_err(fk_err)? {
                let table: String = r.get(0).unwrap_or_default();
                let rowid: Option<i64> = r.get(1).unwrap_or_default();
                let parent: String = r.get(2).unwrap_or_default();
                return Err(Error::new(
                    Kind::Corrupt,
                    format!("foreign_key_check: a row of {table} (rowid {rowid:?}) points at a missing row of {parent} (pass --no-fk-check to load anyway)"),
                ));
            }
            Ok(())
        });
        let integrity = conn
            .query_row(pragma, [], |r| r.get::<_, String>(0))
            .map_err(|e| Error::sqlite(Kind::Corrupt, pragma, e))
            .and_then(|first| match first.as_str() {
                "ok" => Ok(()),
                _ => Err(Error::new(Kind::Corrupt, format!("{pragma}: {first}"))),
            });
        let foreign = fk
            .join()
            .unwrap_or_else(|_| Err(Error::new(Kind::Internal, "foreign key check panicked")));
        (integrity, foreign)
    });
    integrity?;
    foreign
}

/// A statement, parsed and classified by the parser thread.
enum Item {
    Skip,
    Rollback(u64),
    /// Indexes, triggers and views: created after the data.
    Later(Statement),
    Exec(Statement),
    /// An INSERT whose values were parsed: bound to `sql` (a cached prepared statement).
    Insert {
        st: Statement,
        sql: String,
        rows: Vec<Vec<Value>>,
    },
}

enum Msg {
    Batch(Vec<Item>),
    Failed(crate::sqltext::SplitError),
    Done(Trailer),
}

/// The parser thread: split, classify and parse, in batches. Stops when the loader hangs up.
fn parse_all(reader: impl BufRead, tx: std::sync::mpsc::SyncSender<Msg>) {
    let mut splitter = Splitter::new(reader);
    let mut batch = Vec::with_capacity(256);
    loop {
        let st = match splitter.next_statement() {
            Ok(Some(st)) => st,
            Ok(None) => break,
            Err(e) => {
                let _ = tx.send(Msg::Batch(std::mem::take(&mut batch)));
                let _ = tx.send(Msg::Failed(e));
                return;
            }
        };
        let head = String::from_utf8_lossy(&st.sql[..st.sql.len().min(64)]).into_owned();
        batch.push(match classify(&head) {
            Action::Skip => Item::Skip,
            Action::Rollback => Item::Rollback(st.line),
            Action::Later => Item::Later(st),
            Action::Execute => Item::Exec(st),
            Action::Insert => match parse_insert(&st.sql) {
                Some(ins) => Item::Insert {
                    sql: format!(
                        "{} VALUES ({})",
                        ins.prefix,
                        placeholders(ins.rows[0].len())
                    ),
                    rows: ins.rows,
                    st: Statement {
                        line: st.line,
                        sql: st.sql[..st.sql.len().min(120)].to_vec(),
                    },
                },
                None => Item::Exec(st),
            },
        });
        if batch.len() >= 256
            && tx
                .send(Msg::Batch(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(256),
                )))
                .is_err()
        {
            return;
        }
    }
    let _ = tx.send(Msg::Batch(batch));
    let _ = tx.send(Msg::Done(splitter.trailer.clone()));
}

enum Action {
    Skip,
    Rollback,
    Later,
    Insert,
    Execute,
}

fn classify(sql: &str) -> Action {
    let mut words = sql
        .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or("").to_ascii_uppercase();
    let second = words.next().unwrap_or("").to_ascii_uppercase();
    let third = words.next().unwrap_or("").to_ascii_uppercase();
    match first.as_str() {
        // The load runs in a transaction of its own.
        "BEGIN" | "COMMIT" | "END" | "SAVEPOINT" | "RELEASE" => Action::Skip,
        "ROLLBACK" => Action::Rollback,
        "PRAGMA" => {
            let p = second.to_ascii_lowercase();
            let skip = [
                "foreign_keys",
                "defer_foreign_keys",
                "journal_mode",
                "synchronous",
            ];
            if skip.iter().any(|s| p.starts_with(s)) {
                Action::Skip
            } else {
                Action::Execute
            }
        }
        "INSERT" | "REPLACE" => Action::Insert,
        "CREATE" => {
            let kind = if second == "UNIQUE" || second == "TEMP" || second == "TEMPORARY" {
                third
            } else {
                second
            };
            match kind.as_str() {
                "INDEX" | "TRIGGER" | "VIEW" => Action::Later,
                _ => Action::Execute,
            }
        }
        _ => Action::Execute,
    }
}

fn exec(conn: &Connection, st: &Statement, stats: &mut ImportStats) -> Result<()> {
    stats.executed += 1;
    let sql = std::str::from_utf8(&st.sql).map_err(|_| {
        line_err(
            st.line,
            "statement is not valid UTF-8 outside its values; lifeboat cannot run it",
        )
    })?;
    conn.execute_batch(sql).map_err(|e| sql_err(st, e))
}

fn sql_err(st: &Statement, e: rusqlite::Error) -> Error {
    let text: String = st.text().chars().take(80).collect();
    Error::sqlite(Kind::Corrupt, format!("line {}: {text}", st.line), e)
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Real(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s),
            Value::Blob(b) => ValueRef::Blob(b),
        }))
    }
}
