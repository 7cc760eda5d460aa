//! Tests of the retention rules, on a month of synthetic backups.

use super::*;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn backup(t: &str, kind: BackupKind) -> Manifest {
    let created = at(t);
    let id = format!("backup-{}", created.format("%Y-%m-%dT%H%M%SZ"));
    serde_json::from_value(serde_json::json!({
        "format_version": 1, "id": id, "database": "db", "kind": kind,
        "created_at": created, "source": {"kind": "sqlite", "path": "db"},
        "sqlite_version": "3", "page_size": 4096, "page_count": 1, "image_size": 4096,
        "stored_size": 1, "compression": "zstd", "data_object": format!("{id}.sqlite.zst"),
        "stored_sha256": "", "image_sha256": "", "tables": {}, "schema_sha256": "",
        "duration_ms": 0, "lifeboat_version": "0",
    }))
    .unwrap()
}

/// Every day of November 2026 at 02:00, plus extra backups on the 30th.
fn month() -> Vec<Manifest> {
    let mut v: Vec<Manifest> = (1..=30)
        .map(|d| backup(&format!("2026-11-{d:02}T02:00:00Z"), BackupKind::Scheduled))
        .collect();
    v.push(backup("2026-11-30T09:00:00Z", BackupKind::Manual));
    v.push(backup("2026-11-30T10:00:00Z", BackupKind::Emergency));
    v.push(backup("2026-11-30T11:00:00Z", BackupKind::Safety));
    v
}

fn kept(d: &[Decision]) -> Vec<String> {
    d.iter().filter(|d| d.keep).map(|d| d.id.clone()).collect()
}

const NOW: &str = "2026-12-01T00:00:00Z";

fn mark(id: &str, reason: &str, t: &str) -> Mark {
    Mark {
        id: id.into(),
        reason: reason.into(),
        at: at(t),
    }
}

#[test]
fn a_hold_keeps_a_backup_until_hold_within_has_passed() {
    let p = RetentionPolicy {
        keep_last: Some(1),
        min_keep: Some(1),
        ..Default::default()
    };
    let id = "backup-2026-11-10T020000Z";
    let marks = Marks {
        holds: BTreeMap::from([(
            id.to_string(),
            mark(id, "bookings 1000 -> 3", "2026-11-11T02:00:00Z"),
        )]),
        ..Marks::default()
    };
    let d = decide(&p, &month(), &[], &marks, at(NOW));
    let held = d.iter().find(|d| d.id == id).unwrap();
    assert!(held.keep, "{held:?}");
    assert!(
        held.reasons[0].starts_with("held until 2026-12-11"),
        "{held:?}"
    );
    let later = decide(&p, &month(), &[], &marks, at("2026-12-12T00:00:00Z"));
    assert!(
        !later.iter().find(|d| d.id == id).unwrap().keep,
        "the hold ran out"
    );
    let odd = RetentionPolicy {
        keep_last: Some(1),
        shrink_alert: Some(50.0),
        ..Default::default()
    };
    assert!(odd.check().is_err(), "a percentage is not a fraction");
}

#[test]
fn an_empty_policy_is_refused() {
    assert!(RetentionPolicy::default().check().is_err());
    let p = RetentionPolicy {
        keep_daily: Some(0),
        ..Default::default()
    };
    assert!(p.check().is_err());
    let p = RetentionPolicy {
        keep_daily: Some(7),
        ..Default::default()
    };
    assert!(p.check().is_ok());
}

#[test]
fn daily_keeps_the_newest_of_each_of_the_last_n_days() {
    let p = RetentionPolicy {
        keep_daily: Some(3),
        min_keep: Some(1),
        ..Default::default()
    };
    let d = decide(&p, &month(), &[], &Marks::default(), at(NOW));
    // The 30th's newest good backup is the emergency one at 10:00 (safety is not good).
    assert_eq!(
        kept(&d),
        vec![
            "backup-2026-11-30T110000Z",
            "backup-2026-11-30T100000Z",
            "backup-2026-11-29T020000Z",
            "backup-2026-11-28T020000Z"
        ]
    );
    let safety = d
        .iter()
        .find(|d| d.id == "backup-2026-11-30T110000Z")
        .unwrap();
    assert_eq!(
        safety.reasons,
        vec!["safety within 30d".to_string()],
        "a safety backup follows the emergency rule only (30 d by default)"
    );
}

