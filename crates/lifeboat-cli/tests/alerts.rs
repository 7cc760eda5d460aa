//! Alerts from one-shot commands, to real HTTP and SMTP receivers on 127.0.0.1 started and
//! stopped by each test: the runbook's webhook JSON, Slack, health pings, retries, dead and
//! hanging channels. Email's contents and secrets are in `alert_email.rs`.

mod common;

use std::path::Path;

use common::receiver::*;
use common::smtp::SmtpSink;
use common::*;

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
    // The database that could not be read, not the run as a whole.
    assert_eq!(v["source"], "app");
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
    let dead = format!("127.0.0.1:{}", closed_port());
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

#[test]
fn channels_that_hang_or_are_closed_leave_the_others_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A webhook and an SMTP server that accept and never answer; Slack answers.
    let (hung_web, hung_smtp, slack) = (Hang::start(), Hang::start(), Receiver::start(&[]));
    config(
        d,
        &format!(
            "webhook_url = \"http://{}/w\"\nslack_webhook_url = \"{}/s\"\nemail_to = \"ops@example.com\"\nsmtp_url = \"smtp://{}\"\n",
            hung_web.addr, slack.url, hung_smtp.addr
        ),
    );
    // The 10 s timeout, shortened for the test.
    let out = cmd(d)
        .args(["alert", "test"])
        .env("LIFEBOAT_ALERT_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("ok   slack (127.0.0.1)"), "{text}");
    assert!(
        text.contains("FAIL webhook (127.0.0.1): timed out"),
        "{text}"
    );
    assert!(text.contains("FAIL email (127.0.0.1): timed out"), "{text}");
    assert_eq!(slack.got().len(), 1);

    // A failed backup: the email reaches its server while the webhook's port is closed and
    // Slack hangs; the backup's own exit code is unchanged.
    let sink = SmtpSink::start(d);
    let hung_slack = Hang::start();
    config(
        d,
        &format!(
            "webhook_url = \"http://127.0.0.1:{}/w\"\nslack_webhook_url = \"http://{}/s\"\nemail_to = \"ops@example.com\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\n",
            closed_port(),
            hung_slack.addr,
            sink.port
        ),
    );
    let out = cmd(d)
        .args(["backup"])
        .env("LIFEBOAT_ALERT_TIMEOUT", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("alert backup.failed to webhook (127.0.0.1) not delivered after 4 attempt(s): could not connect"),
        "{err}"
    );
    assert!(
        err.contains(
            "alert backup.failed to slack (127.0.0.1) not delivered after 4 attempt(s): timed out"
        ),
        "{err}"
    );
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert_eq!(mails[0].subject, "[lifeboat] backup failed: app");
}
