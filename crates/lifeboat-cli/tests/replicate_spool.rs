//! The spool: frames a replicator shipped are staged on local disk, and the WAL checkpointed
//! past them, before they are uploaded. A replicator killed then leaves them only there: the
//! next start must upload them before it resumes the chain, and a staged piece that was
//! damaged (a crash of the host: pieces are never fsynced) must never be restored from.
//!
//! `LIFEBOAT_FAULT=hold-uploads` (debug builds) keeps every piece staged, so the kill comes
//! after the checkpoints and before any upload, every time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::replicating::{restore_latest, stop_replicator, App};
use common::*;

/// `lifeboat replicate`, checkpointing after every frame, its debug log in `log`.
fn replicator(d: &Path, log: &Path, fault: Option<&str>) -> Child {
    replicator_checkpointing(d, log, fault, "1")
}

fn replicator_checkpointing(d: &Path, log: &Path, fault: Option<&str>, frames: &str) -> Child {
    let mut c = cmd(d);
    if let Some(f) = fault {
        c.env("LIFEBOAT_FAULT", f);
    }
    c.env("LIFEBOAT_LOG", "lifeboat=trace")
        .args([
            "replicate",
            "--db",
            "app.db",
            "--repo",
            "repo",
            "--sync-interval",
            "100ms",
            "--checkpoint-frames",
            frames,
        ])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn log_of(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(list) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in list.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.to_string_lossy().ends_with(ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn generations(d: &Path) -> usize {
    ok(d, &["list", "--pitr", "--db", "app", "--repo", "repo"])
        .lines()
        .filter(|l| l.contains("gen-"))
        .count()
}

/// A WAL database with table `t`, in a temporary directory, and its application running.
fn application() -> (tempfile::TempDir, PathBuf, App) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    sqlite3(&db, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
    let app = App::start(&db);
    (dir, db, app)
}

/// Once the replicator logging to `log` started its generation: five commits of `app`, staged
/// and checkpointed past (the log shows a checkpoint after the piece holding commit 5).
/// `spaced`: each commit waits for a checkpoint after the one before, so the WAL may be reset
/// between them and their pieces go up as segments of their own.
fn five_commits_staged(log: &Path, app: &mut App, spaced: bool) {
    wait_until("the first generation", || {
        log_of(log).contains("generation started")
    });
    for n in 1..=5 {
        app.commit(20_000);
        if spaced {
            wait_until("a checkpoint after the commit", || {
                log_of(log)
                    .lines()
                    .filter(|x| x.contains("checkpoint database=app"))
                    .count()
                    >= n
            });
        }
    }
    wait_until("commit 5 staged and checkpointed", || {
        let l = log_of(log);
        let mut lines = l.lines();
        lines.any(|x| x.contains("staged") && x.contains("last=5"))
            && lines.any(|x| x.contains("checkpoint database=app"))
    });
}

/// After a break: the new generation started, and `app`'s sixth commit restores from it.
fn sixth_commit_in_a_new_generation(d: &Path, app: &mut App) {
    wait_until("a new generation", || generations(d) == 2);
    app.commit(20_000);
    wait_until("commit 6 in the new generation", || {
        sqlite3(&restore_latest(d, "app"), "SELECT count(*) FROM t").trim() == "6"
    });
}

/// Five commits staged and checkpointed past (the log shows a checkpoint after the piece
/// holding commit 5), nothing uploaded; then `kill -9`. Returns the spool directory.
fn five_commits_staged_then_killed(d: &Path, app: &mut App) -> PathBuf {
    let log = d.join("rep0.log");
    let mut rep = replicator(d, &log, Some("hold-uploads"));
    five_commits_staged(&log, app, false);
    rep.kill().unwrap();
    rep.wait().unwrap();
    let spool = d.join("app.db.lifeboat-spool");
    assert!(
        !files(&spool, ".frames").is_empty(),
        "nothing staged in {}",
        spool.display()
    );
    assert!(
        files(&d.join("repo"), ".seg.zst").is_empty(),
        "a segment was uploaded though uploads were held"
    );
    spool
}

#[test]
fn frames_a_killed_replicator_left_staged_go_up_at_its_next_start_and_the_chain_goes_on() {
    let (dir, db, mut app) = application();
    let d = dir.path();
    let spool = five_commits_staged_then_killed(d, &mut app);

    let log = d.join("rep1.log");
    let rep = replicator(d, &log, None);
    wait_until("the restart", || {
        log_of(&log).contains("resuming the chain")
    });
    app.commit(20_000);
    wait_until("commit 6 restorable", || {
        ok(d, &["list", "--pitr", "--db", "app", "--repo", "repo"]).contains("..6 ")
    });
    stop_replicator(rep);
    app.stop();

    assert_eq!(generations(d), 1, "{}", log_of(&log));
    assert_same_db(&db, &restore_latest(d, "app"));
    let verified = ok(d, &["verify", "--db", "app", "--repo", "repo"]);
    assert!(
        verified
            .lines()
            .any(|l| l.starts_with("ok") && l.contains("chain:")),
        "{verified}"
    );
    assert!(!spool.exists(), "a clean stop leaves the spool behind");
}

#[test]
fn a_damaged_staged_piece_is_dropped_and_the_chain_breaks_instead_of_restoring_it() {
    let (dir, db, mut app) = application();
    let d = dir.path();
    let spool = five_commits_staged_then_killed(d, &mut app);
    // A byte of the first piece's last page flipped (its length unchanged).
    let first = files(&spool, ".frames").remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();

    let log = d.join("rep1.log");
    let rep = replicator(d, &log, None);
    sixth_commit_in_a_new_generation(d, &mut app);
    stop_replicator(rep);
    app.stop();

    let l = log_of(&log);
    assert!(l.contains("damaged"), "{l}");
    assert_eq!(generations(d), 2);
    assert_same_db(&db, &restore_latest(d, "app"));
    // Nothing staged went up: the first generation has no segment.
    let gens = d.join("repo/app/generations");
    let mut ids: Vec<_> = std::fs::read_dir(&gens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    ids.sort();
    assert!(files(&ids[0], ".seg.zst").is_empty(), "{ids:?}");
}

#[test]
fn a_segment_stored_whose_answer_was_lost_is_not_a_conflict_when_tried_again() {
    // The first segment's write lands, but the replicator is told it failed (as after a
    // timeout): the pieces stay staged while more are staged behind them, and the next upload
    // must send the same segment again (same name, same bytes), not a longer one that would
    // overlap it, nor fail for ever with "already exists".
    let (dir, db, mut app) = application();
    let d = dir.path();
    let log = d.join("rep.log");
    // No checkpoint: the pieces staged meanwhile are of the same WAL, so they could go up
    // merged with the failed one.
    let rep = replicator_checkpointing(d, &log, Some("lost-answer"), "1000000");
    wait_until("the first generation", || {
        log_of(&log).contains("generation started")
    });
    for _ in 0..5 {
        app.commit(20_000);
    }
    wait_until("the lost answer", || {
        log_of(&log).contains("the answer was lost")
    });
    for _ in 0..5 {
        app.commit(20_000);
    }
    wait_until("commit 10 restorable", || {
        ok(d, &["list", "--pitr", "--db", "app", "--repo", "repo"]).contains("..10 ")
    });
    stop_replicator(rep);
    app.stop();
    let l = log_of(&log);
    assert!(!l.contains("already exists"), "{l}");
    assert_eq!(generations(d), 1, "{l}");
    // One chain, no segment overlapping another.
    let mut next = 1;
    for s in files(&d.join("repo"), ".seg.zst") {
        let (first, last) = segment_commits(&s);
        assert_eq!(first, next, "{s:?} after {}", next - 1);
        next = last + 1;
    }
    assert_same_db(&db, &restore_latest(d, "app"));
}

/// The first and last commit a stored segment holds, from its name (`FIRST-LAST-…`).
fn segment_commits(s: &Path) -> (u64, u64) {
    let name = s.file_name().unwrap().to_string_lossy().into_owned();
    let mut parts = name.split('-');
    let first = parts.next().unwrap().parse().unwrap();
    let last = parts.next().unwrap().parse().unwrap();
    (first, last)
}

/// The first commit a staged piece holds, from its name (`GENERATION-FIRST-LAST.frames`).
fn piece_first_commit(p: &Path) -> u64 {
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    let stem = name.strip_suffix(".frames").unwrap();
    let mut parts = stem.rsplitn(3, '-');
    let _last = parts.next().unwrap();
    parts.next().unwrap().parse().unwrap()
}

/// Five commits staged and checkpointed past with uploads held while `<d>/hold` exists; then
/// `spoil` does something to a staged piece (in the middle of them) and the uploads go. The
/// replicator must take it as damage: a new generation saying why, and the restores exact.
/// Its stop counts only the commits stored as segments. `spaced` as for `five_commits_staged`.
fn a_staged_piece_spoiled_while_running(spaced: bool, spoil: fn(&Path)) {
    let (dir, db, mut app) = application();
    let d = dir.path();
    let hold = d.join("hold");
    std::fs::write(&hold, "").unwrap();
    let log = d.join("rep.log");
    let out = d.join("rep.out");
    let fault = format!("hold-uploads-while={}", hold.display());
    let mut rep = cmd(d);
    rep.env("LIFEBOAT_FAULT", &fault)
        .env("LIFEBOAT_LOG", "lifeboat=trace")
        .args(["replicate", "--db", "app.db", "--repo", "repo"])
        .args(["--sync-interval", "100ms", "--checkpoint-frames", "1"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&log).unwrap());
    let rep = rep.spawn().unwrap();
    five_commits_staged(&log, &mut app, spaced);
    let spool = d.join("app.db.lifeboat-spool");
    let pieces = files(&spool, ".frames");
    let spoiled = &pieces[pieces.len() / 2];
    let spoiled_first = piece_first_commit(spoiled);
    spoil(spoiled);
    std::fs::remove_file(&hold).unwrap();
    sixth_commit_in_a_new_generation(d, &mut app);
    stop_replicator(rep);
    app.stop();

    let l = log_of(&log);
    assert!(
        l.lines()
            .any(|x| x.contains("starting a new generation") && x.contains("damaged")),
        "{l}"
    );
    assert!(!l.contains("(retrying)"), "{l}");
    assert_eq!(generations(d), 2);
    assert_same_db(&db, &restore_latest(d, "app"));
    let verified = ok(d, &["verify", "--db", "app", "--repo", "repo"]);
    assert!(
        !verified.lines().any(|x| x.starts_with("FAIL")),
        "{verified}"
    );
    // The first generation's chain stops before the spoiled piece: the pieces before it may
    // have gone up (a checkpoint between commits puts them in a segment of their own WAL),
    // nothing from it or after it did.
    let gens = d.join("repo/app/generations");
    let mut ids: Vec<_> = std::fs::read_dir(&gens)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    ids.sort();
    let mut next = 1;
    for s in files(&ids[0], ".seg.zst") {
        let (first, last) = segment_commits(&s);
        assert_eq!(first, next, "{s:?}: a gap in the first generation");
        assert!(
            last < spoiled_first,
            "{s:?} holds commits of the spoiled piece (from {spoiled_first})"
        );
        next = last + 1;
    }
    // The total said at the stop is what the stored segments hold.
    let (mut commits, segments) = (0, files(&d.join("repo"), ".seg.zst"));
    for s in &segments {
        let (first, last) = segment_commits(s);
        commits += last - first + 1;
    }
    let said = std::fs::read_to_string(&out).unwrap();
    let want = format!(
        "stopped: {commits} commit(s) in {} segment(s) stored this run",
        segments.len()
    );
    assert!(said.contains(&want), "{said}\nwanted: {want}");
    assert!(!spool.exists(), "a clean stop leaves the spool behind");
}

#[test]
fn a_staged_piece_deleted_while_the_replicator_runs_breaks_the_chain_with_a_reason() {
    a_staged_piece_spoiled_while_running(false, |p| std::fs::remove_file(p).unwrap());
}

#[test]
fn a_staged_piece_truncated_while_the_replicator_runs_breaks_the_chain_with_a_reason() {
    a_staged_piece_spoiled_while_running(true, |p| {
        let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len / 2).unwrap();
    });
}
