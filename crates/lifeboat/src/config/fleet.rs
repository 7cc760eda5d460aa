//! Which databases the config names at this moment: the configured ones, and what each
//! `[[database]] glob` finds now. Discovery runs again at every call, so files that appeared
//! join and files that vanished leave (their backups stay in the repository, under retention).
//!
//! A discovered database is named by its file stem, and a name is a history in the repository:
//! a stem that is already a configured database's name (for another file), a fleet's name, or
//! the stem of another discovered file (the same stem in two directories) is refused with an
//! error naming both files, and the others carry on. A file that a glob finds and that is also
//! configured by `path` is the configured database (with its own settings), not a second one.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::config::{Config, DatabaseConfig};
use crate::error::{Error, Kind, Result};
use crate::source::fleet::{base_dir, scan};
use crate::source::Source;

/// The databases at one moment.
#[derive(Debug, Default)]
pub struct Members {
    /// Configured databases and the databases every glob found, in the config's order (a
    /// fleet's in path order).
    pub sources: Vec<Source>,
    /// Databases found that cannot be backed up, each with the error its run fails with.
    pub refused: Vec<Refused>,
    /// Files a glob matched and passed over (not SQLite databases), one line each.
    pub skipped: Vec<String>,
}

/// A database a glob found and that cannot be backed up, or a glob that could not be read.
#[derive(Debug)]
pub struct Refused {
    /// The database name (file stem) or, for a whole glob, the fleet's name.
    pub name: String,
    /// The fleet whose glob found it.
    pub fleet: String,
    pub error: Error,
}

/// What discovery found, with each database's config entry (by index).
#[derive(Default)]
struct Found {
    members: Vec<(usize, Source)>,
    refused: Vec<(usize, Refused)>,
    skipped: Vec<(usize, String)>,
}

impl Config {
    /// Whether any `[[database]]` is a glob.
    pub fn has_fleets(&self) -> bool {
        self.databases.iter().any(|d| d.glob.is_some())
    }

    /// The databases now: configured, and found by every glob.
    pub fn members(&self) -> Members {
        self.found().into_members(|_| true)
    }

    /// All databases now (configured and discovered), paths resolved; refused ones left out.
    pub fn all_databases(&self) -> Vec<Source> {
        self.members().sources
    }

    /// `--db` for commands that take several databases: a fleet's name gives every database it
    /// finds now; anything else is [`Config::database`].
    pub fn select(&self, flag: &str) -> Result<Members> {
        if let Some(i) = self.fleet_index(flag) {
            return Ok(self.found().into_members(|e| e == i));
        }
        Ok(Members {
            sources: vec![self.database(flag)?],
            ..Members::default()
        })
    }

    /// Resolve `--db`: a configured name, a discovered name, else a path whose file stem is
    /// the name (the discovered database of that name when it is that file).
    pub fn database(&self, flag: &str) -> Result<Source> {
        if let Some(d) = self
            .databases
            .iter()
            .find(|d| d.glob.is_none() && d.name == flag)
        {
            return Ok(self.resolve(d));
        }
        if let Some(i) = self.fleet_index(flag) {
            return Err(Error::new(
                Kind::Config,
                format!(
                    "--db {flag:?} is a fleet (glob {:?}): name one of its databases",
                    self.databases[i].glob.as_deref().unwrap_or_default()
                ),
            ));
        }
        let path = PathBuf::from(flag);
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .ok_or_else(|| {
                Error::new(
                    Kind::Config,
                    format!("--db {flag:?}: not a configured database name nor a file path"),
                )
            })?
            .to_string();
        if self.has_fleets() {
            let found = self.found();
            let given = std::fs::canonicalize(&path).ok();
            for (_, s) in found.members {
                let same_file = s.name == name
                    && given.is_some()
                    && std::fs::canonicalize(&s.path).ok() == given;
                if s.name == flag || same_file {
                    return Ok(s);
                }
            }
            if let Some((_, r)) = found.refused.into_iter().find(|(_, r)| r.name == flag) {
                return Err(r.error);
            }
        }
        crate::repo::repository::check_name(&name)
            .map_err(|e| e.context(format!("--db {flag:?}")))?;
        Ok(Source::file(name, path))
    }

