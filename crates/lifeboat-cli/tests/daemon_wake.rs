//! The daemon's replication wakes on change (inotify), with real processes: a python writer
//! commits to a fleet in one directory and a database in another; the daemon watches each
//! directory once (the kernel's own count, from `/proc/<pid>/fdinfo`), ships what the events
//! point at while it runs (with the safety sweep turned off, `LIFEBOAT_FAULT=no-sweep`, so
//! only the events can wake it), drops a directory's watch when its last database leaves the
//! config, and falls back to the stat poll, told once, when inotify is off or out of watches.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::daemon::{lines_with, wait_for_or, Daemon};
use common::replicating::{burst_then_checkpoint, prefix};
use common::*;

/// Commits numbered transactions (1 to 20 rows, some deletes) to the databases given, in a
/// random order, until `stop` exists; each database's commits are logged to `<db>.log`.
const WRITER: &str = r#"
import sqlite3, sys, time, os, random
stop, dbs = sys.argv[1], sys.argv[2:]
conns = [sqlite3.connect(p, isolation_level=None, timeout=30) for p in dbs]
logs = [open(p + ".log", "w") for p in dbs]
n = [0] * len(dbs)
while not os.path.exists(stop):
    i = random.randrange(len(dbs))
    c = conns[i]
    n[i] += 1
    c.execute("BEGIN IMMEDIATE")
    for k in range(random.choice([1, 2, 20])):
        c.execute("INSERT INTO c(n, k, v) VALUES (?, ?, randomblob(?))", (n[i], k, random.choice([10, 500])))
    if n[i] % 7 == 0:
        c.execute("DELETE FROM c WHERE n = ? AND k > 0", (n[i] - 3,))
    c.execute("COMMIT")
    logs[i].write(f"{n[i]}\n")
    logs[i].flush()
    time.sleep(random.choice([0.002, 0.01, 0.03]))
"#;

fn wal_db(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    sqlite3(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
}

/// One writer process over several databases.
struct Writer {
    child: Child,
    stop: PathBuf,
    dbs: Vec<PathBuf>,
}

impl Writer {
    fn start(dir: &Path, dbs: &[PathBuf]) -> Writer {
        let stop = dir.join("writer.stop");
        let child = Command::new("python3")
            .args(["-c", WRITER])
            .arg(&stop)
            .args(dbs)
            .spawn()
            .unwrap();
        Writer {
            child,
            stop,
            dbs: dbs.to_vec(),
        }
    }

    fn commits(db: &Path) -> u64 {
        let mut log = db.as_os_str().to_owned();
        log.push(".log");
        std::fs::read_to_string(PathBuf::from(log))
            .map(|t| t.lines().count() as u64)
            .unwrap_or(0)
    }

    /// Stop it; each database's commit count.
    fn finish(mut self) -> Vec<u64> {
        std::fs::write(&self.stop, "").unwrap();
        assert!(self.child.wait().unwrap().success());
        self.dbs.iter().map(|d| Writer::commits(d)).collect()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `restore --at latest` of `db` (while the daemon runs) equals `source` by sqldiff.
fn restores_equal(d: &Path, db: &str, source: &Path) -> bool {
    let to = d.join(format!("restored-{db}.db"));
    let _ = std::fs::remove_file(&to);
    let o = cmd(d)
        .args(["--quiet", "restore", "--db", db, "--at", "latest", "--to"])
        .arg(&to)
        .output()
        .unwrap();
    o.status.success() && sqldiff(source, &to).is_empty()
}

/// Wait until every database's latest restore equals its source, the daemon still running:
/// with no sweep and nothing written any more, only an event (or a stat poll) ships the rest.
/// Then check each is the whole, exact prefix of its commits.
fn wait_shipped(d: &Path, daemon: &Daemon, dbs: &[(&str, PathBuf)], commits: &[u64]) {
    for ((name, path), n) in dbs.iter().zip(commits) {
        wait_for_or(
            &format!("{name}'s last commits in the repository"),
            90,
            &mut || restores_equal(d, name, path),
            || daemon.log(),
        );
        let restored = d.join(format!("restored-{name}.db"));
        assert_same_db(path, &restored);
        assert_eq!(prefix(&restored), *n, "{name}");
    }
}

/// The inotify watches the process holds, as the kernel lists them (None: no inotify at all).
fn inotify_watches(pid: u32) -> Option<usize> {
    let mut found = None;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let fd = fd.unwrap();
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if target.to_string_lossy() != "anon_inode:inotify" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        *found.get_or_insert(0) += info
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
    }
    found
}

const FLEET: &str = "[[database]]\nname = \"tenants\"\nglob = \"tenants/*.db\"\nreplicate = true\n";

/// lifeboat.toml: a local repository, syncs every 300 ms, the databases `dbs`. Neither a
/// lease renewal nor a timed checkpoint comes during a test (each would sync): what ships
/// once the writer stopped was woken by an event, or polled by stat.
fn write_config(d: &Path, dbs: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n\
             [daemon]\nschedule = \"0 0 1 1 *\"\nlease_ttl = \"6h\"\n\
             [replication]\nsync_interval = \"300ms\"\ncheckpoint_frames = 50\ncheckpoint_interval = \"6h\"\n{dbs}"
        ),
    )
    .unwrap();
}

