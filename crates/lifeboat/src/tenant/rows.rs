//! SQL pieces for moving one tenant's rows between databases: how rows are identified (primary
//! key or rowid), when two rows are the same row with the same content, and which tables keep a
//! rowid that is not one of their columns. Tenant restore (into SQLite and into D1) builds its
//! statements from these.

use rusqlite::Connection;

use crate::error::{Error, Kind, Result};
use crate::tenant::map::primary_key;
use lifeboat_sql::quote_ident;

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(Kind::Database, format!("tenant restore: {what}"), e)
}

/// The schema-qualified name of `table`: `schema."table"`.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{schema}.{}", quote_ident(table))
}

/// The identifying columns of a table: its primary key, or `rowid`.
pub struct Key {
    columns: Vec<String>,
}

impl Key {
    pub fn of(conn: &Connection, table: &str) -> Result<Key> {
        Ok(Key {
            columns: primary_key(conn, table)?,
        })
    }

    fn column(c: &str) -> String {
        if c == "rowid" {
            "rowid".to_string()
        } else {
            quote_ident(c)
        }
    }

    /// `alias.k1, alias.k2` (no prefix when `alias` is empty).
    pub fn list(&self, alias: &str) -> String {
        let dot = if alias.is_empty() {
            String::new()
        } else {
            format!("{alias}.")
        };
        self.columns
            .iter()
            .map(|c| format!("{dot}{}", Self::column(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `alias.k1 AS k0, alias.k2 AS k1`: the key under generic names, for temp tables.
    pub fn select_as(&self, alias: &str) -> String {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{alias}.{} AS k{i}", Self::column(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `k0, k1`: the generic names of [`Key::select_as`].
    pub fn generic(&self) -> String {
        (0..self.columns.len())
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `a.k1 IS b.k1 AND …`: rows `a` and `b` have the same key (NULL-safe).
    pub fn same(&self, a: &str, b: &str) -> String {
        self.columns
            .iter()
            .map(|c| {
                let c = Self::column(c);
                format!("{a}.{c} IS {b}.{c}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `g.k0 IS b.k1 AND …`: a row `g` of a temp table made by [`Key::select_as`] holds the
    /// key of row `b`.
    pub fn same_generic(&self, g: &str, b: &str) -> String {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{g}.k{i} IS {b}.{}", Self::column(c)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// Rows `a` and `b` of `table` are the same row with the same content: same key, every column
/// equal byte for byte and of the same type, and the same rowid where the rowid is kept but is
/// not a column.
pub fn identical(conn: &Connection, table: &str, a: &str, b: &str) -> Result<String> {
    let mut terms = vec![Key::of(conn, table)?.same(a, b)];
    for c in columns(conn, "main", table)? {
        let c = quote_ident(&c);
        // BINARY: a NOCASE column would call 'A' and 'a' equal; typeof: 1 and 1.0 compare equal.
        terms.push(format!(
            "{a}.{c} IS {b}.{c} COLLATE BINARY AND typeof({a}.{c}) = typeof({b}.{c})"
        ));
    }
    if hidden_rowid(conn, table)? {
        terms.push(format!("{a}.rowid = {b}.rowid"));
    }
    Ok(terms.join(" AND "))
}

/// The key of a table's rows: its primary key, or rowid. Prefixed with `alias.` when given.
pub fn key_list(conn: &Connection, table: &str, alias: &str) -> Result<String> {
    Ok(Key::of(conn, table)?.list(alias))
}

/// The columns of `schema.table` (hidden columns of virtual tables left out).
pub fn columns(conn: &Connection, schema: &str, table: &str) -> Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_xinfo(?1, ?2) WHERE hidden = 0")
        .and_then(|mut s| s.query_map([table, schema], |r| r.get(0))?.collect())
        .map_err(err("read columns"))
}

/// Whether a table keeps a rowid that is not one of its columns (so a copy should carry it).
pub fn hidden_rowid(conn: &Connection, table: &str) -> Result<bool> {
    let pk = primary_key(conn, table)?;
    if pk == ["rowid"] {
        return Ok(true);
    }
    let sql: String = conn
        .query_row(
            "SELECT sql FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )
        .map_err(err("read schema"))?;
    let without_rowid = sql
        .to_ascii_uppercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .contains("WITHOUT ROWID");
    let ipk = pk.len() == 1
        && conn
            .query_row(
                "SELECT upper(type) = 'INTEGER' FROM pragma_table_info(?1) WHERE name = ?2",
                [table, &pk[0]],
                |r| r.get::<_, bool>(0),
            )
            .map_err(err("read schema"))?;
    Ok(!without_rowid && !ipk)
}

/// `INSERT INTO <into>.T (rowid, cols) SELECT <rowid or NULL>, t0.cols FROM <from> AS t0 …`:
/// copies rows of `table`, keeping each hidden rowid unless `into` already uses it. `from` is
/// the source, with any joins, aliased `t0`; `rest` is the `WHERE …` that follows.
pub fn insert_rows(
    conn: &Connection,
    table: &str,
    into: &str,
    from: &str,
    rest: &str,
) -> Result<String> {
    let cols = columns(conn, "main", table)?;
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let picked: Vec<String> = cols
        .iter()
        .map(|c| format!("t0.{}", quote_ident(c)))
        .collect();
    let t = qualified(into, table);
    let (rowid_col, rowid_val) = if hidden_rowid(conn, table)? {
        (
            "rowid, ",
            format!("CASE WHEN EXISTS (SELECT 1 FROM {t} x WHERE x.rowid = t0.rowid) THEN NULL ELSE t0.rowid END, "),
        )
    } else {
        ("", String::new())
    };
    Ok(format!(
        "INSERT INTO {t} ({rowid_col}{}) SELECT {rowid_val}{} FROM {from} {rest}",
        names.join(", "),
        picked.join(", ")
    ))
}
