//! The verification ladder end to end: each kind of damage found and named with exit 6, gaps in
//! a 30-day history, drift and shrinkage as warnings (exit 1), the rolling read, and
//! `verify_after_backup` catching a damaged upload.

mod common;

use std::path::{Path, PathBuf};

use chrono::{Duration, Utc};
use common::*;

const REPO: &str = "file://./repo";

/// `app.db` with two tables, backed up once; returns the backup's manifest path.
fn one_backup(d: &Path) -> (String, PathBuf) {
    sqlite3(
        &d.join("app.db"),
        "CREATE TABLE tenants(id INTEGER PRIMARY KEY, name TEXT);
         CREATE TABLE bookings(id INTEGER PRIMARY KEY, tenant INTEGER REFERENCES tenants(id), note TEXT);
         INSERT INTO tenants(name) SELECT 'tenant ' || value FROM generate_series(1, 20);
         INSERT INTO bookings(tenant, note) SELECT 1 + value % 20, hex(randomblob(40)) FROM generate_series(1, 3000);",
    );
    let v: serde_json::Value = serde_json::from_str(&ok(
        d,
        &["--json", "backup", "--db", "app.db", "--repo", REPO],
    ))
    .unwrap();
    let id = v["backups"][0]["id"].as_str().unwrap().to_string();
    let manifest = d.join(format!("repo/app/backups/{id}.json"));
    (id, manifest)
}

fn data_of(d: &Path, id: &str) -> PathBuf {
    d.join(format!("repo/app/backups/{id}.sqlite.zst"))
}

fn verify_json(d: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["--json", "verify", "--repo", REPO];
    all.extend_from_slice(args);
    let o = run(d, &all);
    // On failure, the error follows the report as a second JSON document.
    let out = stdout(&o);
    let v = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .next()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    (o.status.code(), v, stderr(&o))
}

#[test]
fn a_bit_flip_is_found_named_and_the_backup_is_never_used_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (first, _) = one_backup(d);
    ok(d, &["backup", "--db", "app.db", "--repo", REPO]);
    let second = ok(d, &["--json", "list", "--repo", REPO]);
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let newest = second["databases"][0]["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(newest, first);
    // Flip one bit in the middle of the stored object: same size, so the catalogue passes.
    let data = data_of(d, &newest);
    flip_middle_byte(&data, 0x01);
    let (code, v, err) = verify_json(d, &["--db", "app"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(err.contains(&newest), "{err}");
    let findings = &v["databases"][0]["findings"];
    assert_eq!(findings[0]["finding"], "damage", "{v}");
    assert_eq!(findings[0]["backup"], newest.as_str());
    // Recorded bad: `latest` passes it over, list and status say so.
    let out = ok(
        d,
        &["restore", "--db", "app", "--to", "back.db", "--repo", REPO],
    );
    assert!(out.contains(&first), "{out}");
    assert!(ok(d, &["list", "--repo", REPO]).contains(&format!("BAD {newest}")));
    let status = run(d, &["status", "--repo", REPO]);
    assert!(
        stdout(&status).contains("1 backup(s) failed verification"),
        "{}",
        stdout(&status)
    );
    // The read rung finds it too, without writing anything.
    let (code, v, err) = verify_json(d, &["--db", "app", "--read-subset", "1/1"]);
    assert_eq!(code, Some(6), "{err}");
    let reports = v["reports"].as_array().unwrap();
    assert_eq!(reports.len(), 2, "{v}");
    assert!(reports
        .iter()
        .any(|r| r["backup"] == newest.as_str() && r["ok"] == false && r["rung"] == "read"));
    // The catalogue finds the bad backup by its marker, without reading every record.
    let marker = d.join(format!("repo/app/verify/bad/{newest}.json"));
    assert!(marker.exists());
    let (code, v, err) = verify_json(d, &["--db", "app", "--catalogue"]);
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(v["databases"][0]["findings"][0]["backup"], newest.as_str());
    // Mended (the same bit flipped back) and restore-tested again: good, unmarked, latest.
    flip_middle_byte(&data, 0x01);
    let (code, _, err) = verify_json(d, &["--db", "app", &newest]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!marker.exists());
    let out = ok(
        d,
        &["restore", "--db", "app", "--to", "again.db", "--repo", REPO],
    );
    assert!(out.contains(&newest), "{out}");
}

#[test]
fn truncated_and_missing_objects_and_lying_manifests_are_damage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (id, manifest) = one_backup(d);
    let data = data_of(d, &id);
    // A manifest whose row counts disagree with the data.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    m["tables"]["bookings"] = 2999.into();
    std::fs::write(&manifest, serde_json::to_vec(&m).unwrap()).unwrap();
    let (code, _, err) = verify_json(d, &[&id, "--db", "app"]);
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("row counts differ") && err.contains("bookings"),
        "{err}"
    );
    // Truncated: the catalogue sees it without reading.
    let (id2, _) = {
        ok(d, &["backup", "--db", "app.db", "--repo", REPO]);
        let v: serde_json::Value =
            serde_json::from_str(&ok(d, &["--json", "list", "--repo", REPO])).unwrap();
        (
            v["databases"][0]["backups"][0]["id"]
                .as_str()
                .unwrap()
                .to_string(),
            (),
        )
    };
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(data_of(d, &id2))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 100).unwrap();
    let (code, v, err) = verify_json(d, &["--db", "app"]);
    assert_eq!(code, Some(6), "{err}");
    let problems = v["databases"][0]["findings"].to_string();
    assert!(
        problems.contains(&id2) && problems.contains("truncated"),
        "{problems}"
    );
    // Missing.
    std::fs::remove_file(&data).unwrap();
    let (code, v, _) = verify_json(d, &["--db", "app", "--all"]);
    assert_eq!(code, Some(6));
    let problems = v["databases"][0]["findings"].to_string();
    assert!(
        problems.contains(&id) && problems.contains("missing"),
        "{problems}"
    );
    // Both are recorded bad now: retention deletes them after keep_bad_within, not before.
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[retention]\nkeep_last = 5\n",
    )
    .unwrap();
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(out.contains("kept for investigation until"), "{out}");
    // A record whose backup is gone (a prune between a check and its write) is cleaned up;
    // the records of backups that exist stay.
    let orphan = d.join("repo/app/verify/records/backup-2001-01-01T000000Z.json");
    std::fs::write(&orphan, "{}").unwrap();
    let out = ok(d, &["cleanup"]);
    assert!(
        out.contains("the verify record of a backup that is gone"),
        "{out}"
    );
    assert!(!orphan.exists());
    assert!(d
        .join(format!("repo/app/verify/records/{id}.json"))
        .exists());
}

