//! Findings across a window of history, from what the catalogue holds (manifests, verify
//! records, skip days) without reading any data: the runbook's monthly check ("do backups exist
//! for the last 30 days, do they have enough tables") made exact.
//!
//! - **Gap**: a full UTC day on which the schedule fires with no good scheduled backup and no
//!   recorded skip of an unchanged database. Days before the first scheduled backup ever, and
//!   today (its run may still come), are not gaps.
//! - **Drift**: tables added or dropped, or the schema hash changed, between consecutive good
//!   backups.
//! - **Shrinkage**: a table that lost more than `shrink_alert` of its rows between them.
//! - **Damage**: a backup whose manifest or data object is unusable, or that a verify found bad.
//! - **Chain**: a replicated generation whose segments do not form one chain ([`super::chain`]).

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use crate::backup::shrinkage::shrunk;
use crate::repo::listing::Listing;
use crate::repo::{BackupKind, Manifest};
use crate::schedule::Schedule;

/// What a finding says about the history: damage and gaps fail the check (exit 6), drift and
/// shrinkage are warnings (exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Error,
}

/// One finding, named.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    Gap {
        day: NaiveDate,
        /// What that day has instead, if anything (a manual backup, a bad one).
        note: Option<String>,
    },
    Drift {
        from: String,
        to: String,
        added: Vec<String>,
        dropped: Vec<String>,
        schema_changed: bool,
    },
    Shrinkage {
        from: String,
        to: String,
        /// (table, rows before, rows after)
        tables: Vec<(String, u64, u64)>,
    },
    Damage {
        backup: String,
        problem: String,
    },
    /// A replicated generation whose chain of segments is broken (names or content).
    Chain {
        generation: String,
        problem: String,
    },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        match self {
            Finding::Gap { .. } | Finding::Damage { .. } | Finding::Chain { .. } => Severity::Error,
            Finding::Drift { .. } | Finding::Shrinkage { .. } => Severity::Warning,
        }
    }

    /// The finding as one line.
    pub fn describe(&self) -> String {
        match self {
            Finding::Gap { day, note } => format!(
                "GAP     {day}: no good scheduled backup{}",
                note.as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            Finding::Drift {
                from,
                to,
                added,
                dropped,
                schema_changed,
            } => {
                let mut what = Vec::new();
                if !added.is_empty() {
                    what.push(format!("tables added: {}", added.join(", ")));
                }
                if !dropped.is_empty() {
                    what.push(format!("tables dropped: {}", dropped.join(", ")));
                }
                if what.is_empty() && *schema_changed {
                    what.push("schema changed (same tables)".into());
                }
                format!("DRIFT   {from} -> {to}: {}", what.join("; "))
            }
            Finding::Shrinkage { from, to, tables } => {
                let t: Vec<String> = tables
                    .iter()
                    .map(|(t, a, b)| format!("{t} {a} -> {b}"))
                    .collect();
                format!("SHRUNK  {from} -> {to}: {}", t.join(", "))
            }
            Finding::Damage { backup, problem } => format!("DAMAGE  {backup}: {problem}"),
            Finding::Chain {
                generation,
                problem,
            } => format!("CHAIN   {generation}: {problem}"),
        }
    }
}

/// What the findings are judged against.
pub struct Window<'a> {
    /// Backups from this time on (None: the whole history).
    pub since: Option<DateTime<Utc>>,
    pub now: DateTime<Utc>,
    /// When scheduled backups are due (the database's schedule, or the default 02:00 daily).
    pub schedule: &'a Schedule,
    /// UTC days on which a scheduled run found the database unchanged and skipped it.
    pub skipped_days: &'a BTreeSet<NaiveDate>,
    pub shrink_alert: f64,
}