fn first_generations(d: &Path, daemon: &Daemon, names: &[&str]) {
    wait_for_or(
        "every replicated database's first generation",
        90,
        &mut || {
            names
                .iter()
                .all(|n| d.join(format!("repo/{n}/generations")).exists())
        },
        || daemon.log(),
    );
}

#[test]
fn a_fleet_in_one_directory_is_shipped_on_its_changes_with_one_watch() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tenants = ["t1", "t2", "t3", "t4", "t5"];
    for t in tenants {
        wal_db(&d.join(format!("tenants/{t}.db")));
    }
    wal_db(&d.join("other/solo.db"));
    let solo = "[[database]]\nname = \"solo\"\npath = \"other/solo.db\"\nreplicate = true\n";
    write_config(d, &format!("{FLEET}{solo}"));
    let mut daemon = Daemon::start(d, "d", &[], &[("LIFEBOAT_FAULT", "no-sweep".to_string())]);
    let mut names: Vec<&str> = tenants.to_vec();
    names.push("solo");
    first_generations(d, &daemon, &names);
    // One watch per directory, whatever the number of databases in it.
    let pid = daemon.child.id();
    assert_eq!(inotify_watches(pid), Some(2), "{}", daemon.log());
    assert!(daemon
        .log()
        .contains("replication wakes on change (inotify) directories=2 databases=6 polled=0"));
    // One writer process over four tenants and solo; t5 stays idle.
    let written: Vec<(&str, PathBuf)> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|t| (*t, d.join(format!("tenants/{t}.db"))))
        .chain([("solo", d.join("other/solo.db"))])
        .collect();
    let paths: Vec<PathBuf> = written.iter().map(|(_, p)| p.clone()).collect();
    let writer = Writer::start(d, &paths);
    wait_for_or(
        "the writer's commits",
        30,
        &mut || paths.iter().all(|p| Writer::commits(p) >= 20),
        || daemon.log(),
    );
    let commits = writer.finish();
    wait_shipped(d, &daemon, &written, &commits);
    let idle = d.join("tenants/t5.db");
    assert!(restores_equal(d, "t5", &idle), "{}", daemon.log());
    // solo leaves the config: its directory's watch goes; the fleet's stays.
    write_config(d, FLEET);
    daemon.signal("-HUP");
    wait_for_or(
        "solo's directory unwatched",
        30,
        &mut || inotify_watches(pid) == Some(1),
        || daemon.log(),
    );
    // And comes back: watched again.
    write_config(d, &format!("{FLEET}{solo}"));
    daemon.signal("-HUP");
    wait_for_or(
        "solo's directory watched again",
        30,
        &mut || inotify_watches(pid) == Some(2),
        || daemon.log(),
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    assert!(!log.contains("polled by stat"), "{log}");
    assert!(!log.contains("replication stalled"), "{log}");
}

