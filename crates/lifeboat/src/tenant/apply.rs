//! One tenant's rows made equal to a backup's, inside the live database, touching nothing else
//! and holding the database's write lock only while writing.
//!
//! Before any lock: the backup's tenant rows, and the global rows they reference, are copied into
//! a scratch database (see [`crate::tenant::copy`]), and the schemas compared; in WAL mode the
//! tenant's live rows are copied too. Then, once the backup image has passed its check, the write
//! lock is taken (with a bounded wait and retries, so a busy database is waited for rather than
//! failed), and under it: the tenant's live rows are copied (the exact state the restore
//! replaces, and its undo), unless the copy made before the lock is proved current by an
//! unchanged `data_version`; live rows with no identical row in the backup are deleted
//! child-first, the backup's rows the tenant then lacks are inserted parent-first (rowids kept
//! where free), global rows that restored rows reference but the live database lacks are
//! inserted (existing global rows are never modified), foreign keys of everything touched are
//! checked, and the transaction commits. Triggers are off for this connection only
//! (`SQLITE_DBCONFIG_ENABLE_TRIGGER`), so none fires and none is altered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::tenant::copy::{read_only_uri, CopyGuard, FullScan, TenantCopy};
use crate::tenant::fk::check_references;
use crate::tenant::map::{discover, Ownership, TenancyConfig, TenancyMap};
use crate::tenant::rows::{columns, identical, insert_rows, qualified, Key};

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

impl TableChange {
    pub fn changes(&self) -> bool {
        self.delete + self.insert + self.update > 0
    }
}

/// What a tenant restore changed, or would change.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantChanges {
    pub tables: Vec<TableChange>,
    /// Global rows inserted because restored rows reference them (table → rows).
    pub globals_inserted: BTreeMap<String, u64>,
    /// Tables whose tenant rows could only be found by reading them whole.
    pub full_scans: Vec<FullScan>,
    /// How long the live database's write lock was held (not for a dry run).
    pub write_lock_ms: Option<u64>,
    /// The tenant's live rows were copied before the write lock (WAL mode, and nobody
    /// committed in between), so the lock was held only for the writes.
    #[serde(skip)]
    pub live_copy_before_lock: bool,
}

/// Whether a failed apply changed the live database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// Certainly not: it failed before its commit, and was rolled back.
    No,
    /// Unknown: the commit itself failed.
    Unknown,
}

/// A failed apply: the error, and whether the live database may have changed.
#[derive(Debug)]
pub struct ApplyFailure {
    pub error: Error,
    pub changed: Changed,
}

impl From<Error> for ApplyFailure {
    fn from(error: Error) -> Self {
        ApplyFailure {
            error,
            changed: Changed::No,
        }
    }
}

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(Kind::Database, format!("tenant restore: {what}"), e)
}

/// A tenant restore ready to plan or apply: the backup's tenant rows copied, the live database
/// open (not locked), the schemas compared.
pub struct Prepared {
    conn: Connection,
    live_copy: CopyGuard,
    schema_version: i64,
    map: TenancyMap,
    tenant: String,
    /// The owned tables, parents first, with their keys.
    owned: Vec<(String, Key)>,
    lock_timeout: Duration,
}

