//! A tenant restore into a database that another process is writing to, as in production: the
//! restore succeeds, the writer never sees an error, every one of its commits survives, and the
//! restored tenant is exactly the backup's. In WAL mode and in rollback-journal mode.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

/// A writer like a real application's: its own process, a 5 s busy timeout, short
/// `BEGIN IMMEDIATE` transactions for tenant t2 (a booking and an audit row each), about 200 a
/// second. Each committed transaction's number is appended to `log` after its COMMIT; any error
/// ends the writer with exit 1 and the error on stderr.
const WRITER: &str = r#"
import os, sqlite3, sys, time
db, log, stop = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db, timeout=5.0, isolation_level=None)
out = open(log, "a", buffering=1)
n = 0
try:
    while not os.path.exists(stop):
        n += 1
        c.execute("BEGIN IMMEDIATE")
        c.execute("INSERT INTO bookings VALUES (?, 'c3', 'u2')", ("w%d" % n,))
        c.execute("INSERT INTO audit_logs (tenant_id, action) VALUES ('t2', ?)", ("tick %d" % n,))
        c.execute("COMMIT")
        out.write("%d\n" % n)
        time.sleep(0.004)
except Exception as e:
    print("writer error after %d commits: %r" % (n - 1, e), file=sys.stderr)
    sys.exit(1)
"#;

/// The writer process, stopped (killed) when dropped, so a failing test never leaves it running.
struct Writer(Child);

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_writer(d: &Path) -> Writer {
    std::fs::write(d.join("writer.py"), WRITER).unwrap();
    Writer(
        Command::new("python3")
            .arg(d.join("writer.py"))
            .arg(d.join("studio.db"))
            .arg(d.join("writer.log"))
            .arg(d.join("writer.stop"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3"),
    )
}

fn commits(d: &Path) -> Vec<u64> {
    std::fs::read_to_string(d.join("writer.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn restore_under_load(journal_mode: &str, extra_args: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("studio.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(TENANT_SCHEMA).unwrap();
    // Enough of t1 that the restore takes a while; t2 is what the writer works on.
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000)
         INSERT INTO bookings SELECT 'x' || i, CASE i % 2 WHEN 0 THEN 'c1' ELSE 'c2' END, 'u1' FROM n;",
    )
    .unwrap();
    c.query_row(&format!("PRAGMA journal_mode={journal_mode}"), [], |_| {
        Ok(())
    })
    .unwrap();
    drop(c);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n",
    )
    .unwrap();
    ok(d, &["backup"]);
    ok(d, &["restore", "--to", "at-backup.db"]);
    // The bad day, for t1 only.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DELETE FROM bookings WHERE id LIKE 'x%' AND rowid % 3 = 0;
             DELETE FROM booking_notes WHERE booking_id = 'b1';
             UPDATE classes SET title = 'Broken' WHERE id = 'c2';
             INSERT INTO bookings VALUES ('junk', 'c1', 'u3');",
        )
        .unwrap();

    let mut writer = start_writer(d);
    let deadline = Instant::now() + Duration::from_secs(30);
    while commits(d).len() < 50 {
        assert!(Instant::now() < deadline, "the writer never got going");
        assert!(writer.0.try_wait().unwrap().is_none(), "the writer died");
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = commits(d).len();
    let mut args = vec!["--json", "restore", "--tenant", "t1", "--into", "studio.db"];
    args.extend_from_slice(extra_args);
    let out = ok(d, &args);
    let during = commits(d).len() - before;
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(d.join("writer.stop"), b"").unwrap();
    let status = writer.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(writer.0.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "the writer saw an error: {err}");
    assert!(
        during > 0,
        "the writer did not commit while the restore ran"
    );

    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["write_lock_ms"].as_u64().is_some(), "{report}");

    // Every commit the writer made is there.
    let n = commits(d);
    let live = Connection::open(&db).unwrap();
    let ticks: i64 = live
        .query_row(
            "SELECT count(*) FROM audit_logs WHERE action LIKE 'tick %'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let w: i64 = live
        .query_row(
            "SELECT count(*) FROM bookings WHERE id LIKE 'w%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ticks as usize, n.len());
    assert_eq!(w as usize, n.len());
    drop(live);

    // Exactly the backup plus the writer's rows: build that database and sqldiff them.
    let expected = d.join("at-backup.db");
    let c = Connection::open(&expected).unwrap();
    c.execute_batch(&format!(
        "ATTACH '{}' AS live;
         INSERT INTO bookings SELECT * FROM live.bookings WHERE id LIKE 'w%';
         INSERT INTO audit_logs SELECT * FROM live.audit_logs WHERE action LIKE 'tick %';
         UPDATE sqlite_sequence SET seq = (SELECT seq FROM live.sqlite_sequence WHERE name = 'audit_logs') WHERE name = 'audit_logs';
         DETACH live;",
        db.display()
    ))
    .unwrap();
    drop(c);
    assert_same_db(&expected, &db);
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok");
}

#[test]
fn tenant_restore_beside_a_busy_writer_in_wal_mode() {
    restore_under_load("WAL", &[]);
}

#[test]
fn tenant_restore_beside_a_busy_writer_in_rollback_journal_mode() {
    restore_under_load("DELETE", &[]);
}

#[test]
fn tenant_restore_with_a_full_safety_backup_beside_a_busy_writer() {
    restore_under_load("WAL", &["--safety-backup", "full"]);
}
