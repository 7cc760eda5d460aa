//! `kill -9` at the worst moments, placed exactly with strace's fault injection (the process is
//! sent SIGKILL when it makes its Nth call of a given system call): what a restore replaces
//! survives whatever the moment.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rusqlite::Connection;

/// Run lifeboat under strace, killed with SIGKILL at the `nth` call of `syscall`.
fn killed_at(dir: &Path, syscall: &str, nth: u32, args: &[&str]) -> std::process::ExitStatus {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscall}"))
        .arg("-e")
        .arg(format!("inject={syscall}:signal=SIGKILL:when={nth}"))
        .arg(bin())
        .args(args)
        .current_dir(dir)
        .env("TMPDIR", dir)
        .status()
        .expect("strace (scripts/test.sh installs it)")
}

fn named(d: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    files_starting_with(d, prefix)
}

#[test]
fn a_tenant_restore_killed_after_its_commit_keeps_what_it_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("studio.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n",
    )
    .unwrap();
    ok(d, &["backup"]);
    // After the backup, t1 gains a class: the restore removes it, so only the kept copy has it.
    Connection::open(&db)
        .unwrap()
        .execute_batch("INSERT INTO classes VALUES ('c-new', 't1', 'made after the backup');")
        .unwrap();
    // The first link(2) after the commit is the safety backup's claim in the repository.
    let status = killed_at(
        d,
        "linkat",
        1,
        &["restore", "--tenant", "t1", "--into", "studio.db"],
    );
    assert!(!status.success(), "the restore was killed");
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM classes WHERE id = 'c-new'"),
        "0",
        "killed after its commit: the restore is applied"
    );
    let kept = named(d, "studio.db.pre-tenant-restore-");
    assert_eq!(
        kept.len(),
        1,
        "the tenant's rows as they were are kept next to the database"
    );
    assert_eq!(
        sqlite3(&kept[0], "SELECT title FROM classes WHERE id = 'c-new'"),
        "made after the backup"
    );
    assert_eq!(sqlite3(&kept[0], "PRAGMA integrity_check"), "ok");
    assert!(named(d, "studio.db.lifeboat-").is_empty());
    // The next tenant restore names the kept copy and the command that puts it back.
    let o = run(
        d,
        &[
            "restore",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
            "--dry-run",
        ],
    );
    assert!(
        stderr(&o).contains("pre-tenant-restore-") && stderr(&o).contains("--from-file"),
        "{}",
        stderr(&o)
    );
    // And that command undoes the killed restore.
    let kept = kept[0].to_str().unwrap();
    ok(
        d,
        &[
            "restore",
            "--tenant",
            "t1",
            "--from-file",
            kept,
            "--into",
            "studio.db",
        ],
    );
    assert_eq!(
        sqlite3(&db, "SELECT title FROM classes WHERE id = 'c-new'"),
        "made after the backup"
    );
}

#[test]
fn a_restore_killed_while_moving_the_old_database_aside_never_splits_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("src.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from the backup');")
        .unwrap();
    ok(d, &["backup", "--db", "src.db", "--repo", "file://./repo"]);
    // The target: a WAL database whose last commits are only in its -wal (its writer died).
    wal_target(d);
    let args = [
        "restore",
        "--db",
        "src",
        "--repo",
        "file://./repo",
        "--to",
        "t.db",
        "--force",
    ];
    // Killed between the database's move and its WAL's.
    let status = killed_at(d, "linkat", 2, &args);
    assert!(!status.success());
    // Whatever was done, one name holds the database with its WAL: nothing was hidden.
    ok(d, &args);
    let complete = named(d, "t.db.pre-restore-")
        .into_iter()
        .filter(|p| {
            !p.to_string_lossy().ends_with("-wal") && !p.to_string_lossy().ends_with("-shm")
        })
        .any(|p| has_the_wal(&p));
    assert!(
        complete,
        "a kept copy has the WAL's commits: {:?}",
        named(d, "t.db.")
    );
    assert_eq!(
        sqlite3(&d.join("t.db"), "SELECT v FROM t"),
        "from the backup"
    );
}

/// A WAL database whose last commits are only in its -wal (its writer died), at `d/t.db`.
fn wal_target(d: &Path) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, os\n\
             c = sqlite3.connect('t.db', isolation_level=None)\n\
             c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')\n\
             c.execute('CREATE TABLE old (v TEXT)')\n\
             c.execute(\"INSERT INTO old VALUES ('only in the wal')\")\n\
             os._exit(0)\n",
        )
        .current_dir(d)
        .status()
        .unwrap();
    assert!(status.success() && d.join("t.db-wal").exists());
}

/// Does the database at `p` hold the WAL's commits?
fn has_the_wal(p: &Path) -> bool {
    Command::new("sqlite3")
        .arg(p)
        .arg("SELECT v FROM old")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "only in the wal")
        .unwrap_or(false)
}

#[test]
fn killed_half_way_through_a_move_aside_the_next_run_finishes_it() {
    // Hard links refused (another file system, or fs.protected_hardlinks): the move is made of
    // renames, the database's first. Killed after it and before its WAL's.
    for (syscall, nth, links) in [
        ("renameat2", 2, false),
        ("unlink", 1, true),
        ("linkat", 2, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        Connection::open(d.join("src.db"))
            .unwrap()
            .execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from the backup');")
            .unwrap();
        ok(d, &["backup", "--db", "src.db", "--repo", "file://./repo"]);
        wal_target(d);
        let args = [
            "restore",
            "--db",
            "src",
            "--repo",
            "file://./repo",
            "--to",
            "t.db",
            "--force",
        ];
        let mut strace = Command::new("strace");
        strace
            .args(["-f", "-o", "/dev/null", "-e"])
            .arg(format!("trace={syscall},linkat"));
        if !links {
            strace.args(["-e", "inject=linkat:error=EPERM"]);
        }
        let status = strace
            .arg("-e")
            .arg(format!("inject={syscall}:signal=SIGKILL:when={nth}"))
            .arg(bin())
            .args(args)
            .current_dir(d)
            .env("TMPDIR", d)
            .status()
            .unwrap();
        assert!(!status.success(), "{syscall} #{nth}: killed");
        // The next run finishes the move, then restores.
        let out = ok(d, &args);
        let asides: Vec<_> = named(d, "t.db.pre-restore-")
            .into_iter()
            .filter(|p| {
                let n = p.to_string_lossy();
                !n.ends_with("-wal") && !n.ends_with("-shm")
            })
            .collect();
        assert!(
            asides.iter().any(|p| has_the_wal(p)),
            "{syscall} #{nth}: one kept copy holds the WAL's commits: {:?}\n{out}",
            named(d, "t.db.")
        );
        // No stray WAL left behind under a name SQLite never reads with its database.
        for p in named(d, "t.db.pre-restore-") {
            let n = p.to_string_lossy().into_owned();
            if let Some(base) = n.strip_suffix("-wal") {
                assert!(
                    Path::new(base).exists(),
                    "{syscall} #{nth}: {n} has no database"
                );
            }
        }
        assert_eq!(
            sqlite3(&d.join("t.db"), "SELECT v FROM t"),
            "from the backup"
        );
        assert!(!d.join("t.db.lifeboat-aside").exists());
    }
}
