//! Replication inside `lifeboat daemon`, with real processes: python3 writers committing while
//! the daemon replicates several databases (one with its own `sync_interval`, a fleet glob), a
//! database not in WAL mode refused while its scheduled backup still runs, `replication.stalled`
//! told once to a webhook when the repository (s3s-fs) goes away and `replication.recovered`
//! when it comes back, and two daemons on one repository (one replicates each database; kill -9
//! of it hands the database to the other, and the restores stay exact).

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{config, lines_with, small_db, wait_for_or, Daemon};
use common::receiver::Receiver;
use common::replicating::{prefix, Writer};
use common::s3::{S3Server, BUCKET, KEY, SECRET};
use common::*;

/// Commits numbered transactions of 1 to 20 rows until `stop` exists; logs `n rows` per commit.
const WRITER: &str = r#"
import sqlite3, sys, time, os, random
db, log, stop = sys.argv[1], sys.argv[2], sys.argv[3]
c = sqlite3.connect(db, isolation_level=None, timeout=30)
c.execute("PRAGMA busy_timeout=30000")
n = 0
with open(log, "w") as out:
    while not os.path.exists(stop):
        n += 1
        rows = random.choice([1, 2, 20])
        c.execute("BEGIN IMMEDIATE")
        for k in range(rows):
            c.execute("INSERT INTO c(n, k, v) VALUES (?, ?, randomblob(?))", (n, k, random.choice([10, 500])))
        if n % 7 == 0:
            c.execute("DELETE FROM c WHERE n = ? AND k > 0", (n - 3,))
        c.execute("COMMIT")
        out.write(f"{n} {rows}\n")
        out.flush()
        time.sleep(random.choice([0.005, 0.02, 0.05]))
"#;

fn wal_db(path: &Path) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    sqlite3(
        path,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
}

fn restore_latest(d: &Path, db: &str, env: &[(&str, String)]) -> PathBuf {
    restore_latest_or(d, db, env, "")
}

/// `restore --at latest`; on failure, shows `context` (a daemon's log).
fn restore_latest_or(d: &Path, db: &str, env: &[(&str, String)], context: &str) -> PathBuf {
    let to = d.join(format!("restored-{db}.db"));
    let _ = std::fs::remove_file(&to);
    let mut c = cmd(d);
    c.args(["restore", "--db", db, "--at", "latest", "--to"])
        .arg(&to);
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "restore {db}: {}\n{context}",
        stderr(&o)
    );
    to
}

