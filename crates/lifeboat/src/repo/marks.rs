//! Marks on backups that retention must respect, one small object each at
//! `<db>/<pins|holds>/<id>.json` with a reason and a time:
//! - a **pin** (`lifeboat pin ID --reason …`) keeps a backup until `unpin`;
//! - a **hold** is set by a backup that finds a table shrunk past `shrink_alert`, on the last
//!   good backup before the drop, and keeps it until `lifeboat release ID` or `hold_within`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};
use crate::repo::repository::MANIFEST_SUFFIX;
use crate::repo::Repository;

/// Which kind of mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Pin,
    Hold,
}

impl MarkKind {
    fn folder(self) -> &'static str {
        match self {
            MarkKind::Pin => "pins",
            MarkKind::Hold => "holds",
        }
    }
}

/// A mark's reason and when it was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub id: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

impl Repository {
    fn mark_key(&self, kind: MarkKind, db: &str, id: &str) -> Key {
        self.backend()
            .root
            .clone()
            .join(db)
            .join(kind.folder())
            .join(format!("{id}.json").as_str())
    }

    /// The marks of one kind on `db`'s backups, by id.
    pub async fn marks(&self, kind: MarkKind, db: &str) -> Result<BTreeMap<String, Mark>> {
        let store = &self.backend().store;
        let prefix = self.backend().root.clone().join(db).join(kind.folder());
        let mut out = BTreeMap::new();
        let mut listing = store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list marks", e))?;
            let Some(id) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            // Removed between the listing and the read: no mark.
            if let Some(mark) = self.read_mark(&meta.location, &id).await? {
                out.insert(id, mark);
            }
        }
        Ok(out)
    }

    /// The ids of `db`'s backups that have a mark of this kind: one listing, no reads.
    pub async fn mark_ids(&self, kind: MarkKind, db: &str) -> Result<BTreeSet<String>> {
        let prefix = self.backend().root.clone().join(db).join(kind.folder());
        let mut listing = self.backend().store.list(Some(&prefix));
        let mut out = BTreeSet::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list marks", e))?;
            if let Some(id) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            {
                out.insert(id.to_string());
            }
        }
        Ok(out)
    }

    /// The mark of one kind on backup `id` of `db`, if there is one: one GET, no listing.
    pub async fn mark_of(&self, kind: MarkKind, db: &str, id: &str) -> Result<Option<Mark>> {
        self.read_mark(&self.mark_key(kind, db, id), id).await
    }

    async fn read_mark(&self, key: &Key, id: &str) -> Result<Option<Mark>> {
        let got = match self.backend().store.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read mark", e)),
        };
        let modified = got.meta.last_modified;
        let bytes = got.bytes().await.map_err(|e| self.err("read mark", e))?;
        // An unreadable mark still counts: it only loses its reason (and is as old as its object).
        Ok(Some(serde_json::from_slice::<Mark>(&bytes).unwrap_or(
            Mark {
                id: id.to_string(),
                reason: "(reason unreadable)".into(),
                at: modified,
            },
        )))
    }

    /// Set a mark on backup `id` of `db` (it must exist, complete or damaged).
    pub async fn mark(&self, kind: MarkKind, db: &str, id: &str, reason: &str) -> Result<()> {
        if !self.has_backup(db, id).await? {
            return Err(Error::new(
                Kind::NotFound,
                format!("{db} has no backup {id}"),
            ));
        }
        let mark = Mark {
            id: id.to_string(),
            reason: reason.to_string(),
            at: Utc::now(),
        };
        self.backend()
            .store
            .put(
                &self.mark_key(kind, db, id),
                PutPayload::from(serde_json::to_vec_pretty(&mark).expect("json")),
            )
            .await
            .map_err(|e| self.err("write mark", e))?;
        // A prune may have deleted the backup meanwhile: then the mark protects nothing. (A
        // prune reads the marks again once a manifest is gone, and puts it back if marked.)
        if !self.has_backup(db, id).await? {
            let _ = self.unmark(kind, db, id).await;
            return Err(Error::new(
                Kind::NotFound,
                format!("{db} has no backup {id} (it was deleted meanwhile)"),
            ));
        }
        Ok(())
    }

    /// A backup, complete or damaged, is one with a manifest: one HEAD, not a listing of
    /// thousands.
    async fn has_backup(&self, db: &str, id: &str) -> Result<bool> {
        self.exists(&self.key(db, id, MANIFEST_SUFFIX)).await
    }

    /// Remove a mark; whether there was one.
    pub async fn unmark(&self, kind: MarkKind, db: &str, id: &str) -> Result<bool> {
        let was = self.mark_of(kind, db, id).await?.is_some();
        match self
            .backend()
            .store
            .delete(&self.mark_key(kind, db, id))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(was),
            Err(e) => Err(self.err("remove mark", e)),
        }
    }
}
