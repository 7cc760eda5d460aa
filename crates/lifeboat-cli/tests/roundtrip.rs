//! Backup then restore gives back the same database, checked by the real sqldiff.

mod common;

use common::*;
use rusqlite::Connection;

#[test]
fn tricky_schema_round_trips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("tricky.db"));
    let out = ok(
        d,
        &["backup", "--db", "tricky.db", "--repo", "file://./repo"],
    );
    assert!(out.contains("tricky  backup-"), "{out}");
    ok(
        d,
        &[
            "restore",
            "--db",
            "tricky.db",
            "--repo",
            "file://./repo",
            "--to",
            "back.db",
        ],
    );
    assert_same_db(&d.join("tricky.db"), &d.join("back.db"));
    // Values that lossy tools get wrong come back bit for bit.
    let c = Connection::open(d.join("back.db")).unwrap();
    let bits: Vec<u64> = c
        .prepare("SELECT r FROM plain WHERE id < 9 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get::<_, f64>(0))
        .unwrap()
        .map(|r| r.unwrap().to_bits())
        .collect();
    assert_eq!(bits[1], 1, "5e-324 must survive");
    let seq: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name='seq'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seq, 200, "AUTOINCREMENT counter kept");
    let big: i64 = c
        .query_row("SELECT i FROM strict_t WHERE id = 0", [], |r| r.get(0))
        .unwrap();
    assert_eq!(big, i64::MIN);
    assert_eq!(sqlite3(&d.join("back.db"), "PRAGMA integrity_check"), "ok");
}

#[test]
fn wal_database_round_trips_and_full_check_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("wal.db");
    tricky_db(&db);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; INSERT INTO kv VALUES ('only-in-wal', 'x');")
        .unwrap();
    // The connection stays open, so the last write lives only in the -wal file.
    assert!(d.join("wal.db-wal").exists());
    ok(d, &["backup", "--db", "wal.db", "--repo", "file://./repo"]);
    ok(
        d,
        &[
            "restore",
            "--db",
            "wal.db",
            "--repo",
            "file://./repo",
            "--to",
            "back.db",
            "--integrity-check",
            "full",
        ],
    );
    drop(c);
    assert_same_db(&db, &d.join("back.db"));
    assert_eq!(
        sqlite3(&d.join("back.db"), "SELECT v FROM kv WHERE k='only-in-wal'"),
        "x"
    );
}

#[test]
fn selection_by_id_time_and_force_moves_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("app.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let first = ok(
        d,
        &[
            "--json",
            "backup",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
        ],
    );
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    let first_id = first["backups"][0]["id"].as_str().unwrap().to_string();
    let first_at = first["backups"][0]["created_at"]
        .as_str()
        .unwrap()
        .to_string();
    c.execute_batch("INSERT INTO t VALUES (2);").unwrap();
    // A second backup in the same second must not overwrite the first.
    let second = ok(
        d,
        &[
            "--json",
            "backup",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--kind",
            "emergency",
            "--label",
            "pre-migration",
        ],
    );
    let second: serde_json::Value = serde_json::from_str(&second).unwrap();
    let second_id = second["backups"][0]["id"].as_str().unwrap().to_string();
    assert_ne!(first_id, second_id);

    let list = ok(d, &["--json", "list", "--repo", "file://./repo"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    let ids: Vec<&str> = list["databases"][0]["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![second_id.as_str(), first_id.as_str()],
        "newest first"
    );
    assert_eq!(list["databases"][0]["backups"][0]["kind"], "emergency");
    assert_eq!(list["databases"][0]["backups"][0]["label"], "pre-migration");
    let human = ok(d, &["list", "--repo", "file://./repo"]);
    assert!(
        human.contains("2 complete backup(s)") && human.contains("pre-migration"),
        "{human}"
    );

    // latest has both rows, --backup FIRST and --at FIRST's time have one.
    ok(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--to",
            "latest.db",
        ],
    );
    assert_eq!(sqlite3(&d.join("latest.db"), "SELECT count(*) FROM t"), "2");
    ok(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--backup",
            &first_id,
            "--to",
            "first.db",
        ],
    );
    assert_eq!(sqlite3(&d.join("first.db"), "SELECT count(*) FROM t"), "1");
    ok(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--at",
            &first_at,
            "--to",
            "at.db",
        ],
    );
    assert_eq!(sqlite3(&d.join("at.db"), "SELECT count(*) FROM t"), "1");
    fails(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--at",
            "2001-01-01T00:00Z",
            "--to",
            "x.db",
        ],
        5,
    );

    // --force keeps the old file aside and says where.
    std::fs::write(d.join("first.db-wal"), b"").unwrap();
    let out = ok(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--to",
            "first.db",
            "--force",
        ],
    );
    let aside = out
        .lines()
        .find(|l| l.contains("moved aside to"))
        .expect("aside line")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    assert!(aside.contains("first.db.pre-restore-"), "{aside}");
    assert_eq!(sqlite3(&d.join(&aside), "SELECT count(*) FROM t"), "1");
    assert!(
        d.join(format!("{aside}-wal")).exists(),
        "the -wal file moved with it"
    );
    assert_eq!(sqlite3(&d.join("first.db"), "SELECT count(*) FROM t"), "2");
}

#[test]
fn config_file_drives_everything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("data")).unwrap();
    tricky_db(&d.join("data/studio.db"));
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://${LB_REPO}\"\n[[database]]\nname = \"studio-platform-db\"\npath = \"data/studio.db\"\n",
    )
    .unwrap();
    let repo = d.join("repo-from-env");
    let o = cmd(d)
        .env("LB_REPO", &repo)
        .args(["backup"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(repo.join("studio-platform-db/backups").is_dir());
    let o = cmd(d)
        .env("LB_REPO", &repo)
        .args(["restore", "--to", "r.db"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_db(&d.join("data/studio.db"), &d.join("r.db"));
    let o = cmd(d)
        .env("LB_REPO", &repo)
        .args(["verify"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("backup latest = backup-"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ok ")), "{out}");
}

#[test]
fn the_demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["demo", "--size", "5", "--dir", "demo"]);
    for step in [
        "1. generated",
        "2. backup",
        "3. list",
        "4. verify",
        "5. restore",
        "6. tenant",
    ] {
        assert!(out.contains(step), "{step} missing:\n{out}");
    }
    // The tenant restore put the tenant back exactly: the live sample equals the full restore.
    assert_same_db(
        &dir.path().join("demo/studio.db"),
        &dir.path().join("demo/restored.db"),
    );
}
