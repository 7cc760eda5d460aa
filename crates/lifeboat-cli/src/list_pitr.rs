//! `lifeboat list --pitr`: per replicated database, each generation's restorable window (from
//! the commit its snapshot reaches to the newest shipped), its snapshot, and the break that
//! started it.

use chrono::SecondsFormat;

use crate::Ctx;
use lifeboat::error::Result;
use lifeboat::replicate::layout::windows;
use lifeboat::repo::Repository;

pub async fn run(ctx: &Ctx, repo: &Repository, names: &[String]) -> Result<i32> {
    let mut docs = Vec::new();
    for name in names {
        let ws = windows(repo, name).await?;
        if ws.is_empty() {
            ctx.out.line(format!("{name}: not replicated"));
            continue;
        }
        ctx.out.line(format!(
            "{name}: {} generation(s) in {}",
            ws.len(),
            repo.url()
        ));
        let t = |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(SecondsFormat::Millis, true);
        for w in &ws {
            let g = &w.generation;
            let (last_seq, last_at) = w.last();
            ctx.out.line(format!(
                "  {}  restorable {} .. {}  commits {}..{}  {} segment(s)  snapshot {}  started: {}",
                g.id,
                t(g.base_at),
                t(last_at),
                g.base_seq,
                last_seq,
                w.segments.len(),
                g.snapshot,
                lifeboat::text::escape(&g.reason)
            ));
            if let Some(gap) = w.gap_after {
                ctx.out.line(format!(
                    "    GAP after commit {gap}: a segment is missing; restores stop there"
                ));
            }
            docs.push(serde_json::json!({
                "database": name,
                "generation": g.id,
                "snapshot": g.snapshot,
                "reason": g.reason,
                "created_at": g.created_at,
                "from": g.base_at,
                "to": last_at,
                "first_seq": g.base_seq,
                "last_seq": last_seq,
                "segments": w.segments.len(),
                "gap_after": w.gap_after,
            }));
        }
    }
    ctx.out.json(&serde_json::Value::Array(docs));
    Ok(0)
}