/// A 30-day scheduled history up to yesterday, made of copies of one real backup, without the
/// day `missing` days ago.
fn history(d: &Path, missing: i64) -> Vec<String> {
    let (real, manifest) = one_backup(d);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let dir = d.join("repo/app/backups");
    let mut ids = Vec::new();
    for ago in 1..=30 {
        if ago == missing {
            continue;
        }
        let t = (Utc::now() - Duration::days(ago))
            .date_naive()
            .and_hms_opt(2, 0, 0)
            .unwrap();
        let id = t.format("backup-%Y-%m-%dT%H%M%SZ").to_string();
        let mut m = m.clone();
        m["id"] = id.clone().into();
        m["created_at"] = t.and_utc().to_rfc3339().into();
        m["kind"] = "scheduled".into();
        m["data_object"] = format!("{id}.sqlite.zst").into();
        std::fs::copy(data_of(d, &real), dir.join(format!("{id}.sqlite.zst"))).unwrap();
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        ids.push(id);
    }
    // Today's real (manual) backup stays: it covers no scheduled day.
    ids
}

#[test]
fn a_missing_day_in_30_days_is_a_gap_unless_a_skip_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 10);
    let day = (Utc::now() - Duration::days(10))
        .format("%Y-%m-%d")
        .to_string();
    let (code, v, err) = verify_json(d, &["--db", "app"]);
    assert_eq!(code, Some(6), "{err}");
    let findings = v["databases"][0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["finding"], "gap");
    assert_eq!(findings[0]["day"], day.as_str());
    assert!(
        err.contains("1 day(s) without a good scheduled backup"),
        "{err}"
    );
    // A shorter window does not reach it.
    let (code, _, err) = verify_json(d, &["--db", "app", "--since", "7d", "--sample", "1"]);
    assert_eq!(code, Some(0), "{err}");
    // The daemon found the database unchanged that day: covered.
    std::fs::create_dir_all(d.join("repo/app/runs/skipped")).unwrap();
    std::fs::write(d.join(format!("repo/app/runs/skipped/{day}.json")), "{}").unwrap();
    let (code, _, err) = verify_json(d, &["--db", "app"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn shrinkage_and_schema_drift_are_warnings_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    one_backup(d);
    let db = d.join("app.db");
    sqlite3(&db, "DELETE FROM bookings WHERE id % 5 != 0;"); // 80% gone
    ok(d, &["backup", "--db", "app.db", "--repo", REPO]);
    sqlite3(
        &db,
        "CREATE TABLE invoices(id INTEGER PRIMARY KEY, total REAL);",
    );
    ok(d, &["backup", "--db", "app.db", "--repo", REPO]);
    let o = run(
        d,
        &["verify", "--repo", REPO, "--db", "app", "--since", "1d"],
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains("SHRUNK") && out.contains("bookings 3000 -> 600"),
        "{out}"
    );
    assert!(
        out.contains("DRIFT") && out.contains("tables added: invoices"),
        "{out}"
    );
    // Every backup in the window was restore-tested too.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        3,
        "{out}"
    );
}

