//! Compaction end to end, with a real writer (inserts, updates, deletes; `auto_vacuum=FULL`, so
//! the database also shrinks) and the real replicator: restores after compaction equal the
//! restores before it at every instant (compacted segments are read where both exist); once
//! the shipped segments older than `pitr_fine_within` are gone, the compacted windows' ends are
//! exact points and every restore is still an exact prefix; a flipped byte in a compacted
//! segment is found by verify.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::replicating::{rfc3339, stop_replicator};
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
        start = time.time()
        c.execute("BEGIN IMMEDIATE")
        op = random.random()
        if op < 0.6:
            for k in range(random.choice([1, 2, 10, 40])):
                c.execute("INSERT INTO c(n, v) VALUES (?, randomblob(?))", (n, random.choice([10, 500, 3000])))
        elif op < 0.85:
            c.execute("UPDATE c SET v = randomblob(?) WHERE rowid IN (SELECT rowid FROM c ORDER BY random() LIMIT 5)", (random.choice([10, 2000]),))
        else:
            c.execute("DELETE FROM c WHERE rowid IN (SELECT rowid FROM c ORDER BY random() LIMIT 60)")
        c.execute("INSERT INTO t(n) VALUES (?)", (n,))
        c.execute("COMMIT")
        out.write(f"{n} {start:.6f} {time.time():.6f}\n")
        out.flush()
        time.sleep(random.choice([0, 0.01, 0.03]))
"#;

fn config(d: &Path, fine: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n\n[retention]\nkeep_last = 3\n\n\
             [replication]\npitr_within = \"1h\"\npitr_fine_within = \"{fine}\"\n\
             compact_windows = [\"2s\", \"6s\"]\n\n[[database]]\nname = \"w\"\npath = \"w.db\"\n"
        ),
    )
    .unwrap();
}

