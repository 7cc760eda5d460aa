//! A replicator whose read transaction was taken on a fully copied WAL (read mark 0, which
//! lets the next writer reset the WAL) must follow that reset, however long the commit that
//! overwrites the old WAL is: nothing after the WAL's end was lost. Two such starts: a restart
//! after its own checkpoint (a new generation told as "the WAL was reset over frames lifeboat
//! had not shipped" is then a false alarm and a needless snapshot), and a first run on a WAL
//! the application checkpointed (the replicator must not fail while its snapshot is taken).
//! Third: lifeboat's own TRUNCATE valve empties the WAL, and a writer connection that never
//! reset a WAL itself (SQLite's per-connection checkpoint count still 0) then starts the new
//! WAL with fresh random salts, not salt-1 plus one: the chain must still go on.
//! Fourth: the WAL header's checkpoint sequence is the writing connection's own count, so
//! with two application connections a reset need not add one to it: a restart after a reset
//! by the other connection must still resume the chain.
//! The application keeps its connection open throughout, as a real one does (a closed last
//! connection would make SQLite recover the WAL index and forget the checkpoint).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use common::replicating::{restore_latest, stop_replicator, App};
use common::*;

/// `lifeboat replicate` checkpointing after every frame, its debug log in `log`.
fn replicator(d: &Path, log: &Path) -> Child {
    replicator_with(d, log, &[])
}

