//! SQL dumps out: streams a database as SQL text that loads back into an equal database, in two
//! dialects. `sqlite` loads with `sqlite3 new.db < file`; `d1` is accepted by
//! `wrangler d1 execute --file` (no BEGIN/COMMIT, `PRAGMA defer_foreign_keys`, tables ordered
//! so foreign keys resolve, every statement at most 100,000 bytes).
//!
//! Values are written exactly: REALs as the shortest text that reads back to the same bits,
//! text that is not plain UTF-8 (or holds NUL) as `CAST(X'…' AS TEXT)`, blobs as `X'…'`.
//! Rowids of tables without an INTEGER PRIMARY KEY are kept, so `sqldiff` sees equal tables.
//! Both dialects end with `-- lifeboat dump complete: N statements`: a dump without that last
//! line is truncated.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Kind, Result};
use crate::ident::quote_ident;
use crate::value_literal::push_value;

mod d1_rows;
use d1_rows::row_statements;

/// Which SQL the dump is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Sqlite,
    D1,
}

impl Dialect {
    /// Every dialect by name (and what it means, where that is not plain), as `--dialect`
    /// accepts them.
    pub const CHOICES: &'static [(&'static str, &'static str)] = &[("sqlite", ""), ("d1", "")];
}

impl std::str::FromStr for Dialect {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sqlite" => Ok(Dialect::Sqlite),
            "d1" => Ok(Dialect::D1),
            _ => Err(format!("unknown dialect {s:?} (sqlite or d1)")),
        }
    }
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(dialect_name(*self))
    }
}

/// D1 rejects statements longer than this (SQLITE_TOOBIG).
pub const D1_MAX_STATEMENT: usize = 100_000;
/// D1's limit on one string, blob or row.
pub const D1_MAX_VALUE: usize = 2_000_000;
/// The first line of every dump, and the start of the last.
pub const HEADER: &str = "-- lifeboat dump";
pub const FOOTER: &str = "-- lifeboat dump complete: ";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DumpStats {
    pub statements: u64,
    pub tables: usize,
    pub rows: u64,
    pub bytes: u64,
}

/// One table to dump.
struct Table {
    name: String,
    sql: String,
    /// Columns written in INSERTs (generated columns are left out).
    columns: Vec<String>,
    /// Whether every column is written, so `INSERT INTO t VALUES(...)` needs no column list.
    all_columns: bool,
    /// How to name the rowid when it is not aliased by an INTEGER PRIMARY KEY (None: WITHOUT
    /// ROWID, aliased, or every name for it is taken by a column).
    rowid: Option<&'static str>,
    /// For WITHOUT ROWID tables: primary key columns (to address a row in UPDATEs).
    pk: Vec<String>,
    /// Name of the INTEGER PRIMARY KEY column, if the table has one.
    ipk: Option<String>,
    /// Declared primary key columns (to name a row in messages).
    key: Vec<String>,
}

fn schema_err(e: rusqlite::Error) -> Error {
    Error::sqlite(Kind::Source, "dump: read schema", e)
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("dump: write", e)
}

/// Write a dump of `conn` to `out`. `origin` goes into the header line (e.g. the backup id).
pub fn dump(
    conn: &Connection,
    dialect: Dialect,
    origin: &str,
    out: &mut dyn Write,
) -> Result<DumpStats> {
    dump_filtered(conn, dialect, origin, out, None)
}

/// Which rows a partial dump keeps: per table a condition on alias `t0` with `?1` bound to
/// `param`. Tables without a condition are dumped as schema only.
pub struct RowFilter {
    pub conditions: BTreeMap<String, String>,
    pub param: rusqlite::types::Value,
    /// Rows only: no schema, no AUTOINCREMENT counters, and no rowids that are not columns
    /// (for adding rows to a live database, where those rowids may be taken).
    pub data_only: bool,
    /// Tables whose rows are written as `INSERT OR IGNORE` (rows that may already exist).
    pub insert_or_ignore: BTreeSet<String>,
}

