//! Listing one database's backups: which are complete, which are damaged (a manifest that
//! cannot be read, or whose data object is missing or the wrong size), what interrupted
//! backups left behind, the day mirrors, and what verification found (the records are listed
//! beside the backups, from their own folder).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::{Error, Kind, Result};
use crate::repo::manifest::Manifest;
use crate::repo::repository::{split_name, CLAIM_SUFFIX, MANIFEST_SUFFIX};
use crate::repo::verify_record::{Bad, VerifyRecord};
use crate::repo::Repository;

/// Manifests read at a time while listing.
pub const MANIFEST_READS: usize = 64;

/// Each backup id's objects: (suffix, size, last modified).
type Objects = BTreeMap<String, Vec<(String, u64, DateTime<Utc>)>>;

/// What the listing read for one id.
enum Read {
    Manifest(Box<Result<Manifest>>),
    Record(Box<Result<Option<VerifyRecord>>>),
}

/// Which verify records a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// Every record (`list`, `status`, choosing what to verify): one object per backup.
    All,
    /// Only the records of backups marked bad (`verify/bad/`): what `latest`, prune, shrinkage
    /// and the catalogue need, for a listing of a few objects. `orphan_records` stays empty.
    Bad,
}

/// A backup id's objects that have no manifest: an interrupted or running backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leftover {
    pub id: String,
    pub objects: Vec<String>,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// What `list` finds for one database.
#[derive(Debug, Default)]
pub struct Listing {
    /// Complete backups, newest first.
    pub backups: Vec<Manifest>,
    /// Objects without a manifest, oldest first.
    pub incomplete: Vec<Leftover>,
    /// Manifests that exist but cannot be read: (id, reason).
    pub damaged: Vec<(String, String)>,
    /// Complete backups whose claim is still there: running (writing its SQL mirror), or
    /// killed after its manifest. Only the claim is a leftover.
    pub claimed: Vec<Leftover>,
    /// Day mirrors (`backup-YYYY-MM-DD.sql`): (day, object name), oldest first; `prune` deletes them with their day.
    pub mirrors: Vec<(String, String)>,
    /// Verify records (`<db>/verify/records/<id>.json`) of the backups listed, by id.
    pub records: BTreeMap<String, VerifyRecord>,
    /// Records whose backup was not listed (pruned while a verify wrote one, or committed
    /// while this listing ran): `cleanup` looks again and removes the first kind.
    pub orphan_records: Vec<String>,
}

impl Listing {
    /// Why backup `id` is bad, if a verify found it so.
    pub fn bad(&self, id: &str) -> Option<&Bad> {
        self.records.get(id).and_then(|r| r.bad.as_ref())
    }

    /// The good backups at `now`, newest first: complete, not safety or one tenant's rows, not
    /// dated in the future, and not found bad by a verify.
    pub fn good(&self, now: DateTime<Utc>) -> impl Iterator<Item = &Manifest> {
        self.backups
            .iter()
            .filter(move |m| m.good_at(now) && self.bad(&m.id).is_none())
    }
}

/// What is wrong with a manifest's data object, as listed: missing, or not the size recorded.
pub(crate) fn data_problem(
    m: &Manifest,
    objects: &[(String, u64, DateTime<Utc>)],
) -> Option<String> {
    let Some(suffix) = m.data_object.strip_prefix(m.id.as_str()) else {
        return None; // a data object under another id: checked when it is read
    };
    match objects.iter().find(|(s, _, _)| s == suffix) {
        None => Some(format!("data object {} is missing", m.data_object)),
        Some((_, size, _)) if *size != m.stored_size => Some(format!(
            "data object {} is {size} bytes, the manifest says {} (truncated or replaced)",
            m.data_object, m.stored_size
        )),
        Some(_) => None,
    }
}

impl Repository {
    /// List one database's backups. Every page is read (object_store follows continuation
    /// tokens), so a repository with thousands of objects is listed whole. Manifests are read
    /// while the listing still pages, [`MANIFEST_READS`] at a time: on S3 both are round
    /// trips, and a history of thousands is bound by them.
    pub async fn list(&self, db: &str) -> Result<Listing> {
        self.list_with(db, Records::All).await
    }

