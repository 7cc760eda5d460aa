//! Retention of replicated data (`[replication] pitr_within`, default 7 d): a generation whose
//! whole window ended before `now − pitr_within` is deleted (its record, then its segments; its
//! snapshot is then an ordinary backup that `[retention]` keeps or not). Always kept: the
//! generation that reaches back to that boundary (the restores just inside the window start
//! from it), every later one, and the newest generation (the one a replicator extends), whatever
//! the clock says. A generation without a record (a replicator stopped while starting it) is
//! never restorable: its leftovers go once they are older than the boundary, unless it is the
//! newest (it may be being started right now).

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::Result;
use crate::replicate::layout;
use crate::repo::Repository;

/// One generation as retention sees it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub id: String,
    /// From its record: the first restorable time and the snapshot; `None`: no record.
    pub record: Option<(DateTime<Utc>, String)>,
    /// The last commit time among its segments (its record's base time when it has none).
    pub end: Option<DateTime<Utc>>,
    /// Its record exists but cannot be read: kept, as prune never deletes what it cannot judge.
    pub unreadable: Option<String>,
}

/// What was decided for one generation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GenerationDecision {
    pub id: String,
    pub snapshot: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub keep: bool,
    pub reason: String,
}

/// What a prune of one database's replicated data decided and did.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationPrune {
    pub database: String,
    pub dry_run: bool,
    /// `now − pitr_within`: restores reach back to here.
    pub boundary: DateTime<Utc>,
    /// Oldest first.
    pub decisions: Vec<GenerationDecision>,
    /// Generations deleted (none in a dry run).
    pub deleted: usize,
    /// Objects deleted with them (records and segments).
    pub objects: usize,
}

impl GenerationPrune {
    /// The generations that go (or would): their snapshots are no longer needed.
    pub fn dropping(&self) -> BTreeSet<String> {
        (self.decisions.iter())
            .filter(|d| !d.keep)
            .map(|d| d.id.clone())
            .collect()
    }
}

/// Decide for `gens` (oldest first, by id) against `boundary` (see the module's comment).
pub fn decide(gens: &[Summary], boundary: DateTime<Utc>) -> Vec<GenerationDecision> {
    // The newest recorded generation that started at or before the boundary.
    let reaching = gens
        .iter()
        .rposition(|g| g.record.as_ref().is_some_and(|(from, _)| *from <= boundary));
    let newest = gens.len().checked_sub(1);
    let b = boundary.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    gens.iter()
        .enumerate()
        .map(|(i, g)| {
            let (keep, reason) = if Some(i) == newest {
                (true, "the newest generation".to_string())
            } else if let Some(why) = &g.unreadable {
                (
                    true,
                    format!("its record cannot be read ({why}): kept for investigation"),
                )
            } else if g.record.is_none() {
                match layout::id_time(&g.id) {
                    Some(t) if t < boundary && g.end.is_none_or(|e| e < boundary) => (
                        false,
                        "never finished (no record), older than the boundary".into(),
                    ),
                    _ => (
                        true,
                        "never finished (no record), not older than the boundary".into(),
                    ),
                }
            } else if Some(i) == reaching {
                (
                    true,
                    format!("reaches back to the pitr_within boundary {b}"),
                )
            } else if reaching.is_none_or(|r| i > r) {
                (true, format!("within pitr_within (after {b})"))
            } else if g.end.is_some_and(|e| e > boundary) {
                // Only a clock that went back gets here: never delete what restores reach.
                (true, format!("its window ends after the boundary {b}"))
            } else {
                (false, format!("its window ended before the boundary {b}"))
            };
            GenerationDecision {
                id: g.id.clone(),
                snapshot: g.record.as_ref().map(|(_, s)| s.clone()),
                from: g.record.as_ref().map(|(f, _)| *f),
                to: g.end,
                keep,
                reason,
            }
        })
        .collect()
}

