//! The daemon's verification, with a real webhook receiver on loopback: a damaged upload caught
//! by `verify_after_backup` and told as `verify.failed` (the run retried), then as stale; a backup damaged
//! later found by the verifier's rolling read at start and told once; two daemons doing a read
//! slot once.

mod common;

use std::time::Duration;

use common::daemon::{config, small_db, wait_for_or, Daemon};
use common::receiver::Receiver;
use common::*;

fn told(hook: &Receiver, event: &str) -> Vec<serde_json::Value> {
    hook.got()
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .filter(|v| v["event"] == event)
        .collect()
}

#[test]
fn a_damaged_upload_is_told_as_verify_failed_and_the_run_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("app.db"), 200);
    let hook = Receiver::start(&[]);
    config(
        d,
        "file://./repo",
        &["app"],
        &format!(
            "[daemon]\nschedule = \"0 0 1 1 *\"\nretry_after = \"1h\"\nstale_check_interval = \"1s\"\n[status]\nwarn_age = \"1s\"\nmax_age = \"2s\"\n[alerts]\nwebhook_url = \"{}/hooks/T0KEN\"\n",
            hook.url
        ),
    );
    let mut daemon = Daemon::start(
        d,
        "d",
        &[],
        &[("LIFEBOAT_FAULT", "corrupt-upload".to_string())],
    );
    // The bad backup is not a good one: staleness fires as if there were none.
    wait_for_or(
        "verify.failed and backup.stale",
        60,
        &mut || !told(&hook, "verify.failed").is_empty() && !told(&hook, "backup.stale").is_empty(),
        || format!("{:?}\n{}", hook.got(), daemon.log()),
    );
    let alert = &told(&hook, "verify.failed")[0];
    assert_eq!(alert["source"], "app");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("failed its restore-test"),
        "{alert}"
    );
    assert_eq!(daemon.stop(), Some(0));
    // The run is recorded failed and the backup bad: status has no good backup.
    let status = run(d, &["status"]);
    assert_eq!(status.status.code(), Some(2), "{}", stdout(&status));
    assert!(
        stdout(&status).contains("no good backup"),
        "{}",
        stdout(&status)
    );
    assert!(stdout(&status).contains("failed its restore-test"));
}

#[test]
fn the_verifier_reads_at_start_finds_a_flipped_bit_and_tells_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("app.db"), 2000);
    let hook = Receiver::start(&[]);
    let extra = format!(
        "[daemon]\nschedule = \"0 0 1 1 *\"\n[verify]\nread_subset = \"1/1\"\ncatalogue_interval = \"1m\"\n[alerts]\nwebhook_url = \"{}/hooks/T0KEN\"\n",
        hook.url
    );
    config(d, "file://./repo", &["app"], &extra);
    ok(d, &["backup", "--db", "app"]);
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    let id = v["databases"][0]["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Damaged after it was written and restore-tested: only a later read can find it.
    let data = d.join(format!("repo/app/backups/{id}.sqlite.zst"));
    flip_middle_byte(&data, 0x04);
    // Two daemons: the read slot that passed at 03:30 today runs at start, once.
    let mut first = Daemon::start(d, "d1", &[], &[]);
    let mut second = Daemon::start(d, "d2", &[], &[]);
    wait_for_or(
        "verify.failed from the read",
        60,
        &mut || !told(&hook, "verify.failed").is_empty(),
        || format!("{:?}\n{}\n{}", hook.got(), first.log(), second.log()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let alerts = told(&hook, "verify.failed");
    assert_eq!(alerts.len(), 1, "told once: {alerts:?}");
    assert_eq!(alerts[0]["details"]["backups"][0], id.as_str());
    assert_eq!(alerts[0]["details"]["check"], "read");
    // The read slot's lease lets one daemon read it; the other passes.
    let read = |log: String| {
        log.lines()
            .filter(|l| l.contains(" verified ") && l.contains("rung=\"read\""))
            .count()
    };
    assert_eq!(
        read(first.log()) + read(second.log()),
        1,
        "one daemon read it:\n{}\n{}",
        first.log(),
        second.log()
    );
    assert_eq!(first.stop(), Some(0));
    assert_eq!(second.stop(), Some(0));
    // Recorded bad: `latest` has nothing good left.
    let err = fails(d, &["restore", "--db", "app", "--to", "x.db"], 6);
    assert!(err.contains("failed its read"), "{err}");
}

#[test]
fn a_one_shot_verify_that_finds_damage_alerts_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_db(&d.join("app.db"), 2000);
    let hook = Receiver::start(&[]);
    config(
        d,
        "file://./repo",
        &["app"],
        &format!("[alerts]\nwebhook_url = \"{}/hooks/T0KEN\"\n", hook.url),
    );
    ok(d, &["backup", "--db", "app"]);
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    let id = v["databases"][0]["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let data = d.join(format!("repo/app/backups/{id}.sqlite.zst"));
    flip_middle_byte(&data, 0x20);
    fails(d, &["verify", &id, "--no-alert"], 6);
    assert!(told(&hook, "verify.failed").is_empty(), "{:?}", hook.got());
    fails(d, &["verify", "--db", "app"], 6);
    let alerts = told(&hook, "verify.failed");
    assert_eq!(alerts.len(), 1, "{:?}", hook.got());
    assert_eq!(alerts[0]["source"], "app");
    assert!(
        alerts[0]["message"].as_str().unwrap().contains(&id),
        "{}",
        alerts[0]
    );
}
