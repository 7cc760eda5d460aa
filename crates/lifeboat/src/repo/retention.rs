//! Retention: which backups a policy keeps, and why. The rules follow restic's `forget`: a
//! backup survives if any rule keeps it; calendar buckets are UTC, weeks run Monday to Sunday;
//! `keep_within` counts back from the newest good backup, not from now, so backups that stopped
//! arriving are never aged out by the clock alone (nor by a later safety backup).
//!
//! Floors no policy can lower: the newest good backup, the `min_keep` newest good backups,
//! anything dated in the future (clock skew: it never counts as good, so it takes no floor's
//! place and moves no window), pinned and held backups. Safety backups (taken by restores,
//! holding the damage they repair) follow the emergency rule only (default 30 d). A backup whose
//! manifest this lifeboat cannot read is never deleted: it may be a newer lifeboat's. A backup a
//! verify found bad never counts as good, and goes `keep_bad_within` (7 d) after it was found.
//! The snapshot of a replicated generation that is kept is never deleted.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};
use crate::repo::manifest::{BackupKind, Manifest};
use crate::repo::marks::Mark;
use crate::repo::verify_record::Bad;

/// `[retention]` in lifeboat.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    #[serde(default, with = "crate::duration::optional")]
    pub keep_within: Option<Duration>,
    #[serde(default)]
    pub keep_last: Option<u32>,
    #[serde(default)]
    pub keep_hourly: Option<u32>,
    #[serde(default)]
    pub keep_daily: Option<u32>,
    #[serde(default)]
    pub keep_weekly: Option<u32>,
    #[serde(default)]
    pub keep_monthly: Option<u32>,
    #[serde(default)]
    pub keep_yearly: Option<u32>,
    /// Emergency and safety backups younger than this, counted from the newest good backup
    /// (default 30 d: a restore's safety backup outlives the next prune).
    #[serde(default, with = "crate::duration::optional")]
    pub keep_emergency_within: Option<Duration>,
    /// Never fewer good backups than this (default 3).
    #[serde(default)]
    pub min_keep: Option<u32>,
    /// A table whose rows drop by more than this fraction from one backup to the next holds the
    /// backup before the drop (default 0.5).
    #[serde(default)]
    pub shrink_alert: Option<f64>,
    /// How long such a hold lasts unless released (default 30 d).
    #[serde(default, with = "crate::duration::optional")]
    pub hold_within: Option<Duration>,
    /// A backup a verify found bad is kept this long after it was found, for an investigation,
    /// then deleted (default 7 d). It never counts as good meanwhile.
    #[serde(default, with = "crate::duration::optional")]
    pub keep_bad_within: Option<Duration>,
}

/// The calendar bucket of a time, as shown (`2026-11-30`, `2026-W49` …).
type Bucket = fn(DateTime<Utc>) -> String;

const DEFAULT_MIN_KEEP: u32 = 3;
/// The default `shrink_alert`: a table that loses more than half its rows.
pub const DEFAULT_SHRINK_ALERT: f64 = 0.5;
const DEFAULT_HOLD: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_KEEP_EMERGENCY: Duration = Duration::from_secs(30 * 86_400);
const DEFAULT_KEEP_BAD: Duration = Duration::from_secs(7 * 86_400);
/// A backup dated this far ahead of the clock is "in the future" (clock skew between hosts).
const FUTURE_SLACK: Duration = Duration::from_secs(60);

impl RetentionPolicy {
    /// Whether hold `h` still keeps its backup at `now` (`hold_within` after it was set).
    pub fn hold_active(&self, h: &Mark, now: DateTime<Utc>) -> bool {
        now < later(h.at, self.hold_within.unwrap_or(DEFAULT_HOLD))
    }

    /// `shrink_alert` is a fraction in (0, 1): checked wherever it is used.
    pub fn check_shrink_alert(&self) -> Result<()> {
        match self.shrink_alert {
            Some(f) if !(f > 0.0 && f < 1.0) => Err(Error::new(
                Kind::Config,
                format!("retention: shrink_alert must be a fraction between 0 and 1 (0.5 is a drop of half), not {f}"),
            )),
            _ => Ok(()),
        }
    }

