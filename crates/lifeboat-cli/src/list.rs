//! `lifeboat list`: complete backups newest first, with incomplete leftovers flagged.

use crate::{database_names, Ctx};
use lifeboat::error::Result;
use lifeboat::repo::manifest::human_size;
use lifeboat::repo::marks::MarkKind;
use lifeboat::repo::verify_record::VerifyRecord;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat list
  lifeboat list --db studio-platform-db --json
  lifeboat list --pitr --db studio-platform-db")]
pub struct Args {
    /// Only this database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Replicated databases: per generation, the window a point-in-time restore reaches, and
    /// the break that started it.
    #[arg(long)]
    pitr: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let repo = ctx.repository(false)?;
    let names = database_names(ctx, &repo, args.db.as_deref()).await?;
    if args.pitr {
        return crate::list_pitr::run(ctx, &repo, &names).await;
    }
    let mut docs = Vec::new();
    if names.is_empty() {
        ctx.out.line(format!("no backups in {}", repo.url()));
    }
    for name in names {
        let listing = repo.list(&name).await?;
        let pins = repo.marks(MarkKind::Pin, &name).await?;
        let holds = repo.marks(MarkKind::Hold, &name).await?;
        ctx.out.line(format!(
            "{name}: {} complete backup(s) in {}",
            listing.backups.len(),
            repo.url()
        ));
        if !listing.backups.is_empty() {
            ctx.out.line(format!(
                "  {:<28} {:<9} {:<20} {:>10} {:>7} {:>12}  {}",
                "ID", "KIND", "CREATED (UTC)", "SIZE", "TABLES", "ROWS", "RESTORE-TESTED"
            ));
        }
        for m in &listing.backups {
            ctx.out.line(format!(
                "  {:<28} {:<9} {:<20} {:>10} {:>7} {:>12}  {:<16}{}",
                m.id,
                m.kind.to_string(),
                m.created_at.format("%Y-%m-%d %H:%M:%S"),
                human_size(m.stored_size),
                m.tables.len(),
                m.total_rows(),
                tested(listing.records.get(&m.id)),
                m.label
                    .as_deref()
                    .map(|l| format!("  {}", lifeboat::text::escape(l)))
                    .unwrap_or_default()
                    + &marked(pins.contains_key(&m.id), holds.contains_key(&m.id))
            ));
        }
        for l in &listing.incomplete {
            ctx.out.line(format!(
                "  INCOMPLETE {} ({} object(s), {}, last written {}): no manifest (running, or interrupted: `lifeboat cleanup` removes it once its backup is gone)",
                l.id,
                l.objects.len(),
                human_size(l.size),
                l.last_modified.format("%Y-%m-%d %H:%M:%S")
            ));
        }
        for (id, why) in &listing.damaged {
            ctx.out
                .line(format!("  DAMAGED {id}: {}", lifeboat::text::escape(why)));
        }
        for m in &listing.backups {
            if let Some(bad) = listing.bad(&m.id) {
                ctx.out.line(format!(
                    "  BAD {}: failed its {} on {}, not used by latest or counted as good: {}",
                    m.id,
                    bad.rung,
                    bad.since.format("%Y-%m-%d %H:%M"),
                    lifeboat::text::escape(&bad.problem)
                ));
            }
        }
        let backups: Vec<serde_json::Value> = listing
            .backups
            .iter()
            .map(|m| {
                let mut doc = serde_json::to_value(m).unwrap_or_default();
                if let Some(p) = pins.get(&m.id) {
                    doc["pinned"] = p.reason.clone().into();
                }
                if let Some(h) = holds.get(&m.id) {
                    doc["held"] = h.reason.clone().into();
                }
                if let Some(r) = listing.records.get(&m.id) {
                    doc["verification"] = serde_json::to_value(r).unwrap_or_default();
                }
                doc
            })
            .collect();
        docs.push(serde_json::json!({
            "database": name,
            "backups": backups,
            "incomplete": listing.incomplete,
            "damaged": listing.damaged.iter().map(|(id, why)| serde_json::json!({"id": id, "problem": why})).collect::<Vec<_>>(),
        }));
    }
    ctx.out
        .json(&serde_json::json!({ "repository": repo.url(), "databases": docs }));
    Ok(0)
}

/// The RESTORE-TESTED column: when and how the last restore-test went, or BAD.
fn tested(r: Option<&VerifyRecord>) -> String {
    let Some(r) = r else {
        return "-".into();
    };
    if r.bad.is_some() {
        return "BAD".into();
    }
    match &r.restore_test {
        Some(c) => format!(
            "{} {}",
            c.at.format("%Y-%m-%d %H:%M"),
            if c.ok { "ok" } else { "FAIL" }
        ),
        None => "-".into(),
    }
}

/// `[pinned]`, `[held]`: what keeps a backup from retention, shown after its label.
fn marked(pinned: bool, held: bool) -> String {
    let mut out = String::new();
    if pinned {
        out.push_str("  [pinned]");
    }
    if held {
        out.push_str("  [held]");
    }
    out
}
