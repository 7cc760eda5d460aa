//! A backup killed with SIGKILL mid-upload leaves no manifest: it is never listed as complete,
//! the next backup works, and cleanup removes what it left.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rusqlite::Connection;

#[test]
fn kill_9_mid_upload_leaves_no_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("big.db");
    // Incompressible data, so the upload takes long enough to be interrupted.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE b (x BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
               INSERT INTO b SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    let backups = d.join("repo/big/backups");
    let mut child = cmd(d)
        .args([
            "backup",
            "--db",
            "big.db",
            "--repo",
            "file://./repo",
            "--compression-level",
            "1",
        ])
        // A killed process cannot remove its scratch directory: keep it inside this test's.
        .env("TMPDIR", d)
        .spawn()
        .unwrap();
    // Wait for the upload's staging file to hold data, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let staged = std::fs::read_dir(&backups).ok().and_then(|rd| {
            rd.flatten().find(|e| {
                e.file_name().to_string_lossy().contains(".sqlite.zst#")
                    && e.metadata().map(|m| m.len() > 0).unwrap_or(false)
            })
        });
        if staged.is_some() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "backup finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "upload never started");
        std::thread::sleep(Duration::from_millis(2));
    }
    let pid = child.id();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // The killed process could not remove its scratch directory.
    let leftover = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("lifeboat-{pid}-"))
        })
        .expect("the killed backup's scratch directory");

    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".json")),
        "no manifest after a crash: {names:?}"
    );
    let out = ok(d, &["--json", "list", "--repo", "file://./repo"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["databases"][0]["backups"].as_array().unwrap().len(), 0);
    assert_eq!(v["databases"][0]["incomplete"].as_array().unwrap().len(), 1);
    let human = ok(d, &["list", "--repo", "file://./repo"]);
    assert!(human.contains("INCOMPLETE"), "{human}");
    fails(
        d,
        &[
            "restore",
            "--db",
            "big.db",
            "--repo",
            "file://./repo",
            "--to",
            "r.db",
        ],
        5,
    );

    // The next backup works and is the only complete one. Using the same scratch directory, it
    // removes the dead process's leftover once that has been quiet for an hour.
    let aged = Command::new("touch")
        .args(["-d", "2 hours ago"])
        .arg(&leftover)
        .args(
            std::fs::read_dir(&leftover)
                .unwrap()
                .map(|e| e.unwrap().path()),
        )
        .status()
        .unwrap();
    assert!(aged.success());
    ok(
        d,
        &[
            "backup",
            "--db",
            "big.db",
            "--repo",
            "file://./repo",
            "--scratch-dir",
            ".",
            "--compression-level",
            "1",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", "file://./repo"])).unwrap();
    assert_eq!(v["databases"][0]["backups"].as_array().unwrap().len(), 1);
    assert!(
        !leftover.exists(),
        "stale scratch directory was not removed"
    );

    // Young leftovers are kept (they may be a running backup); old ones are removed.
    let out = ok(d, &["cleanup", "--repo", "file://./repo"]);
    assert!(out.contains("keep"), "{out}");
    ok(
        d,
        &["cleanup", "--repo", "file://./repo", "--older-than", "0s"],
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "list", "--repo", "file://./repo"])).unwrap();
    assert_eq!(v["databases"][0]["incomplete"].as_array().unwrap().len(), 0);
    assert_eq!(v["databases"][0]["backups"].as_array().unwrap().len(), 1);
    let names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the good backup's two objects remain: {names:?}"
    );
    ok(
        d,
        &[
            "restore",
            "--db",
            "big.db",
            "--repo",
            "file://./repo",
            "--to",
            "r.db",
        ],
    );
    assert_same_db(&db, &d.join("r.db"));
}
