//! The repository: where backups live on an object store, and how they are laid out, claimed,
//! committed (listing is in [`crate::repo::listing`]). Layout, identical on every backend:
//!
//! ```text
//! <db-name>/backups/<id>.pending      claim: taken with a conditional create before upload
//! <db-name>/backups/<id>.sqlite.zst   the zstd-compressed SQLite image
//! <db-name>/backups/<id>.json         the manifest, written last: the commit point
//! <db-name>/verify/records/<id>.json  what verification found (see [`crate::repo::verify_record`])
//! ```

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{GetResultPayload, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Kind, Result};
use crate::repo::claim::Claim;
use crate::repo::manifest::Manifest;
use crate::repo::store::{self, store_error, Backend};

pub use crate::repo::listing::{Leftover, Listing};

pub const DATA_SUFFIX: &str = ".sqlite.zst";
pub const MANIFEST_SUFFIX: &str = ".json";
pub const CLAIM_SUFFIX: &str = ".pending";

/// Multipart part size. S3 wants at least 5 MiB per part but the last.
pub const PART_SIZE: usize = crate::repo::s3_uploads::PART_SIZE;

/// An opened repository.
pub struct Repository {
    pub(crate) backend: Backend,
}

/// The bytes of a data object.
pub enum DataReader {
    File(std::fs::File),
    Stream(BoxStream<'static, Result<Bytes>>),
}

/// Database names become key segments: keep them boring.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            Kind::Config,
            format!("database name {name:?} must be 1-128 characters of A-Z a-z 0-9 - _ . and not start with '.'"),
        ))
    }
}

/// The backup id for a moment: `backup-YYYY-MM-DDTHHMMSSZ`.
pub fn backup_id(at: DateTime<Utc>) -> String {
    at.format("backup-%Y-%m-%dT%H%M%SZ").to_string()
}

/// Split an object's file name into (id, suffix) if it is one of ours.
pub(crate) fn split_name(name: &str) -> Option<(&str, &str)> {
    [DATA_SUFFIX, MANIFEST_SUFFIX, CLAIM_SUFFIX]
        .into_iter()
        .find_map(|suf| name.strip_suffix(suf).map(|id| (id, suf)))
        .filter(|(id, _)| id.starts_with("backup-"))
}

impl Repository {
    pub fn open(url: &str, create: bool) -> Result<Repository> {
        Self::open_with_timeout(url, create, store::DEFAULT_TIMEOUT)
    }

    /// [`Repository::open`] with a network timeout other than the default (S3 only).
    pub fn open_with_timeout(
        url: &str,
        create: bool,
        timeout: std::time::Duration,
    ) -> Result<Repository> {
        Ok(Repository {
            backend: store::open(url, create, timeout)?,
        })
    }

