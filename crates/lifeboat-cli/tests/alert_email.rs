//! Email alerts, to a real SMTP server (aiosmtpd) on 127.0.0.1 started and stopped by each test:
//! switched on by the runbook's environment alone, a readable message with the facts (and Slack
//! saying the same), a login, and no secret anywhere in the output, even with debug logs.

mod common;

use std::path::Path;
use std::process::Output;

use common::receiver::*;
use common::smtp::SmtpSink;
use common::*;

fn config(d: &Path, extra: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio-platform-db\"\npath = \"studio.db\"\n{extra}"
        ),
    )
    .unwrap();
}

#[test]
fn the_runbooks_environment_alone_sends_a_readable_email_with_the_facts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "");
    sqlite3(
        &d.join("studio.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    ok(d, &["backup"]);
    let list: serde_json::Value =
        serde_json::from_str(&ok(d, &["list", "--db", "studio-platform-db", "--json"])).unwrap();
    let last_good = list["databases"][0]["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The database goes missing: the next backup fails.
    std::fs::remove_file(d.join("studio.db")).unwrap();

    let sink = SmtpSink::start(d);
    let slack = Receiver::start(&[]);
    let out = cmd(d)
        .args(["backup"])
        .env("PLATFORM_ADMIN_EMAIL", "admin@studio.example")
        .env("SMTP_URL", format!("smtp://127.0.0.1:{}", sink.port))
        .env(
            "SLACK_WEBHOOK_URL",
            format!("{}/services/T0/B0/X", slack.url),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let error = stderr(&out)
        .trim()
        .strip_prefix("lifeboat: error: ")
        .unwrap()
        .to_string();

    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let m = &mails[0];
    assert_eq!(m.rcpt_to, "admin@studio.example");
    assert_eq!(m.to, "admin@studio.example");
    assert_eq!(m.from, "lifeboat <lifeboat@studio.example>");
    assert_eq!(m.subject, "[lifeboat] backup failed: studio-platform-db");
    let body = &m.body;
    let line = |label: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {label} in:\n{body}"))
    };
    assert_eq!(line("Database:"), "studio-platform-db");
    assert_eq!(line("Error:"), error);
    assert!(error.contains("studio.db"), "{error}");
    let time = line("Time:");
    let at = chrono::NaiveDateTime::parse_from_str(&time, "%Y-%m-%d %H:%M:%S UTC").unwrap();
    assert!(
        (chrono::Utc::now().naive_utc() - at).num_minutes().abs() < 10,
        "{time}"
    );
    let good = line("Last good backup:");
    assert!(good.starts_with(&format!("{last_good} (")), "{good}");
    assert!(good.contains(" UTC, "), "{good}");
    assert!(
        body.contains("\n  lifeboat status --db studio-platform-db\n"),
        "{body}"
    );
    assert!(
        body.contains("\n  lifeboat list --db studio-platform-db\n"),
        "{body}"
    );

    // Slack carries the same facts.
    let got = slack.got();
    assert_eq!(got.len(), 1);
    let text = serde_json::from_str::<serde_json::Value>(&got[0].2).unwrap()["text"]
        .as_str()
        .unwrap()
        .to_string();
    for fact in [
        "*[lifeboat] backup failed: studio-platform-db*".to_string(),
        "*Database:* studio-platform-db".into(),
        format!("*Error:* {error}"),
        format!("*Time:* {time}"),
        format!("*Last good backup:* {good}"),
        "`lifeboat status --db studio-platform-db`".into(),
        "`lifeboat list --db studio-platform-db`".into(),
    ] {
        assert!(text.contains(&fact), "{fact} not in {text}");
    }
}

#[test]
fn the_login_is_used_from_the_url_or_apart_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A password that must be percent-encoded in a URL.
    let sink = SmtpSink::with_login(d, "alerts@studio.example", "p@ss/w:rd");
    config(
        d,
        &format!(
            "[alerts]\nemail_to = \"ops@studio.example, dba@studio.example\"\nsmtp_url = \"smtp://alerts%40studio.example:p%40ss%2Fw%3Ard@127.0.0.1:{}\"\n",
            sink.port
        ),
    );
    let out = ok(d, &["alert", "test"]);
    assert_eq!(out.trim(), "ok   email (127.0.0.1)");
    // Apart from the URL, the password needs no encoding; the sender defaults to the login.
    config(
        d,
        &format!(
            "[alerts]\nemail_to = \"ops@studio.example\"\nsmtp_url = \"smtp://127.0.0.1:{}\"\nsmtp_username = \"alerts@studio.example\"\nsmtp_password = \"${{PW}}\"\n",
            sink.port
        ),
    );
    let out = cmd(d)
        .args(["alert", "test"])
        .env("PW", "p@ss/w:rd")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert_eq!(mails[0].rcpt_to, "ops@studio.example, dba@studio.example");
    assert_eq!(mails[1].from, "lifeboat <alerts@studio.example>");
    assert_eq!(mails[1].subject, "[lifeboat] test alert");
    // A wrong password is refused by the server: said once (no retry fixes it), exit 1.
    let out = cmd(d)
        .args(["alert", "test"])
        .env("PW", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("FAIL email (127.0.0.1): SMTP permanent error (535)"),
        "{text}"
    );
    assert_eq!(sink.mails().len(), 2);
}

#[test]
fn an_email_setting_that_cannot_work_is_said_at_every_run_and_changes_no_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "");
    sqlite3(&d.join("studio.db"), "CREATE TABLE t(x);");
    let out = cmd(d)
        .args(["backup"])
        .env("PLATFORM_ADMIN_EMAIL", "ops")
        .env("SMTP_URL", "smtp://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "lifeboat: warning: alerts: email: PLATFORM_ADMIN_EMAIL \"ops\" is not an email address (or a comma-separated list)"
    );
    let out = cmd(d)
        .args(["alert", "test"])
        .env("PLATFORM_ADMIN_EMAIL", "ops@studio.example")
        .env("SMTP_URL", "https://mail.example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out).trim(),
        "FAIL email (mail.example.com): email: SMTP_URL must start with smtp:// or smtps://"
    );
}

