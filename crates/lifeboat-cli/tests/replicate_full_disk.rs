//! Replication onto a full disk: a local repository on a small tmpfs (mounted by the test: needs
//! root, as in CI), filled up with a plain file. `lifeboat compact` fails with exit 8, one line
//! naming the step, and leaves no segment a restore would read; once space is freed it
//! compacts. The daemon replicating onto it logs the failure once, tells `replication.stalled`
//! once the lag passes `max_lag` while the application goes on committing, retries with backoff
//! (its error count stays small, no spin), and recovers by itself once space is freed:
//! `replication.recovered`, and `restore --at latest` equals the source. The same when the disk
//! is full before the first generation: its snapshot waits for space, loudly.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::daemon::{lines_with, wait_for_or, Daemon};
use common::receiver::Receiver;
use common::replicating::{prefix, Writer};
use common::tmpfs::Tmpfs;
use common::*;

/// Every file under `dir`, relative to it, sorted.
fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                todo.push(e);
            } else {
                out.push(e.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

fn wal_db(path: &Path) {
    sqlite3(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
}

fn restore_latest(d: &Path, to: &str) -> PathBuf {
    let p = d.join(to);
    let _ = std::fs::remove_file(&p);
    ok(d, &["restore", "--db", "w", "--at", "latest", "--to", to]);
    p
}

/// The segment objects of every generation (shipped and compacted).
fn segment_names(repo: &Path) -> Vec<String> {
    walk(&repo.join("w/generations"))
        .into_iter()
        .filter(|f| f.contains("/segments/"))
        .collect()
}

#[test]
fn compact_on_a_full_disk_fails_cleanly_and_compacts_once_space_is_freed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = Tmpfs::mount(&d.join("small"), "24m");
    let repo = d.join("small/repo");
    let db = d.join("w.db");
    wal_db(&db);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./small/repo\"\n\n[replication]\n\
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
    let writer = Writer::numbered(&db, 1000);
    std::thread::sleep(Duration::from_secs(7));
    let commits = writer.finish();
    std::thread::sleep(Duration::from_millis(700));
    common::replicating::stop_replicator(rep);
    let before = segment_names(&repo);

    small.fill();
    let err = fails(d, &["compact"], 8);
    assert!(err.contains("no space left on device"), "{err}");
    assert!(err.contains("compact"), "the step is named: {err}");
    // Nothing new a restore would read; no staging file left to fill the disk further.
    let after = segment_names(&repo);
    assert_eq!(before, after, "{err}");
    let stray: Vec<String> = walk(&repo)
        .into_iter()
        .filter(|f| f.contains('#'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    // Its scratch space on the full disk: the same exit, that step named, nothing left there.
    let err = fails(d, &["compact", "--scratch-dir", "small"], 8);
    assert!(
        err.contains("scratch") && err.contains("no space left"),
        "{err}"
    );
    let left: Vec<String> = walk(&d.join("small"))
        .into_iter()
        .filter(|f| !f.starts_with("repo/") && f != "fill")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(before, segment_names(&repo));
    let latest = restore_latest(d, "full.db");
    assert_same_db(&db, &latest);
    assert_eq!(prefix(&latest), commits as u64);

    // Space back: the next compaction writes everything, and restores read it.
    small.free();
    let out = ok(d, &["compact"]);
    assert!(out.contains("wrote"), "{out}");
    let compacted: Vec<String> = segment_names(&repo)
        .into_iter()
        .filter(|f| f.contains(".L"))
        .collect();
    assert!(
        compacted.iter().any(|f| f.contains(".L1.")),
        "{compacted:?}"
    );
    let latest = restore_latest(d, "freed.db");
    assert_same_db(&db, &latest);
    ok(d, &["verify", "--all"]);
}

/// The (event, source) of every webhook body received, in order.
fn events(hook: &Receiver) -> Vec<String> {
    hook.got()
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|v| v["event"].as_str().unwrap_or("").to_string())
        .collect()
}

fn count(all: &[String], event: &str) -> usize {
    all.iter().filter(|e| *e == event).count()
}

fn errors_total(daemon: &Daemon) -> f64 {
    use std::io::{Read, Write};
    let addr = daemon.metrics_addr().expect("metrics address logged");
    let mut c = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with("lifeboat_replication_errors_total{") && l.contains("\"w\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn the_daemon_on_a_full_disk_stalls_loudly_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = Tmpfs::mount(&d.join("small"), "16m");
    let db = d.join("w.db");
    wal_db(&db);
    let hook = Receiver::start(&[]);
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./small/repo\"\n\
             [daemon]\nschedule = \"0 0 1 1 *\"\n\
             [replication]\nsync_interval = \"200ms\"\nmax_lag = \"3s\"\n\
             [alerts]\nwebhook_url = \"{}/hooks/x\"\n\
             [[database]]\nname = \"w\"\npath = \"w.db\"\nreplicate = true\n",
            hook.url
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(d, "d", &["--metrics-addr", "127.0.0.1:0"], &[]);
    wait_for_or(
        "replicating",
        60,
        &mut || daemon.log().contains("replicating") && daemon.metrics_addr().is_some(),
        || daemon.log(),
    );
    let writer = Writer::numbered(&db, 1000);
    std::thread::sleep(Duration::from_secs(2));
    small.fill();
    let at_fill = writer.commits();
    wait_for_or(
        "replication.stalled",
        60,
        &mut || count(&events(&hook), "replication.stalled") == 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    // The application goes on committing; the daemon retries with backoff, not in a loop,
    // and says what fails once.
    std::thread::sleep(Duration::from_secs(4));
    assert!(writer.commits() > at_fill + 20, "the writer was held up");
    let errors = errors_total(&daemon);
    assert!(
        (1.0..=12.0).contains(&errors),
        "{errors} failed syncs\n{}",
        daemon.log()
    );
    let log = daemon.log();
    // (The lease renewals and the event log fail on the same disk, and say so on their own.)
    assert_eq!(
        lines_with(&log, "write segment: no space left on device (retrying)"),
        1,
        "{log}"
    );
    assert_eq!(count(&events(&hook), "replication.recovered"), 0);

    small.free();
    wait_for_or(
        "replication.recovered",
        60,
        &mut || count(&events(&hook), "replication.recovered") == 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    let commits = writer.finish();
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let all = events(&hook);
    assert_eq!(count(&all, "replication.stalled"), 1, "{all:?}");
    assert_eq!(count(&all, "replication.recovered"), 1, "{all:?}");
    let restored = restore_latest(d, "restored.db");
    assert_same_db(&db, &restored);
    assert_eq!(prefix(&restored), commits as u64);
    let stray: Vec<String> = walk(&d.join("small/repo"))
        .into_iter()
        .filter(|f| f.contains('#'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    ok(d, &["verify", "--all"]);
}

/// Room for the lease but not for the first generation's snapshot: the open fails, is retried
/// with backoff, the stall is told, and once space is freed the generation starts and holds
/// every commit; what the failed snapshots left is an incomplete backup at most, which
/// `cleanup` removes.
#[test]
fn the_daemon_starting_on_a_full_disk_waits_loudly_for_its_first_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let small = Tmpfs::mount(&d.join("small"), "8m");
    std::fs::create_dir_all(d.join("small/repo")).unwrap();
    let db = d.join("w.db");
    wal_db(&db);
    sqlite3(
        &db,
        "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < 2000) \
         INSERT INTO c(n, k, v) SELECT 0, x, randomblob(1000) FROM i;",
    );
    let hook = Receiver::start(&[]);
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./small/repo\"\n\
             [daemon]\nschedule = \"0 0 1 1 *\"\n\
             [replication]\nsync_interval = \"200ms\"\nmax_lag = \"3s\"\n\
             [alerts]\nwebhook_url = \"{}/hooks/x\"\n\
             [[database]]\nname = \"w\"\npath = \"w.db\"\nreplicate = true\n",
            hook.url
        ),
    )
    .unwrap();
    small.fill_leaving(256 << 10);
    let writer = Writer::numbered(&db, 1000);
    let mut daemon = Daemon::start(d, "d", &["--metrics-addr", "127.0.0.1:0"], &[]);
    wait_for_or(
        "replication.stalled",
        60,
        &mut || count(&events(&hook), "replication.stalled") == 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    let errors = errors_total(&daemon);
    assert!(
        (1.0..=12.0).contains(&errors),
        "{errors} failed opens\n{}",
        daemon.log()
    );
    assert!(
        !daemon.log().contains("replicating database=w"),
        "{}",
        daemon.log()
    );
    small.free();
    wait_for_or(
        "replication.recovered",
        60,
        &mut || count(&events(&hook), "replication.recovered") == 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    let commits = writer.finish();
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    assert_eq!(
        lines_with(&log, "no space left on device (retrying)"),
        1,
        "{log}"
    );
    let restored = restore_latest(d, "restored.db");
    assert_same_db(&db, &restored);
    assert_eq!(prefix(&restored), commits as u64);
    ok(d, &["verify", "--all"]);
    let pitr = ok(d, &["list", "--pitr", "--db", "w"]);
    assert!(!pitr.contains("gap"), "{pitr}");
    std::thread::sleep(Duration::from_millis(1100));
    ok(d, &["cleanup", "--older-than", "1s"]);
    let stray: Vec<String> = walk(&d.join("small/repo"))
        .into_iter()
        .filter(|f| f.contains('#') || f.ends_with(".pending"))
        .collect();
    assert!(stray.is_empty(), "{stray:?}\n{pitr}");
}
