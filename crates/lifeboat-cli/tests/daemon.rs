//! `lifeboat daemon` as real processes: two daemons on one repository (local and S3) run each
//! job once; `kill -9` mid-backup leaves nothing that looks complete and the next start works;
//! SIGTERM aborts a running backup cleanly and exits 0; SIGHUP with a broken config keeps the
//! old one running.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{backups, config, lines_with, small_db, wait_for, wait_for_or, Daemon};
use common::s3::{S3Server, BUCKET, KEY, SECRET};
use common::*;

/// A database big enough that its backup takes a while: random-looking blobs.
fn big_db(path: &Path, mb: u32) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE b(id INTEGER PRIMARY KEY, x BLOB); BEGIN;")
        .unwrap();
    for i in 0..mb {
        c.execute("INSERT INTO b(x) VALUES (?1)", [noise(1 << 20, i % 7)])
            .unwrap();
    }
    c.execute_batch("COMMIT;").unwrap();
}

fn two_daemons_run_each_job_once(repo: &str, env: &[(&str, String)], stagger: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dbs = ["a", "b", "c", "e"];
    for db in dbs {
        small_db(&d.join(format!("{db}.db")), 200);
    }
    // Never backed up: every database is due at once, in both daemons, for the same slot.
    config(d, repo, &dbs, "[daemon]\nmax_concurrent = 2\n");
    let mut one = Daemon::start(d, "one", &[], env);
    // s3s-fs checks If-None-Match before it writes, not atomically (s3s-fs 0.14.1, s3.rs
    // put_object), so two creates in the same millisecond can both pass there (never on S3 or
    // R2, nor on a local repository, where both daemons start at once).
    if stagger {
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut two = Daemon::start(d, "two", &[], env);
    // A daemon that finds a job done (or the database fresh, or unchanged) runs nothing.
    wait_for_or(
        "every database's backup",
        60,
        &mut || dbs.iter().all(|db| backups(d, db, env) >= 1),
        || format!("{}\n{}", one.log(), two.log()),
    );
    // A job's outcome is logged after its restore test, run record and prune, later than
    // the manifest counted above; then a while for a second run, were there one.
    wait_for_or(
        "every job's outcome",
        60,
        &mut || {
            lines_with(&one.log(), "outcome=\"ok\"") + lines_with(&two.log(), "outcome=\"ok\"")
                >= dbs.len()
        },
        || format!("{}\n{}", one.log(), two.log()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let (l1, l2) = (one.log(), two.log());
    for db in dbs {
        assert_eq!(backups(d, db, env), 1, "{db}: one backup\n{l1}\n{l2}");
    }
    // Each job ran in exactly one of them; the other found it held or done.
    let ran = lines_with(&l1, "outcome=\"ok\"") + lines_with(&l2, "outcome=\"ok\"");
    assert_eq!(ran, dbs.len(), "{l1}\n{l2}");
    assert_eq!(one.stop(), Some(0), "{}", one.log());
    assert_eq!(two.stop(), Some(0), "{}", two.log());
}

#[test]
fn two_daemons_on_one_local_repository_run_each_job_once() {
    two_daemons_run_each_job_once("file://./repo", &[], false);
}

#[test]
fn two_daemons_on_one_s3_repository_run_each_job_once() {
    let s3 = S3Server::start();
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    two_daemons_run_each_job_once(&format!("s3://{BUCKET}/daemons"), &env, true);
}

/// The claim of a running backup of `db` in a local repository.
fn claim_exists(d: &Path, db: &str) -> bool {
    std::fs::read_dir(d.join("repo").join(db).join("backups"))
        .map(|r| {
            r.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".pending"))
        })
        .unwrap_or(false)
}

#[test]
fn kill_9_mid_backup_leaves_nothing_complete_and_the_next_start_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_db(&d.join("big.db"), 160);
    config(d, "file://./repo", &["big"], "");
    let mut first = Daemon::start(d, "first", &[], &[]);
    wait_for("the backup to start", 60, || claim_exists(d, "big"));
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert_eq!(backups(d, "big", &[]), 0, "nothing looks complete");
    let listed = ok(d, &["list", "--db", "big"]);
    assert!(listed.contains("INCOMPLETE"), "{listed}");
    assert!(listed.contains("0 complete backup"), "{listed}");
    // The next start takes over the dead daemon's lease (its process is gone) and backs up.
    let mut second = Daemon::start(d, "second", &[], &[]);
    wait_for("the backup after the crash", 120, || {
        backups(d, "big", &[]) == 1
    });
    assert_eq!(second.stop(), Some(0), "{}", second.log());
    ok(d, &["restore", "--db", "big", "--to", "restored.db"]);
    assert_same_db(&d.join("big.db"), &d.join("restored.db"));
    ok(d, &["cleanup", "--older-than", "0s"]);
    assert!(!ok(d, &["list", "--db", "big"]).contains("incomplete"));
}