#[test]
fn read_subset_reads_every_backup_exactly_once_over_t_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut ids = history(d, 0);
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", REPO])).unwrap();
    ids.push(
        v["databases"][0]["backups"][0]["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let mut seen: Vec<String> = Vec::new();
    for _ in 0..3 {
        let (code, v, err) = verify_json(d, &["--db", "app", "--read-subset", "1/3"]);
        assert_eq!(code, Some(0), "{err}");
        for r in v["reports"].as_array().unwrap() {
            assert_eq!(r["rung"], "read");
            assert_eq!(r["ok"], true, "{r}");
            seen.push(r["backup"].as_str().unwrap().to_string());
        }
    }
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want, "every backup read exactly once");
    // The cursor lives in the repository.
    assert!(d.join("repo/app/verify/read-cursor.json").exists());
    // A bad subset is a usage error that changes nothing.
    fails(d, &["verify", "--repo", REPO, "--read-subset", "4/3"], 2);
}

#[test]
fn a_damaged_upload_is_marked_bad_never_restored_as_latest_and_staleness_fires() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(
        &d.join("app.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    );
    let o = cmd(d)
        .args(["backup", "--db", "app.db", "--repo", REPO])
        .env("LIFEBOAT_FAULT", "corrupt-upload")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("failed its restore-test"),
        "{}",
        stderr(&o)
    );
    // Stored, but bad: `restore latest` refuses it, status has no good backup.
    let err = fails(
        d,
        &["restore", "--db", "app", "--to", "x.db", "--repo", REPO],
        6,
    );
    assert!(err.contains("failed its restore-test"), "{err}");
    assert!(!d.join("x.db").exists());
    let status = run(d, &["status", "--repo", REPO]);
    assert_eq!(status.status.code(), Some(2));
    assert!(
        stdout(&status).contains("no good backup"),
        "{}",
        stdout(&status)
    );
    // `--no-verify` stores without the restore-test (so the fault hook, which sits before
    // it, does nothing either).
    let o = cmd(d)
        .args(["backup", "--db", "app.db", "--repo", REPO, "--no-verify"])
        .env("LIFEBOAT_FAULT", "corrupt-upload")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A clean backup is restore-tested and good.
    let out = ok(d, &["backup", "--db", "app.db", "--repo", REPO]);
    assert!(
        out.contains("restore-tested from the repository: ok"),
        "{out}"
    );
    ok(
        d,
        &["restore", "--db", "app", "--to", "y.db", "--repo", REPO],
    );
}

#[test]
fn what_retention_pruned_is_no_gap_and_an_unreadable_manifest_is_never_judged_bad() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 0);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[retention]\nkeep_daily = 7\nkeep_weekly = 4\nmin_keep = 1\n",
    )
    .unwrap();
    let (code, _, err) = verify_json(d, &["--db", "app", "--catalogue"]);
    assert_eq!(code, Some(0), "{err}");
    let out = ok(d, &["prune"]);
    assert!(!out.contains("deleted 0"), "{out}");
    // The days whose backups retention deleted ran: not gaps.
    let (code, v, err) = verify_json(d, &["--db", "app", "--catalogue"]);
    assert_eq!(code, Some(0), "{err} {v}");
    // A scratch directory that is not one is bad usage (exit 2), not "warnings" (exit 1).
    fails(
        d,
        &["verify", "--db", "app", "--scratch-dir", "nowhere/at/all"],
        2,
    );
    // A manifest this lifeboat cannot parse (a newer one's kind, or one byte off) is damage to
    // report, but never judged bad, so retention never deletes it.
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    let id = v["databases"][0]["backups"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let manifest = d.join(format!("repo/app/backups/{id}.json"));
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("\"scheduled\"", "\"continuous\"")).unwrap();
    let (code, v, _) = verify_json(d, &["--db", "app", "--catalogue"]);
    assert_eq!(code, Some(6));
    assert!(v["databases"][0]["findings"].to_string().contains(&id));
    assert!(
        !d.join(format!("repo/app/verify/records/{id}.json"))
            .exists()
            || {
                let r: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(d.join(format!("repo/app/verify/records/{id}.json"))).unwrap(),
                )
                .unwrap();
                r["bad"].is_null()
            }
    );
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(
        out.contains("prune never deletes a backup it cannot read"),
        "{out}"
    );
}

#[test]
fn latest_never_picks_a_backup_dated_in_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (real, manifest) = one_backup(d);
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let id = "backup-2099-06-01T020000Z";
    m["id"] = id.into();
    m["created_at"] = "2099-06-01T02:00:00Z".into();
    m["data_object"] = format!("{id}.sqlite.zst").into();
    let dir_b = d.join("repo/app/backups");
    std::fs::copy(data_of(d, &real), dir_b.join(format!("{id}.sqlite.zst"))).unwrap();
    std::fs::write(
        dir_b.join(format!("{id}.json")),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let out = ok(
        d,
        &["restore", "--db", "app", "--to", "back.db", "--repo", REPO],
    );
    assert!(
        out.contains(&real) && out.contains("dated in the future"),
        "{out}"
    );
}
