//! What a restore (or import) does to the file it replaces: the old one is always kept, under
//! a name nothing else uses; two runs on one target never mix; a symbolic link is followed;
//! a dry run changes nothing.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use rusqlite::Connection;

/// A database whose one row says `tag`, backed up into `./repo` as database `app`.
fn backup_tagged(d: &Path, tag: &str) -> String {
    let db = d.join("app.db");
    let _ = std::fs::remove_file(&db);
    let c = Connection::open(&db).unwrap();
    c.execute_batch(&format!(
        "CREATE TABLE v (tag TEXT); INSERT INTO v VALUES ('{tag}');"
    ))
    .unwrap();
    drop(c);
    let out = ok(
        d,
        &[
            "--json",
            "backup",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["backups"][0]["id"].as_str().unwrap().to_string()
}

fn tag(db: &Path) -> String {
    sqlite3(db, "SELECT tag FROM v")
}

/// Every file in `d` whose name starts with `prefix`.
fn named(d: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    files_starting_with(d, prefix)
}

fn restore_args<'a>(id: &'a str, to: &'a str) -> Vec<&'a str> {
    vec![
        "restore",
        "--db",
        "app",
        "--repo",
        "file://./repo",
        "--backup",
        id,
        "--to",
        to,
        "--force",
    ]
}

#[test]
fn three_forced_restores_in_one_second_keep_every_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = backup_tagged(d, "backup");
    std::fs::write(d.join("x.db"), b"the original, precious").unwrap();
    for _ in 0..3 {
        ok(d, &restore_args(&id, "x.db"));
    }
    let asides = named(d, "x.db.pre-restore-");
    assert_eq!(asides.len(), 3, "{asides:?}");
    let kept: Vec<Vec<u8>> = asides.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(
        kept.iter().any(|k| k == b"the original, precious"),
        "the original is gone"
    );
    assert_eq!(tag(&d.join("x.db")), "backup");

    // import --force the same way.
    let sql = d.join("dump.sql");
    std::fs::write(
        &sql,
        "CREATE TABLE v (tag TEXT);\nINSERT INTO v VALUES ('import');\n",
    )
    .unwrap();
    std::fs::write(d.join("y.db"), b"another original").unwrap();
    for _ in 0..3 {
        ok(d, &["import", "dump.sql", "--to", "y.db", "--force"]);
    }
    let asides = named(d, "y.db.pre-import-");
    assert_eq!(asides.len(), 3, "{asides:?}");
    assert!(asides
        .iter()
        .any(|p| std::fs::read(p).unwrap() == b"another original"));
}

#[test]
fn concurrent_restores_to_one_target_never_report_the_wrong_content() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = backup_tagged(d, "A");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = backup_tagged(d, "B");
    for round in 0..12 {
        let target = format!("t{round}.db");
        std::fs::write(d.join(&target), format!("original {round}")).unwrap();
        let spawn = |id: &str| {
            cmd(d)
                .args(["--json"])
                .args(restore_args(id, &target))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (pa, pb) = (spawn(&a), spawn(&b));
        let (oa, ob) = (
            pa.wait_with_output().unwrap(),
            pb.wait_with_output().unwrap(),
        );
        let mut succeeded = Vec::new();
        for (o, want) in [(&oa, "A"), (&ob, "B")] {
            match o.status.code() {
                Some(0) => {
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                    succeeded.push((want, v["moved_aside"].as_str().map(str::to_string)));
                }
                // The other run held the target: refused, naming it.
                Some(7) => assert!(
                    stderr(o).contains("another lifeboat command"),
                    "{}",
                    stderr(o)
                ),
                other => panic!("round {round}: exit {other:?}: {}", stderr(o)),
            }
        }
        assert!(!succeeded.is_empty(), "round {round}: neither ran");
        // The target holds one of the successful runs' backups; every successful run's image
        // is the target or what the next run moved aside; the original is kept.
        let now = tag(&d.join(&target));
        assert!(succeeded.iter().any(|(w, _)| *w == now), "round {round}");
        let asides = named(d, &format!("{target}.pre-restore-"));
        let originals = asides
            .iter()
            .filter(|p| std::fs::read(p).unwrap() == format!("original {round}").as_bytes())
            .count();
        assert_eq!(
            originals, 1,
            "round {round}: the original must be kept once"
        );
        for (w, _) in &succeeded {
            // The original aside is text, not a database: only the others are asked their tag.
            let somewhere = *w == now
                || asides
                    .iter()
                    .filter(|p| std::fs::read(p).unwrap() != format!("original {round}").as_bytes())
                    .any(|p| tag(p) == *w);
            assert!(somewhere, "round {round}: {w}'s restore is nowhere");
        }
        assert!(named(d, &format!("{target}.lifeboat-")).is_empty());
    }
}

#[test]
fn force_onto_a_symlink_restores_the_file_it_points_at() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = backup_tagged(d, "restored");
    std::fs::create_dir(d.join("data")).unwrap();
    std::fs::write(d.join("data/real.db"), b"old content").unwrap();
    std::os::unix::fs::symlink("data/real.db", d.join("link.db")).unwrap();
    let out = ok(d, &restore_args(&id, "link.db"));
    assert!(out.contains("symbolic link"), "{out}");
    assert!(d
        .join("link.db")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(tag(&d.join("data/real.db")), "restored");
    let asides = named(&d.join("data"), "real.db.pre-restore-");
    assert_eq!(asides.len(), 1);
    assert_eq!(std::fs::read(&asides[0]).unwrap(), b"old content");
}

#[test]
fn dry_run_checks_everything_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = backup_tagged(d, "backup");
    std::fs::write(d.join("x.db"), b"keep me").unwrap();
    let out = ok(
        d,
        &[
            "restore",
            "--db",
            "app",
            "--repo",
            "file://./repo",
            "--to",
            "x.db",
            "--force",
            "--dry-run",
        ],
    );
    assert!(
        out.contains("dry run") && out.contains("would move the existing database aside"),
        "{out}"
    );
    assert_eq!(std::fs::read(d.join("x.db")).unwrap(), b"keep me");
    assert_eq!(named(d, "x.db.").len(), 0, "{:?}", named(d, "x.db."));
    // Without --force it is refused as the real run would be.
    fails(
        d,
        &[
            "restore",
            "--db",
            "app",
            "--repo",
            "file://./repo",
            "--to",
            "x.db",
            "--dry-run",
        ],
        7,
    );
    // Into a new path: nothing is created.
    ok(
        d,
        &[
            "restore",
            "--db",
            "app",
            "--repo",
            "file://./repo",
            "--to",
            "new.db",
            "--dry-run",
        ],
    );
    assert!(named(d, "new.db").is_empty());
    // A damaged backup fails the dry run as it would fail the restore.
    let data = d.join(format!("repo/app/backups/{id}.sqlite.zst"));
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&data, bytes).unwrap();
    fails(
        d,
        &[
            "restore",
            "--db",
            "app",
            "--repo",
            "file://./repo",
            "--to",
            "new.db",
            "--dry-run",
        ],
        6,
    );
    assert!(named(d, "new.db").is_empty());
}