fn scrape(addr: &str) -> String {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    write!(
        c,
        "GET /metrics HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    text
}

fn metric(text: &str, name: &str, db: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains(&format!("database=\"{db}\"")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn the_daemon_replicates_a_fleet_and_refuses_a_database_not_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for db in ["a", "b", "tenants/t1", "tenants/t2"] {
        wal_db(&d.join(format!("{db}.db")));
    }
    small_db(&d.join("plain.db"), 20); // journal_mode=delete
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n\
         [daemon]\nschedule = \"0 0 1 1 *\"\n\
         [replication]\nsync_interval = \"1s\"\ncheckpoint_frames = 40\n\
         [[database]]\nname = \"a\"\npath = \"a.db\"\nreplicate = true\n\
         [[database]]\nname = \"b\"\npath = \"b.db\"\nsync_interval = \"200ms\"\n\
         [[database]]\nname = \"plain\"\npath = \"plain.db\"\nreplicate = true\n\
         [[database]]\nname = \"tenants\"\nglob = \"tenants/*.db\"\nreplicate = true\n",
    )
    .unwrap();
    let mut daemon = Daemon::start(
        d,
        "d",
        &["--metrics-addr", "127.0.0.1:0"],
        &[("LIFEBOAT_LOG", "info,lifeboat::replicate=debug".to_string())],
    );
    let names = ["a", "b", "t1", "t2"];
    wait_for_or(
        "every replicated database's first generation",
        60,
        &mut || {
            names
                .iter()
                .all(|n| d.join(format!("repo/{n}/generations")).exists())
        },
        || daemon.log(),
    );
    let writers: Vec<Writer> = ["a.db", "b.db", "tenants/t1.db", "tenants/t2.db"]
        .iter()
        .map(|p| Writer::start(&d.join(p), WRITER))
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    // Lag is published per database while the writers go on.
    let addr = daemon.metrics_addr().expect("metrics address logged");
    let text = scrape(&addr);
    for n in names {
        let lag = metric(&text, "lifeboat_replication_lag_seconds{", n);
        assert!(lag.is_some_and(|l| l < 30.0), "{n}: {lag:?}\n{text}");
        let commits = metric(&text, "lifeboat_replication_commits_total{", n);
        assert!(commits.is_some_and(|c| c > 0.0), "{n}: {commits:?}\n{text}");
    }
    assert!(
        metric(&text, "lifeboat_replication_errors_total{", "plain").is_some_and(|e| e >= 1.0),
        "{text}"
    );
    let counts: Vec<usize> = writers.into_iter().map(Writer::finish).collect();
    assert!(counts.iter().all(|&c| c > 10), "{counts:?}");
    // SIGTERM ships what is committed.
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let log = daemon.log();
    // `status` tells the newest replicated commit, and that nothing waits.
    let st = ok(d, &["status", "--db", "a"]);
    assert!(st.contains("replicated: newest commit"), "{st}");
    let files = || {
        let o = Command::new("ls").arg("-la").arg(d).output().unwrap();
        stdout(&o)
    };
    assert!(st.contains("lag 0"), "{st}\n{}\n{log}", files());
    for (n, path) in names
        .iter()
        .zip(["a.db", "b.db", "tenants/t1.db", "tenants/t2.db"])
    {
        let restored = restore_latest(d, n, &[]);
        let diff = sqldiff(&d.join(path), &restored);
        assert!(
            diff.is_empty(),
            "{n}: the restore differs: {}\n{}\n{log}",
            diff.lines()
                .take(5)
                .map(|l| &l[..l.len().min(120)])
                .collect::<Vec<_>>()
                .join("\n"),
            ok(d, &["list", "--pitr", "--db", n])
        );
        assert_same_db(&d.join(path), &restored);
        prefix(&restored);
    }
    // One more commit with the replicator stopped is one unshipped commit.
    // (An application that keeps its connection open: the last close would checkpoint.)
    let mut app = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute(\"INSERT INTO c(n, k, v) VALUES (0, 0, x'00')\")\nprint('ok', flush=True)\nsys.stdin.read()",
        ])
        .arg(d.join("a.db"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(app.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "ok");
    let o = run(d, &["--json", "status", "--db", "a"]);
    drop(app.stdin.take());
    app.wait().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let r = &v["databases"][0]["replication"];
    assert_eq!(r["unshipped_commits"], 1, "{v}");
    assert!(r["lag_seconds"].as_i64().is_some(), "{v}");
    // The database not in WAL mode: told once how to switch, and its backup ran all the same.
    assert_eq!(lines_with(&log, "replication needs WAL mode"), 1, "{log}");
    assert!(log.contains("PRAGMA journal_mode=WAL"), "{log}");
    assert!(common::daemon::backups(d, "plain", &[]) >= 1, "{log}");
    assert!(!d.join("repo/plain/generations").exists());
    // Refused before its replication lease is taken: no lease object each time it is retried.
    assert!(
        std::fs::read_dir(d.join("repo/plain/leases"))
            .map(|es| es
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .all(|n| !n.starts_with("replicate.")))
            .unwrap_or(true),
        "a replication lease for a database refused"
    );
    // One thread per worker at most, not per database: nothing to see from outside but the
    // log's "replicating" line per database, once.
    for n in names {
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("replicating") && l.contains(&format!("database={n}")))
                .count(),
            1,
            "{n}\n{log}"
        );
    }
}

