//! Errors that say what happened: a hot journal, a lock held past `--lock-timeout` (and not
//! longer), a repository that vanishes mid-backup (exit 4), control characters that cannot
//! forge output, a JSON summary wherever `--json` is asked for.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

#[test]
fn a_hot_journal_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A writer killed mid-transaction, its changes spilled to the file: a hot journal.
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, os\n\
             c = sqlite3.connect('h.db', isolation_level=None)\n\
             c.execute('CREATE TABLE t (x)')\n\
             c.execute('BEGIN')\n\
             [c.execute('INSERT INTO t VALUES (randomblob(1000))') for _ in range(2000)]\n\
             c.execute('COMMIT')\n\
             c.execute('PRAGMA cache_size=1')\n\
             c.execute('BEGIN')\n\
             c.execute('UPDATE t SET x = randomblob(1000)')\n\
             os._exit(1)\n",
        )
        .current_dir(d)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(d.join("h.db-journal").exists());
    for args in [
        vec!["backup", "--db", "h.db", "--repo", "file://./repo"],
        vec!["dump", "--db", "h.db", "--out", "h.sql"],
    ] {
        let err = fails(d, &args, 3);
        assert!(
            err.contains("hot journal") && err.contains("crashed") && err.contains("open it once"),
            "{err}"
        );
        assert!(!err.contains("readonly"), "{err}");
    }
    assert!(!d.join("repo").exists(), "a refused backup creates nothing");
    // Rolled back by a read-write open, it backs up.
    assert_eq!(sqlite3(&d.join("h.db"), "PRAGMA quick_check"), "ok");
    ok(d, &["backup", "--db", "h.db", "--repo", "file://./repo"]);
}

#[test]
fn lock_timeout_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("l.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    // Another process holds an exclusive lock for longer than the timeout.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, time, sys\n\
             c = sqlite3.connect('l.db', isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE'); c.execute('INSERT INTO t VALUES (2)')\n\
             print('locked', flush=True); time.sleep(30)\n",
        )
        .current_dir(d)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = [0u8; 6];
    std::io::Read::read_exact(holder.stdout.as_mut().unwrap(), &mut line).unwrap();
    let started = Instant::now();
    let err = fails(
        d,
        &[
            "backup",
            "--db",
            "l.db",
            "--repo",
            "file://./repo",
            "--lock-timeout",
            "3s",
        ],
        3,
    );
    let took = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(
        err.contains("locked by another process for more than 3s"),
        "{err}"
    );
    // One wait of 3 s, not one per step (it took 6 s and more before).
    assert!(took < Duration::from_millis(5500), "gave up after {took:?}");
}

#[test]
fn a_repository_deleted_mid_backup_is_exit_4() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("big.db"))
        .unwrap()
        .execute_batch(
            "CREATE TABLE b (x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 40000)
               INSERT INTO b SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    let backups = d.join("repo/big/backups");
    let mut child = cmd(d)
        .args(["backup", "--db", "big.db", "--repo", "file://./repo"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the repository went"
        );
        assert!(Instant::now() < deadline);
        let staging = std::fs::read_dir(&backups)
            .map(|r| {
                r.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains(".sqlite.zst#"))
            })
            .unwrap_or(false);
        if staging {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::fs::remove_dir_all(d.join("repo")).unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("repository"), "{err}");
}

#[test]
fn labels_and_names_cannot_forge_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("a.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    let forged =
        "x\n  backup-2099-01-01T000000Z  manual    2099-01-01 00:00:00   1 KB  1  1\x1b[2J";
    ok(
        d,
        &[
            "backup",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
            "--label",
            forged,
        ],
    );
    let out = ok(d, &["list", "--repo", "file://./repo"]);
    assert_eq!(
        out.lines().count(),
        3,
        "header, column names, one backup: {out}"
    );
    assert!(
        out.contains("x\\n  backup-2099") && out.contains("\\u{1b}[2J"),
        "{out}"
    );
    assert!(!out.contains('\x1b'));
    // In JSON the label is data, exactly as given.
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", "file://./repo"])).unwrap();
    assert_eq!(v["databases"][0]["backups"][0]["label"], forged);
}

#[test]
fn export_prints_its_json_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("s.db"))
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    let out = ok(
        d,
        &[
            "--json", "export", "--tenant", "t1", "--db", "s.db", "--format", "json", "--out",
            "t1.json",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["tenant"], "t1");
    assert!(v["rows"].as_u64().unwrap() > 0);
    assert_eq!(v["out"], "t1.json");
}

#[test]
fn the_demo_counts_rows_as_verify_and_restore_do() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(dir.path(), &["demo", "--size", "2", "--dir", "demo"]);
    let rows = |step: &str| -> String {
        let line = out.lines().find(|l| l.starts_with(step)).unwrap();
        let i = line.find(" rows").unwrap();
        line[..i].rsplit(' ').next().unwrap().to_string()
    };
    assert_eq!(rows("1. generated"), rows("4. verify"), "{out}");
    assert_eq!(rows("1. generated"), rows("5. restore"), "{out}");
}
