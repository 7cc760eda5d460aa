//! Drill records: what each DR drill of a database found, kept at
//! `<db>/drills/drill-<time to the millisecond>-<random>.json` (written with a conditional
//! create, never overwritten), so `drill --history`, `status` and the daemon read the same
//! history from any machine. Names sort in time order, so one LIST gives the history's shape.

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Kind, Result};
use crate::repo::Repository;

/// The time in a drill record's name (`drill-2026-12-01T030000.123Z-…json`).
pub fn drill_time(name: &str) -> Option<DateTime<Utc>> {
    let stamp = name.strip_prefix("drill-")?.get(..22)?;
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

impl Repository {
    fn drills_prefix(&self, db: &str) -> Key {
        self.backend().root.clone().join(db).join("drills")
    }

    /// Store a drill record, started at `at`, under a name no other record has. Returns the name.
    pub async fn put_drill(&self, db: &str, at: DateTime<Utc>, body: Vec<u8>) -> Result<String> {
        let stem = format!("drill-{}", at.format("%Y-%m-%dT%H%M%S%.3fZ"));
        self.put_unique(
            &self.drills_prefix(db),
            &stem,
            body,
            "write the drill record",
        )
        .await
    }

    /// The names of `db`'s drill records, oldest first (one LIST).
    pub async fn drill_names(&self, db: &str) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut stream = self.backend().store.list(Some(&self.drills_prefix(db)));
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.err("list drill records", e))?;
            if let Some(n) = meta.location.filename() {
                if drill_time(n).is_some() && n.ends_with(".json") {
                    names.push(n.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// One drill record, parsed as JSON.
    pub async fn drill_record(&self, db: &str, name: &str) -> Result<serde_json::Value> {
        let key = self.drills_prefix(db).join(name);
        let bytes = self
            .backend()
            .store
            .get(&key)
            .await
            .map_err(|e| self.err("read a drill record", e))?
            .bytes()
            .await
            .map_err(|e| self.err("read a drill record", e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::new(
                Kind::Corrupt,
                format!("drill record {name} of {db} is not JSON: {e}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_time() {
        let t = drill_time("drill-2026-12-01T030000.123Z-0a1b2c3d.json").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-01T03:00:00.123+00:00");
        assert!(drill_time("drill-nonsense.json").is_none());
        assert!(drill_time("backup-2026-12-01T030000Z.json").is_none());
    }
}
