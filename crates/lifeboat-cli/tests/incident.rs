//! Incident records: the event log a failed backup, an alert sent and a restore leave in the
//! repository, and `lifeboat incident new|list`, whose timeline is pre-filled from the
//! repository's records of the window. Real binary, real SQLite files, a real webhook receiver
//! on 127.0.0.1 and a real S3 server.

mod common;

use std::path::Path;

use common::daemon::Daemon;
use common::receiver::Receiver;
use common::s3::S3Server;
use common::*;

const NOT_SQLITE: &str =
    "not a database: a text file long enough to have a SQLite-sized header, and more text after it";

/// `lifeboat.toml`: `studio` (the tenant schema) and `notes`, a webhook with a secret path.
fn config(d: &Path, hook: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n\
             [[database]]\nname = \"studio\"\npath = \"studio.db\"\n\
             tenancy = {{ exclude = [\"webhook_log\"], links = {{ \"videos.owner_ref\" = \"classes\" }} }}\n\
             [[database]]\nname = \"notes\"\npath = \"notes.db\"\n\
             [alerts]\nwebhook_url = \"{hook}/hooks/SECRET-TOKEN\"\n"
        ),
    )
    .unwrap();
}

/// `incident new … --json`: the file written and the timeline's entries.
fn new_incident(d: &Path, args: &[&str]) -> (std::path::PathBuf, Vec<serde_json::Value>) {
    let mut all = vec!["--json", "incident", "new"];
    all.extend_from_slice(args);
    let out = ok(d, &all);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let file = d.join(v["file"].as_str().unwrap());
    assert!(file.is_file(), "{v}");
    (file, v["timeline"].as_array().unwrap().clone())
}

/// Every file under `dir`, read as text.
fn all_text(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.push_str(&all_text(&e.path()));
        } else if let Ok(s) = std::fs::read_to_string(e.path()) {
            out.push_str(&s);
        }
    }
    out
}

#[test]
fn failures_alerts_backups_and_restores_make_the_timeline_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = Receiver::start(&[]);
    config(d, &hook.url);
    rusqlite::Connection::open(d.join("studio.db"))
        .unwrap()
        .execute_batch(TENANT_SCHEMA)
        .unwrap();
    sqlite3(
        &d.join("notes.db"),
        "CREATE TABLE n(x); INSERT INTO n VALUES (1);",
    );

    // notes is backed up, then its file is replaced by text: the next backup fails (exit 3),
    // is told to the webhook, and both go to the event log.
    ok(d, &["backup", "--db", "notes"]);
    std::fs::write(d.join("notes.db"), NOT_SQLITE).unwrap();
    let err = fails(d, &["backup", "--db", "notes"], 3);
    assert!(err.contains("not a SQLite database"), "{err}");
    assert_eq!(hook.got().len(), 1, "{:?}", hook.got());
    // Then studio is backed up, tenant t1 loses a booking and is restored, and the whole
    // database is restored into a copy.
    ok(d, &["backup", "--db", "studio"]);
    sqlite3(
        &d.join("studio.db"),
        "DELETE FROM bookings WHERE id = 'b1';",
    );
    ok(
        d,
        &[
            "restore",
            "--db",
            "studio",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
        ],
    );
    ok(d, &["restore", "--db", "studio", "--to", "copy.db"]);

    let (file, entries) = new_incident(d, &["--title", "Tenant t1 lost | bookings"]);
    let kinds: Vec<(String, String)> = entries
        .iter()
        .filter(|e| {
            !e["text"]
                .as_str()
                .unwrap()
                .contains(" safety backup stored")
        })
        .map(|e| {
            (
                e["database"].as_str().unwrap().to_string(),
                e["what"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("notes", "backup"),
        ("notes", "restore-test"),
        ("notes", "backup.failed"),
        ("notes", "alert.sent"),
        ("studio", "backup"),
        ("studio", "restore-test"),
        ("studio", "tenant.restore"),
        ("studio", "restore.done"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(kinds, want, "{entries:#?}");
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "time order");
    let of = |what: &str| {
        entries
            .iter()
            .find(|e| e["what"] == what)
            .unwrap()
            .to_owned()
    };
    assert!(of("backup.failed")["text"]
        .as_str()
        .unwrap()
        .contains("not a SQLite database"));
    let alert = of("alert.sent")["text"].as_str().unwrap().to_string();
    assert!(
        alert.contains("backup.failed") && alert.contains("webhook (127.0.0.1) delivered"),
        "{alert}"
    );
    assert!(of("tenant.restore")["text"]
        .as_str()
        .unwrap()
        .contains("tenant t1 restored from backup-"));
    assert!(of("restore.done")["text"]
        .as_str()
        .unwrap()
        .contains("copy.db"));

    // The alert's record in the repository: the event's name, the channel's kind and host,
    // delivered; never the webhook's secret path.
    let events = d.join("repo/notes/events");
    let sent: Vec<serde_json::Value> = std::fs::read_dir(&events)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("-alert.sent-"))
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["details"]["event"], "backup.failed");
    assert_eq!(sent[0]["details"]["channels"][0]["channel"], "webhook");
    assert_eq!(sent[0]["details"]["channels"][0]["host"], "127.0.0.1");
    assert_eq!(sent[0]["details"]["channels"][0]["delivered"], true);
    assert!(!all_text(&d.join("repo")).contains("SECRET-TOKEN"));

    // The file: the runbook's seven sections, the timeline as a table in the same order.
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("# Incident: Tenant t1 lost | bookings\n"),
        "{text}"
    );
    for section in [
        "## 1. Incident Summary",
        "## 2. Timeline",
        "## 3. Root Cause",
        "## 4. Recovery Actions",
        "## 5. Impact",
        "## 6. Lessons Learned",
        "## 7. Action Items",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| 20")).collect();
    assert_eq!(rows.len(), entries.len(), "{text}");
    let pos = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}:\n{text}"))
    };
    assert!(pos("| notes | backup.failed |") < pos("| notes | alert.sent |"));
    assert!(pos("| notes | alert.sent |") < pos("| studio | tenant.restore |"));
    assert!(pos("| studio | tenant.restore |") < pos("| studio | restore.done |"));
    assert!(!text.contains("SECRET-TOKEN"));
    assert!(file.ends_with(format!(
        "incidents/{}-tenant-t1-lost-bookings.md",
        chrono::Utc::now().format("%Y-%m-%d")
    )));

    // --db narrows the timeline to one database.
    let (_, only) = new_incident(d, &["--title", "notes only", "--db", "notes"]);
    assert!(only.iter().all(|e| e["database"] == "notes"), "{only:?}");
    assert_eq!(only.len(), 4, "{only:?}");
}

