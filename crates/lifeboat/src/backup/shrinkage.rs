//! The shrinkage hold: a backup whose tables lost more than `shrink_alert` of their rows since
//! the previous good backup (an accidental mass delete, a dropped table) holds that previous
//! backup, so retention cannot rotate the last good state out while someone looks.

use serde::Serialize;

use crate::error::Result;
use crate::repo::listing::Records;
use crate::repo::marks::MarkKind;
use crate::repo::{Manifest, Repository};

/// What shrank, and which backup it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Shrinkage {
    /// The backup before the drop, now held.
    pub held: String,
    /// (table, rows before, rows now); a dropped table has 0 rows now.
    pub tables: Vec<(String, u64, u64)>,
}

/// Compare backup `m` with the previous good backup of its database; if a table dropped by
/// more than `shrink_alert` (a fraction), hold the previous one and say what shrank.
pub async fn check(
    repo: &Repository,
    m: &Manifest,
    shrink_alert: f64,
) -> Result<Option<Shrinkage>> {
    if !m.kind.selectable() || m.tenant.is_some() {
        return Ok(None);
    }
    let listing = repo.list_with(&m.database, Records::Bad).await?;
    let Some(before) = listing
        .backups
        .iter()
        .filter(|b| b.kind.selectable() && b.tenant.is_none() && b.id != m.id)
        .filter(|b| listing.bad(&b.id).is_none())
        .filter(|b| b.created_at <= m.created_at)
        .max_by_key(|b| (b.created_at, b.id.clone()))
    else {
        return Ok(None);
    };
    let tables = shrunk(before, m, shrink_alert);
    if tables.is_empty() {
        return Ok(None);
    }
    let what: Vec<String> = tables
        .iter()
        .map(|(t, a, b)| format!("{t} {a} -> {b}"))
        .collect();
    let reason = format!("rows dropped in {}: {}", m.id, what.join(", "));
    repo.mark(MarkKind::Hold, &m.database, &before.id, &reason)
        .await?;
    Ok(Some(Shrinkage {
        held: before.id.clone(),
        tables,
    }))
}

/// Tables smaller than this are not watched: a queue or lock table that empties itself is not
/// a mass delete.
pub const MIN_ROWS: u64 = 10;

/// The tables of `before` (of at least [`MIN_ROWS`] rows) that lost more than `fraction` of
/// their rows in `now`.
pub fn shrunk(before: &Manifest, now: &Manifest, fraction: f64) -> Vec<(String, u64, u64)> {
    before
        .tables
        .iter()
        .filter(|(t, _)| !t.starts_with("sqlite_"))
        .filter_map(|(t, &a)| {
            let b = now.tables.get(t).copied().unwrap_or(0);
            (a >= MIN_ROWS && b < a && (a - b) as f64 / a as f64 > fraction)
                .then(|| (t.clone(), a, b))
        })
        .collect()
}
