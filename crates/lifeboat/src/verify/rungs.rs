//! `[verify]` in lifeboat.toml: when the daemon climbs each rung of the ladder on its own
//! schedule. The catalogue runs every `catalogue_interval`; the rolling read and the sampled
//! restore-tests on cron schedules (UTC), one slot at a time across daemons (each database's
//! slot is taken with a lease, as backups are, and a slot missed while the daemon was down runs
//! at its next start).

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Kind, Result};
use crate::schedule::Schedule;
use crate::verify::choose::Subset;

/// `[verify]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// How often the daemon checks every database's catalogue: manifests, object sizes, gaps
    /// (default 1h).
    #[serde(default, with = "crate::duration::optional")]
    pub catalogue_interval: Option<Duration>,
    /// When the rolling read runs (default `30 3 * * *`, daily).
    #[serde(default)]
    pub read_schedule: Option<String>,
    /// How much of the history each rolling read covers, `n/t` (default `1/30`: all of it in
    /// 30 runs).
    #[serde(default)]
    pub read_subset: Option<String>,
    /// When sampled restore-tests run (default `0 4 * * 0`, Sundays).
    #[serde(default)]
    pub restore_test_schedule: Option<String>,
    /// Backups restore-tested per database at each of those (default 1: the newest, or one
    /// never tested).
    #[serde(default)]
    pub sample: Option<usize>,
    /// The window the findings are judged over (default 30d: the runbook's monthly check).
    #[serde(default, with = "crate::duration::optional")]
    pub window: Option<Duration>,
}

impl VerifyConfig {
    /// Refuse settings that cannot work.
    pub fn check(&self) -> Result<()> {
        self.read_schedule()?;
        self.restore_test_schedule()?;
        self.read_subset()?;
        if self.catalogue_interval() < Duration::from_secs(60) {
            return Err(Error::new(
                Kind::Config,
                "[verify] catalogue_interval must be at least 1m",
            ));
        }
        Ok(())
    }

    pub fn catalogue_interval(&self) -> Duration {
        self.catalogue_interval.unwrap_or(Duration::from_secs(3600))
    }

    pub fn read_schedule(&self) -> Result<Schedule> {
        Schedule::parse(self.read_schedule.as_deref().unwrap_or("30 3 * * *"))
            .map_err(|e| e.context("[verify] read_schedule"))
    }

    pub fn read_subset(&self) -> Result<Subset> {
        self.read_subset
            .as_deref()
            .unwrap_or("1/30")
            .parse::<Subset>()
            .map_err(|e| e.context("[verify] read_subset"))
    }

    pub fn restore_test_schedule(&self) -> Result<Schedule> {
        Schedule::parse(self.restore_test_schedule.as_deref().unwrap_or("0 4 * * 0"))
            .map_err(|e| e.context("[verify] restore_test_schedule"))
    }

    pub fn sample(&self) -> usize {
        self.sample.unwrap_or(1)
    }

    pub fn window(&self) -> Duration {
        self.window.unwrap_or(Duration::from_secs(30 * 86_400))
    }
}
