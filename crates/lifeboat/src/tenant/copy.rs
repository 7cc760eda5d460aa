//! Scratch copies of one tenant's rows: a small database with the tables (and indexes) of the
//! source and just that tenant's rows of every owned table, rowids kept. A tenant restore makes
//! two: one of the backup (before it locks anything), one of the live database (under its write
//! lock: what the restore replaces, and the tenant safety backup that undoes it). Comparing the
//! two copies, rather than the whole databases, keeps the cost with the tenant's size: each
//! source table is read once, parents first, children matched against their parents' copies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::tenant::map::{Ownership, TenancyMap};
use crate::tenant::rows::{insert_rows, qualified};
use lifeboat_sql::quote_ident;

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(Kind::Database, format!("tenant restore: {what}"), e)
}

/// A table whose tenant rows can only be found by reading the whole table, and the index that
/// would avoid it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FullScan {
    pub table: String,
    pub suggestion: String,
}

/// A scratch database being filled with one tenant's rows of `src` (attached as `src`).
pub struct TenantCopy {
    pub path: PathBuf,
    conn: Connection,
}

/// Run `sql`, binding `tenant` to `?1` when the statement has it (conditions through parents
/// do not).
pub fn execute_for(conn: &Connection, sql: &str, tenant: &str) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare(sql)?;
    if stmt.parameter_count() > 0 {
        stmt.raw_bind_parameter(1, tenant)?;
    }
    stmt.raw_execute()
}

/// The URI that attaches `path` read-only (`%`, `?` and `#` in names escaped).
pub fn read_only_uri(path: &Path) -> String {
    format!("{}?mode=ro", uri(path))
}

fn uri(path: &Path) -> String {
    format!(
        "file:{}",
        path.display()
            .to_string()
            .replace('%', "%25")
            .replace('?', "%3f")
            .replace('#', "%23")
    )
}

impl TenantCopy {
    /// Create `path` with the tables and indexes of `source` (views and triggers are left out:
    /// a copy holds data) and attach `source` as `src`, read-only when `read_only`.
    pub fn create(path: &Path, source: &Path, read_only: bool, busy: Duration) -> Result<Self> {
        let made = Self::create_inner(path, source, read_only, busy);
        if made.is_err() {
            let _ = std::fs::remove_file(path);
        }
        made
    }