    /// A policy that keeps nothing by rule would delete all but the floors: refused.
    pub fn check(&self) -> Result<()> {
        let rules = [
            self.keep_last,
            self.keep_hourly,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
            self.keep_yearly,
        ];
        let empty = rules.iter().all(|r| r.unwrap_or(0) == 0)
            && self.keep_within.is_none_or(|d| d.is_zero());
        self.check_shrink_alert()?;
        if empty {
            return Err(Error::new(
                Kind::Config,
                "retention: the policy keeps nothing; set keep_within, keep_last or a keep_hourly…keep_yearly rule",
            ));
        }
        Ok(())
    }
}

/// What prune decided for one backup.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Decision {
    pub id: String,
    /// `None` for a damaged backup (its manifest cannot be read).
    pub kind: Option<BackupKind>,
    pub created_at: Option<DateTime<Utc>>,
    pub keep: bool,
    /// Every rule or floor that keeps it; for a deletion, why nothing did.
    pub reasons: Vec<String>,
}

/// Pins and holds on one database's backups, and the backups a verify found bad, by id.
#[derive(Debug, Clone, Default)]
pub struct Marks {
    pub pins: BTreeMap<String, Mark>,
    pub holds: BTreeMap<String, Mark>,
    pub bad: BTreeMap<String, Bad>,
    /// Snapshots of replicated generations that are kept, with why: never deleted.
    pub needed: BTreeMap<String, String>,
}

