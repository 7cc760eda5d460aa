//! Skipping unchanged databases: a scheduled backup of a SQLite file that has not changed since
//! its newest good backup would store the same image again. Each SQLite-file backup records the
//! file's [`Fingerprint`], taken *before* the backup reads the file, so a write racing the
//! backup makes the next run back up again (never the other way round).
//!
//! The fingerprint is what can be compared across processes and runs, read without opening
//! SQLite (so never a lock, never a WAL checkpoint): size, modification and status-change times,
//! inode, the header's file change counter (bumped by every rollback-mode transaction), page
//! count and schema cookie, and the WAL's size, salts and the cumulative checksum of its last
//! current frame (in WAL mode a commit touches only the `-wal` file; the checksum covers every
//! frame, so even a same-size rewrite shows). `PRAGMA data_version` is not part of it: it is
//! per connection, saying only whether *another* connection changed the file since *this* one
//! last looked, so a fresh process has nothing to compare it with.

use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::error::{Error, Kind, Result};
pub use crate::repo::manifest::{Fingerprint, WalFingerprint};
use crate::repo::{Manifest, Repository};
use crate::source::Source;

const WAL_HEADER: u64 = 32;
const FRAME_HEADER: u64 = 24;

/// The fingerprint of the SQLite file at `path`: a stat and its 100-byte header, and its WAL's
/// header and a few frame headers; never opens SQLite.
pub fn fingerprint(path: &Path) -> Result<Fingerprint> {
    let err = |e: std::io::Error| Error::io(format!("fingerprint {}", path.display()), e);
    // Held open through SQLite by a replicator in this process: opening it here would drop the
    // replicator's locks. No fingerprint, so it is backed up (never skipped).
    if crate::fs::held::is_held(path) {
        return Err(Error::new(
            Kind::Database,
            format!(
                "fingerprint {}: replicated by this process, not read outside SQLite",
                path.display()
            ),
        ));
    }
    let file = File::open(path).map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    let mut header = [0u8; 100];
    let n = read_at(&file, &mut header, 0).map_err(err)?;
    if n < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(Error::new(
            Kind::Database,
            format!("database {}: not a SQLite database", path.display()),
        ));
    }
    let (mtime_ns, ctime_ns, inode) = times(&meta);
    Ok(Fingerprint {
        size: meta.len(),
        mtime_ns,
        ctime_ns,
        inode,
        change_counter: be32(&header, 24),
        header_pages: be32(&header, 28),
        schema_cookie: be32(&header, 40),
        wal: wal(&side(path, "-wal")).map_err(err)?,
    })
}

/// The newest good backup of `source`, when the file has not changed since it was taken: same
/// file (path), same fingerprint. `None` for D1 databases and dumps (nothing to compare), for
/// a database never backed up, and for backups taken before fingerprints were recorded. An
/// error (the file cannot be read, the repository cannot be listed) means: back it up.
pub async fn unchanged_since(repo: &Repository, source: &Source) -> Result<Option<Manifest>> {
    if source.d1.is_some() || source.sql_dump.is_some() {
        return Ok(None);
    }
    let now = fingerprint(&source.path)?;
    let Some(newest) = repo.newest_good(&source.name, Utc::now()).await? else {
        return Ok(None);
    };
    let path = std::path::absolute(&source.path).unwrap_or_else(|_| source.path.clone());
    let same_file = newest.source.kind == "sqlite" && Path::new(&newest.source.path) == path;
    Ok((same_file && newest.fingerprint.as_ref() == Some(&now)).then_some(newest))
}

