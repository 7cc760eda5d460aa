//! `lifeboat dump`: a SQL dump (sqlite3 or D1 dialect) of a stored backup or a live database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::ProgressBar;

use crate::cli::{secs, single_database_name, Ctx};
use crate::dump::{dump, Dialect};
use crate::error::{Error, Kind, Result};
use crate::file_writer::FileWriter;
use crate::manifest::human_size;
use crate::place::{FileId, Placement};
use crate::restore::{fetch, parse_time, Selector};
use crate::scratch::scratch;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat dump --db ./studio.db --out studio.sql                     # a live database (consistent snapshot)
  lifeboat dump --backup latest --db studio-platform-db --dialect d1 --out restore.sql
  lifeboat dump --backup backup-2026-11-20T020000Z --out - | sqlite3 copy.db

The last line of every dump is `-- lifeboat dump complete: N statements`: a dump without it is
truncated. Virtual tables (FTS5 …) cannot be dumped: lifeboat stops with an error naming the table.")]
pub struct Args {
    /// Dump a stored backup: its id or `latest`.
    #[arg(long, value_name = "ID|latest", conflicts_with = "at")]
    backup: Option<String>,
    /// Dump the newest backup taken at or before this UTC time.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// With --backup/--at: the database's name. Without: a live database file (or configured name).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// `sqlite` (for sqlite3) or `d1` (for wrangler d1 execute --file).
    #[arg(long, value_enum, default_value_t = Dialect::Sqlite)]
    dialect: Dialect,
    /// Output file, or `-` for stdout. `.zst` and `.gz` are compressed.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    out: String,
    /// Overwrite an existing output file.
    #[arg(long)]
    force: bool,
    /// Directory for the temporary image of a backup (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    scratch_dir: Option<PathBuf>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let started = Instant::now();
    if args.out != "-" {
        ctx.refuse_inside_repository(Path::new(&args.out))?;
    }
    let dir = scratch(args.scratch_dir.as_deref())?;
    let (source, origin) = source_image(
        ctx,
        &args.backup,
        &args.at,
        &args.db,
        dir.path(),
        args.out == "-",
    )
    .await?;
    let (dialect, out_arg, force) = (args.dialect, args.out.clone(), args.force);
    let origin2 = origin.clone();
    let stats = tokio::task::spawn_blocking(move || -> Result<crate::dump::DumpStats> {
        let conn = open_read(&source).map_err(|e| e.context("dump"))?;
        let stats = write_out(&out_arg, force, "dump", &source, |w| {
            dump(&conn, dialect, &origin2, w)
        })?;
        let _ = conn.execute_batch("COMMIT");
        Ok(stats)
    })
    .await
    .map_err(crate::cli::internal)??;
    let msg = format!(
        "dumped {origin} ({:?} dialect) to {}: {} statements, {} tables, {} rows, {}  {}",
        args.dialect,
        if args.out == "-" { "stdout" } else { &args.out },
        stats.statements,
        stats.tables,
        stats.rows,
        human_size(stats.bytes),
        secs(started.elapsed().as_millis() as u64)
    );
    if args.out == "-" {
        if !ctx.out.quiet {
            eprintln!("{msg}"); // stdout carries the SQL
        }
    } else {
        ctx.out.line(msg);
        ctx.out
            .json(&serde_json::json!({ "origin": origin, "out": args.out, "stats": stats }));
    }
    Ok(0)
}

/// The database a read-only command works on: a stored backup (`--backup`/`--at`, downloaded
/// and checked into `dir`) or a live database file (`--db`). Returns its path and a description.
pub(crate) async fn source_image(
    ctx: &Ctx,
    backup: &Option<String>,
    at: &Option<String>,
    db: &Option<String>,
    dir: &std::path::Path,
    stdout_is_data: bool,
) -> Result<(PathBuf, String)> {
    if backup.is_some() || at.is_some() {
        let repo = ctx.repository(false)?;
        let name = single_database_name(ctx, &repo, db.as_deref()).await?;
        let sel = match (at, backup) {
            (Some(t), _) => Selector::At(parse_time(t)?),
            (None, Some(id)) => Selector::Id(id.clone()),
            (None, None) => Selector::Latest,
        };
        let m = crate::cli::select_backup(ctx, &repo, &name, &sel, stdout_is_data)
            .await?
            .manifest;
        let image = dir.join("image.sqlite");
        fetch(
            &repo,
            &m,
            &image,
            crate::restore::FetchOptions::HASHED,
            &ProgressBar::hidden(),
        )
        .await?;
        return Ok((image, format!("backup {} of {}", m.id, m.database)));
    }
    let Some(flag) = db.as_deref() else {
        return Err(Error::new(
            Kind::Config,
            "give --backup ID|latest, or --db PATH of a live database",
        ));
    };
    let db = ctx.config.database(flag)?;
    crate::source::SqliteSource::new(&db.path).check()?;
    Ok((db.path.clone(), format!("database {}", db.path.display())))
}

/// Open a database read-only inside one read transaction (a live database is read as it was at
/// one instant).
pub(crate) fn open_read(path: &std::path::Path) -> Result<rusqlite::Connection> {
    crate::source::SqliteSource::new(path).open_read(std::time::Duration::from_secs(30))
}

/// Write through `f` to stdout or to a file (built in a temp file of its own, compressed by
/// extension, fsynced and renamed in, so a failed dump never leaves a file that looks
/// complete). A file is never written over an SQLite database or over `source` (the database
/// being read), even with `--force`; with `--force` any other existing file is moved aside.
pub(crate) fn write_out<T>(
    out: &str,
    force: bool,
    verb: &'static str,
    source: &Path,
    f: impl FnOnce(&mut dyn Write) -> Result<T>,
) -> Result<T> {
    if out == "-" {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::with_capacity(1024 * 1024, stdout.lock());
        let r = f(&mut w)?;
        w.flush().map_err(|e| Error::io("write stdout", e))?;
        return Ok(r);
    }
    let path = PathBuf::from(out);
    refuse_database(&crate::place::resolve_links(&path)?.0, source)?;
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
    if let Some(aside) = moved {
        eprintln!(
            "lifeboat: previous {out} moved aside to {}",
            aside.display()
        );
    }
    Ok(r)
}

/// A dump or export never replaces a database: not the one it reads, and not any other
/// SQLite file (SQL text in its place would lose it to anyone who opens it next).
pub(crate) fn refuse_database(target: &Path, source: &Path) -> Result<()> {
    let same = crate::place::with_side_files(source)
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
