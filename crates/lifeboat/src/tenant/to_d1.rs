//! One tenant into Cloudflare D1 (`restore --tenant --into-d1`): the tenant's rows from a checked
//! backup image, applied with one atomic `wrangler d1 execute --file`. D1 cannot switch triggers
//! off, so the file drops the target's triggers first and recreates them last.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use crate::backup::pipeline::BackupOptions;
use crate::d1::target::pairs;
use crate::d1::D1Target;
use crate::error::{Error, Kind, Result};
use crate::fs::scratch::scratch;
use crate::repo::manifest::Manifest;
use crate::repo::repository::Repository;
use crate::restore::to_d1::safety_backup;
use crate::tenant::rows::key_list;
use lifeboat_sql::quote_ident;

/// What a tenant restore into D1 did.
#[derive(Debug, Clone, Serialize)]
pub struct D1TenantReport {
    pub tenant: String,
    pub backup: String,
    pub database: String,
    pub safety_backup: Option<String>,
    /// Nothing was changed: the import file was written and the target inspected only.
    pub dry_run: bool,
    /// Rows of the tenant per table, in the backup and now in the target (equal on success).
    pub tables: Vec<(String, u64)>,
    pub triggers_recreated: usize,
    pub steps: Vec<(String, u64)>,
}

/// `restore --tenant … --into-d1`: download and check backup `m` in scratch space, then
/// [`restore_tenant_d1`].
pub async fn restore_tenant_from_backup_d1(
    repo: &Repository,
    m: &Manifest,
    target: &D1Target,
    cfg: &crate::tenant::map::TenancyConfig,
    tenant: &str,
    safety: bool,
    dry_run: bool,
) -> Result<D1TenantReport> {
    let tmp = scratch(None)?;
    let image = crate::restore::to_file::fetch_checked(repo, m, tmp.path()).await?;
    let opts = BackupOptions::default();
    restore_tenant_d1(repo, m, &image, target, cfg, tenant, safety, dry_run, &opts).await
}