/// The state of the WAL at `path`; `None` when there is none or it holds no frame (SQLite
/// leaves an empty one behind, and a read-only reader may create one).
fn wal(path: &Path) -> std::io::Result<Option<WalFingerprint>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let size = meta.len();
    let mut h = [0u8; WAL_HEADER as usize];
    // A header and no frame holds nothing either.
    if size <= WAL_HEADER || read_at(&file, &mut h, 0)? < h.len() {
        return Ok(None);
    }
    let (salt1, salt2) = (be32(&h, 16), be32(&h, 20));
    let page_size = u64::from(be32(&h, 8));
    let frame = FRAME_HEADER + page_size;
    let on_disk = if page_size >= 512 {
        (size - WAL_HEADER) / frame
    } else {
        0
    };
    // The current generation's frames are a prefix: a restart rewrites from the start with a
    // new salt, and frames left over from before keep the old one. Binary search for its end.
    let current = |i: u64| -> std::io::Result<Option<[u32; 2]>> {
        let mut fh = [0u8; FRAME_HEADER as usize];
        let got = read_at(&file, &mut fh, WAL_HEADER + i * frame)?;
        Ok(
            (got == fh.len() && be32(&fh, 8) == salt1 && be32(&fh, 12) == salt2)
                .then(|| [be32(&fh, 16), be32(&fh, 20)]),
        )
    };
    let (mut lo, mut hi) = (0u64, on_disk);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if current(mid)?.is_some() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let checksum = match lo {
        0 => [0, 0],
        n => current(n - 1)?.unwrap_or([0, 0]),
    };
    let (mtime_ns, _, _) = times(&meta);
    Ok(Some(WalFingerprint {
        size,
        mtime_ns,
        checkpoint_seq: be32(&h, 12),
        salt1,
        salt2,
        frames: lo,
        checksum,
    }))
}

/// `<path><suffix>`: SQLite's name for a side file.
fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Read up to `buf.len()` bytes at `offset`; fewer only at the end of the file.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// (mtime ns, ctime ns, inode).
fn times(meta: &std::fs::Metadata) -> (i64, i64, u64) {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
    (
        ns(meta.mtime(), meta.mtime_nsec()),
        ns(meta.ctime(), meta.ctime_nsec()),
        meta.ino(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn rollback_commits_change_it_reads_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('aaaa');")
            .unwrap();
        let before = fingerprint(&p).unwrap();
        assert!(before.wal.is_none());
        let _: i64 = c
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(fingerprint(&p).unwrap(), before);
        // Same size, same page: only the counter (and the times) say so.
        c.execute_batch("UPDATE t SET x = 'bbbb';").unwrap();
        let after = fingerprint(&p).unwrap();
        assert_eq!(after.size, before.size);
        assert_eq!(after.change_counter, before.change_counter + 1);
        assert_ne!(after, before);
    }

    #[test]
    fn wal_commits_change_it_though_the_main_file_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x TEXT); INSERT INTO t VALUES ('aaaa');",
        )
        .unwrap();
        let a = fingerprint(&p).unwrap();
        let wal = a.wal.clone().expect("a WAL with frames");
        assert!(wal.frames > 0);
        c.execute_batch("UPDATE t SET x = 'bbbb';").unwrap();
        let b = fingerprint(&p).unwrap();
        assert_eq!((b.size, b.change_counter), (a.size, a.change_counter));
        assert_ne!(b.wal, a.wal);
        // A checkpoint and a restart: the WAL is rewritten from its start, at the same size.
        c.execute_batch("PRAGMA wal_checkpoint(PASSIVE);").unwrap();
        let size = b.wal.as_ref().unwrap().size;
        c.execute_batch("UPDATE t SET x = 'cccc';").unwrap();
        let d = fingerprint(&p).unwrap();
        let dw = d.wal.clone().unwrap();
        assert_eq!(dw.size, size, "restarted in place");
        assert_ne!(dw.salt1, b.wal.as_ref().unwrap().salt1);
        assert!(dw.frames < b.wal.as_ref().unwrap().frames);
        // Another commit of the same size in the restarted WAL: the checksum moves.
        c.execute_batch("UPDATE t SET x = 'dddd';").unwrap();
        let e = fingerprint(&p).unwrap();
        assert_ne!(e.wal.as_ref().unwrap().checksum, dw.checksum);
    }

    #[test]
    fn not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.db");
        std::fs::write(&p, "hello").unwrap();
        assert_eq!(fingerprint(&p).unwrap_err().kind, Kind::Database);
        assert!(fingerprint(&dir.path().join("gone.db")).is_err());
    }
}
