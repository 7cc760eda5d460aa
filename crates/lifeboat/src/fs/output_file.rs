//! Output files of dump and export: SQL or JSON text written to stdout, or to a file that is
//! built beside its target, compressed by extension, fsynced and renamed in (a failed command
//! never leaves a file that looks complete), and that never replaces a database.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{FileId, Placement};
use crate::fs::durable_writer::FileWriter;

/// Write through `f` to stdout or to a file (built in a temp file of its own, compressed by
/// extension, fsynced and renamed in, so a failed dump never leaves a file that looks
/// complete). A file is never written over an SQLite database or over `source` (the database
/// being read), even with `--force`; with `--force` any other existing file is moved aside, and
/// where it went is returned with `f`'s result.
pub fn write_out<T>(
    out: &str,
    force: bool,
    verb: &'static str,
    source: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<(T, Option<PathBuf>)> {
    if out == "-" {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1024 * 1024, stdout.lock());
        let r = f(&mut w)?;
        w.flush().map_err(|e| Error::io("write stdout", e))?;
        return Ok((r, None));
    }
    let path = PathBuf::from(out);
    refuse_database(&crate::fs::atomic_replace::resolve_links(&path)?.0, source)?;
    let placement = Placement::prepare(&path, force, verb)?;
    refuse_database(&placement.target().path, source)?;
    let tmp = placement.tmp().to_path_buf();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
    let io = |e| Error::io(format!("write {out}"), e);
    let buf = FileWriter::new(file);
    let lower = out.to_ascii_lowercase();
    let (r, file) = if lower.ends_with(".zst") {
        let mut enc = zstd::stream::write::Encoder::new(buf, 3).map_err(io)?;
        enc.multithread(std::thread::available_parallelism().map_or(1, |n| n.get()) as u32)
            .map_err(io)?;
        let r = f(&mut enc)?;
        (r, enc.finish().map_err(io)?)
    } else if lower.ends_with(".gz") {
        let mut enc = flate2::write::GzEncoder::new(buf, flate2::Compression::default());
        let r = f(&mut enc)?;
        (r, enc.finish().map_err(io)?)
    } else {
        let mut buf = buf;
        let r = f(&mut buf)?;
        (r, buf)
    };
    file.finish().map_err(io)?;
    let moved = placement.commit(FileId::of(&tmp))?;
    Ok((r, moved))
}

/// A dump or export never replaces a database: not the one it reads, and not any other
/// SQLite file (SQL text in its place would lose it to anyone who opens it next).
pub fn refuse_database(target: &Path, source: &Path) -> Result<()> {
    let same = crate::fs::atomic_replace::with_side_files(source)
        .iter()
        .filter_map(|p| FileId::of(p))
        .any(|id| {
            std::fs::canonicalize(target)
                .ok()
                .and_then(|t| FileId::of(&t))
                == Some(id)
        });
    if same {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "{} is the database being read; choose another output file",
                target.display()
            ),
        ));
    }
    // Only a regular file is opened to look at (a FIFO would block the open).
    if !std::fs::metadata(target).is_ok_and(|m| m.is_file()) {
        return Ok(()); // missing, or refused by the target checks
    }
    let mut head = [0u8; 16];
    let read = std::fs::File::open(target)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    // A WAL or rollback journal belongs to a database.
    let is_log = read
        && (head[..4] == [0x37, 0x7f, 0x06, 0x82]
            || head[..4] == [0x37, 0x7f, 0x06, 0x83]
            || head[..8] == [0xd9, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7]);
    if is_log {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "{} is the WAL or journal of an SQLite database; a dump or export never replaces one (choose another output file)",
                target.display()
            ),
        ));
    }
    let is_db = read && &head == b"SQLite format 3\0";
    if is_db {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "{} is an SQLite database; a dump or export never replaces one, even with --force (choose another output file)",
                target.display()
            ),
        ));
    }
    Ok(())
}
