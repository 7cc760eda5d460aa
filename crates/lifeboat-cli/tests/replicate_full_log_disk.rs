//! `lifeboat replicate` with its stdout, stderr and repository on a disk that fills up (a
//! small tmpfs the test mounts: needs root, as in CI), the database on another. Every upload
//! then fails and says so on stderr, which cannot be written either: the replicator must go
//! on (a line nobody can read is no reason to stop; `eprintln!` panicked, exit 101), and once
//! space is back every commit reaches the repository and its stop says how many did. Stopped
//! while the disk is full, it exits with the disk-full code (8), and its next start uploads
//! what it left staged.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::replicating::{restore_latest, stop_replicator, App};
use common::tmpfs::Tmpfs;
use common::*;

fn wait_until(what: &str, rep: &mut Child, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        if let Some(s) = rep.try_wait().unwrap() {
            panic!("the replicator stopped ({s}) while waiting for {what}");
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Append to `path` until the disk refuses: the next write of anyone needs a page it has not.
fn fill_up(path: &Path) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    while f.write_all(b"x").is_ok() {}
}

fn pieces(spool: &Path) -> usize {
    std::fs::read_dir(spool).map_or(0, |l| {
        l.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".frames"))
            .count()
    })
}

fn append_to(path: &PathBuf) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// A tmpfs for the repository (`<d>/repo`) and the output, a WAL database `<d>/app.db` with
/// its application, and a replicator writing its stdout and stderr to that tmpfs.
struct Setup {
    dir: tempfile::TempDir,
    small: Tmpfs,
    db: PathBuf,
    app: App,
    out: PathBuf,
    err: PathBuf,
    spool: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let small = Tmpfs::mount(&d.join("small"), "8m");
        std::fs::create_dir(d.join("small/repo")).unwrap();
        std::os::unix::fs::symlink(d.join("small/repo"), d.join("repo")).unwrap();
        let db = d.join("app.db");
        sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
        let app = App::start(&db);
        let (out, err) = (d.join("small/out.txt"), d.join("small/err.txt"));
        let spool = d.join("app.db.lifeboat-spool");
        Setup {
            dir,
            small,
            db,
            app,
            out,
            err,
            spool,
        }
    }

    /// `lifeboat replicate`, appending (O_APPEND: each write goes at the end, where the disk
    /// has no room left) to the output files; once it has started a generation or resumed.
    fn replicator(&self) -> Child {
        let mut rep = cmd(self.dir.path())
            .args(["replicate", "--db", "app.db", "--repo", "repo"])
            .args(["--sync-interval", "100ms", "--checkpoint-frames", "1"])
            .stdout(append_to(&self.out))
            .stderr(append_to(&self.err))
            .spawn()
            .unwrap();
        wait_until("the replicator's start", &mut rep, || {
            std::fs::read_to_string(&self.err)
                .is_ok_and(|l| l.contains("generation started") || l.contains("resuming the chain"))
        });
        rep
    }

    /// Fill the disk, up to the last byte of the output files' pages.
    fn fill(&self) {
        self.small.fill();
        fill_up(&self.err);
        fill_up(&self.out);
    }

    /// `n` commits, each staged while every upload fails (and says so, to the full stderr):
    /// the pieces pile up in the spool, beside the database.
    fn commit_staged(&mut self, rep: &mut Child, n: usize) {
        for _ in 0..n {
            let before = pieces(&self.spool);
            self.app.commit(20_000);
            wait_until("the commit staged", rep, || pieces(&self.spool) > before);
        }
    }
}

#[test]
fn stopped_while_the_disk_is_full_it_exits_8_and_its_next_start_uploads_what_it_left() {
    let mut s = Setup::new();
    let d = s.dir.path().to_path_buf();
    let mut rep = s.replicator();
    s.app.commit(20_000);
    s.fill();
    s.commit_staged(&mut rep, 3);
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &rep.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = rep.wait().unwrap();
    assert_eq!(status.code(), Some(8), "{status}");
    assert!(pieces(&s.spool) > 0, "nothing left staged");

    s.small.free();
    std::fs::write(&s.err, "").unwrap();
    let rep = s.replicator();
    s.app.commit(20_000);
    wait_until_ok("commit 5 restorable", || {
        ok(&d, &["list", "--pitr", "--db", "app", "--repo", "repo"]).contains("..5 ")
    });
    stop_replicator(rep);
    let Setup { app, db, .. } = s;
    app.stop();
    assert_same_db(&db, &restore_latest(&d, "app"));
    let pitr = ok(&d, &["list", "--pitr", "--db", "app", "--repo", "repo"]);
    assert_eq!(
        pitr.lines().filter(|l| l.contains("gen-")).count(),
        1,
        "{pitr}"
    );
}

fn wait_until_ok(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_under_the_replicators_output_and_repository_does_not_stop_it() {
    let mut s = Setup::new();
    let d = s.dir.path().to_path_buf();
    let mut rep = s.replicator();
    s.app.commit(20_000);
    s.fill();
    s.commit_staged(&mut rep, 5);
    s.small.free();
    wait_until("commit 6 restorable", &mut rep, || {
        ok(&d, &["list", "--pitr", "--db", "app", "--repo", "repo"]).contains("..6 ")
    });
    stop_replicator(rep);
    let Setup {
        app,
        db,
        out,
        spool,
        ..
    } = s;
    app.stop();

    assert_same_db(&db, &restore_latest(&d, "app"));
    let said = std::fs::read_to_string(&out).unwrap();
    assert!(said.contains("stopped: 6 commit(s) in "), "{said:?}");
    assert!(!spool.exists(), "a clean stop leaves the spool behind");
}