    fn create_inner(path: &Path, source: &Path, read_only: bool, busy: Duration) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err("create a scratch copy"))?;
        conn.busy_timeout(busy).map_err(err("settings"))?;
        // A scratch file: fsynced by whoever keeps it, never rolled back.
        // No foreign keys: the copy holds some rows only (and SQLite is built with them on).
        conn.execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA foreign_keys=OFF;",
        )
        .map_err(err("settings"))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
            .map_err(err("switch triggers off"))?;
        let uri = if read_only {
            read_only_uri(source)
        } else {
            uri(source)
        };
        conn.execute("ATTACH DATABASE ?1 AS src", [uri])
            .map_err(err("attach the source"))?;
        let schema: Vec<(String, String)> = conn
            .prepare(
                "SELECT type, sql FROM src.sqlite_schema WHERE type IN ('table', 'index') AND sql IS NOT NULL \
                 AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY type DESC, rowid",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(err("read the schema"))?;
        for (_, sql) in &schema {
            conn.execute_batch(sql).map_err(err("copy the schema"))?;
        }
        Ok(TenantCopy {
            path: path.to_path_buf(),
            conn,
        })
    }

    /// The source's schema version, to tell later whether its schema changed meanwhile.
    pub fn source_schema_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA src.schema_version", [], |r| r.get(0))
            .map_err(err("read the schema version"))
    }

    /// Attach a copy of the backup's tenant rows as `bt`, so [`TenantCopy::fill`] also takes
    /// the source's orphans that hold a key of the backup's tenant rows.
    pub fn attach_backup_copy(&self, backup_copy: &Path) -> Result<()> {
        self.conn
            .execute("ATTACH DATABASE ?1 AS bt", [read_only_uri(backup_copy)])
            .map(|_| ())
            .map_err(err("attach the backup's copy"))
    }

    /// Copy the global rows that the copied tenant rows reference (transitively), so that a
    /// restore needs nothing else of the source: it can be let go (and a downloaded image
    /// removed) before the live database is locked. Call after [`TenantCopy::fill`].
    pub fn fill_referenced_globals(&self, map: &TenancyMap) -> Result<()> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(err("begin the copy"))?;
        for (table, ownership) in &map.tables {
            if !matches!(ownership, Ownership::Global) {
                continue;
            }
            let Some(cond) = map.referenced_from_copies(table, "t0", "main.", "src.") else {
                continue;
            };
            let sql = insert_rows(
                &self.conn,
                table,
                "main",
                &format!("{} AS t0", qualified("src", table)),
                &format!("WHERE {cond}"),
            )?;
            self.conn
                .execute(&sql, [])
                .map_err(err(&format!("copy the referenced rows of {table}")))?;
        }
        tx.commit().map_err(err("finish the copy"))
    }

    /// Empty the copy's tables, so it can be filled again.
    pub fn clear(&self, map: &TenancyMap) -> Result<()> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(err("begin the copy"))?;
        for table in map.owned_parents_first().iter().rev() {
            self.conn
                .execute(&format!("DELETE FROM {}", qualified("main", table)), [])
                .map_err(err(&format!("empty the copy of {table}")))?;
        }
        tx.commit().map_err(err("empty the copy"))
    }

    /// Copy the tenant's rows of every owned table from `src`, parents first, all inside one
    /// read transaction of the source (one instant). Returns the rows copied per table.
    ///
    /// With a backup copy attached, an orphan of a table that belongs to tenants through
    /// parents (its parent row was deleted, and no foreign key enforced that) counts as the
    /// tenant's when the backup has a row of the tenant under its key: it is the tenant's row,
    /// cut off, and a restore puts it back in place rather than failing on its key. A row that
    /// leads to another tenant, or to a global row, is never taken.
    pub fn fill(&self, map: &TenancyMap, tenant: &str) -> Result<Vec<(String, u64)>> {
        let with_backup: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM pragma_database_list WHERE name = 'bt'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
            .map_err(err("list databases"))?;
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(err("begin the copy"))?;
        let mut copied = Vec::new();
        for table in map.owned_parents_first() {
            let cond = map
                .condition_from_copies(&table, "t0", "main.")
                .expect("owned table");
            let sql = insert_rows(
                &self.conn,
                &table,
                "main",
                &format!("{} AS t0", qualified("src", &table)),
                &format!("WHERE {cond}"),
            )?;
            let mut n = execute_for(&self.conn, &sql, tenant)
                .map_err(err(&format!("copy the tenant's rows of {table}")))?;
            if let (true, Ownership::Parents { links, .. }) = (with_backup, &map.tables[&table]) {
                n += self.adopt_orphans(&table, links)?;
            }
            copied.push((table, n as u64));
        }
        tx.commit().map_err(err("finish the copy"))?;
        Ok(copied)
    }

    /// Copy the rows of `src.table` that hold the key of one of the backup's tenant rows and
    /// whose tenancy links all lead nowhere.
    fn adopt_orphans(&self, table: &str, links: &[crate::tenant::map::Link]) -> Result<usize> {
        let key = crate::tenant::rows::Key::of(&self.conn, table)?;
        let orphan: Vec<String> = links
            .iter()
            .map(|l| {
                let join: Vec<String> = l
                    .columns
                    .iter()
                    .zip(&l.parent_columns)
                    .map(|(c, pc)| format!("p.{} = t0.{}", quote_ident(pc), quote_ident(c)))
                    .collect();
                format!(
                    "NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
                    qualified("src", &l.parent),
                    join.join(" AND ")
                )
            })
            .collect();
        let sql = insert_rows(
            &self.conn,
            table,
            "main",
            &format!(
                "{} AS b CROSS JOIN {} AS t0 ON {}",
                qualified("bt", table),
                qualified("src", table),
                key.same("t0", "b")
            ),
            &format!(
                "WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS x WHERE {})",
                orphan.join(" AND "),
                qualified("main", table),
                key.same("x", "t0")
            ),
        )?;
        self.conn
            .execute(&sql, [])
            .map_err(err(&format!("copy the orphans of {table}")))
    }

    /// The owned tables where finding the tenant's rows means reading the whole table (no index
    /// leads to them), with the index that would.
    pub fn full_scans(&self, map: &TenancyMap) -> Result<Vec<FullScan>> {
        let mut found = Vec::new();
        for table in map.owned_parents_first() {
            let cond = map
                .condition_from_copies(&table, "t0", "main.")
                .expect("owned table");
            let sql = format!(
                "EXPLAIN QUERY PLAN SELECT 1 FROM {} AS t0 WHERE {cond}",
                qualified("src", &table)
            );
            let plan: Vec<String> = self
                .conn
                .prepare(&sql)
                .and_then(|mut s| {
                    if s.parameter_count() > 0 {
                        s.raw_bind_parameter(1, "?")?;
                    }
                    let mut rows = s.raw_query();
                    let mut out = Vec::new();
                    while let Some(r) = rows.next()? {
                        out.push(r.get(3)?);
                    }
                    Ok(out)
                })
                .map_err(err("plan the copy"))?;
            // "SCAN t0" reads the whole table; "SEARCH t0 USING …" follows an index.
            if !plan
                .iter()
                .any(|d| d == "SCAN t0" || d.starts_with("SCAN t0 "))
            {
                continue;
            }
            let columns: Vec<String> = match &map.tables[&table] {
                Ownership::Direct { column, .. } => vec![quote_ident(column)],
                Ownership::Parents { links, .. } => links
                    .iter()
                    .map(|l| {
                        l.columns
                            .iter()
                            .map(|c| quote_ident(c))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .collect(),
                _ => continue,
            };
            let suggestion = columns
                .iter()
                .map(|c| {
                    format!(
                        "CREATE INDEX {} ON {}({c});",
                        quote_ident(&format!(
                            "{table}_{}",
                            c.replace(['"', ' '], "").replace(',', "_")
                        )),
                        quote_ident(&table)
                    )
                })
                .collect::<Vec<_>>()
                .join(" ");
            found.push(FullScan { table, suggestion });
        }
        Ok(found)
    }

    /// Make the copy durable and give it the name it is kept under, never replacing a file:
    /// `<keep>`, or `<keep>-2`, … when taken. Returns the name.
    pub fn keep(&mut self, keep: &Path) -> Result<PathBuf> {
        let io = |e| Error::io(format!("keep the tenant's rows in {}", keep.display()), e);
        std::fs::File::open(&self.path)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        let mut n = 1;
        let kept = loop {
            let name = if n == 1 {
                keep.to_path_buf()
            } else {
                PathBuf::from(format!("{}-{n}", keep.display()))
            };
            match crate::fs::atomic_replace::rename_noreplace(&self.path, &name) {
                Ok(()) => break name,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(io(e)),
            }
        };
        if let Some(dir) = kept.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.path = kept.clone();
        Ok(kept)
    }

    /// Close the copy and delete its file (it is not needed).
    pub fn discard(self) {
        let path = self.path.clone();
        drop(self.conn);
        let _ = std::fs::remove_file(path);
    }

    /// Close the copy (detaching the source), fsynced when it is to be kept.
    pub fn close(self, durable: bool) -> Result<PathBuf> {
        let TenantCopy { path, conn } = self;
        conn.execute_batch("DETACH DATABASE src")
            .map_err(err("detach the source"))?;
        conn.close().map_err(|(_, e)| err("close the copy")(e))?;
        if durable {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
        }
        Ok(path)
    }
}

/// The live side's copy, removed when dropped unless it was kept (a failure that changed
/// nothing leaves nothing behind).
pub struct CopyGuard(pub Option<TenantCopy>);

impl CopyGuard {
    pub fn copy(&self) -> &TenantCopy {
        self.0.as_ref().expect("copy is there until kept")
    }

    pub fn copy_mut(&mut self) -> &mut TenantCopy {
        self.0.as_mut().expect("copy is there until kept")
    }

    /// Keep the file: close the copy without removing it.
    pub fn keep_file(&mut self) {
        if let Some(c) = self.0.take() {
            let _ = c.close(false);
        }
    }
}

impl std::ops::Deref for CopyGuard {
    type Target = TenantCopy;
    fn deref(&self) -> &TenantCopy {
        self.copy()
    }
}

impl Drop for CopyGuard {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.discard();
        }
    }
}
