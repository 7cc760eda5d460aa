//! Damaged backups are caught by restore and verify, and a failed restore changes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn setup() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    tricky_db(&dir.path().join("app.db"));
    ok(
        dir.path(),
        &["backup", "--db", "app.db", "--repo", "file://./repo"],
    );
    let backups = dir.path().join("repo/app/backups");
    let data = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".sqlite.zst"))
        .unwrap();
    (dir, data)
}

fn leftovers(d: &Path) -> Vec<String> {
    std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("lifeboat-tmp") || n.contains("pre-restore"))
        .collect()
}

fn assert_restore_refused(d: &Path, expect: &str) {
    // Into a new path: nothing is created.
    let err = fails(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--to",
            "new.db",
        ],
        6,
    );
    assert!(err.contains("is corrupt") && err.contains(expect), "{err}");
    assert!(!d.join("new.db").exists());
    // Over an existing database with --force: it is left exactly as it was, and not moved.
    std::fs::write(d.join("live.db"), b"precious bytes").unwrap();
    fails(
        d,
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--to",
            "live.db",
            "--force",
        ],
        6,
    );
    assert_eq!(std::fs::read(d.join("live.db")).unwrap(), b"precious bytes");
    assert!(leftovers(d).is_empty(), "left behind: {:?}", leftovers(d));
    let err = fails(d, &["verify", "--repo", "file://./repo"], 6);
    assert!(err.contains("failed verification"), "{err}");
}

#[test]
fn truncated_object_is_refused() {
    let (dir, data) = setup();
    let len = std::fs::metadata(&data).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    assert_restore_refused(dir.path(), "truncated");
}

#[test]
fn bit_flip_is_refused() {
    let (dir, data) = setup();
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&data, bytes).unwrap();
    assert_restore_refused(dir.path(), "");
}

#[test]
fn missing_data_object_is_refused() {
    let (dir, data) = setup();
    std::fs::remove_file(&data).unwrap();
    assert_restore_refused(dir.path(), "missing");
}

#[test]
fn damaged_manifest_is_flagged_not_trusted() {
    let (dir, data) = setup();
    let manifest = PathBuf::from(data.to_string_lossy().replace(".sqlite.zst", ".json"));
    std::fs::write(&manifest, b"{ not json").unwrap();
    let out = ok(dir.path(), &["list", "--repo", "file://./repo"]);
    assert!(
        out.contains("0 complete backup(s)") && out.contains("DAMAGED"),
        "{out}"
    );
    fails(
        dir.path(),
        &["verify", "--all", "--repo", "file://./repo"],
        6,
    );
    let err = fails(
        dir.path(),
        &[
            "restore",
            "--db",
            "app.db",
            "--repo",
            "file://./repo",
            "--to",
            "x.db",
        ],
        6,
    );
    assert!(
        err.contains("no complete backup")
            && err.contains("is corrupt: manifest is not valid JSON"),
        "{err}"
    );
}

#[test]
fn verify_all_passes_on_good_backups() {
    let (dir, _) = setup();
    ok(
        dir.path(),
        &["backup", "--db", "app.db", "--repo", "file://./repo"],
    );
    let out = ok(
        dir.path(),
        &["--json", "verify", "--all", "--repo", "file://./repo"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verified"], 2);
    assert_eq!(v["failed"], 0);
}
