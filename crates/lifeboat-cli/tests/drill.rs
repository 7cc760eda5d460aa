//! `lifeboat drill` end to end, with real parts: a real SQLite database backed up by the binary,
//! drills into scratch space, a file and a local D1 database (wrangler), data checks that pass
//! and fail, an RTO breach (exit 1, and in the daemon the `drill.rto_breached` alert at a
//! loopback webhook receiver), bad expectations refused as config errors, a corrupt backup, and
//! two drills at once.

mod common;

use std::path::Path;

use common::d1::Project;
use common::daemon::{wait_for_or, Daemon};
use common::receiver::Receiver;
use common::*;

/// A studio database: tenants with creation times (text), bookings with unix times.
fn studio(dir: &Path) {
    sqlite3(
        &dir.join("studio.db"),
        "CREATE TABLE tenants(id INTEGER PRIMARY KEY, name TEXT, created_at TEXT);
         CREATE TABLE bookings(id INTEGER PRIMARY KEY, tenant_id INTEGER REFERENCES tenants(id), created_at INTEGER);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<40)
           INSERT INTO tenants(name, created_at) SELECT 'studio ' || i, datetime('now', '-' || i || ' hours') FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<500)
           INSERT INTO bookings(tenant_id, created_at) SELECT 1 + i % 40, strftime('%s','now') - i * 60 FROM n;",
    );
}

const CHECKS: &str = r#"
[[drill.check]]
name = "tenants present"
sql = "SELECT count(*) FROM tenants"
expect = "> 0"
[[drill.check]]
name = "recent bookings"
sql = "SELECT max(created_at) FROM bookings"
expect = "within 26h of backup"
[[drill.check]]
name = "newest tenant"
sql = "SELECT max(created_at) AS newest FROM tenants"
expect = "within 26h of backup"
"#;

fn setup(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    studio(dir.path());
    std::fs::write(
        dir.path().join("lifeboat.toml"),
        format!("[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n{extra}"),
    )
    .unwrap();
    ok(dir.path(), &["backup"]);
    dir
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn records(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir.join("repo/studio/drills")) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_drill_restores_checks_times_and_records_itself() {
    let dir = setup(&format!("[objectives]\nrto = \"1h\"\n{CHECKS}"));
    let d = dir.path();
    let text = ok(d, &["drill"]);
    for want in [
        "# DR drill: studio — PASS",
        "- [x] Download latest backup",
        "- [x] Create test database",
        "- [x] Restore backup to test database",
        "- [x] Verify data integrity (record counts, sample queries)",
        "- [x] Document time taken for restoration",
        "- [x] Update procedures if anything changed",
        "**Last Drill:**",
        "**Next Scheduled Drill:**",
        "| tenants present | > 0 | 40 | ok |",
        "RPO achieved",
        "**Verdict: PASS**",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let v = json(&ok(d, &["drill", "--json"]));
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["rto_breached"], false);
    assert_eq!(v["rto_seconds"], 3600.0);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 6, "{v}");
    for s in steps {
        assert_eq!(s["ok"], true, "{s}");
        assert!(s["ms"].as_f64().unwrap() > 0.0, "a step timed at zero: {s}");
    }
    assert!(v["total_ms"].as_f64().unwrap() > 0.0);
    assert!(v["rpo_seconds"].as_i64().unwrap() >= 0);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3);
    assert!(checks.iter().all(|c| c["ok"] == true), "{v}");
    assert_eq!(checks[0]["value"], "40");
    assert_eq!(v["backup"]["rows"], 540);
    // Scratch space is gone; the records are in the repository, one per drill.
    assert!(steps[5]["detail"].as_str().unwrap().contains("removed"));
    let scratch = steps[2]["detail"].as_str().unwrap();
    let restored = scratch.trim_start_matches("restored to ");
    assert!(!Path::new(restored).exists(), "{restored} left behind");
    let recs = records(d);
    assert_eq!(recs.len(), 2, "{recs:?}");
    let name = v["record"].as_str().unwrap();
    assert!(name.starts_with("drill-") && name.ends_with(".json"));
    let stored = json(&std::fs::read_to_string(d.join("repo/studio/drills").join(name)).unwrap());
    assert_eq!(stored["verdict"], "pass");
    assert_eq!(stored["steps"], v["steps"]);

    // --history: both, oldest first, with the trend, the last and the next drill.
    let h = ok(d, &["drill", "--history"]);
    assert_eq!(h.matches("| pass |").count(), 2, "{h}");
    assert!(h.contains("**Last Drill:**") && h.contains("(pass)"), "{h}");
    assert!(
        h.contains("**Next Scheduled Drill:**") && h.contains("0 3 1 */3 *"),
        "{h}"
    );
    let hv = json(&ok(d, &["drill", "--history", "--json"]));
    let db = &hv["databases"][0];
    assert_eq!(db["database"], "studio");
    assert_eq!(db["drills"].as_array().unwrap().len(), 2);
    assert!(
        db["trend_ms"][0].is_null() && db["trend_ms"][1].is_f64(),
        "{db}"
    );
    assert_eq!(db["drills"][1]["record"], v["record"]);
    // status shows the last drill.
    assert!(ok(d, &["status"]).contains("last drill: "), "status");
    let sv = json(&ok(d, &["status", "--json"]));
    assert_eq!(sv["databases"][0]["last_drill"]["verdict"], "pass");
    assert_eq!(sv["databases"][0]["last_drill"]["record"], v["record"]);
}

