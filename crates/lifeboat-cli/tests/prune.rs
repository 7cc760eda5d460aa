//! `lifeboat prune`, `pin` and `unpin` on a repository holding a month of backups: one real
//! backup, copied under the ids and times of a daily history (each copy a complete, restorable
//! backup), plus a damaged one.

mod common;

use std::path::Path;

use common::*;

const REPO: &str = "file://./repo";

/// A real backup of db.sqlite, copied under ids dated every day at 02:00 from `first` to the
/// 30th of November 2026 (a Monday).
fn history(d: &Path, first: u32) -> Vec<String> {
    sqlite3(
        &d.join("db.sqlite"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);",
    );
    ok(
        d,
        &["backup", "--db", "db.sqlite", "--repo", REPO, "--no-verify"],
    );
    let dir = d.join("repo/db/backups");
    let real = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&real).unwrap()).unwrap();
    let data = dir.join(manifest["data_object"].as_str().unwrap());
    let mut ids = Vec::new();
    for day in first..=30 {
        let id = format!("backup-2026-11-{day:02}T020000Z");
        let mut m = manifest.clone();
        m["id"] = id.clone().into();
        m["created_at"] = format!("2026-11-{day:02}T02:00:00Z").into();
        m["kind"] = "scheduled".into();
        m["data_object"] = format!("{id}.sqlite.zst").into();
        std::fs::copy(&data, dir.join(format!("{id}.sqlite.zst"))).unwrap();
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        ids.push(id);
    }
    // The real backup (today's) goes, so the history is the same whatever day the test runs.
    std::fs::remove_file(&real).unwrap();
    std::fs::remove_file(&data).unwrap();
    ids
}

/// `db.sqlite` with a table of 100 rows: enough to be watched for shrinkage.
fn hundred_rows(d: &Path) -> std::path::PathBuf {
    let db = d.join("db.sqlite");
    sqlite3(
        &db,
        "CREATE TABLE t(x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) INSERT INTO t SELECT i FROM n;",
    );
    db
}

fn listed(d: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", REPO])).unwrap();
    v["databases"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn config(d: &Path, retention: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"{REPO}\"\n\n[retention]\n{retention}\n"),
    )
    .unwrap();
}

#[test]
fn prune_keeps_what_the_rules_keep_and_deletes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = history(d, 1);
    config(d, "keep_daily = 3\nkeep_weekly = 3\nmin_keep = 1");

    // A dry run decides, says why, and deletes nothing.
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(out.contains("would delete"), "{out}");
    assert!(out.contains("daily 2026-11-30"), "{out}");
    assert!(out.contains("weekly 2026-W47"), "{out}");
    assert_eq!(listed(d).len(), ids.len());

    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "prune"])).unwrap();
    let report = &v["databases"][0];
    let kept: Vec<&str> = report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == true)
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    // Daily: the 30th, 29th and 28th. Weekly (Monday to Sunday): the 30th (week 49 starts that
    // Monday), the 29th (newest of week 48) and the 22nd (newest of week 47).
    for id in ["30", "29", "28", "22"] {
        let id = format!("backup-2026-11-{id}T020000Z");
        assert!(kept.contains(&id.as_str()), "{id} in {kept:?}");
    }
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert_eq!(report["deleted"], ids.len() - 4);
    let mut left = listed(d);
    left.sort();
    let mut want: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(left, want, "what is listed is what was kept");
    // Deleted backups leave nothing behind; a kept one restores.
    let objects = std::fs::read_dir(d.join("repo/db/backups"))
        .unwrap()
        .count();
    assert_eq!(
        objects,
        2 * 4,
        "a manifest and a data object per kept backup"
    );
    ok(
        d,
        &[
            "restore",
            "--db",
            "db",
            "--backup",
            "backup-2026-11-22T020000Z",
            "--to",
            "r.db",
        ],
    );
    assert_same_db(&d.join("db.sqlite"), &d.join("r.db"));
    // Pruning again deletes nothing more.
    let again = ok(d, &["prune"]);
    assert!(again.contains("deleted 0"), "{again}");
}

#[test]
fn pins_the_newest_and_min_keep_are_never_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = history(d, 20);
    config(d, "keep_last = 1\nmin_keep = 2");
    let old = "backup-2026-11-20T020000Z";
    let out = ok(d, &["pin", old, "--reason", "before the billing migration"]);
    assert!(out.contains("pinned"), "{out}");
    fails(d, &["pin", "backup-2020-01-01T000000Z", "--reason", "x"], 5);
    let listing = ok(d, &["list", "--repo", REPO]);
    assert!(
        listing
            .lines()
            .any(|l| l.contains(old) && l.contains("[pinned]")),
        "{listing}"
    );
    let out = ok(d, &["prune"]);
    assert!(
        out.contains("pinned: before the billing migration"),
        "{out}"
    );
    let left = listed(d);
    assert!(left.contains(&old.to_string()), "pinned");
    assert!(left.contains(ids.last().unwrap()), "newest");
    assert!(
        left.contains(&"backup-2026-11-30T020000Z".to_string()),
        "min_keep 2"
    );
    assert_eq!(left.len(), 3, "{left:?}");
    // Unpinned, the next prune lets it go.
    assert!(ok(d, &["unpin", old]).contains("unpinned"));
    ok(d, &["prune"]);
    assert!(!listed(d).contains(&old.to_string()));
}

