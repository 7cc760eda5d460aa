//! Configuration: the TOML file (`lifeboat.toml`) that names one repository and the databases
//! it protects, with `${VAR}` expansion, and the rules by which command-line flags override it.
//! [`fleet`] turns `[[database]] glob` entries into databases, found again at every call.

mod drill_guard;
pub mod fleet;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Kind, Result};
use crate::source::Source;

/// `[alerts]` in lifeboat.toml. Without it, the runbook's environment variables switch the
/// channels on: `BACKUP_ALERT_WEBHOOK_URL`, `SLACK_WEBHOOK_URL`, and `PLATFORM_ADMIN_EMAIL` with
/// `SMTP_URL` (`SMTP_USERNAME`, `SMTP_PASSWORD`, `SMTP_FROM`). Its `Debug` shows no secret.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Generic webhook: POSTs `{"event", "message", "timestamp", "source", "details"}`.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Slack incoming webhook.
    #[serde(default)]
    pub slack_webhook_url: Option<String>,
    /// Email: the recipient (or a comma-separated list).
    #[serde(default)]
    pub email_to: Option<String>,
    /// Email: `smtp://user:pass@host:587?tls=required`, `smtps://host:465`, `smtp://host:25`.
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// Email: the sender (default: the SMTP user when it is an address, else `lifeboat@` the
    /// recipient's domain).
    #[serde(default)]
    pub email_from: Option<String>,
    /// Email: the SMTP login, over the URL's (a password needs no percent-encoding here).
    #[serde(default)]
    pub smtp_username: Option<String>,
    #[serde(default)]
    pub smtp_password: Option<String>,
    /// Health pings (Healthchecks convention): `/start`, success, `/fail`.
    #[serde(default)]
    pub ping_url: Option<String>,
    /// The same (event, source) is not told again within this (default 6 h; the daemon).
    #[serde(default, with = "crate::duration::optional")]
    pub repeat_after: Option<std::time::Duration>,
    /// Also tell `backup.succeeded` for every stored backup (default false).
    #[serde(default)]
    pub on_success: bool,
}

impl std::fmt::Debug for AlertsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "(set)" } else { "-" };
        f.debug_struct("AlertsConfig")
            .field("webhook_url", &set(&self.webhook_url))
            .field("slack_webhook_url", &set(&self.slack_webhook_url))
            .field("email_to", &self.email_to)
            .field("smtp_url", &set(&self.smtp_url))
            .field("email_from", &self.email_from)
            .field("smtp_username", &set(&self.smtp_username))
            .field("smtp_password", &set(&self.smtp_password))
            .field("ping_url", &set(&self.ping_url))
            .field("repeat_after", &self.repeat_after)
            .field("on_success", &self.on_success)
            .finish()
    }
}

/// What the command line says of a D1 restore target, over the config.
#[derive(Debug, Clone)]
pub struct D1TargetFlags {
    /// `--remote` (true) or `--local` (false); the config's when unset.
    pub remote: Option<bool>,
    /// `--wrangler-config`.
    pub wrangler_config: Option<PathBuf>,
    pub max_import_file: u64,
}

/// The repository used when nothing is configured.
pub const DEFAULT_REPOSITORY: &str = "file://./lifeboat-repo";
/// The config file read when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "lifeboat.toml";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub repository: RepositoryConfig,
    #[serde(default, rename = "database")]
    pub databases: Vec<DatabaseConfig>,
    /// `[retention]`: what `lifeboat prune` keeps.
    #[serde(default)]
    pub retention: Option<crate::repo::retention::RetentionPolicy>,
    /// `[alerts]`: where failures are told (lifeboat-daemon sends them).
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
    /// `[status]`: when a database's last good backup is too old.
    #[serde(default)]
    pub status: crate::status::StatusConfig,
    /// `[daemon]`: schedules and how many backups run at once.
    #[serde(default)]
    pub daemon: crate::schedule::DaemonConfig,
    /// `[verify]`: when the daemon runs each rung of verification.
    #[serde(default)]
    pub verify: crate::verify::rungs::VerifyConfig,
    /// `[objectives]`: the RTO a drill is held to.
    #[serde(default)]
    pub objectives: crate::drill::Objectives,
    /// `[drill]`: the data checks every drill runs (`[[drill.check]]`).
    #[serde(default)]
    pub drill: crate::drill::DrillConfig,
    /// `[replication]`: how replicated databases are shipped, watched and kept.
    #[serde(default)]
    pub replication: crate::replicate::ReplicationConfig,
    /// Directory whose relative paths the file's paths are resolved against (not in the file).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    pub url: String,
    /// zstd level for new backups (1–22; default 1).
    #[serde(default = "default_level")]
    pub compression_level: i32,
    /// S3: how long to wait for a connection, and for an answer, before a request is retried
    /// (once) and then given up (`"30s"`).
    #[serde(default, with = "crate::duration::optional")]
    pub timeout: Option<std::time::Duration>,
}

