//! Run records: how each database's last backup run ended, kept in the repository at
//! `<db>/runs/last.json` (and `<db>/runs/last-failure.json` for the last failure), so `status`
//! reads the same truth from any machine that can read the repository. A one-shot command
//! records only what it stored, or the skip of an unchanged database (a failed command changes
//! nothing); the daemon records its failures too. A skip also leaves
//! `<db>/runs/skipped/<YYYY-MM-DD>.json`, and prune leaves `<db>/runs/pruned/<YYYY-MM-DD>.json`
//! for the days whose scheduled backups it deleted, so the gap check knows those days were
//! covered.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::repo::Repository;

/// How one run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// The backup it stored, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// What failed, when something did (one line, secrets redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A scheduled run that found the database unchanged since `backup` (its newest good
    /// backup) and stored nothing: the database counts as fresh as of `at`.
    #[serde(default)]
    pub skipped: bool,
}

impl Run {
    /// A run, now, that stored backup `id`.
    pub fn stored(id: impl Into<String>) -> Run {
        Run {
            at: Utc::now(),
            ok: true,
            backup: Some(id.into()),
            error: None,
            skipped: false,
        }
    }

    /// A run, now, that found the database unchanged since its newest good backup `id`.
    pub fn skipped(id: impl Into<String>) -> Run {
        Run {
            skipped: true,
            ..Run::stored(id)
        }
    }

    /// A run, now, that failed with `error` (one line, secrets already redacted).
    pub fn failed(error: impl Into<String>) -> Run {
        Run {
            at: Utc::now(),
            ok: false,
            backup: None,
            error: Some(error.into()),
            skipped: false,
        }
    }
}

impl Repository {
    fn run_key(&self, db: &str, name: &str) -> Key {
        let mut key = self.backend().root.clone().join(db).join("runs");
        for part in name.split('/') {
            key = key.join(part);
        }
        key
    }

    /// Record how a run of `db` ended.
    pub async fn record_run(&self, db: &str, run: &Run) -> Result<()> {
        let body = serde_json::to_vec_pretty(run).expect("json");
        let mut names: Vec<&str> = vec!["last.json"];
        if !run.ok {
            names.push("last-failure.json");
        }
        let day = format!("skipped/{}.json", run.at.format("%Y-%m-%d"));
        if run.skipped {
            names.push(&day);
        }
        for name in names {
            self.backend()
                .store
                .put(&self.run_key(db, name), PutPayload::from(body.clone()))
                .await
                .map_err(|e| self.err("record the run", e))?;
        }
        Ok(())
    }

    /// The UTC days known to have been covered although no backup of theirs is listed: a run
    /// found the database unchanged and skipped it (`runs/skipped/`), or prune deleted that
    /// day's scheduled backups (`runs/pruned/`).
    pub async fn covered_days(&self, db: &str) -> Result<BTreeSet<NaiveDate>> {
        let mut days = BTreeSet::new();
        for folder in ["skipped", "pruned"] {
            days.extend(self.marked_days(db, folder).await?.into_keys());
        }
        Ok(days)
    }

    /// The day markers in `runs/<folder>/`, by day, with their keys.
    async fn marked_days(&self, db: &str, folder: &str) -> Result<BTreeMap<NaiveDate, Key>> {
        let prefix = self.run_key(db, folder);
        let mut days = BTreeMap::new();
        let mut listing = self.backend().store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list covered days", e))?;
            let day = (meta.location.filename())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            if let Some(day) = day {
                days.insert(day, meta.location);
            }
        }
        Ok(days)
    }

    /// Record that prune deleted the scheduled backups of these days: they ran, so the gap
    /// check must not call them missing. Written before the deletion.
    pub async fn record_pruned_days(&self, db: &str, days: &BTreeSet<NaiveDate>) -> Result<()> {
        let body =
            serde_json::to_vec(&serde_json::json!({ "pruned_at": Utc::now() })).expect("json");
        // Owned keys and store handles: the futures outlive no borrow (the daemon spawns this).
        let puts: Vec<(Key, PutPayload)> = (days.iter())
            .map(|d| {
                let key = self.run_key(db, &format!("pruned/{}.json", d.format("%Y-%m-%d")));
                (key, PutPayload::from(body.clone()))
            })
            .collect();
        let store = self.backend().store.clone();
        let done: Vec<_> = futures::stream::iter(puts)
            .map(|(key, body)| {
                let store = store.clone();
                async move { store.put(&key, body).await }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        for r in done {
            r.map_err(|e| self.err("record pruned days", e))?;
        }
        Ok(())
    }

    /// Forget the day markers older than `day` (before the oldest backup kept, where the gap
    /// check never looks). Returns how many went.
    pub async fn forget_days_before(&self, db: &str, day: NaiveDate) -> Result<usize> {
        let mut keys = Vec::new();
        for folder in ["skipped", "pruned"] {
            let marked = self.marked_days(db, folder).await?;
            keys.extend(marked.into_iter().filter(|(d, _)| *d < day).map(|(_, k)| k));
        }
        let n = keys.len();
        self.delete_keys(keys).await?;
        Ok(n)
    }

    /// The last run of `db`, and its last failure (None where there is no record).
    pub async fn runs(&self, db: &str) -> Result<(Option<Run>, Option<Run>)> {
        Ok((
            self.run(db, "last.json").await?,
            self.run(db, "last-failure.json").await?,
        ))
    }

    async fn run(&self, db: &str, name: &str) -> Result<Option<Run>> {
        let key = self.run_key(db, name);
        let Some(bytes) = self.get_if_exists(&key, "read the run record").await? else {
            return Ok(None);
        };
        // An unreadable record is no record, not a failed status check.
        Ok(serde_json::from_slice(&bytes).ok())
    }
}
