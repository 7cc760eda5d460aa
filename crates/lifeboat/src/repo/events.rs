//! The event log: an append-only record of what happened to a database (failed backups, alerts
//! sent, full restores), one small JSON object per event at
//! `<db>/events/<time to the ms>-<kind>-<random>.json`, so an incident's timeline can be built
//! afterwards from the repository alone. Names sort by time, so a window is read by listing
//! from its start (S3's `start-after`) and reading only the events inside it. Writing is best
//! effort for callers: a failure to log never fails the work it describes.

use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};
use crate::repo::repository::check_name;
use crate::repo::Repository;

/// A backup (one-shot or the daemon's) failed.
pub const BACKUP_FAILED: &str = "backup.failed";
/// An alert was sent (delivered or not) to the configured channels.
pub const ALERT_SENT: &str = "alert.sent";
/// A whole database was restored from a backup (into a file or D1).
pub const RESTORE_DONE: &str = "restore.done";

/// The longest summary kept: one line, not a log dump.
const SUMMARY_MAX: usize = 500;
/// How long a best-effort log write may hold up the work it describes.
pub const LOG_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Events read at a time.
const READS: usize = 16;

/// One thing that happened to a database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// `backup.failed`, `alert.sent`, `restore.done`, …
    pub kind: String,
    pub database: String,
    /// One line, secrets redacted.
    pub summary: String,
    /// The backup it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<String>,
    /// More facts (an object); never a secret.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl Event {
    /// An event of `kind`, now, on `database`; the summary is made one line and redacted.
    pub fn new(kind: &str, database: &str, summary: &str) -> Event {
        Event {
            at: Utc::now(),
            kind: kind.to_string(),
            database: database.to_string(),
            summary: one_line(summary),
            backup: None,
            details: serde_json::Value::Null,
        }
    }

    /// `backup.failed` for `db` with error `e` (its kind and exit code in the details).
    pub fn backup_failed(db: &str, e: &Error) -> Event {
        Event::new(BACKUP_FAILED, db, &e.to_string()).with_details(serde_json::json!({
            "kind": e.kind.name(),
            "exit_code": e.kind.exit_code(),
        }))
    }

    pub fn with_backup(mut self, id: impl Into<String>) -> Event {
        self.backup = Some(id.into());
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Event {
        self.details = details;
        self
    }
}

/// `s` on one line, without secrets, and not too long.
fn one_line(s: &str) -> String {
    let flat: String = crate::text::redact(s)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match flat.char_indices().nth(SUMMARY_MAX) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// The time part of an event's name: fixed width, so names sort by time.
fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H%M%S%.3fZ").to_string()
}

/// A kind as it may appear in a name.
fn name_part(kind: &str) -> String {
    kind.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(48)
        .collect()
}

impl Repository {
    fn events_prefix(&self, db: &str) -> Key {
        self.backend.root.clone().join(db).join("events")
    }

    /// Append `event` to `db`'s log, under a name no other event has (conditional create).
    pub async fn log_event(&self, db: &str, event: &Event) -> Result<()> {
        check_name(db)?;
        let mut event = event.clone();
        event.summary = one_line(&event.summary);
        let body = serde_json::to_vec_pretty(&event)
            .map_err(|e| Error::new(Kind::Internal, format!("log event: {e}")))?;
        let stem = format!("{}-{}", stamp(event.at), name_part(&event.kind));
        self.put_unique(&self.events_prefix(db), &stem, body, "log event")
            .await
            .map(|_| ())
    }

    /// [`Repository::log_event`] for callers whose work must not wait on, or fail by, the log:
    /// bounded by [`LOG_TIMEOUT`], and a failure is a warning in the log, nothing more.
    pub async fn log_event_best_effort(&self, db: &str, event: &Event) {
        match tokio::time::timeout(LOG_TIMEOUT, self.log_event(db, event)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(database = db, "event {} not logged: {e}", event.kind),
            Err(_) => tracing::warn!(database = db, "event {} not logged: timed out", event.kind),
        }
    }