impl Default for RepositoryConfig {
    fn default() -> Self {
        RepositoryConfig {
            url: DEFAULT_REPOSITORY.to_string(),
            compression_level: default_level(),
            timeout: None,
        }
    }
}

fn default_level() -> i32 {
    crate::backup::pipeline::DEFAULT_COMPRESSION_LEVEL
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database's name in the repository. For a `glob` entry (optional): the fleet's name,
    /// which `--db` accepts for every database it finds.
    #[serde(default)]
    pub name: String,
    /// A SQLite database file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Or a Cloudflare D1 database, through wrangler.
    #[serde(default)]
    pub d1: Option<crate::d1::D1Config>,
    /// Or every SQLite file this glob matches (database per tenant), found again at every run,
    /// each named by its file stem; the entry's other settings apply to each.
    #[serde(default)]
    pub glob: Option<String>,
    /// How to run wrangler (default: `wrangler` on PATH, else `npx --no-install wrangler`).
    #[serde(default)]
    pub wrangler: Option<String>,
    /// Which rows belong to which tenant (defaults: table `tenants`, column `tenant_id`).
    #[serde(default)]
    pub tenancy: Option<crate::tenant::map::TenancyConfig>,
    /// Also write each backup as a D1-dialect dump at `<name>/backups/backup-YYYY-MM-DD.sql`,
    /// the key the runbook's manual procedure fetches (the day's last backup wins).
    #[serde(default)]
    pub sql_mirror: bool,
    /// When the daemon backs this database up (cron, UTC); `[daemon] schedule` when unset.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Skip a scheduled backup when unchanged since the newest good one; `[daemon]`'s when unset.
    #[serde(default)]
    pub skip_unchanged: Option<bool>,
    /// This database's own health-ping URL (Healthchecks convention), over `[alerts] ping_url`.
    #[serde(default)]
    pub ping_url: Option<String>,
    /// Replicate it continuously (WAL mode; the daemon, or `lifeboat replicate`).
    #[serde(default)]
    pub replicate: Option<bool>,
    /// Its own sync interval; setting it turns replication on unless `replicate = false`.
    #[serde(default, with = "crate::duration::optional")]
    pub sync_interval: Option<std::time::Duration>,
}

impl DatabaseConfig {
    /// Whether the entry is replicated: `replicate = true`, or a `sync_interval` of its own.
    pub fn replicated(&self) -> bool {
        self.replicate.unwrap_or(self.sync_interval.is_some())
    }

    /// How messages name the entry: its name, else its glob (a fleet without a name).
    pub fn label(&self) -> &str {
        match &self.glob {
            Some(g) if self.name.is_empty() => g,
            _ => &self.name,
        }
    }
}