#[test]
fn without_inotify_the_stat_poll_still_ships_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for db in ["tenants/t1", "tenants/t2"] {
        wal_db(&d.join(format!("{db}.db")));
    }
    write_config(d, FLEET);
    let mut daemon = Daemon::start(
        d,
        "d",
        &[],
        &[("LIFEBOAT_FAULT", "no-inotify,no-sweep".to_string())],
    );
    first_generations(d, &daemon, &["t1", "t2"]);
    assert_eq!(inotify_watches(daemon.child.id()), None);
    let written: Vec<(&str, PathBuf)> = ["t1", "t2"]
        .iter()
        .map(|t| (*t, d.join(format!("tenants/{t}.db"))))
        .collect();
    let paths: Vec<PathBuf> = written.iter().map(|(_, p)| p.clone()).collect();
    let writer = Writer::start(d, &paths);
    wait_for_or(
        "the writer's commits",
        30,
        &mut || paths.iter().all(|p| Writer::commits(p) >= 20),
        || daemon.log(),
    );
    let commits = writer.finish();
    wait_shipped(d, &daemon, &written, &commits);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    assert_eq!(lines_with(&log, "inotify turned off"), 1, "{log}");
}

#[test]
fn directories_past_the_watch_limit_are_stat_polled_and_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dbs = ["a/x", "b/y", "c/z"];
    let mut extra = String::new();
    for (i, db) in dbs.iter().enumerate() {
        wal_db(&d.join(format!("{db}.db")));
        extra.push_str(&format!(
            "[[database]]\nname = \"db{i}\"\npath = \"{db}.db\"\nreplicate = true\n"
        ));
    }
    write_config(d, &extra);
    // Room for one directory's watch: the other two fail as at max_user_watches.
    let mut daemon = Daemon::start(
        d,
        "d",
        &[],
        &[("LIFEBOAT_FAULT", "inotify-watches=1,no-sweep".to_string())],
    );
    first_generations(d, &daemon, &["db0", "db1", "db2"]);
    assert_eq!(inotify_watches(daemon.child.id()), Some(1));
    let written: Vec<(&str, PathBuf)> = ["db0", "db1", "db2"]
        .iter()
        .zip(dbs)
        .map(|(n, p)| (*n, d.join(format!("{p}.db"))))
        .collect();
    let paths: Vec<PathBuf> = written.iter().map(|(_, p)| p.clone()).collect();
    let writer = Writer::start(d, &paths);
    wait_for_or(
        "the writer's commits",
        30,
        &mut || paths.iter().all(|p| Writer::commits(p) >= 20),
        || daemon.log(),
    );
    let commits = writer.finish();
    wait_shipped(d, &daemon, &written, &commits);
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    assert_eq!(
        lines_with(&log, "the inotify watch limit is reached"),
        1,
        "{log}"
    );
    assert!(
        log.contains("replication wakes on change (inotify) directories=1 databases=1 polled=2"),
        "{log}"
    );
}

/// A burst of writes between two of a database's polls (its sync interval is a minute) is
/// checkpointed long before the next one: the daemon looks every 10 ms at the databases an
/// event marked as changed and syncs one whose WAL gathered `checkpoint_frames` frames. Only
/// lifeboat's checkpoints write the database file here (the application's are held back by
/// its read mark), so the file growing is the checkpoint. One generation, every commit
/// restorable after the daemon stops.
#[test]
fn a_burst_between_polls_is_checkpointed_before_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("burst.db");
    wal_db(&db);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n\
         [daemon]\nschedule = \"0 0 1 1 *\"\nlease_ttl = \"6h\"\n\
         [replication]\nsync_interval = \"60s\"\ncheckpoint_interval = \"6h\"\n\
         [[database]]\nname = \"burst\"\npath = \"burst.db\"\nreplicate = true\n",
    )
    .unwrap();
    let mut daemon = Daemon::start(d, "d", &[], &[]);
    first_generations(d, &daemon, &["burst"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    burst_then_checkpoint(&db, 20_000, || daemon.log());
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let restored = d.join("restored.db");
    let o = cmd(d)
        .args([
            "--quiet", "restore", "--db", "burst", "--at", "latest", "--to",
        ])
        .arg(&restored)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_db(&db, &restored);
    let gens = std::fs::read_dir(d.join("repo/burst/generations"))
        .unwrap()
        .count();
    assert_eq!(gens, 1, "{}", daemon.log());
}
