//! A SQL dump as a source: a `sqlite3 .dump`, a `wrangler d1 export` or a lifeboat dump, plain,
//! `.sql.gz` or `.sql.zst`, made into a SQLite database that is checked (`quick_check` or
//! `integrity_check`, and `foreign_key_check`) and fsynced before anyone uses it. `lifeboat
//! import` puts it in place; a D1 backup loads its export this way. The statements themselves are
//! loaded by `lifeboat_sql::load`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::Connection;

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{FileId, Placement};
use crate::source::sqlite::IntegrityCheck;

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
    let placement = Placement::prepare(target, opts.force, "import")?;
    let tmp = placement.tmp().to_path_buf();
    let mut stats =
        load(reader, &tmp, opts).map_err(|e| e.context(format!("import {}", input.display())))?;
    stats.moved_aside = placement.commit(FileId::of(&tmp))?;
    stats.duration_ms = started.elapsed().as_millis() as u64;
    Ok(stats)
}

/// Build a database at `path` (a new file) from a dump, check it and fsync it.
pub fn load(reader: impl BufRead + Send, path: &Path, opts: &ImportOptions) -> Result<ImportStats> {
    let loaded = lifeboat_sql::load::load(reader, path)?;
    let step = Instant::now();
    check(path, opts)?;
    tracing::debug!(ms = step.elapsed().as_millis() as u64, "import: checks");
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
    Ok(ImportStats {
        statements: loaded.statements,
        rows_bound: loaded.rows_bound,
        executed: loaded.executed,
        ..ImportStats::default()
    })
}

/// SQLite's own check and the foreign-key check, side by side on two connections (the data is
/// committed and no longer changes).
fn check(path: &Path, opts: &ImportOptions) -> Result<()> {
    let open = || {
        crate::source::sqlite::open_image(path)
            .and_then(|c| c.execute_batch("PRAGMA cache_size=-16384").map(|_| c))
            .map_err(|e| Error::sqlite(Kind::Internal, "open for checks", e))
    };
    let conn = open()?;
    let pragma = match opts.integrity {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        IntegrityCheck::Full => "PRAGMA integrity_check",
    };
    // The jobs: SQLite's check, then the foreign-key check of each table that has foreign
    // keys, largest first, so two threads finish close together.
    let mut jobs: Vec<Option<String>> = vec![None];
    if opts.foreign_key_check {
        let fk_err = |e| Error::sqlite(Kind::Internal, "foreign_key_check", e);
        let mut tables: Vec<(i64, String)> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'
                 AND EXISTS (SELECT 1 FROM pragma_foreign_key_list(name))",
            )
            .and_then(|mut st| {
                st.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(fk_err)?
            .into_iter()
            .map(|t| {
                // max(rowid) is a cheap size estimate (WITHOUT ROWID tables count as small).
                let sql = format!("SELECT max(rowid) FROM {}", lifeboat_sql::quote_ident(&t));
                let n = conn.query_row(&sql, [], |r| r.get::<_, Option<i64>>(0));
                (n.ok().flatten().unwrap_or(0), t)
            })
            .collect();
        tables.sort_by(|a, b| b.cmp(a));
        jobs.extend(tables.into_iter().map(|(_, t)| Some(t)));
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = |c: Connection| -> Result<()> {
        while let Some(job) = jobs.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
            match job {
                None => {
                    let first: String = c
                        .query_row(pragma, [], |r| r.get(0))
                        .map_err(|e| Error::sqlite(Kind::Corrupt, pragma, e))?;
                    if first != "ok" {
                        return Err(Error::new(Kind::Corrupt, format!("{pragma}: {first}")));
                    }
                }
                Some(table) => foreign_key_check(&c, table)?,
            }
        }
        Ok(())
    };
    let results = std::thread::scope(|s| {
        let other = s.spawn(|| worker(open()?));
        let here = worker(conn);
        let there = other
            .join()
            .unwrap_or_else(|_| Err(Error::new(Kind::Internal, "check thread panicked")));
        [here, there]
    });
    results.into_iter().collect()
}

/// `PRAGMA foreign_key_check` of one table: its first violation as an error.
fn foreign_key_check(c: &Connection, table: &str) -> Result<()> {
    let fk_err = |e| Error::sqlite(Kind::Internal, "foreign_key_check", e);
    let mut stmt = c
        .prepare("SELECT * FROM pragma_foreign_key_check(?1)")
        .map_err(fk_err)?;
    let mut rows = stmt.query([table]).map_err(fk_err)?;
    if let Some(r) = rows.next().map_err(fk_err)? {
        let rowid: Option<i64> = r.get(1).unwrap_or_default();
        let parent: String = r.get(2).unwrap_or_default();
        let which = rowid.map_or("a row".to_string(), |r| format!("the row with rowid {r}"));
        return Err(Error::new(
            Kind::Corrupt,
            format!("foreign_key_check: {which} of {table} points at a missing row of {parent} (`lifeboat import --no-fk-check` loads it anyway)"),
        ));
    }
    Ok(())
}
