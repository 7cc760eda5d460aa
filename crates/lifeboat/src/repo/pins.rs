//! Pins: backups no retention rule may delete (`lifeboat pin ID --reason …`), one small object
//! each at `<db>/pins/<id>.json` holding the reason and when it was pinned.

use std::collections::BTreeMap;

use chrono::Utc;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{Error, Kind, Result};
use crate::repo::Repository;

impl Repository {
    fn pin_key(&self, db: &str, id: &str) -> Key {
        self.backend()
            .root
            .clone()
            .join(db)
            .join("pins")
            .join(format!("{id}.json").as_str())
    }

    /// Pinned backups of `db`: id → reason.
    pub async fn pins(&self, db: &str) -> Result<BTreeMap<String, String>> {
        let store = &self.backend().store;
        let prefix = self.backend().root.clone().join(db).join("pins");
        let mut out = BTreeMap::new();
        let mut listing = store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list pins", e))?;
            let Some(id) = meta
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
                .map(str::to_string)
            else {
                continue;
            };
            let bytes = store
                .get(&meta.location)
                .await
                .map_err(|e| self.err("read pin", e))?
                .bytes()
                .await
                .map_err(|e| self.err("read pin", e))?;
            // An unreadable pin still pins: it only loses its reason.
            let reason = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "(reason unreadable)".into());
            out.insert(id, reason);
        }
        Ok(out)
    }

    /// Pin backup `id` of `db` (it must exist, complete or damaged) with a reason.
    pub async fn pin(&self, db: &str, id: &str, reason: &str) -> Result<()> {
        let listing = self.list(db).await?;
        let known = listing.backups.iter().any(|m| m.id == id)
            || listing.damaged.iter().any(|(d, _)| d == id);
        if !known {
            return Err(Error::new(
                Kind::NotFound,
                format!("pin: {db} has no backup {id}"),
            ));
        }
        let body = serde_json::json!({"id": id, "reason": reason, "pinned_at": Utc::now()});
        self.backend()
            .store
            .put(
                &self.pin_key(db, id),
                PutPayload::from(serde_json::to_vec_pretty(&body).expect("json")),
            )
            .await
            .map_err(|e| self.err("write pin", e))?;
        Ok(())
    }

    /// Unpin backup `id`; whether it was pinned.
    pub async fn unpin(&self, db: &str, id: &str) -> Result<bool> {
        let was = self.pins(db).await?.contains_key(id);
        match self.backend().store.delete(&self.pin_key(db, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(was),
            Err(e) => Err(self.err("remove pin", e)),
        }
    }
}
