//! Verification of replicated data: each generation's chain of segments.
//!
//! - **catalogue** (from a listing, no segment read): the segments' names cover every commit
//!   from the generation's start once, with no gap and no overlap;
//! - **replay**: the snapshot fetched and checked, then every segment read and checked (zstd's
//!   checksum, its links to the one before, the WAL frame checksum chain, its commit frames)
//!   and applied in scratch, exactly as a restore to its newest point does, then `quick_check`
//!   and row counts; every other segment (shipped ones under compacted windows, lower levels)
//!   read through and checked the same way.
//!
//! A broken chain is the repository's damage ([`Finding::Chain`], exit 6); a check the network
//! or the scratch disk kept from running is reported with its own kind, and finds nothing.

use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::{Error, Kind, Result};
use crate::progress::Progress;
use crate::replicate::apply::check_stored;
use crate::replicate::compacted::is_rollup;
use crate::replicate::layout::{self, Window};
use crate::replicate::pitr::{restore_point, Point};
use crate::repo::Repository;
use crate::restore::to_file::RestoreOptions;
use crate::source::sqlite::IntegrityCheck;
use crate::verify::findings::Finding;

/// Which generations to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// None: the names only.
    Nothing,
    /// The newest generation.
    Newest,
    /// Every generation whose window reaches into the verification window.
    Window,
    /// These generation ids.
    Ids(Vec<String>),
}

/// One generation's replay.
#[derive(Debug, Clone, Serialize)]
pub struct ChainReport {
    pub database: String,
    pub generation: String,
    pub snapshot: String,
    pub ok: bool,
    pub problem: Option<String>,
    /// `corrupt`: the chain's fault; anything else: the environment's, nothing found.
    pub problem_kind: Option<Kind>,
    /// The newest commit replayed, and when it was seen.
    pub seq: u64,
    pub at: Option<DateTime<Utc>>,
    pub segments: u64,
    pub frames: u64,
    pub tables: usize,
    pub rows: u64,
    pub duration_ms: u64,
}

/// What is wrong with the names of a generation's segments: the chain from its start reaches
/// every commit listed (no gap), and no two segments of one level cover the same commit (a
/// segment copied in from elsewhere, or one listed twice). Compacted segments overlap the
/// shipped ones they replace by design.
pub fn name_problems(w: &Window) -> Vec<String> {
    let mut out = Vec::new();
    let mut levels: Vec<u8> = w.pieces.iter().map(|p| p.level).collect();
    levels.sort();
    levels.dedup();
    for level in levels.into_iter().filter(|l| !is_rollup(*l)) {
        let mut covered = w.generation.start.seq;
        for p in w.pieces.iter().filter(|p| p.level == level) {
            if p.first_seq <= covered {
                out.push(format!(
                    "segment {} overlaps commits already covered (up to {covered})",
                    p.name
                ));
            }
            covered = covered.max(p.last_seq);
        }
    }
    let end = w
        .segments
        .last()
        .map_or(w.generation.start.seq, |s| s.last_seq);
    if let Some(next) = (w.pieces.iter())
        .filter(|p| p.first_seq > end)
        .min_by_key(|p| p.first_seq)
    {
        if next.first_seq > end + 1 {
            out.push(format!(
                "commits {}-{} missing before segment {}",
                end + 1,
                next.first_seq - 1,
                next.name
            ));
        }
    }
    out
}

/// Whether a generation's window reaches `since` or later.
fn in_window(w: &Window, since: Option<DateTime<Utc>>) -> bool {
    let end = (w.pieces.iter().map(|s| s.last_at).max())
        .map_or(w.generation.base_at, |l| l.max(w.generation.base_at));
    since.is_none_or(|s| end >= s)
}

/// Every generation of `db` in the window, with a finding per problem in its names.
pub async fn catalogue(
    repo: &Repository,
    db: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<Window>, Vec<Finding>)> {
    let all = layout::windows(repo, db).await?;
    let newest = all.last().map(|w| w.generation.id.clone());
    let windows: Vec<Window> = all
        .into_iter()
        .filter(|w| in_window(w, since) || Some(&w.generation.id) == newest.as_ref())
        .collect();
    let findings = (windows.iter())
        .flat_map(|w| {
            name_problems(w).into_iter().map(|problem| Finding::Chain {
                generation: w.generation.id.clone(),
                problem,
            })
        })
        .collect();
    Ok((windows, findings))
}

