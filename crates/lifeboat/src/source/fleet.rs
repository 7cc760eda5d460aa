//! Fleets: the SQLite files a `[[database]] glob` finds (database-per-tenant apps), looked for
//! again at every run, each named by its file stem. A scan never opens SQLite: it lists the
//! directory and reads each file's 16-byte magic.
//!
//! What a scan passes over, and why:
//! - SQLite's own side files (`-wal`, `-shm`, `-journal`, `-wal2`, super-journals `-mjXXXXXXXX`)
//!   and lifeboat's (`.lifeboat-tmp…`, `.lifeboat-lock`, …), whatever the glob says;
//! - dot files (`*` never matches a leading dot, as in a shell), directories;
//! - empty files, silently: SQLite creates a database's file before it writes its first page;
//! - files that are not SQLite databases, with a warning (`skipped`): narrow the glob.
//!
//! A database whose stem is not a valid repository name cannot be filed, so it is refused
//! (`refused`): a database the glob finds is backed up or its run fails, never silently left
//! out. A glob whose directory does not exist (an unmounted volume, a typo) is an error.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};
use crate::repo::repository::check_name;

/// What one scan of a glob found.
#[derive(Debug, Default)]
pub struct Scan {
    /// (name, path) of each SQLite database found, in path order.
    pub found: Vec<(String, PathBuf)>,
    /// Databases found that cannot be backed up: (stem, why).
    pub refused: Vec<(String, Error)>,
    /// Files passed over, one line each (not SQLite databases).
    pub skipped: Vec<String>,
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Find the databases matching `pattern` (an absolute or already resolved glob).
pub fn scan(pattern: &str) -> Result<Scan> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(pattern, opts).map_err(|e| {
        Error::new(
            Kind::Config,
            format!("glob {pattern:?}: {} (at character {})", e.msg, e.pos),
        )
    })?;
    let base = base_dir(pattern);
    if !base.is_dir() {
        return Err(Error::new(
            Kind::Database,
            format!(
                "glob {pattern:?}: directory {} does not exist (an unmounted volume?)",
                base.display()
            ),
        ));
    }
    let mut out = Scan::default();
    for entry in paths {
        let path = match entry {
            Ok(p) => p,
            Err(e) => {
                out.skipped.push(format!(
                    "{}: cannot be read: {}",
                    e.path().display(),
                    e.error()
                ));
                continue;
            }
        };
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            out.skipped.push(format!(
                "{}: the file name is not UTF-8, so it cannot be a database name",
                path.display()
            ));
            continue;
        };
        if is_side_file(file_name) {
            continue;
        }
        match looks_like_sqlite(&path) {
            Magic::Sqlite => {}
            Magic::Empty | Magic::Gone | Magic::NotAFile => continue,
            Magic::Other => {
                out.skipped.push(format!(
                    "{}: not a SQLite database (no SQLite header); passed over",
                    path.display()
                ));
                continue;
            }
        }
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(file_name)
            .to_string();
        match check_name(&stem) {
            Ok(()) => out.found.push((stem, path)),
            Err(e) => out.refused.push((
                stem,
                e.context(format!(
                    "{}: found by glob {pattern:?}, but its stem cannot be a database name; rename the file",
                    path.display()
                )),
            )),
        }
    }
    out.found.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// SQLite's and lifeboat's files next to a database: never databases themselves.
pub fn is_side_file(name: &str) -> bool {
    if name.contains(".lifeboat-") {
        return true;
    }
    if ["-wal", "-shm", "-journal", "-wal2"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return true;
    }
    // A super-journal: `<db>-mj` and 8 hex digits.
    name.len() > 11 && {
        let (head, tail) = name.split_at(name.len() - 11);
        !head.is_empty()
            && tail.starts_with("-mj")
            && tail[3..].bytes().all(|b| b.is_ascii_hexdigit())
    }
}

enum Magic {
    Sqlite,
    Empty,
    Other,
    Gone,
    NotAFile,
}

fn looks_like_sqlite(path: &Path) -> Magic {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Magic::NotAFile,
        Ok(m) if m.len() == 0 => return Magic::Empty,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Magic::Gone,
        // Unreadable: a database all the same, as far as we can tell; its backup says why.
        Err(_) => return Magic::Sqlite,
    }
    // A member this process replicates is SQLite, and must not be opened outside SQLite.
    if crate::fs::held::is_held(path) {
        return Magic::Sqlite;
    }
    let mut head = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| {
        let mut n = 0;
        while n < head.len() {
            match f.read(&mut head[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    });
    match read {
        Ok(16) if &head == SQLITE_MAGIC => Magic::Sqlite,
        Ok(_) => Magic::Other,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Magic::Gone,
        Err(_) => Magic::Sqlite,
    }
}

/// The directory a glob lists: its leading components without a wildcard.
pub fn base_dir(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    for c in Path::new(pattern).components() {
        let s = c.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        base.push(c);
    }
    if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else if base == Path::new(pattern) {
        // No wildcard at all: the file's directory.
        base.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_files_are_never_databases() {
        for side in [
            "a.db-wal",
            "a.db-shm",
            "a.db-journal",
            "a.db-wal2",
            "a.db-mj1A2b3C4d",
            "a.db.lifeboat-tmp-12-0000abcd",
            "a.db.lifeboat-lock",
        ] {
            assert!(is_side_file(side), "{side}");
        }
        for db in ["a.db", "wal", "tenant-journal.sqlite", "x-mj", "b.sqlite3"] {
            assert!(!is_side_file(db), "{db}");
        }
    }

    #[test]
    fn base_dirs() {
        assert_eq!(base_dir("/srv/t/*.db"), PathBuf::from("/srv/t"));
        assert_eq!(base_dir("/srv/*/x/*.db"), PathBuf::from("/srv"));
        assert_eq!(base_dir("*.db"), PathBuf::from("."));
        assert_eq!(base_dir("/srv/t/a.db"), PathBuf::from("/srv/t"));
    }

    #[test]
    fn scans_sort_pass_over_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in ["b.db", "a.db", "bad name.db"] {
            rusqlite::Connection::open(d.join(n))
                .unwrap()
                .execute_batch("CREATE TABLE t(x);")
                .unwrap();
        }
        std::fs::write(d.join("notes.db"), "not a database at all, just text").unwrap();
        std::fs::write(d.join("new.db"), "").unwrap();
        std::fs::write(d.join("a.db-wal"), "").unwrap();
        std::fs::write(d.join(".hidden.db"), "").unwrap();
        std::fs::create_dir(d.join("dir.db")).unwrap();
        let pattern = format!("{}/*", glob::Pattern::escape(&d.display().to_string()));
        let s = scan(&pattern).unwrap();
        let names: Vec<&str> = s.found.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(s.refused.len(), 1);
        assert_eq!(s.refused[0].0, "bad name");
        assert!(s.refused[0].1.to_string().contains("rename the file"));
        assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
        assert!(s.skipped[0].contains("notes.db: not a SQLite database"));
        let e = scan(&format!("{}/gone/*.db", d.display())).unwrap_err();
        assert_eq!(e.kind, Kind::Database);
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = scan(&format!("{}/[.db", d.display())).unwrap_err();
        assert_eq!(e.kind, Kind::Config);
    }
}