#[test]
fn weeks_run_monday_to_sunday() {
    let p = RetentionPolicy {
        keep_weekly: Some(2),
        min_keep: Some(0),
        ..Default::default()
    };
    // 2026-11-30 is a Monday: it starts a week of its own; the week before ends Sunday 29th.
    let d = decide(&p, &month(), &[], &Marks::default(), at(NOW));
    let k = kept(&d);
    assert!(k.contains(&"backup-2026-11-30T100000Z".to_string()));
    assert!(k.contains(&"backup-2026-11-29T020000Z".to_string()));
    assert_eq!(k.len(), 3, "and the safety backup (30 d by default): {k:?}");
}

#[test]
fn floors_keep_the_newest_pinned_future_and_min_keep() {
    let p = RetentionPolicy {
        keep_last: Some(1),
        min_keep: Some(3),
        ..Default::default()
    };
    let mut all = month();
    all.push(backup("2027-01-01T00:00:00Z", BackupKind::Scheduled));
    let marks = Marks {
        pins: BTreeMap::from([(
            "backup-2026-11-02T020000Z".to_string(),
            mark("backup-2026-11-02T020000Z", "audit", NOW),
        )]),
        ..Marks::default()
    };
    let d = decide(&p, &all, &[], &marks, at(NOW));
    let k = kept(&d);
    assert!(
        k.contains(&"backup-2027-01-01T000000Z".to_string()),
        "future"
    );
    assert!(
        k.contains(&"backup-2026-11-02T020000Z".to_string()),
        "pinned"
    );
    let why = &d
        .iter()
        .find(|d| d.id == "backup-2026-11-02T020000Z")
        .unwrap()
        .reasons;
    assert!(why.iter().any(|r| r == "pinned: audit"), "{why:?}");
    // min_keep 3: the three newest good ones (the future one is not good: it takes no place).
    assert!(k.contains(&"backup-2026-11-30T100000Z".to_string()));
    assert!(k.contains(&"backup-2026-11-30T090000Z".to_string()));
    assert!(k.contains(&"backup-2026-11-30T020000Z".to_string()));
    // And the safety and emergency backups of the 30th (30 d by default): six.
    assert_eq!(k.len(), 6, "{k:?}");
}

#[test]
fn keep_within_counts_back_from_the_newest_backup_not_the_clock() {
    let p = RetentionPolicy {
        keep_within: Some(Duration::from_secs(2 * 86_400)),
        min_keep: Some(0),
        ..Default::default()
    };
    // A year later, nothing new arrived: two days back from the newest backup (11-30 11:00)
    // are still kept.
    let d = decide(
        &p,
        &month(),
        &[],
        &Marks::default(),
        at("2027-12-01T00:00:00Z"),
    );
    let k = kept(&d);
    assert!(k.contains(&"backup-2026-11-29T020000Z".to_string()));
    assert!(!k.contains(&"backup-2026-11-28T020000Z".to_string()));
}

#[test]
fn emergency_and_safety_follow_the_emergency_rule() {
    let p = RetentionPolicy {
        keep_last: Some(1),
        keep_emergency_within: Some(Duration::from_secs(86_400)),
        min_keep: Some(0),
        ..Default::default()
    };
    let d = decide(&p, &month(), &[], &Marks::default(), at(NOW));
    let k = kept(&d);
    assert!(
        k.contains(&"backup-2026-11-30T110000Z".to_string()),
        "safety"
    );
    assert!(
        k.contains(&"backup-2026-11-30T100000Z".to_string()),
        "emergency"
    );
}

#[test]
fn backups_it_cannot_read_are_never_deleted() {
    let p = RetentionPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let damaged = vec![(
        "backup-2020-11-01T030000Z".to_string(),
        "format_version 2".to_string(),
    )];
    let d = decide(&p, &month(), &damaged, &Marks::default(), at(NOW));
    let old = d
        .iter()
        .find(|d| d.id == "backup-2020-11-01T030000Z")
        .unwrap();
    assert!(old.keep, "{old:?}");
    assert_eq!(
        id_time("backup-2026-11-20T020000Z-2"),
        Some(at("2026-11-20T02:00:00Z"))
    );
}

