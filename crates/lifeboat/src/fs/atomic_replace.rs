//! Putting a new file where an old one may live, without ever losing the old one. Restore,
//! import, export and dump all go through [`Placement`]:
//!
//! - a symbolic link as the target is followed: the real file is replaced, never the link;
//! - one writer per target at a time (`<target>.lifeboat-lock`, held with `flock`);
//! - the new file is built in a temp file whose name no other run uses
//!   (`<target>.lifeboat-tmp-<pid>-<random>`), removed on any failure;
//! - an existing file (and SQLite's `-wal`/`-shm`/`-journal`) is moved aside to a name that has
//!   never been used (`<target>.pre-<verb>-<time to the millisecond>[-N]`);
//! - every rename refuses to replace an existing file (`renameat2(RENAME_NOREPLACE)`), so no
//!   race can make one move destroy what another kept;
//! - a file another process has open is never replaced.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};
use crate::fs::move_aside::{finish_interrupted, move_all, move_aside};
use crate::fs::target_lock::TargetLock;

/// A database path and its `-wal`, `-shm` and `-journal` companions.
pub fn with_side_files(p: &Path) -> [PathBuf; 4] {
    [
        p.to_path_buf(),
        suffixed(p, "-wal"),
        suffixed(p, "-shm"),
        suffixed(p, "-journal"),
    ]
}

pub fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut o = p.as_os_str().to_os_string();
    o.push(suffix);
    PathBuf::from(o)
}

/// What a command would do to its target, found without changing anything.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    /// The file that will be written: the target, or the file a symbolic link points at.
    pub path: PathBuf,
    /// The symbolic link given as the target, when it was one.
    pub link: Option<PathBuf>,
    /// Whether a file (or a side file) is there and would be moved aside.
    pub exists: bool,
}

/// Check `target` can be written: follow a symbolic link, refuse a directory or a missing
/// parent, refuse an existing file without `force`, and refuse one another process has open.
pub fn check_target(target: &Path, force: bool) -> Result<TargetCheck> {
    let (path, link) = resolve_links(target)?;
    if path.is_dir() {
        return Err(Error::new(
            Kind::Config,
            format!("target {} is a directory", path.display()),
        ));
    }
    if target.as_os_str().to_string_lossy().ends_with('/') {
        return Err(Error::new(
            Kind::Config,
            format!("target {} ends with '/': name a file", target.display()),
        ));
    }
    // Only regular files are ever replaced: never a device (`--out /dev/null --force` must not
    // turn the system's /dev/null into a file), a FIFO or a socket.
    if let Ok(m) = std::fs::metadata(&path) {
        if !m.file_type().is_file() {
            return Err(Error::new(
                Kind::TargetExists,
                format!(
                    "target {} is not a regular file (a device, FIFO or socket); lifeboat only writes regular files",
                    path.display()
                ),
            ));
        }
    }
    // A file named like a database's journal, WAL or shared-memory file next to that database
    // belongs to it: replacing it would lose or corrupt the database's last transactions.
    if let Some(db) = side_file_of(&path) {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "target {} is the {} of database {}; choose another name",
                path.display(),
                path.to_string_lossy()
                    .rsplit('-')
                    .next()
                    .map(|s| format!("-{s} file"))
                    .unwrap_or_default(),
                db.display()
            ),
        ));
    }
    let parent = parent(&path);
    if !parent.is_dir() {
        return Err(Error::new(
            Kind::Config,
            format!("target directory {} does not exist", parent.display()),
        ));
    }
    let existing = with_side_files(&path).into_iter().find(|p| p.exists());
    if let Some(existing) = &existing {
        if !force {
            return Err(Error::new(
                Kind::TargetExists,
                format!(
                    "target {} exists; pass --force to move it aside",
                    existing.display()
                ),
            ));
        }
        refuse_if_open(&path)?;
    }
    Ok(TargetCheck {
        path,
        link,
        exists: existing.is_some(),
    })
}

/// The database `path` is a side file of (`x.db-wal`, `x.db-journal`, `x.db-shm` next to an
/// existing `x.db`).
fn side_file_of(path: &Path) -> Option<PathBuf> {
    let name = path.to_string_lossy();
    ["-wal", "-journal", "-shm"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        let base = PathBuf::from(base);
        base.is_file().then_some(base)
    })
}

