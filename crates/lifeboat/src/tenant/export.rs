//! Single-tenant export: every row of one tenant in every table, the tenant's own row, and the
//! global rows its rows reference (marked as referenced), as JSON, as SQL (either dialect), or as
//! a SQLite file. It replaces the platform's 4-table `/admin/tenants/:id/export`.
//!
//! JSON shape (version 1):
//! ```text
//! { "format": "lifeboat-tenant-export", "version": 1, "tenant": "…", "source": "…",
//!   "tenant_table": "tenants",
//!   "tables":     { "<table>": { "ownership": "<how rows belong>", "rows": [ {col: value} ] } },
//!   "referenced": { "<global table>": { "rows": [ … ] } } }
//! ```
//! Values: NULL → null, INTEGER and REAL → numbers (NaN → null), TEXT → string (text that is
//! not UTF-8 → `{"$text_hex": "…"}`), BLOB → `{"$blob_hex": "…"}`.

use std::collections::BTreeMap;
use std::io::Write;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use std::path::PathBuf;

use lifeboat_sql::dump::{dump_filtered, Dialect, RowFilter};
use lifeboat_sql::quote_ident;

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{resolve_links, FileId, Placement};
use crate::fs::output_file::{refuse_database, write_out};
use crate::restore::image::open_read;
use crate::source::sql_dump::{load, open_dump, ImportOptions};
use crate::source::sqlite::IntegrityCheck;
use crate::tenant::map::{discover, Ownership, TenancyConfig, TenancyMap};

/// Output format of `lifeboat export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Sql,
    Sqlite,
}

impl Format {
    /// Every format by name, as `--format` accepts them.
    pub const CHOICES: &'static [(&'static str, &'static str)] =
        &[("json", ""), ("sql", ""), ("sqlite", "")];
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "sql" => Ok(Format::Sql),
            "sqlite" => Ok(Format::Sqlite),
            _ => Err(format!("unknown format {s:?} (json, sql or sqlite)")),
        }
    }
}

/// Refuse a tenant that does not exist.
pub fn check_tenant(conn: &Connection, map: &TenancyMap, tenant: &str) -> Result<()> {
    let sql = format!(
        "SELECT count(*) FROM {} WHERE {} = ?1",
        quote_ident(&map.tenant_table),
        quote_ident(&map.tenant_key)
    );
    let n: i64 = conn
        .query_row(&sql, [tenant], |r| r.get(0))
        .map_err(|e| Error::sqlite(Kind::Database, "find the tenant", e))?;
    if n == 0 {
        return Err(Error::new(
            Kind::NotFound,
            format!("tenant {tenant:?} not found in table {}", map.tenant_table),
        ));
    }
    Ok(())
}

/// The rows of one tenant (and the global rows they reference), as a dump filter.
pub fn filter(map: &TenancyMap, tenant: &str) -> RowFilter {
    let conditions = map
        .tables
        .keys()
        .filter_map(|t| {
            map.condition(t, "t0")
                .or_else(|| map.referenced_condition(t, "t0"))
                .map(|c| (t.clone(), c))
        })
        .collect();
    RowFilter {
        conditions,
        param: rusqlite::types::Value::Text(tenant.to_string()),
        data_only: false,
        insert_or_ignore: Default::default(),
    }
}

/// Rows per table that `filter` selects: (tenant's tables, referenced global tables).
pub type Counts = (BTreeMap<String, u64>, BTreeMap<String, u64>);

/// Write the JSON export; returns the rows written per table.
pub fn write_json(
    conn: &Connection,
    map: &TenancyMap,
    tenant: &str,
    origin: &str,
    out: &mut dyn Write,
) -> Result<Counts> {
    let io = |e| Error::io("export: write", e);
    let head = serde_json::json!({
        "format": "lifeboat-tenant-export", "version": 1, "tenant": tenant, "source": origin,
        "tenant_table": map.tenant_table,
    })
    .to_string();
    out.write_all(&head.as_bytes()[..head.len() - 1])
        .map_err(io)?;
    let mut owned = BTreeMap::new();
    let mut referenced = BTreeMap::new();
    for (section, is_global) in [("tables", false), ("referenced", true)] {
        write!(out, ",\"{section}\":{{").map_err(io)?;
        let mut first = true;
        for table in map.tables.keys() {
            let global = matches!(map.tables[table], Ownership::Global);
            let cond = if is_global {
                map.referenced_condition(table, "t0")
            } else {
                map.condition(table, "t0")
            };
            let Some(cond) = cond.filter(|_| global == is_global) else {
                continue;
            };
            if !first {
                out.write_all(b",").map_err(io)?;
            }
            first = false;
            let name = serde_json::to_string(table).expect("json");
            if is_global {
                write!(out, "{name}:{{\"rows\":[").map_err(io)?;
            } else {
                let how = serde_json::to_string(&map.describe(table)).expect("json");
                write!(out, "{name}:{{\"ownership\":{how},\"rows\":[").map_err(io)?;
            }
            let n = write_rows(conn, table, &cond, tenant, out)?;
            out.write_all(b"]}").map_err(io)?;
            if is_global {
                &mut referenced
            } else {
                &mut owned
            }
            .insert(table.clone(), n);
        }
        out.write_all(b"}").map_err(io)?;
    }
    out.write_all(b"}\n").map_err(io)?;
    Ok((owned, referenced))
}

