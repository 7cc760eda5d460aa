//! Incident files: the timeline rendered as the runbook's post-incident Markdown, a name for
//! each file that never replaces another, and the list of those written.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::text::escape;

use super::{one_line, Timeline, FOLDER, MAX_ENTRIES};

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

pub(super) fn shown(t: DateTime<Utc>) -> String {
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
