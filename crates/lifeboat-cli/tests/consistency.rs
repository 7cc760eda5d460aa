//! A backup taken while another process keeps writing equals the database at one instant:
//! balances sum to the invariant and agree exactly with the ledger of transfers in the image.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

const WRITER: &str = r#"
import os, random, sqlite3, sys
db, stop = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, timeout=60, isolation_level=None)
rnd = random.Random(7)
n = 0
while not os.path.exists(stop):
    a, b = rnd.sample(range(100), 2)
    x = rnd.randint(1, 50)
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE acct SET bal = bal - ? WHERE id = ?", (x, a))
    c.execute("UPDATE acct SET bal = bal + ? WHERE id = ?", (x, b))
    c.execute("INSERT INTO ledger (a, b, x) VALUES (?, ?, ?)", (a, b, x))
    c.execute("COMMIT")
    n += 1
print(n)
"#;

fn ledger_len(db: &Path) -> i64 {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    c.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .unwrap()
}

fn consistent_under_writes(journal_mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("bank.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(&format!(
            "PRAGMA journal_mode={journal_mode};
             CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL);
             CREATE TABLE ledger (seq INTEGER PRIMARY KEY, a INTEGER, b INTEGER, x INTEGER);
             CREATE TABLE padding (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 99)
               INSERT INTO acct SELECT i, 1000 FROM n;
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 6000)
               INSERT INTO padding SELECT randomblob(4000) FROM n;"
        ))
        .unwrap();
    }
    let stop = d.join("stop");
    let writer = Command::new("python3")
        .args(["-c", WRITER])
        .arg(&db)
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger_len(&db) < 200 {
        assert!(Instant::now() < deadline, "writer made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = ledger_len(&db);
    let out = run(d, &["backup", "--db", "bank.db", "--repo", "file://./repo"]);
    let after = ledger_len(&db);
    std::fs::write(&stop, b"").unwrap();
    let w = writer.wait_with_output().unwrap();
    assert!(w.status.success());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        after > before,
        "the writer kept writing during the backup ({before} -> {after})"
    );

    ok(
        d,
        &[
            "restore",
            "--db",
            "bank.db",
            "--repo",
            "file://./repo",
            "--to",
            "restored.db",
        ],
    );
    let c = Connection::open(d.join("restored.db")).unwrap();
    let total: i64 = c
        .query_row("SELECT sum(bal) FROM acct", [], |r| r.get(0))
        .unwrap();
    assert_eq!(total, 100 * 1000, "money is neither created nor lost");
    let n: i64 = c
        .query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
        .unwrap();
    assert!(
        n >= before && n <= after,
        "image taken during the backup: {before} <= {n} <= {after}"
    );
    // Replaying the image's ledger from the initial balances gives the image's balances exactly:
    // the image is the database as it was between two transactions.
    let mut bal = vec![1000i64; 100];
    let mut stmt = c
        .prepare("SELECT a, b, x FROM ledger ORDER BY seq")
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as usize,
                r.get::<_, i64>(1)? as usize,
                r.get::<_, i64>(2)?,
            ))
        })
        .unwrap();
    for r in rows {
        let (a, b, x) = r.unwrap();
        bal[a] -= x;
        bal[b] += x;
    }
    let actual: Vec<i64> = c
        .prepare("SELECT bal FROM acct ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(actual, bal, "balances match the ledger at one instant");
}

#[test]
fn consistent_under_writes_wal() {
    consistent_under_writes("WAL");
}

#[test]
fn consistent_under_writes_rollback_journal() {
    consistent_under_writes("DELETE");
}
