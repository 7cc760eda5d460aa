//! Continuous replication end to end, with real processes: chain breaks (a checkpoint while
//! lifeboat is stopped, the file replaced, VACUUM) each start a new generation and restores
//! never mix two; the TRUNCATE safety valve bounds a WAL the application's readers keep from
//! resetting. (Exact prefixes through kills, locally and on S3: `replicate_pitr.rs`.)

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::replicating::{burst_then_checkpoint, now, restore_latest, rfc3339, Rep};
use common::*;

fn new_db(path: &Path) {
    sqlite3(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
}

fn replicator(dir: &Path, db: &Path) -> Rep {
    replicating(
        dir,
        db,
        &["--sync-interval", "200ms", "--checkpoint-frames", "50"],
        None,
    )
}

/// `lifeboat replicate --db DB --repo repo ARGS`, with `LIFEBOAT_FAULT=fault` when given,
/// once it is replicating.
fn replicating(dir: &Path, db: &Path, args: &[&str], fault: Option<&str>) -> Rep {
    let mut c = cmd(dir);
    if let Some(f) = fault {
        c.env("LIFEBOAT_FAULT", f);
    }
    c.args(["replicate", "--db"])
        .arg(db)
        .args(["--repo", "repo"])
        .args(args);
    Rep::start(c, dir)
}

fn count(db: &Path) -> u64 {
    sqlite3(db, "SELECT count(*) FROM c").parse().unwrap()
}

fn insert(db: &Path, n: u64) {
    sqlite3(
        db,
        &format!("INSERT INTO c(n, k, v) VALUES ({n}, 0, randomblob(100));"),
    );
}

/// Run the replicator until it has shipped what is there, and stop it.
fn replicate_once(d: &Path, db: &Path) -> String {
    let rep = replicator(d, db);
    std::thread::sleep(Duration::from_millis(300));
    rep.stop()
}

#[test]
fn breaks_start_new_generations_and_restores_never_mix_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("b.db");
    new_db(&db);

    // A database not in WAL mode is refused, saying how to switch.
    let plain = d.join("plain.db");
    sqlite3(&plain, "CREATE TABLE x(a);");
    let err = fails(
        d,
        &[
            "replicate",
            "--db",
            plain.to_str().unwrap(),
            "--repo",
            "repo",
        ],
        3,
    );
    assert!(err.contains("PRAGMA journal_mode=WAL"), "{err}");
    assert!(!d.join("repo/plain").exists());

    // Generation 1, and a restart that resumes it (the WAL still holds the chain's end).
    let mut rep = replicator(d, &db);
    for n in 1..=3 {
        insert(&db, n);
    }
    std::thread::sleep(Duration::from_millis(800));
    rep.kill9();
    rep = replicator(d, &db);
    // (Started first: the sqlite3 CLI closing as the last connection would checkpoint and
    // delete the WAL, a break of its own.)
    insert(&db, 4);
    std::thread::sleep(Duration::from_millis(800));
    let out = rep.stop();
    assert!(out.contains("resuming the chain"), "{out}");
    let t1 = now();
    std::thread::sleep(Duration::from_millis(50));

    // While it is stopped: a TRUNCATE checkpoint from another connection resets the WAL.
    insert(&db, 5);
    sqlite3(&db, "PRAGMA wal_checkpoint(TRUNCATE);");
    insert(&db, 6);
    let out = replicate_once(d, &db);
    assert!(out.contains("WAL no longer holds"), "{out}");
    let t2 = now();
    std::thread::sleep(Duration::from_millis(50));

    // The file replaced by another (a copy with more rows), while it is stopped.
    let copy = d.join("copy.db");
    sqlite3(&db, &format!(".backup '{}'", copy.display()));
    sqlite3(&copy, "PRAGMA journal_mode=WAL;");
    insert(&copy, 7);
    std::fs::rename(&copy, &db).unwrap();
    let out = replicate_once(d, &db);
    assert!(out.contains("replaced"), "{out}");

    // VACUUM: its transaction is shipped, then a new generation starts from a fresh snapshot.
    let rep = replicator(d, &db);
    sqlite3(&db, "DELETE FROM c WHERE n < 3; VACUUM;");
    insert(&db, 8);
    std::thread::sleep(Duration::from_millis(800));
    rep.stop();

    let pitr = ok(d, &["list", "--pitr", "--db", "b", "--repo", "repo"]);
    // first run, the reset, the replaced file and the VACUUM. (The restart before the VACUUM
    // resumed the replaced file's generation, begun on an empty WAL: the file was unchanged.)
    assert_eq!(pitr.matches("  gen-").count(), 4, "{pitr}");
    for why in ["first run", "WAL no longer holds", "replaced", "VACUUM"] {
        assert!(pitr.contains(why), "{why}: {pitr}");
    }

    // Each instant restores its own generation's state, never a mix.
    let r1 = d.join("r1.db");
    ok(
        d,
        &[
            "restore",
            "--db",
            "b",
            "--repo",
            "repo",
            "--at",
            &rfc3339(t1),
            "--to",
            r1.to_str().unwrap(),
        ],
    );
    assert_eq!(
        sqlite3(
            &r1,
            "SELECT group_concat(n) FROM (SELECT n FROM c ORDER BY n)"
        ),
        "1,2,3,4",
        "{pitr}"
    );
    let r2 = d.join("r2.db");
    ok(
        d,
        &[
            "restore",
            "--db",
            "b",
            "--repo",
            "repo",
            "--at",
            &rfc3339(t2),
            "--to",
            r2.to_str().unwrap(),
        ],
    );
    assert_eq!(
        sqlite3(
            &r2,
            "SELECT group_concat(n) FROM (SELECT n FROM c ORDER BY n)"
        ),
        "1,2,3,4,5,6",
        "{pitr}"
    );
    let r3 = d.join("r3.db");
    ok(
        d,
        &[
            "restore",
            "--db",
            "b",
            "--repo",
            "repo",
            "--at",
            "latest",
            "--to",
            r3.to_str().unwrap(),
        ],
    );
    assert_same_db(&db, &r3);
    assert_eq!(count(&r3), 6);
    // Never over an existing file without --force.
    fails(
        d,
        &[
            "restore",
            "--db",
            "b",
            "--repo",
            "repo",
            "--at",
            "latest",
            "--to",
            r3.to_str().unwrap(),
        ],
        7,
    );
}

