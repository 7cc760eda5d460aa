//! Schedules: 5-field cron expressions in UTC (`"0 2 * * *"`, the runbook's 02:00), read with the
//! `croner` crate, and the `[daemon]` section of lifeboat.toml that says when and how many
//! backups the daemon runs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::error::{Error, Kind, Result};

/// The runbook's daily 02:00 UTC.
pub const DEFAULT_SCHEDULE: &str = "0 2 * * *";
/// The runbook's quarterly drill: 03:00 UTC on the first of January, April, July and October.
pub const DEFAULT_DRILL_SCHEDULE: &str = "0 3 1 */3 *";

/// A parsed cron schedule, in UTC.
#[derive(Debug, Clone)]
pub struct Schedule {
    text: String,
    cron: croner::Cron,
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Schedule {
    /// Parse a 5-field expression (minute hour day-of-month month day-of-week).
    pub fn parse(text: &str) -> Result<Schedule> {
        let fields = text.split_whitespace().count();
        if fields != 5 {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "schedule {text:?}: a cron expression has 5 fields (minute hour day month weekday; UTC), not {fields}"
                ),
            ));
        }
        let cron: croner::Cron = text
            .parse()
            .map_err(|e| Error::new(Kind::Config, format!("schedule {text:?}: {e}")))?;
        let schedule = Schedule {
            text: text.to_string(),
            cron,
        };
        // `0 0 30 2 *` parses, and never comes: a daemon would wait for it for ever.
        if schedule.next_after(chrono::Utc::now()).is_none() {
            return Err(Error::new(
                Kind::Config,
                format!("schedule {text:?} never comes round (no such date)"),
            ));
        }
        Ok(schedule)
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&t, false).ok()
    }

    /// The last occurrence at or before `t`.
    pub fn last_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&t, true).ok()
    }

    /// One schedule interval as of `t`: from the last occurrence at or before it to the one
    /// before that (a day for `0 2 * * *`).
    pub fn interval_at(&self, t: DateTime<Utc>) -> Option<Duration> {
        let last = self.last_at_or_before(t)?;
        let before = self.cron.find_previous_occurrence(&last, false).ok()?;
        (last - before).to_std().ok()
    }
}

/// `[daemon]` in lifeboat.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// When every database without a schedule of its own is backed up (default `0 2 * * *`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// How many backups run at once across databases (default 2).
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Skip a scheduled backup of a database unchanged since its newest good backup (default
    /// true).
    #[serde(default)]
    pub skip_unchanged: Option<bool>,
    /// How often staleness is checked (default 5 min).
    #[serde(default, with = "crate::duration::optional")]
    pub stale_check_interval: Option<Duration>,
    /// Above this many databases, metrics are aggregated rather than labelled per database
    /// (default 500).
    #[serde(default)]
    pub metrics_max_databases: Option<usize>,
    /// Prune after each scheduled backup when `[retention]` is set (default true).
    #[serde(default)]
    pub prune: Option<bool>,
    /// How soon a failed job is tried again (default 15 min; never later than the next
    /// scheduled time).
    #[serde(default, with = "crate::duration::optional")]
    pub retry_after: Option<Duration>,
    /// How long a job's lease lasts unless its holder renews it (default 2 min; renewed every
    /// third of it). A daemon that died is taken over after this.
    #[serde(default, with = "crate::duration::optional")]
    pub lease_ttl: Option<Duration>,
    /// Restore-test each new backup from the repository right after writing it, in the daemon
    /// and in `lifeboat backup` (unless `--no-verify`); default true.
    #[serde(default)]
    pub verify_after_backup: Option<bool>,
    /// When each database's DR drill runs (default quarterly, `0 3 1 */3 *`, UTC).
    #[serde(default)]
    pub drill_schedule: Option<String>,
    /// Where the daemon's drills restore: `scratch` (the default), a file, or `d1:NAME`.
    #[serde(default)]
    pub drill_target: Option<String>,
}

impl DaemonConfig {
    /// Refuse settings that cannot work: a schedule that never comes, a lease too short to
    /// protect a job, no staleness checks.
    pub fn check(&self) -> Result<()> {
        self.schedule()?;
        self.drill_schedule()?;
        if self.lease_ttl() < Duration::from_secs(5) {
            return Err(Error::new(
                Kind::Config,
                "[daemon] lease_ttl must be at least 5s: a shorter lease expires while its job runs, and another daemon runs the job again",
            ));
        }
        if self.stale_check_interval() < Duration::from_secs(1) {
            return Err(Error::new(
                Kind::Config,
                "[daemon] stale_check_interval must be at least 1s",
            ));
        }
        Ok(())
    }

    pub fn schedule(&self) -> Result<Schedule> {
        Schedule::parse(self.schedule.as_deref().unwrap_or(DEFAULT_SCHEDULE))
    }

    /// When drills run.
    pub fn drill_schedule(&self) -> Result<Schedule> {
        Schedule::parse(
            self.drill_schedule
                .as_deref()
                .unwrap_or(DEFAULT_DRILL_SCHEDULE),
        )
        .map_err(|e| e.context("[daemon] drill_schedule"))
    }

    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent.unwrap_or(2).max(1)
    }

    pub fn skip_unchanged(&self) -> bool {
        self.skip_unchanged.unwrap_or(true)
    }

    pub fn stale_check_interval(&self) -> Duration {
        self.stale_check_interval
            .unwrap_or(Duration::from_secs(300))
    }

    pub fn metrics_max_databases(&self) -> usize {
        self.metrics_max_databases.unwrap_or(500)
    }

    pub fn retry_after(&self) -> Duration {
        self.retry_after.unwrap_or(Duration::from_secs(900))
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl.unwrap_or(Duration::from_secs(120))
    }

    pub fn prune(&self) -> bool {
        self.prune.unwrap_or(true)
    }

    pub fn verify_after_backup(&self) -> bool {
        self.verify_after_backup.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn daily_at_two_utc() {
        let s = Schedule::parse("0 2 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2026-12-06T01:59:59Z")),
            Some(at("2026-12-06T02:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2026-12-06T02:00:00Z")),
            Some(at("2026-12-07T02:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-12-06T02:00:00Z")),
            Some(at("2026-12-06T02:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(at("2026-12-06T01:00:00Z")),
            Some(at("2026-12-05T02:00:00Z"))
        );
        assert_eq!(
            s.interval_at(at("2026-12-06T12:00:00Z")),
            Some(Duration::from_secs(86400))
        );
    }

    #[test]
    fn every_fifteen_minutes_and_weekly() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_after(Utc.with_ymd_and_hms(2026, 12, 6, 10, 7, 0).unwrap()),
            Some(at("2026-12-06T10:15:00Z"))
        );
        assert_eq!(
            s.interval_at(at("2026-12-06T10:16:00Z")),
            Some(Duration::from_secs(900))
        );
        // Mondays at 03:30: 2026-12-07 is a Monday.
        let w = Schedule::parse("30 3 * * 1").unwrap();
        assert_eq!(
            w.next_after(at("2026-12-06T00:00:00Z")),
            Some(at("2026-12-07T03:30:00Z"))
        );
    }

    #[test]
    fn refuses_what_is_not_five_fields() {
        for bad in [
            "",
            "0 2 * *",
            "0 0 2 * * *",
            "61 2 * * *",
            "0 2 * * monday-ish",
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert_eq!(e.kind, Kind::Config, "{bad}");
        }
    }
}
