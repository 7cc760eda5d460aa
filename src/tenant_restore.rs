//! Single-tenant restore into a live database: makes one tenant's rows equal to a backup's and
//! touches nothing else. The backup image is attached read-only; in one transaction the tenant's
//! live rows that differ from the backup are deleted child-first and the backup's missing ones
//! inserted parent-first (rowids kept where free), global rows that restored rows reference but the live database lacks are inserted
//! (existing global rows are never modified), and `foreign_key_check` must pass for every
//! touched table before the commit. Triggers are switched off for this connection only
//! (`SQLITE_DBCONFIG_ENABLE_TRIGGER`), so none fires and none is altered.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::source::quote_ident;
use crate::tenant::{discover, primary_key, Ownership, TenancyConfig, TenancyMap};

/// What changes (or, with a dry run, would change) in one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableChange {
    pub table: String,
    /// The tenant's live rows that the backup does not have.
    pub delete: u64,
    /// The backup's rows of the tenant that the live database does not have.
    pub insert: u64,
    /// Rows present in both whose content differs.
    pub update: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantChanges {
    pub tables: Vec<TableChange>,
    /// Global rows inserted because restored rows reference them (table → rows).
    pub globals_inserted: BTreeMap<String, u64>,
}

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(Kind::Database, format!("tenant restore: {what}"), e)
}

/// How far [`restore_tenant`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only check that the restore can run (schemas match, the backup has the tenant).
    Check,
    /// Also compute the per-table changes, changing nothing (`--dry-run`).
    Plan,
    /// Apply the changes.
    Apply,
}

