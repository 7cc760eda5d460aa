//! What a config gives the daemon's loop: the repository, the channels, the databases found
//! (a fleet's glob again at every discovery) with their schedules.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lifeboat::config::Config;
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::Repository;
use lifeboat::schedule::Schedule;
use lifeboat::source::Source;

use crate::alert_memory::DEFAULT_REPEAT_AFTER;
use crate::alerts::{channels, Channel};
use crate::metrics::Metrics;
use crate::plan::Plan;

/// What the daemon works with; replaced whole on reload.
pub(super) struct Setup {
    pub(super) config: Arc<Config>,
    pub(super) repo: Arc<Repository>,
    pub(super) channels: Vec<Channel>,
    pub(super) sources: BTreeMap<String, Source>,
    /// Fleet members discovery refused (a name clash, a name that cannot be one): each fails.
    pub(super) refused: Vec<lifeboat::config::fleet::Refused>,
    /// Fleet members dropped by the last discovery although their file is still there.
    pub(super) passed_over: Vec<String>,
    /// Discovery warnings already logged (they recur every minute).
    pub(super) said: std::collections::HashSet<String>,
}

impl Setup {
    pub(super) fn new(config: Config, repo_flag: Option<&str>) -> Result<Setup> {
        if config.databases.is_empty() {
            return Err(Error::new(
                Kind::Config,
                "daemon: no database to back up: declare [[database]] (path, d1 or glob) in lifeboat.toml",
            ));
        }
        config.daemon.check()?;
        if let Some(policy) = &config.retention {
            policy.check()?;
        }
        let url = config.repository_url(repo_flag);
        let timeout = config
            .repository
            .timeout
            .unwrap_or(lifeboat::repo::store::DEFAULT_TIMEOUT);
        let repo = Repository::open_with_timeout(&url, true, timeout)?;
        let channels = channels(config.alerts.as_ref(), |k| std::env::var(k).ok());
        Ok(Setup {
            config: Arc::new(config),
            repo: Arc::new(repo),
            channels,
            sources: BTreeMap::new(),
            refused: Vec::new(),
            passed_over: Vec::new(),
            said: std::collections::HashSet::new(),
        })
    }

    /// Find the databases again (a fleet's glob finds new files, and loses vanished ones).
    pub(super) fn discover(&mut self, plan: &mut Plan, metrics: &Metrics) -> Result<()> {
        let default = self.config.daemon.schedule()?;
        let mut sources = BTreeMap::new();
        let mut planned = Vec::new();
        let members = self.config.members();
        self.refused = members.refused;
        for warning in members.skipped {
            if self.said.insert(warning.clone()) {
                tracing::warn!("{warning}");
            }
        }
        // A member that left the fleet while its file is still there (it stopped being a
        // SQLite database) is a failure to tell, not a tenant that left.
        self.passed_over = self
            .sources
            .values()
            .filter(|s| s.fleet.is_some() && s.path.exists())
            .map(|s| s.name.clone())
            .collect();
        for s in members.sources {
            let schedule = match &s.schedule {
                Some(text) => Schedule::parse(text)?,
                None => default.clone(),
            };
            planned.push((s.name.clone(), schedule));
            sources.insert(s.name.clone(), s);
        }
        plan.set_databases(planned);
        self.passed_over.retain(|n| !sources.contains_key(n));
        let names: Vec<&String> = sources.keys().collect();
        metrics.set_fleet(&names);
        metrics.set_databases(names.len());
        self.sources = sources;
        Ok(())
    }

    pub(super) fn ping_url(&self, source: &Source) -> Option<String> {
        source
            .ping_url
            .clone()
            .or_else(|| self.config.alerts.as_ref().and_then(|a| a.ping_url.clone()))
    }

    pub(super) fn repeat_after(&self) -> Duration {
        self.config
            .alerts
            .as_ref()
            .and_then(|a| a.repeat_after)
            .unwrap_or(DEFAULT_REPEAT_AFTER)
    }
}
