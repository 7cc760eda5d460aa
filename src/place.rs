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
        refuse_if_open(target)?;
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
        refuse_if_open(target)?; // again: something may have opened it since `prepare`
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

/// Refuse to replace a database another process has open: the rename would leave that process
/// on the old file, where its reads would be stale and its writes lost.
fn refuse_if_open(target: &Path) -> Result<()> {
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

/// Ask the kernel to start writing a range back now (Linux); a hint, so errors are ignored:
/// the fsync before the rename is what guarantees durability.
pub fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor; sync_file_range only reads its arguments.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

/// A `Write` that hands full buffers to a thread which writes them to a file, so producing the
/// bytes (formatting, decompressing) and the kernel's copying overlap. A durable writer also
/// starts writeback as it goes, so the fsync in [`FileWriter::finish`] is short.
pub struct FileWriter {
    buf: Vec<u8>,
    durable: bool,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Buffers the writer is done with, to fill again (fresh 1 MB allocations cost page faults).
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<std::fs::File>>>,
}

const WRITE_BUF: usize = 1024 * 1024;

impl FileWriter {
    /// A file that is kept: written back as it grows, fsynced by `finish`.
    pub fn new(file: std::fs::File) -> Self {
        Self::start(file, true)
    }

    /// A scratch file, read soon and deleted: left to the page cache.
    pub fn scratch(file: std::fs::File) -> Self {
        Self::start(file, false)
    }

    fn start(file: std::fs::File, durable: bool) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
        let (give_back, spare) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        let thread = std::thread::spawn(move || -> std::io::Result<std::fs::File> {
            use std::io::Write;
            let mut file = file;
            let (mut written, mut synced) = (0u64, 0u64);
            for chunk in rx {
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
                if durable && written - synced >= 32 * 1024 * 1024 {
                    start_writeback(&file, synced, written - synced);
                    synced = written;
                }
                let _ = give_back.try_send(chunk);
            }
            Ok(file)
        });
        FileWriter {
            buf: Vec::with_capacity(WRITE_BUF),
            durable,
            tx: Some(tx),
            spare,
            thread: Some(thread),
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        let mut next = self.buffer();
        next.clear();
        let full = std::mem::replace(&mut self.buf, next);
        self.send_owned(full)
    }

    /// A buffer to fill and hand over with [`FileWriter::send_owned`]: one the writer is done
    /// with when there is one (its old contents still in it), else a new empty one.
    pub fn buffer(&mut self) -> Vec<u8> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(WRITE_BUF))
    }

    /// Hand over a whole buffer without copying it (after anything written before it).
    pub fn send_owned(&mut self, data: Vec<u8>) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        let sent = self.tx.as_ref().map(|tx| tx.send(data));
        match sent {
            Some(Ok(())) => Ok(()),
            // The writer thread stopped: finish() reports its error.
            _ => Err(std::io::Error::other("file writer stopped")),
        }
    }

    /// Write out the rest, wait for the writer, fsync a durable file, and return the file.
    pub fn finish(mut self) -> std::io::Result<std::fs::File> {
        if !self.buf.is_empty() {
            let _ = self.send();
        }
        drop(self.tx.take());
        let file = self
            .thread
            .take()
            .expect("finish runs once")
            .join()
            .map_err(|_| std::io::Error::other("file writer panicked"))??;
        if self.durable {
            file.sync_all()?;
        }
        Ok(file)
    }
}

impl Drop for FileWriter {
    /// Unfinished (an error elsewhere): stop the writer and wait for it, so nothing is written
    /// after the caller has moved on (and perhaps removed the file).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::io::Write for FileWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUF {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