/// The application: two reader threads whose read transactions overlap (one is always open,
/// so SQLite can never reset the WAL by itself), and a writer committing 16 MB in 40 KB
/// transactions. Prints nothing; the test watches the WAL's size.
const BUSY_APP: &str = r#"
import sqlite3, sys, threading, time
db = sys.argv[1]
done = threading.Event()
def reader(delay):
    c = sqlite3.connect(db, isolation_level=None, timeout=60)
    time.sleep(delay)
    while not done.is_set():
        c.execute("BEGIN")
        c.execute("SELECT count(*) FROM c").fetchone()
        time.sleep(1.0)
        c.execute("COMMIT")
threads = [threading.Thread(target=reader, args=(d,)) for d in (0, 0.5)]
for t in threads: t.start()
time.sleep(0.2)
w = sqlite3.connect(db, isolation_level=None, timeout=60)
w.execute("PRAGMA wal_autocheckpoint=0")
for n in range(400):
    w.execute("BEGIN IMMEDIATE")
    w.execute("INSERT INTO c(n, k, v) VALUES (?, 0, randomblob(40000))", (n,))
    w.execute("COMMIT")
    time.sleep(0.005)
done.set()
for t in threads: t.join()
"#;

/// Run the busy application beside a replicator with `--truncate-wal-size valve`; the largest
/// WAL seen, and the replicator's output.
fn largest_wal(d: &Path, db: &Path, valve: &str) -> u64 {
    new_db(db);
    let rep = replicating(
        d,
        db,
        &[
            "--sync-interval",
            "200ms",
            "--checkpoint-frames",
            "50",
            "--truncate-wal-size",
            valve,
        ],
        None,
    );
    let mut app = Command::new("python3")
        .args(["-c", BUSY_APP])
        .arg(db)
        .spawn()
        .unwrap();
    let wal = d.join(format!("{}-wal", db.file_name().unwrap().to_string_lossy()));
    let mut largest = 0;
    while app.try_wait().unwrap().is_none() {
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(app.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(800));
    rep.stop();
    largest
}

#[test]
fn the_truncate_valve_bounds_a_wal_that_readers_keep_from_resetting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Without the valve (a limit never reached), overlapping readers let the WAL grow with
    // everything written.
    let unbounded = largest_wal(d, &d.join("free.db"), "1000000000000");
    // With it, a WAL past 1 MiB is truncated at the next sync: TRUNCATE waits for the readers
    // (holding the application's writers meanwhile) and then empties the WAL.
    let db = d.join("valve.db");
    let bounded = largest_wal(d, &db, "1048576");
    eprintln!("largest WAL: {unbounded} bytes without the valve, {bounded} with it");
    assert!(unbounded > 12 << 20, "{unbounded}");
    assert!(bounded < 6 << 20, "{bounded}");
    // Nothing was lost on the way: the newest point is the source.
    let latest = restore_latest(d, "valve");
    assert_same_db(&db, &latest);
    assert_eq!(count(&latest), 400);
}

/// The generations in the repository, oldest first.
fn generations(d: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for db in std::fs::read_dir(d.join("repo")).unwrap() {
        let g = db.unwrap().path().join("generations");
        if let Ok(entries) = std::fs::read_dir(g) {
            out.extend(entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()));
        }
    }
    out.sort();
    out
}

