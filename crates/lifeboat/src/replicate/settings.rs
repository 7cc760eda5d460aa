//! `[replication]` in lifeboat.toml: how replicated databases are shipped, watched, compacted
//! and kept. A database is replicated with `[[database]] replicate = true` or its own
//! `sync_interval`; these settings apply to all of them.

use std::time::Duration;

use serde::Deserialize;

use super::ReplicateOptions;
use crate::error::{Error, Kind, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How often new transactions are shipped: the restore resolution (default 1 s).
    #[serde(default, with = "crate::duration::optional")]
    pub sync_interval: Option<Duration>,
    /// `replication.stalled` when a database with writes pending has not shipped them for
    /// this long (default 60 s).
    #[serde(default, with = "crate::duration::optional")]
    pub max_lag: Option<Duration>,
    /// How far back a point-in-time restore reaches (default 7 d); older generations and
    /// segments are pruned. Scheduled backups keep their own `[retention]`.
    #[serde(default, with = "crate::duration::optional")]
    pub pitr_within: Option<Duration>,
    /// Every replicated commit stays a restore point this long (default 24 h); older segments
    /// are merged into coarser ones.
    #[serde(default, with = "crate::duration::optional")]
    pub pitr_fine_within: Option<Duration>,
    /// The windows segments are merged into as they close, one level each (default
    /// `["1m", "1h"]`): each a multiple of the one before.
    #[serde(default)]
    pub compact_windows: Option<Vec<String>>,
    /// How many databases the daemon syncs at once (default 4).
    #[serde(default)]
    pub workers: Option<usize>,
    /// A PASSIVE checkpoint once this many frames were shipped (default 1000)…
    #[serde(default)]
    pub checkpoint_frames: Option<u64>,
    /// …or this long after the last one (default 1 min).
    #[serde(default, with = "crate::duration::optional")]
    pub checkpoint_interval: Option<Duration>,
    /// The safety valve: a WAL larger than this many bytes gets a TRUNCATE checkpoint
    /// (default 512 MiB).
    #[serde(default)]
    pub truncate_wal_size: Option<u64>,
}

impl ReplicationConfig {
    /// Refuse settings that cannot work.
    pub fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::new(Kind::Config, format!("[replication] {m}")));
        if self.sync_interval.is_some_and(|d| d.is_zero()) {
            return bad("sync_interval must be more than 0");
        }
        if self.max_lag() < self.sync_interval() {
            return bad("max_lag must be at least sync_interval");
        }
        if self.pitr_fine_within() > self.pitr_within() {
            return bad("pitr_fine_within must not be longer than pitr_within");
        }
        self.compact_windows()?;
        if self.workers == Some(0) {
            return bad("workers must be at least 1");
        }
        if self.checkpoint_frames == Some(0) {
            return bad("checkpoint_frames must be at least 1");
        }
        Ok(())
    }

    pub fn sync_interval(&self) -> Duration {
        self.sync_interval.unwrap_or(Duration::from_secs(1))
    }
    pub fn max_lag(&self) -> Duration {
        self.max_lag.unwrap_or(Duration::from_secs(60))
    }
    pub fn pitr_within(&self) -> Duration {
        self.pitr_within.unwrap_or(Duration::from_secs(7 * 86400))
    }
    pub fn pitr_fine_within(&self) -> Duration {
        self.pitr_fine_within.unwrap_or(Duration::from_secs(86400))
    }
    /// The compaction windows, checked: each longer than 0 and a multiple of the one before
    /// (so a window of one level is made of whole windows of the level below).
    pub fn compact_windows(&self) -> Result<Vec<Duration>> {
        let bad =
            |m: String| Error::new(Kind::Config, format!("[replication] compact_windows: {m}"));
        let Some(list) = &self.compact_windows else {
            return Ok(vec![Duration::from_secs(60), Duration::from_secs(3600)]);
        };
        if list.is_empty() || list.len() > 8 {
            return Err(bad(
                "give one to eight windows, such as [\"1m\", \"1h\"]".into()
            ));
        }
        let mut out: Vec<Duration> = Vec::new();
        for text in list {
            let d = humantime::parse_duration(text)
                .map_err(|e| bad(format!("{text:?} is not a duration (say \"1m\"): {e}")))?;
            if d.as_secs() == 0 || d.subsec_nanos() != 0 {
                return Err(bad(format!("{text:?} must be a whole number of seconds")));
            }
            if let Some(prev) = out.last() {
                if d <= *prev || d.as_secs() % prev.as_secs() != 0 {
                    return Err(bad(format!(
                        "{text:?} must be a longer multiple of the window before it"
                    )));
                }
            }
            out.push(d);
        }
        Ok(out)
    }

    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(4)
    }

    /// The replicator's options for a database whose own sync interval is `own` (else this
    /// section's).
    pub fn options(&self, own: Option<Duration>) -> ReplicateOptions {
        let d = ReplicateOptions::default();
        ReplicateOptions {
            sync_interval: own.unwrap_or(self.sync_interval()),
            checkpoint_frames: self.checkpoint_frames.unwrap_or(d.checkpoint_frames),
            checkpoint_interval: self.checkpoint_interval.unwrap_or(d.checkpoint_interval),
            truncate_wal_bytes: self.truncate_wal_size.unwrap_or(d.truncate_wal_bytes),
            ..d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let c = ReplicationConfig::default();
        c.check().unwrap();
        assert_eq!(c.sync_interval(), Duration::from_secs(1));
        assert_eq!(
            c.options(Some(Duration::from_millis(250)))
                .sync_interval
                .as_millis(),
            250
        );
        let zero: ReplicationConfig = toml::from_str("sync_interval = \"0s\"").unwrap();
        assert!(zero.check().is_err());
        let lag: ReplicationConfig =
            toml::from_str("sync_interval = \"2m\"\nmax_lag = \"1m\"").unwrap();
        assert!(lag.check().is_err());
        let fine: ReplicationConfig =
            toml::from_str("pitr_within = \"1d\"\npitr_fine_within = \"2d\"").unwrap();
        assert!(fine.check().is_err());
        assert_eq!(c.compact_windows().unwrap().len(), 2);
        for w in [
            "[]",
            "[\"0s\"]",
            "[\"1m\", \"90s\"]",
            "[\"1m\", \"1m\"]",
            "[\"x\"]",
        ] {
            let c: ReplicationConfig = toml::from_str(&format!("compact_windows = {w}")).unwrap();
            assert!(c.check().is_err(), "{w}");
        }
        let c: ReplicationConfig = toml::from_str("compact_windows = [\"2s\", \"10s\"]").unwrap();
        assert_eq!(c.compact_windows().unwrap()[1], Duration::from_secs(10));
    }
}