/// Check, plan or apply the restore of `tenant` from `image` into `live`. An apply calls
/// `before_writes` before its first write to the live database and writes nothing unless it
/// agrees (the image's own check may still be running; waiting for it there, rather than
/// before the commit, keeps the live database's write lock no longer than the writes need).
pub fn restore_tenant(
    live: &Path,
    image: &Path,
    cfg: &TenancyConfig,
    tenant: &str,
    mode: Mode,
    before_writes: impl FnOnce() -> Result<()>,
) -> Result<TenantChanges> {
    let map = discover(
        &Connection::open_with_flags(image, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err("open the backup"))?,
        cfg,
    )?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(live, flags).map_err(err("open the live database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .map_err(err("open"))?;
    // Checked explicitly before commit; off so no ON DELETE action reaches other rows.
    conn.execute_batch("PRAGMA foreign_keys=OFF")
        .map_err(err("settings"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .map_err(err("switch triggers off"))?;
    let uri = format!(
        "file:{}?mode=ro",
        image
            .display()
            .to_string()
            .replace('?', "%3f")
            .replace('#', "%23")
    );
    conn.execute("ATTACH DATABASE ?1 AS bk", [uri])
        .map_err(err("attach the backup"))?;
    check_same_schema(&conn, &map)?;
    let found: i64 = conn
        .query_row(
            &format!(
                "SELECT count(*) FROM bk.{} WHERE {} = ?1",
                quote_ident(&map.tenant_table),
                quote_ident(&map.tenant_key)
            ),
            [tenant],
            |r| r.get(0),
        )
        .map_err(err("find the tenant"))?;
    if found == 0 {
        return Err(Error::new(
            Kind::NotFound,
            format!("tenant {tenant:?} is not in the backup"),
        ));
    }

    // Parents before children: the tenant table, then direct tables, then by hops.
    let mut owned: Vec<(&String, usize)> = map
        .tables
        .iter()
        .filter_map(|(t, o)| match o {
            Ownership::Tenant { .. } => Some((t, 0)),
            Ownership::Direct { .. } => Some((t, 1)),
            Ownership::Parents { depth, .. } => Some((t, 1 + depth)),
            _ => None,
        })
        .collect();
    owned.sort_by_key(|(t, d)| (*d, (*t).clone()));

    let tx = match mode {
        Mode::Check => return Ok(TenantChanges::default()),
        Mode::Plan => None,
        Mode::Apply => Some(conn.unchecked_transaction().map_err(err("begin"))?),
    };
    let mut changes = TenantChanges::default();
    let step = std::time::Instant::now();
    for (table, _) in &owned {
        changes.tables.push(diff(&conn, &map, table, tenant)?);
    }
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "tenant restore: diff"
    );
    let step = std::time::Instant::now();
    if let Some(tx) = tx {
        before_writes()?;
        // Keys the restore removes (rows added after the backup): nothing may point at them.
        let mut gone: Vec<(String, String)> = Vec::new();
        for (i, c) in changes
            .tables
            .iter()
            .enumerate()
            .filter(|(_, c)| c.delete > 0)
        {
            let temp = format!("lifeboat_gone_{i}");
            let t = quote_ident(&c.table);
            let key = key_list(&conn, &c.table, "t0")?;
            let same = same_key(&conn, &c.table, "b", "t0")?;
            let live = map.condition_in("main.", &c.table, "t0").expect("owned");
            let backup_b = map.condition_in("bk.", &c.table, "b").expect("owned");
            conn.execute(
                &format!("CREATE TEMP TABLE {temp} AS SELECT {key} FROM main.{t} AS t0 WHERE {live} AND NOT EXISTS (SELECT 1 FROM bk.{t} AS b WHERE {same} AND {backup_b})"),
                [tenant],
            )
            .map_err(err("note removed keys"))?;
            gone.push((c.table.clone(), temp));
        }
        // Only rows that differ change: the tenant's live rows without an identical row in the
        // backup go (children first, while their parents still say whose they are), then the
        // backup's rows the tenant no longer has come in (parents first). Identical rows are
        // left alone, which keeps the write (and the time the database is locked) small.
        for (table, _) in owned.iter().rev() {
            let t = quote_ident(table);
            let key = key_list(&conn, table, "t0")?;
            let cond = map.condition_in("main.", table, "t0").expect("owned");
            let backup_b = map.condition_in("bk.", table, "b").expect("owned");
            let same = identical(&conn, table, "b", "t0")?;
            let sql = format!(
                "DELETE FROM main.{t} WHERE ({k}) IN (SELECT {key} FROM main.{t} AS t0 WHERE {cond} AND NOT EXISTS (SELECT 1 FROM bk.{t} AS b WHERE {same} AND {backup_b}))",
                k = key_list(&conn, table, "")?,
            );
            conn.execute(&sql, [tenant])
                .map_err(err(&format!("delete from {table}")))?;
        }
        for (table, _) in &owned {
            let cond = map.condition_in("bk.", table, "t0").expect("owned");
            // What is left of the tenant's rows is identical to the backup: skip those keys.
            let kept = map.condition_in("main.", table, "x").expect("owned");
            copy_rows(&conn, table, &cond, tenant, Some(&kept))?;
        }
        for (table, o) in &map.tables {
            if !matches!(o, Ownership::Global) {
                continue;
            }
            if let Some(cond) = map.referenced_in("bk.", table, "t0") {
                let n = copy_rows(&conn, table, &cond, tenant, Some("1"))?;
                if n > 0 {
                    changes.globals_inserted.insert(table.clone(), n);
                }
            }
        }
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: delete and insert"
        );
        let step = std::time::Instant::now();
        check_references(
            &conn,
            &map,
            &owned,
            &changes.globals_inserted,
            &gone,
            tenant,
        )?;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: foreign_key_check"
        );
        tx.commit().map_err(err("commit"))?;
    }
    Ok(changes)
}

/// The foreign-key check of a tenant restore, limited to what it can break: every foreign key
/// of the restored (and inserted global) rows must resolve, and no row anywhere may still point
/// at a key the restore removed. (`PRAGMA foreign_key_check` on whole tables gives the same
/// answer but reads every row of every touched table: seconds on a large database.)
fn check_references(
    conn: &Connection,
    map: &TenancyMap,
    owned: &[(&String, usize)],
    globals: &BTreeMap<String, u64>,
    gone: &[(String, String)],
    tenant: &str,
) -> Result<()> {
    let touched = owned
        .iter()
        .map(|(t, _)| ((*t).clone(), map.condition_in("main.", t, "t0")))
        .chain(
            globals
                .keys()
                .map(|t| (t.clone(), map.referenced_in("main.", t, "t0"))),
        );
    for (table, cond) in touched {
        let Some(cond) = cond else { continue };
        for link in map.links[&table].iter().filter(|l| !l.from_config) {
            let not_null: Vec<String> = link
                .columns
                .iter()
                .map(|c| format!("t0.{} IS NOT NULL", quote_ident(c)))
                .collect();
            let join: Vec<String> = link
                .columns
                .iter()
                .zip(&link.parent_columns)
                .map(|(c, pc)| format!("p.{} = t0.{}", quote_ident(pc), quote_ident(c)))
                .collect();
            let sql = format!(
                "SELECT count(*) FROM main.{} AS t0 WHERE {cond} AND {} AND NOT EXISTS (SELECT 1 FROM main.{} AS p WHERE {})",
                quote_ident(&table),
                not_null.join(" AND "),
                quote_ident(&link.parent),
                join.join(" AND ")
            );
            let n: i64 = conn
                .query_row(&sql, [tenant], |r| r.get(0))
                .map_err(err("foreign_key_check"))?;
            if n > 0 {
                return Err(Error::new(
                    Kind::Database,
                    format!("tenant restore: {n} restored row(s) of {table} point at missing rows of {}; nothing was changed", link.parent),
                ));
            }
        }
    }
    for (parent, temp) in gone {
        for (child, links) in &map.links {
            for link in links
                .iter()
                .filter(|l| !l.from_config && &l.parent == parent)
            {
                let cols: Vec<String> = link
                    .columns
                    .iter()
                    .map(|c| format!("c.{}", quote_ident(c)))
                    .collect();
                let sql = format!(
                    "SELECT count(*) FROM main.{} AS c WHERE ({}) IN (SELECT * FROM temp.{temp})",
                    quote_ident(child),
                    cols.join(", ")
                );
                let n: i64 = conn
                    .query_row(&sql, [], |r| r.get(0))
                    .map_err(err("foreign_key_check"))?;
                if n > 0 {
                    return Err(Error::new(
                        Kind::Database,
                        format!("tenant restore: {n} row(s) of {child} point at rows of {parent} that the restore would remove (added after the backup); nothing was changed"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Rows `a` and `b` are the same row with the same content: same key, every column equal byte
/// for byte and of the same type, and the same rowid where the rowid is kept but not a column.
fn identical(conn: &Connection, table: &str, a: &str, b: &str) -> Result<String> {
    let mut terms = vec![same_key(conn, table, a, b)?];
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

/// `a.k IS b.k AND …` over the table's primary key (or rowid).
fn same_key(conn: &Connection, table: &str, a: &str, b: &str) -> Result<String> {
    Ok(primary_key(conn, table)?
        .iter()
        .map(|k| {
            let k = if k == "rowid" {
                "rowid".to_string()
            } else {
                quote_ident(k)
            };
            format!("{a}.{k} IS {b}.{k}")
        })
        .collect::<Vec<_>>()
        .join(" AND "))
}

/// The key of a table's rows: its primary key, or rowid. Prefixed with `alias.` when given.
pub(crate) fn key_list(conn: &Connection, table: &str, alias: &str) -> Result<String> {
    let pk = primary_key(conn, table)?;
    let dot = if alias.is_empty() {
        String::new()
    } else {
        format!("{alias}.")
    };
    Ok(pk
        .iter()
        .map(|c| {
            if c == "rowid" {
                format!("{dot}rowid")
            } else {
                format!("{dot}{}", quote_ident(c))
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

fn columns(conn: &Connection, schema: &str, table: &str) -> Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_xinfo(?1, ?2) WHERE hidden = 0")
        .and_then(|mut s| s.query_map([table, schema], |r| r.get(0))?.collect())
        .map_err(err("read columns"))
}

/// The backup's schema must match the live one for every table a tenant restore touches.
fn check_same_schema(conn: &Connection, map: &TenancyMap) -> Result<()> {
    for (table, o) in &map.tables {
        if matches!(o, Ownership::Excluded) {
            continue;
        }
        let (live, backup) = (columns(conn, "main", table)?, columns(conn, "bk", table)?);
        if live != backup {
            return Err(Error::new(
                Kind::Database,
                format!("tenant restore: table {table} differs between the backup ({} columns) and the live database ({} columns): migrate the backup or restore the whole database", backup.len(), live.len()),
            ));
        }
    }
    Ok(())
}

/// Whether a table keeps a rowid that is not one of its columns (so a restore should carry it).
fn hidden_rowid(conn: &Connection, table: &str) -> Result<bool> {
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

/// Copy the backup's rows of `table` that match `cond` into the live table, leaving alone those
/// whose key a live row `x` matching `skip_if` already holds. Rowids are kept unless taken.
fn copy_rows(
    conn: &Connection,
    table: &str,
    cond: &str,
    tenant: &str,
    skip_if: Option<&str>,
) -> Result<u64> {
    let cols = columns(conn, "main", table)?;
    let names: Vec<String> = cols.iter().map(|c| quote_ident(c)).collect();
    let picked: Vec<String> = cols
        .iter()
        .map(|c| format!("t0.{}", quote_ident(c)))
        .collect();
    let t = quote_ident(table);
    let (rowid_col, rowid_val) = if hidden_rowid(conn, table)? {
        ("rowid, ", format!("CASE WHEN EXISTS (SELECT 1 FROM main.{t} x WHERE x.rowid = t0.rowid) THEN NULL ELSE t0.rowid END, "))
    } else {
        ("", String::new())
    };
    let missing = match skip_if {
        Some(held) => {
            let m = same_key(conn, table, "x", "t0")?;
            format!(" AND NOT EXISTS (SELECT 1 FROM main.{t} x WHERE {m} AND {held})")
        }
        None => String::new(),
    };
    let sql = format!(
        "INSERT INTO main.{t} ({rowid_col}{}) SELECT {rowid_val}{} FROM bk.{t} AS t0 WHERE {cond}{missing}",
        names.join(", "),
        picked.join(", ")
    );
    conn.execute(&sql, [tenant])
        .map(|n| n as u64)
        .map_err(|e| {
            Error::sqlite(
                Kind::Database,
                format!("tenant restore: insert into {table} (a row of another tenant may hold the same key; nothing was changed)"),
                e,
            )
        })
}

/// Count what a restore changes in one table.
fn diff(conn: &Connection, map: &TenancyMap, table: &str, tenant: &str) -> Result<TableChange> {
    let t = quote_ident(table);
    let live = map.condition_in("main.", table, "t0").expect("owned");
    let live_b = map.condition_in("main.", table, "b").expect("owned");
    let backup = map.condition_in("bk.", table, "t0").expect("owned");
    let backup_b = map.condition_in("bk.", table, "b").expect("owned");
    let same_key = same_key(conn, table, "b", "t0")?;
    let count = |sql: String| -> Result<u64> {
        conn.query_row(&sql, [tenant], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(err(&format!("compare {table}")))
    };
    let delete = count(format!(
        "SELECT count(*) FROM main.{t} AS t0 WHERE {live} AND NOT EXISTS (SELECT 1 FROM bk.{t} AS b WHERE {same_key} AND {backup_b})"
    ))?;
    let insert = count(format!(
        "SELECT count(*) FROM bk.{t} AS t0 WHERE {backup} AND NOT EXISTS (SELECT 1 FROM main.{t} AS b WHERE {same_key} AND {live_b})"
    ))?;
    let same = identical(conn, table, "b", "t0")?;
    let update = count(format!(
        "SELECT count(*) FROM main.{t} AS t0 JOIN bk.{t} AS b ON {same_key} WHERE {live} AND {backup_b} AND NOT ({same})"
    ))?;
    Ok(TableChange {
        table: table.to_string(),
        delete,
        insert,
        update,
    })
}
