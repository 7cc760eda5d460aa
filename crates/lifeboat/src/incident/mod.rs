//! Incident records: a post-mortem started as a Markdown file following the runbook's
//! "Post-Incident Review" sections, its timeline pre-filled from what the repository knows of
//! the window: backups (and their restore-tests), failures and alerts sent (the event log),
//! full and tenant restores, and drills. Only the window is read: every one of these records is
//! named by its time, so each folder is listed from the window's start.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, NaiveDateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Kind, Result};
use crate::repo::manifest::human_size;
use crate::repo::repository::{CLAIM_SUFFIX, DATA_SUFFIX, MANIFEST_SUFFIX};
use crate::repo::verify_record::{Rung, VerifyRecord};
use crate::repo::Repository;
use crate::text::escape;

/// Rows a timeline shows at most; the rest is counted, not listed.
mod report;

use report::shown;
pub use report::{list, render, slug, write_new, Header, Listed};

pub const MAX_ENTRIES: usize = 2000;
/// Where incident files go, under the chosen directory.
pub const FOLDER: &str = "incidents";

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub database: String,
    /// What kind of record: `backup`, `backup.failed`, `alert.sent`, `restore.done`,
    /// `tenant.restore`, `restore-test`, `drill`, …
    pub what: String,
    /// One line.
    pub text: String,
}

/// The timeline of a window over some databases, oldest first.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timeline {
    pub entries: Vec<Entry>,
}

/// Gather the timeline of `dbs` from `since` to `until`.
pub async fn timeline(
    repo: &Repository,
    dbs: &[String],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Timeline> {
    let mut entries = Vec::new();
    for db in dbs {
        entries.extend(backups(repo, db, since, until).await?);
        for e in repo.events(db, since, until).await? {
            let mut text = e.summary.clone();
            if let Some(b) = e.backup.as_ref().filter(|b| !text.contains(b.as_str())) {
                text = format!("{text} (backup {b})");
            }
            entries.push(Entry {
                at: e.at,
                database: db.clone(),
                what: e.kind,
                text,
            });
        }
        for (_, body) in repo
            .stamped_window(db, "restores", "", since, until)
            .await?
        {
            if let Some(e) = serde_json::from_slice(&body)
                .ok()
                .and_then(|v| tenant_restore(db, &v))
            {
                entries.push(e);
            }
        }
        for (name, body) in repo
            .stamped_window(db, "drills", "drill-", since, until)
            .await?
        {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            entries.push(drill(db, &name, &v));
        }
    }
    entries.retain(|e| e.at >= since && e.at <= until);
    entries.sort_by(|a, b| (a.at, &a.database).cmp(&(b.at, &b.database)));
    Ok(Timeline { entries })
}

/// The time in a backup id (`backup-YYYY-MM-DDTHHMMSSZ`).
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let t = id.strip_prefix("backup-")?;
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The backups of `db` in the window, from one listing that starts at the window (an id is its
/// snapshot's time, give or take a bumped second): complete ones with their restore-test,
/// damaged and interrupted ones named as such.
async fn backups(
    repo: &Repository,
    db: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Vec<Entry>> {
    let margin = chrono::Duration::hours(1);
    let (lo, hi) = (
        crate::repo::repository::backup_id(since - margin),
        crate::repo::repository::backup_id(until + margin),
    );
    let prefix = repo.prefix(db);
    let offset = prefix.clone().join(lo.as_str());
    let ordered = repo.backend().s3.is_some();
    let mut objects: BTreeMap<String, BTreeMap<&'static str, u64>> = BTreeMap::new();
    let mut listing = repo
        .backend()
        .store
        .list_with_offset(Some(&prefix), &offset);
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| repo.err("list backups", e))?;
        let Some(name) = meta.location.filename() else {
            continue;
        };
        let found = [DATA_SUFFIX, MANIFEST_SUFFIX, CLAIM_SUFFIX]
            .into_iter()
            .find_map(|s| name.strip_suffix(s).map(|id| (id, s)));
        let Some((id, suffix)) = found.filter(|(id, _)| id_time(id).is_some()) else {
            continue;
        };
        if id > hi.as_str() {
            if ordered {
                break;
            }
            continue;
        }
        objects
            .entry(id.to_string())
            .or_default()
            .insert(suffix, meta.size);
    }
    let reads = futures::stream::iter(objects)
        .map(|(id, objs)| async move {
            let m = if objs.contains_key(MANIFEST_SUFFIX) {
                Some(repo.manifest(db, &id).await)
            } else {
                None
            };
            // A record that cannot be read is no record: the backup's line still stands.
            let verify = if objs.contains_key(MANIFEST_SUFFIX) {
                repo.verify_record(db, &id).await.ok().flatten()
            } else {
                None
            };
            (id, objs, m, verify)
        })
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    for (id, objs, m, verify) in reads {
        let id_at = id_time(&id).unwrap_or(since);
        let entry = |at, what: &str, text: String| Entry {
            at,
            database: db.to_string(),
            what: what.to_string(),
            text,
        };
        match m {
            Some(Ok(m)) => {
                let mut text = format!(
                    "{} {} backup stored: {} tables, {} rows, {}",
                    m.id,
                    m.kind,
                    m.tables.len(),
                    m.total_rows(),
                    human_size(m.stored_size)
                );
                if let Some(l) = &m.label {
                    let _ = write!(text, ", label {:?}", escape(l).as_ref());
                }
                match objs.get(DATA_SUFFIX) {
                    None if m.data_object == format!("{}{DATA_SUFFIX}", m.id) => {
                        text.push_str("; DAMAGED: its data object is missing")
                    }
                    Some(size) if *size != m.stored_size => {
                        let _ = write!(
                            text,
                            "; DAMAGED: its data object is {size} bytes, the manifest says {}",
                            m.stored_size
                        );
                    }
                    _ => {}
                }
                out.push(entry(m.created_at, "backup", text));
            }
            Some(Err(e)) if e.kind == Kind::NotFound => continue, // pruned meanwhile
            Some(Err(e)) if e.kind == Kind::Corrupt => {
                out.push(entry(id_at, "backup", format!("{id} DAMAGED: {e}")));
            }
            Some(Err(e)) => return Err(e),
            None if objs.contains_key(DATA_SUFFIX) || objs.contains_key(CLAIM_SUFFIX) => {
                let text = format!(
                    "{id} incomplete: objects without a manifest (an interrupted backup, or one still running)"
                );
                out.push(entry(id_at, "backup", text));
            }
            None => {}
        }
        if let Some(v) = verify {
            for (what, text, when) in checks(&v) {
                out.push(entry(when, what, text));
            }
        }
    }
    Ok(out)
}

/// The first of `fields` that holds a time.
fn time_of(v: &Value, fields: &[&str]) -> Option<DateTime<Utc>> {
    fields.iter().find_map(|f| {
        v.get(f)?
            .as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.to_utc())
    })
}

