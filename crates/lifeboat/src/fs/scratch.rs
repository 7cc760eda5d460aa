//! Scratch directories: where backups are staged and downloaded images are decompressed and
//! checked. Each is removed when its command ends; one left behind by a process that was
//! killed (it can hold a whole database image) is removed by the next lifeboat run.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Kind, Result};

const PREFIX: &str = "lifeboat-";

/// A directory left by a dead process is only removed once nothing in it has changed for this
/// long, in case it belongs to a live process lifeboat cannot see (another PID namespace
/// sharing the same scratch volume).
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Create a scratch directory in `dir` (default: the system temp directory), first removing
/// stale ones left there by killed lifeboat processes.
pub fn scratch(dir: Option<&Path>) -> Result<tempfile::TempDir> {
    let base = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    remove_stale(&base, STALE_AFTER);
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir_in(&base)
        .map_err(|e| match e.kind() {
            // A flag or setting naming no directory: the user's to fix, exit 2.
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => Error::new(
                Kind::Config,
                format!("scratch directory {}: not a directory", base.display()),
            ),
            _ => Error::io(format!("scratch directory in {}", base.display()), e),
        })
}

/// Remove scratch directories in `base` whose process is gone and whose contents have not
/// changed for `quiet`. Best effort: whatever cannot be read or removed is left alone.
pub fn remove_stale(base: &Path, quiet: Duration) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if !is_dir || crate::process::pid_alive(pid) || !quiet_for(&e.path(), quiet) {
            continue;
        }
        if std::fs::remove_dir_all(e.path()).is_ok() {
            tracing::info!(path = %e.path().display(), pid, "removed scratch directory of a process that no longer runs");
        }
    }
}

/// True when neither `dir` nor anything directly in it was modified within `quiet`.
fn quiet_for(dir: &Path, quiet: Duration) -> bool {
    let recent = |m: std::io::Result<std::fs::Metadata>| {
        m.and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_none_or(|age| age < quiet)
    };
    if recent(std::fs::metadata(dir)) {
        return false;
    }
    match std::fs::read_dir(dir) {
        Ok(entries) => !entries.flatten().any(|e| recent(e.metadata())),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_quiet_directories_of_dead_processes() {
        let base = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its pid is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = base.path().join(format!("{PREFIX}{dead}-abc"));
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("image.sqlite"), b"x").unwrap();
        let mine = base
            .path()
            .join(format!("{PREFIX}{}-def", std::process::id()));
        std::fs::create_dir(&mine).unwrap();
        let other = base.path().join("lifeboat-notapid");
        std::fs::create_dir(&other).unwrap();

        // Recently modified: kept even though its process is gone.
        remove_stale(base.path(), Duration::from_secs(3600));
        assert!(stale.exists());
        // Quiet long enough (zero here): removed; the live process's and the foreign one stay.
        remove_stale(base.path(), Duration::ZERO);
        assert!(!stale.exists());
        assert!(mine.exists());
        assert!(other.exists());
    }
}
