//! Which backups replicated generations stand on, so that retention never deletes the snapshot
//! of a generation that is kept. The generation records are `replicate::layout`'s (a higher
//! layer); only their `snapshot` field is read here, from `<db>/generations/<id>/generation.json`.
//!
//! A replicator writes a generation's snapshot before its record, so a snapshot whose record is
//! not there yet is recognised by its label (`replication snapshot (<gen-id>)`) and kept for
//! [`STARTING_GRACE`]; after that, a record that never came means the generation was never
//! finished, and its snapshot is an ordinary backup again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::Result;
use crate::repo::{Manifest, Repository};

/// How long a snapshot whose generation has no record yet is kept: far longer than a
/// replicator takes from its snapshot to its record.
pub const STARTING_GRACE: Duration = Duration::from_secs(3600);

/// Generations read at once.
const CONCURRENCY: usize = 16;

/// The label a replicator gives a generation's snapshot.
pub fn snapshot_label(generation: &str) -> String {
    format!("replication snapshot ({generation})")
}

/// The generation a backup's label says it is the snapshot of.
fn labelled_generation(m: &Manifest) -> Option<&str> {
    m.label
        .as_deref()?
        .strip_prefix("replication snapshot (")?
        .strip_suffix(')')
}

#[derive(serde::Deserialize)]
struct Record {
    snapshot: String,
}

/// The generations of `db` that have a record, and the backup each stands on. A record that
/// cannot be read names nothing (it is no usable generation); a repository that cannot be
/// listed or read is an error, so a prune stops rather than delete what may be needed.
pub async fn generation_snapshots(repo: &Repository, db: &str) -> Result<BTreeMap<String, String>> {
    let prefix = repo.backend().root.clone().join(db).join("generations");
    let listed = repo
        .backend()
        .store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| repo.err("list generations", e))?;
    let ids: Vec<String> = (listed.common_prefixes.iter())
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| n.starts_with("gen-"))
        .collect();
    let read: Vec<Result<Option<(String, String)>>> = futures::stream::iter(ids)
        .map(|id| {
            let key = prefix.clone().join(id.as_str()).join("generation.json");
            async move {
                let Some(bytes) = repo.get_if_exists(&key, "read generation").await? else {
                    return Ok(None);
                };
                Ok(serde_json::from_slice::<Record>(&bytes)
                    .ok()
                    .map(|r| (id, r.snapshot)))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let mut out = BTreeMap::new();
    for r in read {
        if let Some((id, snapshot)) = r? {
            out.insert(id, snapshot);
        }
    }
    Ok(out)
}

/// The backups among `backups` that a generation needs, with why: the snapshot of every
/// generation in `generations` (id → snapshot) not in `dropping`, and a labelled snapshot whose
/// generation has no record yet and that is younger than [`STARTING_GRACE`].
pub fn needed_snapshots(
    backups: &[Manifest],
    generations: &BTreeMap<String, String>,
    dropping: &BTreeSet<String>,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (gen, snapshot) in generations.iter().filter(|(g, _)| !dropping.contains(*g)) {
        out.insert(
            snapshot.clone(),
            format!("snapshot of replicated generation {gen}"),
        );
    }
    let grace = chrono::Duration::from_std(STARTING_GRACE).unwrap_or_default();
    for m in backups {
        let Some(gen) = labelled_generation(m) else {
            continue;
        };
        if !generations.contains_key(gen) && !dropping.contains(gen) && m.created_at + grace > now {
            out.entry(m.id.clone())
                .or_insert_with(|| format!("snapshot of generation {gen}, being started"));
        }
    }
    out
}
