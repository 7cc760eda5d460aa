//! A drill restores over its target, so its target must never be a database lifeboat protects:
//! not a configured (or discovered) SQLite file, not a configured D1 database at the same
//! location. `lifeboat drill` and the daemon both ask before a drill starts.

use std::path::Path;

use crate::config::Config;
use crate::drill::Target;
use crate::error::{Error, Kind, Result};

impl Config {
    /// Refuse a drill `target` that is one of the databases this config protects, or the file
    /// `drilled` (the database being drilled, when given by path).
    pub fn refuse_protected_drill_target(
        &self,
        target: &Target,
        drilled: Option<&Path>,
    ) -> Result<()> {
        let refuse = |what: String| {
            Err(Error::new(
                Kind::Config,
                format!("drill target {what} is a database lifeboat protects: a drill would replace it; restore into a test database or file instead"),
            ))
        };
        match target {
            Target::Scratch => Ok(()),
            Target::File(path) => {
                if drilled.is_some_and(|d| same_file(path, d)) {
                    return refuse(format!("{} (the database being drilled)", path.display()));
                }
                for db in self.all_databases() {
                    if db.d1.is_none() && same_file(path, &db.path) {
                        return refuse(format!("{} (database {})", path.display(), db.name));
                    }
                }
                Ok(())
            }
            Target::D1(t) => {
                for db in self.all_databases() {
                    if db
                        .d1
                        .as_ref()
                        .is_some_and(|c| c.database == t.database && c.remote == t.remote)
                    {
                        let place = if t.remote { "remote" } else { "local" };
                        return refuse(format!(
                            "d1:{} ({place}, database {})",
                            t.database, db.name
                        ));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Whether two paths name one existing file (through links, relative paths, hard links).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