fn replicator_with(d: &Path, log: &Path, more: &[&str]) -> Child {
    cmd(d)
        .env("LIFEBOAT_LOG", "lifeboat=debug")
        .args([
            "replicate",
            "--db",
            "app.db",
            "--repo",
            "repo",
            "--sync-interval",
            "100ms",
            "--checkpoint-frames",
            "1",
        ])
        .args(more)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_for(log: &Path, text: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no {text:?} in {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pitr(d: &Path) -> String {
    ok(d, &["list", "--pitr", "--db", "app", "--repo", "repo"])
}

fn restart_then_a_long_commit(sigkill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db: PathBuf = d.join("app.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let mut app = App::start(&db);

    let log0 = d.join("rep0.log");
    let mut rep = replicator(d, &log0);
    wait_for(&log0, "generation started");
    // A commit of a few frames, shipped and checkpointed: the WAL is fully copied.
    app.commit(20_000);
    wait_for(&log0, "checkpoint database=app");
    if sigkill {
        rep.kill().unwrap();
        rep.wait().unwrap();
    } else {
        stop_replicator(rep);
    }

    let log1 = d.join("rep1.log");
    rep = replicator(d, &log1);
    wait_for(&log1, "resuming the chain");
    // The next commit resets the WAL and, at 1 MB, overwrites every frame the old WAL had.
    app.commit(1_000_000);
    // Until commit 2 is restorable, or a new generation started.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let l = pitr(d);
        if l.contains("..2 ") || l.matches("gen-").count() > 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_replicator(rep);
    app.stop();

    let list = pitr(d);
    let gens: Vec<&str> = list.lines().filter(|l| l.contains("gen-")).collect();
    assert_eq!(
        gens.len(),
        1,
        "a needless new generation after a restart:\n{list}\n{}",
        std::fs::read_to_string(&log1).unwrap()
    );
    let latest = restore_latest(d, "app");
    assert_same_db(&db, &latest);
}

#[test]
fn a_stopped_replicator_goes_on_when_the_first_commit_after_its_restart_resets_the_wal() {
    restart_then_a_long_commit(false);
}

#[test]
fn a_killed_replicator_goes_on_when_the_first_commit_after_its_restart_resets_the_wal() {
    restart_then_a_long_commit(true);
}

#[test]
fn a_first_run_on_a_checkpointed_wal_survives_a_commit_during_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db: PathBuf = d.join("app.db");
    // 200 MB, so the snapshot takes a while: the application commits meanwhile.
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE t(x); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
         INSERT INTO t SELECT randomblob(1000000) FROM n;",
    );
    let mut app = App::start(&db);
    app.commit(20_000);
    app.checkpoint();

    let log = d.join("rep.log");
    let mut rep = replicator(d, &log);
    wait_for(&log, "starting a new generation");
    // Resets the WAL and overwrites every frame the old one had (commit 1 of the generation,
    // which starts after the commit already in the WAL).
    app.commit(1_000_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = rep.try_wait().unwrap() {
            panic!(
                "the replicator stopped ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        let o = run(d, &["list", "--pitr", "--db", "app", "--repo", "repo"]);
        if stdout(&o).contains("..1 ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", stdout(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_replicator(rep);
    app.stop();
    let list = pitr(d);
    assert_eq!(list.matches("gen-").count(), 1, "{list}");
    let latest = restore_latest(d, "app");
    assert_same_db(&db, &latest);
}

#[test]
fn a_first_run_on_a_checkpointed_wal_goes_on_when_the_next_commit_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db: PathBuf = d.join("app.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let mut app = App::start(&db);
    // As SQLite's autocheckpoint leaves it: every frame copied, the WAL not reset yet.
    app.commit(20_000);
    app.checkpoint();
    let log = d.join("rep.log");
    let rep = replicator(d, &log);
    wait_for(&log, "generation started");
    app.commit(1_000_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let l = pitr(d);
        if l.contains("..1 ") || l.matches("gen-").count() > 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_replicator(rep);
    app.stop();
    let list = pitr(d);
    assert_eq!(
        list.matches("gen-").count(),
        1,
        "a needless new generation:\n{list}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn the_truncate_valve_goes_on_when_a_writer_starts_the_emptied_wal_with_new_salts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db: PathBuf = d.join("app.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let mut app = App::start(&db);
    let log = d.join("rep.log");
    // A valve of one byte: every WAL with a frame in it gets a TRUNCATE checkpoint.
    let rep = replicator_with(d, &log, &["--truncate-wal-size", "1"]);
    wait_for(&log, "generation started");
    let wal = d.join("app.db-wal");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for n in 1..=3u64 {
        app.commit(20_000);
        // Shipped and truncated: the WAL file is empty again.
        loop {
            let l = pitr(d);
            let emptied = std::fs::metadata(&wal)
                .map(|m| m.len() == 0)
                .unwrap_or(true);
            if (l.contains(&format!("..{n} ")) && emptied) || l.matches("gen-").count() > 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{l}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    stop_replicator(rep);
    app.stop();
    let list = pitr(d);
    assert_eq!(
        list.matches("gen-").count(),
        1,
        "a needless new generation after the TRUNCATE valve:\n{list}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let latest = restore_latest(d, "app");
    assert_same_db(&db, &latest);
}

#[test]
fn a_restart_resumes_after_a_reset_by_another_application_connection() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db: PathBuf = d.join("app.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let (mut a, mut b) = (App::start(&db), App::start(&db));
    let log0 = d.join("rep0.log");
    let rep = replicator(d, &log0);
    wait_for(&log0, "generation started");
    // `a` commits twice, each shipped and checkpointed: the second commit reset the WAL, so
    // the header carries `a`'s own checkpoint count, 1.
    for n in 1..=2 {
        a.commit(20_000);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::fs::read_to_string(&log0)
            .unwrap()
            .matches("checkpoint database=app")
            .nth(n - 1)
            .is_none()
        {
            assert!(std::time::Instant::now() < deadline, "no checkpoint {n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop_replicator(rep);
    // While lifeboat is stopped, `b` resets the WAL (its own count goes 0 to 1, the header's
    // stays 1) with a commit short enough to leave the old WAL's last frames as proof.
    b.commit(100);
    let log1 = d.join("rep1.log");
    let rep = replicator(d, &log1);
    wait_for(&log1, "database=app");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let l = pitr(d);
        if l.contains("..3 ") || l.matches("gen-").count() > 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{l}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop_replicator(rep);
    a.stop();
    b.stop();
    let list = pitr(d);
    assert_eq!(
        list.matches("gen-").count(),
        1,
        "a needless new generation after a reset by another connection:\n{list}"
    );
}
