//! The per-target lock: one lifeboat command writes a given file at a time (two restores into
//! one target raced and swapped content before).

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::suffixed;

/// One lifeboat writer per target: an exclusive `flock` on `<target>.lifeboat-lock`, which
/// holds the owner's pid (for the message another run prints). The kernel releases it when the
/// process dies, so a killed run never blocks the next.
pub struct TargetLock {
    path: PathBuf,
    _file: File,
}

impl TargetLock {
    pub fn acquire(target: &Path) -> Result<TargetLock> {
        let path = suffixed(target, ".lifeboat-lock");
        let io = |e| Error::io(format!("lock {}", path.display()), e);
        for _ in 0..100 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            if !try_flock(&file).map_err(io)? {
                let mut owner = String::new();
                let _ = file.read_to_string(&mut owner);
                let owner = owner.trim();
                let who = if owner.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {owner})")
                };
                return Err(Error::new(
                    Kind::TargetExists,
                    format!(
                        "another lifeboat command{who} is writing {} right now; wait for it to finish",
                        target.display()
                    ),
                ));
            }
            // The previous holder may have removed the file between our open and our lock:
            // then we hold a lock on a file nobody else will ever see. Start again.
            use std::os::unix::fs::MetadataExt;
            let ours = file.metadata().map_err(io)?;
            let same = std::fs::metadata(&path)
                .is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino());
            if !same {
                continue;
            }
            file.set_len(0).map_err(io)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())
                .map_err(io)?;
            return Ok(TargetLock { path, _file: file });
        }
        Err(Error::new(
            Kind::Internal,
            format!("lock {}: kept changing under us", path.display()),
        ))
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still held: the next run creates a fresh file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether another process holds `target`'s lock right now, and the pid it wrote: a probe that
/// takes nothing (a free lock is let go at once, its file neither created nor removed). The
/// lock is per open file, so a lock this process holds through another descriptor counts too.
pub fn held_elsewhere(target: &Path) -> Option<String> {
    let path = suffixed(target, ".lifeboat-lock");
    let mut file = std::fs::OpenOptions::new().read(true).open(path).ok()?;
    match try_flock(&file) {
        Ok(false) => {
            let mut owner = String::new();
            let _ = file.read_to_string(&mut owner);
            Some(owner.trim().to_string())
        }
        // Free (closing the file lets the probe's lock go), or it cannot be told: the real
        // acquire says why.
        Ok(true) | Err(_) => None,
    }
}

fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_sees_a_held_lock_and_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.db");
        let file = suffixed(&target, ".lifeboat-lock");
        assert_eq!(held_elsewhere(&target), None);
        assert!(!file.exists(), "a probe creates no lock file");
        let lock = TargetLock::acquire(&target).unwrap();
        // Held through another open file (here this process's own): seen, with its pid.
        assert_eq!(
            held_elsewhere(&target),
            Some(std::process::id().to_string())
        );
        assert!(
            held_elsewhere(&target).is_some(),
            "the probe let nothing go"
        );
        drop(lock);
        assert_eq!(held_elsewhere(&target), None);
        // A lock file left free (its holder gone): free, and the probe leaves it free.
        std::fs::write(&file, "12345\n").unwrap();
        assert_eq!(held_elsewhere(&target), None);
        let again = TargetLock::acquire(&target).unwrap();
        drop(again);
    }
}
