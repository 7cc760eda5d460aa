//! A database's newest good backup, read cheaply: one listing of names and the manifests of
//! the newest ids only, rather than every manifest `list` reads. A scheduled run asks this of
//! every database it might skip, so a fleet of a thousand costs a thousand listings and about
//! as many small reads.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::{Kind, Result};
use crate::repo::listing::data_problem;
use crate::repo::manifest::Manifest;
use crate::repo::repository::{split_name, MANIFEST_SUFFIX};
use crate::repo::retention::id_time;
use crate::repo::Repository;

/// Ids are the time of the snapshot, bumped by a second or more when taken: the newest good
/// backup is among the ids this close to the first good one found.
const ID_SLACK: chrono::Duration = chrono::Duration::minutes(3);

impl Repository {
    /// The newest good backup of `db` at `now` ([`Manifest::good_at`], its data object
    /// present at its recorded size, not found bad by a verify), as `status` would name it.
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
            let record = self.verify_record(db, id).await?;
            if record.is_some_and(|r| r.bad.is_some()) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::repository::DATA_SUFFIX;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn plant(repo: &Repository, id: &str, kind: &str, created: &str, data: bool) {
        let m = serde_json::json!({
            "format_version": 1, "id": id, "database": "db", "kind": kind,
            "created_at": created, "source": {"kind": "sqlite", "path": "/db"},
            "sqlite_version": "3", "page_size": 4096, "page_count": 1, "image_size": 4096,
            "stored_size": 3, "compression": "zstd", "data_object": format!("{id}{DATA_SUFFIX}"),
            "stored_sha256": "", "image_sha256": "", "tables": {}, "schema_sha256": "",
            "duration_ms": 0, "lifeboat_version": "0",
        });
        let store = &repo.backend().store;
        let put = |suffix: &str, body: Vec<u8>| {
            let key = repo.key("db", id, suffix);
            async move { store.put(&key, PutPayload::from(body)).await.unwrap() }
        };
        put(MANIFEST_SUFFIX, serde_json::to_vec(&m).unwrap()).await;
        if data {
            put(DATA_SUFFIX, b"abc".to_vec()).await;
        }
    }

    #[tokio::test]
    async fn passes_over_safety_future_and_damaged_backups() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let repo = Repository::open(&url, true).unwrap();
        let now = DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
            .unwrap()
            .to_utc();
        assert!(repo.newest_good("db", now).await.unwrap().is_none());
        let good = "backup-2026-12-01T020000Z";
        plant(&repo, good, "scheduled", "2026-12-01T02:00:00Z", true).await;
        plant(
            &repo,
            "backup-2026-12-02T020000Z",
            "manual",
            "2026-12-02T02:00:00Z",
            false,
        )
        .await;
        plant(
            &repo,
            "backup-2026-12-03T020000Z",
            "safety",
            "2026-12-03T02:00:00Z",
            true,
        )
        .await;
        plant(
            &repo,
            "backup-2099-01-01T000000Z",
            "scheduled",
            "2099-01-01T00:00:00Z",
            true,
        )
        .await;
        let m = repo.newest_good("db", now).await.unwrap().unwrap();
        assert_eq!(m.id, good);
        // Ids a second apart (a bumped claim): the newer snapshot wins, whatever its id.
        let bumped = "backup-2026-12-04T020001Z";
        plant(&repo, bumped, "scheduled", "2026-12-04T02:00:00.2Z", true).await;
        plant(
            &repo,
            "backup-2026-12-04T020002Z",
            "scheduled",
            "2026-12-04T02:00:00.1Z",
            true,
        )
        .await;
        assert_eq!(
            repo.newest_good("db", now).await.unwrap().unwrap().id,
            bumped
        );
    }
}