/// Open `live` for a restore of `tenant` from the checked-or-being-checked `image`; scratch
/// copies go into `scratch`. Nothing is locked or written in `live`.
///
/// The live side's copy is made at `live_copy_at`: next to the live database for a restore,
/// since it is what the restore replaces and becomes the kept copy before the commit.
pub fn prepare(
    live: &Path,
    image: &Path,
    cfg: &TenancyConfig,
    tenant: &str,
    scratch: &Path,
    live_copy_at: &Path,
    lock_timeout: Duration,
) -> Result<Prepared> {
    let map = discover(
        &Connection::open_with_flags(image, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(err("open the backup"))?,
        cfg,
    )?;
    // The backup's side first: it does not change, so it is read before anything is locked.
    let backup_copy = TenantCopy::create(
        &scratch.join("backup-tenant.sqlite"),
        image,
        true,
        lock_timeout,
    )?;
    let step = Instant::now();
    let copied = backup_copy.fill(&map, tenant)?;
    backup_copy.fill_referenced_globals(&map)?;
    tracing::debug!(
        ms = step.elapsed().as_millis() as u64,
        "tenant restore: backup copy"
    );
    if copied
        .iter()
        .all(|(t, n)| *t != map.tenant_table || *n == 0)
    {
        return Err(Error::new(
            Kind::NotFound,
            format!("tenant {tenant:?} is not in the backup"),
        ));
    }
    let backup_copy = backup_copy.close(false)?;

    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(live, flags).map_err(err("open the live database"))?;
    conn.busy_timeout(lock_timeout).map_err(err("open"))?;
    // Checked explicitly before commit; off so no ON DELETE action reaches other rows.
    conn.execute_batch(
        "PRAGMA foreign_keys=OFF; PRAGMA temp_store=MEMORY; PRAGMA cache_size=-65536;",
    )
    .map_err(err("settings"))?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER, false)
        .map_err(err("switch triggers off"))?;
    for (name, path) in [("bk", image), ("bt", backup_copy.as_path())] {
        conn.execute(
            &format!("ATTACH DATABASE ?1 AS {name}"),
            [read_only_uri(path)],
        )
        .map_err(err("attach the backup"))?;
    }
    check_same_schema(&conn, &map)?;
    // The live side's copy: its schema now, its rows under the write lock.
    let live_copy = TenantCopy::create(live_copy_at, live, false, lock_timeout)?;
    // From here on, a failure removes the copy: nothing was changed, it protects nothing.
    let live_copy = CopyGuard(Some(live_copy));
    live_copy.attach_backup_copy(&backup_copy)?;
    let schema_version = live_copy.source_schema_version()?;
    conn.execute("ATTACH DATABASE ?1 AS sf", [read_only_uri(&live_copy.path)])
        .map_err(err("attach the copy"))?;
    let owned = map
        .owned_parents_first()
        .into_iter()
        .map(|t| Key::of(&conn, &t).map(|k| (t, k)))
        .collect::<Result<Vec<_>>>()?;
    // Everything of the backup a restore needs is in its copy now: let the image go, so it
    // can be removed while the restore writes.
    conn.execute_batch("DETACH DATABASE bk")
        .map_err(err("detach the backup"))?;
    Ok(Prepared {
        conn,
        live_copy,
        schema_version,
        map,
        tenant: tenant.to_string(),
        owned,
        lock_timeout,
    })
}

impl Prepared {
    /// The tables where finding the tenant's live rows reads the whole table.
    pub fn full_scans(&self) -> Result<Vec<FullScan>> {
        self.live_copy.full_scans(&self.map)
    }