impl Config {
    /// Load `explicit` if given, else `./lifeboat.toml` if it exists, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None => {
                let p = PathBuf::from(DEFAULT_CONFIG_FILE);
                if !p.exists() {
                    return Ok(Config {
                        base_dir: PathBuf::from("."),
                        ..Config::default()
                    });
                }
                p
            }
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::new(
                Kind::Config,
                format!("config {}: cannot read: {e}", path.display()),
            )
        })?;
        let mut cfg = Config::parse(&text, |k| std::env::var(k).ok())
            .map_err(|e| e.context(format!("config {}", path.display())))?;
        cfg.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(cfg)
    }

    /// Parse config text, expanding `${VAR}` in every string value with `env`.
    pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut value: toml::Value = toml::from_str(text)
            .map_err(|e| Error::new(Kind::Config, format!("invalid TOML: {}", e.message())))?;
        expand_value(&mut value, &env)?;
        let mut cfg: Config = value
            .try_into()
            .map_err(|e: toml::de::Error| Error::new(Kind::Config, e.message().to_string()))?;
        cfg.base_dir = PathBuf::from(".");
        if !(1..=22).contains(&cfg.repository.compression_level) {
            return Err(Error::new(
                Kind::Config,
                "repository.compression_level must be between 1 and 22",
            ));
        }
        cfg.daemon.check()?;
        cfg.verify.check()?;
        cfg.replication.check()?;
        crate::drill::check::validate(&cfg.drill)?;
        if let Some(t) = &cfg.daemon.drill_target {
            t.parse::<crate::drill::TargetSpec>()
                .map_err(|e| Error::new(Kind::Config, format!("[daemon] drill_target: {e}")))?;
        }
        for (i, d) in cfg.databases.iter().enumerate() {
            let label = d.label();
            if let Some(s) = &d.schedule {
                crate::schedule::Schedule::parse(s)
                    .map_err(|e| e.context(format!("database {label:?}")))?;
            }
            let kinds = [d.path.is_some(), d.d1.is_some(), d.glob.is_some()];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(Error::new(
                    Kind::Config,
                    format!(
                        "database {label:?} needs exactly one of `path` (a SQLite file), `d1` and `glob` (SQLite files, one database each)"
                    ),
                ));
            }
            if d.glob.is_none() && d.name.is_empty() {
                return Err(Error::new(
                    Kind::Config,
                    format!("database {label:?} needs a `name` (its name in the repository)"),
                ));
            }
            if !d.name.is_empty() {
                crate::repo::repository::check_name(&d.name)
                    .map_err(|e| e.context("database.name"))?;
            }
            if let Some(g) = &d.glob {
                if g.trim().is_empty() {
                    return Err(Error::new(
                        Kind::Config,
                        "database glob = \"\" matches nothing (say which files: glob = \"/srv/tenants/*.db\")",
                    ));
                }
                glob::Pattern::new(g).map_err(|e| {
                    Error::new(
                        Kind::Config,
                        format!("database glob {g:?}: {} (at character {})", e.msg, e.pos),
                    )
                })?;
            }
            if d.replicated() && d.d1.is_some() {
                return Err(Error::new(
                    Kind::Config,
                    format!("database {label:?}: a D1 database is backed up, not replicated (replication needs a SQLite file in WAL mode)"),
                ));
            }
            if d.sync_interval.is_some_and(|s| s.is_zero()) {
                return Err(Error::new(
                    Kind::Config,
                    format!("database {label:?}: sync_interval must be more than 0"),
                ));
            }
            if d.wrangler.as_deref().is_some_and(|w| w.trim().is_empty()) {
                return Err(Error::new(
                    Kind::Config,
                    format!(
                        "database {label:?}: wrangler = \"\" names no command (leave it out to use $LIFEBOAT_WRANGLER or wrangler on PATH)"
                    ),
                ));
            }
            if !d.name.is_empty() && cfg.databases[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::new(
                    Kind::Config,
                    format!("database {:?} is declared twice", d.name),
                ));
            }
        }
        Ok(cfg)
    }

    /// The repository URL, with `--repo` taking precedence; relative `file://` paths in the
    /// config file are resolved against the file's directory.
    pub fn repository_url(&self, flag: Option<&str>) -> String {
        if let Some(url) = flag {
            return url.to_string();
        }
        let url = &self.repository.url;
        if let Some(rel) = url.strip_prefix("file://") {
            if !rel.starts_with('/') && self.base_dir != Path::new(".") {
                return format!("file://{}", self.base_dir.join(rel).display());
            }
        }
        url.clone()
    }

    /// A configured (not discovered) database with its paths resolved against the config
    /// file's directory.
    fn resolve(&self, d: &DatabaseConfig) -> Source {
        let d1 = d.d1.clone().map(|mut c| {
            c.config = c.config.map(|p| self.base_dir.join(p));
            c
        });
        Source {
            name: d.name.clone(),
            path: d
                .path
                .as_ref()
                .map(|p| self.base_dir.join(p))
                .unwrap_or_default(),
            sql_mirror: d.sql_mirror,
            d1,
            wrangler: d.wrangler.clone(),
            sql_dump: None,
            schedule: d.schedule.clone(),
            skip_unchanged: d.skip_unchanged,
            ping_url: d.ping_url.clone(),
            fleet: None,
            replicate: self.sync_interval_of(d),
        }
    }

    /// How often entry `d`'s databases are synced, when they are replicated.
    fn sync_interval_of(&self, d: &DatabaseConfig) -> Option<std::time::Duration> {
        d.replicated()
            .then(|| d.sync_interval.unwrap_or(self.replication.sync_interval()))
    }

    /// The tenancy settings for `--db` (a configured or discovered name, or a path: the
    /// database at that path, or of that name), else the only configured entry's, else the
    /// defaults. A fleet's databases take their glob entry's.
    pub fn tenancy_for(&self, db: Option<&str>) -> crate::tenant::map::TenancyConfig {
        let found = match db {
            None => match self.databases.as_slice() {
                [only] => Some(only),
                _ => None,
            },
            Some(flag) => self.entry_of(flag),
        };
        found.and_then(|d| d.tenancy.clone()).unwrap_or_default()
    }

    /// The D1 database `name` as a restore target of a backup of `backup_of`. A configured D1
    /// database of that name (or under that name) lends its settings. Otherwise the D1 database
    /// whose backup this is lends how to run wrangler (the command and the wrangler config
    /// file), never its name or location. Flags override both.
    pub fn d1_target(
        &self,
        name: &str,
        backup_of: &str,
        flags: &D1TargetFlags,
    ) -> Result<crate::d1::D1Target> {
        let all: Vec<Source> = self
            .databases
            .iter()
            .filter(|d| d.d1.is_some())
            .map(|d| self.resolve(d))
            .collect();
        let configured = all.iter().find(|d| {
            d.d1.as_ref().is_some_and(|c| c.database == name) || (d.name == name && d.d1.is_some())
        });
        let source = all.iter().find(|d| d.name == backup_of && d.d1.is_some());
        let (database, remote, config, wrangler_cmd, backup_name) = match (configured, source) {
            (Some(d), _) => {
                let c = d.d1.clone().expect("filtered on d1");
                (
                    c.database,
                    c.remote,
                    c.config,
                    d.wrangler.clone(),
                    d.name.clone(),
                )
            }
            (None, Some(s)) => (
                name.to_string(),
                false,
                s.d1.as_ref().and_then(|c| c.config.clone()),
                s.wrangler.clone(),
                name.to_string(),
            ),
            (None, None) => (name.to_string(), false, None, None, name.to_string()),
        };
        crate::repo::repository::check_name(&backup_name)?;
        Ok(crate::d1::D1Target {
            database,
            remote: flags.remote.unwrap_or(remote),
            wrangler: crate::d1::Wrangler::new(
                wrangler_cmd.as_deref(),
                flags.wrangler_config.clone().or(config),
            ),
            backup_name,
            max_import_file: flags.max_import_file,
        })
    }
}

