//! What `latest` and `--at` pick, and what they say: never a safety backup, never silently past
//! a damaged one; `list` and `verify` tell damaged backups from complete ones.

mod common;

use std::path::Path;

use common::*;
use rusqlite::Connection;

const CONFIG: &str =
    "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n";

fn studio() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let c = Connection::open(dir.path().join("studio.db")).unwrap();
    c.execute_batch(TENANT_SCHEMA).unwrap();
    std::fs::write(dir.path().join("lifeboat.toml"), CONFIG).unwrap();
    dir
}

fn classes(d: &Path, tenant: &str) -> String {
    sqlite3(
        &d.join("studio.db"),
        &format!("SELECT group_concat(id || ':' || title) FROM (SELECT * FROM classes WHERE tenant_id = '{tenant}' ORDER BY id)"),
    )
}

/// The runbook's flow: two tenants damaged, restored one after the other from `latest`. The
/// first restore's safety backup (which holds the second tenant's damage) must not become
/// `latest` for the second.
fn two_tenants_from_latest(safety: &str) {
    let dir = studio();
    let d = dir.path();
    let id = ok(d, &["--json", "backup"]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id["backups"][0]["id"].as_str().unwrap().to_string();
    let (t1, t2) = (classes(d, "t1"), classes(d, "t2"));
    Connection::open(d.join("studio.db"))
        .unwrap()
        .execute_batch(
            "UPDATE classes SET title = 'broken' WHERE tenant_id = 't1';
             UPDATE classes SET title = 'broken' WHERE tenant_id = 't2';",
        )
        .unwrap();
    for tenant in ["t1", "t2"] {
        let out = ok(
            d,
            &[
                "restore",
                "--tenant",
                tenant,
                "--backup",
                "latest",
                "--into",
                "studio.db",
                "--safety-backup",
                safety,
            ],
        );
        assert!(
            out.contains(&format!("backup latest = {id} (manual, taken ")),
            "latest must be the real backup, not a safety backup: {out}"
        );
        assert!(out.contains("update "), "{out}");
    }
    assert_eq!(classes(d, "t1"), t1);
    assert_eq!(
        classes(d, "t2"),
        t2,
        "t2 restored from the backup, not from t1's safety backup"
    );
    // The safety backups are listed as such, and --at never picks them either.
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    let kinds: Vec<&str> = v["databases"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["safety", "safety", "manual"]);
    let out = ok(
        d,
        &["restore", "--at", "2999-01-01T00:00Z", "--to", "at.db"],
    );
    assert!(out.contains(&format!("= {id} (manual")), "{out}");
    assert!(out.contains("passed over 2 newer safety backups"), "{out}");
}

#[test]
fn latest_never_picks_a_tenant_safety_backup() {
    two_tenants_from_latest("tenant");
}

#[test]
fn latest_never_picks_a_full_safety_backup() {
    two_tenants_from_latest("full");
}

#[test]
fn a_damaged_newest_backup_is_named_not_skipped_in_silence() {
    let dir = studio();
    let d = dir.path();
    let first: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "backup"])).unwrap();
    let first = first["backups"][0]["id"].as_str().unwrap().to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let newest: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "backup"])).unwrap();
    let newest = newest["backups"][0]["id"].as_str().unwrap().to_string();
    std::fs::write(
        d.join(format!("repo/studio/backups/{newest}.json")),
        b"{\"format_version\": 1, \"id\": ",
    )
    .unwrap();

    // restore: uses the older backup, names the damaged one on stderr and in --json.
    let o = run(d, &["--json", "restore", "--to", "r.db"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("skipped backup {newest}: damaged")),
        "{}",
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["backup"], first.as_str());
    assert_eq!(v["selection"]["skipped"][0]["id"], newest.as_str());
    // dump latest says so too.
    let o = run(d, &["dump", "--backup", "latest", "--out", "x.sql"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains(&format!("skipped backup {newest}")),
        "{}",
        stderr(&o)
    );
    // plain verify fails: the repository's newest backup is damaged.
    let err = fails(d, &["verify"], 6);
    assert!(err.contains(&newest), "{err}");
    fails(d, &["verify", "--all"], 6);
    // list: one complete, one damaged.
    let out = ok(d, &["list"]);
    assert!(
        out.contains("1 complete backup(s)") && out.contains(&format!("DAMAGED {newest}")),
        "{out}"
    );
}

#[test]
fn a_deleted_data_object_makes_its_backup_damaged_in_list() {
    let dir = studio();
    let d = dir.path();
    let b: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "backup"])).unwrap();
    let id = b["backups"][0]["id"].as_str().unwrap().to_string();
    std::fs::remove_file(d.join(format!("repo/studio/backups/{id}.sqlite.zst"))).unwrap();
    let out = ok(d, &["list"]);
    assert!(out.contains("0 complete backup(s)"), "{out}");
    assert!(
        out.contains(&format!(
            "DAMAGED {id}: data object {id}.sqlite.zst is missing"
        )),
        "{out}"
    );
    let err = fails(d, &["restore", "--to", "r.db"], 6);
    assert!(err.contains("is missing"), "{err}");
}

#[test]
fn verify_all_on_a_repository_without_backups_is_not_found() {
    let dir = studio();
    let d = dir.path();
    std::fs::create_dir(d.join("repo")).unwrap();
    let err = fails(d, &["verify", "--all"], 5);
    assert!(err.contains("no backups"), "{err}");
}

#[test]
fn restore_records_of_one_tenant_in_one_second_are_all_kept() {
    let dir = studio();
    let d = dir.path();
    ok(d, &["backup"]);
    for _ in 0..3 {
        ok(
            d,
            &[
                "restore",
                "--tenant",
                "t1",
                "--into",
                "studio.db",
                "--no-safety-backup",
            ],
        );
    }
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "restores"])).unwrap();
    assert_eq!(v["restores"].as_array().unwrap().len(), 3, "{v}");
}