/// `lifeboat replicate` of `w` every 100 ms, once its first generation is there.
fn start_replicator(d: &Path) -> Child {
    let rep = cmd(d)
        .args(["replicate", "--db", "w", "--sync-interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !d.join("repo/w/generations").exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    rep
}

/// The commits a restored database holds: exactly 1..=k (the writer logs each in `t`).
fn prefix(db: &Path) -> u64 {
    let got = sqlite3(db, "SELECT count(*), coalesce(max(n), 0) FROM t");
    let (count, max) = got.split_once('|').unwrap();
    assert_eq!(count, max, "{}: not a prefix", db.display());
    max.parse().unwrap()
}

fn restore_at(d: &Path, at: &str, to: &str) -> PathBuf {
    restore_said(d, at, to).0
}

/// [`restore_at`], and what it said.
fn restore_said(d: &Path, at: &str, to: &str) -> (PathBuf, String) {
    let p = d.join(to);
    let _ = std::fs::remove_file(&p);
    let out = ok(d, &["restore", "--db", "w", "--at", at, "--to", to]);
    (p, out)
}

fn segment_files(d: &Path) -> Vec<PathBuf> {
    let gens = d.join("repo/w/generations");
    let mut out = Vec::new();
    for g in std::fs::read_dir(gens).unwrap() {
        let s = g.unwrap().path().join("segments");
        if s.exists() {
            out.extend(files_starting_with(&s, "0"));
        }
    }
    out
}

fn level(p: &Path, l: &str) -> bool {
    p.file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with(&format!(".{l}.seg.zst"))
}

#[test]
fn compacted_chains_restore_the_same_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA auto_vacuum=FULL; PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB); CREATE TABLE t(n INTEGER PRIMARY KEY);",
    );
    config(d, "1h");
    let rep = start_replicator(d);
    let (log, stopfile) = (d.join("writer.log"), d.join("stop"));
    let mut writer = Command::new("python3")
        .args(["-c", WRITER])
        .arg(&db)
        .arg(&log)
        .arg(&stopfile)
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(13));
    std::fs::write(&stopfile, "").unwrap();
    assert!(writer.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(700));
    stop_replicator(rep);
    let log: Vec<(u64, f64, f64)> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
            )
        })
        .collect();
    assert!(log.len() > 100, "only {} commits", log.len());

    // Instants across the run, and the compacted windows' ends (from a dry run), restored
    // from shipped segments only: the references.
    let (first, last) = (log[0].1, log[log.len() - 1].2);
    let mut instants: Vec<String> = (0..8)
        .map(|i| rfc3339(first + (last - first) * (i as f64 + 0.5) / 8.0))
        .collect();
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "compact", "--dry-run"])).unwrap();
    let planned: Vec<String> = v["databases"][0]["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    assert!(planned.iter().any(|n| n.ends_with(".L1.seg.zst")), "{v}");
    assert!(planned.iter().any(|n| n.ends_with(".L2.seg.zst")), "{v}");
    assert!(
        segment_files(d).iter().all(|p| !level(p, "L1")),
        "a dry run writes nothing"
    );
    for n in &planned {
        // <gen>/<first>-<last>-<first_at>-<last_at>.Ln.seg.zst
        let stamp = n.rsplit('/').next().unwrap().split('-').nth(3).unwrap();
        let stamp = stamp.split('.').next().unwrap();
        let t = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%3fZ")
            .unwrap()
            .and_utc();
        instants.push(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    let mut refs = Vec::new();
    for (i, at) in instants.iter().enumerate() {
        let p = restore_at(d, at, &format!("ref-{i}.db"));
        let k = prefix(&p);
        // Nothing begun after the instant is in it.
        let t: f64 = chrono::DateTime::parse_from_rfc3339(at)
            .unwrap()
            .timestamp_millis() as f64
            / 1000.0;
        if k > 0 {
            assert!(log[(k - 1) as usize].1 <= t + 0.001, "{at}: commit {k}");
        }
        refs.push((p, k));
    }

    // Compacted, the shipped segments kept (all younger than pitr_fine_within): every
    // instant restores the very same database, reading the compacted segments.
    let out = ok(d, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    let files = segment_files(d);
    assert!(files.iter().any(|p| level(p, "L2")), "{files:?}");
    // The database started empty: its rollup holds every page, so it is a full one.
    assert!(
        files.iter().any(|p| level(p, "L254")),
        "a full rollup: {files:?}"
    );
    for (i, at) in instants.iter().enumerate() {
        let p = restore_at(d, at, "after.db");
        assert_eq!(prefix(&p), refs[i].1, "{at}");
        assert_same_db(&refs[i].0, &p);
    }
    // The newest point reads the full rollup instead of the snapshot: it restores even with
    // the snapshot's data gone.
    let data = files_starting_with(&d.join("repo/w/backups"), "backup-")
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".sqlite.zst"))
        .unwrap();
    let aside = d.join("snapshot-aside");
    std::fs::rename(&data, &aside).unwrap();
    let (latest, out) = restore_said(d, "latest", "latest.db");
    assert!(
        out.contains("a full rollup (the snapshot not read)"),
        "{out}"
    );
    std::fs::rename(&aside, &data).unwrap();
    assert_same_db(&db, &latest);
    assert_eq!(prefix(&latest), log.len() as u64);
    let out = ok(d, &["verify", "--all"]);
    assert!(out.contains("chain:"), "{out}");
    // Again, and twice at once: nothing more to do, nothing broken.
    let twice: Vec<Child> = (0..2)
        .map(|_| {
            cmd(d)
                .arg("compact")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in twice {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(!stdout(&o).contains("wrote"), "{}", stdout(&o));
    }

    // Shipped segments older than pitr_fine_within go once compacted: the windows' ends are
    // still exact points, and every other instant an exact prefix no later than before.
    std::thread::sleep(Duration::from_millis(1500));
    config(d, "1s");
    let before = segment_files(d).len();
    let out = ok(d, &["prune"]);
    assert!(out.contains("deleted"), "{out}");
    let after = segment_files(d);
    assert!(after.len() < before / 2, "{before} -> {}", after.len());
    for (i, at) in instants.iter().enumerate() {
        let p = restore_at(d, at, "coarse.db");
        let k = prefix(&p);
        if i >= 8 {
            assert_eq!(k, refs[i].1, "window end {at}");
            assert_same_db(&refs[i].0, &p);
        } else {
            assert!(k <= refs[i].1, "{at}: {k} > {}", refs[i].1);
        }
    }
    assert_same_db(&db, &restore_at(d, "latest", "latest2.db"));
    ok(d, &["verify", "--all"]);

    // A flipped byte in a compacted segment: verify names the chain, exit 6.
    let l2 = after.iter().find(|p| level(p, "L2")).unwrap();
    flip_middle_byte(l2, 0x04);
    let o = run(d, &["verify", "--all"]);
    assert_eq!(o.status.code(), Some(6), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("CHAIN"), "{}", stdout(&o));
}

#[test]
fn compaction_beside_a_running_replicator_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA auto_vacuum=FULL; PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB); CREATE TABLE t(n INTEGER PRIMARY KEY);",
    );
    // Shipped segments older than a second go as soon as they are compacted: the most a
    // compaction deletes under a running replicator.
    config(d, "1s");
    let rep = start_replicator(d);
    let (log, stopfile) = (d.join("writer.log"), d.join("stop"));
    let mut writer = Command::new("python3")
        .args(["-c", WRITER])
        .arg(&db)
        .arg(&log)
        .arg(&stopfile)
        .spawn()
        .unwrap();
    // Compactions (two at once each round) and restores while both run.
    for round in 0..8 {
        std::thread::sleep(Duration::from_millis(900));
        let both: Vec<Child> = (0..2)
            .map(|_| {
                cmd(d)
                    .arg("compact")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in both {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "round {round}: {}", stderr(&o));
        }
        let p = restore_at(d, "latest", &format!("mid-{round}.db"));
        prefix(&p);
    }
    std::fs::write(&stopfile, "").unwrap();
    assert!(writer.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(700));
    stop_replicator(rep);
    let files = segment_files(d);
    assert!(files.iter().any(|p| level(p, "L1")), "{files:?}");
    let latest = restore_at(d, "latest", "latest.db");
    assert_same_db(&db, &latest);
    let commits = std::fs::read_to_string(&log).unwrap().lines().count() as u64;
    assert_eq!(prefix(&latest), commits);
    ok(d, &["verify", "--all"]);
}

#[test]
fn the_daemons_prune_compacts_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB); CREATE TABLE t(n INTEGER);",
    );
    config(d, "1h");
    let rep = start_replicator(d);
    for n in 1..=40 {
        sqlite3(
            &db,
            &format!("INSERT INTO c VALUES ({n}, randomblob(2000)); INSERT INTO t VALUES ({n});"),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_replicator(rep);
    // The 2 s windows of the run are closed now.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!segment_files(d).iter().any(|p| level(p, "L1")));
    let before = segment_files(d).len();
    ok(d, &["daemon", "--once"]);
    let after = segment_files(d);
    assert!(
        after.iter().any(|p| level(p, "L1")),
        "no compacted segment after the daemon's prune ({before} segments before): {after:?}"
    );
    let latest = restore_at(d, "latest", "latest.db");
    assert_same_db(&db, &latest);
}

/// A rollup that changed few of a large database's pages is not full: a restore writes its
/// pages while the snapshot, decompressed beside it, fills in every other page, each written
/// once. Every instant restores as it did from the shipped segments alone.
#[test]
fn a_partial_rollup_and_the_snapshot_fill_the_image_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB); \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 4000) \
         INSERT INTO big SELECT i, randomblob(1000) FROM n; \
         CREATE TABLE t(n INTEGER PRIMARY KEY);",
    );
    config(d, "1h");
    let rep = start_replicator(d);
    // Updates of rows spread over the first fifth of the table: a few pages, here and there.
    let writer = r#"
import sqlite3, sys, time, random
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
end = time.time() + 9
n = 0
while time.time() < end:
    n += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE big SET v = randomblob(1000) WHERE id = ?", (random.randint(1, 800),))
    c.execute("INSERT INTO t(n) VALUES (?)", (n,))
    c.execute("COMMIT")
    time.sleep(0.01)
"#;
    let status = Command::new("python3")
        .args(["-c", writer])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(700));
    stop_replicator(rep);
    let latest_before = restore_at(d, "latest", "before.db");
    let out = ok(d, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    let files = segment_files(d);
    assert!(
        files.iter().any(|p| level(p, "L255")) && !files.iter().any(|p| level(p, "L254")),
        "a rollup, not a full one: {files:?}"
    );
    let (latest, out) = restore_said(d, "latest", "latest.db");
    assert!(out.contains("snapshot backup-"), "{out}");
    assert_same_db(&db, &latest);
    assert_same_db(&latest_before, &latest);
    ok(d, &["verify", "--all"]);
}