/// The (event, source) of every webhook body received, in order.
fn events(hook: &Receiver) -> Vec<(String, String)> {
    hook.got()
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|v| {
            (
                v["event"].as_str().unwrap_or("").to_string(),
                v["source"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn count(all: &[(String, String)], event: &str) -> usize {
    all.iter().filter(|(e, _)| e == event).count()
}

#[test]
fn a_stalled_replication_is_told_once_and_its_recovery_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s3 = S3Server::start();
    wal_db(&d.join("shop.db"));
    let hook = Receiver::start(&[]);
    config(
        d,
        &format!("s3://{BUCKET}/r"),
        &[],
        &format!(
            "timeout = \"2s\"\n[daemon]\nschedule = \"0 0 1 1 *\"\n[replication]\nsync_interval = \"200ms\"\nmax_lag = \"3s\"\n[alerts]\nwebhook_url = \"{}/hooks/S3CRET\"\n[[database]]\nname = \"shop\"\npath = \"shop.db\"\nreplicate = true\n",
            hook.url
        ),
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let mut daemon = Daemon::start(d, "d", &[], &env);
    wait_for_or(
        "replicating",
        60,
        &mut || daemon.log().contains("replicating"),
        || daemon.log(),
    );
    let writer = Writer::start(&d.join("shop.db"), WRITER);
    std::thread::sleep(Duration::from_secs(2));
    // A machine slow enough to let one sync take past max_lag tells a stall and its recovery
    // before the repository goes: counted from here.
    wait_for_or(
        "no stall pending before the repository goes",
        60,
        &mut || {
            let all = events(&hook);
            count(&all, "replication.stalled") == count(&all, "replication.recovered")
        },
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    let told = count(&events(&hook), "replication.stalled");
    // The repository goes away while the writer commits.
    s3.kill();
    wait_for_or(
        "replication.stalled",
        60,
        &mut || count(&events(&hook), "replication.stalled") == told + 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    // Still stalled a while later: told once.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(count(&events(&hook), "replication.stalled"), told + 1);
    assert_eq!(count(&events(&hook), "replication.recovered"), told);
    s3.restart();
    wait_for_or(
        "replication.recovered",
        90,
        &mut || count(&events(&hook), "replication.recovered") == told + 1,
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    let commits = writer.finish();
    assert!(commits > 20, "{commits}");
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    let all = events(&hook);
    assert_eq!(count(&all, "replication.stalled"), told + 1, "{all:?}");
    assert_eq!(count(&all, "replication.recovered"), told + 1, "{all:?}");
    // The webhook's secret path never shows.
    assert!(!daemon.log().contains("S3CRET"));
    let restored = restore_latest_or(d, "shop", &env, &daemon.log());
    assert_same_db(&d.join("shop.db"), &restored);
    assert_eq!(prefix(&restored), commits as u64);
}

#[test]
fn two_daemons_replicate_each_database_once_and_kill_9_hands_it_over() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for db in ["x", "y"] {
        wal_db(&d.join(format!("{db}.db")));
    }
    config(
        d,
        "file://./repo",
        &[],
        "[daemon]\nschedule = \"0 0 1 1 *\"\nlease_ttl = \"6s\"\n[replication]\nsync_interval = \"300ms\"\n\
         [[database]]\nname = \"x\"\npath = \"x.db\"\nreplicate = true\n\
         [[database]]\nname = \"y\"\npath = \"y.db\"\nreplicate = true\n",
    );
    let mut first = Daemon::start(d, "first", &[], &[]);
    wait_for_or(
        "the first daemon replicating both",
        60,
        &mut || lines_with(&first.log(), "replicating") >= 2,
        || first.log(),
    );
    let second = Daemon::start(d, "second", &[], &[]);
    let writers: Vec<Writer> = ["x.db", "y.db"]
        .iter()
        .map(|p| Writer::start(&d.join(p), WRITER))
        .collect();
    wait_for_or(
        "the second daemon leaving them alone",
        60,
        &mut || lines_with(&second.log(), "replicated by another daemon") >= 2,
        || second.log(),
    );
    std::thread::sleep(Duration::from_secs(1));
    // The second leaves them alone while the first holds their leases.
    assert_eq!(
        lines_with(&second.log(), "replicating"),
        0,
        "{}",
        second.log()
    );
    assert!(second.log().contains("replicated by another daemon"));
    // kill -9 mid-write: the second takes over (the holder's process is gone).
    let _ = first.child.kill();
    let _ = first.child.wait();
    wait_for_or(
        "the second daemon taking both over",
        60,
        &mut || lines_with(&second.log(), "replicating") >= 2,
        || second.log(),
    );
    // The first, restarted, is the one left out now.
    let mut again = Daemon::start(d, "again", &[], &[]);
    std::thread::sleep(Duration::from_secs(3));
    let counts: Vec<usize> = writers.into_iter().map(Writer::finish).collect();
    let mut second = second;
    assert_eq!(second.stop(), Some(0), "{}", second.log());
    // Once the second gave its leases up, the restarted one may take them: let it, then stop.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(again.stop(), Some(0), "{}", again.log());
    for (db, n) in ["x", "y"].iter().zip(counts) {
        let restored = restore_latest(d, db, &[]);
        assert_same_db(&d.join(format!("{db}.db")), &restored);
        assert_eq!(prefix(&restored), n as u64);
        // The chain never forked: every segment name of a generation is unique by its
        // sequence range, so two writers would have collided in the log.
        let pitr = ok(d, &["list", "--pitr", "--db", db]);
        assert!(!pitr.contains("gap"), "{pitr}");
    }
    for log in [second.log(), again.log()] {
        assert!(!log.contains("already exists"), "{log}");
    }
}

#[test]
fn kill_9_of_the_daemon_mid_write_and_a_restart_resume_with_exact_restores() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    wal_db(&d.join("shop.db"));
    config(
        d,
        "file://./repo",
        &[],
        "[daemon]\nschedule = \"0 0 1 1 *\"\n[replication]\nsync_interval = \"250ms\"\ncheckpoint_frames = 30\n\
         [[database]]\nname = \"shop\"\npath = \"shop.db\"\nreplicate = true\n",
    );
    let first = Daemon::start(d, "first", &[], &[]);
    wait_for_or(
        "replicating",
        60,
        &mut || first.log().contains("replicating"),
        || first.log(),
    );
    let writer = Writer::start(&d.join("shop.db"), WRITER);
    let mut instants = Vec::new();
    std::thread::sleep(Duration::from_millis(1500));
    instants.push(chrono::Utc::now());
    let mut first = first;
    let _ = first.child.kill();
    let _ = first.child.wait();
    std::thread::sleep(Duration::from_millis(500));
    instants.push(chrono::Utc::now());
    let mut second = Daemon::start(d, "second", &[], &[]);
    // (A stop before the database is open drops the open: what was committed is shipped at
    // the next start, not by this one.)
    wait_for_or(
        "the restarted daemon replicating",
        60,
        &mut || second.log().contains("replicating"),
        || second.log(),
    );
    std::thread::sleep(Duration::from_millis(1000));
    instants.push(chrono::Utc::now());
    let commits = writer.finish();
    assert_eq!(second.stop(), Some(0), "{}", second.log());
    let log = second.log();
    // The restarted daemon took the lease over at once (its holder's process is gone) and went
    // on: the chain resumed, or a new generation said why.
    assert!(
        log.contains("resuming the chain") || log.contains("starting a new generation"),
        "{log}"
    );
    let restored = restore_latest(d, "shop", &[]);
    assert_same_db(&d.join("shop.db"), &restored);
    assert_eq!(prefix(&restored), commits as u64);
    // Every point before is an exact prefix, and they only grow.
    let mut last = 0;
    for (i, t) in instants.iter().enumerate() {
        let to = d.join(format!("at-{i}.db"));
        let at = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        ok(
            d,
            &[
                "restore",
                "--db",
                "shop",
                "--at",
                &at,
                "--to",
                to.to_str().unwrap(),
            ],
        );
        let k = prefix(&to);
        assert!(k >= last, "{at}: {k} < {last}");
        last = k;
    }
    assert!(last <= commits as u64);
    let pitr = ok(d, &["list", "--pitr", "--db", "shop"]);
    assert!(!pitr.contains("gap"), "{pitr}");
}
