//! Alerts from one-shot commands, to real HTTP receivers on 127.0.0.1 started and stopped by
//! each test: the runbook's webhook JSON, Slack, health pings, retries, a dead channel, secrets.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;

/// One request as received: method, path with query, body.
type Received = (String, String, String);

/// An HTTP receiver on loopback answering `statuses` in turn (then 200), recording every
/// request. Stopped when dropped.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
}

impl Receiver {
    fn start(statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (g, s, mut statuses) = (got.clone(), stop.clone(), statuses.to_vec());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (
                    parts.next().unwrap_or("").to_string(),
                    parts.next().unwrap_or("").to_string(),
                );
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                let _ = reader.read_exact(&mut body);
                g.lock()
                    .unwrap()
                    .push((method, path, String::from_utf8_lossy(&body).into()));
                let status = if statuses.is_empty() {
                    200
                } else {
                    statuses.remove(0)
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
            }
        });
        Receiver {
            url: format!("http://{addr}"),
            got,
            stop,
            addr,
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

fn config(d: &Path, alerts: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"app\"\npath = \"app.db\"\n[alerts]\n{alerts}"
        ),
    )
    .unwrap();
}

#[test]
fn a_failed_backup_is_told_to_every_channel_and_the_ping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (hook, slack, ping) = (
        Receiver::start(&[]),
        Receiver::start(&[]),
        Receiver::start(&[]),
    );
    // The webhook URL carries a secret in its path: it must never be shown.
    config(
        d,
        &format!(
            "webhook_url = \"{}/hooks/SECRET-TOKEN\"\nslack_webhook_url = \"{}/services/T0/B0/XYZ\"\nping_url = \"{}/ping/abc\"\n",
            hook.url, slack.url, ping.url
        ),
    );
    // app.db does not exist: the backup fails.
    let out = run(d, &["backup"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(!stderr(&out).contains("SECRET-TOKEN") && !stdout(&out).contains("SECRET-TOKEN"));
    let got = hook.got();
    assert_eq!(got.len(), 1, "{got:?}");
    let (method, path, body) = &got[0];
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/hooks/SECRET-TOKEN")
    );
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["details", "event", "message", "source", "timestamp"]);
    assert_eq!(v["event"], "backup.failed");
    assert_eq!(v["source"], "system_backup");
    assert!(v["message"].as_str().unwrap().contains("app.db"), "{v}");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["details"]["exit_code"], 3);
    let slack_body = &slack.got()[0].2;
    assert!(slack_body.contains("backup.failed"), "{slack_body}");
    // The ping: start, then fail with the summary, paired by one run id.
    let pings = ping.got();
    assert_eq!(pings.len(), 2, "{pings:?}");
    assert!(pings[0].1.starts_with("/ping/abc/start?rid="));
    assert!(pings[1].1.starts_with("/ping/abc/fail?rid="));
    let rid = |p: &str| p.split("rid=").nth(1).unwrap().to_string();
    assert_eq!(rid(&pings[0].1), rid(&pings[1].1));
    assert!(pings[1].2.contains("app.db"), "{pings:?}");
}

#[test]
fn success_pings_and_a_flaky_channel_gets_the_message_while_a_dead_one_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(
        &d.join("app.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    let ping = Receiver::start(&[]);
    config(d, &format!("ping_url = \"{}/p\"\n", ping.url));
    ok(d, &["backup"]);
    let pings = ping.got();
    assert_eq!(pings.len(), 2, "{pings:?}");
    assert!(
        pings[1].1.starts_with("/p?rid="),
        "success pings the bare URL: {pings:?}"
    );
    // `--no-alert`: nothing at all.
    ok(d, &["backup", "--no-alert"]);
    assert_eq!(ping.got().len(), 2);

    // A webhook that fails twice gets the test message on the third attempt; a dead Slack
    // (nothing listening) fails on its own.
    let flaky = Receiver::start(&[500, 503]);
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config(
        d,
        &format!(
            "webhook_url = \"{}/w\"\nslack_webhook_url = \"http://{dead}/s\"\n",
            flaky.url
        ),
    );
    let out = run(d, &["alert", "test"]);
    assert_eq!(out.status.code(), Some(1), "one channel failed");
    let text = stdout(&out);
    assert!(text.contains("ok   webhook (127.0.0.1)"), "{text}");
    assert!(
        text.contains("FAIL slack (127.0.0.1): could not connect"),
        "{text}"
    );
    assert_eq!(flaky.got().len(), 3, "two failures, then delivered");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&flaky.got()[2].2).unwrap()["event"],
        "alert.test"
    );
}

#[test]
fn the_runbooks_environment_switches_the_webhook_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = Receiver::start(&[]);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"app\"\npath = \"app.db\"\n",
    )
    .unwrap();
    let out = cmd(d)
        .args(["backup"])
        .env("BACKUP_ALERT_WEBHOOK_URL", format!("{}/env", hook.url))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(hook.got().len(), 1);
    assert_eq!(hook.got()[0].1, "/env");
}
