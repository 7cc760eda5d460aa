//! Verify records: what each rung of verification last found for one backup, kept at
//! `<db>/verify/records/<id>.json`, and whether the backup is *bad*. A bad backup failed a check
//! for a reason of its own (a checksum, a missing object, an integrity failure: never the
//! network's or the scratch disk's); it stops counting as good everywhere (`latest`, retention,
//! staleness, skipping) and prune deletes it once `keep_bad_within` has passed since it was found.
//!
//! Badness is sticky: only a passing check of the same rung or a harder one clears it (an
//! operator who copies a lost object back, then runs a restore-test).

use chrono::{DateTime, Utc};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repo::Repository;

const FORMAT_VERSION: u32 = 1;

/// The rungs of the verification ladder, cheapest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rung {
    /// The manifest parses and its data object exists at the recorded size.
    Catalogue,
    /// Every stored byte read and checked against the manifest's checksums.
    Read,
    /// Restored into scratch: integrity, foreign keys, row counts and schema hash.
    RestoreTest,
}

impl std::fmt::Display for Rung {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Rung::Catalogue => "catalogue",
            Rung::Read => "read",
            Rung::RestoreTest => "restore-test",
        })
    }
}

/// One check's last result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub at: DateTime<Utc>,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(default)]
    pub duration_ms: u64,
}

/// Why and since when a backup is bad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bad {
    /// When a check first found it bad (kept while later checks fail too).
    pub since: DateTime<Utc>,
    pub rung: Rung,
    pub problem: String,
}

/// `<db>/verify/records/<id>.json`. Out of `backups/`, so a listing of the backups (the
/// catalogue's critical path) pages through a third fewer objects, and the records are listed
/// beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyRecord {
    pub format_version: u32,
    pub id: String,
    pub database: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue: Option<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_test: Option<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<Bad>,
}

impl VerifyRecord {
    pub fn new(db: &str, id: &str) -> VerifyRecord {
        VerifyRecord {
            format_version: FORMAT_VERSION,
            id: id.to_string(),
            database: db.to_string(),
            catalogue: None,
            read: None,
            restore_test: None,
            bad: None,
        }
    }

    /// Parse a record; None for one this lifeboat cannot read (treated as no record).
    pub fn from_json(bytes: &[u8]) -> Option<VerifyRecord> {
        serde_json::from_slice::<VerifyRecord>(bytes)
            .ok()
            .filter(|r| r.format_version == FORMAT_VERSION)
    }

    /// Add a check's result: a failure makes the backup bad (keeping the first time it was
    /// found), a pass of this rung or a harder one clears a badness found by it.
    pub fn add(&mut self, rung: Rung, check: Check) {
        if check.ok {
            if self.bad.as_ref().is_some_and(|b| b.rung <= rung) {
                self.bad = None;
            }
        } else if self.bad.is_none() {
            self.bad = Some(Bad {
                since: check.at,
                rung,
                problem: check.problem.clone().unwrap_or_default(),
            });
        }
        *self.slot(rung) = Some(check);
    }

    fn slot(&mut self, rung: Rung) -> &mut Option<Check> {
        match rung {
            Rung::Catalogue => &mut self.catalogue,
            Rung::Read => &mut self.read,
            Rung::RestoreTest => &mut self.restore_test,
        }
    }

    /// The most recent check of any rung.
    pub fn last(&self) -> Option<(Rung, &Check)> {
        [
            (Rung::Catalogue, &self.catalogue),
            (Rung::Read, &self.read),
            (Rung::RestoreTest, &self.restore_test),
        ]
        .into_iter()
        .filter_map(|(r, c)| c.as_ref().map(|c| (r, c)))
        .max_by_key(|(r, c)| (c.at, *r))
    }
}

impl Repository {
    /// Where backup `id`'s verify record lives.
    pub fn record_key(&self, db: &str, id: &str) -> Key {
        self.records_prefix(db).join(format!("{id}.json").as_str())
    }

    pub(crate) fn records_prefix(&self, db: &str) -> Key {
        self.backend()
            .root
            .clone()
            .join(db)
            .join("verify")
            .join("records")
    }

