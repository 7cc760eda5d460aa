//! Where replicated data lives in the repository (docs/format.md, "Replication"):
//!
//! ```text
//! <db>/generations/<gen-id>/generation.json          the generation: its snapshot and where its chain starts
//! <db>/generations/<gen-id>/segments/<first>-<last>-<first-at>-<last-at>.seg.zst
//! ```
//!
//! Everything is written once, with a conditional create: a second replicator of the same
//! database fails on its first write instead of forking the chain.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Kind, Result};
use crate::replicate::compacted::FULL;
use crate::replicate::segment::{parse_name, Link, SegmentName};
use crate::repo::Repository;

/// A generation: a snapshot (an ordinary backup) and the chain of segments after it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generation {
    pub format_version: u32,
    pub id: String,
    pub database: String,
    pub created_at: DateTime<Utc>,
    /// Why it was started: the break that ended the previous one, or "first run".
    pub reason: String,
    /// The backup id of its snapshot.
    pub snapshot: String,
    pub source_path: String,
    pub inode: u64,
    pub page_size: u32,
    /// The WAL position the chain starts from (commit 0): the first segment links to it.
    pub start: Link,
    /// The snapshot was read somewhere between `start` and commit `base_seq`: restores reach
    /// commit `base_seq` and later only, `base_at` being when that commit was seen.
    pub base_seq: u64,
    pub base_at: DateTime<Utc>,
    /// For a chain that started on an empty WAL: the database file as it was once the
    /// generation was recorded, the WAL still empty. A restart that finds the WAL still empty
    /// and the file as it was resumes the chain: nothing can have been committed in between (a
    /// commit writes the WAL, and only a checkpoint, which writes the file, empties it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<FileStamp>,
}

/// A file's size and modification time (nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
}

impl FileStamp {
    /// The file at `path` now (a stat: no descriptor is opened, so no lock is dropped).
    pub fn of(path: &std::path::Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            size: m.len(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
        })
    }
}

pub fn generations_prefix(repo: &Repository, db: &str) -> Key {
    repo.backend().root.clone().join(db).join("generations")
}

fn generation_key(repo: &Repository, db: &str, id: &str) -> Key {
    generations_prefix(repo, db)
        .join(id)
        .join("generation.json")
}

fn segments_prefix(repo: &Repository, db: &str, gen: &str) -> Key {
    generations_prefix(repo, db).join(gen).join("segments")
}

/// A new generation id: its start time to the millisecond and a random part, sortable.
pub fn new_generation_id(at: DateTime<Utc>) -> String {
    format!(
        "gen-{}-{:08x}",
        at.format("%Y%m%dT%H%M%S%3fZ"),
        rand::random::<u32>()
    )
}

/// Write `body` at `key` unless something is there already: false then.
async fn create(repo: &Repository, key: &Key, body: Vec<u8>, what: &str) -> Result<bool> {
    let opts = PutOptions::from(PutMode::Create);
    match repo
        .backend()
        .store
        .put_opts(key, PutPayload::from(body), opts)
        .await
    {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(repo.err(what, e)),
    }
}

pub async fn put_generation(repo: &Repository, g: &Generation) -> Result<()> {
    let body = serde_json::to_vec_pretty(g)
        .map_err(|e| Error::new(Kind::Internal, format!("generation record: {e}")))?;
    if !create(
        repo,
        &generation_key(repo, &g.database, &g.id),
        body,
        "write generation",
    )
    .await?
    {
        return Err(Error::new(
            Kind::Internal,
            format!("generation {} already exists", g.id),
        ));
    }
    Ok(())
}

/// Store a segment; an error when its name is taken by other bytes (another replicator of the
/// same database shipped the same commits first). The same bytes are no error: a write whose
/// answer was lost (a timeout after the store had it), tried again.
pub async fn put_segment(
    repo: &Repository,
    db: &str,
    gen: &str,
    name: &str,
    body: Vec<u8>,
) -> Result<()> {
    let key = segments_prefix(repo, db, gen).join(name);
    let same = body.clone();
    if !create(repo, &key, body, "write segment").await?
        && read_segment(repo, db, gen, name).await.ok().as_deref() != Some(&same[..])
    {
        return Err(Error::new(
            Kind::Repository,
            format!(
                "segment {name} of generation {gen} already exists: is another `lifeboat replicate` running for {db}?"
            ),
        ));
    }
    Ok(())
}

