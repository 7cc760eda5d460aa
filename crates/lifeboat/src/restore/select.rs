//! Which backup a command uses: an id as given, or `latest` / `--at TIME`, which pick the newest
//! complete backup (at or before the time) that is not a safety backup and that no verify found
//! bad, and name the newer ones they passed over (safety backups, by design; damaged and bad
//! ones, as a warning).

use chrono::{DateTime, Utc};

use crate::error::{Error, Kind, Result};
use crate::repo::listing::Records;
use crate::repo::manifest::Manifest;
use crate::repo::repository::Repository;

/// Which backup to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Id(String),
    /// The newest complete backup taken at or before this time.
    At(DateTime<Utc>),
}

/// A backup a selector passed over, and why: the user should know that the newest backup was
/// not the one used.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
    /// Damaged (a problem to report), rather than a safety backup passed over by design.
    pub damaged: bool,
}

impl Skipped {
    pub fn damaged(&self) -> bool {
        self.damaged
    }
}

/// The backup a selector resolved to, and the newer ones it passed over.
#[derive(Debug, Clone)]
pub struct Selection {
    pub manifest: Manifest,
    /// `latest`, `--at …`, or the id as given.
    pub selector: String,
    pub skipped: Vec<Skipped>,
    /// Why the backup chosen is bad, when a verify found it so (only an id given explicitly
    /// can choose one).
    pub bad: Option<crate::repo::verify_record::Bad>,
}

impl Selection {
    /// One line naming the backup chosen, its kind and its time.
    pub fn describe(&self) -> String {
        let safety: Vec<&str> = self
            .skipped
            .iter()
            .filter(|s| !s.damaged() && !s.reason.starts_with("dated in the future"))
            .map(|s| s.id.as_str())
            .collect();
        let future: String = (self.skipped.iter())
            .filter(|s| s.reason.starts_with("dated in the future"))
            .map(|s| format!("; passed over {}, dated in the future", s.id))
            .collect();
        let passed = match safety.as_slice() {
            [] => String::new(),
            [one] => format!("; passed over the newer safety backup {one}"),
            [first, ..] => format!(
                "; passed over {} newer safety backups, the newest {first}",
                safety.len()
            ),
        };
        format!(
            "backup {} = {} ({}, taken {}){passed}{future}",
            self.selector,
            self.manifest.id,
            self.manifest.kind,
            utc(self.manifest.created_at)
        )
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "selector": self.selector,
            "id": self.manifest.id,
            "kind": self.manifest.kind,
            "created_at": self.manifest.created_at,
            "skipped": self.skipped,
        })
    }
}

