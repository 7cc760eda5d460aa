//! The spool on a full disk: the database, its WAL and `<db>.lifeboat-spool/` on one small
//! tmpfs (mounted by the test: needs root, as in CI), which the application's own commits
//! fill up. Staging then fails for want of space, and so does the checkpoint: the replicator
//! must neither stop (a full disk passes) nor wedge (the WAL can only shrink once its frames
//! are shipped, so they go up straight from the WAL when they cannot be staged), and once
//! space is freed the application commits again and every commit is restorable.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::replicating::{prefix, restore_latest, stop_replicator, Writer};
use common::tmpfs::Tmpfs;
use common::*;

/// Commits numbered 20 KB rows until the stop file exists, logging each number; a full disk
/// is logged as `full` and tried again.
const WRITER: &str = r#"
import sqlite3, sys, time, os
db, log, stop = sys.argv[1:4]
c = sqlite3.connect(db, isolation_level=None, timeout=30)
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        try:
            c.execute("INSERT INTO c(n, k, v) VALUES (?, 0, randomblob(20000))", (n + 1,))
            n += 1
            out.write(f"{n}\n")
        except sqlite3.OperationalError as e:
            if "full" not in str(e):
                raise
            out.write("full\n")
            time.sleep(0.05)
        out.flush()
        time.sleep(0.005)
"#;

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

fn wait_until(what: &str, rep: &mut Child, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            rep.try_wait().unwrap().is_none(),
            "the replicator stopped while waiting for {what}"
        );
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_under_the_spool_neither_stops_nor_wedges_replication() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = Tmpfs::mount(&d.join("small"), "12m");
    // Ballast, freed later to end the shortage.
    std::fs::write(d.join("small/fill"), vec![0u8; 3 << 20]).unwrap();
    let db = d.join("small/app.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
    let log = d.join("rep.log");
    let mut rep = cmd(d)
        .env("LIFEBOAT_LOG", "lifeboat=debug")
        .args([
            "replicate",
            "--db",
            "small/app.db",
            "--repo",
            "repo",
            "--sync-interval",
            "500ms",
            "--checkpoint-frames",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wlog = db.with_extension("log");
    let writer = Writer::start(&db, WRITER);
    // The application fills the disk, and keeps trying; the replicator meets the full disk.
    wait_until("the disk to fill", &mut rep, || {
        log_lines(&wlog).iter().filter(|l| *l == "full").count() >= 20
            && std::fs::read_to_string(&log).is_ok_and(|l| l.contains("no space left"))
    });
    // Still full: every commit made so far reaches the repository all the same.
    let made = log_lines(&wlog).iter().filter(|l| *l != "full").count() as u64;
    wait_until("the commits made to reach the repository", &mut rep, || {
        prefix(&restore_latest(d, "small/app.db")) >= made
    });
    // Space back: the application commits again.
    small.free();
    let before = log_lines(&wlog).len();
    wait_until("commits after the space was freed", &mut rep, || {
        log_lines(&wlog)[before.min(log_lines(&wlog).len())..]
            .iter()
            .filter(|l| *l != "full")
            .count()
            >= 20
    });
    writer.finish();
    let commits = log_lines(&wlog).iter().filter(|l| *l != "full").count() as u64;
    stop_replicator(rep);
    assert!(
        !d.join("small/app.db.lifeboat-spool").exists(),
        "a clean stop leaves no spool"
    );
    let latest = restore_latest(d, "small/app.db");
    assert_same_db(&db, &latest);
    assert_eq!(prefix(&latest), commits);
}
