//! Wake on change: one inotify instance for the daemon, one watch per directory that holds a
//! replicated database (a fleet glob is usually one directory), shared by every database in it.
//! An event for `X` or `X-wal` (a write, a create, a delete, a rename, a close after writing)
//! marks database X dirty; [`super::Replication::poll`] then fingerprints only the dirty ones
//! (and sweeps all of them now and then).
//!
//! The directory is watched, not the WAL: SQLite deletes and recreates `-wal` (the last
//! connection closing, a change of journal mode), and a watch on the file would die with it.
//! A database that cannot be watched (inotify unavailable, `max_user_instances` or
//! `max_user_watches` reached, a network file system where inotify never sees another host's
//! writes, not Linux) is told once and stat-polled every sync interval, as before.

// Elsewhere than Linux only the bookkeeping's types are left, unused.
#![cfg_attr(not(target_os = "linux"), allow(dead_code, unused))]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// What a [`Watch::drain`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Woken {
    /// Databases whose file or WAL changed.
    pub dirty: BTreeSet<String>,
    /// Events were lost (the kernel's queue overflowed): every database may have changed.
    pub all: bool,
    /// Databases whose directory watch is gone (the directory deleted, moved, unmounted): stat
    /// polled from now on, watched again when it can be.
    pub lost: BTreeSet<String>,
}

/// The watched directories and the databases in each: the bookkeeping, no system calls.
#[derive(Default)]
struct Dirs {
    /// Watch descriptor → its directory.
    by_wd: HashMap<i32, Dir>,
    dir_wd: HashMap<PathBuf, i32>,
    /// Database → (watch descriptor, its file name).
    member: HashMap<String, (i32, OsString)>,
}

struct Dir {
    path: PathBuf,
    /// A file name (`X`, `X-wal`) → the databases it belongs to.
    files: HashMap<OsString, BTreeSet<String>>,
}

impl Dirs {
    fn wd(&self, dir: &Path) -> Option<i32> {
        self.dir_wd.get(dir).copied()
    }

    /// `name` is the database in file `file` of the directory watched as `wd`.
    fn add(&mut self, name: &str, wd: i32, dir: &Path, file: &OsString) {
        let d = self.by_wd.entry(wd).or_insert_with(|| Dir {
            path: dir.to_path_buf(),
            files: HashMap::new(),
        });
        self.dir_wd.insert(dir.to_path_buf(), wd);
        let mut wal = file.clone();
        wal.push("-wal");
        for f in [file.clone(), wal] {
            d.files.entry(f).or_default().insert(name.to_string());
        }
        self.member.insert(name.to_string(), (wd, file.clone()));
    }

    /// Forget `name`; the watch descriptor to remove when its directory has no database left.
    fn remove(&mut self, name: &str) -> Option<i32> {
        let (wd, file) = self.member.remove(name)?;
        let d = self.by_wd.get_mut(&wd)?;
        let mut wal = file.clone();
        wal.push("-wal");
        for f in [file, wal] {
            if let Some(dbs) = d.files.get_mut(&f) {
                dbs.remove(name);
                if dbs.is_empty() {
                    d.files.remove(&f);
                }
            }
        }
        if !d.files.is_empty() {
            return None;
        }
        let d = self.by_wd.remove(&wd)?;
        self.dir_wd.remove(&d.path);
        Some(wd)
    }

    /// The databases an event on `file` in the directory watched as `wd` concerns: `X` and
    /// `X-wal` are X's; `X-shm` (written through a mapping, never an event that matters),
    /// journals, lock files and the rest are nobody's.
    fn databases(&self, wd: i32, file: &std::ffi::OsStr) -> impl Iterator<Item = &String> {
        self.by_wd
            .get(&wd)
            .and_then(|d| d.files.get(file))
            .into_iter()
            .flatten()
    }

    /// The watch `wd` is gone: forget its directory, and say whose it was.
    fn lost(&mut self, wd: i32) -> BTreeSet<String> {
        let Some(d) = self.by_wd.remove(&wd) else {
            return BTreeSet::new();
        };
        self.dir_wd.remove(&d.path);
        let names: BTreeSet<String> = d.files.into_values().flatten().collect();
        for n in &names {
            self.member.remove(n);
        }
        names
    }

    fn all(&self) -> impl Iterator<Item = &String> {
        self.member.keys()
    }
}

/// The directory that holds `path` and its file name there, symlinks resolved (SQLite puts
/// the WAL beside the real file).
fn place(path: &Path) -> Option<(PathBuf, OsString)> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let file = real.file_name()?.to_os_string();
    let dir = match real.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Some((dir, file))
}

