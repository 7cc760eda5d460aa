//! Helpers shared by the replication tests: times as the writers log them, and stopping a
//! `lifeboat replicate` the way an operator does.
#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{SystemTime, UNIX_EPOCH};

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