/// Follow symbolic links (up to 40, as the kernel does) to the path that will be written. The
/// final file need not exist; a link to a missing file is followed to where it points.
pub fn resolve_links(target: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    let mut path = std::path::absolute(target)
        .map_err(|e| Error::io(format!("target {}", target.display()), e))?;
    let mut followed = false;
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = std::fs::read_link(&path)
                    .map_err(|e| Error::io(format!("read link {}", path.display()), e))?;
                path = parent(&path).join(to);
                followed = true;
            }
            _ => {
                let link = followed.then(|| target.to_path_buf());
                return Ok((path, link));
            }
        }
    }
    Err(Error::new(
        Kind::Config,
        format!("target {}: too many symbolic links", target.display()),
    ))
}

/// A target being replaced: locked against other lifeboat runs, with a private temp file to
/// build the new content in. Dropping it without [`Placement::commit`] removes the temp file
/// and leaves the target as it was.
pub struct Placement {
    target: TargetCheck,
    force: bool,
    verb: &'static str,
    tmp: PathBuf,
    /// Where an earlier, killed run's half-done move aside was finished to.
    recovered: Option<PathBuf>,
    _lock: TargetLock,
}

impl Placement {
    /// Check the target, take its lock and pick the temp path (`verb` names the aside file:
    /// `restore` gives `<target>.pre-restore-<time>`). Leftover temp files of runs that were
    /// killed are removed (the lock proves no run is using them).
    pub fn prepare(target: &Path, force: bool, verb: &'static str) -> Result<Placement> {
        let check = check_target(target, force)?;
        let lock = TargetLock::acquire(&check.path)?;
        remove_stale_temps(&check.path);
        // A run killed while moving the old file aside: finish that move first.
        let recovered = finish_interrupted(&check.path);
        if let Some(a) = &recovered {
            tracing::warn!(aside = %a.display(), "finished moving the old file aside (an earlier run was killed while doing it)");
        }
        // Check again under the lock: another run may have placed a file meanwhile, or the
        // recovery moved one.
        let check = check_target(target, force)?;
        let tmp = suffixed(
            &check.path,
            &format!(
                ".lifeboat-tmp-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            ),
        );
        Ok(Placement {
            target: check,
            force,
            verb,
            tmp,
            recovered,
            _lock: lock,
        })
    }

    /// Where an earlier run that was killed while moving the old file aside had moved it (the
    /// move was finished before anything else).
    pub fn recovered(&self) -> Option<&Path> {
        self.recovered.as_deref()
    }

    /// Where to build the new file.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// The file that will be replaced (a symbolic link's destination).
    pub fn target(&self) -> &TargetCheck {
        &self.target
    }

    /// Move any existing file aside and rename the temp file into place. `checked` is the
    /// identity of the file the checks read: the rename refuses any other. Returns where the
    /// old file went. If a step fails, what was moved is put back.
    pub fn commit(self, checked: Option<FileId>) -> Result<Option<PathBuf>> {
        let target = self.target.path.clone();
        if let Some(id) = checked {
            if FileId::of(&self.tmp) != Some(id) {
                return Err(Error::new(
                    Kind::Internal,
                    format!(
                        "{} changed after it was checked; nothing was replaced",
                        self.tmp.display()
                    ),
                ));
            }
        }
        let exists = with_side_files(&target).iter().any(|p| p.exists());
        if exists && !self.force {
            return Err(Error::new(
                Kind::TargetExists,
                format!(
                    "target {} appeared while it was being written; pass --force to move it aside",
                    target.display()
                ),
            ));
        }
        let aside = if exists {
            refuse_if_open(&target)?; // again: something may have opened it since `prepare`
            Some(move_aside(&target, self.verb)?)
        } else {
            None
        };
        if let Err(e) = rename_noreplace(&self.tmp, &target) {
            if let Some(a) = &aside {
                let _ = move_all(a, &target);
            }
            return Err(Error::io(format!("rename into {}", target.display()), e));
        }
        sync_dir(&parent(&target));
        Ok(aside)
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        for f in with_side_files(&self.tmp) {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A file's identity (device, inode), to tell the file that was checked from any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId(u64, u64);

impl FileId {
    pub fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| FileId(m.dev(), m.ino()))
    }
}

fn parent(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Rename `from` to `to`, failing with `AlreadyExists` rather than replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let f = CString::new(from.as_os_str().as_bytes())?;
        let t = CString::new(to.as_os_str().as_bytes())?;
        // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(e);
        }
    }
    // A file system without RENAME_NOREPLACE: a hard link refuses an existing name too.
    match std::fs::hard_link(from, to) {
        Ok(()) => std::fs::remove_file(from),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // Neither (some network file systems): look, then rename. Under the target's lock
        // only a process that is not lifeboat could slip in between.
        Err(_) if to.symlink_metadata().is_ok() => Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists", to.display()),
        )),
        Err(_) => std::fs::rename(from, to),
    }
}