/// An idle database (its WAL empty, as the last connection to close leaves it) resumes its
/// chain across a clean stop and a kill -9: the file unchanged and the WAL still empty prove
/// nothing was committed. A commit while it is stopped (checkpointed away by the sqlite3
/// CLI's close) changes the file: a new generation, and the restore holds the commit.
#[test]
fn an_idle_database_resumes_its_chain_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("idle.db");
    new_db(&db);
    replicate_once(d, &db);
    assert_eq!(generations(d).len(), 1);
    let out = replicate_once(d, &db);
    assert!(out.contains("resuming the chain"), "{out}");
    let rep = replicator(d, &db);
    std::thread::sleep(Duration::from_millis(1200));
    rep.kill9();
    let out = replicate_once(d, &db);
    assert!(out.contains("resuming the chain"), "{out}");
    assert_eq!(generations(d).len(), 1, "{out}");

    insert(&db, 1);
    let out = replicate_once(d, &db);
    assert!(out.contains("database file changed"), "{out}");
    assert_eq!(generations(d).len(), 2);
    let restored = d.join("restored.db");
    ok(
        d,
        &[
            "restore",
            "--repo",
            "repo",
            "--db",
            "idle",
            "--at",
            "latest",
            "--to",
            restored.to_str().unwrap(),
        ],
    );
    assert_eq!(count(&restored), 1);
}

/// An application committing now and then, a row at a time: `rows` rows, `gap` seconds apart,
/// each row a page of its own (a commit whose frames were lost is never written over).
const SLOW_APP: &str = r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
for n in range(int(sys.argv[2])):
    c.execute("INSERT INTO c(n, k, v) VALUES (?, 1, randomblob(3000))", (n,))
    time.sleep(float(sys.argv[3]))
"#;

/// Commits that land between a sync's shipping and its checkpoint are shipped before the
/// replicator's read transaction can move onto a fully checkpointed WAL, which lets the next
/// writer reset the WAL over them. The checkpoint is held up (a debug-build fault) so that
/// commits land in those windows at every checkpoint.
#[test]
fn commits_racing_a_checkpoint_are_shipped_before_the_wal_can_reset() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("race.db");
    new_db(&db);
    let rep = replicating(
        d,
        &db,
        &["--sync-interval", "100ms", "--checkpoint-frames", "1"],
        Some("checkpoint-pause=120"),
    );
    let app = Command::new("python3")
        .args(["-c", SLOW_APP])
        .arg(&db)
        .args(["150", "0.025"])
        .status()
        .unwrap();
    assert!(app.success());
    std::thread::sleep(Duration::from_millis(1500));
    let out = rep.stop();
    assert_eq!(generations(d).len(), 1, "{out}");
    let latest = restore_latest(d, "race");
    assert_eq!(count(&latest), 150, "{out}");
    assert_same_db(&db, &latest);
}

/// The application's own TRUNCATE checkpoint, which waits with the write lock held for every
/// reader: it prints its busy flag (0: it emptied the WAL), then commits more.
const TRUNCATING_APP: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
for n in range(20):
    c.execute("INSERT INTO c(n, k, v) VALUES (?, 2, randomblob(3000))", (n,))
print(c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0], flush=True)
for n in range(20, 40):
    c.execute("INSERT INTO c(n, k, v) VALUES (?, 2, randomblob(3000))", (n,))
"#;

/// What the README tells the application not to do still works: with nothing to ship, the
/// replicator moves its read transaction to the WAL's end at each sync, so the application's
/// TRUNCATE (which holds its writers back while it waits) gets through long before its 20 s busy
/// timeout, and the chain goes on across the reset it makes.
#[test]
fn an_application_truncate_gets_through_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("trunc.db");
    new_db(&db);
    let rep = replicating(d, &db, &["--sync-interval", "200ms"], None);
    let app = Command::new("python3")
        .args(["-c", TRUNCATING_APP])
        .arg(&db)
        .output()
        .unwrap();
    assert!(app.status.success(), "{}", stderr(&app));
    assert_eq!(stdout(&app).trim(), "0", "the TRUNCATE timed out");
    std::thread::sleep(Duration::from_millis(1000));
    let out = rep.stop();
    assert_eq!(generations(d).len(), 1, "{out}");
    let latest = restore_latest(d, "trunc");
    assert_eq!(count(&latest), 40);
    assert_same_db(&db, &latest);
}

/// A burst of writes after a pause wakes the replicator long before its sync interval (it
/// looks at the `-wal` file for `checkpoint_frames` new frames), which checkpoints: only its
/// checkpoints write the database file here (the application's are held back by its read
/// mark). Looking must not open the `-shm` or the database: closing such a descriptor drops
/// every POSIX lock the process holds on the file, and a reset then came over frames not yet
/// shipped ("a.db-wal changed while it was read"). One generation, every commit restorable.
#[test]
fn a_burst_after_a_pause_wakes_the_replicator_and_the_chain_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("burst.db");
    new_db(&db);
    let rep = replicating(d, &db, &["--sync-interval", "60s"], None);
    burst_then_checkpoint(&db, 20_000, String::new);
    let out = rep.stop();
    assert_eq!(generations(d).len(), 1, "{out}");
    let latest = restore_latest(d, "burst");
    assert_eq!(count(&latest), 20000, "{out}");
    assert_same_db(&db, &latest);
}