/// The daemon's watches.
pub struct Watch {
    #[cfg(target_os = "linux")]
    inotify: Option<inotify::Inotify>,
    #[cfg(target_os = "linux")]
    wds: HashMap<i32, inotify::WatchDescriptor>,
    /// inotify was started (or tried), and whether it is turned off.
    started: bool,
    off: bool,
    dirs: Dirs,
    buffer: Vec<u8>,
    /// Why a watch could not be set up, each cause told once (never once per directory).
    said: BTreeSet<String>,
    /// `LIFEBOAT_FAULT=inotify-watches=N`: adding a watch past N directories fails as when
    /// `max_user_watches` is reached (for the tests of the fallback).
    fault_limit: Option<usize>,
    /// Directories that cannot be watched, by why (a network file system): told once each.
    refused: BTreeMap<PathBuf, &'static str>,
    /// `LIFEBOAT_FAULT=no-sweep`: no safety sweep, so the tests see what events alone do.
    sweeping: bool,
}

impl Watch {
    /// The daemon's watches; inotify starts with the first database watched. `LIFEBOAT_FAULT`
    /// (a list separated by commas) may turn inotify off (`no-inotify`), limit its watches
    /// (`inotify-watches=N`) or the safety sweeps (`no-sweep`), for the tests.
    pub fn new() -> Watch {
        let faults = std::env::var("LIFEBOAT_FAULT").unwrap_or_default();
        let fault = |f: &str| faults.split(',').any(|x| x == f);
        let fault_limit = faults
            .split(',')
            .find_map(|x| x.strip_prefix("inotify-watches="))
            .and_then(|n| n.parse().ok());
        Watch {
            #[cfg(target_os = "linux")]
            inotify: None,
            #[cfg(target_os = "linux")]
            wds: HashMap::new(),
            started: false,
            off: fault("no-inotify"),
            dirs: Dirs::default(),
            buffer: Vec::new(),
            said: BTreeSet::new(),
            fault_limit,
            refused: BTreeMap::new(),
            sweeping: !fault("no-sweep"),
        }
    }