/// [`dump`], keeping only the rows `filter` selects (the schema is always whole).
pub fn dump_filtered(
    conn: &Connection,
    dialect: Dialect,
    origin: &str,
    out: &mut dyn Write,
    filter: Option<&RowFilter>,
) -> Result<DumpStats> {
    let mut w = Writer {
        out,
        stats: DumpStats::default(),
        dialect,
        filter,
    };
    let schema = read_schema(conn, dialect)?;
    w.line(&format!(
        "{HEADER} v1 dialect={} from {}",
        dialect_name(dialect),
        origin.replace('\n', " ")
    ))?;
    match dialect {
        Dialect::Sqlite => {
            w.statement(b"PRAGMA foreign_keys=OFF;")?;
            w.statement(b"BEGIN TRANSACTION;")?;
        }
        Dialect::D1 => w.statement(b"PRAGMA defer_foreign_keys=TRUE;")?,
    }
    let data_only = filter.is_some_and(|f| f.data_only);
    for t in &schema.tables {
        if !data_only {
            w.statement(format!("{};", t.sql).as_bytes())?;
        }
        dump_rows(conn, t, &mut w)?;
        w.stats.tables += 1;
    }
    if schema.has_sequence && !data_only {
        w.statement(b"DELETE FROM sqlite_sequence;")?;
        let seq = Table {
            name: "sqlite_sequence".into(),
            sql: String::new(),
            columns: vec!["name".into(), "seq".into()],
            all_columns: true,
            rowid: None,
            pk: vec![],
            ipk: None,
            key: vec![],
        };
        dump_rows(conn, &seq, &mut w)?;
    }
    if schema.has_stat1 && dialect == Dialect::Sqlite && w.filter.is_none() {
        // As sqlite3's .dump does: create the table, then restore the planner's statistics.
        w.statement(b"ANALYZE sqlite_schema;")?;
        w.statement(b"DELETE FROM sqlite_stat1;")?;
        let stat = Table {
            name: "sqlite_stat1".into(),
            sql: String::new(),
            columns: vec!["tbl".into(), "idx".into(), "stat".into()],
            all_columns: true,
            rowid: None,
            pk: vec![],
            ipk: None,
            key: vec![],
        };
        dump_rows(conn, &stat, &mut w)?;
    }
    // Indexes, triggers and views after the data: no trigger fires during a load.
    for sql in schema.after.iter().filter(|_| !data_only) {
        w.statement(format!("{sql};").as_bytes())?;
    }
    if dialect == Dialect::Sqlite {
        w.statement(b"COMMIT;")?;
    }
    let n = w.stats.statements;
    w.line(&format!("{FOOTER}{n} statements"))?;
    w.out.flush().map_err(io_err)?;
    Ok(w.stats)
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "sqlite",
        Dialect::D1 => "d1",
    }
}

struct Writer<'a> {
    out: &'a mut dyn Write,
    stats: DumpStats,
    dialect: Dialect,
    filter: Option<&'a RowFilter>,
}

impl Writer<'_> {
    fn line(&mut self, s: &str) -> Result<()> {
        self.out.write_all(s.as_bytes()).map_err(io_err)?;
        self.out.write_all(b"\n").map_err(io_err)?;
        self.stats.bytes += s.len() as u64 + 1;
        Ok(())
    }

    fn statement(&mut self, sql: &[u8]) -> Result<()> {
        if self.dialect == Dialect::D1 && sql.len() > D1_MAX_STATEMENT {
            return Err(Error::new(
                Kind::Source,
                format!(
                    "dump: a statement of {} bytes exceeds D1's {D1_MAX_STATEMENT}-byte limit: {}",
                    sql.len(),
                    String::from_utf8_lossy(&sql[..sql.len().min(80)])
                ),
            ));
        }
        self.out.write_all(sql).map_err(io_err)?;
        self.out.write_all(b"\n").map_err(io_err)?;
        self.stats.statements += 1;
        self.stats.bytes += sql.len() as u64 + 1;
        Ok(())
    }
}

struct Schema {
    tables: Vec<Table>,
    after: Vec<String>,
    has_sequence: bool,
    has_stat1: bool,
}