#[test]
fn a_future_backup_takes_no_floor_and_moves_no_window() {
    let p = RetentionPolicy {
        keep_within: Some(Duration::from_secs(90 * 86_400)),
        min_keep: Some(1),
        ..Default::default()
    };
    let mut all = month();
    all.push(backup("2027-06-01T00:00:00Z", BackupKind::Scheduled));
    let d = decide(&p, &all, &[], &Marks::default(), at(NOW));
    let k = kept(&d);
    assert!(k.contains(&"backup-2027-06-01T000000Z".to_string()));
    assert!(
        k.contains(&"backup-2026-11-01T020000Z".to_string()),
        "90 d back from 11-30"
    );
    let newest = d
        .iter()
        .find(|d| d.id == "backup-2026-11-30T100000Z")
        .unwrap();
    assert!(newest.reasons.contains(&"newest good backup".to_string()));
    assert!(
        newest.reasons.contains(&"within 90d".to_string()),
        "{newest:?}"
    );
}

#[test]
fn a_safety_backup_does_not_move_the_window_and_outlives_the_next_prune() {
    let p = RetentionPolicy {
        keep_within: Some(Duration::from_secs(7 * 86_400)),
        min_keep: Some(1),
        ..Default::default()
    };
    let mut all: Vec<Manifest> = (1..=5)
        .map(|d| backup(&format!("2026-10-{d:02}T02:00:00Z"), BackupKind::Scheduled))
        .collect();
    all.push(backup("2026-12-02T10:00:00Z", BackupKind::Safety));
    let d = decide(&p, &all, &[], &Marks::default(), at("2026-12-02T11:00:00Z"));
    let k = kept(&d);
    assert_eq!(
        k.len(),
        6,
        "backups that stopped arriving stay; so does the safety one: {k:?}"
    );
}

#[test]
fn absurd_durations_do_not_overflow() {
    let p = RetentionPolicy {
        keep_within: Some(Duration::from_secs(u64::MAX / 4)),
        keep_emergency_within: Some(Duration::from_secs(u64::MAX / 4)),
        hold_within: Some(Duration::from_secs(u64::MAX / 4)),
        ..Default::default()
    };
    let d = decide(&p, &month(), &[], &Marks::default(), at(NOW));
    assert!(d.iter().all(|d| d.keep));
}

/// Every day of 2025 and 2026 at 02:00: a synthetic two-year history.
fn two_years() -> Vec<Manifest> {
    let first = at("2025-01-01T02:00:00Z");
    (0..730)
        .map(|d| {
            let t = first + chrono::Duration::days(d);
            backup(&t.to_rfc3339(), BackupKind::Scheduled)
        })
        .collect()
}

/// The id of the two-year history's backup of a day (`2026-12-31`).
fn day(d: &str) -> String {
    format!("backup-{d}T020000Z")
}