    /// Where backup `id`'s bad marker lives: present while its record says bad, so finding the
    /// bad backups lists a folder of a few objects instead of one record per backup.
    pub fn bad_marker_key(&self, db: &str, id: &str) -> Key {
        self.bad_markers_prefix(db)
            .join(format!("{id}.json").as_str())
    }

    pub(crate) fn bad_markers_prefix(&self, db: &str) -> Key {
        self.backend()
            .root
            .clone()
            .join(db)
            .join("verify")
            .join("bad")
    }

    /// The verify record of backup `id`; None when there is none or it cannot be read.
    pub async fn verify_record(&self, db: &str, id: &str) -> Result<Option<VerifyRecord>> {
        let key = self.record_key(db, id);
        let Some(bytes) = self.get_if_exists(&key, "read verify record").await? else {
            return Ok(None);
        };
        Ok(VerifyRecord::from_json(&bytes).filter(|r| r.id == id && r.database == db))
    }

    /// Add one check's result to backup `id`'s record (read, changed, written back whole) and
    /// return the record. Two verifies of one backup at once may lose one's rung: the next run
    /// writes it again.
    pub async fn record_check(
        &self,
        db: &str,
        id: &str,
        rung: Rung,
        check: Check,
    ) -> Result<VerifyRecord> {
        let mut record = self
            .verify_record(db, id)
            .await?
            .unwrap_or_else(|| VerifyRecord::new(db, id));
        record.add(rung, check);
        let store = &self.backend().store;
        let marker = self.bad_marker_key(db, id);
        // The marker before a bad record, and gone only after a good one: a crash between
        // leaves a marker too many, which readers check against the record, never one too few.
        if let Some(bad) = &record.bad {
            let body = serde_json::to_vec(bad).expect("bad serializes");
            store
                .put(&marker, PutPayload::from(body))
                .await
                .map_err(|e| self.err("write bad marker", e))?;
        }
        let mut body = serde_json::to_vec_pretty(&record).expect("record serializes");
        body.push(b'\n');
        store
            .put(&self.record_key(db, id), PutPayload::from(body))
            .await
            .map_err(|e| self.err("write verify record", e))?;
        if record.bad.is_none() {
            match store.delete(&marker).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete bad marker", e)),
            }
        }
        Ok(record)
    }
}

impl Repository {
    /// Delete the records among `ids` whose backup has no manifest (looked at again now: one
    /// may have been committed while the listing that found the record ran). Returns those
    /// deleted.
    pub async fn forget_orphan_records(&self, db: &str, ids: &[String]) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        for id in ids {
            let manifest = self.key(db, id, crate::repo::repository::MANIFEST_SUFFIX);
            if self.exists(&manifest).await? {
                continue;
            }
            for key in [self.bad_marker_key(db, id), self.record_key(db, id)] {
                match self.backend().store.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(self.err("delete verify record", e)),
                }
            }
            gone.push(id.clone());
        }
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(at: &str, ok: bool) -> Check {
        Check {
            at: DateTime::parse_from_rfc3339(at).unwrap().to_utc(),
            ok,
            problem: (!ok).then(|| "sha256 mismatch".to_string()),
            duration_ms: 1,
        }
    }

    #[test]
    fn badness_is_sticky_until_a_harder_check_passes() {
        let mut r = VerifyRecord::new("db", "backup-2026-12-01T020000Z");
        r.add(Rung::Read, check("2026-12-01T03:00:00Z", false));
        r.add(Rung::Read, check("2026-12-02T03:00:00Z", false));
        assert_eq!(
            r.bad.as_ref().unwrap().since.to_rfc3339(),
            "2026-12-01T03:00:00+00:00"
        );
        // A catalogue pass says nothing about the bytes.
        r.add(Rung::Catalogue, check("2026-12-03T03:00:00Z", true));
        assert!(r.bad.is_some());
        r.add(Rung::RestoreTest, check("2026-12-04T03:00:00Z", true));
        assert!(r.bad.is_none());
        assert_eq!(r.last().unwrap().0, Rung::RestoreTest);
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(VerifyRecord::from_json(&json), Some(r));
        assert_eq!(VerifyRecord::from_json(b"{\"format_version\": 9}"), None);
    }
}
