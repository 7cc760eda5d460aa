//! Fencing past `lease_ttl`: two daemons on one host replicate one database; the one holding
//! the replicate lease is stopped (SIGSTOP) for longer than `lease_ttl`, then resumed
//! (SIGCONT). Its lease expired, but it still holds the database file's replication lock (and
//! the WAL, through its read transaction): the other daemon takes no lease and opens nothing,
//! says so once and waits, so the resumed one renews its lease and ships what was committed
//! while it was frozen, on the same chain. Once it stops, the other takes over. Never two
//! replicators on one chain (no `already exists` collision), no loop of errors, no break
//! through the freeze; `restore --at latest` equal to the source, verified.

mod common;

use std::time::Duration;

use common::daemon::{config, lines_with, wait_for_or, Daemon};
use common::receiver::Receiver;
use common::replicating::{prefix, Writer};
use common::*;

/// The event of every webhook body received, in order.
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

fn both(first: &Daemon, second: &Daemon) -> String {
    format!("first:\n{}\nsecond:\n{}", first.log(), second.log())
}

/// Every stall told so far has its recovery told too, in the daemon's log and at the hook:
/// before a daemon stops (a stop runs no lag check, so a recovery not yet told never is).
fn settled(daemon: &Daemon, hook: &Receiver) -> bool {
    let log = daemon.log();
    let all = events(hook);
    lines_with(&log, "replication stalled") == lines_with(&log, "replication recovered")
        && count(&all, "replication.stalled") == count(&all, "replication.recovered")
}

/// Wait until `daemon` is `settled`, and still is a little later (a lag check due at once, as
/// after a freeze, may yet tell a stall).
fn wait_settled(daemon: &Daemon, hook: &Receiver, context: impl Fn() -> String) {
    for _ in 0..2 {
        wait_for_or(
            "every stall told recovered",
            60,
            &mut || settled(daemon, hook),
            || format!("{:?}\n{}", events(hook), context()),
        );
        std::thread::sleep(Duration::from_millis(1500));
    }
    assert!(settled(daemon, hook), "{:?}\n{}", events(hook), context());
}

