//! SQL dumps in: builds a SQLite database from the statements of a `sqlite3 .dump`, a
//! `wrangler d1 export` (both INSERT forms) or a lifeboat dump. INSERT values are parsed and bound
//! to cached prepared statements; everything else goes to SQLite as written. The load runs in one
//! transaction with journal and sync off; indexes, triggers and views are created after the data
//! (no trigger fires during the load). Checking the result and putting it in place is the
//! engine's part (`lifeboat::source::sql_dump`).

use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::error::{Error, Kind, Result};
use crate::insert_parser::{parse_insert_into, Cell, Rows};
use crate::statement_reader::{Statement, StatementReader, Trailer};

/// What a load did.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    pub statements: u64,
    /// INSERT rows bound through cached prepared statements.
    pub rows_bound: u64,
    /// Statements handed to SQLite as text.
    pub executed: u64,
}

fn line_err(line: u64, msg: impl std::fmt::Display) -> Error {
    Error::new(Kind::Input, format!("line {line}: {msg}"))
}

/// Build a database at `path` (a new file) from a dump's statements. The caller checks it.
pub fn load(reader: impl BufRead + Send, path: &Path) -> Result<LoadStats> {
    // Random primary keys (UUIDs) make each row an insert at a random place of the key's
    // index: the larger the cache, the fewer pages go back and forth to the file.
    let conn = open_for_load(path, LOAD_CACHE_KIB)?;
    let started = Instant::now();
    let mut stats = LoadStats::default();
    let mut later: Vec<Statement> = Vec::new();
    // The INSERT statements, prepared once each; the parser refers to them by position.
    let mut prepared: Vec<rusqlite::Statement<'_>> = Vec::new();
    // Splitting and parsing run on a second thread; this one only feeds SQLite.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Msg>(4);
    let trailer = std::thread::scope(|scope| -> Result<Trailer> {
        scope.spawn(move || parse_all(reader, tx));
        for msg in rx {
            let batch = match msg {
                Msg::Batch(b) => b,
                Msg::Failed(e) => return Err(line_err(e.line, e.message)),
                Msg::Done(t) => return Ok(t),
            };
            for item in batch {
                // Every statement of the dump counts once (a run holds several).
                stats.statements += match &item {
                    Item::Prepare { .. } => 0,
                    Item::Insert(run) => run.starts.len() as u64,
                    _ => 1,
                };
                match item {
                    Item::Skip => {}
                    Item::Prepare { line, sql } => {
                        let stmt = conn.prepare(&sql).map_err(|e| {
                            Error::sqlite(Kind::Input, format!("line {line}: {sql}"), e)
                        })?;
                        prepared.push(stmt);
                    }
                    Item::Insert(run) => {
                        stats.rows_bound += insert_run(&mut prepared[run.sql], &run)?;
                    }
                    Item::Refused(line) => {
                        return Err(line_err(
                            line,
                            "the dump reaches for another database file (ATTACH, DETACH or VACUUM INTO); a dump may only build its own database, so it is refused",
                        ))
                    }
                    Item::Rollback(line) => {
                        return Err(line_err(
                            line,
                            "the dump rolls back (the database it came from had errors)",
                        ))
                    }
                    Item::Later(st) => later.push(st),
                    Item::Exec(st) => exec(&conn, &st, &mut stats)?,
                }
            }
        }
        Err(Error::new(
            Kind::Internal,
            "import: the parser stopped without a word",
        ))
    })?;
    drop(prepared);
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "import: statements loaded"
    );
    if trailer.lifeboat_header {
        match trailer.complete {
            None => {
                return Err(Error::new(
                    Kind::Input,
                    "the dump has no `-- lifeboat dump complete` line: it is truncated",
                ))
            }
            Some(n) if n != stats.statements => {
                return Err(Error::new(
                    Kind::Input,
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
    // A new connection for the indexes: closing the loader's frees its large cache (shrinking
    // it would leave the memory with the allocator), and the index sorter sizes its memory from
    // cache_size. The file is a temp file until the rename, so two transactions are fine.
    conn.execute_batch("COMMIT")
        .map_err(|e| Error::sqlite(Kind::Input, "import: commit", e))?;
    drop(conn);
    release_freed_memory();
    let conn = open_for_load(path, 8 * 1024)?;
    for st in &later {
        exec(&conn, st, &mut stats)?;
    }
    conn.execute_batch("COMMIT")
        .map_err(|e| Error::sqlite(Kind::Input, "import: commit", e))?;
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "import: indexes, triggers, commit"
    );
    drop(conn);
    release_freed_memory();
    Ok(stats)
}

/// Hand memory that SQLite's closed caches and sorters gave back to the allocator on to the
/// system, so the next phase does not stack on top of it (glibc keeps freed heap otherwise).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The page cache of the load, in KiB (the largest part of the import's memory).
const LOAD_CACHE_KIB: u32 = 48 * 1024;

/// A connection for loading: no journal, no sync (a failed load leaves only a temp file to
/// delete), foreign keys checked afterwards, two sorter threads for index builds; in a transaction.
fn open_for_load(path: &Path, cache_kib: u32) -> Result<Connection> {
    let settings = format!("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-{cache_kib}; PRAGMA threads=2; BEGIN;");
    Connection::open(path)
        .and_then(|c| {
            // However a statement is written, it cannot reach another file.
            c.set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_ATTACHED, 0)?;
            c.execute_batch(&settings).map(|_| c)
        })
        .map_err(|e| Error::sqlite(Kind::Internal, format!("import into {}", path.display()), e))
}

/// A statement, parsed and classified by the parser thread.
enum Item {
    Skip,
    Rollback(u64),
    Refused(u64),
    /// Indexes, triggers and views: created after the data.
    Later(Statement),
    Exec(Statement),
    /// Prepare the next INSERT statement (the runs below refer to it by position).
    Prepare {
        line: u64,
        sql: String,
    },
    Insert(Run),
}

/// The rows of consecutive INSERT statements that share one prepared statement.
#[derive(Default)]
struct Run {
    /// Position of the prepared statement.
    sql: usize,
    width: usize,
    rows: Rows,
    /// Per statement: its line and the index of its first cell in `rows`.
    starts: Vec<(u64, usize)>,
    /// The statements' text up to the column list, for messages.
    prefix: String,
}

/// A run is sent once it holds this many bytes, which bounds the memory in flight.
const RUN_BYTES: usize = 256 << 10;

/// Bind and insert every row of `run`; the number of rows.
fn insert_run(stmt: &mut rusqlite::Statement<'_>, run: &Run) -> Result<u64> {
    let mut n = 0;
    for (r, row) in run.rows.cells().chunks(run.width).enumerate() {
        let bound = row.iter().enumerate().try_for_each(|(i, c)| {
            let v = match *c {
                Cell::Null => ValueRef::Null,
                Cell::Integer(i) => ValueRef::Integer(i),
                Cell::Real(f) => ValueRef::Real(f),
                Cell::Text(a, b) => ValueRef::Text(run.rows.bytes(a, b)),
                Cell::Blob(a, b) => ValueRef::Blob(run.rows.bytes(a, b)),
            };
            stmt.raw_bind_parameter(i + 1, ToSqlOutput::Borrowed(v))
        });
        bound.and_then(|_| stmt.raw_execute()).map_err(|e| {
            let cell = r * run.width;
            let i = run.starts.partition_point(|&(_, first)| first <= cell) - 1;
            Error::sqlite(
                Kind::Input,
                format!("line {}: {} VALUES (…)", run.starts[i].0, run.prefix),
                e,
            )
        })?;
        n += 1;
    }
    Ok(n)
}

enum Msg {
    Batch(Vec<Item>),
    Failed(crate::statement_reader::ReadError),
    Done(Trailer),
}

/// The parser thread's output: items in dump order, in batches; false once the loader hung up.
struct Out {
    tx: std::sync::mpsc::SyncSender<Msg>,
    batch: Vec<Item>,
}

impl Out {
    fn push(&mut self, item: Item) -> bool {
        // Runs are large: send them at once, so little waits here.
        let send_now = matches!(item, Item::Insert(_));
        self.batch.push(item);
        !(send_now || self.batch.len() >= 256) || self.send()
    }

    fn send(&mut self) -> bool {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(256));
        self.tx.send(Msg::Batch(batch)).is_ok()
    }

    /// Send the current run, if it holds any rows.
    fn flush(&mut self, run: &mut Run) -> bool {
        run.starts.is_empty() || self.push(Item::Insert(std::mem::take(run)))
    }
}

/// The parser thread: split, classify and parse. INSERTs into the same table with the same
/// columns are gathered into runs bound to one prepared statement. Stops when the loader hangs up.
fn parse_all(reader: impl BufRead, tx: std::sync::mpsc::SyncSender<Msg>) {
    let mut statements = StatementReader::new(reader);
    let mut out = Out {
        tx,
        batch: Vec::with_capacity(256),
    };
    let mut ids: std::collections::HashMap<(String, usize), usize> = Default::default();
    let mut run = Run::default();
    loop {
        let st = match statements.next_statement() {
            Ok(Some(st)) => st,
            Ok(None) => break,
            Err(e) => {
                out.flush(&mut run);
                out.send();
                let _ = out.tx.send(Msg::Failed(e));
                return;
            }
        };
        let item = match classify(&st.sql[..st.sql.len().min(64)]) {
            Action::Skip => Item::Skip,
            Action::Rollback => Item::Rollback(st.line),
            Action::Refuse => Item::Refused(st.line),
            Action::Later => Item::Later(st),
            Action::Execute => Item::Exec(st),
            Action::Insert => {
                let mark = run.rows.mark();
                let Some(p) = parse_insert_into(&st.sql, &mut run.rows) else {
                    if !out.flush(&mut run) || !out.push(Item::Exec(st)) {
                        return;
                    }
                    continue;
                };
                let mut first = mark.cells();
                if run.starts.is_empty() || run.width != p.width || run.prefix != p.prefix {
                    let rows = run.rows.split_off(mark);
                    if !out.flush(&mut run) {
                        return;
                    }
                    let key = (p.prefix.to_string(), p.width);
                    let next = ids.len();
                    let sql = *ids.entry(key).or_insert(next);
                    if sql == next {
                        let prepare = Item::Prepare {
                            line: st.line,
                            sql: format!("{} VALUES ({})", p.prefix, placeholders(p.width)),
                        };
                        if !out.push(prepare) {
                            return;
                        }
                    }
                    run = Run {
                        sql,
                        width: p.width,
                        rows,
                        starts: Vec::new(),
                        prefix: p.prefix.to_string(),
                    };
                    first = 0;
                }
                run.starts.push((st.line, first));
                if run.rows.size() >= RUN_BYTES && !out.flush(&mut run) {
                    return;
                }
                continue;
            }
        };
        if !out.flush(&mut run) || !out.push(item) {
            return;
        }
    }
    if out.flush(&mut run) && out.send() {
        let _ = out.tx.send(Msg::Done(statements.trailer.clone()));
    }
}

enum Action {
    Skip,
    Rollback,
    /// A statement that would reach beyond the database being built (another file).
    Refuse,
    Later,
    Insert,
    Execute,
}

fn classify(head: &[u8]) -> Action {
    let mut words = head
        .split(|c| c.is_ascii_whitespace() || *c == b';' || *c == b'(')
        .filter(|w| !w.is_empty());
    // INSERT is nearly every statement: no allocation for it.
    let first = words.next().unwrap_or_default();
    if first.eq_ignore_ascii_case(b"INSERT") || first.eq_ignore_ascii_case(b"REPLACE") {
        return Action::Insert;
    }
    let upper =
        |w: Option<&[u8]>| String::from_utf8_lossy(w.unwrap_or_default()).to_ascii_uppercase();
    let first = upper(Some(first));
    let second = upper(words.next());
    let third = upper(words.next());
    match first.as_str() {
        // The load runs in a transaction of its own.
        "BEGIN" | "COMMIT" | "END" | "SAVEPOINT" | "RELEASE" => Action::Skip,
        "ROLLBACK" => Action::Rollback,
        // No dump tool writes these; they would read or write files beyond the new database.
        "ATTACH" | "DETACH" | "VACUUM" => Action::Refuse,
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

fn exec(conn: &Connection, st: &Statement, stats: &mut LoadStats) -> Result<()> {
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
    Error::sqlite(Kind::Input, format!("line {}: {text}", st.line), e)
}

fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(",")
}