/// The generation ids of `db`, oldest first.
pub async fn generation_ids(repo: &Repository, db: &str) -> Result<Vec<String>> {
    let prefix = generations_prefix(repo, db);
    let listed = repo
        .backend()
        .store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| repo.err("list generations", e))?;
    let mut ids: Vec<String> = listed
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().map(str::to_string))
        .filter(|n| n.starts_with("gen-"))
        .collect();
    ids.sort();
    Ok(ids)
}

/// One generation's record; `None` when it has none yet (a replicator stopped while starting
/// it: its segments, if any, are never used).
pub async fn read_generation(repo: &Repository, db: &str, id: &str) -> Result<Option<Generation>> {
    let key = generation_key(repo, db, id);
    let Some(bytes) = repo.get_if_exists(&key, "read generation").await? else {
        return Ok(None);
    };
    let g: Generation = serde_json::from_slice(&bytes).map_err(|e| {
        Error::new(
            Kind::Corrupt,
            format!("generation {id} of {db}: unreadable record: {e}"),
        )
    })?;
    if g.format_version != 1 || g.id != id || g.database != db {
        return Err(Error::new(
            Kind::Corrupt,
            format!("generation {id} of {db}: the record describes another generation or format"),
        ));
    }
    Ok(Some(g))
}

/// Every segment of a generation, shipped and compacted, by first commit (the widest first),
/// from their names (no object is read).
pub async fn pieces(repo: &Repository, db: &str, gen: &str) -> Result<Vec<SegmentName>> {
    let prefix = segments_prefix(repo, db, gen);
    let mut out = Vec::new();
    let mut stream = repo.backend().store.list(Some(&prefix));
    while let Some(meta) = stream.next().await {
        let meta = meta.map_err(|e| repo.err("list segments", e))?;
        if let Some(n) = meta.location.filename().and_then(parse_name) {
            out.push(n);
        }
    }
    out.sort_by(|a, b| (a.first_seq, b.last_seq, b.level).cmp(&(b.first_seq, a.last_seq, a.level)));
    Ok(out)
}

/// The chain a restore reads from commit `from` on: at each step the segment starting at the
/// next commit that reaches furthest while `ok` accepts it, so a compacted segment is read
/// instead of the shipped ones it replaces wherever both exist (they end at the same commits:
/// compacted windows are made of whole segments). Stops at a gap.
pub fn plan(
    pieces: &[SegmentName],
    from: u64,
    ok: impl Fn(&SegmentName) -> bool,
) -> Vec<&SegmentName> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let start = pieces.partition_point(|p| p.first_seq < next);
        let best = pieces[start..]
            .iter()
            .take_while(|p| p.first_seq == next)
            .filter(|p| ok(p))
            // Of two pieces of the same commits, a full rollup (it makes the snapshot unneeded),
            // else the highest level.
            .max_by_key(|p| (p.last_seq, p.level == FULL, p.level));
        match best {
            Some(p) => {
                out.push(p);
                next = p.last_seq + 1;
            }
            None => return out,
        }
    }
}

/// A generation's chain to its newest commit, in commit order (see [`plan`]).
pub async fn segments(repo: &Repository, db: &str, gen: &str) -> Result<Vec<SegmentName>> {
    let all = pieces(repo, db, gen).await?;
    let from = all.iter().map(|p| p.first_seq).min().unwrap_or(1);
    Ok(plan(&all, from, |_| true).into_iter().cloned().collect())
}

pub async fn read_segment(repo: &Repository, db: &str, gen: &str, name: &str) -> Result<Bytes> {
    let key = segments_prefix(repo, db, gen).join(name);
    let got = match repo.backend().store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(Error::new(
                Kind::Corrupt,
                format!("generation {gen}: segment {name} is missing"),
            ))
        }
        Err(e) => return Err(repo.err("read segment", e)),
    };
    got.bytes().await.map_err(|e| repo.err("read segment", e))
}