/// The first of `fields` that holds text, as one line.
fn text_of(v: &Value, fields: &[&str]) -> Option<String> {
    fields.iter().find_map(|f| match v.get(f)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(items) if !items.is_empty() => Some(
            items
                .iter()
                .map(|i| match i {
                    Value::String(s) => s.clone(),
                    other => text_of(other, &["message", "detail", "kind"])
                        .unwrap_or_else(|| other.to_string()),
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Value::Object(_) => text_of(&v[f], &["message", "detail", "kind"]),
        _ => None,
    })
}

/// What a backup's verify record (`<db>/verify/records/<id>.json`) says, one entry per check: the read and
/// the restore-test, and the catalogue check only when it failed (it runs every daemon tick).
fn checks(v: &VerifyRecord) -> Vec<(&'static str, String, DateTime<Utc>)> {
    let rungs = [
        (Rung::Catalogue, "verify.catalogue", &v.catalogue),
        (Rung::Read, "verify.read", &v.read),
        (Rung::RestoreTest, "restore-test", &v.restore_test),
    ];
    let mut out = Vec::new();
    for (rung, what, check) in rungs {
        let Some(c) = check else { continue };
        if rung == Rung::Catalogue && c.ok {
            continue;
        }
        let mut text = if c.ok {
            format!(
                "{} {rung} passed ({:.1} s)",
                v.id,
                c.duration_ms as f64 / 1000.0
            )
        } else {
            format!(
                "{} {rung} FAILED: {}",
                v.id,
                c.problem.as_deref().unwrap_or("?")
            )
        };
        if let Some(bad) = v.bad.as_ref().filter(|b| b.rung == rung) {
            let _ = write!(
                text,
                "; the backup is bad since {} and no longer counts as good",
                shown(bad.since)
            );
        }
        out.push((what, one_line(&text), c.at));
    }
    out
}

/// A tenant restore record (`<db>/restores/…`, docs/format.md).
fn tenant_restore(db: &str, v: &Value) -> Option<Entry> {
    let at = time_of(v, &["at"])?;
    let changes: u64 = v["tables"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| {
                    ["delete", "insert", "update"]
                        .iter()
                        .map(|k| t[k].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
                .sum()
        })
        .unwrap_or(0);
    let text = format!(
        "tenant {} restored from {} into {}: {changes} row changes, safety backup {}",
        v["tenant"].as_str().unwrap_or("?"),
        v["backup"].as_str().unwrap_or("?"),
        v["into"].as_str().unwrap_or("?"),
        v["safety_backup"].as_str().unwrap_or("none"),
    );
    Some(Entry {
        at,
        database: db.to_string(),
        what: "tenant.restore".into(),
        text: one_line(&text),
    })
}

/// A drill record (`<db>/drills/drill-<time>-….json`): its verdict, time and RTO, as far as
/// the record says.
fn drill(db: &str, name: &str, v: &Value) -> Entry {
    let at = time_of(v, &["started_at", "at"]).unwrap_or_else(|| {
        name.strip_prefix("drill-")
            .and_then(|n| n.get(..22))
            .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H%M%S%.3fZ").ok())
            .map(|t| t.and_utc())
            .unwrap_or_default()
    });
    let verdict = text_of(v, &["verdict", "result"]).unwrap_or_else(|| "?".into());
    let mut text = format!("drill {}", verdict.to_ascii_uppercase());
    if let Some(id) = v["backup"]["id"].as_str().or(v["backup"].as_str()) {
        let _ = write!(text, " of {id}");
    }
    if let Some(ms) = v["total_ms"].as_f64() {
        let _ = write!(text, " in {:.1} s", ms / 1000.0);
    }
    if v["rto_breached"].as_bool() == Some(true) {
        text.push_str(", RTO breached");
    }
    if let Some(e) = text_of(v, &["error"]) {
        let _ = write!(text, ": {e}");
    }
    let _ = write!(text, " (drills/{name})");
    Entry {
        at,
        database: db.to_string(),
        what: "drill".into(),
        text: one_line(&text),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_names_and_verify_records() {
        assert_eq!(slug("Tenant 42 lost bookings!"), "tenant-42-lost-bookings");
        assert_eq!(slug("  ../../etc/passwd  "), "etc-passwd");
        assert_eq!(slug("日本語"), "incident");
        assert!(slug(&"x".repeat(500)).len() <= 60);
        let dir = tempfile::tempdir().unwrap();
        let text = |t: &str| format!("# Incident: {t}\n\n- **Opened:** 2026-03-01T10:00:00Z\n");
        let a = write_new(dir.path(), "2026-03-01", "x", &text("one")).unwrap();
        let b = write_new(dir.path(), "2026-03-01", "x", &text("two")).unwrap();
        for n in 3..=10 {
            write_new(dir.path(), "2026-03-01", "x", &text(&n.to_string())).unwrap();
        }
        assert_ne!(a, b);
        assert!(b.ends_with("incidents/2026-03-01-x-2.md"));
        let listed = list(dir.path()).unwrap();
        let titles: Vec<&str> = listed.iter().map(|l| l.title.as_str()).collect();
        assert_eq!(
            titles,
            ["one", "two", "3", "4", "5", "6", "7", "8", "9", "10"]
        );
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let mut v = VerifyRecord::new("db", "backup-x");
        let check = |at: &str, ok: bool| crate::repo::verify_record::Check {
            at: t(at),
            ok,
            problem: (!ok).then(|| "checksum mismatch".to_string()),
            duration_ms: 1500,
        };
        v.add(Rung::Catalogue, check("2026-03-01T01:00:00Z", true));
        v.add(Rung::RestoreTest, check("2026-03-01T02:00:00Z", false));
        let found = checks(&v);
        assert_eq!(
            found.len(),
            1,
            "a passing catalogue check is not news: {found:?}"
        );
        assert_eq!(found[0].0, "restore-test");
        assert!(
            found[0].1.contains("FAILED: checksum mismatch"),
            "{found:?}"
        );
        assert!(
            found[0].1.contains("is bad since 2026-03-01T02:00:00Z"),
            "{found:?}"
        );
        assert_eq!(found[0].2, t("2026-03-01T02:00:00Z"));
    }
}