#[test]
fn starttls_and_smtps_deliver_to_a_server_the_roots_trust_and_refuse_one_they_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = common::smtp::test_certificates(d);
    let (starttls, smtps) = (
        SmtpSink::starttls(d, &cert, &key),
        SmtpSink::smtps(d, &cert, &key),
    );
    let test = |url: String, trusted: bool, args: &[&str]| {
        config(
            d,
            &format!("[alerts]\nemail_to = \"ops@studio.example\"\nsmtp_url = \"{url}\"\n"),
        );
        let mut c = cmd(d);
        c.args(args);
        // The system's roots, as rustls-native-certs reads them: the test CA alone, or (not
        // trusted) only the server's own certificate.
        if trusted {
            c.env("SSL_CERT_FILE", &ca);
        } else {
            c.env("SSL_CERT_FILE", &cert)
                .env("SSL_CERT_DIR", d.join("none"));
        }
        c.output().unwrap()
    };
    for url in [
        format!("smtp://localhost:{}?tls=required", starttls.port),
        format!("smtp://127.0.0.1:{}?tls=required", starttls.port),
        format!("smtps://localhost:{}", smtps.port),
    ] {
        let out = test(url.clone(), true, &["alert", "test"]);
        assert!(
            out.status.success(),
            "{url}: {}{}",
            stdout(&out),
            stderr(&out)
        );
    }
    assert_eq!(starttls.mails().len(), 2);
    assert_eq!(smtps.mails().len(), 1);
    assert_eq!(smtps.mails()[0].subject, "[lifeboat] test alert");
    // Not signed by a trusted root: refused at once (no retry helps), nothing delivered.
    let out = test(
        format!("smtps://localhost:{}", smtps.port),
        false,
        &["alert", "test"],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.starts_with("FAIL email (localhost): SMTP Connection error: invalid peer certificate"),
        "{text}"
    );
    let out = test(
        format!("smtp://localhost:{}?tls=required", starttls.port),
        false,
        &["backup"],
    );
    assert_eq!(out.status.code(), Some(3), "studio.db is missing");
    let err = stderr(&out);
    assert!(
        err.contains("alert backup.failed to email (localhost) not delivered after 1 attempt(s): SMTP Connection error: invalid peer certificate"),
        "{err}"
    );
    assert_eq!((starttls.mails().len(), smtps.mails().len()), (2, 1));
}