    /// [`Repository::list`], reading the verify records `records` says.
    pub async fn list_with(&self, db: &str, which: Records) -> Result<Listing> {
        let prefix = self.prefix(db);
        // (id, whether it is a verify record rather than a manifest)
        let (found, read) = futures::channel::mpsc::unbounded::<(String, bool)>();
        // The records (or the bad markers) are listed beside the backups, in their own folder.
        let records_found = found.clone();
        let records_at = match which {
            Records::All => self.records_prefix(db),
            Records::Bad => self.bad_markers_prefix(db),
        };
        let records_listed = async move {
            let found = records_found;
            let mut stream = self.backend.store.list(Some(&records_at));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.err("list verify records", e))?;
                let id = (meta.location.filename())
                    .and_then(|n| n.strip_suffix(".json"))
                    .filter(|id| id.starts_with("backup-"));
                if let Some(id) = id {
                    let _ = found.unbounded_send((id.to_string(), true));
                }
            }
            Ok::<_, Error>(())
        };
        let listed = async move {
            let found = found;
            let mut objects: Objects = BTreeMap::new();
            let mut mirrors = Vec::new();
            let mut stream = self.backend.store.list(Some(&prefix));
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.err("list backups", e))?;
                let Some(name) = meta.location.filename() else {
                    continue;
                };
                let Some((id, suffix)) = split_name(name) else {
                    let day = name
                        .strip_prefix("backup-")
                        .and_then(|r| r.strip_suffix(".sql"))
                        .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok());
                    if let Some(day) = day {
                        mirrors.push((day.to_string(), name.to_string()));
                    }
                    continue;
                };
                if suffix == MANIFEST_SUFFIX {
                    // The reader outlives the listing unless it failed: then this is moot.
                    let _ = found.unbounded_send((id.to_string(), false));
                }
                objects.entry(id.to_string()).or_default().push((
                    suffix.to_string(),
                    meta.size,
                    meta.last_modified,
                ));
            }
            Ok::<_, Error>((objects, mirrors))
        };
        let fetching = read
            .map(|(id, record)| async move {
                if record {
                    let r = self.verify_record(db, &id).await;
                    (id, Read::Record(Box::new(r)))
                } else {
                    let m = self.manifest(db, &id).await;
                    (id, Read::Manifest(Box::new(m)))
                }
            })
            .buffer_unordered(MANIFEST_READS)
            .collect::<Vec<(String, Read)>>();
        let (listed, records_listed, fetched) = futures::join!(listed, records_listed, fetching);
        records_listed?;
        let mut manifests = Vec::new();
        let mut records = BTreeMap::new();
        // Every record listed, readable or not (an unreadable one is no record, but an orphan
        // all the same).
        let mut record_ids = std::collections::BTreeSet::new();
        for (id, read) in fetched {
            match read {
                Read::Manifest(m) => manifests.push((id, *m)),
                Read::Record(r) => {
                    let r = (*r)?;
                    record_ids.insert(id.clone());
                    if let Some(r) = r {
                        records.insert(id, r);
                    }
                }
            }
        }
        let fetched = manifests;
        let (mut objects, mut mirrors) = listed?;
        for (id, name, size, modified) in self.local_staging(db) {
            objects.entry(id).or_default().push((name, size, modified));
        }
        let mut listing = Listing::default();
        mirrors.sort();
        listing.mirrors = mirrors;
        for (id, m) in fetched {
            match m {
                // The manifest is the commit point, but it promises a data object: one that
                // was deleted or replaced makes the backup damaged, not complete.
                Ok(m) => match data_problem(&m, &objects[&id]) {
                    Some(why) => listing.damaged.push((id, why)),
                    None => listing.backups.push(m),
                },
                // Deleted between the listing and the read (a prune): gone, not an error.
                Err(e) if e.kind == Kind::NotFound => {}
                Err(e) if e.kind == Kind::Corrupt => {
                    let why = e.to_string();
                    let why = why.strip_prefix(&format!("backup {id}: ")).unwrap_or(&why);
                    listing.damaged.push((id.clone(), why.to_string()))
                }
                Err(e) => return Err(e),
            }
        }
        for (id, objs) in objects {
            if objs.iter().any(|(s, _, _)| s == MANIFEST_SUFFIX) {
                if let Some((_, size, t)) = objs.iter().find(|(s, _, _)| s == CLAIM_SUFFIX) {
                    listing.claimed.push(Leftover {
                        objects: vec![format!("{id}{CLAIM_SUFFIX}")],
                        size: *size,
                        last_modified: *t,
                        id,
                    });
                }
                continue;
            }
            listing.incomplete.push(Leftover {
                objects: objs.iter().map(|(s, _, _)| format!("{id}{s}")).collect(),
                size: objs.iter().map(|(_, n, _)| n).sum(),
                last_modified: objs.iter().map(|(_, _, t)| *t).max().unwrap_or_default(),
                id,
            });
        }
        listing
            .backups
            .sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        listing.damaged.sort();
        // A record whose backup is gone (pruned while a verify wrote it) is a leftover.
        let known: std::collections::BTreeSet<&str> = (listing.backups.iter())
            .map(|m| m.id.as_str())
            .chain(listing.damaged.iter().map(|(id, _)| id.as_str()))
            .collect();
        records.retain(|id, _| known.contains(id.as_str()));
        listing.records = records;
        if which == Records::All {
            listing.orphan_records = (record_ids.into_iter())
                .filter(|id| !known.contains(id.as_str()))
                .collect();
        }
        Ok(listing)
    }

    /// Local repositories only: staging files (`<key>#N`) of multipart uploads that never
    /// finished. object_store hides them from listings, so a crashed backup would leave them
    /// behind unseen. Returns (id, suffix, size, modified).
    fn local_staging(&self, db: &str) -> Vec<(String, String, u64, DateTime<Utc>)> {
        let Some(dir) = self.backend.local_path(&self.prefix(db)) else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((base, n)) = name.split_once('#') else {
                continue;
            };
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            // A backup's objects, or the day's SQL mirror (`backup-YYYY-MM-DD.sql#N`), whose
            // upload was killed.
            let mirror = base
                .strip_suffix(".sql")
                .filter(|id| id.starts_with("backup-"))
                .map(|id| (id, ".sql"));
            let Some((id, suffix)) = split_name(base).or(mirror) else {
                continue;
            };
            let meta = e.metadata().ok();
            let size = meta.as_ref().map_or(0, |m| m.len());
            let modified = meta
                .and_then(|m| m.modified().ok())
                .map(DateTime::<Utc>::from)
                .unwrap_or_default();
            found.push((id.to_string(), format!("{suffix}#{n}"), size, modified));
        }
        found
    }
}
