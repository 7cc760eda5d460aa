//! The foreign-key check of a tenant restore, inside its transaction and limited to what the
//! restore can break: the restored rows' keys must resolve, the inserted global rows' too, and
//! no row may still point at a row the restore removed.

use rusqlite::Connection;

use crate::error::{Error, Kind, Result};
use crate::tenant::map::TenancyMap;
use crate::tenant::rows::{qualified, Key};
use lifeboat_sql::quote_ident;

fn err(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::sqlite(Kind::Database, format!("tenant restore: {what}"), e)
}

/// The foreign-key check of a tenant restore, limited to what it can break: every foreign
/// key of the restored tenant rows and of the inserted global rows must resolve, and no row
/// anywhere may point at a key the restore removed. (`PRAGMA foreign_key_check` on whole
/// tables gives the same answer but reads every row of every touched table.)
pub fn check_references(
    conn: &Connection,
    map: &TenancyMap,
    owned: &[(String, Key)],
    globals: &[(String, String)],
) -> Result<()> {
    // The backup's tenant rows are now the tenant's rows: check them in their copy.
    let mut touched: Vec<(String, String, String)> = owned
        .iter()
        .map(|(t, _)| (t.clone(), qualified("bt", t), "1".to_string()))
        .collect();
    for (table, cond) in globals {
        touched.push((table.clone(), qualified("main", table), cond.clone()));
    }
    for (table, from, cond) in touched {
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
                "SELECT count(*) FROM {from} AS t0 WHERE {cond} AND {} AND NOT EXISTS (SELECT 1 FROM {} AS p WHERE {})",
                not_null.join(" AND "),
                qualified("main", &link.parent),
                join.join(" AND ")
            );
            let n: i64 = conn
                .query_row(&sql, [], |r| r.get(0))
                .map_err(err("foreign_key_check"))?;
            if n > 0 {
                return Err(Error::new(
                    Kind::Database,
                    format!("tenant restore: {n} restored row(s) of {table} point at missing rows of {}; nothing was changed", link.parent),
                ));
            }
        }
    }
    // Rows the restore removed that the backup does not have (added after the backup):
    // nothing may still point at them.
    for (i, (parent, key)) in owned.iter().enumerate() {
        let gone = format!(
            "{} AS l WHERE EXISTS (SELECT 1 FROM temp.lb_d{i} AS g WHERE {}) AND NOT EXISTS (SELECT 1 FROM {} AS b WHERE {})",
            qualified("sf", parent),
            key.same_generic("g", "l"),
            qualified("bt", parent),
            key.same("b", "l")
        );
        let any: bool = conn
            .query_row(&format!("SELECT EXISTS (SELECT 1 FROM {gone})"), [], |r| {
                r.get(0)
            })
            .map_err(err("foreign_key_check"))?;
        if !any {
            continue;
        }
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
                let parent_cols: Vec<String> = link
                    .parent_columns
                    .iter()
                    .map(|c| format!("l.{}", quote_ident(c)))
                    .collect();
                let sql = format!(
                    "SELECT count(*) FROM {} AS c WHERE ({}) IN (SELECT {} FROM {gone})",
                    qualified("main", child),
                    cols.join(", "),
                    parent_cols.join(", ")
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
