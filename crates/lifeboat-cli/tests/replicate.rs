//! Continuous replication end to end, with real processes: a python3 writer committing
//! transactions of varied size and logging each one, `lifeboat replicate` beside it (killed
//! with SIGKILL and restarted), and `restore --at` checked against the writer's log: every
//! restore is an exact prefix of the commits, none committed after the instant.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

const WRITER: &str = r#"
import sqlite3, sys, time, os, random
db, log, stop = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA busy_timeout=30000")
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        rows = random.choice([1, 1, 2, 5, 40])
        size = random.choice([10, 300, 3000])
        start = time.time()
        c.execute("BEGIN IMMEDIATE")
        for k in range(rows):
            c.execute("INSERT INTO c(n, k, v) VALUES (?, ?, randomblob(?))", (n, k, size))
        c.execute("COMMIT")
        end = time.time()
        out.write(f"{n} {rows} {start:.6f} {end:.6f}\n")
        out.flush()
        time.sleep(random.choice([0, 0.01, 0.05]))
"#;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn new_db(path: &Path) {
    sqlite3(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
}

fn replicator(dir: &Path, db: &Path) -> Child {
    cmd(dir)
        .args(["replicate", "--db"])
        .arg(db)
        .args(["--repo", "repo", "--sync-interval", "200ms"])
        .args(["--checkpoint-frames", "50"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lifeboat replicate")
}

fn stop(child: Child) -> String {
    // SIGTERM: ship what is left and stop.
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "replicate failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out) + &stderr(&out)
}

fn kill9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

struct Logged {
    n: u64,
    rows: u64,
    start: f64,
    end: f64,
}

fn read_log(p: &Path) -> Vec<Logged> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Logged {
                n: f[0].parse().unwrap(),
                rows: f[1].parse().unwrap(),
                start: f[2].parse().unwrap(),
                end: f[3].parse().unwrap(),
            }
        })
        .collect()
}

/// The commits a restored database holds: it must be exactly commits 1..=k, each with all
/// its rows. Returns k.
fn prefix_of(db: &Path, log: &[Logged]) -> u64 {
    let got = sqlite3(db, "SELECT n, count(*) FROM c GROUP BY n ORDER BY n");
    let mut k = 0;
    for line in got.lines().filter(|l| !l.is_empty()) {
        let (n, rows) = line.split_once('|').unwrap();
        let (n, rows): (u64, u64) = (n.parse().unwrap(), rows.parse().unwrap());
        assert_eq!(n, k + 1, "{}: commit {} missing", db.display(), k + 1);
        assert_eq!(
            rows,
            log[(n - 1) as usize].rows,
            "{}: commit {n} torn",
            db.display()
        );
        k = n;
    }
    k
}

fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let ms = ((t - t.floor()) * 1000.0).floor() as u32;
    chrono::DateTime::from_timestamp(secs, ms * 1_000_000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn restores_are_exact_prefixes_through_kills() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("shop.db");
    new_db(&db);
    let (log, stopfile) = (d.join("writer.log"), d.join("stop"));
    let mut rep = replicator(d, &db);
    // Wait for the first generation before writing: every commit is then replicated.
    while !d.join("repo/shop/generations").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut writer = Command::new("python3")
        .args(["-c", WRITER])
        .arg(&db)
        .arg(&log)
        .arg(&stopfile)
        .spawn()
        .unwrap();
    // Times the replicator was up, to know which commits it must have shipped by when.
    let mut up: Vec<(f64, f64)> = Vec::new();
    let mut since = now();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1500));
        kill9(rep);
        up.push((since, now()));
        std::thread::sleep(Duration::from_millis(300));
        since = now();
        rep = replicator(d, &db);
    }
    std::thread::sleep(Duration::from_millis(1500));
    std::fs::write(&stopfile, "").unwrap();
    assert!(writer.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(1000));
    stop(rep);
    up.push((since, now()));
    let log = read_log(&log);
    assert!(log.len() > 20, "the writer committed only {}", log.len());

    // `latest` is the source itself.
    ok(
        d,
        &[
            "restore",
            "--db",
            "shop",
            "--repo",
            "repo",
            "--at",
            "latest",
            "--to",
            "latest.db",
        ],
    );
    assert_same_db(&db, &d.join("latest.db"));
    assert_eq!(prefix_of(&d.join("latest.db"), &log), log.len() as u64);

    let pitr = ok(d, &["list", "--pitr", "--db", "shop", "--repo", "repo"]);
    let (first, last) = (log[0].start, log[log.len() - 1].end);
    let slack = 5.0;
    for i in 0..10 {
        let t = first + (last - first) * (i as f64 + 0.5) / 10.0;
        let at = rfc3339(t);
        let out = d.join(format!("at-{i}.db"));
        let o = run(
            d,
            &[
                "restore",
                "--db",
                "shop",
                "--repo",
                "repo",
                "--at",
                &at,
                "--to",
                out.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
        let k = prefix_of(&out, &log);
        let t_ms = (t * 1000.0).floor() / 1000.0;
        // None after the instant: the newest restored commit began before it.
        if k > 0 {
            assert!(
                log[(k - 1) as usize].start <= t_ms + 0.001,
                "restore --at {at} holds commit {k}, begun at {}\n{pitr}",
                log[(k - 1) as usize].start
            );
        }
        // Every commit well before the instant, while the replicator was up, is in.
        let covered = |e: f64| up.iter().any(|(a, b)| *a <= e && e + slack <= *b);
        for c in &log {
            if c.end + slack <= t_ms && covered(c.end) {
                assert!(
                    c.n <= k,
                    "restore --at {at} lacks commit {} (ended {}s before)\n{pitr}",
                    c.n,
                    t_ms - c.end
                );
            }
        }
    }
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
    std::thread::sleep(Duration::from_millis(1200));
    stop(rep)
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
    std::thread::sleep(Duration::from_millis(800));
    for n in 1..=3 {
        insert(&db, n);
    }
    std::thread::sleep(Duration::from_millis(800));
    kill9(rep);
    rep = replicator(d, &db);
    // (Started first: the sqlite3 CLI closing as the last connection would checkpoint and
    // delete the WAL, a break of its own.)
    std::thread::sleep(Duration::from_millis(800));
    insert(&db, 4);
    std::thread::sleep(Duration::from_millis(800));
    let out = stop(rep);
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

    // VACUUM goes through the WAL as one more transaction: it is replicated like any other.
    let rep = replicator(d, &db);
    std::thread::sleep(Duration::from_millis(800));
    sqlite3(&db, "DELETE FROM c WHERE n < 3; VACUUM;");
    insert(&db, 8);
    std::thread::sleep(Duration::from_millis(800));
    stop(rep);

    let pitr = ok(d, &["list", "--pitr", "--db", "b", "--repo", "repo"]);
    // first run, the reset, the replaced file, and a start on an empty WAL (which cannot be
    // proved unchanged, so it is a new generation too; VACUUM itself is not a break).
    assert_eq!(pitr.matches("  gen-").count(), 4, "{pitr}");
    for why in ["first run", "WAL no longer holds", "replaced", "empty WAL"] {
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