fn read_schema(conn: &Connection, dialect: Dialect) -> Result<Schema> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid")
        .map_err(schema_err)?;
    let rows: Vec<(String, String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(schema_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(schema_err)?;
    let mut schema = Schema {
        tables: Vec::new(),
        after: Vec::new(),
        has_sequence: false,
        has_stat1: false,
    };
    for (ty, name, sql) in rows {
        if ty != "table" {
            schema.after.push(sql);
            continue;
        }
        match name.as_str() {
            "sqlite_sequence" => schema.has_sequence = true,
            "sqlite_stat1" => schema.has_stat1 = true,
            n if n.starts_with("sqlite_") => {}
            n if dialect == Dialect::D1 && n.starts_with("_cf_") => {}
            _ => {
                if sql
                    .trim_start()
                    .to_ascii_uppercase()
                    .starts_with("CREATE VIRTUAL")
                {
                    return Err(Error::new(
                        Kind::Source,
                        format!("dump: table {name} is a virtual table; lifeboat dumps cannot carry virtual tables (D1 refuses them too): restore the image instead"),
                    ));
                }
                schema.tables.push(table_info(conn, name, sql)?);
            }
        }
    }
    if dialect == Dialect::D1 {
        schema.tables = order_by_foreign_keys(conn, schema.tables)?;
        // Shadow tables of virtual tables are already refused above; D1 skips sqlite_stat*.
    }
    Ok(schema)
}

fn table_info(conn: &Connection, name: String, sql: String) -> Result<Table> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_xinfo({})", quote_ident(&name)))
        .map_err(schema_err)?;
    // (name, declared type, pk position, hidden)
    let cols: Vec<(String, String, i64, i64)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                r.get(5)?,
                r.get(6)?,
            ))
        })
        .map_err(schema_err)?
        .collect::<rusqlite::Result<_>>()
        .map_err(schema_err)?;
    let without_rowid = conn
        .query_row(
            "SELECT count(*) FROM pragma_index_list(?1) WHERE origin = 'pk'",
            [&name],
            |r| r.get::<_, i64>(0),
        )
        .map_err(schema_err)?
        > 0
        && is_without_rowid(&sql);
    let pk: Vec<(i64, String)> = {
        let mut v: Vec<(i64, String)> = cols
            .iter()
            .filter(|c| c.2 > 0)
            .map(|c| (c.2, c.0.clone()))
            .collect();
        v.sort();
        v
    };
    let ipk = match pk.as_slice() {
        [(_, col)] if !without_rowid => cols
            .iter()
            .find(|c| &c.0 == col && c.1.eq_ignore_ascii_case("INTEGER"))
            .map(|c| c.0.clone()),
        _ => None,
    };
    let columns: Vec<String> = cols
        .iter()
        .filter(|c| c.3 == 0)
        .map(|c| c.0.clone())
        .collect();
    let all_columns = columns.len() == cols.len();
    let rowid = if without_rowid || ipk.is_some() {
        None
    } else {
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|alias| !cols.iter().any(|c| c.0.eq_ignore_ascii_case(alias)))
    };
    let key: Vec<String> = pk.iter().map(|(_, c)| c.clone()).collect();
    Ok(Table {
        key,
        name,
        sql,
        columns,
        all_columns,
        rowid,
        pk: if without_rowid {
            pk.into_iter().map(|(_, c)| c).collect()
        } else {
            vec![]
        },
        ipk,
    })
}

/// `WITHOUT ROWID` after the closing parenthesis of the column list.
fn is_without_rowid(sql: &str) -> bool {
    let tail = sql.rsplit(')').next().unwrap_or("");
    let words: Vec<String> = tail
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_uppercase())
        .collect();
    words
        .windows(2)
        .any(|w| w[0] == "WITHOUT" && w[1] == "ROWID")
}

/// Parents before children, keeping the original order among independent tables. Cycles
/// (and self-references) are left in original order: `defer_foreign_keys` covers them.
fn order_by_foreign_keys(conn: &Connection, tables: Vec<Table>) -> Result<Vec<Table>> {
    let names: BTreeSet<String> = tables.iter().map(|t| t.name.to_ascii_lowercase()).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in &tables {
        let mut stmt = conn
            .prepare("SELECT \"table\" FROM pragma_foreign_key_list(?1)")
            .map_err(schema_err)?;
        let parents: BTreeSet<String> = stmt
            .query_map([&t.name], |r| r.get::<_, String>(0))
            .map_err(schema_err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(schema_err)?
            .into_iter()
            .map(|p| p.to_ascii_lowercase())
            .filter(|p| names.contains(p) && *p != t.name.to_ascii_lowercase())
            .collect();
        deps.insert(t.name.to_ascii_lowercase(), parents);
    }
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<Table> = tables;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let ready = pending
            .iter()
            .position(|t| {
                deps[&t.name.to_ascii_lowercase()]
                    .iter()
                    .all(|p| placed.contains(p))
            })
            .unwrap_or(0); // a cycle: take the first remaining
        let t = pending.remove(ready);
        placed.insert(t.name.to_ascii_lowercase());
        ordered.push(t);
    }
    Ok(ordered)
}

