//! Compacted segments larger than 8 MiB go to S3 as multipart uploads (`layout::upload_compacted`):
//! a full rollup (`.L254`) of a database of ~18 MB of incompressible rows, replicated by the
//! real replicator, compacted, restored at `latest` equal to the source (sqldiff) and verified,
//! with no incomplete upload left on the server. Then `compact` is killed with SIGKILL in the
//! middle of such an upload: the restore is still exact, the next `compact` finishes, and the
//! upload the killed one left is aborted by `cleanup` (ListMultipartUploads). Two compactions
//! at once upload the same rollup side by side, harmlessly.
//!
//! The server is moto's (see `common/moto.rs`): s3s-fs cannot hold a multipart upload under a
//! key as long as a compacted segment's.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::moto::Moto;
use common::replicating::Rep;
use common::s3::BUCKET;
use common::*;
use futures::StreamExt;
use object_store::ObjectStore;

/// Commits rows of 4,000 random bytes (and rewrites a few old ones) for `secs` seconds, and
/// at least `min` transactions of them (a slow machine writes as much).
const WRITER: &str = r#"
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
end = time.time() + float(sys.argv[2])
least, n = int(sys.argv[3]), 0
while time.time() < end or n < least:
    n += 1
    c.execute("BEGIN IMMEDIATE")
    for _ in range(60):
        c.execute("INSERT INTO big(v) VALUES (randomblob(4000))")
    c.execute("UPDATE big SET v = randomblob(4000) WHERE id IN (SELECT id FROM big ORDER BY random() LIMIT 3)")
    c.execute("COMMIT")
    time.sleep(0.08)
"#;

fn lifeboat(d: &Path, moto: &Moto) -> Command {
    let mut c = cmd(d);
    c.envs(moto.env());
    c
}

fn ok_on(d: &Path, moto: &Moto, args: &[&str]) -> String {
    let o = lifeboat(d, moto).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "lifeboat {args:?} ({:?}): {}{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// The replicator running while the writer commits for `secs` (and `least` transactions),
/// then stopped (SIGTERM).
fn replicate_while_writing(d: &Path, moto: &Moto, secs: f64, least: u32) {
    let mut c = lifeboat(d, moto);
    c.args(["replicate", "--db", "w", "--sync-interval", "200ms"]);
    let rep = Rep::start(c, d);
    let w = Command::new("python3")
        .args(["-c", WRITER])
        .arg(d.join("w.db"))
        .arg(secs.to_string())
        .arg(least.to_string())
        .status()
        .unwrap();
    assert!(w.success());
    std::thread::sleep(Duration::from_millis(800));
    rep.stop();
}

/// Every segment object's name and size.
fn segments(moto: &Moto) -> Vec<(String, u64)> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(common::s3::KEY)
        .with_secret_access_key(common::s3::SECRET)
        .with_endpoint(moto.endpoint())
        .with_allow_http(true)
        .build()
        .unwrap();
    common::s3::rt().block_on(async {
        let prefix = object_store::path::Path::from("pitr/w/generations");
        let mut out = Vec::new();
        let mut list = store.list(Some(&prefix));
        while let Some(m) = list.next().await {
            let m = m.unwrap();
            if m.location.as_ref().contains("/segments/") {
                out.push((m.location.filename().unwrap().to_string(), m.size));
            }
        }
        out
    })
}

fn restore_latest(d: &Path, moto: &Moto, to: &str) {
    let _ = std::fs::remove_file(d.join(to));
    ok_on(
        d,
        moto,
        &["restore", "--db", "w", "--at", "latest", "--to", to],
    );
    assert_same_db(&d.join("w.db"), &d.join(to));
}

