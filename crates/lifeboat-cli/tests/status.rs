//! `lifeboat status`: states from the repository alone, Nagios' exit codes and line.

mod common;

use std::path::Path;

use common::*;

fn setup(d: &Path) {
    sqlite3(
        &d.join("app.db"),
        "CREATE TABLE t(x); INSERT INTO t VALUES (1);",
    );
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"app\"\npath = \"app.db\"\n",
    )
    .unwrap();
}

fn status(d: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["status"];
    args.extend_from_slice(extra);
    let out = run(d, &args);
    (out.status.code().unwrap(), stdout(&out))
}

/// Move the only backup's time back by `minutes`.
fn age_backup(d: &Path, minutes: i64) {
    let dir = d.join("repo/app/backups");
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let t = chrono::Utc::now() - chrono::Duration::minutes(minutes);
            m["created_at"] = t.to_rfc3339().into();
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        }
    }
}

#[test]
fn states_follow_the_last_good_backups_age_and_the_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    // A repository that is not there says nothing: UNKNOWN (an unmounted volume looks the same).
    assert_eq!(status(d, &["--nagios"]).0, 3);
    ok(d, &["backup"]);
    // A configured database never backed up: CRITICAL.
    let toml = std::fs::read_to_string(d.join("lifeboat.toml")).unwrap();
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("{toml}[[database]]\nname = \"new\"\npath = \"new.db\"\n"),
    )
    .unwrap();
    let (code, out) = status(d, &["--nagios"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.starts_with("LIFEBOAT CRITICAL - 1 of 2 database(s): new no good backup"),
        "{out}"
    );
    std::fs::write(d.join("lifeboat.toml"), toml).unwrap();
    let (code, out) = status(d, &["--nagios"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("LIFEBOAT OK - 1 database(s) backed up | 'app_age'="),
        "{out}"
    );
    assert!(out.contains("s;90000;93600 'app_backups'=1"), "{out}");
    // The run was recorded in the repository.
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "status"])).unwrap();
    assert_eq!(v["databases"][0]["last_run"]["ok"], true);
    // 25.5 h old: WARNING; 30 h: CRITICAL.
    age_backup(d, 25 * 60 + 30);
    std::thread::sleep(std::time::Duration::from_millis(10));
    let (code, out) = status(d, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("WARNING") && out.contains("warn_age 25h"),
        "{out}"
    );
    age_backup(d, 30 * 60);
    let (code, out) = status(d, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("max_age 26h"), "{out}");
    // A fresh backup, but the last run failed: CRITICAL, with its message.
    ok(d, &["backup"]);
    std::fs::write(
        d.join("repo/app/runs/last.json"),
        r#"{"at": "2026-12-02T02:00:00Z", "ok": false, "error": "backup app: repository timeout"}"#,
    )
    .unwrap();
    let (code, out) = status(d, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("the last run failed: backup app: repository timeout"),
        "{out}"
    );
}

#[test]
fn an_unreadable_repository_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        d,
        &[
            "status",
            "--nagios",
            "--repo",
            "file:///nonexistent/lifeboat",
        ],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout(&out).starts_with("LIFEBOAT UNKNOWN - "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn databases_the_config_does_not_name_count_and_nagios_text_keeps_its_perfdata() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ok(d, &["backup"]);
    // Another database backed up into the same repository by path, not configured.
    sqlite3(&d.join("b.db"), "CREATE TABLE u(y);");
    ok(d, &["backup", "--db", "b.db"]);
    std::fs::write(
        d.join("repo/b/runs/last.json"),
        r#"{"at": "2026-12-02T02:00:00Z", "ok": false, "error": "x|'fake'=1s"}"#,
    )
    .unwrap();
    let (code, out) = status(d, &["--nagios"]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("1 of 2 database(s): b the last run failed"),
        "{out}"
    );
    assert_eq!(out.matches('|').count(), 1, "one perfdata separator: {out}");
    let perfdata = out.split('|').nth(1).unwrap();
    assert!(!perfdata.contains("fake"), "{out}");
}

#[test]
fn one_failing_database_does_not_stop_the_others_and_status_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(&d.join("app.db"), "CREATE TABLE t(x);");
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n\
         [[database]]\nname = \"edge\"\nd1 = { database = \"edge-db\" }\nwrangler = \"/nonexistent/wrangler\"\n\
         [[database]]\nname = \"app\"\npath = \"app.db\"\n",
    )
    .unwrap();
    let out = run(d, &["backup"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("1 of 2 backups failed"), "{err}");
    // The database after the failing one was still backed up.
    assert!(stdout(&out).contains("app  backup-"), "{}", stdout(&out));
    let (code, text) = status(d, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("OK       app"), "{text}");
    assert!(
        text.contains("CRITICAL edge") && text.contains("no good backup"),
        "{text}"
    );
    // The failed run wrote nothing into the repository: it is told by exit code and alerts.
    assert!(!d.join("repo/edge").exists());
}
