//! Incident records: a post-mortem started as a Markdown file following the runbook's
//! "Post-Incident Review" sections, its timeline pre-filled from what the repository knows of
//! the window: backups (and their restore-tests), failures and alerts sent (the event log),
//! full and tenant restores, and drills. Only the window is read: every one of these records is
//! named by its time, so each folder is listed from the window's start.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Kind, Result};
use crate::repo::manifest::human_size;
use crate::repo::repository::{CLAIM_SUFFIX, DATA_SUFFIX, MANIFEST_SUFFIX};
use crate::repo::verify_record::{Rung, VerifyRecord};
use crate::repo::Repository;
use crate::text::escape;

/// Rows a timeline shows at most; the rest is counted, not listed.
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

/// What the header of an incident file says.
pub struct Header<'a> {
    pub title: &'a str,
    pub opened: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub databases: &'a [String],
    pub repository: &'a str,
    /// Why the timeline is missing or partial (the repository could not be read).
    pub note: Option<String>,
}

fn shown(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Text for a Markdown table cell: one line, no `|` to break the row.
fn cell(s: &str) -> String {
    escape(s).replace('|', "\\|")
}

/// The incident file: the runbook's seven post-mortem sections, the timeline filled in.
pub fn render(h: &Header, t: &Timeline) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Incident: {}\n", one_line(&escape(h.title)));
    let _ = writeln!(s, "- **Opened:** {}", shown(h.opened));
    let _ = writeln!(
        s,
        "- **Window:** {} to {} (UTC)",
        shown(h.since),
        shown(h.until)
    );
    let dbs: Vec<String> = h.databases.iter().map(|d| escape(d).into_owned()).collect();
    let _ = writeln!(
        s,
        "- **Databases:** {}",
        if dbs.is_empty() {
            "none found".to_string()
        } else {
            dbs.join(", ")
        }
    );
    let _ = writeln!(s, "- **Repository:** {}", escape(h.repository));
    let _ = writeln!(s, "- **Status:** open\n");
    s.push_str("## 1. Incident Summary\n\n_What happened and when._\n\n");
    s.push_str("## 2. Timeline\n\n");
    s.push_str(
        "Pre-filled by `lifeboat incident new` from the repository's records in the window: \
         backups and their restore-tests, failed backups and alerts sent (the event log), \
         restores, tenant restores and drills. Add the actions taken.\n\n",
    );
    if let Some(note) = &h.note {
        let _ = writeln!(s, "> **Note:** {}\n", one_line(&escape(note)));
    }
    if t.entries.is_empty() {
        s.push_str("_No records in the window._\n\n");
    } else {
        s.push_str("| time (UTC) | database | event | details |\n|---|---|---|---|\n");
        for e in t.entries.iter().take(MAX_ENTRIES) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                shown(e.at),
                cell(&e.database),
                cell(&e.what),
                cell(&e.text)
            );
        }
        if t.entries.len() > MAX_ENTRIES {
            let _ = writeln!(
                s,
                "\n_{} more records in the window are not listed; narrow it with `--since` or `--db`._",
                t.entries.len() - MAX_ENTRIES
            );
        }
        s.push('\n');
    }
    s.push_str("## 3. Root Cause\n\n_Why did data loss occur?_\n\n");
    s.push_str("## 4. Recovery Actions\n\n_Steps taken to restore._\n\n");
    for e in t
        .entries
        .iter()
        .filter(|e| e.what == "restore.done" || e.what == "tenant.restore")
    {
        let _ = writeln!(
            s,
            "- {} {}: {}",
            shown(e.at),
            escape(&e.database),
            escape(&e.text)
        );
    }
    s.push_str("\n## 5. Impact\n\n_How many users/tenants affected, duration._\n\n");
    s.push_str("## 6. Lessons Learned\n\n_What can be improved._\n\n");
    s.push_str("## 7. Action Items\n\n- [ ] \n");
    s
}

/// A title as a file name's part: lower-case ASCII letters and digits, runs of anything else
/// one `-`, at most 60 characters; `incident` when nothing is left.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "incident".into()
    } else {
        out.to_string()
    }
}

/// Write `text` to `<dir>/incidents/<date>-<slug>.md`, or `…-2.md`, `…-3.md`, … : never over an
/// existing file (each name is taken with an exclusive create, so two at once get two files).
pub fn write_new(dir: &Path, date: &str, slug: &str, text: &str) -> Result<PathBuf> {
    let folder = dir.join(FOLDER);
    std::fs::create_dir_all(&folder)
        .map_err(|e| Error::io(format!("create {}", folder.display()), e))?;
    for n in 1..=1000 {
        let name = match n {
            1 => format!("{date}-{slug}.md"),
            n => format!("{date}-{slug}-{n}.md"),
        };
        let path = folder.join(name);
        let mut file = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        };
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(Error::io(format!("write {}", path.display()), e));
        }
        return Ok(path);
    }
    Err(Error::new(
        Kind::TargetExists,
        format!(
            "{}: 1000 incidents named {date}-{slug} already; choose another title",
            folder.display()
        ),
    ))
}

/// One incident file, as `incident list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub date: String,
    pub title: String,
    pub file: PathBuf,
    /// When it was opened, as its header says.
    pub opened: Option<DateTime<Utc>>,
}

/// The incident files under `<dir>/incidents/`, by name (so by date). A Markdown file there
/// that lifeboat did not write is listed with its first heading, or its name.
pub fn list(dir: &Path) -> Result<Vec<Listed>> {
    let folder = dir.join(FOLDER);
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", folder.display()), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".md") || !path.is_file() {
            continue;
        }
        // The title is the first line and the time it was opened a few lines down: the
        // first 4 KiB say both.
        let head = std::fs::File::open(&path)
            .ok()
            .and_then(|f| {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut buf).ok()?;
                Some(String::from_utf8_lossy(&buf).into_owned())
            })
            .unwrap_or_default();
        let first = head.lines().next().unwrap_or("").trim();
        let title = first
            .strip_prefix("# Incident: ")
            .or_else(|| first.strip_prefix("# "))
            .map(str::to_string)
            .unwrap_or_else(|| name.trim_end_matches(".md").to_string());
        let opened = head
            .lines()
            .find_map(|l| l.strip_prefix("- **Opened:** "))
            .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
            .map(|t| t.to_utc());
        let date = name
            .get(..10)
            .filter(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
            .unwrap_or("?")
            .to_string();
        out.push(Listed {
            date,
            title,
            file: path,
            opened,
        });
    }
    // In the order they were opened; one title's files in one second by their `-N`.
    let key = |l: &Listed| {
        let stem = l.file.file_stem().map(|s| s.len()).unwrap_or(0);
        (l.date.clone(), l.opened, stem, l.file.clone())
    };
    out.sort_by_key(key);
    Ok(out)
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
