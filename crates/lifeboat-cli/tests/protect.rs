//! Commands that write files or objects never destroy what they should keep: a dump or export
//! never replaces a database, `--force` keeps the old file aside and never replaces a file
//! another process has open, the demo only replaces its own files, a failed backup leaves the
//! day's SQL mirror alone, and cleanup never removes a running backup's leftovers.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rusqlite::Connection;

/// The names of the files in `d` starting with `prefix`.
fn named(d: &Path, prefix: &str) -> Vec<String> {
    files_starting_with(d, prefix)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn dump_and_export_never_replace_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let live = d.join("live.db");
    Connection::open(&live)
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    let other = d.join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE keep (x); INSERT INTO keep VALUES (1);")
        .unwrap();
    let before = (
        std::fs::read(&live).unwrap(),
        std::fs::read(&other).unwrap(),
    );
    std::os::unix::fs::symlink("live.db", d.join("alias.db")).unwrap();
    for out in ["live.db", "./sub/../live.db", "alias.db", "other.db"] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let err = fails(d, &["dump", "--db", "live.db", "--out", out, "--force"], 7);
        assert!(err.contains("database"), "{out}: {err}");
        let err = fails(
            d,
            &[
                "export", "--tenant", "t1", "--db", "live.db", "--format", "json", "--out", out,
                "--force",
            ],
            7,
        );
        assert!(err.contains("database"), "{out}: {err}");
    }
    // A SQLite export can replace an ordinary database (kept aside), never the one it reads.
    let err = fails(
        d,
        &[
            "export", "--tenant", "t1", "--db", "live.db", "--format", "sqlite", "--out",
            "alias.db", "--force",
        ],
        7,
    );
    assert!(err.contains("being read"), "{err}");
    assert_eq!(std::fs::read(&live).unwrap(), before.0);
    assert_eq!(std::fs::read(&other).unwrap(), before.1);
    assert!(named(d, "live.db.").is_empty() && named(d, "other.db.").is_empty());
}

#[test]
fn dump_force_keeps_the_old_file_and_spares_files_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("app.db"));
    std::fs::write(d.join("out.sql"), b"yesterday's dump").unwrap();
    fails(d, &["dump", "--db", "app.db", "--out", "out.sql"], 7);
    ok(
        d,
        &["dump", "--db", "app.db", "--out", "out.sql", "--force"],
    );
    ok(
        d,
        &["dump", "--db", "app.db", "--out", "out.sql", "--force"],
    );
    let asides = named(d, "out.sql.pre-dump-");
    assert_eq!(asides.len(), 2, "{asides:?}");
    assert!(asides
        .iter()
        .any(|a| std::fs::read(d.join(a)).unwrap() == b"yesterday's dump"));
    // A file another process has open is not replaced, even with --force.
    let mut holder = Command::new("sleep")
        .arg("30")
        .stdin(std::fs::File::open(d.join("out.sql")).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let err = fails(
        d,
        &["dump", "--db", "app.db", "--out", "out.sql", "--force"],
        7,
    );
    assert!(err.contains("is open in process"), "{err}");
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(named(d, "out.sql.pre-dump-").len(), 2);
}

#[test]
fn demo_only_replaces_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("mine")).unwrap();
    std::fs::write(d.join("mine/studio.db"), b"my own database").unwrap();
    let err = fails(d, &["demo", "--size", "1", "--dir", "mine"], 7);
    assert!(err.contains("not made by lifeboat demo"), "{err}");
    assert_eq!(
        std::fs::read(d.join("mine/studio.db")).unwrap(),
        b"my own database"
    );
    assert_eq!(named(&d.join("mine"), ""), ["studio.db"]);
    // Its own directory, twice.
    ok(d, &["demo", "--size", "1", "--dir", "fresh"]);
    ok(d, &["demo", "--size", "1", "--dir", "fresh"]);
}

#[test]
fn a_failed_backup_leaves_the_days_sql_mirror_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"app\"\npath = \"app.db\"\nsql_mirror = true\n",
    )
    .unwrap();
    let c = Connection::open(d.join("app.db")).unwrap();
    c.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('good');")
        .unwrap();
    let out = ok(d, &["backup"]);
    assert!(out.contains("sql mirror: app/backups/backup-"), "{out}");
    let mirror = named(&d.join("repo/app/backups"), "backup-")
        .into_iter()
        .find(|n| n.ends_with(".sql") && n.len() == "backup-2026-12-02.sql".len())
        .unwrap();
    let mirror = d.join("repo/app/backups").join(mirror);
    let good = std::fs::read(&mirror).unwrap();
    // The next backup cannot commit: a directory sits where each of its possible manifests
    // would go (for the next minute of ids).
    c.execute("UPDATE t SET v = 'bad'", []).unwrap();
    let now = chrono::Utc::now();
    for s in -2..150 {
        let id = (now + chrono::Duration::seconds(s)).format("backup-%Y-%m-%dT%H%M%SZ");
        let _ = std::fs::create_dir(d.join(format!("repo/app/backups/{id}.json")));
    }
    let o = run(d, &["backup"]);
    assert!(!o.status.success(), "the backup must fail: {}", stdout(&o));
    assert_eq!(
        std::fs::read(&mirror).unwrap(),
        good,
        "a failed backup must not replace the day's mirror"
    );
}