    /// Whether the repository holds anything of `db` (backups, runs, events): one LIST.
    pub async fn holds(&self, db: &str) -> Result<bool> {
        check_name(db)?;
        let dir = self.backend.root.clone().join(db);
        let listed = self
            .backend
            .store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|e| self.err("list", e))?;
        Ok(!listed.common_prefixes.is_empty() || !listed.objects.is_empty())
    }

    /// `db`'s events from `since` to `until` (both included), oldest first. Only the events
    /// inside the window are read (see [`Repository::stamped_window`]); one that cannot be
    /// parsed is passed over.
    pub async fn events(
        &self,
        db: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        let read = self
            .stamped_window(db, "events", "", since, until)
            .await
            .map_err(|e| e.context("events"))?;
        let mut out: Vec<Event> = read
            .iter()
            .filter_map(|(_, b)| serde_json::from_slice::<Event>(b).ok())
            .filter(|e| e.at >= since && e.at <= until)
            .collect();
        out.sort_by_key(|e| e.at);
        Ok(out)
    }

    /// The objects of `<db>/<folder>/` whose names are `<prefix><time to the ms>…`, with the
    /// time from `since` to `until` (both included): (name, bytes), in name order. The listing
    /// starts at `since` (S3's `start-after`, and it stops past `until`, since S3 lists in key
    /// order), and only the objects inside the window are read. Events, restore records and
    /// drill records are all named so.
    pub async fn stamped_window(
        &self,
        db: &str,
        folder: &str,
        prefix: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(String, bytes::Bytes)>> {
        check_name(db)?;
        if until < since {
            return Ok(Vec::new());
        }
        let dir = self.backend.root.clone().join(db).join(folder);
        let (from, to) = (stamp(since), stamp(until));
        // Every name of the window sorts after `<dir>/<prefix><from>` (a name is `…<from>-…`).
        let offset = dir.clone().join(format!("{prefix}{from}").as_str());
        let ordered = self.backend.s3.is_some();
        let mut keys = Vec::new();
        let mut listing = self.backend.store.list_with_offset(Some(&dir), &offset);
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list", e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let at = name
                .strip_prefix(prefix)
                .and_then(|rest| rest.get(..to.len()))
                .filter(|_| name.ends_with(".json"));
            let Some(at) = at else {
                continue;
            };
            if at > to.as_str() {
                // S3 lists in key order: nothing after this one is in the window.
                if ordered {
                    break;
                }
                continue;
            }
            if at >= from.as_str() {
                keys.push(meta.location);
            }
        }
        keys.sort();
        let store = &self.backend.store;
        let read = futures::stream::iter(keys)
            .map(|key| async move {
                let name = key.filename().unwrap_or_default().to_string();
                match store.get(&key).await {
                    Ok(got) => got.bytes().await.map(|b| Some((name, b))),
                    // Deleted between the listing and the read (a prune): gone.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffered(READS)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.err("read", e))?;
        Ok(read.into_iter().flatten().collect())
    }

    /// Delete `db`'s events older than `before`; returns how many. Used by prune.
    pub async fn forget_events(&self, db: &str, before: DateTime<Utc>) -> Result<usize> {
        check_name(db)?;
        let prefix = self.events_prefix(db);
        let cut = stamp(before);
        let mut old = Vec::new();
        let mut listing = self.backend.store.list(Some(&prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("list events", e))?;
            let older = meta
                .location
                .filename()
                .and_then(|n| n.get(..cut.len()))
                .is_some_and(|at| at < cut.as_str());
            if older {
                old.push(meta.location);
            }
        }
        let n = old.len();
        self.delete_keys(old).await?;
        Ok(n)
    }
}

/// An event's time as shown in a timeline (RFC 3339, to the second).
pub fn shown(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn at(kind: &str, db: &str, when: &str) -> Event {
        Event {
            at: t(when),
            ..Event::new(kind, db, &format!("{kind} at {when}"))
        }
    }

    #[tokio::test]
    async fn a_window_holds_its_events_in_time_order_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::open(&format!("file://{}", dir.path().display()), true).unwrap();
        let times = [
            "2026-03-01T10:00:00.000Z",
            "2026-03-01T11:59:59.999Z",
            "2026-03-01T12:00:00.000Z",
            "2026-03-01T12:30:00.500Z",
            "2026-03-01T12:30:00.500Z",
            "2026-03-01T13:00:00.000Z",
            "2026-03-01T13:00:00.001Z",
            "2026-03-02T00:00:00.000Z",
        ];
        // Written out of order; two in one millisecond.
        for (i, when) in times.iter().enumerate().rev() {
            let kind = if i % 2 == 0 {
                BACKUP_FAILED
            } else {
                ALERT_SENT
            };
            repo.log_event("db", &at(kind, "db", when)).await.unwrap();
        }
        repo.log_event("other", &at(BACKUP_FAILED, "other", times[3]))
            .await
            .unwrap();
        // Garbage and foreign files in the folder are passed over.
        let folder = dir.path().join("db/events");
        std::fs::write(folder.join("2026-03-01T123000.600Z-x-1.json"), "{not json").unwrap();
        std::fs::write(folder.join("README"), "hello").unwrap();

        let got = repo
            .events("db", t("2026-03-01T12:00:00Z"), t("2026-03-01T13:00:00Z"))
            .await
            .unwrap();
        let whens: Vec<String> = got
            .iter()
            .map(|e| e.at.to_rfc3339_opts(SecondsFormat::Millis, true))
            .collect();
        assert_eq!(
            whens,
            [
                "2026-03-01T12:00:00.000Z",
                "2026-03-01T12:30:00.500Z",
                "2026-03-01T12:30:00.500Z",
                "2026-03-01T13:00:00.000Z"
            ]
        );
        assert!(got.iter().all(|e| e.database == "db"));
        let all = repo
            .events("db", t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(all.len(), times.len());
        assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
        let empty = repo
            .events("db", t("2026-03-03T00:00:00Z"), t("2026-03-04T00:00:00Z"))
            .await
            .unwrap();
        assert!(empty.is_empty());
        // An upside-down window and a database without a log: nothing, no error.
        let upside = repo
            .events("db", t("2026-03-02T00:00:00Z"), t("2026-03-01T00:00:00Z"))
            .await
            .unwrap();
        assert!(upside.is_empty());
        assert!(repo
            .events("none", t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z"))
            .await
            .unwrap()
            .is_empty());
        assert!(repo
            .events("../x", t("2000-01-01T00:00:00Z"), Utc::now())
            .await
            .is_err());

        assert_eq!(
            repo.forget_events("db", t("2026-03-01T12:30:00Z"))
                .await
                .unwrap(),
            3
        );
        let left = repo
            .events("db", t("2000-01-01T00:00:00Z"), t("2100-01-01T00:00:00Z"))
            .await
            .unwrap();
        assert_eq!(left.len(), times.len() - 3);
        assert_eq!(left[0].at, t("2026-03-01T12:30:00.500Z"));
    }

    #[test]
    fn summaries_are_one_line_short_and_without_secrets() {
        let e = Event::new(
            BACKUP_FAILED,
            "db",
            &format!(
                "first\nsecond http://key:hunter2@host/x {}",
                "y".repeat(900)
            ),
        );
        assert!(!e.summary.contains('\n'));
        assert!(!e.summary.contains("hunter2"), "{}", e.summary);
        assert!(e.summary.contains("http://***@host/x"));
        assert!(e.summary.chars().count() <= SUMMARY_MAX + 1);
        assert_eq!(name_part("alert.sent/../x y"), "alert.sent_.._x_y");
    }
}