/// When a generation id says it was started (`gen-20261202T101530250Z-…`).
pub fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.strip_prefix("gen-")?.get(..19)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Delete a generation: its record first (from then on no restore, listing or replicator sees
/// it, so a prune killed halfway leaves only unused leftovers), then every object under it.
/// How many objects went.
pub async fn delete_generation(repo: &Repository, db: &str, id: &str) -> Result<usize> {
    repo.delete_keys(vec![generation_key(repo, db, id)]).await?;
    let prefix = generations_prefix(repo, db).join(id);
    // A week of one-second segments is 600,000 keys: deleted a thousand at a time as listed.
    let mut keys = Vec::new();
    let mut n = 1;
    let mut stream = repo.backend().store.list(Some(&prefix));
    while let Some(meta) = stream.next().await {
        keys.push(meta.map_err(|e| repo.err("list generation", e))?.location);
        if keys.len() == 1000 {
            n += keys.len();
            repo.delete_keys(std::mem::take(&mut keys)).await?;
        }
    }
    n += keys.len();
    repo.delete_keys(keys).await?;
    Ok(n)
}

/// Download a segment into the file `to`, streamed (memory: one chunk), and open it for
/// reading: a compacted segment can be as large as the database. A local repository's file is
/// opened where it is instead.
pub async fn download_segment(
    repo: &Repository,
    db: &str,
    gen: &str,
    name: &str,
    to: &std::path::Path,
) -> Result<std::io::BufReader<std::fs::File>> {
    use std::io::{Seek, Write};
    let key = segments_prefix(repo, db, gen).join(name);
    let missing = || {
        Error::new(
            Kind::Corrupt,
            format!("generation {gen}: segment {name} is missing"),
        )
    };
    // A local repository's object is read where it is: no copy.
    if let Some(path) = repo.backend().local_path(&key) {
        return match std::fs::File::open(&path) {
            Ok(f) => Ok(std::io::BufReader::with_capacity(256 * 1024, f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
            Err(e) => Err(Error::new(
                Kind::Repository,
                format!("read segment {}: {e}", path.display()),
            )),
        };
    }
    let got = match repo.backend().store.get(&key).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Err(missing()),
        Err(e) => return Err(repo.err("read segment", e)),
    };
    let io = |e| Error::io(format!("segment download to {}", to.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(to)
        .map_err(io)?;
    let mut stream = got.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| repo.err("read segment", e))?;
        file.write_all(&chunk).map_err(io)?;
    }
    file.rewind().map_err(io)?;
    Ok(std::io::BufReader::with_capacity(256 * 1024, file))
}

/// A generation and its segments as listed: what `list --pitr` shows, what restore picks from.
#[derive(Debug, Clone)]
pub struct Window {
    pub generation: Generation,
    /// The chain to the newest commit ([`plan`]).
    pub segments: Vec<SegmentName>,
    /// Every segment listed, shipped and compacted ([`pieces`]).
    pub pieces: Vec<SegmentName>,
    /// Where the segments' numbering skips (damage, or a deleted object): restores stop before.
    pub gap_after: Option<u64>,
}

impl Window {
    /// The newest commit restorable without crossing a gap.
    pub fn last(&self) -> (u64, DateTime<Utc>) {
        let mut last = (self.generation.base_seq, self.generation.base_at);
        let mut next = self.generation.start.seq + 1;
        for s in &self.segments {
            if s.first_seq != next {
                break;
            }
            if s.last_seq >= self.generation.base_seq {
                last = (s.last_seq, s.last_at.max(self.generation.base_at));
            }
            next = s.last_seq + 1;
        }
        last
    }
}

/// Store a compacted segment; false when it is there already (another compaction wrote the
/// same window: the same content).
pub async fn put_compacted(
    repo: &Repository,
    db: &str,
    gen: &str,
    name: &str,
    body: Vec<u8>,
) -> Result<bool> {
    let key = segments_prefix(repo, db, gen).join(name);
    create(repo, &key, body, "write compacted segment").await
}

/// Store a large compacted segment from the file at `from`, streamed (a multipart upload; two
/// compactions of one window write the same bytes, so the last one winning is harmless).
pub async fn upload_compacted(
    repo: &Repository,
    db: &str,
    gen: &str,
    name: &str,
    from: &std::path::Path,
) -> Result<()> {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let key = segments_prefix(repo, db, gen).join(name);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let complete = Arc::new(AtomicBool::new(false));
    let done = complete.clone();
    let path = from.to_path_buf();
    let reading = tokio::task::spawn_blocking(move || -> Result<()> {
        let io = |e| Error::io(format!("read {}", path.display()), e);
        let mut f = std::fs::File::open(&path).map_err(io)?;
        loop {
            let mut buf = vec![0u8; 1 << 20];
            let n = f.read(&mut buf).map_err(io)?;
            if n == 0 {
                done.store(true, Ordering::SeqCst);
                return Ok(());
            }
            buf.truncate(n);
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                return Ok(());
            }
        }
    });
    let uploaded = repo.upload_to(&key, rx, complete, None).await;
    reading
        .await
        .map_err(|e| Error::task("read compacted segment", e))??;
    if !uploaded? {
        return Err(Error::new(
            Kind::Internal,
            format!("compacted segment {name}: upload stopped before its end"),
        ));
    }
    Ok(())
}

/// Delete segments of a generation by name (gone already is fine).
pub async fn delete_segments(
    repo: &Repository,
    db: &str,
    gen: &str,
    names: &[String],
) -> Result<()> {
    let prefix = segments_prefix(repo, db, gen);
    for batch in names.chunks(1000) {
        repo.delete_keys(
            batch
                .iter()
                .map(|n| prefix.clone().join(n.as_str()))
                .collect(),
        )
        .await?;
    }
    Ok(())
}

/// Every generation of `db` with a record, oldest first.
pub async fn windows(repo: &Repository, db: &str) -> Result<Vec<Window>> {
    let mut out = Vec::new();
    for id in generation_ids(repo, db).await? {
        let Some(generation) = read_generation(repo, db, &id).await? else {
            continue;
        };
        let pieces = pieces(repo, db, &id).await?;
        let from = generation.start.seq + 1;
        let segments: Vec<SegmentName> =
            plan(&pieces, from, |_| true).into_iter().cloned().collect();
        let end = segments.last().map_or(from - 1, |s| s.last_seq);
        let gap_after = pieces.iter().any(|p| p.last_seq > end).then_some(end);
        out.push(Window {
            generation,
            segments,
            pieces,
            gap_after,
        });
    }
    Ok(out)
}

/// A file a killed upload staged beside a segment's name (`<segment>#N`), local repositories
/// only: object_store hides such files from listings, so nothing else ever sees them.
#[derive(Debug, Clone)]
pub struct Staged {
    /// `<gen-id>/<file name>`.
    pub name: String,
    pub path: std::path::PathBuf,
    pub size: u64,
    pub modified: DateTime<Utc>,
}

/// Every [`Staged`] file under `db`'s generations (a compaction or a replicator killed while
/// it placed a segment: as large as the segment).
pub fn local_staging(repo: &Repository, db: &str) -> Vec<Staged> {
    let Some(root) = repo.backend().local_path(&generations_prefix(repo, db)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for g in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let gen = g.file_name().to_string_lossy().into_owned();
        let Ok(files) = std::fs::read_dir(g.path().join("segments")) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let staged = name.split_once('#').is_some_and(|(base, n)| {
                !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && parse_name(base).is_some()
            });
            let Some(meta) = f.metadata().ok().filter(|m| staged && m.is_file()) else {
                continue;
            };
            out.push(Staged {
                name: format!("{gen}/{name}"),
                path: f.path(),
                size: meta.len(),
                modified: meta
                    .modified()
                    .map(DateTime::<Utc>::from)
                    .unwrap_or_default(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// A generation for unit tests: created 2026-12-02T10:00:00Z, 4 KiB pages, its restores
/// starting after `base_seq` commits.
#[cfg(test)]
pub(crate) fn test_generation(base_seq: u64) -> Generation {
    let at = DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z")
        .unwrap()
        .to_utc();
    Generation {
        format_version: 1,
        id: "gen-x".into(),
        database: "d".into(),
        created_at: at,
        reason: "first run".into(),
        snapshot: "backup-x".into(),
        source_path: "/d.db".into(),
        inode: 1,
        page_size: 4096,
        start: Link {
            seq: 0,
            position: None,
        },
        base_seq,
        base_at: at,
        quiet: None,
    }
}