#[test]
fn since_leaves_out_what_happened_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(&d.join("notes.db"), "CREATE TABLE n(x);");
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"notes\"\npath = \"notes.db\"\n",
    )
    .unwrap();
    ok(d, &["backup"]);
    std::fs::write(d.join("notes.db"), NOT_SQLITE).unwrap();
    fails(d, &["backup"], 3);
    // A failure three days old, as the log holds it (its name is its time).
    let events = d.join("repo/notes/events");
    let logged = std::fs::read_dir(&events).unwrap().next().unwrap().unwrap();
    let mut old: serde_json::Value =
        serde_json::from_slice(&std::fs::read(logged.path()).unwrap()).unwrap();
    let then = chrono::Utc::now() - chrono::Duration::days(3);
    old["at"] = then.to_rfc3339().into();
    old["summary"] = "the old failure".into();
    std::fs::write(
        events.join(format!(
            "{}-backup.failed-0000abcd.json",
            then.format("%Y-%m-%dT%H%M%S%.3fZ")
        )),
        serde_json::to_vec(&old).unwrap(),
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let between = chrono::Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fails(d, &["backup"], 3);

    let texts = |entries: &[serde_json::Value]| -> Vec<String> {
        entries
            .iter()
            .filter(|e| e["what"] == "backup.failed")
            .map(|e| e["text"].as_str().unwrap().to_string())
            .collect()
    };
    // The default window, 24 h: both recent failures, not the old one.
    let (_, day) = new_incident(d, &["--title", "a"]);
    assert_eq!(texts(&day).len(), 2, "{day:?}");
    assert!(!texts(&day).iter().any(|t| t.contains("old failure")));
    // A week back: the old one too, first.
    let (_, week) = new_incident(d, &["--title", "b", "--since", "7d"]);
    assert_eq!(texts(&week).len(), 3, "{week:?}");
    assert_eq!(texts(&week)[0], "the old failure");
    // From a time between the two recent failures: only the second, and no backup.
    let since = between.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (_, late) = new_incident(d, &["--title", "c", "--since", &since]);
    assert_eq!(late.len(), 1, "{late:?}");
    assert_eq!(late[0]["what"], "backup.failed");
    // Bad windows are one-line usage errors and write nothing.
    for bad in ["yesterday-ish", "2999-01-01T00:00:00Z"] {
        let err = fails(d, &["incident", "new", "--title", "x", "--since", bad], 2);
        assert!(err.contains("--since"), "{err}");
    }
    fails(d, &["incident", "new", "--title", "   "], 2);
    // A backup whose stored bytes were damaged: verify marks it bad, and the timeline says so.
    let data: Vec<_> = std::fs::read_dir(d.join("repo/notes/backups"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".sqlite.zst"))
        .collect();
    let mut bytes = std::fs::read(&data[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data[0], bytes).unwrap();
    let o = run(d, &["verify", "--db", "notes"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let (_, checked) = new_incident(d, &["--title", "d"]);
    let bad: Vec<&serde_json::Value> = checked
        .iter()
        .filter(|e| e["text"].as_str().unwrap().contains("FAILED"))
        .collect();
    assert_eq!(bad.len(), 1, "{checked:#?}");
    assert!(
        bad[0]["text"]
            .as_str()
            .unwrap()
            .contains("no longer counts as good"),
        "{bad:?}"
    );
    let listed = ok(d, &["--json", "incident", "list"]);
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v["incidents"].as_array().unwrap().len(), 4, "{v}");
}

#[test]
fn one_title_twice_at_once_makes_two_files_and_list_shows_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(&d.join("a.db"), "CREATE TABLE t(x);");
    ok(d, &["backup", "--db", "a.db", "--repo", "file://./repo"]);
    let title = "Outage: D1 import\nfailed | twice 🦀";
    let spawn = || {
        cmd(d)
            .args([
                "incident",
                "new",
                "--repo",
                "file://./repo",
                "--out",
                "notes",
            ])
            .args(["--title", title])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    let paths: Vec<String> = [&a, &b]
        .iter()
        .map(|o| {
            assert!(o.status.success(), "{}", stderr(o));
            stdout(o).trim().to_string()
        })
        .collect();
    assert_ne!(paths[0], paths[1]);
    let date = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("{date}-outage-d1-import-failed-twice-2.md"),
            format!("{date}-outage-d1-import-failed-twice.md"),
        ]
    );
    for p in &paths {
        let text = std::fs::read_to_string(d.join(p)).unwrap();
        // The title is one line: its newline cannot start a heading of its own.
        assert!(
            text.starts_with("# Incident: Outage: D1 import\\nfailed | twice 🦀\n"),
            "{text}"
        );
        assert!(text.contains("| a | backup | backup-"), "{text}");
    }
    let listed = ok(d, &["incident", "list", "--out", "notes"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].ends_with(&format!("{date}-outage-d1-import-failed-twice.md")),
        "{listed}"
    );
    assert!(lines[1].ends_with("-twice-2.md"), "{listed}");
    assert!(lines
        .iter()
        .all(|l| l.starts_with(&date) && l.contains("Outage: D1 import")));
    // An existing file is never written over: a third makes -3, the first two unchanged.
    let before = std::fs::read(d.join(&paths[0])).unwrap();
    let third = stdout(&spawn());
    assert!(third.trim().ends_with("-twice-3.md"), "{third}");
    assert_eq!(std::fs::read(d.join(&paths[0])).unwrap(), before);
    // No incident yet elsewhere: said, not an error.
    assert!(ok(d, &["incident", "list", "--out", "elsewhere"]).contains("no incidents"));
}

