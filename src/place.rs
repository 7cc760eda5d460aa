//! Placing a new database file where an old one may live: checks the target before any work,
//! builds into `<target>.lifeboat-tmp` (removed on any failure), then moves an existing database
//! and its `-wal`/`-shm`/`-journal` aside to `<target>.pre-restore-<time>` and renames the new
//! file in. Restore and import both go through here.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::error::{Error, Kind, Result};

/// A database path and its `-wal`, `-shm` and `-journal` companions.
pub fn with_side_files(p: &Path) -> [PathBuf; 4] {
    let side = |suffix: &str| {
        let mut o = p.as_os_str().to_os_string();
        o.push(suffix);
        PathBuf::from(o)
    };
    [
        p.to_path_buf(),
        side("-wal"),
        side("-shm"),
        side("-journal"),
    ]
}

/// Check `target` can be written (refusing an existing database without `force`) and return
/// the temp path to build into. A leftover temp file from a crashed run is removed.
pub fn prepare(target: &Path, force: bool) -> Result<PathBuf> {
    if target.is_dir() {
        return Err(Error::new(
            Kind::Config,
            format!("target {} is a directory", target.display()),
        ));
    }
    let parent = parent(target);
    if !parent.is_dir() {
        return Err(Error::new(
            Kind::Config,
            format!("target directory {} does not exist", parent.display()),
        ));
    }
    if let Some(existing) = with_side_files(target).into_iter().find(|p| p.exists()) {
        if !force {
            return Err(Error::new(
                Kind::TargetExists,
                format!(
                    "target {} exists; pass --force to move it aside",
                    existing.display()
                ),
            ));
        }
    }
    let mut tmp = target.as_os_str().to_os_string();
    tmp.push(".lifeboat-tmp");
    let tmp = PathBuf::from(tmp);
    drop(TempGuard::new(&tmp));
    Ok(tmp)
}

fn parent(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes a temp database (and SQLite's side files) unless disarmed.
pub struct TempGuard(Option<PathBuf>);

impl TempGuard {
    pub fn new(path: &Path) -> Self {
        TempGuard(Some(path.to_path_buf()))
    }

    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            for f in with_side_files(&p) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

/// Move the finished, fsynced `tmp` onto `target`, first moving any existing database aside.
/// Returns where the old one went. If the rename fails the old database is put back.
pub fn place(tmp: &Path, target: &Path) -> Result<Option<PathBuf>> {
    let existing = with_side_files(target).iter().any(|p| p.exists());
    let moved_aside = if existing {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let mut aside = target.as_os_str().to_os_string();
        aside.push(format!(".pre-restore-{stamp}"));
        let aside = PathBuf::from(aside);
        move_all(target, &aside)?;
        Some(aside)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(tmp, target) {
        if let Some(aside) = &moved_aside {
            let _ = move_all(aside, target);
        }
        return Err(Error::io(format!("rename into {}", target.display()), e));
    }
    if let Ok(d) = std::fs::File::open(parent(target)) {
        let _ = d.sync_all();
    }
    Ok(moved_aside)
}

/// Rename a database and whichever side files it has.
fn move_all(from: &Path, to: &Path) -> Result<()> {
    for (f, t) in with_side_files(from).iter().zip(with_side_files(to).iter()) {
        if f.exists() {
            std::fs::rename(f, t)
                .map_err(|e| Error::io(format!("move {} aside", f.display()), e))?;
        }
    }
    Ok(())
}