/// Every finding for one database's listing in `w`, oldest first within each kind.
pub fn findings(listing: &Listing, w: &Window) -> Vec<Finding> {
    let in_window = |t: DateTime<Utc>| w.since.is_none_or(|s| t >= s);
    let mut out = Vec::new();
    for (id, problem) in &listing.damaged {
        let t = crate::repo::retention::id_time(id);
        if t.is_none_or(in_window) {
            out.push(Finding::Damage {
                backup: id.clone(),
                problem: problem.clone(),
            });
        }
    }
    let mut chrono_order: Vec<&Manifest> = listing.backups.iter().collect();
    chrono_order.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    for m in &chrono_order {
        if let (Some(bad), true) = (listing.bad(&m.id), in_window(m.created_at)) {
            out.push(Finding::Damage {
                backup: m.id.clone(),
                problem: format!(
                    "failed its {} on {}: {}",
                    bad.rung,
                    bad.since.format("%Y-%m-%d %H:%M UTC"),
                    bad.problem
                ),
            });
        }
    }
    out.extend(gaps(listing, &chrono_order, w));
    // Consecutive good whole-database backups: what a restore would give, one after another.
    let good: Vec<&Manifest> = chrono_order
        .iter()
        .copied()
        .filter(|m| m.good_at(w.now) && listing.bad(&m.id).is_none())
        .collect();
    for pair in good.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if !in_window(b.created_at) {
            continue;
        }
        let added: Vec<String> = (b.tables.keys())
            .filter(|t| !a.tables.contains_key(*t))
            .cloned()
            .collect();
        let dropped: Vec<String> = (a.tables.keys())
            .filter(|t| !b.tables.contains_key(*t))
            .cloned()
            .collect();
        let schema_changed = a.schema_sha256 != b.schema_sha256;
        if schema_changed || !added.is_empty() || !dropped.is_empty() {
            out.push(Finding::Drift {
                from: a.id.clone(),
                to: b.id.clone(),
                added,
                dropped,
                schema_changed,
            });
        }
        let tables = shrunk(a, b, w.shrink_alert);
        if !tables.is_empty() {
            out.push(Finding::Shrinkage {
                from: a.id.clone(),
                to: b.id.clone(),
                tables,
            });
        }
    }
    out
}

/// Days the schedule fires on, from the first scheduled backup (or the window's start, if
/// later) to yesterday, that no good scheduled backup or skip covers.
fn gaps(listing: &Listing, chrono_order: &[&Manifest], w: &Window) -> Vec<Finding> {
    let scheduled = |m: &&&Manifest| m.kind == BackupKind::Scheduled && m.tenant.is_none();
    let Some(first) = chrono_order.iter().find(scheduled) else {
        return Vec::new(); // never scheduled: nothing was promised
    };
    let mut covered: BTreeSet<NaiveDate> = w.skipped_days.clone();
    let mut other: std::collections::BTreeMap<NaiveDate, String> = Default::default();
    for m in chrono_order {
        let day = m.created_at.date_naive();
        if scheduled(&m) && listing.bad(&m.id).is_none() && m.good_at(w.now) {
            covered.insert(day);
        } else if listing.bad(&m.id).is_some() {
            other.insert(day, format!("{} failed verification", m.id));
        } else {
            other
                .entry(day)
                .or_insert_with(|| format!("only a {} backup", m.kind));
        }
    }
    let today = w.now.date_naive();
    let mut day = first.created_at.date_naive();
    if let Some(s) = w.since {
        day = day.max(s.date_naive());
    }
    let mut out = Vec::new();
    while day < today {
        if fires_on(w.schedule, day) && !covered.contains(&day) {
            out.push(Finding::Gap {
                day,
                note: other.get(&day).cloned(),
            });
        }
        day += Duration::days(1);
    }
    out
}

/// Whether the schedule fires at some time on UTC `day`.
fn fires_on(schedule: &Schedule, day: NaiveDate) -> bool {
    let start = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    schedule
        .next_after(start - Duration::seconds(1))
        .is_some_and(|t| t < start + Duration::days(1))
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
