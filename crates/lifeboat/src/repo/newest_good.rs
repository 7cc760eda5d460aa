//! A database's newest good backup, read cheaply: one listing of names and the manifests of
//! the newest ids only, rather than every manifest `list` reads. A scheduled run asks this of
//! every database it might skip, so a fleet of a thousand costs a thousand listings and about
//! as many small reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::{Kind, Result};
use crate::repo::manifest::Manifest;
use crate::repo::repository::{data_problem, split_name, MANIFEST_SUFFIX};
use crate::repo::retention::id_time;
use crate::repo::Repository;

/// Ids are the time of the snapshot, bumped by a second or more when taken: the newest good
/// backup is among the ids this close to the first good one found.
const ID_SLACK: chrono::Duration = chrono::Duration::minutes(3);

impl Repository {
    /// The newest good backup of `db` at `now` ([`Manifest::good_at`], its data object
    /// present at its recorded size), as `status` would name it.
    pub async fn newest_good(&self, db: &str, now: DateTime<Utc>) -> Result<Option<Manifest>> {
        let mut objects: BTreeMap<String, Vec<(String, u64, DateTime<Utc>)>> = BTreeMap::new();
        let mut stream = self.backend.store.list(Some(&self.prefix(db)));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.err("list backups", e))?;
            let Some((id, suffix)) = meta.location.filename().and_then(split_name) else {
                continue;
            };
            objects.entry(id.to_string()).or_default().push((
                suffix.to_string(),
                meta.size,
                meta.last_modified,
            ));
        }
        let mut best: Option<Manifest> = None;
        // Newest id first.
        for (id, objs) in objects.iter().rev() {
            if !objs.iter().any(|(s, _, _)| s == MANIFEST_SUFFIX) {
                continue;
            }
            if let (Some(b), Some(t)) = (&best, id_time(id)) {
                if t < b.created_at - ID_SLACK {
                    break;
                }
            }
            let m = match self.manifest(db, id).await {
                Ok(m) => m,
                // Pruned since the listing, or unreadable: not good.
                Err(e) if matches!(e.kind, Kind::NotFound | Kind::Corrupt) => continue,
                Err(e) => return Err(e),
            };
            if !m.good_at(now) || data_problem(&m, objs).is_some() {
                continue;
            }
            let newer = best
                .as_ref()
                .is_none_or(|b| (m.created_at, &m.id) > (b.created_at, &b.id));
            if newer {
                best = Some(m);
            }
        }
        Ok(best)
    }
}
