//! What the daemon tells, to a real webhook receiver on loopback, and what it serves on
//! `/metrics`: a failed database's `backup.failed`, `backup.stale` once (not every check:
//! `repeat_after`), `backup.recovered` once a good backup appears (here, taken by another
//! process), and the series a scrape shows.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::daemon::{backups, config, small_db, wait_for_or, Daemon};
use common::receiver::Receiver;
use common::*;

/// The (event, source) of every webhook body received, in order.
fn events(hook: &Receiver) -> Vec<(String, String, serde_json::Value)> {
    hook.got()
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .map(|v| {
            (
                v["event"].as_str().unwrap_or("").to_string(),
                v["source"].as_str().unwrap_or("").to_string(),
                v,
            )
        })
        .collect()
}

fn count(all: &[(String, String, serde_json::Value)], event: &str, source: &str) -> usize {
    all.iter()
        .filter(|(e, s, _)| e == event && s == source)
        .count()
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

#[test]
fn failed_stale_and_recovered_are_told_once_each_and_metrics_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("broken.db"), b"this is not a database").unwrap();
    small_db(&d.join("good.db"), 50);
    let hook = Receiver::start(&[]);
    // A schedule that never comes round in the test: only the missed runs at start happen.
    // Everything older than 3 s is stale, and staleness is checked every second.
    config(
        d,
        "file://./repo",
        &["broken", "good"],
        &format!(
            "[daemon]\nschedule = \"0 0 1 1 *\"\nstale_check_interval = \"1s\"\nretry_after = \"2s\"\n[status]\nwarn_age = \"2s\"\nmax_age = \"3s\"\n[alerts]\nwebhook_url = \"{}/hooks/T0KEN\"\n",
            hook.url
        ),
    );
    // A host name is resolved (to loopback here).
    let mut daemon = Daemon::start(d, "d", &["--metrics-addr", "localhost:0"], &[]);
    wait_for_or(
        "failed and stale alerts",
        60,
        &mut || {
            let all = events(&hook);
            count(&all, "backup.failed", "broken") == 1
                && count(&all, "backup.stale", "broken") == 1
                && count(&all, "backup.stale", "good") == 1
        },
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    // Checked every second, failed again at every retry, told once (repeat_after, 6 h).
    std::thread::sleep(Duration::from_secs(3));
    let all = events(&hook);
    assert_eq!(count(&all, "backup.stale", "good"), 1, "{all:?}");
    assert_eq!(count(&all, "backup.failed", "broken"), 1, "{all:?}");
    // The runbook's top-level fields exactly; the last good backup under details.
    let (_, _, stale) = all
        .iter()
        .find(|(e, s, _)| e == "backup.stale" && s == "good")
        .unwrap();
    let mut keys: Vec<&str> = stale
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(keys, ["details", "event", "message", "source", "timestamp"]);
    assert!(
        stale["details"]["last_good"]
            .as_str()
            .is_some_and(|id| id.starts_with("backup-")),
        "{stale}"
    );

    let addr = daemon
        .metrics_addr()
        .expect("the metrics address is logged");
    let text = scrape(&addr);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("lifeboat_backup_last_success_timestamp_seconds{database=\"good\"}"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("lifeboat_backup_failures_total{")
                && l.contains("database=\"broken\"")
                && l.contains("reason=\"database\"")
                && l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) >= Some(1.0)),
        "{text}"
    );
    assert!(text.contains("lifeboat_databases 2"), "{text}");

    // Both good again: broken by the daemon's own retry (every 2 s, for the same scheduled
    // time), good by a backup another process takes (the daemon reads the repository again at
    // its staleness check). Each recovery is told once.
    std::fs::remove_file(d.join("broken.db")).unwrap();
    small_db(&d.join("broken.db"), 10);
    ok(d, &["backup", "--db", "good", "--no-alert"]);
    wait_for_or(
        "the retry's backup",
        30,
        &mut || backups(d, "broken", &[]) == 1,
        || daemon.log(),
    );
    assert!(daemon.log().contains("outcome=\"ok\""), "{}", daemon.log());
    wait_for_or(
        "the recoveries",
        30,
        &mut || {
            let all = events(&hook);
            count(&all, "backup.recovered", "broken") == 1
                && count(&all, "backup.recovered", "good") == 1
        },
        || format!("{:?}\n{}", events(&hook), daemon.log()),
    );
    assert_eq!(daemon.stop(), Some(0), "{}", daemon.log());
    // The secret path never shows.
    assert!(!daemon.log().contains("T0KEN"), "{}", daemon.log());
}

#[test]
fn backup_succeeded_is_told_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("app.db"), 20);
    let hook = Receiver::start(&[]);
    let alerts = format!("[alerts]\nwebhook_url = \"{}/h\"\n", hook.url);
    config(d, "file://./repo", &["app"], &alerts);
    ok(d, &["backup"]);
    assert!(events(&hook).is_empty(), "{:?}", events(&hook));
    config(
        d,
        "file://./repo",
        &["app"],
        &format!("{alerts}on_success = true\n"),
    );
    ok(d, &["backup"]);
    let all = events(&hook);
    assert_eq!(count(&all, "backup.succeeded", "app"), 1, "{all:?}");
    let (_, _, v) = &all[0];
    assert!(
        v["details"]["backup"]
            .as_str()
            .unwrap()
            .starts_with("backup-"),
        "{v}"
    );
    // The daemon tells it too, for each backup it stores (a changed database: an unchanged one
    // is skipped, and a skip is not a backup).
    sqlite3(&d.join("app.db"), "INSERT INTO t(v) VALUES ('more');");
    let _daemon = Daemon::start(d, "d", &["--once"], &[]);
    wait_for_or(
        "the daemon's backup.succeeded",
        30,
        &mut || count(&events(&hook), "backup.succeeded", "app") == 2,
        || format!("{:?}", events(&hook)),
    );
}