fn dump_rows(conn: &Connection, t: &Table, w: &mut Writer) -> Result<()> {
    let mut select = String::from("SELECT ");
    let mut cols: Vec<String> = Vec::new();
    if let Some(alias) = t.rowid {
        cols.push(alias.to_string());
    }
    cols.extend(t.columns.iter().map(|c| quote_ident(c)));
    select.push_str(&cols.join(", "));
    select.push_str(&format!(" FROM {} AS t0", quote_ident(&t.name)));
    let param = match w.filter {
        None => None,
        Some(f) => match f.conditions.get(&t.name) {
            Some(cond) => {
                select.push_str(&format!(" WHERE {cond}"));
                Some(f.param.clone())
            }
            None if t.name == "sqlite_sequence" => None, // counters stay whole
            None => return Ok(()),                       // schema only
        },
    };
    if t.rowid.is_some() {
        select.push_str(&format!(" ORDER BY {}", t.rowid.unwrap_or("rowid")));
    }
    let mut stmt = conn.prepare(&select).map_err(schema_err)?;
    // Two forms: with an explicit rowid, and without one where SQLite would pick the same
    // rowid anyway (one more than the largest so far: rows come in rowid order). Keeping rowids
    // keeps sqldiff equal; leaving out the ones SQLite reproduces keeps dumps small.
    let names = |with_rowid: bool| -> String {
        let mut n: Vec<String> = Vec::new();
        if let (true, Some(alias)) = (with_rowid, t.rowid) {
            n.push(alias.to_string());
        }
        n.extend(t.columns.iter().map(|c| quote_ident(c)));
        n.join(",")
    };
    let table = quote_ident(&t.name);
    let verb = match w.filter {
        Some(f) if f.insert_or_ignore.contains(&t.name) => "INSERT OR IGNORE INTO",
        _ => "INSERT INTO",
    };
    let keep_rowids = !w.filter.is_some_and(|f| f.data_only);
    let with_rowid = format!("{verb} {table}({}) VALUES(", names(true));
    let plain = if t.all_columns {
        format!("{verb} {table} VALUES(")
    } else {
        format!("{verb} {table}({}) VALUES(", names(false))
    };
    let ncols = cols.len();
    let read_err = |e| Error::sqlite(Kind::Source, format!("dump: read {}", t.name), e);
    let mut rows = match &param {
        Some(p) => stmt.query([p]),
        None => stmt.query([]),
    }
    .map_err(read_err)?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut last_rowid = 0i64;
    while let Some(row) = rows.next().map_err(read_err)? {
        let mut values: Vec<ValueRef> = Vec::with_capacity(ncols);
        for i in 0..ncols {
            values.push(row.get_ref(i).map_err(read_err)?);
        }
        let mut skip = 0;
        buf.clear();
        match (t.rowid, values.first()) {
            (Some(_), Some(ValueRef::Integer(id))) => {
                if last_rowid.checked_add(1) == Some(*id) || !keep_rowids {
                    buf.extend_from_slice(plain.as_bytes());
                    skip = 1;
                } else {
                    buf.extend_from_slice(with_rowid.as_bytes());
                }
                last_rowid = *id;
            }
            _ => buf.extend_from_slice(if t.rowid.is_some() {
                with_rowid.as_bytes()
            } else {
                plain.as_bytes()
            }),
        }
        for (i, v) in values.iter().skip(skip).enumerate() {
            if i > 0 {
                buf.push(b',');
            }
            push_value(&mut buf, *v, w.dialect);
        }
        buf.extend_from_slice(b");");
        if w.dialect == Dialect::D1 && buf.len() > D1_MAX_STATEMENT {
            let guard = verb != "INSERT INTO";
            row_statements(t, &with_rowid, &plain, &values, keep_rowids, guard, w)?;
        } else {
            w.statement(&buf)?;
        }
        w.stats.rows += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_rowid_detection() {
        assert!(is_without_rowid(
            "CREATE TABLE t(a PRIMARY KEY) WITHOUT ROWID"
        ));
        assert!(is_without_rowid(
            "CREATE TABLE t(a PRIMARY KEY) without  rowid, strict"
        ));
        assert!(!is_without_rowid("CREATE TABLE t(\"without rowid\" TEXT)"));
    }
}