/// Remove temp files that runs killed mid-way left next to `target`. Only called under the
/// target's lock, so none of them belongs to a running command.
fn remove_stale_temps(target: &Path) {
    for (path, _) in siblings(target, ".lifeboat-tmp") {
        let _ = std::fs::remove_file(path);
    }
}

/// The files next to `path` named `<name of path><infix>…`, with the part after the infix.
pub fn siblings(path: &Path, infix: &str) -> Vec<(PathBuf, String)> {
    let Some(name) = path.file_name() else {
        return Vec::new();
    };
    let prefix = format!("{}{infix}", name.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(parent(path)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(&prefix)?.to_string();
            Some((e.path(), rest))
        })
        .collect()
}

/// Refuse to replace a file another process has open: the rename would leave that process
/// on the old file, where its reads would be stale and its writes lost.
pub fn refuse_if_open(target: &Path) -> Result<()> {
    let holders = holders(target);
    let Some((pid, cmd)) = holders.first() else {
        return Ok(());
    };
    let more = match holders.len() {
        1 => String::new(),
        n => format!(" and {} other process(es)", n - 1),
    };
    Err(Error::new(
        Kind::TargetExists,
        format!(
            "target {} is open in process {pid} ({cmd}){more}: stop it first; replacing the file \
             under it would leave it on the old copy, where its writes would be lost",
            target.display()
        ),
    ))
}

/// Processes other than this one that hold `target` or one of its side files open, as
/// (pid, command). Linux only (reads `/proc`, seeing what this user may see).
pub fn holders(target: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let ids: Vec<(u64, u64)> = with_side_files(target)
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| (m.dev(), m.ino()))
            .collect();
        if ids.is_empty() {
            return found;
        }
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return found;
        };
        let me = std::process::id();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
                continue;
            };
            let open = |fd: std::fs::DirEntry| {
                std::fs::metadata(fd.path()).is_ok_and(|m| ids.contains(&(m.dev(), m.ino())))
            };
            if pid != me && fds.flatten().any(open) {
                let cmd = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                found.push((pid, cmd.trim().to_string()));
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = target;
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_never_replaces() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, "new").unwrap();
        std::fs::write(&b, "old").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
    }

    #[test]
    fn asides_in_the_same_millisecond_get_new_names() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("x.db");
        let mut asides = Vec::new();
        for i in 0..5 {
            std::fs::write(&t, format!("v{i}")).unwrap();
            asides.push(move_aside(&t, "restore").unwrap());
        }
        for (i, a) in asides.iter().enumerate() {
            assert_eq!(std::fs::read_to_string(a).unwrap(), format!("v{i}"));
        }
    }

    #[test]
    fn second_writer_of_a_target_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("x.db");
        let first = Placement::prepare(&t, false, "restore").unwrap();
        let e = Placement::prepare(&t, false, "restore").err().unwrap();
        assert_eq!(e.kind, Kind::TargetExists);
        assert!(e.to_string().contains("another lifeboat command"), "{e}");
        drop(first);
        assert!(!suffixed(&t, ".lifeboat-lock").exists());
        Placement::prepare(&t, false, "restore").unwrap();
    }

    #[test]
    fn symlinks_are_followed() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.db");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("link.db");
        std::os::unix::fs::symlink("real.db", &link).unwrap();
        let p = Placement::prepare(&link, true, "restore").unwrap();
        assert_eq!(p.target().path, real);
        std::fs::write(p.tmp(), "new").unwrap();
        let id = FileId::of(p.tmp());
        let aside = p.commit(id).unwrap().unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&aside).unwrap(), "old");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "new");
    }
}
