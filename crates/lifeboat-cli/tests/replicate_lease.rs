//! One replicator per database and repository across hosts, for `lifeboat replicate` too: two
//! "hosts" (two directories, each with its own `app.db` and config, one repository) replicate
//! under one database name. The second is refused while the first holds the lease, and writes
//! nothing; it starts once the first stops, and at once after a `kill -9` of it (its process is
//! gone on this host). A first one frozen past its lease is taken over, and once thawed it stops
//! without shipping more. The database file's own lock, which fences two replicators of one
//! file, cannot see any of this: the files differ.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::replicating::stop_replicator as stop;
use common::*;

/// A "host": its directory, with `app.db` and a config naming the shared repository.
fn host(root: &Path, name: &str) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://{}\"\n\n[daemon]\nlease_ttl = \"5s\"\n\n\
             [[database]]\nname = \"app\"\npath = \"app.db\"\n",
            root.join("repo").display()
        ),
    )
    .unwrap();
    sqlite3(
        &d.join("app.db"),
        &format!(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(host TEXT); INSERT INTO t VALUES ('{name}');"
        ),
    );
    d
}

fn replicator(d: &Path) -> Child {
    cmd(d)
        .args(["replicate", "--db", "app", "--sync-interval", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lifeboat replicate")
}

fn generations(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("repo/app/generations"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Wait until the repository holds `n` generations.
fn wait_generations(root: &Path, n: usize) {
    let since = Instant::now();
    while generations(root).len() < n {
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "no generation {n} in 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// The second replicator's refusal: exit 3, one line naming the holder's pid, nothing written.
fn refused(b: &Path, holder: &Child, root: &Path) {
    let before = generations(root);
    let o = run(b, &["replicate", "--db", "app", "--sync-interval", "200ms"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{}{err}", stdout(&o));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("app is replicated into this repository by another lifeboat")
            && err.contains(&format!("pid {}", holder.id())),
        "{err}"
    );
    assert_eq!(
        generations(root),
        before,
        "the refused replicator wrote a generation"
    );
}

#[test]
fn one_replicator_per_database_name_and_repository_across_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (a, b) = (host(root, "a"), host(root, "b"));

    // A replicates; B is refused, twice in a row, and writes nothing.
    let ra = replicator(&a);
    wait_generations(root, 1);
    refused(&b, &ra, root);
    refused(&b, &ra, root);

    // A stops cleanly and gives the lease up: B starts at once.
    stop(ra);
    let rb = replicator(&b);
    wait_generations(root, 2);
    refused(&a, &rb, root);

    // kill -9 of B: its process is gone on this host, so A need not wait for the lease to end.
    let mut rb = rb;
    rb.kill().unwrap();
    rb.wait().unwrap();
    let ra = replicator(&a);
    wait_generations(root, 3);

    // A frozen past its 5 s lease: B takes over; A, thawed, stops at its next renewal without
    // shipping anything more.
    signal(&ra, "-STOP");
    std::thread::sleep(Duration::from_millis(5500));
    let rb = replicator(&b);
    wait_generations(root, 4);
    let settled = generations(root);
    signal(&ra, "-CONT");
    let out = ra.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{}{err}", stdout(&out));
    assert!(
        err.contains("another lifeboat took app over while this one's lease had expired"),
        "{err}"
    );
    assert_eq!(generations(root), settled);
    stop(rb);
}