    /// Compute what the restore would change; change nothing and lock nothing.
    pub fn plan(self) -> Result<TenantChanges> {
        let full_scans = self.full_scans()?;
        self.live_copy.fill(&self.map, &self.tenant)?;
        let mut changes = TenantChanges {
            full_scans,
            ..TenantChanges::default()
        };
        for (i, (table, key)) in self.owned.iter().enumerate() {
            let differing = self.note_differing(i, table, key)?;
            let update = self.count_updates(i, table, key)?;
            let arriving: i64 = self
                .conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {} AS t0 WHERE {}",
                        qualified("bt", table),
                        self.not_kept(i, table, key)
                    ),
                    [],
                    |r| r.get(0),
                )
                .map_err(err(&format!("compare {table}")))?;
            changes.tables.push(TableChange {
                table: table.clone(),
                delete: differing.saturating_sub(update),
                insert: (arriving as u64).saturating_sub(update),
                update,
            });
        }
        for (table, cond) in self.referenced_globals() {
            let key = Key::of(&self.conn, &table)?;
            let n: i64 = self
                .conn
                .query_row(
                    &format!(
                        "SELECT count(*) FROM {} AS t0 WHERE {cond} AND NOT EXISTS (SELECT 1 FROM {} AS x WHERE {})",
                        qualified("bt", &table),
                        qualified("main", &table),
                        key.same("x", "t0")
                    ),
                    [],
                    |r| r.get(0),
                )
                .map_err(err(&format!("compare {table}")))?;
            if n > 0 {
                changes.globals_inserted.insert(table, n as u64);
            }
        }
        Ok(changes)
    }

    /// Apply the restore. `before_writes` runs before the write lock is taken (the image's check
    /// may still be running: waiting for it there keeps it out of the locked time); nothing is
    /// written unless it agrees. Returns the changes and the live copy's file: the tenant's rows
    /// as they were, the restore's undo.
    ///
    /// Under the write lock, before the commit, the copy of the tenant's rows as they were is
    /// fsynced and renamed to `keep_as` (next to the live database): once the restore has
    /// committed, what it replaced is on disk whatever happens next. On a failure that changed
    /// nothing it is removed again.
    pub fn apply(
        mut self,
        keep_as: &Path,
        before_writes: impl FnOnce() -> Result<()>,
    ) -> std::result::Result<(TenantChanges, PathBuf), ApplyFailure> {
        let full_scans = self.full_scans()?;
        let early = self.copy_before_lock()?;
        let step = Instant::now();
        before_writes()?;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: waited for the image check"
        );
        let locked = self.lock()?;
        let mut changes = TenantChanges {
            full_scans,
            ..TenantChanges::default()
        };
        let result = self
            .write(&mut changes, early)
            .and_then(|()| self.live_copy.copy_mut().keep(keep_as));
        let kept = match result {
            Ok(kept) => kept,
            Err(e) => {
                // Rolled back (also when the connection is dropped): nothing changed.
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e.into());
            }
        };
        let step = Instant::now();
        if let Err(e) = self.conn.execute_batch("COMMIT") {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
                // Still our transaction: roll it back and report the lock.
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(err("commit (the database stayed locked by readers)")(e).into());
            }
            // Perhaps applied: the tenant's rows as they were stay where they are.
            self.live_copy.keep_file();
            return Err(ApplyFailure {
                error: err(&format!(
                    "commit failed, so whether the restore was applied is unknown; the tenant's rows as they were are kept in {}",
                    kept.display()
                ))(e),
                changed: Changed::Unknown,
            });
        }
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: commit"
        );
        changes.write_lock_ms = Some(locked.elapsed().as_millis() as u64);
        let Prepared {
            conn,
            mut live_copy,
            ..
        } = self;
        drop(conn);
        live_copy.keep_file();
        if let Some(copy) = live_copy.0.take() {
            let _ = copy.close(false);
        }
        Ok((changes, kept))
    }

    /// Take the live database's write lock: `BEGIN` then a write that changes nothing, so the
    /// read snapshot and the lock are taken together (no SQLITE_BUSY_SNAPSHOT later). Waits up
    /// to the lock timeout, retrying, for other writers to finish.
    fn lock(&self) -> Result<Instant> {
        let deadline = Instant::now() + self.lock_timeout;
        let probe = format!(
            "DELETE FROM {} WHERE 0",
            qualified("main", &self.map.tenant_table)
        );
        self.conn.execute_batch("BEGIN").map_err(err("begin"))?;
        loop {
            match self.conn.execute(&probe, []) {
                Ok(_) => return Ok(Instant::now()),
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    let _ = self.conn.execute_batch("ROLLBACK");
                    return Err(match e.sqlite_error_code() {
                        Some(rusqlite::ErrorCode::DatabaseBusy) => Error::new(
                            Kind::Database,
                            format!(
                                "tenant restore: the live database stayed locked by another writer for more than {}; nothing was changed",
                                humantime::format_duration(self.lock_timeout)
                            ),
                        ),
                        _ => err("lock the live database")(e),
                    });
                }
            }
        }
    }

    /// In WAL mode, where reading never blocks a writer, copy the tenant's live rows before the
    /// write lock (beside the image's check) and return the database's `data_version` from
    /// just before: under the lock, an unchanged `data_version` proves nobody committed since,
    /// so the copy is exactly what the restore replaces and need not be made again there.
    /// In rollback-journal mode a read blocks writers, so the copy waits for the lock.
    fn copy_before_lock(&self) -> Result<Option<i64>> {
        let mode: String = self
            .conn
            .query_row("PRAGMA main.journal_mode", [], |r| r.get(0))
            .map_err(err("journal mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        let version = self.data_version()?;
        let step = Instant::now();
        self.live_copy.fill(&self.map, &self.tenant)?;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: live copy, before the lock"
        );
        Ok(Some(version))
    }

    /// Changes whenever another connection commits to the live database.
    fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA main.data_version", [], |r| r.get(0))
            .map_err(err("data_version"))
    }

    /// Under the write lock: copy the tenant's live rows (unless the copy made before the lock
    /// at `early` is still exact), then delete, insert, check.
    fn write(&self, changes: &mut TenantChanges, early: Option<i64>) -> Result<()> {
        if self.live_copy.source_schema_version()? != self.schema_version {
            return Err(Error::new(
                Kind::Database,
                "tenant restore: the live database's schema changed while the restore was being prepared; nothing was changed, run it again",
            ));
        }
        let step = Instant::now();
        let current = match early {
            Some(v) => self.data_version()? == v,
            None => false,
        };
        if !current {
            if early.is_some() {
                self.live_copy.clear(&self.map)?;
            }
            self.live_copy.fill(&self.map, &self.tenant)?;
        }
        changes.live_copy_before_lock = current;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            reused = current,
            "tenant restore: live copy"
        );
        let step = Instant::now();
        let mut deleted = vec![0u64; self.owned.len()];
        for (i, (table, key)) in self.owned.iter().enumerate().rev() {
            self.note_differing(i, table, key)?;
            let sql = format!(
                "DELETE FROM {} WHERE ({}) IN (SELECT {} FROM temp.lb_d{i})",
                qualified("main", table),
                key.list(""),
                key.generic()
            );
            deleted[i] = self
                .conn
                .execute(&sql, [])
                .map_err(err(&format!("delete from {table}")))? as u64;
        }
        for (i, (table, key)) in self.owned.iter().enumerate() {
            let sql = insert_rows(
                &self.conn,
                table,
                "main",
                &format!("{} AS t0", qualified("bt", table)),
                &format!("WHERE {}", self.not_kept(i, table, key)),
            )?;
            let inserted = self.conn.execute(&sql, []).map_err(|e| {
                let what = if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                    format!("tenant restore: insert into {table} (a live row that is not this tenant's, another tenant's or a global one, holds the same key; nothing was changed)")
                } else {
                    format!("tenant restore: insert into {table} (nothing was changed)")
                };
                Error::sqlite(Kind::Database, what, e)
            })? as u64;
            let update = self.count_updates(i, table, key)?;
            changes.tables.push(TableChange {
                table: table.clone(),
                delete: deleted[i].saturating_sub(update),
                insert: inserted.saturating_sub(update),
                update,
            });
        }
        for (table, cond) in self.referenced_globals() {
            let key = Key::of(&self.conn, &table)?;
            let sql = insert_rows(
                &self.conn,
                &table,
                "main",
                &format!("{} AS t0", qualified("bt", &table)),
                &format!(
                    "WHERE {cond} AND NOT EXISTS (SELECT 1 FROM {} AS x WHERE {})",
                    qualified("main", &table),
                    key.same("x", "t0")
                ),
            )?;
            let n = self
                .conn
                .execute(&sql, [])
                .map_err(err(&format!("insert referenced rows of {table}")))?;
            if n > 0 {
                changes.globals_inserted.insert(table, n as u64);
            }
        }
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: delete and insert"
        );
        let step = Instant::now();
        let globals: Vec<(String, String)> = self
            .referenced_globals()
            .into_iter()
            .filter(|(t, _)| changes.globals_inserted.contains_key(t))
            .collect();
        check_references(&self.conn, &self.map, &self.owned, &globals)?;
        tracing::debug!(
            ms = step.elapsed().as_millis() as u64,
            "tenant restore: foreign keys"
        );
        Ok(())
    }

    /// `temp.lb_d<i>`: the keys of the tenant's live rows of `table` that have no identical
    /// row in the backup (they go). Returns how many.
    fn note_differing(&self, i: usize, table: &str, key: &Key) -> Result<u64> {
        let same = identical(&self.conn, table, "b", "l")?;
        self.conn
            .execute_batch(&format!(
                "DROP TABLE IF EXISTS temp.lb_d{i};
                 CREATE TEMP TABLE lb_d{i} AS SELECT {} FROM {} AS l WHERE NOT EXISTS (SELECT 1 FROM {} AS b WHERE {same});
                 CREATE INDEX temp.lb_d{i}_k ON lb_d{i}({});",
                key.select_as("l"),
                qualified("sf", table),
                qualified("bt", table),
                key.generic()
            ))
            .map_err(err(&format!("compare {table}")))?;
        self.conn
            .query_row(&format!("SELECT count(*) FROM temp.lb_d{i}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(err(&format!("compare {table}")))
    }

    /// Of the rows that go, those the backup has under the same key: changed, not gone.
    fn count_updates(&self, i: usize, table: &str, key: &Key) -> Result<u64> {
        self.conn
            .query_row(
                &format!(
                    "SELECT count(*) FROM temp.lb_d{i} AS g WHERE EXISTS (SELECT 1 FROM {} AS b WHERE {})",
                    qualified("bt", table),
                    key.same_generic("g", "b")
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(err(&format!("compare {table}")))
    }

    /// Condition on a backup row `t0` of `table`: the tenant does not keep a live row with its
    /// key (so the row comes in).
    fn not_kept(&self, i: usize, _table: &str, key: &Key) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM {} AS l WHERE {} AND NOT EXISTS (SELECT 1 FROM temp.lb_d{i} AS g WHERE {}))",
            qualified("sf", _table),
            key.same("l", "t0"),
            key.same_generic("g", "l")
        )
    }

    /// Global tables whose rows the backup's tenant rows can reference, with the condition (on
    /// `t0`) selecting those rows in `bt`: all of them, as the backup's copy holds just the
    /// referenced ones ([`TenantCopy::fill_referenced_globals`]).
    fn referenced_globals(&self) -> Vec<(String, String)> {
        self.map
            .tables
            .iter()
            .filter(|(_, o)| matches!(o, Ownership::Global))
            .filter(|(t, _)| {
                self.map
                    .referenced_from_copies(t, "t0", "bt.", "bt.")
                    .is_some()
            })
            .map(|(t, _)| (t.clone(), "1".to_string()))
            .collect()
    }
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
