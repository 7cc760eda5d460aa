//! `lifeboat daemon` as real processes: two daemons on one repository (local and S3) run each
//! job once; `kill -9` mid-backup leaves nothing that looks complete and the next start works;
//! SIGTERM aborts a running backup cleanly and exits 0; SIGHUP with a broken config keeps the
//! old one running.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::s3::{S3Server, BUCKET, KEY, SECRET};
use common::*;

/// A daemon process, its log in a file; killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let mut c = cmd(dir);
        c.arg("daemon")
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            c.env(k, v);
        }
        Daemon {
            child: c.spawn().unwrap(),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, and the exit code.
    fn stop(&mut self) -> Option<i32> {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    wait_for_or(what, secs, &mut cond, String::new);
}

/// Wait for `cond`; on timeout, fail showing `context()` (the daemons' logs).
fn wait_for_or(
    what: &str,
    secs: u64,
    cond: &mut impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn small_db(path: &Path, rows: u32) {
    sqlite3(
        path,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<{rows}) INSERT INTO t(v) SELECT 'row ' || i FROM n;"
        ),
    );
}

/// A database big enough that its backup takes a while: random-looking blobs.
fn big_db(path: &Path, mb: u32) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch("CREATE TABLE b(id INTEGER PRIMARY KEY, x BLOB); BEGIN;")
        .unwrap();
    for i in 0..mb {
        c.execute("INSERT INTO b(x) VALUES (?1)", [noise(1 << 20, i % 7)])
            .unwrap();
    }
    c.execute_batch("COMMIT;").unwrap();
}

fn config(dir: &Path, repo: &str, dbs: &[&str], extra: &str) {
    let mut text = format!("[repository]\nurl = \"{repo}\"\n{extra}\n");
    for db in dbs {
        text.push_str(&format!(
            "[[database]]\nname = \"{db}\"\npath = \"{db}.db\"\n"
        ));
    }
    std::fs::write(dir.join("lifeboat.toml"), text).unwrap();
}

/// Complete backups of `db`, from `lifeboat list --json`.
fn backups(dir: &Path, db: &str, env: &[(&str, String)]) -> usize {
    let mut c = cmd(dir);
    c.args(["list", "--db", db, "--json"]);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    if !o.status.success() {
        return 0;
    }
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["databases"][0]["backups"]
        .as_array()
        .map_or(0, |a| a.len())
}

fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn two_daemons_run_each_job_once(repo: &str, env: &[(&str, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dbs = ["a", "b", "c", "e"];
    for db in dbs {
        small_db(&d.join(format!("{db}.db")), 200);
    }
    // Never backed up: every database is due at once, in both daemons, for the same slot.
    config(d, repo, &dbs, "[daemon]\nmax_concurrent = 2\n");
    let mut one = Daemon::start(d, "one", &[], env);
    let mut two = Daemon::start(d, "two", &[], env);
    wait_for_or(
        "both daemons to settle every job",
        60,
        &mut || {
            let (l1, l2) = (one.log(), two.log());
            lines_with(&l1, "outcome=") + lines_with(&l2, "outcome=") >= 2 * dbs.len()
                && dbs.iter().all(|db| backups(d, db, env) >= 1)
        },
        || format!("{}\n{}", one.log(), two.log()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let (l1, l2) = (one.log(), two.log());
    for db in dbs {
        assert_eq!(backups(d, db, env), 1, "{db}: one backup\n{l1}\n{l2}");
    }
    // Each job ran in exactly one of them; the other found it held or done.
    let ran = lines_with(&l1, "outcome=\"ok\"") + lines_with(&l2, "outcome=\"ok\"");
    assert_eq!(ran, dbs.len(), "{l1}\n{l2}");
    assert_eq!(one.stop(), Some(0), "{}", one.log());
    assert_eq!(two.stop(), Some(0), "{}", two.log());
}

#[test]
fn two_daemons_on_one_local_repository_run_each_job_once() {
    two_daemons_run_each_job_once("file://./repo", &[]);
}

#[test]
fn two_daemons_on_one_s3_repository_run_each_job_once() {
    let s3 = S3Server::start();
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    two_daemons_run_each_job_once(&format!("s3://{BUCKET}/daemons"), &env);
}

/// The claim of a running backup of `db` in a local repository.
fn claim_exists(d: &Path, db: &str) -> bool {
    std::fs::read_dir(d.join("repo").join(db).join("backups"))
        .map(|r| {
            r.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(".pending"))
        })
        .unwrap_or(false)
}

#[test]
fn kill_9_mid_backup_leaves_nothing_complete_and_the_next_start_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_db(&d.join("big.db"), 160);
    config(d, "file://./repo", &["big"], "");
    let mut first = Daemon::start(d, "first", &[], &[]);
    wait_for("the backup to start", 60, || claim_exists(d, "big"));
    first.child.kill().unwrap(); // SIGKILL
    first.child.wait().unwrap();
    assert_eq!(backups(d, "big", &[]), 0, "nothing looks complete");
    let listed = ok(d, &["list", "--db", "big"]);
    assert!(listed.contains("INCOMPLETE"), "{listed}");
    assert!(listed.contains("0 complete backup"), "{listed}");
    // The next start takes over the dead daemon's lease (its process is gone) and backs up.
    let mut second = Daemon::start(d, "second", &[], &[]);
    wait_for("the backup after the crash", 120, || {
        backups(d, "big", &[]) == 1
    });
    assert_eq!(second.stop(), Some(0), "{}", second.log());
    ok(d, &["restore", "--db", "big", "--to", "restored.db"]);
    assert_same_db(&d.join("big.db"), &d.join("restored.db"));
    ok(d, &["cleanup", "--older-than", "0s"]);
    assert!(!ok(d, &["list", "--db", "big"]).contains("incomplete"));
}

#[test]
fn sigterm_aborts_a_running_backup_cleanly_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    big_db(&d.join("big.db"), 160);
    config(d, "file://./repo", &["big"], "");
    let mut daemon = Daemon::start(d, "d", &["--shutdown-timeout", "50ms"], &[]);
    wait_for("the backup to start", 60, || claim_exists(d, "big"));
    let started = Instant::now();
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = daemon.log();
    assert!(
        log.contains("aborting the running backups") || log.contains("outcome=\"ok\""),
        "{log}"
    );
    // Aborted: no manifest. (Had it finished within the timeout, it would be whole.)
    let n = backups(d, "big", &[]);
    if log.contains("aborting the running backups") {
        assert_eq!(n, 0, "{log}");
    } else {
        assert_eq!(n, 1, "{log}");
    }
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("a.db"), 50);
    small_db(&d.join("b.db"), 50);
    config(d, "file://./repo", &["a"], "");
    let mut daemon = Daemon::start(d, "d", &[], &[]);
    wait_for("a's first backup", 60, || backups(d, "a", &[]) == 1);
    // Broken: refused, and the daemon goes on with the old config.
    std::fs::write(
        d.join("lifeboat.toml"),
        "[daemon]\nschedule = \"every day\"\n",
    )
    .unwrap();
    daemon.signal("-HUP");
    wait_for("the refusal", 30, || {
        daemon.log().contains("config reload refused")
    });
    assert!(daemon.child.try_wait().unwrap().is_none(), "still running");
    // A good config adds b, which is backed up at once (never backed up: a missed run).
    config(d, "file://./repo", &["a", "b"], "");
    daemon.signal("-HUP");
    wait_for("b's first backup", 60, || backups(d, "b", &[]) == 1);
    assert!(daemon.log().contains("config reloaded"), "{}", daemon.log());
    assert_eq!(backups(d, "a", &[]), 1, "a is not backed up again");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
}