/// Start `compact` and SIGKILL it a random moment after its multipart upload appears on the
/// server; whether it died with the upload still incomplete.
fn kill_mid_upload(d: &Path, moto: &Moto, attempt: u32) -> bool {
    let mut c: Child = lifeboat(d, moto)
        .arg("compact")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if c.try_wait().unwrap().is_some() {
            return false; // finished before its upload could be caught
        }
        if !moto.uploads("pitr/").is_empty() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            std::thread::sleep(Duration::from_millis(((nanos / 7 + attempt) % 120) as u64));
            let _ = c.kill();
            let _ = c.wait();
            // A request it sent just before may still be served (a completion, too).
            std::thread::sleep(Duration::from_millis(500));
            return !moto.uploads("pitr/").is_empty();
        }
        assert!(Instant::now() < deadline, "compact never started an upload");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn full_rollups_go_up_in_parts_and_a_killed_upload_is_cleaned_up() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(
        &d.join("w.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB);",
    );
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"s3://{BUCKET}/pitr\"\n\n[replication]\n\
             compact_windows = [\"2s\", \"6s\"]\n\n[[database]]\nname = \"w\"\npath = \"w.db\"\n"
        ),
    )
    .unwrap();
    // 70 transactions of 240 KB: some 17 MB, twice the threshold.
    replicate_while_writing(d, &moto, 7.0, 70);
    let out = ok_on(d, &moto, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    // The database started empty, so its rollup changed every page: a full one, in parts.
    let segs = segments(&moto);
    let full: Vec<&(String, u64)> = segs.iter().filter(|(n, _)| n.contains(".L254.")).collect();
    assert_eq!(full.len(), 1, "{segs:?}");
    assert!(
        full[0].1 > 8 << 20,
        "not past the 8 MiB threshold: {segs:?}"
    );
    assert!(
        moto.uploads("pitr/").is_empty(),
        "an upload left incomplete"
    );
    restore_latest(d, &moto, "latest.db");
    let out = ok_on(d, &moto, &["verify", "--all"]);
    assert!(out.contains("chain:"), "{out}");

    // More commits, then compactions killed with SIGKILL until one dies mid-upload (each
    // attempt that finished first gets new commits to compact).
    let mut landed = false;
    for attempt in 0..6 {
        replicate_while_writing(d, &moto, 4.5, 0);
        if kill_mid_upload(d, &moto, attempt) {
            landed = true;
            break;
        }
    }
    assert!(landed, "no kill landed in the middle of an upload");
    let orphans = moto.uploads("pitr/");
    assert!(orphans.iter().all(|k| k.contains(".L")), "{orphans:?}");
    // What the killed compaction left is invisible to restores: still exact.
    restore_latest(d, &moto, "after-kill.db");
    // The next compaction finishes, and restores read what it wrote.
    let out = ok_on(d, &moto, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    restore_latest(d, &moto, "recompacted.db");
    ok_on(d, &moto, &["verify", "--all"]);
    // The killed upload is still on the server (no claim names it), until cleanup finds it
    // with ListMultipartUploads and aborts it.
    assert_eq!(moto.uploads("pitr/"), orphans);
    std::thread::sleep(Duration::from_millis(1100));
    let out = ok_on(d, &moto, &["cleanup", "--older-than", "1s"]);
    assert!(out.contains("unclaimed upload"), "{out}");
    assert!(
        moto.uploads("pitr/").is_empty(),
        "{:?}",
        moto.uploads("pitr/")
    );
    restore_latest(d, &moto, "cleaned.db");

    // Two compactions at once, each uploading the same full rollup in parts: both finish, the
    // restore is exact, nothing is left incomplete.
    replicate_while_writing(d, &moto, 4.5, 0);
    let both: Vec<Child> = (0..2)
        .map(|_| {
            lifeboat(d, &moto)
                .arg("compact")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in both {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    restore_latest(d, &moto, "twice.db");
    ok_on(d, &moto, &["verify", "--all"]);
    assert!(
        moto.uploads("pitr/").is_empty(),
        "{:?}",
        moto.uploads("pitr/")
    );
}
