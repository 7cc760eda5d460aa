//! `lifeboat restore --at TIME|latest --to PATH` of a replicated database: the last commit
//! seen at or before the time, from the generation that holds it (`lifeboat::replicate::pitr`).

use std::path::Path;

use crate::restore::Args;
use crate::{secs, Ctx};
use lifeboat::error::{Result, ResultExt};
use lifeboat::replicate::layout::windows;
use lifeboat::replicate::{choose, restore_point, PitrTarget};
use lifeboat::repo::manifest::human_size;
use lifeboat::repo::Repository;
use lifeboat::restore::to_file::RestoreOptions;

/// Restore from replicated data when there is any for `db`: false when there is none (or none
/// old enough), and the caller picks a backup as `--at` always did.
pub async fn run(
    ctx: &Ctx,
    repo: &Repository,
    db: &str,
    target: PitrTarget,
    to: &Path,
    args: &Args,
) -> Result<bool> {
    let windows = windows(repo, db).await.step("restore")?;
    if windows.is_empty() {
        return Ok(false);
    }
    let Some(point) = choose(&windows, target) else {
        ctx.out.line(format!(
            "no replicated commit of {db} at or before {} (its oldest generation starts at {}): using the newest backup taken before it",
            args.at.as_deref().unwrap_or_default(),
            windows[0].generation.base_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
        return Ok(false);
    };
    let opts = RestoreOptions {
        force: args.force,
        integrity: args.integrity_check,
        dry_run: args.dry_run,
        scratch_dir: None,
    };
    let pb = ctx.out.progress(&point.window.generation.snapshot);
    let report = restore_point(repo, &point, to, &opts, &crate::bar(&pb)).await;
    pb.finish_and_clear();
    let report = report.step("restore")?;
    let at = report
        .at
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    if report.dry_run {
        ctx.out.line(format!(
            "dry run: {db} as of commit {} of generation {} (seen at {at}) built and checked: {} tables, {} rows; nothing changed  {}",
            report.seq, report.generation, report.tables.len(), report.rows, secs(report.duration_ms)
        ));
    } else {
        let placed = crate::restore::Placed {
            db,
            backup: &report.snapshot,
            target: &report.target,
            moved_aside: report.moved_aside.as_deref(),
            duration_ms: report.duration_ms,
        };
        let summary = format!(
            "restored commit {} of generation {} to {}",
            report.seq,
            report.generation,
            report.target.display()
        );
        let more = serde_json::json!({"generation": report.generation, "seq": report.seq});
        placed.tell(ctx, repo, &summary, more).await;
        ctx.out.line(format!(
            "restored {db} as of commit {} of generation {} (seen at {at}) to {}: {} + {} segment(s), {} frame(s)  {}  {} tables  {} rows  checked ({})  {}",
            report.seq,
            report.generation,
            report.target.display(),
            match report.snapshot_read {
                true => format!("snapshot {}", report.snapshot),
                false => "a full rollup (the snapshot not read)".to_string(),
            },
            report.segments,
            report.frames,
            human_size(report.image_size),
            report.tables.len(),
            report.rows,
            args.integrity_check,
            secs(report.duration_ms)
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(true)
}