/// Everything a command printed, with the secrets it must not hold.
fn assert_no_secret(out: &Output, secrets: &[&str]) {
    let all = format!("{}{}", stdout(out), stderr(out));
    for s in secrets {
        assert!(!all.contains(s), "{s:?} shown in:\n{all}");
    }
}

#[test]
fn no_secret_is_shown_even_with_debug_logs_whether_channels_work_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    config(d, "");
    let secrets = [
        "HOOK-SECRET-TOKEN",
        "SLACK-SECRET-TOKEN",
        "SMTP-SECRET-PASSWORD",
        "smtp-login-name",
    ];
    let (hook, slack) = (Receiver::start(&[]), Receiver::start(&[]));
    let sink = SmtpSink::with_login(d, "smtp-login-name", "SMTP-SECRET-PASSWORD");
    // Live channels get the default timeout (a slow machine's SMTP exchange with AUTH may
    // take over a second: a retry would deliver twice); dead ones 1 s, to keep the test short.
    let run = |hook: &str, slack: &str, smtp: &str, args: &[&str], timeout: &str| {
        cmd(d)
            .args(args)
            .env("LIFEBOAT_LOG", "debug")
            .env("RUST_LOG", "debug")
            .env("LIFEBOAT_ALERT_TIMEOUT", timeout)
            .env(
                "BACKUP_ALERT_WEBHOOK_URL",
                format!("{hook}/hooks/HOOK-SECRET-TOKEN"),
            )
            .env(
                "SLACK_WEBHOOK_URL",
                format!("{slack}/services/T0/B0/SLACK-SECRET-TOKEN"),
            )
            .env("PLATFORM_ADMIN_EMAIL", "ops@studio.example")
            .env("SMTP_URL", smtp)
            .output()
            .unwrap()
    };
    let live_smtp = format!(
        "smtp://smtp-login-name:SMTP-SECRET-PASSWORD@127.0.0.1:{}",
        sink.port
    );
    // Live channels: all delivered.
    for args in [
        &["alert", "test"][..],
        &["alert", "test", "--json"],
        &["backup"],
        &["backup", "--json"],
    ] {
        let out = run(&hook.url, &slack.url, &live_smtp, args, "10s");
        assert_no_secret(&out, &secrets);
        assert!(
            !stderr(&out).contains("not delivered"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert_eq!(hook.got().len(), 4);
    assert_eq!(sink.mails().len(), 4);
    // Dead channels: closed ports, a server that hangs, and a login the server refuses.
    let dead = format!("http://127.0.0.1:{}", closed_port());
    let hung = Hang::start();
    let refused = live_smtp.replace("SMTP-SECRET-PASSWORD", "SMTP-SECRET-PASSWORD-WRONG");
    let smtp_urls = [
        format!(
            "smtp://smtp-login-name:SMTP-SECRET-PASSWORD@127.0.0.1:{}",
            closed_port()
        ),
        format!("smtp://smtp-login-name:SMTP-SECRET-PASSWORD@{}", hung.addr),
        refused,
        "smtp://smtp-login-name:SMTP-SECRET-PASSWORD@127.0.0.1:2525?tls=bogus".into(),
    ];
    let commands: [&[&str]; 4] = [
        &["alert", "test", "--json"],
        &["backup"],
        &["alert", "test"],
        &["backup", "--json"],
    ];
    for (i, (smtp, args)) in smtp_urls.iter().zip(commands).enumerate() {
        // Slack hangs once (with the SMTP server that hangs), else its port is closed.
        let slack = match i {
            1 => format!("http://{}", hung.addr),
            _ => dead.clone(),
        };
        let out = run(&dead, &slack, smtp, args, "1s");
        assert_no_secret(&out, &secrets);
        let all = format!("{}{}", stdout(&out), stderr(&out));
        assert!(all.contains("email (127.0.0.1)"), "{all}");
        assert!(!out.status.success(), "{args:?}");
    }
    assert_eq!(sink.mails().len(), 4);
}