/// Decide for every backup of one database. `backups` are the complete ones (any order),
/// `damaged` the (id, reason) of manifests that cannot be used.
pub fn decide(
    policy: &RetentionPolicy,
    backups: &[Manifest],
    damaged: &[(String, String)],
    marks: &Marks,
    now: DateTime<Utc>,
) -> Vec<Decision> {
    let held = |id: &str| -> Option<String> {
        let h = marks.holds.get(id)?;
        let until = later(h.at, policy.hold_within.unwrap_or(DEFAULT_HOLD));
        policy.hold_active(h, now).then(|| {
            format!(
                "held until {} or `lifeboat release`: {}",
                until.format("%Y-%m-%d"),
                h.reason
            )
        })
    };
    let mut sorted: Vec<&Manifest> = backups.iter().collect();
    sorted.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |id: &str, why: String| reasons.entry(id.to_string()).or_default().push(why);
    // Good backups: what `latest` could pick (safety backups hold damage), and not dated in the
    // future: a skewed clock must neither take a floor's place nor move a window.
    let future = |m: &Manifest| m.created_at > now + FUTURE_SLACK;
    let good: Vec<&Manifest> = sorted
        .iter()
        .copied()
        .filter(|m| m.kind.selectable() && !future(m) && !marks.bad.contains_key(&m.id))
        .collect();
    // Windows count back from the newest good backup, never from a safety backup or the clock.
    let newest = good.first().map(|m| m.created_at);

    if let Some(m) = good.first() {
        add(&m.id, "newest good backup".into());
    }
    let floor = policy.min_keep.unwrap_or(DEFAULT_MIN_KEEP) as usize;
    for m in good.iter().take(floor) {
        add(&m.id, format!("min_keep {floor}"));
    }
    // Bad backups: kept for an investigation, then deleted, whatever their kind.
    let keep_bad = policy.keep_bad_within.unwrap_or(DEFAULT_KEEP_BAD);
    let bad_kept = |id: &str| -> Option<String> {
        let b = marks.bad.get(id)?;
        let until = later(b.since, keep_bad);
        (now < until).then(|| {
            format!(
                "failed its {} on {}, kept for investigation until {} (keep_bad_within {})",
                b.rung,
                b.since.format("%Y-%m-%d"),
                until.format("%Y-%m-%d"),
                short(keep_bad)
            )
        })
    };
    for m in &sorted {
        if let Some(why) = bad_kept(&m.id) {
            add(&m.id, why);
        }
        if future(m) {
            add(&m.id, "dated in the future".into());
        }
        if let Some(pin) = marks.pins.get(&m.id) {
            add(&m.id, format!("pinned: {}", pin.reason));
        }
        if let Some(why) = held(&m.id) {
            add(&m.id, why);
        }
        if let Some(why) = marks.needed.get(&m.id) {
            add(&m.id, why.clone());
        }
    }
    if let Some(n) = policy.keep_last {
        for m in good.iter().take(n as usize) {
            add(&m.id, format!("last {n}"));
        }
    }
    let buckets: [(&str, Option<u32>, Bucket); 5] = [
        ("hourly", policy.keep_hourly, |t| {
            t.format("%Y-%m-%d %H:00").to_string()
        }),
        ("daily", policy.keep_daily, |t| {
            t.format("%Y-%m-%d").to_string()
        }),
        ("weekly", policy.keep_weekly, |t| {
            let w = t.iso_week();
            format!("{}-W{:02}", w.year(), w.week())
        }),
        ("monthly", policy.keep_monthly, |t| {
            t.format("%Y-%m").to_string()
        }),
        ("yearly", policy.keep_yearly, |t| t.year().to_string()),
    ];
    for (name, n, bucket) in buckets {
        let Some(n) = n.filter(|n| *n > 0) else {
            continue;
        };
        let mut last: Option<String> = None;
        let mut left = n;
        for m in &good {
            let b = bucket(m.created_at);
            if last.as_ref() != Some(&b) {
                add(&m.id, format!("{name} {b}"));
                last = Some(b);
                left -= 1;
                if left == 0 {
                    break;
                }
            }
        }
    }
    if let (Some(d), Some(newest)) = (policy.keep_within, newest) {
        // restic's rule: strictly younger than the window (a backup exactly 90 days older than
        // the newest is outside `90d`).
        let since = earlier(newest, d);
        for m in good.iter().filter(|m| m.created_at > since) {
            add(&m.id, format!("within {}", short(d)));
        }
    }
    let emergency = policy
        .keep_emergency_within
        .unwrap_or(DEFAULT_KEEP_EMERGENCY);
    // With no good backup at all, the window counts back from the clock.
    let since = earlier(newest.unwrap_or(now), emergency);
    for m in sorted.iter().filter(|m| {
        matches!(m.kind, BackupKind::Emergency | BackupKind::Safety)
            && m.created_at > since
            && !marks.bad.contains_key(&m.id)
    }) {
        add(&m.id, format!("{} within {}", m.kind, short(emergency)));
    }
    let mut out: Vec<Decision> = sorted
        .iter()
        .map(|m| {
            let why = reasons.remove(&m.id).unwrap_or_default();
            let none = match marks.bad.get(&m.id) {
                Some(b) => format!(
                    "failed its {} on {} and keep_bad_within {} has passed: {}",
                    b.rung,
                    b.since.format("%Y-%m-%d"),
                    short(keep_bad),
                    b.problem
                ),
                None => "no rule keeps it".into(),
            };
            Decision {
                id: m.id.clone(),
                kind: Some(m.kind),
                created_at: Some(m.created_at),
                keep: !why.is_empty(),
                reasons: if why.is_empty() { vec![none] } else { why },
            }
        })
        .collect();
    // A manifest this lifeboat cannot read may be a newer lifeboat's, or a backup filed under
    // another name: prune never deletes what it cannot judge, unless a verify judged it bad
    // (its data object lost or cut short) more than `keep_bad_within` ago.
    for (id, problem) in damaged {
        let pin = marks.pins.get(id);
        let (keep, mut reasons) = match (marks.bad.get(id), bad_kept(id)) {
            (Some(b), None) if pin.is_none() => (
                false,
                vec![format!(
                    "damaged: {problem}; found on {} and keep_bad_within {} has passed",
                    b.since.format("%Y-%m-%d"),
                    short(keep_bad)
                )],
            ),
            (Some(_), Some(why)) => (true, vec![format!("damaged: {problem}"), why]),
            _ => (
                true,
                vec![
                    format!("damaged: {problem}"),
                    "prune never deletes a backup it cannot read".to_string(),
                ],
            ),
        };
        if let Some(pin) = pin {
            reasons.push(format!("pinned: {}", pin.reason));
        }
        out.push(Decision {
            id: id.clone(),
            kind: None,
            created_at: id_time(id),
            keep,
            reasons,
        });
    }
    out
}

/// `t - d`, or the beginning of time when `d` reaches past it.
fn earlier(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `t + d`, or the end of time.
fn later(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A duration as people write it in the config: `90d`, `36h`, `90s`.
fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The time in a backup id (`backup-2026-11-20T020000Z`, perhaps with a `-N` suffix).
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.strip_prefix("backup-")?.get(..18)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
#[path = "retention_tests.rs"]
mod tests;