fn write_rows(
    conn: &Connection,
    table: &str,
    cond: &str,
    tenant: &str,
    out: &mut dyn Write,
) -> Result<u64> {
    let sql = format!("SELECT * FROM {} AS t0 WHERE {cond}", quote_ident(table));
    let read = |e| Error::sqlite(Kind::Database, format!("export: read {table}"), e);
    let mut stmt = conn.prepare(&sql).map_err(read)?;
    let names: Vec<String> = stmt.column_names().map(|c| c.to_string()).collect();
    let mut rows = stmt.query([tenant]).map_err(read)?;
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(read)? {
        let mut obj = serde_json::Map::new();
        for (i, name) in names.iter().enumerate() {
            obj.insert(name.clone(), json_value(row.get_ref(i).map_err(read)?));
        }
        if n > 0 {
            out.write_all(b",")
                .map_err(|e| Error::io("export: write", e))?;
        }
        serde_json::to_writer(&mut *out, &obj)
            .map_err(|e| Error::new(Kind::Internal, format!("export: {e}")))?;
        n += 1;
    }
    Ok(n)
}

fn json_value(v: ValueRef) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        ValueRef::Null => J::Null,
        ValueRef::Integer(i) => J::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => J::String(s.to_string()),
            Err(_) => serde_json::json!({ "$text_hex": hex::encode(t) }),
        },
        ValueRef::Blob(b) => serde_json::json!({ "$blob_hex": hex::encode(b) }),
    }
}

/// What `lifeboat export` asks for: one tenant of the database at `image`, written to `out`.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub image: PathBuf,
    /// What the image is, for the output's header (`backup … of …`, `database …`).
    pub origin: String,
    pub tenancy: TenancyConfig,
    pub tenant: String,
    pub format: Format,
    pub dialect: Dialect,
    /// A file, or `-` for stdout.
    pub out: String,
    pub force: bool,
    /// Where the SQL of a `--format sqlite` export is staged.
    pub scratch: PathBuf,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub rows: u64,
    /// Where an existing output file was moved, with `--force`.
    pub moved_aside: Option<PathBuf>,
}

/// Export one tenant: its rows and the global rows they reference, as JSON, SQL or a checked
/// SQLite database. The output never replaces a database (`fs::output_file`).
pub fn export_tenant(r: &ExportRequest) -> Result<Exported> {
    let conn = open_read(&r.image)?;
    let map = discover(&conn, &r.tenancy)?;
    check_tenant(&conn, &map, &r.tenant)?;
    let label = format!("tenant {} of {}", r.tenant, r.origin);
    match r.format {
        Format::Json => {
            let ((owned, referenced), moved_aside) =
                write_out(&r.out, r.force, "export", &r.image, |w| {
                    write_json(&conn, &map, &r.tenant, &r.origin, w)
                })?;
            let rows = owned.values().sum::<u64>() + referenced.values().sum::<u64>();
            Ok(Exported { rows, moved_aside })
        }
        Format::Sql => {
            let f = filter(&map, &r.tenant);
            let (stats, moved_aside) = write_out(&r.out, r.force, "export", &r.image, |w| {
                Ok(dump_filtered(&conn, r.dialect, &label, w, Some(&f))?)
            })?;
            Ok(Exported {
                rows: stats.rows,
                moved_aside,
            })
        }
        Format::Sqlite => {
            // Like a dump, an export never replaces a database (an application's live database
            // would be left holding one tenant), nor the one it reads; --force moves other
            // files aside.
            let target = PathBuf::from(&r.out);
            refuse_database(&resolve_links(&target)?.0, &r.image)?;
            let placement = Placement::prepare(&target, r.force, "export")?;
            refuse_database(&placement.target().path, &r.image)?;
            let tmp = placement.tmp().to_path_buf();
            let sql = r.scratch.join("tenant.sql");
            let f = filter(&map, &r.tenant);
            let file = std::fs::File::create(&sql).map_err(|e| Error::io("export", e))?;
            let mut w = std::io::BufWriter::new(file);
            let stats = dump_filtered(&conn, Dialect::Sqlite, &label, &mut w, Some(&f))?;
            w.flush().map_err(|e| Error::io("export", e))?;
            let opts = ImportOptions {
                force: false,
                integrity: IntegrityCheck::Quick,
                foreign_key_check: true,
            };
            load(open_dump(&sql)?, &tmp, &opts)?;
            let moved_aside = placement.commit(FileId::of(&tmp))?;
            Ok(Exported {
                rows: stats.rows,
                moved_aside,
            })
        }
    }
}
