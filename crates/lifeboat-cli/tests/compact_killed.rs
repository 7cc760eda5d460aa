//! `lifeboat compact` on a local repository killed with SIGKILL the moment it places a compacted
//! segment (strace's fault injection at its first link or rename): the staged file it leaves
//! (`<segment>#N`, as big as the segment) is never read by a restore, the next `compact` writes
//! the segment again, and `cleanup` removes the staged file once older than `--older-than`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                todo.push(e);
            } else {
                out.push(e);
            }
        }
    }
    out.sort();
    out
}

fn staged(d: &Path) -> Vec<PathBuf> {
    walk(&d.join("repo/w/generations"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains('#'))
        .collect()
}

fn restore_latest(d: &Path, to: &str) {
    let _ = std::fs::remove_file(d.join(to));
    ok(d, &["restore", "--db", "w", "--at", "latest", "--to", to]);
    assert_same_db(&d.join("w.db"), &d.join(to));
}

#[test]
fn a_compaction_killed_while_placing_a_segment_leaves_nothing_cleanup_does_not_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(
        &d.join("w.db"),
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, v BLOB);",
    );
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n\n[replication]\n\
         compact_windows = [\"2s\", \"6s\"]\n\n[[database]]\nname = \"w\"\npath = \"w.db\"\n",
    )
    .unwrap();
    let rep = cmd(d)
        .args(["replicate", "--db", "w", "--sync-interval", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let script = "import sqlite3, sys, time\n\
        c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
        end = time.time() + 5\n\
        n = 0\n\
        while time.time() < end:\n\
        \x20   n += 1\n\
        \x20   c.execute('INSERT INTO c(n, v) VALUES (?, randomblob(3000))', (n,))\n\
        \x20   time.sleep(0.02)\n";
    let w = Command::new("python3")
        .args(["-c", script])
        .arg(d.join("w.db"))
        .status()
        .unwrap();
    assert!(w.success());
    std::thread::sleep(Duration::from_millis(700));
    common::replicating::stop_replicator(rep);

    // Killed as it places its first compacted segment: written in full beside its name.
    let status = Command::new("strace")
        .args([
            "-f",
            "-o",
            "/dev/null",
            "-e",
            "trace=link,linkat,rename,renameat,renameat2",
        ])
        .args([
            "-e",
            "inject=link,linkat,rename,renameat,renameat2:signal=SIGKILL:when=1",
        ])
        .arg(bin())
        .arg("compact")
        .current_dir(d)
        .status()
        .expect("strace (scripts/test.sh installs it)");
    assert!(!status.success());
    let left = staged(d);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(
        left[0].to_string_lossy().contains(".L1.seg.zst#"),
        "{left:?}"
    );
    restore_latest(d, "killed.db");
    // The next compaction writes it again; restores read it.
    let out = ok(d, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    restore_latest(d, "compacted.db");
    ok(d, &["verify", "--all"]);
    // The staged file stays until cleanup, which leaves a young one alone.
    assert_eq!(staged(d), left);
    let out = ok(d, &["cleanup"]);
    assert_eq!(staged(d), left, "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    let out = ok(d, &["cleanup", "--older-than", "1s", "--dry-run"]);
    assert!(out.contains("would remove"), "{out}");
    assert_eq!(staged(d), left, "{out}");
    let out = ok(d, &["cleanup", "--older-than", "1s"]);
    assert!(out.contains("removed"), "{out}");
    assert!(staged(d).is_empty(), "{out}");
    let again = ok(d, &["cleanup", "--older-than", "1s"]);
    assert!(!again.contains("a segment's interrupted upload"), "{again}");
    restore_latest(d, "cleaned.db");
}