/// Table-driven: a timeline, a policy, marks and damaged backups, the clock, and exactly what
/// must be kept, written out by hand from the calendar (not computed by `decide`).
#[test]
fn retention_over_synthetic_timelines() {
    struct Case {
        name: &'static str,
        timeline: Vec<Manifest>,
        policy: RetentionPolicy,
        marks: Marks,
        damaged: Vec<(String, String)>,
        now: &'static str,
        kept: Vec<String>,
    }
    let days = |from: &str, n: i64| -> Vec<String> {
        let first = at(&format!("{from}T02:00:00Z"));
        (0..n)
            .map(|i| {
                format!(
                    "backup-{}",
                    (first + chrono::Duration::days(i)).format("%Y-%m-%dT%H%M%SZ")
                )
            })
            .collect()
    };
    let with = |extra: &[(&str, BackupKind)]| {
        let mut v = two_years();
        v.extend(extra.iter().map(|(t, k)| backup(t, *k)));
        v
    };
    let d90 = Duration::from_secs(90 * 86_400);
    let month_ends = [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
        "2026-04-30",
        "2026-05-31",
        "2026-06-30",
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
        "2026-11-30",
    ];
    let cases = vec![
        Case {
            name: "90 days: 90 daily backups (restic's rule: the one exactly 90 days older is out)",
            timeline: two_years(),
            policy: RetentionPolicy {
                keep_within: Some(d90),
                min_keep: Some(0),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            kept: days("2026-10-03", 90),
        },
        Case {
            name: "90 days after backups stopped half a year ago: the same 90",
            timeline: two_years(),
            policy: RetentionPolicy {
                keep_within: Some(d90),
                min_keep: Some(0),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-07-01T00:00:00Z",
            kept: days("2026-10-03", 90),
        },
        Case {
            name: "GFS: 7 daily, 4 weekly (Monday to Sunday), 12 monthly, 3 yearly",
            timeline: two_years(),
            policy: RetentionPolicy {
                keep_daily: Some(7),
                keep_weekly: Some(4),
                keep_monthly: Some(12),
                keep_yearly: Some(3),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            // Daily: 12-25 to 12-31. Weekly: 12-31 (a Thursday, week 53), the Sundays 12-27,
            // 12-20 and 12-13. Monthly: each month's last day. Yearly: 2026 and 2025 (the
            // only two years there are).
            kept: days("2026-12-25", 7)
                .into_iter()
                .chain(["2026-12-20", "2026-12-13", "2025-12-31"].map(day))
                .chain(month_ends.map(day))
                .collect(),
        },
        Case {
            name: "emergency and safety backups: 30 days from the newest good backup",
            timeline: with(&[
                ("2026-12-15T10:00:00Z", BackupKind::Emergency),
                ("2026-11-01T10:00:00Z", BackupKind::Emergency),
                ("2026-12-30T11:00:00Z", BackupKind::Safety),
                ("2026-10-01T11:00:00Z", BackupKind::Safety),
            ]),
            policy: RetentionPolicy {
                keep_last: Some(1),
                min_keep: Some(1),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            kept: vec![
                day("2026-12-31"),
                "backup-2026-12-15T100000Z".into(),
                "backup-2026-12-30T110000Z".into(),
            ],
        },
        Case {
            name: "pins, and holds until hold_within (an expired hold keeps nothing)",
            timeline: two_years(),
            policy: RetentionPolicy {
                keep_last: Some(1),
                min_keep: Some(1),
                ..Default::default()
            },
            marks: Marks {
                bad: BTreeMap::new(),
                needed: BTreeMap::new(),
                pins: BTreeMap::from([(
                    day("2025-03-03"),
                    mark(&day("2025-03-03"), "audit", "2025-03-04T00:00:00Z"),
                )]),
                holds: BTreeMap::from([
                    (
                        day("2026-06-01"),
                        mark(&day("2026-06-01"), "t 100 -> 3", "2026-12-22T00:00:00Z"),
                    ),
                    (
                        day("2026-07-01"),
                        mark(&day("2026-07-01"), "t 100 -> 3", "2026-11-22T00:00:00Z"),
                    ),
                ]),
            },
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            kept: vec![day("2026-12-31"), day("2025-03-03"), day("2026-06-01")],
        },
        Case {
            name: "bad backups (manifests that cannot be read) are never deleted",
            timeline: two_years()
                .into_iter()
                .filter(|m| m.id != day("2025-08-08"))
                .collect(),
            policy: RetentionPolicy {
                keep_last: Some(1),
                min_keep: Some(1),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![
                (
                    "backup-2024-05-05T020000Z".into(),
                    "format_version 2".into(),
                ),
                (
                    day("2025-08-08"),
                    "data object backup-2025-08-08T020000Z.sqlite.zst is missing".into(),
                ),
            ],
            now: "2027-01-01T00:00:00Z",
            kept: vec![
                day("2026-12-31"),
                "backup-2024-05-05T020000Z".into(),
                day("2025-08-08"),
            ],
        },
        Case {
            name: "min_keep: five good backups whatever the rules keep (a safety one is not good)",
            timeline: with(&[("2026-12-29T11:00:00Z", BackupKind::Safety)]),
            policy: RetentionPolicy {
                keep_within: Some(Duration::from_secs(86_400)),
                keep_emergency_within: Some(Duration::from_secs(3_600)),
                min_keep: Some(5),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            // The safety backup is older than the 1 h emergency rule reaches, and takes no
            // place among the five.
            kept: days("2026-12-27", 5),
        },
        Case {
            name: "a future-dated backup is kept and takes no place of keep_last",
            timeline: with(&[("2027-06-01T00:00:00Z", BackupKind::Scheduled)]),
            policy: RetentionPolicy {
                keep_last: Some(2),
                min_keep: Some(1),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            kept: vec![
                "backup-2027-06-01T000000Z".into(),
                day("2026-12-31"),
                day("2026-12-30"),
            ],
        },
        Case {
            name: "hourly: the newest of each of the last 3 hours that have one",
            timeline: [
                "00:10", "00:50", "01:20", "01:40", "03:05", "03:30", "03:55",
            ]
            .iter()
            .map(|t| backup(&format!("2026-12-31T{t}:00Z"), BackupKind::Scheduled))
            .collect(),
            policy: RetentionPolicy {
                keep_hourly: Some(3),
                min_keep: Some(0),
                ..Default::default()
            },
            marks: Marks::default(),
            damaged: vec![],
            now: "2027-01-01T00:00:00Z",
            kept: ["035500", "014000", "005000"]
                .map(|t| format!("backup-2026-12-31T{t}Z"))
                .to_vec(),
        },
    ];
    for c in cases {
        let d = decide(&c.policy, &c.timeline, &c.damaged, &c.marks, at(c.now));
        let mut got = kept(&d);
        got.sort();
        let mut want = c.kept;
        want.sort();
        assert_eq!(got, want, "{}", c.name);
        assert_eq!(
            d.len(),
            c.timeline.len() + c.damaged.len(),
            "{}: one decision per backup",
            c.name
        );
    }
}

#[test]
fn bad_backups_never_count_as_good_and_go_after_keep_bad_within() {
    let p = RetentionPolicy {
        keep_last: Some(2),
        min_keep: Some(1),
        ..Default::default()
    };
    // The newest scheduled backup failed its restore-test on the 29th.
    let newest = "backup-2026-11-30T020000Z";
    let lost = "backup-2026-11-20T020000Z";
    let bad = |since: &str| Bad {
        since: at(since),
        rung: crate::repo::verify_record::Rung::RestoreTest,
        problem: "integrity_check failed".into(),
    };
    let marks = Marks {
        bad: BTreeMap::from([
            (newest.to_string(), bad("2026-11-30T03:00:00Z")),
            (lost.to_string(), bad("2026-11-21T03:00:00Z")),
        ]),
        ..Marks::default()
    };
    let damaged = vec![
        (lost.to_string(), "data object is missing".to_string()),
        (
            "backup-2026-11-25T120000Z".to_string(),
            "manifest format version 9 is not supported".to_string(),
        ),
    ];
    let mut all = month();
    all.retain(|m| m.id != lost);
    let d = decide(&p, &all, &damaged, &marks, at(NOW));
    let why = |id: &str| d.iter().find(|d| d.id == id).unwrap().clone();
    // Kept for the investigation, but not as the newest good backup: that is the emergency one.
    let n = why(newest);
    assert!(n.keep, "{n:?}");
    assert_eq!(n.reasons.len(), 1, "{n:?}");
    assert!(n.reasons[0].contains("kept for investigation until 2026-12-07"));
    let emergency = why("backup-2026-11-30T100000Z");
    assert!(emergency.reasons.iter().any(|r| r == "newest good backup"));
    // keep_last 2 counts good backups only: the emergency and the manual one.
    assert!(why("backup-2026-11-30T090000Z")
        .reasons
        .contains(&"last 2".to_string()));
    assert!(!why("backup-2026-11-29T020000Z").keep);
    // Damaged and found bad 9 days ago: deleted. Damaged and never judged: kept.
    let l = why(lost);
    assert!(!l.keep, "{l:?}");
    assert!(
        l.reasons[0].contains("keep_bad_within 7d has passed"),
        "{l:?}"
    );
    assert!(why("backup-2026-11-25T120000Z").keep);
    // A week later the bad newest backup goes too.
    let later = decide(&p, &all, &damaged, &marks, at("2026-12-08T00:00:00Z"));
    let n = later.iter().find(|d| d.id == newest).unwrap();
    assert!(!n.keep, "{n:?}");
    assert!(n.reasons[0].contains("failed its restore-test on 2026-11-30"));
}
