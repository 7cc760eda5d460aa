//! Findings on a synthetic 30-day history.

use super::*;
use crate::repo::verify_record::{Bad, Rung, VerifyRecord};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn backup(day: u32, kind: &str, tables: serde_json::Value, schema: &str) -> Manifest {
    let created = at(&format!("2026-11-{day:02}T02:00:00Z"));
    let id = format!("backup-{}", created.format("%Y-%m-%dT%H%M%SZ"));
    serde_json::from_value(serde_json::json!({
        "format_version": 1, "id": id, "database": "db", "kind": kind,
        "created_at": created, "source": {"kind": "sqlite", "path": "db"},
        "sqlite_version": "3", "page_size": 4096, "page_count": 1, "image_size": 4096,
        "stored_size": 1, "compression": "zstd", "data_object": format!("{id}.sqlite.zst"),
        "stored_sha256": "", "image_sha256": "", "tables": tables, "schema_sha256": schema,
        "duration_ms": 0, "lifeboat_version": "0",
    }))
    .unwrap()
}

fn history() -> Listing {
    let mut listing = Listing::default();
    for day in 1..=30 {
        if day == 12 {
            continue; // the missing day
        }
        let (tables, schema) = match day {
            // bookings loses 80% of its rows on the 20th
            20.. => (serde_json::json!({"tenants": 5, "bookings": 200}), "s1"),
            // a table appears on the 15th
            15.. => (serde_json::json!({"tenants": 5, "bookings": 1000}), "s1"),
            _ => (serde_json::json!({"bookings": 1000}), "s0"),
        };
        listing
            .backups
            .push(backup(day, "scheduled", tables, schema));
    }
    listing
}

fn window<'a>(schedule: &'a Schedule, skipped: &'a BTreeSet<NaiveDate>) -> Window<'a> {
    Window {
        since: Some(at("2026-11-01T00:00:00Z")),
        now: at("2026-12-01T01:00:00Z"),
        schedule,
        skipped_days: skipped,
        shrink_alert: 0.5,
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

#[test]
fn a_month_with_a_missing_day_a_new_table_and_a_mass_delete() {
    let schedule = Schedule::parse("0 2 * * *").unwrap();
    let none = BTreeSet::new();
    let f = findings(&history(), &window(&schedule, &none));
    assert_eq!(
        f,
        vec![
            Finding::Gap {
                day: day(12),
                note: None
            },
            Finding::Drift {
                from: "backup-2026-11-14T020000Z".into(),
                to: "backup-2026-11-15T020000Z".into(),
                added: vec!["tenants".into()],
                dropped: vec![],
                schema_changed: true,
            },
            Finding::Shrinkage {
                from: "backup-2026-11-19T020000Z".into(),
                to: "backup-2026-11-20T020000Z".into(),
                tables: vec![("bookings".into(), 1000, 200)],
            },
        ]
    );
    assert_eq!(f[0].severity(), Severity::Error);
    assert_eq!(f[1].severity(), Severity::Warning);
    assert!(f[0].describe().starts_with("GAP     2026-11-12"));
}

#[test]
fn skips_cover_a_day_and_manual_or_bad_backups_do_not() {
    let schedule = Schedule::parse("0 2 * * *").unwrap();
    let mut listing = history();
    // A manual backup on the 12th is not the schedule running.
    let mut manual = backup(12, "manual", serde_json::json!({"bookings": 1000}), "s0");
    manual.created_at = at("2026-11-12T09:00:00Z");
    manual.id = "backup-2026-11-12T090000Z".into();
    listing.backups.push(manual);
    // The 25th's backup failed its restore-test.
    let id = "backup-2026-11-25T020000Z";
    let mut record = VerifyRecord::new("db", id);
    record.bad = Some(Bad {
        since: at("2026-11-25T03:00:00Z"),
        rung: Rung::RestoreTest,
        problem: "integrity_check: page 7 is never used".into(),
    });
    listing.records.insert(id.into(), record);
    let f = findings(&listing, &window(&schedule, &BTreeSet::new()));
    let gaps: Vec<&Finding> = f
        .iter()
        .filter(|f| matches!(f, Finding::Gap { .. }))
        .collect();
    assert_eq!(gaps.len(), 2, "{f:?}");
    assert_eq!(
        gaps[0],
        &Finding::Gap {
            day: day(12),
            note: Some("only a manual backup".into())
        }
    );
    assert!(f
        .iter()
        .any(|f| matches!(f, Finding::Damage { backup, .. } if backup == id)));
    // A skip of the unchanged database on the 12th covers it.
    let skipped = BTreeSet::from([day(12)]);
    let f = findings(&listing, &window(&schedule, &skipped));
    assert_eq!(
        f.iter()
            .filter(|f| matches!(f, Finding::Gap { .. }))
            .count(),
        1
    );
}

#[test]
fn days_the_schedule_does_not_fire_and_days_before_the_first_backup_are_no_gaps() {
    // Weekly on Mondays: November 2026's Mondays are the 2nd, 9th, 16th, 23rd, 30th.
    let weekly = Schedule::parse("0 2 * * 1").unwrap();
    let mut listing = Listing::default();
    for d in [9, 16, 30] {
        listing.backups.push(backup(
            d,
            "scheduled",
            serde_json::json!({"bookings": 10}),
            "s",
        ));
    }
    let f = findings(&listing, &window(&weekly, &BTreeSet::new()));
    assert_eq!(
        f,
        vec![Finding::Gap {
            day: day(23),
            note: None
        }]
    );
    // Only manual backups: no schedule was promised, no gaps.
    let mut manual = Listing::default();
    manual
        .backups
        .push(backup(3, "manual", serde_json::json!({}), "s"));
    assert!(findings(&manual, &window(&weekly, &BTreeSet::new())).is_empty());
}