    /// The database a single-database command works on: `--db`, or the only one there is.
    pub fn single_database(&self, flag: Option<&str>) -> Result<Source> {
        if let Some(f) = flag {
            return self.database(f);
        }
        let members = self.members();
        match (
            members.sources.as_slice(),
            members.refused.into_iter().next(),
        ) {
            ([only], _) => Ok(only.clone()),
            ([], Some(r)) => Err(r.error),
            ([], None) if self.has_fleets() => Err(Error::new(
                Kind::Config,
                "no database given, and the globs in lifeboat.toml find none: pass --db NAME|PATH",
            )),
            ([], None) => Err(Error::new(
                Kind::Config,
                "no database given: pass --db NAME|PATH or declare [[database]] in lifeboat.toml",
            )),
            (many, _) => {
                let mut names: Vec<&str> = many.iter().take(10).map(|d| d.name.as_str()).collect();
                if many.len() > 10 {
                    names.push("…");
                }
                Err(Error::new(
                    Kind::Config,
                    format!(
                        "{} databases are configured ({}): pass --db NAME",
                        many.len(),
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// The config entry behind `--db` (a configured or discovered name, or a path: the database
    /// at that path, or of that name): a discovered database's is its glob entry.
    pub(crate) fn entry_of(&self, flag: &str) -> Option<&DatabaseConfig> {
        let all = self.found().members;
        if let Some((i, _)) = all.iter().find(|(_, s)| s.name == flag) {
            return Some(&self.databases[*i]);
        }
        let given = std::fs::canonicalize(flag).ok();
        let name = Path::new(flag).file_stem().and_then(|s| s.to_str());
        all.iter()
            .find(|(_, s)| {
                (given.is_some() && std::fs::canonicalize(&s.path).ok() == given)
                    || name == Some(s.name.as_str())
            })
            .map(|(i, _)| &self.databases[*i])
    }

    /// When a backup's source file (`source_path`, as its manifest records it) was found by a
    /// glob, is gone, and its directory is still there: the fleet it left. Its backups stay
    /// under retention; it is not stale, as nothing is left to back up. (A missing directory
    /// says nothing: an unmounted volume looks the same.)
    pub fn left_fleet(&self, source_path: &str) -> Option<String> {
        let path = Path::new(source_path);
        let opts = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: true,
        };
        self.databases.iter().find_map(|d| {
            let pattern = self.glob_pattern(d.glob.as_deref()?);
            let matches = glob::Pattern::new(&pattern)
                .ok()?
                .matches_path_with(path, opts);
            let gone = matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
            (matches && gone && base_dir(&pattern).is_dir()).then(|| d.label().to_string())
        })
    }

    /// A glob as scanned: relative to the config file's directory, made absolute (so the paths
    /// it finds match the ones manifests record).
    pub fn glob_pattern(&self, glob: &str) -> String {
        if Path::new(glob).is_absolute() {
            return glob.to_string();
        }
        let base = std::path::absolute(&self.base_dir).unwrap_or_else(|_| self.base_dir.clone());
        let base = glob::Pattern::escape(&base.to_string_lossy());
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            glob.trim_start_matches("./")
        )
    }

    fn fleet_index(&self, name: &str) -> Option<usize> {
        self.databases
            .iter()
            .position(|d| d.glob.is_some() && !d.name.is_empty() && d.name == name)
    }

    /// Every database now, with its entry: configured ones as they are, and each glob scanned.
    fn found(&self) -> Found {
        let mut out = Found::default();
        let mut candidates: Vec<(usize, String, PathBuf)> = Vec::new();
        for (i, d) in self.databases.iter().enumerate() {
            let Some(glob) = &d.glob else {
                continue;
            };
            let fleet = d.label().to_string();
            match scan(&self.glob_pattern(glob)) {
                Ok(s) => {
                    candidates.extend(s.found.into_iter().map(|(n, p)| (i, n, p)));
                    out.refused
                        .extend(s.refused.into_iter().map(|(name, error)| {
                            let fleet = fleet.clone();
                            (i, Refused { name, fleet, error })
                        }));
                    out.skipped.extend(s.skipped.into_iter().map(|w| (i, w)));
                }
                Err(error) => out.refused.push((
                    i,
                    Refused {
                        name: fleet.clone(),
                        error: error.context(format!("fleet {fleet:?}")),
                        fleet,
                    },
                )),
            }
        }
        // The same file found by two globs is one database, under the first entry's settings.
        let mut seen = HashSet::new();
        candidates.retain(|(_, _, p)| seen.insert(p.clone()));
        let mut by_name: HashMap<&str, Vec<&Path>> = HashMap::new();
        for (_, n, p) in &candidates {
            by_name.entry(n.as_str()).or_default().push(p);
        }
        let mut discovered: Vec<(usize, Source)> = Vec::new();
        for (i, name, path) in &candidates {
            let d = &self.databases[*i];
            let fleet = d.label().to_string();
            let found_by = format!(
                "{} (found by glob {:?})",
                path.display(),
                d.glob.as_deref().unwrap_or_default()
            );
            let clash = if let Some(c) = self
                .databases
                .iter()
                .find(|c| c.glob.is_none() && &c.name == name)
            {
                let same = c
                    .path
                    .as_ref()
                    .is_some_and(|p| same_file(&self.base_dir.join(p), path));
                if same {
                    continue; // the configured database, with its own settings
                }
                Some(format!(
                    "{found_by} would share one history with the configured database {name:?} ({}); rename the file or narrow the glob",
                    c.path.as_ref().map_or_else(|| "a D1 database".to_string(), |p| self.base_dir.join(p).display().to_string())
                ))
            } else if self.fleet_index(name).is_some() {
                Some(format!(
                    "{found_by}: {name:?} is the name of a fleet; rename the file or the fleet"
                ))
            } else {
                let others: Vec<String> = by_name[name.as_str()]
                    .iter()
                    .filter(|p| **p != path.as_path())
                    .map(|p| p.display().to_string())
                    .collect();
                (!others.is_empty()).then(|| {
                    format!(
                        "{found_by} and {} have the same file stem, so they would share one history as database {name:?}; rename one",
                        others.join(" and ")
                    )
                })
            };
            match clash {
                Some(why) => out.refused.push((
                    *i,
                    Refused {
                        name: name.clone(),
                        fleet,
                        error: Error::new(Kind::Config, why),
                    },
                )),
                None => discovered.push((*i, self.member(d, name, path))),
            }
        }
        // In the config's order.
        for (i, d) in self.databases.iter().enumerate() {
            if d.glob.is_none() {
                out.members.push((i, self.resolve(d)));
            } else {
                out.members
                    .extend(discovered.iter().filter(|(e, _)| *e == i).cloned());
            }
        }
        out
    }

    /// A database glob entry `d` found: the entry's settings under its own name.
    fn member(&self, d: &DatabaseConfig, name: &str, path: &Path) -> Source {
        Source {
            name: name.to_string(),
            path: path.to_path_buf(),
            sql_mirror: d.sql_mirror,
            schedule: d.schedule.clone(),
            skip_unchanged: d.skip_unchanged,
            ping_url: d.ping_url.clone(),
            fleet: Some(d.label().to_string()),
            replicate: self.sync_interval_of(d),
            ..Source::default()
        }
    }
}

impl Found {
    fn into_members(self, keep: impl Fn(usize) -> bool) -> Members {
        Members {
            sources: self
                .members
                .into_iter()
                .filter(|(i, _)| keep(*i))
                .map(|(_, s)| s)
                .collect(),
            refused: self
                .refused
                .into_iter()
                .filter(|(i, _)| keep(*i))
                .map(|(_, r)| r)
                .collect(),
            skipped: self
                .skipped
                .into_iter()
                .filter(|(i, _)| keep(*i))
                .map(|(_, s)| s)
                .collect(),
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (std::fs::canonicalize(a), std::fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
