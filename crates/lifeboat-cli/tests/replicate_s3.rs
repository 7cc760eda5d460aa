//! Compaction and verify of replicated data on a real S3 server (s3s-fs on loopback): compacted
//! segments go up with a conditional create and restore the same database; verify replays the
//! chain; with the server gone, verify is a repository failure (exit 4), never damage.
//!
//! Compacted segments over 8 MB go up as multipart uploads (the code backups use on S3); s3s-fs
//! cannot take those for keys as long as a segment's (it names a file after the base64 of the
//! whole key, past 255 bytes), so they are tried in `replicate_s3_multipart.rs`, on moto's.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::s3::*;
use common::*;

fn config(d: &Path) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"s3://{BUCKET}/pitr\"\n\n[replication]\n\
             compact_windows = [\"2s\", \"6s\"]\n\n[[database]]\nname = \"w\"\npath = \"w.db\"\n"
        ),
    )
    .unwrap();
}

#[test]
fn compacted_segments_on_s3_restore_the_same_and_verify_tells_outages_from_damage() {
    let mut s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB);",
    );
    config(d);
    let rep = cmd(d)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", s3.endpoint())
        .env("AWS_REGION", "us-east-1")
        .args(["replicate", "--db", "w", "--sync-interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // About 40 KB of incompressible pages a transaction for 7 s, a third of it deleted again.
    let script = "import sqlite3, sys, time\n\
        c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
        end = time.time() + 7\n\
        n = 0\n\
        while time.time() < end:\n\
        \x20   n += 1\n\
        \x20   c.execute('BEGIN IMMEDIATE')\n\
        \x20   for k in range(20):\n\
        \x20       c.execute('INSERT INTO c(n, v) VALUES (?, randomblob(2000))', (n,))\n\
        \x20   c.execute('DELETE FROM c WHERE n = ?', (n - 30,))\n\
        \x20   c.execute('COMMIT')\n\
        \x20   time.sleep(0.02)\n";
    let w = Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .status()
        .unwrap();
    assert!(w.success());
    std::thread::sleep(Duration::from_millis(800));
    let sent = Command::new("kill")
        .args(["-TERM", &rep.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let o = rep.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let out = s3.ok(d, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    let compacted = std::fs::read_dir(s3.data.path().join(BUCKET).join("pitr/w/generations"))
        .unwrap()
        .flat_map(|g| std::fs::read_dir(g.unwrap().path().join("segments")).unwrap())
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".L")
        })
        .count();
    assert!(compacted >= 2, "{compacted} compacted segments");
    s3.ok(
        d,
        &[
            "restore",
            "--db",
            "w",
            "--at",
            "latest",
            "--to",
            "latest.db",
        ],
    );
    assert_same_db(&db, &d.join("latest.db"));
    let out = s3.ok(d, &["verify", "--all"]);
    assert!(out.contains("chain:"), "{out}");

    // The server gone: the repository's failure, exit 4, no CHAIN finding.
    s3.kill();
    let o = s3.lifeboat(d, SECRET, &["verify", "--all", "--no-alert"]);
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("CHAIN"), "{}", stdout(&o));
}