    /// The URL with a local path made absolute, for commands printed to be run from anywhere.
    pub fn absolute_url(&self) -> String {
        match self.url().strip_prefix("file://") {
            Some(p) => format!(
                "file://{}",
                std::path::absolute(p)
                    .unwrap_or_else(|_| p.into())
                    .display()
            ),
            None => self.url().to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.backend.url
    }

    pub(crate) fn err(&self, what: &str, e: object_store::Error) -> Error {
        store_error(&self.backend.url, what, e)
    }

    pub(crate) fn prefix(&self, db: &str) -> Key {
        self.backend.root.clone().join(db).join("backups")
    }

    /// The key of a backup's object with `suffix` (one of the `*_SUFFIX` constants).
    pub fn key(&self, db: &str, id: &str, suffix: &str) -> Key {
        self.prefix(db).join(format!("{id}{suffix}"))
    }

    /// Claim `id` with a conditional create; false when another backup holds it. The claim
    /// names this process (see [`crate::repo::claim`]).
    pub async fn claim(&self, db: &str, id: &str) -> Result<bool> {
        let key = self.key(db, id, CLAIM_SUFFIX);
        let opts = PutOptions::from(PutMode::Create);
        let mine = Claim::mine();
        match self
            .backend
            .store
            .put_opts(&key, PutPayload::from(mine.to_json()), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
            Err(e) => return Err(self.err("claim backup id", e)),
        }
        // Read it back: a store whose conditional create is not atomic (s3s-fs checks, then
        // writes) can let two claims of one id through (a daemon's scheduled backup and its
        // replicator's snapshot in the same second), and only the one whose content stands
        // holds it. The other takes the next id, and leaves the claim to its holder.
        match self.read_claim(db, id).await {
            Some(c)
                if (c.pid, &c.host, &c.boot_id, c.claimed_at)
                    == (mine.pid, &mine.host, &mine.boot_id, mine.claimed_at) => {}
            _ => return Ok(false),
        }
        // A manifest or data object with this id (from an older layout or a manual copy) also
        // means the id is taken.
        for suffix in [MANIFEST_SUFFIX, DATA_SUFFIX] {
            if self.exists(&self.key(db, id, suffix)).await? {
                self.release(db, id).await;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Read a backup id's claim; None when there is none or it cannot be read.
    pub async fn read_claim(&self, db: &str, id: &str) -> Option<Claim> {
        let got = self
            .backend
            .store
            .get(&self.key(db, id, CLAIM_SUFFIX))
            .await
            .ok()?;
        Claim::from_json(&got.bytes().await.ok()?)
    }

    /// Drop a claim; best effort (a stale claim only shows as an incomplete leftover).
    pub async fn release(&self, db: &str, id: &str) {
        let _ = self
            .backend
            .store
            .delete(&self.key(db, id, CLAIM_SUFFIX))
            .await;
    }

    pub(crate) async fn exists(&self, key: &Key) -> Result<bool> {
        match self.backend.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err("check object", e)),
        }
    }

    /// Abandon an upload that failed after `upload` returned: remove the data object.
    pub async fn discard(&self, db: &str, id: &str) {
        let _ = self
            .backend
            .store
            .delete(&self.key(db, id, DATA_SUFFIX))
            .await;
        self.release(db, id).await;
    }

    /// Write the manifest (conditional create): from here on the backup exists.
    pub async fn commit(&self, m: &Manifest) -> Result<()> {
        let key = self.key(&m.database, &m.id, MANIFEST_SUFFIX);
        let opts = PutOptions::from(PutMode::Create);
        match self
            .backend
            .store
            .put_opts(&key, PutPayload::from(m.to_json()), opts)
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                return Err(Error::new(
                    Kind::Internal,
                    format!("manifest {} already exists; refusing to overwrite", m.id),
                ))
            }
            Err(e) => return Err(self.err("write manifest", e)),
        }
        Ok(())
    }