#[test]
fn sigterm_aborts_a_running_backup_cleanly_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_db(&d.join("big.db"), 160);
    // The backup alone: a restore-test after it would be aborted with the manifest written.
    config(
        d,
        "file://./repo",
        &["big"],
        "[daemon]\nverify_after_backup = false\n",
    );
    let mut daemon = Daemon::start(d, "d", &["--shutdown-timeout", "50ms"], &[]);
    wait_for("the backup to start", 60, || claim_exists(d, "big"));
    let started = Instant::now();
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = daemon.log();
    assert!(
        log.contains("aborting the running backups") || log.contains("outcome=\"ok\""),
        "{log}"
    );
    // Aborted before its manifest: no backup. Finished (within the timeout, or its manifest
    // written just before the abort reached it): a whole one, which restores to the source.
    let n = backups(d, "big", &[]);
    if n == 1 {
        ok(d, &["restore", "--db", "big", "--to", "restored.db"]);
        assert_same_db(&d.join("big.db"), &d.join("restored.db"));
    } else {
        assert_eq!(n, 0, "{log}");
        assert!(log.contains("aborting the running backups"), "{log}");
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("a.db"), 50);
    small_db(&d.join("b.db"), 50);
    config(d, "file://./repo", &["a"], "");
    let mut daemon = Daemon::start(d, "d", &[], &[]);
    wait_for("a's first backup", 60, || backups(d, "a", &[]) == 1);
    // Broken: refused, and the daemon goes on with the old config.
    std::fs::write(
        d.join("lifeboat.toml"),
        "[daemon]\nschedule = \"every day\"\n",
    )
    .unwrap();
    daemon.signal("-HUP");
    wait_for("the refusal", 30, || {
        daemon.log().contains("config reload refused")
    });
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    // A config that names no database would leave the daemon doing nothing: refused too.
    std::fs::write(d.join("lifeboat.toml"), "").unwrap();
    daemon.signal("-HUP");
    wait_for("the second refusal", 30, || {
        daemon.log().matches("config reload refused").count() == 2
    });
    // A good config adds b, which is backed up at once (never backed up: a missed run).
    config(d, "file://./repo", &["a", "b"], "");
    daemon.signal("-HUP");
    wait_for("b's first backup", 60, || backups(d, "b", &[]) == 1);
    assert!(daemon.log().contains("config reloaded"), "{}", daemon.log());
    assert_eq!(backups(d, "a", &[]), 1, "a is not backed up again");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}

#[test]
fn status_shows_each_databases_next_scheduled_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("a.db"), 10);
    small_db(&d.join("b.db"), 10);
    config(
        d,
        "file://./repo",
        &["a", "b"],
        "[daemon]\nschedule = \"30 4 * * *\"\n",
    );
    // b has a schedule of its own: every Monday at 03:15.
    let text = std::fs::read_to_string(d.join("lifeboat.toml")).unwrap();
    let text = text.replace(
        "name = \"b\"\npath = \"b.db\"\n",
        "name = \"b\"\npath = \"b.db\"\nschedule = \"15 3 * * 1\"\n",
    );
    std::fs::write(d.join("lifeboat.toml"), text).unwrap();
    ok(d, &["backup"]);
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["status", "--json"])).unwrap();
    let next = |db: &str| -> chrono::DateTime<chrono::Utc> {
        let s = v["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["database"] == db)
            .unwrap();
        s["next_run"].as_str().unwrap().parse().unwrap()
    };
    use chrono::{Datelike, Timelike};
    let now = chrono::Utc::now();
    let (a, b) = (next("a"), next("b"));
    assert!(a > now && a - now <= chrono::Duration::days(1), "{a}");
    assert_eq!((a.hour(), a.minute()), (4, 30));
    assert!(b > now && b - now <= chrono::Duration::days(7), "{b}");
    assert_eq!(
        (b.weekday(), b.hour(), b.minute()),
        (chrono::Weekday::Mon, 3, 15)
    );
    let human = ok(d, &["status"]);
    assert!(human.contains("next scheduled run (daemon):"), "{human}");
}

#[test]
fn settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("a.db"), 10);
    for (extra, says) in [
        ("[daemon]\nlease_ttl = \"0s\"\n", "lease_ttl"),
        ("[daemon]\nschedule = \"0 0 30 2 *\"\n", "never comes round"),
        (
            "[retention]\nkeep_last = 0\nmin_keep = 0\n",
            "keeps nothing",
        ),
    ] {
        config(d, "file://./repo", &["a"], extra);
        let err = fails(d, &["daemon", "--once"], 2);
        assert!(err.contains(says), "{extra}: {err}");
    }
    config(d, "file://./repo", &["a"], "");
    for bad in ["9898", "nosuchhost.invalid:9898"] {
        let err = fails(d, &["daemon", "--once", "--metrics-addr", bad], 2);
        assert!(err.contains("--metrics-addr"), "{err}");
    }
    assert!(!d.join("repo").exists(), "nothing written");
}

#[test]
fn a_database_locked_for_long_never_stalls_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for db in ["l1", "l2"] {
        small_db(&d.join(format!("{db}.db")), 10);
    }
    config(d, "file://./repo", &["l1", "l2"], "");
    // Another process holds both databases' write locks for 15 s: both backups wait (up to
    // the 30 s lock timeout) on both of this machine's cores.
    let mut lockers: Vec<std::process::Child> = ["l1", "l2"]
        .iter()
        .map(|db| {
            std::process::Command::new("python3")
                .arg("-c")
                .arg(format!(
                    "import sqlite3,time; c=sqlite3.connect('{}',isolation_level=None); c.execute('begin exclusive'); print('locked', flush=True); time.sleep(15)",
                    d.join(format!("{db}.db")).display()
                ))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for l in &mut lockers {
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(l.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let mut daemon = Daemon::start(d, "d", &["--metrics-addr", "127.0.0.1:0"], &[]);
    wait_for("the metrics address", 30, || {
        daemon.metrics_addr().is_some()
    });
    std::thread::sleep(Duration::from_secs(2));
    // The jobs wait on the locks; the daemon still answers at once.
    let addr = daemon.metrics_addr().unwrap();
    let started = Instant::now();
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    std::io::Write::write_all(
        &mut c,
        format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut c, &mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{answer:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(backups(d, "l1", &[]), 0, "still waiting for the lock");
    for mut l in lockers {
        l.wait().unwrap();
    }
    wait_for("both backups once the locks are gone", 60, || {
        backups(d, "l1", &[]) == 1 && backups(d, "l2", &[]) == 1
    });
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}