/// Apply `pitr_within` to `db`'s generations; unless `dry_run`, delete those it does not keep.
pub async fn prune_generations(
    repo: &Repository,
    db: &str,
    pitr_within: Duration,
    dry_run: bool,
    now: DateTime<Utc>,
) -> Result<GenerationPrune> {
    let boundary = chrono::Duration::from_std(pitr_within)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut gens = Vec::new();
    let ids = layout::generation_ids(repo, db).await?;
    for (i, id) in ids.iter().enumerate() {
        let (record, unreadable) = match layout::read_generation(repo, db, id).await {
            Ok(r) => (r, None),
            Err(e) if e.kind == crate::error::Kind::Corrupt => (None, Some(e.to_string())),
            Err(e) => return Err(e),
        };
        let segments = layout::pieces(repo, db, id).await?;
        // What a deletion leaves on a local repository: an empty folder, nothing to decide.
        if record.is_none() && unreadable.is_none() && segments.is_empty() && i + 1 < ids.len() {
            continue;
        }
        let last = segments.iter().map(|s| s.last_at).max();
        gens.push(Summary {
            record: record.as_ref().map(|g| (g.base_at, g.snapshot.clone())),
            end: match (&record, last) {
                (Some(g), l) => Some(l.map_or(g.base_at, |l| l.max(g.base_at))),
                (None, l) => l,
            },
            unreadable,
            id: id.clone(),
        });
    }
    let decisions = decide(&gens, boundary);
    let mut report = GenerationPrune {
        database: db.to_string(),
        dry_run,
        boundary,
        decisions,
        deleted: 0,
        objects: 0,
    };
    if !dry_run {
        for d in report.decisions.iter().filter(|d| !d.keep) {
            report.objects += layout::delete_generation(repo, db, &d.id)
                .await
                .map_err(|e| {
                    e.context(format!(
                        "{} generation(s) of {db} deleted before this failure",
                        report.deleted
                    ))
                })?;
            report.deleted += 1;
            tracing::info!(database = db, generation = %d.id, "prune: generation deleted");
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn gen(id: &str, from: &str, to: &str) -> Summary {
        Summary {
            id: id.into(),
            record: Some((t(from), format!("snap-{id}"))),
            end: Some(t(to)),
            unreadable: None,
        }
    }

    fn kept(d: &[GenerationDecision]) -> Vec<&str> {
        d.iter().filter(|d| d.keep).map(|d| d.id.as_str()).collect()
    }

    #[test]
    fn keeps_the_generation_reaching_back_and_all_after() {
        let gens = vec![
            gen(
                "gen-20261101T000000000Z-1",
                "2026-11-01T00:00:00Z",
                "2026-11-03T00:00:00Z",
            ),
            gen(
                "gen-20261103T000000000Z-2",
                "2026-11-03T00:00:00Z",
                "2026-11-05T00:00:00Z",
            ),
            gen(
                "gen-20261105T000000000Z-3",
                "2026-11-05T00:00:00Z",
                "2026-11-09T00:00:00Z",
            ),
            gen(
                "gen-20261109T000000000Z-4",
                "2026-11-09T00:00:00Z",
                "2026-11-10T00:00:00Z",
            ),
        ];
        // The boundary falls inside generation 3: 1 and 2 go, 3 reaches back to it.
        let d = decide(&gens, t("2026-11-06T00:00:00Z"));
        assert_eq!(
            kept(&d),
            vec!["gen-20261105T000000000Z-3", "gen-20261109T000000000Z-4"]
        );
        assert!(d[2].reason.contains("reaches back"), "{:?}", d[2]);
        // A boundary before everything keeps everything; one after everything keeps the newest
        // (it reaches back to the boundary and is the newest).
        assert_eq!(kept(&decide(&gens, t("2026-10-01T00:00:00Z"))).len(), 4);
        assert_eq!(
            kept(&decide(&gens, t("2027-01-01T00:00:00Z"))),
            vec!["gen-20261109T000000000Z-4"]
        );
        // A boundary exactly at a generation's start: that one reaches back, the one before goes.
        let d = decide(&gens, t("2026-11-05T00:00:00Z"));
        assert_eq!(kept(&d).len(), 2);
    }

    #[test]
    fn never_the_newest_and_recordless_leftovers_by_age() {
        let mut gens = vec![
            gen(
                "gen-20261101T000000000Z-1",
                "2026-11-01T00:00:00Z",
                "2026-11-02T00:00:00Z",
            ),
            Summary {
                id: "gen-20261102T000000000Z-2".into(),
                record: None,
                end: Some(t("2026-11-02T00:00:01Z")),
                unreadable: None,
            },
            gen(
                "gen-20261103T000000000Z-3",
                "2026-11-03T00:00:00Z",
                "2026-11-04T00:00:00Z",
            ),
        ];
        let d = decide(&gens, t("2026-11-20T00:00:00Z"));
        assert_eq!(kept(&d), vec!["gen-20261103T000000000Z-3"]);
        assert!(d[1].reason.contains("never finished"));
        // A newest generation without a record (being started) is kept, and so is the one
        // reaching back.
        gens.push(Summary {
            id: "gen-20261120T000000000Z-4".into(),
            record: None,
            end: None,
            unreadable: None,
        });
        // A record that cannot be read is never deleted.
        let mut odd = gens.clone();
        odd[0].unreadable = Some("not JSON".into());
        assert!(decide(&odd, t("2026-11-20T00:00:00Z"))[0].keep);
        let d = decide(&gens, t("2026-11-20T00:00:00Z"));
        assert_eq!(
            kept(&d),
            vec!["gen-20261103T000000000Z-3", "gen-20261120T000000000Z-4"]
        );
        // A window that ends after the boundary (a clock that went back) is never deleted.
        let skewed = vec![
            gen(
                "gen-20261101T000000000Z-1",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            gen(
                "gen-20261103T000000000Z-2",
                "2026-11-03T00:00:00Z",
                "2026-11-04T00:00:00Z",
            ),
            gen(
                "gen-20261105T000000000Z-3",
                "2026-11-05T00:00:00Z",
                "2026-11-06T00:00:00Z",
            ),
        ];
        assert_eq!(kept(&decide(&skewed, t("2026-11-10T00:00:00Z"))).len(), 2);
    }
}
