//! Moving an old database aside so that no kill can split it from its WAL or journal: the
//! database and its side files are first hard-linked under the new name (which is then
//! complete), then the old names go, the database's first (an application started meanwhile
//! finds no database rather than one without its last transactions). Where hard links are not
//! allowed, renames, the database first. Either way the move is written down first
//! (`<target>.lifeboat-aside`): a run killed half-way is finished by the next one on that target.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{rename_noreplace, suffixed, with_side_files, FileId};

fn intent(target: &Path) -> PathBuf {
    suffixed(target, ".lifeboat-aside")
}

fn sync_dir_of(p: &Path) {
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Move `target` and its side files to a name never used before: `<target>.pre-<verb>-<time>`
/// with milliseconds, and `-2`, `-3`, … when even that is taken. Returns the new name.
pub fn move_aside(target: &Path, verb: &str) -> Result<PathBuf> {
    let io = |e| Error::io(format!("move {} aside", target.display()), e);
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    for n in 1..10_000 {
        let extra = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let aside = suffixed(target, &format!(".pre-{verb}-{stamp}{extra}"));
        if with_side_files(&aside)
            .iter()
            .any(|p| p.symlink_metadata().is_ok())
        {
            continue;
        }
        write_intent(target, &aside).map_err(io)?;
        match move_all(target, &aside) {
            Ok(()) => {
                let _ = std::fs::remove_file(intent(target));
                sync_dir_of(target);
                return Ok(aside);
            }
            // Someone took the name between the look and the move: try the next.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(intent(target));
                continue;
            }
            Err(e) => {
                let _ = std::fs::remove_file(intent(target));
                return Err(io(e));
            }
        }
    }
    Err(Error::new(
        Kind::Internal,
        format!("move {} aside: no free name", target.display()),
    ))
}

fn write_intent(target: &Path, aside: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(intent(target))?;
    f.write_all(aside.as_os_str().as_encoded_bytes())?;
    f.sync_all()?;
    sync_dir_of(target);
    Ok(())
}

/// Move a database and whichever side files it has from `from` to `to`, never over an existing
/// file. On failure the files already moved are put back.
pub fn move_all(from: &Path, to: &Path) -> std::io::Result<()> {
    let pairs: Vec<(PathBuf, PathBuf)> = with_side_files(from)
        .into_iter()
        .zip(with_side_files(to))
        .filter(|(f, _)| f.symlink_metadata().is_ok())
        .collect();
    let mut linked = 0;
    let mut link_error = None;
    for (f, t) in &pairs {
        match std::fs::hard_link(f, t) {
            Ok(()) => linked += 1,
            Err(e) => {
                link_error = Some(e);
                break;
            }
        }
    }
    let Some(e) = link_error else {
        // The new name is complete; now the old names, the database's first.
        for (f, _) in &pairs {
            std::fs::remove_file(f)?;
        }
        return Ok(());
    };
    for (_, t) in &pairs[..linked] {
        let _ = std::fs::remove_file(t);
    }
    if e.kind() == std::io::ErrorKind::AlreadyExists {
        return Err(e);
    }
    // No hard links here (another file system, or fs.protected_hardlinks for a file this
    // user does not own): renames, the database first.
    for (i, (f, t)) in pairs.iter().enumerate() {
        if let Err(e) = rename_noreplace(f, t) {
            for (f, t) in pairs[..i].iter().rev() {
                let _ = rename_noreplace(t, f);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Finish a move aside that a killed run left half done (its `<target>.lifeboat-aside` names
/// the new name): returns the new name when there was one. Only called under the target's lock.
pub fn finish_interrupted(target: &Path) -> Option<PathBuf> {
    let bytes = std::fs::read(intent(target)).ok()?;
    // SAFETY of the conversion: the bytes were written from an OsStr by this program.
    let aside = PathBuf::from(unsafe { std::ffi::OsString::from_encoded_bytes_unchecked(bytes) });
    let pairs: Vec<(PathBuf, PathBuf)> = with_side_files(target)
        .into_iter()
        .zip(with_side_files(&aside))
        .collect();
    let (db, aside_db) = (&pairs[0].0, &pairs[0].1);
    let started = aside_db.symlink_metadata().is_ok();
    let db_there = db.symlink_metadata().is_ok();
    if started && (!db_there || FileId::of(db) == FileId::of(aside_db)) {
        for (f, t) in &pairs {
            if f.symlink_metadata().is_err() {
                continue;
            }
            let same = FileId::of(f) == FileId::of(t);
            if t.symlink_metadata().is_err() {
                // Not yet under the new name: link it if the database still stands (the link
                // phase), else move it (the database already went).
                let done = if db.symlink_metadata().is_ok() {
                    std::fs::hard_link(f, t)
                } else {
                    rename_noreplace(f, t)
                };
                if done.is_err() {
                    return None; // leave it as it is; the intent stays for a later run
                }
            } else if !same {
                return None;
            }
        }
        for (f, t) in &pairs {
            if f.symlink_metadata().is_ok() && FileId::of(f) == FileId::of(t) {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    let _ = std::fs::remove_file(intent(target));
    sync_dir_of(target);
    started.then_some(aside)
}
