//! A `lifeboat daemon` process for the daemon tests: its log in a file, signals, waiting.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{cmd, sqlite3};

/// A daemon process, its log in a file; killed when dropped.
pub struct Daemon {
    pub child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn start(dir: &Path, name: &str, args: &[&str], env: &[(&str, String)]) -> Daemon {
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

    /// The address `--metrics-addr 127.0.0.1:0` was bound to, once logged.
    pub fn metrics_addr(&self) -> Option<String> {
        let log = self.log();
        let line = log.lines().find(|l| l.contains("serving /metrics"))?;
        let at = line.find("addr=")? + "addr=".len();
        Some(line[at..].split_whitespace().next()?.to_string())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, and the exit code.
    pub fn stop(&mut self) -> Option<i32> {
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

pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    wait_for_or(what, secs, &mut cond, String::new);
}

/// Wait for `cond`; on timeout, fail showing `context()` (the daemons' logs).
pub fn wait_for_or(
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

/// A small database: one table of `rows` rows.
pub fn small_db(path: &Path, rows: u32) {
    sqlite3(
        path,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<{rows}) INSERT INTO t(v) SELECT 'row ' || i FROM n;"
        ),
    );
}

/// lifeboat.toml with a repository, `dbs` as `<name>.db` files and `extra` settings.
pub fn config(dir: &Path, repo: &str, dbs: &[&str], extra: &str) {
    let mut text = format!("[repository]\nurl = \"{repo}\"\n{extra}\n");
    for db in dbs {
        text.push_str(&format!(
            "[[database]]\nname = \"{db}\"\npath = \"{db}.db\"\n"
        ));
    }
    std::fs::write(dir.join("lifeboat.toml"), text).unwrap();
}

/// Complete backups of `db`, from `lifeboat list --json`.
pub fn backups(dir: &Path, db: &str, env: &[(&str, String)]) -> usize {
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

pub fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}
