//! Database files this process holds open through SQLite (a replicator's connections), so no
//! other code in the process opens them outside SQLite. Closing any descriptor of a file drops
//! every POSIX lock the process holds on it, SQLite's included: then another process's last
//! close checkpoints and deletes the WAL under the replicator. A daemon runs scheduled backups,
//! fleet discovery and unchanged checks beside its replicators, so each of those asks
//! [`is_held`] first (a stat, no open) and reads the file through SQLite, or not at all.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

/// (device, inode) → how many holders.
static HELD: Mutex<BTreeMap<(u64, u64), usize>> = Mutex::new(BTreeMap::new());

fn key(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// While this lives, the file it was taken for counts as held.
#[derive(Debug)]
pub struct Held(Option<(u64, u64)>);

/// Mark the file at `path` (as it is now: its inode) as held open through SQLite.
pub fn hold(path: &Path) -> Held {
    let k = key(path);
    if let Some(k) = k {
        *HELD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(k)
            .or_default() += 1;
    }
    Held(k)
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(k) = self.0 {
            let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = held.get_mut(&k) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&k);
                }
            }
        }
    }
}

/// Whether this process holds the file at `path` open through SQLite: never open it outside.
pub fn is_held(path: &Path) -> bool {
    match key(path) {
        Some(k) => HELD
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&k),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_while_the_guard_lives_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"y").unwrap();
        assert!(!is_held(&a));
        let g1 = hold(&a);
        let g2 = hold(&a);
        assert!(is_held(&a) && !is_held(&b));
        drop(g1);
        assert!(is_held(&a), "two holders");
        // Replaced by another file: that one is not held.
        std::fs::rename(&b, &a).unwrap();
        assert!(!is_held(&a));
        drop(g2);
        assert!(!is_held(dir.path().join("missing").as_path()));
    }
}