/// The time in a backup id (`backup-YYYY-MM-DDTHHMMSSZ`), for backups whose manifest cannot be
/// read.
fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let t = id.strip_prefix("backup-")?;
    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Find the backup `sel` refers to. `latest` and `--at` pick the newest complete backup (at or
/// before the time) that is not a safety backup; the damaged and safety backups newer than
/// the one picked are named in [`Selection::skipped`]. An explicit id is taken as it is.
pub async fn select(repo: &Repository, db: &str, sel: &Selector) -> Result<Selection> {
    if let Selector::Id(id) = sel {
        if id != "latest" {
            let manifest = repo.manifest(db, id).await?;
            let bad = repo.verify_record(db, id).await?.and_then(|r| r.bad);
            return Ok(Selection {
                manifest,
                selector: id.clone(),
                skipped: Vec::new(),
                bad,
            });
        }
    }
    let listing = repo.list_with(db, Records::Bad).await?;
    let (until, selector) = match sel {
        Selector::At(at) => (Some(*at), format!("--at {}", utc(*at))),
        _ => (None, "latest".to_string()),
    };
    let in_window = |t: DateTime<Utc>| until.is_none_or(|u| t <= u);
    // Dated ahead of the clock (skew on the host that took it): never newer than real backups.
    let now = chrono::Utc::now();
    let future = |m: &Manifest| m.created_at > now + crate::repo::manifest::FUTURE_SLACK;
    let chosen = listing.backups.iter().find(|m| {
        m.kind.selectable() && in_window(m.created_at) && listing.bad(&m.id).is_none() && !future(m)
    });
    // Newer than the chosen one (or any, when none was chosen) and inside the window.
    let newer = |t: Option<DateTime<Utc>>, id: &str| match chosen {
        Some(c) => t.is_none_or(&in_window) && (t, id) > (Some(c.created_at), c.id.as_str()),
        None => t.is_none_or(&in_window),
    };
    let mut skipped: Vec<Skipped> = Vec::new();
    for (id, why) in &listing.damaged {
        if newer(id_time(id), id) {
            skipped.push(Skipped {
                id: id.clone(),
                reason: format!("damaged: {why}"),
                damaged: true,
            });
        }
    }
    for m in &listing.backups {
        let Some(bad) = listing.bad(&m.id) else {
            continue;
        };
        if newer(Some(m.created_at), &m.id) {
            skipped.push(Skipped {
                id: m.id.clone(),
                reason: format!(
                    "damaged: failed its {} on {}: {}",
                    bad.rung,
                    utc(bad.since),
                    bad.problem
                ),
                damaged: true,
            });
        }
    }
    for m in listing
        .backups
        .iter()
        .filter(|m| m.kind.selectable() && future(m))
    {
        if newer(Some(m.created_at), &m.id) {
            skipped.push(Skipped {
                id: m.id.clone(),
                reason: format!(
                    "dated in the future ({}: the clock of the host that took it is wrong); give its id to use it",
                    utc(m.created_at)
                ),
                damaged: false,
            });
        }
    }
    for m in listing.backups.iter().filter(|m| !m.kind.selectable()) {
        if newer(Some(m.created_at), &m.id) {
            skipped.push(Skipped {
                id: m.id.clone(),
                reason: format!(
                    "{} backup taken by a restore{}; give its id to use it",
                    m.kind,
                    m.label
                        .as_deref()
                        .map(|l| format!(" ({})", crate::text::escape(l)))
                        .unwrap_or_default()
                ),
                damaged: false,
            });
        }
    }
    skipped.sort_by(|a, b| b.id.cmp(&a.id));
    let Some(chosen) = chosen else {
        let what = match until {
            Some(at) => format!(
                "no backup of database {db} at or before {}{}",
                utc(at),
                listing
                    .backups
                    .last()
                    .map(|m| format!(" (oldest is {})", utc(m.created_at)))
                    .unwrap_or_default()
            ),
            None => format!("no complete backup of database {db} in {}", repo.url()),
        };
        let safety = listing
            .backups
            .iter()
            .filter(|m| !m.kind.selectable())
            .count();
        let what = match safety {
            0 => what,
            n => format!(
                "{what} ({n} safety backup(s), which latest and --at never pick: give one's id to use it)"
            ),
        };
        let damaged: Vec<&Skipped> = skipped.iter().filter(|s| s.damaged()).collect();
        if let Some(first) = damaged.first() {
            let why = first.reason.trim_start_matches("damaged: ");
            return Err(Error::new(
                Kind::Corrupt,
                format!(
                    "{what}: the newest, {}, is corrupt: {why} ({} damaged backup(s) in all)",
                    first.id,
                    damaged.len(),
                ),
            ));
        }
        return Err(Error::new(Kind::NotFound, what));
    };
    Ok(Selection {
        manifest: chosen.clone(),
        selector,
        skipped,
        bad: None,
    })
}

/// A time as users type it: `2026-11-20T03:00:00Z`.
fn utc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parse `--at`: RFC 3339, or `YYYY-MM-DDTHH:MM[Z]`, `YYYY-MM-DD HH:MM[:SS]`, `YYYY-MM-DD` (UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.to_utc());
    }
    let trimmed = s.trim_end_matches('Z').replace(' ', "T");
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H%M%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(&trimmed, fmt) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(&trimmed, "%Y-%m-%d") {
        // A bare date means the end of that day.
        return Ok(d.and_hms_opt(23, 59, 59).expect("valid time").and_utc());
    }
    Err(Error::new(
        Kind::Config,
        format!("--at {s:?}: expected a UTC time such as 2026-11-20T03:00Z"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times() {
        let want = DateTime::parse_from_rfc3339("2026-11-20T03:00:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_time("2026-11-20T03:00Z").unwrap(), want);
        assert_eq!(parse_time("2026-11-20T03:00:00Z").unwrap(), want);
        assert_eq!(parse_time("2026-11-20 03:00").unwrap(), want);
        assert_eq!(
            parse_time("2026-11-20")
                .unwrap()
                .format("%H:%M")
                .to_string(),
            "23:59"
        );
        assert!(parse_time("yesterday").is_err());
    }
}