/// Restore one tenant from `image` into a D1 database with one atomic `wrangler d1 execute
/// --file`: D1 cannot switch triggers off, so the file drops the target's triggers first and
/// recreates them (with their exact SQL) last; between, the tenant's rows are deleted
/// child-first and the backup's inserted parent-first, and referenced global rows are added
/// with `INSERT OR IGNORE` (existing ones are left as they are).
#[allow(clippy::too_many_arguments)]
pub async fn restore_tenant_d1(
    repo: &Repository,
    m: &Manifest,
    image: &Path,
    target: &D1Target,
    cfg: &crate::tenant::map::TenancyConfig,
    tenant: &str,
    safety: bool,
    dry_run: bool,
    opts: &BackupOptions,
) -> Result<D1TenantReport> {
    use crate::tenant::map::{discover, Ownership};
    let mut steps = Vec::new();
    let db = target.database.clone();
    let t = std::time::Instant::now();
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    let file = tmp.path().join("tenant.sql");
    // The target's triggers, to drop and recreate exactly.
    let triggers = pairs(
        &target
            .query(
                "read the target's triggers",
                "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger'",
            )
            .await?,
        "name",
        "sql",
    );
    let lit = {
        let mut b = Vec::new();
        lifeboat_sql::value_literal::push_value(
            &mut b,
            rusqlite::types::ValueRef::Text(tenant.as_bytes()),
            lifeboat_sql::dump::Dialect::D1,
        );
        String::from_utf8(b).expect("ascii-safe literal")
    };
    // One file, streamed: drop the triggers, delete the tenant's rows child-first, the backup's
    // rows, recreate the triggers. Also the tenant's counts in the backup.
    let (map, expected) = {
        let (image, cfg, tenant, file, lit) = (
            image.to_path_buf(),
            cfg.clone(),
            tenant.to_string(),
            file.clone(),
            lit.clone(),
        );
        let triggers = triggers.clone();
        tokio::task::spawn_blocking(
            move || -> Result<(crate::tenant::map::TenancyMap, Vec<(String, u64)>)> {
                let conn = crate::source::sqlite::open_image(&image)
                    .map_err(|e| Error::sqlite(Kind::Internal, "open the image", e))?;
                let map = discover(&conn, &cfg)?;
                crate::tenant::export::check_tenant(&conn, &map, &tenant)
                    .map_err(|e| e.context("in the backup"))?;
                let mut expected = Vec::new();
                for table in map.owned_parents_first() {
                    let cond = map.condition(&table, "t0").expect("owned");
                    let n: i64 = conn
                        .query_row(
                            &format!(
                                "SELECT count(*) FROM {} AS t0 WHERE {cond}",
                                quote_ident(&table)
                            ),
                            [&tenant],
                            |r| r.get(0),
                        )
                        .map_err(|e| Error::sqlite(Kind::Internal, "count the backup's rows", e))?;
                    expected.push((table, n as u64));
                }
                let werr = |e| Error::io("write the import file", e);
                let mut out = std::io::BufWriter::new(std::fs::File::create(&file).map_err(werr)?);
                let mut head = String::from("PRAGMA defer_foreign_keys=TRUE;\n");
                for (name, _) in &triggers {
                    head.push_str(&format!("DROP TRIGGER IF EXISTS {};\n", quote_ident(name)));
                }
                for table in map.owned_parents_first().iter().rev() {
                    let cond = map
                        .condition(table, "t0")
                        .expect("owned")
                        .replace("?1", &lit);
                    head.push_str(&format!(
                        "DELETE FROM {t} WHERE ({}) IN (SELECT {} FROM {t} AS t0 WHERE {cond});\n",
                        key_list(&conn, table, "")?,
                        key_list(&conn, table, "t0")?,
                        t = quote_ident(table)
                    ));
                }
                out.write_all(head.as_bytes()).map_err(werr)?;
                // The rows: data only, globals as INSERT OR IGNORE.
                let mut filter = crate::tenant::export::filter(&map, &tenant);
                filter.data_only = true;
                filter.insert_or_ignore = map
                    .tables
                    .iter()
                    .filter(|(_, o)| matches!(o, Ownership::Global))
                    .map(|(t, _)| t.clone())
                    .collect();
                lifeboat_sql::dump::dump_filtered(
                    &conn,
                    lifeboat_sql::dump::Dialect::D1,
                    &format!("tenant {tenant}"),
                    &mut out,
                    Some(&filter),
                )?;
                for (_, sql) in &triggers {
                    out.write_all(format!("{sql};\n").as_bytes())
                        .map_err(werr)?;
                }
                out.flush().map_err(werr)?;
                Ok((map, expected))
            },
        )
        .await
        .map_err(|e| Error::task("write the tenant's statements", e))??
    };
    steps.push(("prepare".to_string(), t.elapsed().as_millis() as u64));
    if dry_run {
        return Ok(D1TenantReport {
            tenant: tenant.to_string(),
            backup: m.id.clone(),
            database: db,
            safety_backup: None,
            dry_run: true,
            tables: expected,
            triggers_recreated: triggers.len(),
            steps,
        });
    }

    let safety_backup = if safety {
        let t = std::time::Instant::now();
        let label = format!("before restoring tenant {tenant} from {}", m.id);
        let id = safety_backup(repo, target, label, opts)
            .await
            .map_err(|e| e.context("safety backup of the target"))?;
        steps.push((
            "safety backup of the target".to_string(),
            t.elapsed().as_millis() as u64,
        ));
        Some(id)
    } else {
        None
    };

    let t = std::time::Instant::now();
    target
        .execute_file(&file)
        .await
        .map_err(|e| e.context("import (atomic: the target is as it was)"))?;
    steps.push((
        "wrangler d1 execute --file".to_string(),
        t.elapsed().as_millis() as u64,
    ));

    // Verify the tenant's rows per table against the backup.
    let t = std::time::Instant::now();
    let queries = expected
        .iter()
        .map(|(table, _)| {
            let cond = map
                .condition(table, "t0")
                .expect("owned")
                .replace("?1", &lit);
            (
                table.clone(),
                format!("{} AS t0 WHERE {cond}", quote_ident(table)),
            )
        })
        .collect();
    let counted = target.count_rows(queries).await?;
    for (table, n) in &expected {
        if counted.get(table) != Some(n) {
            let got = counted
                .get(table)
                .map_or("no".to_string(), |g| g.to_string());
            return Err(Error::new(
                Kind::Corrupt,
                format!("D1 database {db}: tenant {tenant} has {got} rows in {table}, the backup has {n}"),
            ));
        }
    }
    steps.push((
        "verify the tenant's row counts".to_string(),
        t.elapsed().as_millis() as u64,
    ));
    Ok(D1TenantReport {
        tenant: tenant.to_string(),
        backup: m.id.clone(),
        database: db,
        safety_backup,
        dry_run: false,
        tables: expected,
        triggers_recreated: triggers.len(),
        steps,
    })
}