#[test]
fn a_daemon_frozen_past_its_lease_keeps_its_chain_and_the_other_tells_the_stall() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("w.db");
    sqlite3(
        &db,
        "PRAGMA journal_mode=WAL; CREATE TABLE c(n INTEGER, k INTEGER, v BLOB);",
    );
    let hook = Receiver::start(&[]);
    config(
        d,
        "file://./repo",
        &[],
        &format!(
            "[daemon]\nschedule = \"0 0 1 1 *\"\nlease_ttl = \"5s\"\n\
             [replication]\nsync_interval = \"200ms\"\nmax_lag = \"3s\"\n\
             [alerts]\nwebhook_url = \"{}/hooks/x\"\n\
             [[database]]\nname = \"w\"\npath = \"w.db\"\nreplicate = true\n",
            hook.url
        ),
    );
    let mut first = Daemon::start(d, "first", &[], &[]);
    wait_for_or(
        "the first daemon replicating",
        60,
        &mut || lines_with(&first.log(), "replicating") >= 1,
        || first.log(),
    );
    let mut second = Daemon::start(d, "second", &[], &[]);
    wait_for_or(
        "the second daemon leaving it alone",
        60,
        &mut || second.log().contains("replicated by another daemon"),
        || second.log(),
    );
    let writer = Writer::numbered(&db, 300);
    std::thread::sleep(Duration::from_secs(2));
    // The holder freezes (a VM paused, a process stopped) past its lease.
    first.signal("-STOP");
    let frozen_at = writer.commits();
    // The other daemon sees the lease expire but the file still held by a live process: it
    // takes no lease and opens nothing, says so once, and waits; the holder's silence counts
    // as lag from its lease's end, told past max_lag (the frozen holder cannot tell it).
    let waiting = "replicated by another lifeboat process on this host";
    wait_for_or(
        "the second daemon waiting for the file",
        60,
        &mut || second.log().contains(waiting),
        || both(&first, &second),
    );
    wait_for_or(
        "replication.stalled from the second daemon",
        60,
        &mut || count(&events(&hook), "replication.stalled") == 1,
        || format!("{:?}\n{}", events(&hook), both(&first, &second)),
    );
    assert!(writer.commits() > frozen_at, "the application was held up");
    first.signal("-CONT");
    // The resumed one still holds the newest lease: it renews it and ships what was committed
    // while it was frozen, on the same chain (its read transaction kept those frames); the
    // other daemon tells the recovery.
    wait_for_or(
        "replication.recovered",
        60,
        // At least: the resumed holder may tell its own stall and recovery too (see below).
        &mut || count(&events(&hook), "replication.recovered") >= 1,
        || format!("{:?}\n{}", events(&hook), both(&first, &second)),
    );
    wait_for_or(
        "what was committed during the freeze restorable",
        60,
        &mut || {
            let mid = d.join("mid.db");
            let _ = std::fs::remove_file(&mid);
            ok(
                d,
                &["restore", "--db", "w", "--at", "latest", "--to", "mid.db"],
            );
            prefix(&mid) as usize > frozen_at
        },
        || both(&first, &second),
    );
    // The resumed holder tells its own stall (if its first lag check after the freeze saw
    // one) and then its recovery, a lag check or more later.
    wait_settled(&first, &hook, || both(&first, &second));
    // A clean stop of the holder hands the database over: the other takes it.
    assert_eq!(first.stop(), Some(0), "{}", both(&first, &second));
    wait_for_or(
        "the second daemon replicating",
        60,
        &mut || lines_with(&second.log(), "replicating database=w") >= 1,
        || both(&first, &second),
    );
    std::thread::sleep(Duration::from_secs(2));
    let commits = writer.finish();
    // A slow handover (its snapshot) may make the writer's commits wait past max_lag: a
    // second stall, told truthfully, whose recovery must be told before the stop.
    wait_settled(&second, &hook, || both(&first, &second));
    assert_eq!(second.stop(), Some(0), "{}", both(&first, &second));
    let (a, b) = (first.log(), second.log());
    let logs = both(&first, &second);
    // Never two replicators on one chain, never a loop of errors; the freeze cost no break.
    for log in [&a, &b] {
        assert!(!log.contains("already exists"), "{logs}");
        assert!(!log.contains("not replicated"), "{logs}");
        assert!(!log.contains("took replication over"), "{logs}");
    }
    assert!(!a.contains("chain broke"), "{logs}");
    assert_eq!(lines_with(&b, waiting), 1, "{logs}");
    // The handover after the clean stop resumes the chain, or (the application's checkpoint
    // having reset the WAL over its frames in between) starts a generation saying why.
    assert!(
        b.contains("resuming the chain") || b.contains("starting a new generation"),
        "{logs}"
    );
    // The stall was told by the daemon that waited (and once more after the handover, if it
    // was slow), and by the resumed holder when it saw how long its own changes had waited;
    // each followed by its recovery.
    let told = lines_with(&b, "replication stalled");
    assert!((1..=2).contains(&told), "{logs}");
    assert_eq!(lines_with(&b, "replication recovered"), told, "{logs}");
    assert!(lines_with(&a, "replication stalled") <= 1, "{logs}");
    let all = events(&hook);
    assert_eq!(
        count(&all, "replication.stalled"),
        count(&all, "replication.recovered"),
        "{all:?}"
    );
    assert_eq!(
        all.last().map(String::as_str),
        Some("replication.recovered")
    );
    let to = d.join("restored.db");
    ok(
        d,
        &[
            "restore",
            "--db",
            "w",
            "--at",
            "latest",
            "--to",
            "restored.db",
        ],
    );
    assert_same_db(&db, &to);
    assert_eq!(prefix(&to), commits as u64);
    let pitr = ok(d, &["list", "--pitr", "--db", "w"]);
    assert!(!pitr.contains("gap"), "{pitr}");
    let gens = std::fs::read_dir(d.join("repo/w/generations"))
        .unwrap()
        .count();
    assert!(
        gens <= 2,
        "one chain through the freeze, at most one more after the handover: {pitr}"
    );
    ok(d, &["verify", "--all"]);
}