#[test]
fn a_policy_that_keeps_nothing_or_is_missing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = history(d, 25);
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"{REPO}\"\n"),
    )
    .unwrap();
    let err = fails(d, &["prune"], 2);
    assert!(err.contains("no [retention]"), "{err}");
    config(d, "keep_daily = 0");
    let err = fails(d, &["prune"], 2);
    assert!(err.contains("keeps nothing"), "{err}");
    config(d, "keep_dialy = 3");
    fails(d, &["prune"], 2);
    config(d, "keep_last = 1000");
    assert_eq!(listed(d).len(), ids.len());
}

#[test]
fn what_prune_cannot_read_stays_and_a_days_mirror_goes_with_its_day() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 20);
    let backups = d.join("repo/db/backups");
    // An unreadable manifest, and one of a newer lifeboat (format_version 2), both years old.
    std::fs::write(backups.join("backup-2020-01-01T000000Z.json"), b"{not json").unwrap();
    std::fs::write(backups.join("backup-2020-01-01T000000Z.sqlite.zst"), b"x").unwrap();
    let newer = backups.join("backup-2026-11-20T020000Z.json");
    let text = std::fs::read_to_string(&newer).unwrap();
    std::fs::write(
        &newer,
        text.replace("\"format_version\":1", "\"format_version\":2"),
    )
    .unwrap();
    // Day mirrors: one of a day that keeps a backup, one of a day that will not.
    std::fs::write(backups.join("backup-2026-11-30.sql"), b"-- lifeboat dump").unwrap();
    std::fs::write(backups.join("backup-2026-11-21.sql"), b"-- lifeboat dump").unwrap();
    config(d, "keep_last = 1\nmin_keep = 1");
    let out = ok(d, &["prune"]);
    assert!(
        out.contains("prune never deletes a backup it cannot read"),
        "{out}"
    );
    assert!(backups.join("backup-2020-01-01T000000Z.json").exists());
    assert!(
        newer.exists(),
        "a newer lifeboat's backup is not this one's to judge"
    );
    assert!(backups.join("backup-2026-11-30.sql").exists());
    assert!(!backups.join("backup-2026-11-21.sql").exists(), "{out}");
    assert!(out.contains("day mirror backup-2026-11-21.sql"), "{out}");
    // A database that is not there is not a success.
    let err = fails(d, &["prune", "--db", "nosuch"], 5);
    assert!(err.contains("no backups of nosuch"), "{err}");
}

#[test]
fn a_backup_pinned_while_the_prune_runs_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    history(d, 28);
    config(d, "keep_last = 1\nmin_keep = 1");
    // The 29th and 28th go, manifests first: every unlink of the prune waits 1.5 s, and the
    // pin comes in that time, after the prune's first look at the marks.
    let prune = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "trace=unlink,unlinkat"])
        .args(["-e", "inject=unlink,unlinkat:delay_enter=1500000"])
        .arg(bin())
        .arg("prune")
        .current_dir(d)
        .env("TMPDIR", d)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("strace (scripts/test.sh installs it)");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let pinned = run(
        d,
        &["pin", "backup-2026-11-29T020000Z", "--reason", "legal hold"],
    );
    let prune = prune.wait_with_output().unwrap();
    assert!(prune.status.success());
    let left = listed(d);
    if pinned.status.success() {
        assert!(
            left.contains(&"backup-2026-11-29T020000Z".to_string()),
            "a pin that said yes keeps its backup: {left:?}"
        );
        let out = stdout(&prune);
        let line = out
            .lines()
            .find(|l| l.contains("backup-2026-11-29T020000Z"))
            .unwrap_or_else(|| panic!("{out}"));
        assert!(
            line.contains("KEEP")
                && (line.contains("marked while the prune ran") || line.contains("legal hold")),
            "{line}"
        );
        ok(d, &["verify", "backup-2026-11-29T020000Z", "--db", "db"]);
    } else {
        assert!(
            stderr(&pinned).contains("deleted meanwhile"),
            "{}",
            stderr(&pinned)
        );
    }
}