#[test]
fn an_unreadable_repository_still_gets_its_incident_file_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run(
        d,
        &[
            "incident",
            "new",
            "--title",
            "repo gone",
            "--repo",
            "file://./missing",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: the repository could not be read"),
        "{}",
        stderr(&o)
    );
    let text = std::fs::read_to_string(d.join(stdout(&o).trim())).unwrap();
    assert!(
        text.contains("> **Note:** the repository could not be read"),
        "{text}"
    );
    assert!(text.contains("## 7. Action Items"));
    assert!(!d.join("missing").exists(), "no repository is created");
}

#[test]
fn the_daemons_failures_and_alerts_reach_the_timeline_on_s3() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let hook = Receiver::start(&[]);
    let url = format!("s3://{}/lb", common::s3::BUCKET);
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"{url}\"\n[[database]]\nname = \"app\"\npath = \"app.db\"\n\
             [alerts]\nwebhook_url = \"{}/hooks/SECRET-TOKEN\"\n",
            hook.url
        ),
    )
    .unwrap();
    sqlite3(
        &d.join("app.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    s3.ok(d, &["backup"]);
    std::fs::write(d.join("app.db"), NOT_SQLITE).unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", common::s3::KEY.to_string()),
        ("AWS_SECRET_ACCESS_KEY", common::s3::SECRET.to_string()),
        ("AWS_ENDPOINT_URL", s3.endpoint()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let mut daemon = Daemon::start(d, "d", &["--once"], &env);
    let status = daemon.child.wait().unwrap();
    assert!(!status.success(), "the job failed: {}", daemon.log());
    assert!(!hook.got().is_empty(), "{}", daemon.log());

    let out = s3.ok(d, &["--json", "incident", "new", "--title", "daemon"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let whats: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(
        whats,
        ["backup", "restore-test", "backup.failed", "alert.sent"],
        "{v:#}"
    );
    assert!(v["timeline"][2]["text"]
        .as_str()
        .unwrap()
        .contains("not a SQLite database"));
    // From after the failure, on S3 (listed from the window's start): nothing.
    let later = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let out = s3.ok(
        d,
        &[
            "--json", "incident", "new", "--title", "later", "--since", &later,
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["timeline"].as_array().unwrap().len(), 0, "{v:#}");
}