#[test]
fn cleanup_never_removes_a_running_backups_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let backups = d.join("repo/app/backups");
    std::fs::create_dir_all(&backups).unwrap();
    // A backup "running" in another process on this machine: its claim and staging file.
    let mut runner = Command::new("sleep").arg("30").spawn().unwrap();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let claim = serde_json::json!({
        "pid": runner.id(), "host": host.trim(), "boot_id": boot.trim(),
        "claimed_at": "2026-01-01T00:00:00Z", "uploads": [],
    });
    let id = "backup-2026-01-01T000000Z";
    std::fs::write(backups.join(format!("{id}.pending")), claim.to_string()).unwrap();
    std::fs::write(
        backups.join(format!("{id}.sqlite.zst#17")),
        b"half an upload",
    )
    .unwrap();
    let out = ok(
        d,
        &["cleanup", "--repo", "file://./repo", "--older-than", "0s"],
    );
    assert!(out.contains("its backup is running"), "{out}");
    assert_eq!(named(&backups, id).len(), 2);
    // Once its process is gone, it is a leftover like any other.
    runner.kill().unwrap();
    runner.wait().unwrap();
    let out = ok(
        d,
        &["cleanup", "--repo", "file://./repo", "--older-than", "0s"],
    );
    assert!(out.contains(&format!("removed  app  {id}")), "{out}");
    assert!(named(&backups, id).is_empty());
    // An out-of-range age is refused, never taken as zero.
    let err = fails(
        d,
        &[
            "cleanup",
            "--repo",
            "file://./repo",
            "--older-than",
            "99999999999y",
        ],
        2,
    );
    assert!(
        err.contains("out of range") || err.contains("older-than"),
        "{err}"
    );
}

#[test]
fn outputs_never_replace_a_databases_side_files_devices_or_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("src.db"));
    // app.db in WAL mode, its last commits only in app.db-wal (its writer died).
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, os\n\
             c = sqlite3.connect('app.db', isolation_level=None)\n\
             c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n\
             c.execute('CREATE TABLE orders (n)')\n\
             [c.execute('INSERT INTO orders VALUES (?)', (i,)) for i in range(5)]\n\
             os._exit(0)\n",
        )
        .current_dir(d)
        .status()
        .unwrap();
    assert!(status.success());
    let wal = std::fs::read(d.join("app.db-wal")).unwrap();
    for out in ["app.db-wal", "app.db-shm", "app.db-journal"] {
        let err = fails(d, &["dump", "--db", "src.db", "--out", out, "--force"], 7);
        assert!(
            err.contains("of database") || err.contains("of an SQLite database"),
            "{err}"
        );
        let err = fails(d, &["import", "/dev/null", "--to", out, "--force"], 7);
        assert!(err.contains("of database"), "{err}");
    }
    assert_eq!(std::fs::read(d.join("app.db-wal")).unwrap(), wal);
    assert_eq!(
        sqlite3(&d.join("app.db"), "SELECT count(*) FROM orders"),
        "5"
    );
    // A FIFO: refused at once (opening it to look would block forever).
    let fifo = d.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let err = fails(
        d,
        &["dump", "--db", "src.db", "--out", "pipe", "--force"],
        7,
    );
    assert!(err.contains("not a regular file"), "{err}");
    // A device node (root, as in CI): never turned into a file.
    if Command::new("mknod")
        .arg(d.join("null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap()
        .success()
    {
        let err = fails(
            d,
            &["dump", "--db", "src.db", "--out", "null", "--force"],
            7,
        );
        assert!(err.contains("not a regular file"), "{err}");
        let ft = std::fs::symlink_metadata(d.join("null"))
            .unwrap()
            .file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&ft));
    }
    // An SQLite export never replaces a database either (here the application's own).
    Connection::open(d.join("s.db"))
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    ok(d, &["backup", "--db", "s.db", "--repo", "file://./repo"]);
    let err = fails(
        d,
        &[
            "export",
            "--tenant",
            "t1",
            "--backup",
            "latest",
            "--db",
            "s",
            "--repo",
            "file://./repo",
            "--format",
            "sqlite",
            "--out",
            "app.db",
            "--force",
        ],
        7,
    );
    assert!(err.contains("never replaces"), "{err}");
    assert_eq!(
        sqlite3(&d.join("app.db"), "SELECT count(*) FROM orders"),
        "5"
    );
}

#[test]
fn a_failed_full_safety_backup_stops_the_tenant_restore() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("studio.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    // The repository on a small tmpfs (root, as in CI), full once the backup is in it.
    let repo = d.join("repo");
    std::fs::create_dir(&repo).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&repo)
        .status()
        .unwrap()
        .success());
    let result = std::panic::catch_unwind(|| {
        ok(
            d,
            &["backup", "--db", "studio.db", "--repo", "file://./repo"],
        );
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k", "count=100"])
            .arg(format!("of={}", repo.join("fill").display()))
            .stderr(Stdio::null())
            .status();
        Connection::open(&db)
            .unwrap()
            .execute_batch("INSERT INTO classes VALUES ('c-new', 't1', 'made after the backup');")
            .unwrap();
        let before = std::fs::read(&db).unwrap();
        let err = fails(
            d,
            &[
                "restore",
                "--db",
                "studio",
                "--repo",
                "file://./repo",
                "--tenant",
                "t1",
                "--into",
                "studio.db",
                "--safety-backup",
                "full",
            ],
            8,
        );
        assert!(err.contains("nothing was changed"), "{err}");
        assert_eq!(
            std::fs::read(&db).unwrap(),
            before,
            "the restore did not run"
        );
    });
    Command::new("umount").arg(&repo).status().unwrap();
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}