#[test]
fn restore_waits_for_no_one_and_leaves_no_lock_behind() {
    // A killed restore leaves its lock file; the kernel released the lock with the process, so
    // the next restore goes ahead and cleans up the killed run's temp file.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = backup_tagged(d, "backup");
    // flock(1) holds the lock itself (-o: its child does not inherit it), as a lifeboat would.
    // Its child says when the lock is held; the lock is kept until the test kills flock.
    let held = d.join("held");
    let mut child = Command::new("flock")
        .args(["-x", "-o"])
        .arg(d.join("z.db.lifeboat-lock"))
        .args(["sh", "-c", "touch \"$0\"; exec sleep 60"])
        .arg(&held)
        .process_group(0)
        .spawn()
        .unwrap();
    while !held.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let err = fails(d, &restore_args(&id, "z.db"), 7);
    assert!(err.contains("another lifeboat command"), "{err}");
    // flock and its sleep: the lock goes with flock.
    Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status()
        .unwrap();
    child.wait().unwrap();
    std::fs::write(
        d.join("z.db.lifeboat-tmp-99999-deadbeef"),
        b"left by a killed run",
    )
    .unwrap();
    ok(d, &restore_args(&id, "z.db"));
    assert_eq!(tag(&d.join("z.db")), "backup");
    assert!(
        named(d, "z.db.lifeboat-").is_empty(),
        "{:?}",
        named(d, "z.db.")
    );
}