    /// Start inotify, once; when it cannot be (or is turned off, or this is not Linux), say so
    /// once: every database is then stat-polled.
    fn start(&mut self) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        if self.off {
            tracing::warn!("inotify turned off (LIFEBOAT_FAULT=no-inotify): replicated databases are polled by stat every sync interval");
            return;
        }
        #[cfg(target_os = "linux")]
        match inotify::Inotify::init() {
            Ok(i) => {
                self.inotify = Some(i);
                self.buffer = vec![0; 64 * 1024];
            }
            Err(e) => {
                let hint = if e.raw_os_error() == Some(libc::EMFILE) {
                    " (fs.inotify.max_user_instances reached?)"
                } else {
                    ""
                };
                tracing::warn!("inotify cannot start: {e}{hint}: replicated databases are polled by stat every sync interval");
            }
        }
        #[cfg(not(target_os = "linux"))]
        tracing::info!("no inotify on this system: replicated databases are polled by stat every sync interval");
    }

    /// Whether inotify runs at all.
    pub fn running(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.inotify.is_some();
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Whether the safety sweeps run (always, but under `LIFEBOAT_FAULT=no-sweep`).
    pub fn sweeping(&self) -> bool {
        self.sweeping
    }

    /// How many directories are watched.
    pub fn directories(&self) -> usize {
        self.dirs.by_wd.len()
    }

    /// Watch database `name` at `path`: true when its changes will wake it from now on (its
    /// directory watched, a watch shared with the other databases there), false when it must
    /// be stat-polled (told once per cause).
    pub fn watch(&mut self, name: &str, path: &Path) -> bool {
        if self.dirs.member.contains_key(name) {
            self.unwatch(name);
        }
        self.start();
        if !self.running() {
            return false;
        }
        let Some((dir, file)) = place(path) else {
            return false;
        };
        if let Some(wd) = self.dirs.wd(&dir) {
            self.dirs.add(name, wd, &dir, &file);
            return true;
        }
        if self.refused.contains_key(&dir) {
            return false;
        }
        if let Some(fs) = remote(&dir) {
            tracing::info!(directory = %dir.display(), "on a network file system ({fs}): inotify would not see other hosts' writes, so its replicated databases are polled by stat every sync interval");
            self.refused.insert(dir, fs);
            return false;
        }
        match self.add_watch(&dir) {
            Ok(wd) => {
                tracing::debug!(directory = %dir.display(), "watching for changes");
                self.dirs.add(name, wd, &dir, &file);
                true
            }
            Err(e) => {
                let missing = e.kind() == std::io::ErrorKind::NotFound;
                let cause = match e.raw_os_error() {
                    Some(libc::ENOSPC) => {
                        "the inotify watch limit is reached (fs.inotify.max_user_watches)"
                            .to_string()
                    }
                    _ => e.to_string(),
                };
                // A missing directory is the database's own problem, told by its open.
                if missing {
                    tracing::debug!(directory = %dir.display(), "not watched: {cause}");
                } else if self.said.insert(cause.clone()) {
                    tracing::warn!(directory = %dir.display(), "cannot watch for changes: {cause}: its replicated databases (and those of any other directory that fails so) are polled by stat every sync interval");
                }
                false
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn add_watch(&mut self, dir: &Path) -> std::io::Result<i32> {
        use inotify::WatchMask;
        if self.fault_limit.is_some_and(|n| self.dirs.by_wd.len() >= n) {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let Some(i) = &self.inotify else {
            return Err(std::io::Error::other("inotify is not running"));
        };
        let mask = WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF
            | WatchMask::ONLYDIR;
        let wd = i.watches().add(dir, mask)?;
        let id = wd.get_watch_descriptor_id();
        self.wds.insert(id, wd);
        Ok(id)
    }

    #[cfg(not(target_os = "linux"))]
    fn add_watch(&mut self, _dir: &Path) -> std::io::Result<i32> {
        Err(std::io::Error::other("no inotify on this system"))
    }

    /// `name` is no longer replicated here: its directory's watch goes when no other database
    /// is left in it.
    pub fn unwatch(&mut self, name: &str) {
        let Some(wd) = self.dirs.remove(name) else {
            return;
        };
        #[cfg(target_os = "linux")]
        if let (Some(i), Some(w)) = (&self.inotify, self.wds.remove(&wd)) {
            // Fails only when the kernel dropped it already (the directory deleted).
            let _ = i.watches().remove(w);
        }
        #[cfg(not(target_os = "linux"))]
        let _ = wd;
        tracing::debug!(database = %name, "its directory is no longer watched");
    }

    /// Read every event queued since the last call (without waiting): who is dirty.
    pub fn drain(&mut self) -> Woken {
        let mut woken = Woken::default();
        #[cfg(target_os = "linux")]
        self.drain_inotify(&mut woken);
        woken
    }

    #[cfg(target_os = "linux")]
    fn drain_inotify(&mut self, woken: &mut Woken) {
        use inotify::EventMask;
        let Some(i) = &mut self.inotify else {
            return;
        };
        let mut gone = Vec::new();
        // Bounded: a flood is read at the next turn (the queue's own overflow is handled).
        for _ in 0..64 {
            let events = match i.read_events(&mut self.buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if self.said.insert(format!("read: {e}")) {
                        tracing::warn!("reading inotify events: {e}: every replicated database is fingerprinted");
                    }
                    woken.all = true;
                    break;
                }
            };
            for ev in events {
                let wd = ev.wd.get_watch_descriptor_id();
                if ev.mask.contains(EventMask::Q_OVERFLOW) {
                    if self.said.insert("overflow".into()) {
                        tracing::warn!("inotify's queue overflowed (fs.inotify.max_queued_events): every replicated database is fingerprinted; told once");
                    }
                    woken.all = true;
                } else if ev
                    .mask
                    .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
                {
                    gone.push(wd);
                } else if let Some(name) = ev.name {
                    woken.dirty.extend(self.dirs.databases(wd, name).cloned());
                }
            }
        }
        for wd in gone {
            if let Some(d) = self.dirs.by_wd.get(&wd) {
                tracing::info!(directory = %d.path.display(), "no longer watched (deleted, moved or unmounted): its replicated databases are polled by stat");
            }
            if let Some(w) = self.wds.remove(&wd) {
                // A moved directory's watch lives on, watching the wrong place: remove it.
                let _ = i.watches().remove(w);
            }
            woken.lost.extend(self.dirs.lost(wd));
        }
        if woken.all {
            woken.dirty.extend(self.dirs.all().cloned());
        }
    }
}

impl Default for Watch {
    fn default() -> Self {
        Watch::new()
    }
}

/// The kind of network file system `dir` is on, if it is one.
#[cfg(target_os = "linux")]
fn remote(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: statfs writes only into `s`, and `c` is a valid C string.
    if unsafe { libc::statfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    // From statfs(2); FUSE too: sshfs and the like see no remote writes either.
    match s.f_type as u64 {
        0x6969 => Some("nfs"),
        0xFF53_4D42 => Some("cifs"),
        0xFE53_4D42 => Some("smb2"),
        0x517B => Some("smb"),
        0x0102_1997 => Some("9p"),
        0x00C3_6400 => Some("ceph"),
        0x6573_5546 => Some("fuse"),
        0x5346_414F => Some("afs"),
        _ => None,
    }
}

#[cfg(not(target_os = "linux"))]
fn remote(_dir: &Path) -> Option<&'static str> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn names(it: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
        it.map(|s| s.as_ref().to_string()).collect()
    }

    #[test]
    fn an_event_on_the_file_or_its_wal_wakes_that_database_only() {
        let mut d = Dirs::default();
        let dir = Path::new("/srv/tenants");
        d.add("a", 1, dir, &"a.db".into());
        d.add("b", 1, dir, &"b.db".into());
        assert_eq!(names(d.databases(1, OsStr::new("a.db"))), ["a"]);
        assert_eq!(names(d.databases(1, OsStr::new("a.db-wal"))), ["a"]);
        assert_eq!(names(d.databases(1, OsStr::new("b.db-wal"))), ["b"]);
        for other in [
            "a.db-shm",
            "a.db-journal",
            "a.db.replicate.lifeboat-lock",
            "c.db",
            "a",
            "",
        ] {
            assert!(
                d.databases(1, OsStr::new(other)).next().is_none(),
                "{other}"
            );
        }
        // Another directory's watch: its names are its own.
        assert!(d.databases(2, OsStr::new("a.db")).next().is_none());
        // A database named like another's WAL: an event on that file concerns both.
        d.add("odd", 1, dir, &"a.db-wal".into());
        assert_eq!(names(d.databases(1, OsStr::new("a.db-wal"))), ["a", "odd"]);
    }

    #[test]
    fn a_directory_watch_goes_with_its_last_database() {
        let mut d = Dirs::default();
        let dir = Path::new("/srv/tenants");
        d.add("a", 1, dir, &"a.db".into());
        d.add("b", 1, dir, &"b.db".into());
        d.add("c", 2, Path::new("/srv/other"), &"c.db".into());
        assert_eq!(d.wd(dir), Some(1));
        assert_eq!(d.remove("a"), None, "b is still there");
        assert!(d.databases(1, OsStr::new("a.db-wal")).next().is_none());
        assert_eq!(d.remove("b"), Some(1));
        assert_eq!(d.wd(dir), None);
        assert_eq!(d.remove("b"), None, "twice is nothing");
        assert_eq!(names(d.lost(2).into_iter()), ["c"]);
        assert!(d.all().next().is_none());
    }

    /// A real inotify on a real directory: what SQLite's files do wakes the right database.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_s_events_mark_the_right_databases_dirty() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.db"), tmp.path().join("b.db"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let mut w = Watch::new();
        assert!(w.watch("a", &a) && w.watch("b", &b));
        assert_eq!(w.directories(), 1, "one watch for the directory");
        assert_eq!(w.drain(), Woken::default());
        // The WAL created, written, deleted: a's. The -shm and other files: nobody's.
        std::fs::write(tmp.path().join("a.db-wal"), b"frames").unwrap();
        std::fs::write(tmp.path().join("a.db-shm"), b"index").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), b"x").unwrap();
        let woken = w.drain();
        assert_eq!(names(woken.dirty.iter()), ["a"]);
        assert!(!woken.all && woken.lost.is_empty());
        std::fs::remove_file(tmp.path().join("a.db-wal")).unwrap();
        std::fs::write(&b, b"changed").unwrap();
        assert_eq!(names(w.drain().dirty.iter()), ["a", "b"]);
        // The file replaced by a rename: b's.
        std::fs::write(tmp.path().join("new"), b"new").unwrap();
        std::fs::rename(tmp.path().join("new"), &b).unwrap();
        assert_eq!(names(w.drain().dirty.iter()), ["b"]);
        // Unwatched: a's changes wake nobody; the directory stays watched for b.
        w.unwatch("a");
        std::fs::write(&a, b"again").unwrap();
        assert!(w.drain().dirty.is_empty());
        assert_eq!(w.directories(), 1);
        w.unwatch("b");
        assert_eq!(w.directories(), 0);
        // The directory deleted under a watched database: lost, so stat-polled.
        let sub = tmp.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("c.db"), b"c").unwrap();
        assert!(w.watch("c", &sub.join("c.db")));
        std::fs::remove_dir_all(&sub).unwrap();
        let woken = w.drain();
        assert_eq!(names(woken.lost.iter()), ["c"]);
        assert_eq!(w.directories(), 0);
    }
}
