//! Helpers shared by the replication tests: times as the writers log them, stopping a
//! `lifeboat replicate` the way an operator does, and a python writer process with the check
//! that a restore holds an exact prefix of its commits.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{stderr, stdout};

/// Now, in seconds since the epoch (as the python writers log commit times).
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `t` (seconds since the epoch) as RFC 3339 with milliseconds, rounded down: what `--at` takes.
pub fn rfc3339(t: f64) -> String {
    let secs = t.floor() as i64;
    let ms = ((t - t.floor()) * 1000.0).floor() as u32;
    chrono::DateTime::from_timestamp(secs, ms * 1_000_000)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A running `lifeboat replicate`, its stdout and stderr in the file `out`.
pub struct Rep {
    pub child: Child,
    pub out: PathBuf,
}

impl Rep {
    /// Spawn `c` (a `lifeboat replicate` command), its output in a new file in `dir`; returned
    /// once it says it is replicating. It then holds its read transaction: a sqlite3 CLI
    /// closing as the last connection can no longer checkpoint the WAL away.
    pub fn start(mut c: Command, dir: &Path) -> Rep {
        static STARTS: AtomicUsize = AtomicUsize::new(0);
        let n = STARTS.fetch_add(1, Ordering::SeqCst);
        let out = dir.join(format!("replicate-{n}.out"));
        let file = std::fs::File::create(&out).unwrap();
        let mut child = c
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start lifeboat replicate");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let said = std::fs::read_to_string(&out).unwrap_or_default();
            if said.contains("Ctrl-C stops") {
                return Rep { child, out };
            }
            assert!(
                child.try_wait().unwrap().is_none() && Instant::now() < deadline,
                "the replicator did not start: {said}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM: it ships what is committed and stops, exit 0. Returns its output.
    pub fn stop(mut self) -> String {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = self.child.wait().unwrap();
        let said = std::fs::read_to_string(&self.out).unwrap();
        assert!(status.success(), "replicate failed: {said}");
        said
    }

    /// `kill -9`.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// SIGTERM: the replicator ships what is committed and stops, exit 0. Returns its output.
pub fn stop_replicator(child: Child) -> String {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "replicate failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out) + &stderr(&out)
}

/// A python writer process (`script` takes the database, a log and a stop file): it commits
/// numbered transactions until the stop file exists, logging each commit's number.
pub struct Writer {
    child: Child,
    log: PathBuf,
    stop: PathBuf,
}

/// Commits numbered transactions of 1, 5 or 20 rows (of `argv[4]` random bytes each) into
/// table `c` until the stop file exists, with short pauses; logs each commit's number.
pub const NUMBERED_WRITER: &str = r#"
import sqlite3, sys, time, os, random
db, log, stop, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA busy_timeout=30000")
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        c.execute("BEGIN IMMEDIATE")
        for k in range(random.choice([1, 5, 20])):
            c.execute("INSERT INTO c(n, k, v) VALUES (?, ?, randomblob(?))", (n, k, size))
        c.execute("COMMIT")
        out.write(f"{n}\n")
        out.flush()
        time.sleep(random.choice([0.01, 0.03]))
"#;

impl Writer {
    pub fn start(db: &Path, script: &str) -> Writer {
        Self::spawn(db, script, &[])
    }

    /// [`NUMBERED_WRITER`] with rows of `row_bytes`.
    pub fn numbered(db: &Path, row_bytes: usize) -> Writer {
        Self::spawn(db, NUMBERED_WRITER, &[row_bytes.to_string()])
    }

    fn spawn(db: &Path, script: &str, more: &[String]) -> Writer {
        let (log, stop) = (db.with_extension("log"), db.with_extension("stop"));
        let child = Command::new("python3")
            .args(["-c", script])
            .arg(db)
            .arg(&log)
            .arg(&stop)
            .args(more)
            .spawn()
            .unwrap();
        Writer { child, log, stop }
    }

    /// The commits logged so far.
    pub fn commits(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Stop it; the commits it made.
    pub fn finish(mut self) -> usize {
        std::fs::write(&self.stop, "").unwrap();
        assert!(self.child.wait().unwrap().success());
        self.commits()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The highest commit a restored database holds, checking that it holds exactly commits
/// 1..=k of table `c` (column `n`, the commit's number; rows loaded before the writer started
/// are `n = 0`).
pub fn prefix(db: &Path) -> u64 {
    let got = super::sqlite3(db, "SELECT DISTINCT n FROM c WHERE n > 0 ORDER BY n");
    let mut k = 0;
    for n in got.lines().filter(|l| !l.is_empty()) {
        let n: u64 = n.parse().unwrap();
        assert_eq!(n, k + 1, "{}: commit {} missing", db.display(), k + 1);
        k = n;
    }
    k
}

/// `lifeboat restore --db DB --repo repo --at latest` into `<d>/latest.db`, run in `d`.
pub fn restore_latest(d: &Path, db: &str) -> PathBuf {
    let to = d.join("latest.db");
    let _ = std::fs::remove_file(&to);
    super::ok(
        d,
        &[
            "restore",
            "--db",
            db,
            "--repo",
            "repo",
            "--at",
            "latest",
            "--to",
            to.to_str().unwrap(),
        ],
    );
    to
}

/// The application: one connection, kept open (a real one does: a closed last connection
/// makes SQLite recover the WAL index and forget a checkpoint); each line on stdin is a blob
/// size to insert in one transaction (or `checkpoint`: a PASSIVE one), answered with `ok`.
pub const APP: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("SELECT count(*) FROM t").fetchone()
print("ok", flush=True)
for line in sys.stdin:
    if line.strip() == "checkpoint":
        assert c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0] == 0
    else:
        c.execute("INSERT INTO t VALUES (randomblob(?))", (int(line),))
    print("ok", flush=True)
"#;

pub struct App {
    child: Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl App {
    pub fn start(db: &Path) -> App {
        let mut child = Command::new("python3")
            .args(["-c", APP])
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut app = App { child, stdin, out };
        app.answer();
        app
    }

    fn answer(&mut self) {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok", "the application failed");
    }

    pub fn commit(&mut self, bytes: usize) {
        writeln!(self.stdin, "{bytes}").unwrap();
        self.answer();
    }

    pub fn checkpoint(&mut self) {
        writeln!(self.stdin, "checkpoint").unwrap();
        self.answer();
    }

    pub fn stop(mut self) {
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success());
    }
}

/// An application writing as fast as it can, with SQLite's autocheckpoint on (the default).
const BURST_APP: &str = r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=20)
for n in range(int(sys.argv[2])):
    c.execute("INSERT INTO c(n, k, v) VALUES (?, 3, randomblob(100))", (n,))
"#;

/// `commits` unpaced commits to `db` (a table `c(n, k, v)`) beside a replicator whose sync
/// interval is far off, then a wait (20 s at most) for the database file to grow: only the
/// replicator's checkpoint writes it, the application's being held back by its read mark.
/// `log` says what the replicator said, if it does not.
pub fn burst_then_checkpoint(db: &Path, commits: u32, log: impl Fn() -> String) {
    let size = || std::fs::metadata(db).unwrap().len();
    let before = size();
    let app = Command::new("python3")
        .args(["-c", BURST_APP])
        .arg(db)
        .arg(commits.to_string())
        .output()
        .unwrap();
    assert!(app.status.success(), "{}", stderr(&app));
    super::daemon::wait_for_or(
        "a checkpoint long before the sync interval",
        20,
        &mut || size() > before,
        log,
    );
}
