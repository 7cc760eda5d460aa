//! Every bad input gets a one-line error naming the problem, a documented exit code, and
//! changes nothing.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

fn small_db(path: &std::path::Path) {
    Connection::open(path)
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
}

#[test]
fn missing_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(
        dir.path(),
        &["backup", "--db", "nope.db", "--repo", "file://./repo"],
        3,
    );
    assert!(
        err.contains("nope.db") && err.contains("no such file"),
        "{err}"
    );
    assert!(!dir.path().join("repo").exists(), "nothing created");
    assert!(
        !dir.path().join("nope.db").exists(),
        "SQLite did not create it either"
    );
}

#[test]
fn not_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("notes.db"),
        "just some text, long enough to have a header",
    )
    .unwrap();
    let err = fails(
        dir.path(),
        &["backup", "--db", "notes.db", "--repo", "file://./repo"],
        3,
    );
    assert!(err.contains("not a SQLite database"), "{err}");
    assert!(!dir.path().join("repo").exists());
}

#[test]
fn database_locked_past_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    small_db(&db);
    // Another process holds an exclusive lock (rollback journal mode blocks readers).
    let mut holder = Command::new("python3")
        .args(["-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1], isolation_level=None); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(30)"])
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let t = Instant::now();
    let err = fails(
        dir.path(),
        &[
            "backup",
            "--db",
            "busy.db",
            "--repo",
            "file://./repo",
            "--lock-timeout",
            "500ms",
        ],
        3,
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(err.contains("locked by another process"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(20));
    // Refused before anything was created: not even the repository directory.
    assert!(!dir.path().join("repo").exists());
}

#[test]
fn repository_missing_or_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let err = fails(dir.path(), &["list", "--repo", "file://./no-such-repo"], 4);
    assert!(err.contains("does not exist"), "{err}");
    small_db(&dir.path().join("a.db"));
    // Nothing listens on this port: connection refused, reported as unreachable.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = cmd(dir.path())
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "supersecretvalue123")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .args(["backup", "--db", "a.db", "--repo", "s3://bucket/prefix"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        !err.contains("supersecretvalue123"),
        "secrets never printed"
    );
    // S3 without credentials is a config error, not a silent call to instance metadata.
    let err = fails(dir.path(), &["list", "--repo", "s3://bucket/prefix"], 2);
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[test]
fn backup_id_not_found() {
    let dir = tempfile::tempdir().unwrap();
    small_db(&dir.path().join("a.db"));
    ok(
        dir.path(),
        &["backup", "--db", "a.db", "--repo", "file://./repo"],
    );
    let err = fails(
        dir.path(),
        &[
            "restore",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
            "--backup",
            "backup-2001-01-01T000000Z",
            "--to",
            "r.db",
        ],
        5,
    );
    assert!(
        err.contains("backup-2001-01-01T000000Z") && err.contains("not found"),
        "{err}"
    );
    let err = fails(
        dir.path(),
        &[
            "restore",
            "--db",
            "other.db",
            "--repo",
            "file://./repo",
            "--to",
            "r.db",
        ],
        5,
    );
    assert!(
        err.contains("no complete backup of database other"),
        "{err}"
    );
    fails(
        dir.path(),
        &[
            "verify",
            "backup-2001-01-01T000000Z",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
        ],
        5,
    );
    assert!(!dir.path().join("r.db").exists());
}

#[test]
fn restore_target_exists_without_force() {
    let dir = tempfile::tempdir().unwrap();
    small_db(&dir.path().join("a.db"));
    ok(
        dir.path(),
        &["backup", "--db", "a.db", "--repo", "file://./repo"],
    );
    std::fs::write(dir.path().join("live.db"), b"live data").unwrap();
    let err = fails(
        dir.path(),
        &[
            "restore",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
            "--to",
            "live.db",
        ],
        7,
    );
    assert!(err.contains("live.db") && err.contains("--force"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("live.db")).unwrap(),
        b"live data"
    );
    // A stray -wal counts as an existing database: restoring next to it would corrupt the copy.
    std::fs::write(dir.path().join("fresh.db-wal"), b"").unwrap();
    fails(
        dir.path(),
        &[
            "restore",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
            "--to",
            "fresh.db",
        ],
        7,
    );
}

#[test]
fn force_refuses_a_database_another_process_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("a.db"));
    ok(d, &["backup", "--db", "a.db", "--repo", "file://./repo"]);
    small_db(&d.join("live.db"));
    let before = std::fs::read(d.join("live.db")).unwrap();
    // An application with the database open: the sqlite3 shell, waiting for more input.
    let mut app = Command::new("sqlite3")
        .arg(d.join("live.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = app.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, b"SELECT count(*) FROM t;\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(app.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "1", "the shell has the database open");
    let restore = [
        "restore",
        "--db",
        "a.db",
        "--repo",
        "file://./repo",
        "--to",
        "live.db",
        "--force",
    ];
    let err = fails(d, &restore, 7);
    assert!(
        err.contains(&format!("open in process {} (sqlite3)", app.id())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read(d.join("live.db")).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.contains("pre-restore") || n.contains("lifeboat-tmp")),
        "nothing moved aside or left behind: {names:?}"
    );
    // Once the application has stopped, the restore goes ahead.
    drop(stdin);
    app.wait().unwrap();
    let out = ok(d, &restore);
    assert!(out.contains("moved aside"), "{out}");
}

#[test]
fn bad_config_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("bad.toml"), "[repository\nurl = 1").unwrap();
    let err = fails(d, &["--config", "bad.toml", "list"], 2);
    assert!(
        err.contains("bad.toml") && err.contains("invalid TOML"),
        "{err}"
    );
    std::fs::write(
        d.join("unknown.toml"),
        "[repository]\nurl = \"file://x\"\nbucket = \"y\"\n",
    )
    .unwrap();
    let err = fails(d, &["--config", "unknown.toml", "list"], 2);
    assert!(err.contains("bucket"), "{err}");
    std::fs::write(
        d.join("env.toml"),
        "[repository]\nurl = \"${LIFEBOAT_TEST_UNSET_VAR}\"\n",
    )
    .unwrap();
    let err = fails(d, &["--config", "env.toml", "list"], 2);
    assert!(err.contains("LIFEBOAT_TEST_UNSET_VAR is not set"), "{err}");
    let err = fails(d, &["--config", "missing.toml", "list"], 2);
    assert!(err.contains("missing.toml"), "{err}");
    let err = fails(d, &["list", "--repo", "ftp://host/x"], 2);
    assert!(err.contains("unsupported scheme"), "{err}");
    fails(
        d,
        &[
            "restore",
            "--db",
            "a.db",
            "--to",
            "x.db",
            "--at",
            "last tuesday",
            "--repo",
            "file://.",
        ],
        2,
    );
    fails(d, &["backup", "--repo", "file://./r"], 2);
    // clap's own usage errors also exit 2.
    let o = run(d, &["restore", "--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(d, &["backup", "--help"]);
    assert!(o.status.success() && stdout(&o).contains("Examples:"));
}

/// A tiny tmpfs as the restore target's filesystem (needs root to mount; CI runs as root).
#[test]
fn disk_full_is_reported_and_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("a.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE b (x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
               INSERT INTO b SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    ok(d, &["backup", "--db", "a.db", "--repo", "file://./repo"]);
    let small = d.join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&small)
        .status()
        .unwrap();
    assert!(
        mounted.success(),
        "mounting a 1 MB tmpfs needs root (CI and scripts/test.sh run as root)"
    );
    let restore = run(
        d,
        &[
            "restore",
            "--db",
            "a.db",
            "--repo",
            "file://./repo",
            "--to",
            "small/r.db",
        ],
    );
    let restore_left = walk(&small);
    // A repository on the full disk: the backup fails and leaves nothing that looks like one.
    let backup = run(
        d,
        &["backup", "--db", "a.db", "--repo", "file://./small/repo"],
    );
    let listed = run(d, &["--json", "list", "--repo", "file://./small/repo"]);
    let files = walk(&small);
    // A full scratch disk is the machine's trouble (8), never a corrupt backup (6).
    let verify = run(
        d,
        &[
            "verify",
            "--repo",
            "file://./repo",
            "--scratch-dir",
            "small",
        ],
    );
    // A dump onto the full disk: exit 8, said plainly, nothing left.
    let dump = run(d, &["dump", "--db", "a.db", "--out", "small/a.sql"]);
    let dump_left: Vec<String> = walk(&small)
        .into_iter()
        .filter(|f| !f.contains("/repo/"))
        .collect();
    let failure = std::fs::read_dir(small.join("repo/a/events"))
        .ok()
        .and_then(|mut e| e.next())
        .and_then(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .unwrap_or_default();
    Command::new("umount").arg(&small).status().unwrap();
    assert_eq!(restore.status.code(), Some(8), "{}", stderr(&restore));
    assert!(
        stderr(&restore).contains("no space left on device"),
        "{}",
        stderr(&restore)
    );
    assert!(
        restore_left.is_empty(),
        "temp files removed: {restore_left:?}"
    );
    assert_eq!(backup.status.code(), Some(8), "{}", stderr(&backup));
    assert!(
        stderr(&backup).contains("no space left on device"),
        "{}",
        stderr(&backup)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(
        v["databases"][0]["backups"].as_array().unwrap().len(),
        0,
        "the failed backup is not a backup"
    );
    assert_eq!(v["databases"][0]["incomplete"].as_array().unwrap().len(), 0);
    // Only the event log's record of the failure (its summary says why) is left of it.
    let (logged, files): (Vec<String>, Vec<String>) = files
        .into_iter()
        .partition(|f| f.contains("/repo/a/events/"));
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].contains("-backup.failed-"), "{logged:?}");
    assert!(files.is_empty(), "nothing left on the full disk: {files:?}");
    assert_eq!(verify.status.code(), Some(8), "{}", stderr(&verify));
    assert_eq!(dump.status.code(), Some(8), "{}", stderr(&dump));
    assert!(
        stderr(&dump).contains("no space left on device"),
        "{}",
        stderr(&dump)
    );
    assert!(dump_left.is_empty(), "{dump_left:?}");
    assert!(failure.contains("no space left on device"), "{failure}");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn closed_stdout_is_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    small_db(&dir.path().join("a.db"));
    let mut child = cmd(dir.path())
        .args(["backup", "--db", "a.db", "--repo", "file://./repo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader went away, as with `| head -0`
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let listing = ok(dir.path(), &["list", "--repo", "file://./repo"]);
    assert!(listing.contains("1 complete backup(s)"), "{listing}");
}

#[test]
fn two_files_that_would_share_a_name_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    sqlite3(&d.join("a.db"), "CREATE TABLE t(x);");
    sqlite3(&d.join("sub/a.db"), "CREATE TABLE u(y);");
    let err = fails(
        d,
        &[
            "backup",
            "--db",
            "a.db",
            "--db",
            "sub/a.db",
            "--repo",
            "file://./repo",
        ],
        2,
    );
    assert!(err.contains("would both be filed as database"), "{err}");
    assert!(!d.join("repo").exists());
}