fn expand_value(v: &mut toml::Value, env: &impl Fn(&str) -> Option<String>) -> Result<()> {
    match v {
        toml::Value::String(s) => *s = expand(s, env)?,
        toml::Value::Array(items) => {
            for item in items {
                expand_value(item, env)?;
            }
        }
        toml::Value::Table(t) => {
            for (_, item) in t.iter_mut() {
                expand_value(item, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expand `${VAR}` references; `$$` is a literal `$`. An unset variable is an error, not "".
pub fn expand(s: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| Error::new(Kind::Config, format!("unterminated ${{ in {s:?}")))?;
            let name = &body[..end];
            let value = env(name).ok_or_else(|| {
                Error::new(
                    Kind::Config,
                    format!("environment variable {name} is not set"),
                )
            })?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        (k == "HOME_DIR").then(|| "/srv".to_string())
    }

    #[test]
    fn parses_and_expands() {
        let cfg = Config::parse(
            r#"
            [repository]
            url = "file://${HOME_DIR}/repo"
            [[database]]
            name = "studio-platform-db"
            path = "${HOME_DIR}/studio.db"
            "#,
            env,
        )
        .unwrap();
        assert_eq!(cfg.repository.url, "file:///srv/repo");
        assert_eq!(cfg.databases[0].path, Some(PathBuf::from("/srv/studio.db")));
    }

    #[test]
    fn unset_variable_and_unknown_keys_are_errors() {
        let e = Config::parse("[repository]\nurl = \"${NOPE}\"", env).unwrap_err();
        assert!(e.to_string().contains("NOPE is not set"), "{e}");
        let e = Config::parse("[repository]\nurll = \"x\"", env).unwrap_err();
        assert_eq!(e.kind, Kind::Config);
        assert!(e.to_string().contains("urll"), "{e}");
    }

    #[test]
    fn d1_databases_and_exactly_one_source() {
        let cfg = Config::parse(
            "[[database]]\nname = \"studio-platform-db\"\nd1 = { database = \"studio-platform-db\", remote = true, config = \"packages/api/wrangler.toml\" }\nwrangler = \"npx wrangler\"\n",
            env,
        )
        .unwrap();
        let db = cfg.database("studio-platform-db").unwrap();
        let d1 = db.d1.unwrap();
        assert!(d1.remote);
        assert_eq!(
            d1.config,
            Some(PathBuf::from("./packages/api/wrangler.toml"))
        );
        assert_eq!(db.wrangler.as_deref(), Some("npx wrangler"));
        let e = Config::parse("[[database]]\nname = \"x\"\n", env).unwrap_err();
        assert!(e.to_string().contains("exactly one of `path`"), "{e}");
        let e = Config::parse(
            "[[database]]\nname = \"x\"\npath = \"a.db\"\nd1 = { database = \"x\" }\n",
            env,
        )
        .unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn dollar_escapes() {
        assert_eq!(expand("a$$b$c", &env).unwrap(), "a$b$c");
    }

    #[test]
    fn db_flag_is_name_or_path() {
        let cfg = Config::parse("[[database]]\nname = \"main\"\npath = \"m.db\"", env).unwrap();
        assert_eq!(cfg.database("main").unwrap().path, PathBuf::from("./m.db"));
        let d = cfg.database("./data/studio.db").unwrap();
        assert_eq!(d.name, "studio");
        assert_eq!(d.path, PathBuf::from("./data/studio.db"));
        assert_eq!(cfg.single_database(None).unwrap().name, "main");
    }
}
