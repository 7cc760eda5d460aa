//! Run records: how each database's last backup run ended, kept in the repository at
//! `<db>/runs/last.json` (and `<db>/runs/last-failure.json` for the last failure), so `status`
//! reads the same truth from any machine that can read the repository. A one-shot command
//! records only what it stored, or the skip of an unchanged database (a failed command changes
//! nothing); the daemon records its failures too. A skip also leaves
//! `<db>/runs/skipped/<YYYY-MM-DD>.json`, so the gap check knows that day was covered.

use std::collections::BTreeSet;

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

    /// The UTC days on which a run of `db` found it unchanged and skipped it.
    pub async fn skipped_days(&self, db: &str) -> Result<BTreeSet<NaiveDate>> {
        let prefix = self.run_key(db, "skipped");
        let mut days = BTreeSet::new();
        let mut listing = self.backend().store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list skipped days", e))?;
            let day = (meta.location.filename())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
            days.extend(day);
        }
        Ok(days)
    }

    /// The last run of `db`, and its last failure (None where there is no record).
    pub async fn runs(&self, db: &str) -> Result<(Option<Run>, Option<Run>)> {
        Ok((
            self.run(db, "last.json").await?,
            self.run(db, "last-failure.json").await?,
        ))
    }

    async fn run(&self, db: &str, name: &str) -> Result<Option<Run>> {
        let got = match self.backend().store.get(&self.run_key(db, name)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err("read the run record", e)),
        };
        let bytes = got
            .bytes()
            .await
            .map_err(|e| self.err("read the run record", e))?;
        // An unreadable record is no record, not a failed status check.
        Ok(serde_json::from_slice(&bytes).ok())
    }
}
