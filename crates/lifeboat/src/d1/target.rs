//! A D1 database as a restore target, the one facade the full restore (`restore::to_d1`) and the
//! tenant restore (`tenant::to_d1`) both use: what it holds, running an import file, asking a
//! query, counting rows. Each call runs wrangler on a blocking thread.

use std::collections::BTreeMap;
use std::path::Path;

use crate::d1::Wrangler;
use crate::error::{Error, Result};

/// Where a restore into D1 goes.
#[derive(Debug, Clone)]
pub struct D1Target {
    pub database: String,
    pub remote: bool,
    pub wrangler: Wrangler,
    /// The repository name for the target's safety backup.
    pub backup_name: String,
    /// Import files above this size are split into parts applied in order (D1 takes up to
    /// 5 GB per file); each part is atomic, the whole no longer is.
    pub max_import_file: u64,
}

/// D1 refuses a compound SELECT of more than 5 terms ("too many terms in compound SELECT"),
/// so counts are asked for 5 tables at a time.
const D1_MAX_COMPOUND: usize = 5;

/// D1's limit on one import file.
pub const D1_MAX_IMPORT_FILE: u64 = 5_000_000_000;

impl D1Target {
    /// Rows of a query's (single) result set.
    pub async fn query(&self, step: &'static str, sql: &str) -> Result<Vec<serde_json::Value>> {
        let (w, db, remote, sql) = (
            self.wrangler.clone(),
            self.database.clone(),
            self.remote,
            sql.to_string(),
        );
        tokio::task::spawn_blocking(move || w.query(&db, remote, &sql))
            .await
            .map_err(|e| Error::task(step, e))?
    }

    /// Run an import file with `wrangler d1 execute --file` (atomic, as D1 applies a file).
    pub async fn execute_file(&self, file: &Path) -> Result<String> {
        let (w, db, remote, file) = (
            self.wrangler.clone(),
            self.database.clone(),
            self.remote,
            file.to_path_buf(),
        );
        tokio::task::spawn_blocking(move || w.run(&w.execute_file_args(&db, remote, &file)))
            .await
            .map_err(|e| Error::task("wrangler d1 execute --file", e))?
    }

    /// The user's tables, views and triggers (D1's own `_cf_*` and SQLite's `sqlite_*` objects
    /// excluded), as (type, name).
    pub async fn user_objects(&self) -> Result<Vec<(String, String)>> {
        let rows = self
            .query(
                "inspect the target",
                "SELECT type, name FROM sqlite_schema WHERE type IN ('table','view','trigger') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
            )
            .await?;
        Ok(pairs(&rows, "type", "name"))
    }

    /// Count rows: `queries` are (name, `FROM …` clause without the `FROM`), asked for a few
    /// at a time (D1's compound SELECT limit).
    pub async fn count_rows(
        &self,
        queries: Vec<(String, String)>,
    ) -> Result<BTreeMap<String, u64>> {
        let mut counted = BTreeMap::new();
        for chunk in queries.chunks(D1_MAX_COMPOUND) {
            let sql = chunk
                .iter()
                .map(|(name, from)| {
                    format!(
                        "SELECT '{}' AS t, count(*) AS n FROM {from}",
                        name.replace('\'', "''")
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            for r in self.query("count the rows", &sql).await? {
                if let (Some(t), Some(n)) = (
                    r.get("t").and_then(|v| v.as_str()),
                    r.get("n").and_then(|v| v.as_u64()),
                ) {
                    counted.insert(t.to_string(), n);
                }
            }
        }
        Ok(counted)
    }
}

/// Two text columns of every row that has both.
pub fn pairs(rows: &[serde_json::Value], a: &str, b: &str) -> Vec<(String, String)> {
    rows.iter()
        .filter_map(|r| {
            Some((
                r.get(a)?.as_str()?.to_string(),
                r.get(b)?.as_str()?.to_string(),
            ))
        })
        .collect()
}