#[test]
fn a_prune_killed_between_manifest_and_data_leaves_no_listed_backup_without_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = history(d, 20);
    config(d, "keep_last = 2\nmin_keep = 1");
    // Nine backups go (the 20th to the 28th), in one batch: every manifest first, then the
    // data. SIGKILL when the 28th's data object is unlinked: no manifest is left, some data is.
    let data = d.join("repo/db/backups/backup-2026-11-28T020000Z.sqlite.zst");
    let status = std::process::Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", "trace=unlink,unlinkat", "-P"])
        .arg(&data)
        .args(["-e", "inject=unlink,unlinkat:signal=SIGKILL:when=1"])
        .arg(bin())
        .arg("prune")
        .current_dir(d)
        .env("TMPDIR", d)
        .status()
        .expect("strace (scripts/test.sh installs it)");
    assert!(!status.success());
    let kept = &ids[ids.len() - 2..];
    assert_eq!(listed(d), kept.iter().rev().cloned().collect::<Vec<_>>());
    // Every listed backup is whole: verify reads each one in full. (Not `--all`, whose gap
    // check rightly finds the days since this synthetic history stopped.)
    ok(d, &["verify", &kept[0], &kept[1]]);
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", REPO])).unwrap();
    let incomplete: Vec<(String, serde_json::Value)> = v["databases"][0]["incomplete"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l["objects"].clone()))
        .collect();
    assert!(
        incomplete
            .iter()
            .any(|(id, _)| id == "backup-2026-11-28T020000Z"),
        "its data is an incomplete leftover for cleanup: {v}"
    );
    for (id, objects) in &incomplete {
        assert!(ids[..ids.len() - 2].contains(id), "{id}");
        assert_eq!(objects, &serde_json::json!([format!("{id}.sqlite.zst")]));
    }
    // The next prune has nothing left to judge; cleanup removes the leftovers.
    assert!(ok(d, &["prune"]).contains("deleted 0"));
    ok(d, &["cleanup", "--older-than", "0s"]);
    let objects = std::fs::read_dir(d.join("repo/db/backups"))
        .unwrap()
        .count();
    assert_eq!(objects, 4, "the two kept backups' manifests and data");
}

#[test]
fn a_shrinking_backup_holds_the_one_before_until_released() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = hundred_rows(d);
    config(d, "keep_last = 1\nmin_keep = 1");
    let first: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "backup", "--db", "db.sqlite"])).unwrap();
    let before = first["backups"][0]["id"].as_str().unwrap().to_string();
    assert!(first["backups"][0].get("shrinkage").is_none());
    // An accidental mass delete: 90 of 100 rows.
    sqlite3(&db, "DELETE FROM t WHERE x > 10;");
    let out = run(d, &["--json", "backup", "--db", "db.sqlite"]);
    assert!(out.status.success());
    let warning = stderr(&out);
    assert!(
        warning.contains("t 100 -> 10") && warning.contains(&before),
        "{warning}"
    );
    let second: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(second["backups"][0]["shrinkage"]["held"], before.as_str());
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", REPO])).unwrap();
    let listed_held = v["databases"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == before.as_str())
        .unwrap()["held"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(listed_held.contains("t 100 -> 10"), "{listed_held}");
    // keep_last 1 alone would delete it: the hold keeps it.
    let out = ok(d, &["prune"]);
    assert!(out.contains("held until"), "{out}");
    assert!(listed(d).contains(&before));
    assert!(ok(d, &["release", &before]).contains("released"));
    ok(d, &["prune"]);
    assert!(!listed(d).contains(&before));
}

#[test]
fn an_emergency_backup_says_how_to_restore_it_and_is_kept_by_its_own_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ids = history(d, 25);
    sqlite3(&d.join("db.sqlite"), "INSERT INTO t VALUES (3);");
    let out = ok(
        d,
        &[
            "backup",
            "--db",
            "db.sqlite",
            "--repo",
            REPO,
            "--emergency",
            "--label",
            "before migration 0085",
        ],
    );
    let line = out
        .lines()
        .find(|l| l.contains("to restore it: "))
        .unwrap_or_else(|| panic!("{out}"));
    let listing = ok(d, &["list", "--repo", REPO]);
    assert!(listing.contains("emergency") && listing.contains("before migration 0085"));
    // The command names the repository by its absolute path: it works from anywhere.
    assert!(
        line.contains(&format!("--repo file://{}/repo", d.display())),
        "{line}"
    );
    // The printed command works, from the repository as given.
    let cmd: Vec<String> = line
        .split("to restore it: lifeboat ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|w| w.trim_matches('\'').to_string())
        .collect();
    let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let to = args.iter().position(|a| *a == "--to").unwrap();
    args[to + 1] = "restored.db";
    ok(d, &args);
    assert_eq!(
        sqlite3(&d.join("restored.db"), "SELECT count(*) FROM t"),
        "3"
    );
    // keep_last 1 keeps the newest: the emergency one is kept by keep_emergency_within (30 d).
    config(d, "keep_last = 1\nmin_keep = 1");
    let out = ok(d, &["prune", "--dry-run"]);
    assert!(out.contains("emergency within 30d"), "{out}");
    assert_eq!(listed(d).len(), ids.len() + 1);
}

#[test]
fn a_hold_runs_out_after_hold_within() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = hundred_rows(d);
    config(d, "keep_last = 1\nmin_keep = 1\nhold_within = \"1s\"");
    ok(d, &["backup", "--db", "db.sqlite"]);
    sqlite3(&db, "DELETE FROM t;");
    let out = run(d, &["--json", "backup", "--db", "db.sqlite"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let held = v["backups"][0]["shrinkage"]["held"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let dry = ok(d, &["prune", "--dry-run"]);
    assert!(dry.contains(&format!("DELETE {held}")), "{dry}");
    ok(d, &["prune"]);
    assert!(
        !listed(d).contains(&held),
        "the real run agrees with the dry run"
    );
}