#[test]
fn an_rto_breach_fails_the_drill_with_exit_1() {
    let dir = setup("[objectives]\nrto = \"1ms\"\n");
    let d = dir.path();
    let o = run(d, &["drill"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("RTO 1ms BREACHED"), "{text}");
    assert!(text.contains("- [ ] Document time taken"), "{text}");
    assert!(text.contains("**Verdict: FAIL**"), "{text}");
    let err = stderr(&o);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("RTO breached"), "{err}");
    let o = run(d, &["drill", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let v = json(&stdout(&o));
    assert_eq!(v["rto_breached"], true);
    assert_eq!(v["verdict"], "fail");
    assert!(v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["ok"] == true));
    assert_eq!(records(d).len(), 2, "a failed drill is recorded too");
}

#[test]
fn failing_data_checks_say_why_and_exit_1() {
    let dir = setup(
        r#"
[[drill.check]]
name = "enough tenants"
sql = "SELECT count(*) FROM tenants"
expect = ">= 1000"
[[drill.check]]
name = "sneaky"
sql = "DELETE FROM tenants"
expect = "= 0"
[[drill.check]]
name = "missing table"
sql = "SELECT count(*) FROM classes"
expect = "> 0"
[[drill.check]]
name = "nothing"
sql = "SELECT id FROM tenants WHERE id < 0"
expect = "> 0"
[[drill.check]]
name = "ancient"
sql = "SELECT min(created_at) FROM tenants"
expect = "within 2h of backup"
[[drill.check]]
name = "fine"
sql = "SELECT count(*) FROM bookings"
expect = "= 500"
"#,
    );
    let d = dir.path();
    let o = run(d, &["drill", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&stdout(&o));
    let reason = |name: &str| {
        let c = v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap();
        (
            c["ok"].as_bool().unwrap(),
            c["reason"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(
        reason("enough tenants"),
        (false, "40 is not >= 1000".into())
    );
    let (ok_, why) = reason("sneaky");
    assert!(!ok_ && why.contains("would write"), "{why}");
    let (ok_, why) = reason("missing table");
    assert!(!ok_ && why.contains("no such table: classes"), "{why}");
    assert_eq!(reason("nothing"), (false, "the SQL returned no row".into()));
    let (ok_, why) = reason("ancient");
    assert!(
        !ok_ && why.contains("before the backup, more than 2h"),
        "{why}"
    );
    assert_eq!(reason("fine"), (true, String::new()));
    assert_eq!(v["steps"][4]["detail"], "5 of 6 failed");
    let err = stderr(&o);
    assert!(
        err.contains("data check failed: enough tenants: 40 is not >= 1000"),
        "{err}"
    );
    // The live database was never touched by the check that would write.
    assert_eq!(
        sqlite3(&d.join("studio.db"), "SELECT count(*) FROM tenants").trim(),
        "40"
    );
    let text = stdout(&run(d, &["drill"]));
    assert!(text.contains("- [ ] Verify data integrity"), "{text}");
    assert!(
        text.contains("| enough tenants | >= 1000 | 40 | FAILED: 40 is not >= 1000 |"),
        "{text}"
    );
}

#[test]
fn a_bad_expectation_is_a_config_error_and_changes_nothing() {
    let dir = setup("");
    let d = dir.path();
    for (expect, says) in [
        ("about 5", "use > >= < <= = != with a number"),
        ("> lots", "\\\"lots\\\" is not a number"),
        ("within a while of backup", "is not a duration"),
        ("within 26h", "within DURATION of backup"),
    ] {
        let mut cfg = std::fs::read_to_string(d.join("lifeboat.toml")).unwrap();
        cfg = cfg.split("[[drill.check]]").next().unwrap().to_string();
        cfg.push_str(&format!(
            "[[drill.check]]\nname = \"x\"\nsql = \"SELECT 1\"\nexpect = \"{expect}\"\n"
        ));
        std::fs::write(d.join("lifeboat.toml"), cfg).unwrap();
        let err = fails(d, &["drill"], 2);
        assert!(
            err.contains(says) || err.contains(&says.replace('\\', "")),
            "{expect}: {err}"
        );
    }
    let err = fails(d, &["drill", "--target", "d1:"], 2);
    assert!(err.contains("d1:NAME"), "{err}");
    assert!(records(d).is_empty());
}

#[test]
fn a_file_target_is_never_overwritten_without_force_and_stays() {
    let dir = setup(CHECKS);
    let d = dir.path();
    std::fs::write(d.join("drill.db"), b"precious").unwrap();
    // Never over a database lifeboat protects, even with --force.
    let err = fails(d, &["drill", "--target", "./studio.db", "--force"], 2);
    assert!(err.contains("is a database lifeboat protects"), "{err}");
    std::os::unix::fs::symlink("studio.db", d.join("link.db")).unwrap();
    let err = fails(
        d,
        &[
            "drill",
            "--db",
            "./studio.db",
            "--target",
            "link.db",
            "--force",
        ],
        2,
    );
    assert!(err.contains("is a database lifeboat protects"), "{err}");
    let err = fails(d, &["drill", "--target", "drill.db"], 7);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(d.join("drill.db")).unwrap(), b"precious");
    assert!(records(d).is_empty(), "a refused drill records nothing");
    let text = ok(d, &["drill", "--target", "drill.db", "--force"]);
    assert!(text.contains("drill.db left in place"), "{text}");
    assert_same_db(&d.join("studio.db"), &d.join("drill.db"));
    let aside = files_starting_with(d, "drill.db.pre-drill-");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(&aside[0]).unwrap(), b"precious");
}

#[test]
fn no_backup_is_exit_5_and_a_corrupt_one_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    studio(d);
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("repo")).unwrap();
    let o = run(d, &["drill"]);
    assert_eq!(o.status.code(), Some(5), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("- [ ] Download latest backup"));
    assert!(
        !d.join("repo/studio").exists(),
        "no backup, nothing drilled, no record"
    );
    let o = run(d, &["drill", "--db", "no-such-db"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(!d.join("repo/no-such-db").exists());
    ok(d, &["backup"]);
    let data = files_starting_with(&d.join("repo/studio/backups"), "backup-")
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".sqlite.zst"))
        .unwrap();
    flip_middle_byte(&data, 0x40);
    let o = run(d, &["drill", "--json"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    let v = json(&stdout(&o));
    assert_eq!(v["error"]["kind"], "corrupt");
    assert_eq!(v["steps"][1]["ok"], false);
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3, "steps 3 to 5 are not run: {v}");
    assert_eq!(steps[2]["step"], 6);
    assert_eq!(steps[2]["ok"], true, "cleaned up all the same");
    assert_eq!(records(d).len(), 1, "a failed drill is recorded");
}

#[test]
fn two_drills_at_once_both_pass_and_both_are_recorded() {
    let dir = setup(CHECKS);
    let d = dir.path();
    let spawn = || {
        cmd(d)
            .args(["drill", "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(json(&stdout(&o))["verdict"], "pass");
    }
    assert_eq!(records(d).len(), 2);
    let hv = json(&ok(d, &["drill", "--history", "--json"]));
    assert_eq!(hv["databases"][0]["drills"].as_array().unwrap().len(), 2);
}

#[test]
fn a_drill_into_local_d1_passes() {
    let p = Project::new(&["studio", "drill-db"]);
    std::fs::write(
        p.path().join("seed.sql"),
        "CREATE TABLE tenants(id TEXT PRIMARY KEY, name TEXT, created_at INTEGER);
         CREATE TABLE bookings(id INTEGER PRIMARY KEY, tenant_id TEXT REFERENCES tenants(id), created_at TEXT);
         INSERT INTO tenants VALUES ('t1', 'Zen', unixepoch()), ('t2', 'Flow', unixepoch() - 3600);
         INSERT INTO bookings(tenant_id, created_at) VALUES ('t1', strftime('%Y-%m-%dT%H:%M:%SZ','now')), ('t2', strftime('%Y-%m-%dT%H:%M:%SZ','now','-1 hour'));",
    )
    .unwrap();
    p.execute_file("studio", "seed.sql");
    p.config(
        "studio",
        "[[drill.check]]\nname = \"tenants present\"\nsql = \"SELECT count(*) AS n FROM tenants\"\nexpect = \"= 2\"\n[[drill.check]]\nname = \"recent bookings\"\nsql = \"SELECT max(created_at) AS newest, count(*) AS n FROM bookings\"\nexpect = \"within 26h of backup\"\n",
    );
    ok(p.path(), &["backup"]);
    let args = [
        "drill",
        "--target",
        "d1:drill-db",
        "--local",
        "--wrangler-config",
        "wrangler.jsonc",
        "--json",
    ];
    let o = p.lifeboat(&args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let v = json(&stdout(&o));
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["target"]["kind"], "d1");
    assert_eq!(v["target"]["remote"], false);
    assert_eq!(v["checks"][0]["value"], "2");
    assert!(
        v["steps"][3]["detail"]
            .as_str()
            .unwrap()
            .contains("quick_check ok"),
        "{v}"
    );
    assert_same_db(
        &p.export_to_db("studio", "source.db"),
        &p.export_to_db("drill-db", "drilled.db"),
    );
    // Never into the D1 database the backups are of.
    let o = p.lifeboat(&["drill", "--target", "d1:studio", "--local", "--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is a database lifeboat protects"),
        "{}",
        stderr(&o)
    );
    // The target now holds the drill's restore: again only with --force (a safety backup first).
    let o = p.lifeboat(&args);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = p.lifeboat(&forced);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(json(&stdout(&o))["target"]["replaced"]
        .as_str()
        .unwrap()
        .starts_with("backup-"));
}

#[test]
fn the_daemon_drills_and_tells_an_rto_breach_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    studio(d);
    let hook = Receiver::start(&[]);
    // Backups and drills on schedules that never come in the test: only the missed backup at
    // start happens, and the database, never drilled, is drilled once it has a good backup.
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n[daemon]\nschedule = \"0 0 1 1 *\"\ndrill_schedule = \"0 0 1 1 *\"\n[objectives]\nrto = \"1ms\"\n[alerts]\nwebhook_url = \"{}/hooks/S3CRET\"\n{CHECKS}",
            hook.url
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(d, "d", &[], &[]);
    let breached = || {
        hook.got()
            .into_iter()
            .filter_map(|(_, _, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .filter(|v| v["event"] == "drill.rto_breached")
            .collect::<Vec<_>>()
    };
    wait_for_or(
        "the drill.rto_breached alert",
        60,
        &mut || !breached().is_empty(),
        || daemon.log(),
    );
    let alert = &breached()[0];
    assert_eq!(alert["source"], "studio");
    assert!(
        alert["message"]
            .as_str()
            .unwrap()
            .contains("longer than the RTO of 1ms"),
        "{alert}"
    );
    assert!(alert["timestamp"].is_string());
    assert_eq!(alert["details"]["verdict"], "fail");
    let name = alert["details"]["record"].as_str().unwrap().to_string();
    assert!(d.join("repo/studio/drills").join(&name).exists());
    assert_eq!(daemon.stop(), Some(0));
    let log = daemon.log();
    assert!(log.contains("drill fail"), "{log}");
    assert!(
        !log.contains("S3CRET"),
        "the webhook URL is a secret: {log}"
    );
    // Only the breach: every step and check passed, so no drill.failed.
    assert!(hook
        .got()
        .iter()
        .all(|(_, _, b)| !b.contains("drill.failed")));
    // The lease was its own and is done: a restarted daemon does not drill again.
    assert!(std::fs::read_dir(d.join("repo/studio/leases"))
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("drill-")));
    let mut again = Daemon::start(d, "d2", &[], &[]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(again.stop(), Some(0));
    assert_eq!(records(d).len(), 1, "{}", again.log());
}

#[test]
fn two_daemons_drill_a_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    studio(d);
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n[daemon]\nschedule = \"0 0 1 1 *\"\ndrill_schedule = \"0 0 1 1 *\"\n{CHECKS}"),
    )
    .unwrap();
    // Backed up already, so both daemons find the database fresh and its drill due at once.
    ok(d, &["backup"]);
    let mut a = Daemon::start(d, "a", &[], &[]);
    let mut b = Daemon::start(d, "b", &[], &[]);
    wait_for_or("a drill record", 60, &mut || !records(d).is_empty(), || {
        format!("{}\n{}", a.log(), b.log())
    });
    // The other daemon found the drill's lease held, or done.
    wait_for_or(
        "both daemons' word on the drill",
        30,
        &mut || {
            let logs = a.log() + &b.log();
            logs.contains("drill pass")
                && (logs.contains("held_elsewhere") || logs.contains("done_elsewhere"))
        },
        || format!("{}\n{}", a.log(), b.log()),
    );
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    assert_eq!(records(d).len(), 1, "{}\n{}", a.log(), b.log());
}