/// Replay the generations `replay` picks among `windows` (those of the window, oldest first),
/// each in its own scratch image: a finding per broken chain, and a report per generation.
pub async fn replay(
    repo: &Repository,
    windows: &[Window],
    replay: &Replay,
    scratch_dir: Option<&Path>,
) -> Result<(Vec<Finding>, Vec<ChainReport>)> {
    let chosen: Vec<&Window> = match replay {
        Replay::Nothing => Vec::new(),
        Replay::Newest => windows.last().into_iter().collect(),
        Replay::Window => windows.iter().collect(),
        Replay::Ids(ids) => windows
            .iter()
            .filter(|w| ids.contains(&w.generation.id))
            .collect(),
    };
    let mut findings = Vec::new();
    let mut reports = Vec::new();
    for w in chosen {
        let r = replay_one(repo, w, scratch_dir).await;
        if r.problem_kind == Some(Kind::Corrupt) {
            findings.push(Finding::Chain {
                generation: r.generation.clone(),
                problem: r.problem.clone().unwrap_or_default(),
            });
        }
        reports.push(r);
    }
    Ok((findings, reports))
}

/// Replay one generation up to its newest commit before any gap.
async fn replay_one(repo: &Repository, w: &Window, scratch_dir: Option<&Path>) -> ChainReport {
    let started = Instant::now();
    let g = &w.generation;
    let (seq, at) = w.last();
    let point = Point {
        window: w.clone(),
        seq,
        at,
    };
    let mut report = ChainReport {
        database: g.database.clone(),
        generation: g.id.clone(),
        snapshot: g.snapshot.clone(),
        ok: false,
        problem: None,
        problem_kind: None,
        seq,
        at: Some(at),
        segments: 0,
        frames: 0,
        tables: 0,
        rows: 0,
        duration_ms: 0,
    };
    let outcome = async {
        let dir = crate::fs::scratch::scratch(scratch_dir)?;
        let opts = RestoreOptions {
            force: false,
            integrity: IntegrityCheck::Quick,
            dry_run: true,
            scratch_dir: Some(dir.path().to_path_buf()),
        };
        let target = dir.path().join("chain.sqlite");
        let replayed = restore_point(repo, &point, &target, &opts, &Progress::hidden()).await?;
        // The segments that replay did not read (shipped ones under compacted windows, older
        // levels): each read through and checked too.
        let part = dir.path().join("segment");
        for p in w.pieces.iter().filter(|p| !w.segments.contains(p)) {
            let stored = layout::download_segment(repo, &g.database, &g.id, &p.name, &part).await?;
            check_stored(g, p, stored)?;
        }
        Ok::<_, Error>(replayed)
    }
    .await;
    match outcome {
        Ok(p) => {
            report.ok = true;
            report.segments = p.segments;
            report.frames = p.frames;
            report.tables = p.tables.len();
            report.rows = p.rows;
        }
        Err(e) => {
            report.problem_kind = Some(e.kind);
            report.problem = Some(one_line(&e));
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    report
}

fn one_line(e: &Error) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::segment::parse_name;

    fn window(names: &[&str]) -> Window {
        let mut pieces: Vec<_> = names.iter().map(|n| parse_name(n).unwrap()).collect();
        pieces.sort_by_key(|p| (p.first_seq, std::cmp::Reverse(p.last_seq)));
        Window {
            generation: layout::test_generation(0),
            segments: layout::plan(&pieces, 1, |_| true)
                .into_iter()
                .cloned()
                .collect(),
            pieces,
            gap_after: None,
        }
    }

    fn seg(a: u64, b: u64) -> String {
        format!("{a:012}-{b:012}-20261202T100000000Z-20261202T100001000Z.seg.zst")
    }

    #[test]
    fn names_must_cover_every_commit_once() {
        let (a, b, c) = (seg(1, 3), seg(4, 4), seg(5, 9));
        assert!(name_problems(&window(&[&a, &b, &c])).is_empty());
        let gap = name_problems(&window(&[&a, &c]));
        assert_eq!(gap.len(), 1);
        assert!(gap[0].contains("commits 4-4 missing"), "{gap:?}");
        let overlap = name_problems(&window(&[&a, &seg(3, 4), &c]));
        assert!(overlap[0].contains("overlaps"), "{overlap:?}");
        let late_start = name_problems(&window(&[&b, &c]));
        assert!(
            late_start[0].contains("commits 1-3 missing"),
            "{late_start:?}"
        );
    }
}