    /// Every database that has a `backups/` folder in this repository.
    pub async fn databases(&self) -> Result<Vec<String>> {
        let root = &self.backend.root;
        let listed = self
            .backend
            .store
            .list_with_delimiter(Some(root))
            .await
            .map_err(|e| self.err("list databases", e))?;
        let mut names: Vec<String> = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    /// The whole object at `key`, or None when there is none; `what` names the read in errors.
    pub async fn get_if_exists(&self, key: &Key, what: &str) -> Result<Option<Bytes>> {
        let got = match self.backend.store.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(what, e)),
        };
        got.bytes().await.map(Some).map_err(|e| self.err(what, e))
    }

    /// Read and parse one manifest.
    pub async fn manifest(&self, db: &str, id: &str) -> Result<Manifest> {
        let key = self.key(db, id, MANIFEST_SUFFIX);
        let got = self.backend.store.get(&key).await;
        let bytes = match got {
            Ok(r) => r.bytes().await.map_err(|e| self.err("read manifest", e))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::new(
                    Kind::NotFound,
                    format!("backup {id} of database {db} not found in {}", self.url()),
                ))
            }
            Err(e) => return Err(self.err("read manifest", e)),
        };
        let m = Manifest::from_json(&bytes).map_err(|e| e.context(format!("backup {id}")))?;
        if m.id != id || m.database != db {
            return Err(Error::new(
                Kind::Corrupt,
                format!(
                    "backup {id}: the manifest describes backup {} of database {} (copied or renamed)",
                    m.id, m.database
                ),
            ));
        }
        Ok(m)
    }

    /// Open the data object of a backup: its size, and either the open file (local
    /// repositories; read with large blocking reads) or a stream of its bytes.
    pub async fn data(&self, m: &Manifest) -> Result<(u64, DataReader)> {
        let key = self.prefix(&m.database).join(m.data_object.as_str());
        let got = match self.backend.store.get(&key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::new(
                    Kind::Corrupt,
                    format!(
                        "backup {} is corrupt: data object {} is missing",
                        m.id, m.data_object
                    ),
                ))
            }
            Err(e) => return Err(self.err("read backup data", e)),
        };
        let size = got.meta.size;
        let reader = match got.payload {
            GetResultPayload::File(file, _) => DataReader::File(file),
            GetResultPayload::Stream(stream) => {
                let url = self.backend.url.clone();
                DataReader::Stream(
                    stream
                        .map_err(move |e| store_error(&url, "read backup data", e))
                        .boxed(),
                )
            }
        };
        Ok((size, reader))
    }

    /// Delete a complete backup: the manifest first, so it stops being listed before its data
    /// goes (an interrupted delete leaves an incomplete leftover, never a listed backup without
    /// data).
    pub async fn delete_backup(&self, m: &Manifest) -> Result<()> {
        self.delete_backup_id(&m.database, &m.id).await
    }

    /// [`Repository::delete_backup`] by id, for a backup whose manifest cannot be read.
    pub async fn delete_backup_id(&self, db: &str, id: &str) -> Result<()> {
        let keys = [MANIFEST_SUFFIX, DATA_SUFFIX]
            .map(|suffix| self.key(db, id, suffix))
            .into_iter()
            .chain([self.bad_marker_key(db, id), self.record_key(db, id)]);
        for key in keys {
            match self.backend.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete backup", e)),
            }
        }
        Ok(())
    }

    /// Delete the objects of an incomplete backup.
    pub async fn remove_leftover(&self, db: &str, leftover: &Leftover) -> Result<()> {
        for name in &leftover.objects {
            let local_dir = self.backend.local_path(&self.prefix(db));
            if let (Some(dir), true) = (local_dir, name.contains('#')) {
                let path = dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("delete leftover {name}"), e)),
                }
            }
            let key = self.prefix(db).join(name.as_str());
            match self.backend.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete leftover", e)),
            }
        }
        Ok(())
    }

    /// Store a restore record under a name no other record has:
    /// `<db>/restores/<time to the millisecond>-<tenant>-<random>.json`, written with a
    /// conditional create. Returns the name.
    pub async fn put_record(&self, db: &str, tenant: &str, body: Vec<u8>) -> Result<String> {
        let safe: String = tenant
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let stamp = Utc::now().format("%Y-%m-%dT%H%M%S%.3fZ");
        let prefix = self.backend.root.clone().join(db).join("restores");
        self.put_unique(
            &prefix,
            &format!("{stamp}-{safe}"),
            body,
            "write restore record",
        )
        .await
    }

    /// Store `body` at `<prefix>/<stem>-<random>.json`, a name no other object has: a
    /// conditional create, tried again under another random part on a clash. Records named by
    /// their time (restores, events, drills) so never overwrite each other. Returns the name.
    pub(crate) async fn put_unique(
        &self,
        prefix: &Key,
        stem: &str,
        body: Vec<u8>,
        what: &str,
    ) -> Result<String> {
        for _ in 0..16 {
            let name = format!("{stem}-{:08x}.json", rand::random::<u32>());
            let opts = PutOptions::from(PutMode::Create);
            match self
                .backend
                .store
                .put_opts(
                    &prefix.clone().join(name.as_str()),
                    PutPayload::from(body.clone()),
                    opts,
                )
                .await
            {
                Ok(_) => return Ok(name),
                Err(object_store::Error::AlreadyExists { .. }) => continue,
                Err(e) => return Err(self.err(what, e)),
            }
        }
        Err(Error::new(Kind::Internal, format!("{what}: no free name")))
    }

    /// All restore records of a database, oldest first.
    pub async fn records(&self, db: &str) -> Result<Vec<serde_json::Value>> {
        let prefix = self.backend.root.clone().join(db).join("restores");
        let mut keys: Vec<Key> = Vec::new();
        let mut stream = self.backend.store.list(Some(&prefix));
        while let Some(meta) = stream.next().await {
            keys.push(
                meta.map_err(|e| self.err("list restore records", e))?
                    .location,
            );
        }
        keys.sort();
        let mut out = Vec::new();
        for key in keys {
            let bytes = self
                .backend
                .store
                .get(&key)
                .await
                .map_err(|e| self.err("read restore record", e))?
                .bytes()
                .await
                .map_err(|e| self.err("read restore record", e))?;
            if let Ok(v) = serde_json::from_slice(&bytes) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Raw store access for tests and tools that need to plant or inspect objects.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let t = DateTime::parse_from_rfc3339("2026-11-20T03:04:05Z")
            .unwrap()
            .to_utc();
        assert_eq!(backup_id(t), "backup-2026-11-20T030405Z");
        assert_eq!(
            split_name("backup-2026-11-20T030405Z.sqlite.zst"),
            Some(("backup-2026-11-20T030405Z", DATA_SUFFIX))
        );
        assert_eq!(split_name("notes.txt"), None);
        assert!(check_name("studio-platform-db").is_ok());
        assert!(check_name("../x").is_err());
        assert!(check_name("").is_err());
    }
}
