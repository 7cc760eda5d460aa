//! Database-per-tenant fleets (`[[database]] glob`) and skipping unchanged databases: real
//! SQLite files written by real `sqlite3` processes, the real binary, a local repository.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use common::*;

/// A `sqlite3` process holding a database open, so a WAL database's commits stay in its
/// `-wal` file (the last connection to close would checkpoint it into the main file).
struct Writer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    n: u32,
}

impl Writer {
    fn open(db: &Path) -> Writer {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("sqlite3 CLI");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Writer {
            child,
            stdin,
            stdout,
            n: 0,
        }
    }

    /// Run `sql` and wait until sqlite3 has done it.
    fn exec(&mut self, sql: &str) {
        self.n += 1;
        let mark = format!("done-{}", self.n);
        writeln!(self.stdin, "{sql}\nSELECT '{mark}';").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "sqlite3 exited"
            );
            if line.trim() == mark {
                return;
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, ".quit");
        let _ = self.stdin.flush();
        let _ = self.child.wait();
    }
}

fn tenant(path: &Path, value: &str) {
    sqlite3(
        path,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('{value}');"
        ),
    );
}

fn config(d: &Path, entries: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!("[repository]\nurl = \"file://./repo\"\n{entries}"),
    )
    .unwrap();
}

const FLEET: &str = "[[database]]\nname = \"tenants\"\nglob = \"tenants/*.db\"\n";

/// Databases and their backup counts, from `list --json`.
fn listed(d: &Path, extra: &[&str]) -> Vec<(String, usize)> {
    let mut args = vec!["--json", "list"];
    args.extend_from_slice(extra);
    let v: serde_json::Value = serde_json::from_str(&ok(d, &args)).unwrap();
    let mut out: Vec<(String, usize)> = v["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|db| {
            (
                db["database"].as_str().unwrap().to_string(),
                db["backups"].as_array().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

/// The databases a backup's output says were stored, and those it says were skipped.
fn outcome(out: &str) -> (Vec<String>, Vec<String>) {
    let (mut stored, mut skipped) = (Vec::new(), Vec::new());
    for l in out.lines() {
        if let Some((db, rest)) = l.split_once("  ") {
            if rest.starts_with("backup-") {
                stored.push(db.to_string());
            } else if rest.starts_with("unchanged since backup-") && rest.ends_with(", skipped") {
                skipped.push(db.to_string());
            }
        }
    }
    stored.sort();
    skipped.sort();
    (stored, skipped)
}

/// Move every backup of `db` back in time by `hours`.
fn age(d: &Path, db: &str, hours: i64) {
    for e in std::fs::read_dir(d.join("repo").join(db).join("backups")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            let t = chrono::DateTime::parse_from_rfc3339(m["created_at"].as_str().unwrap())
                .unwrap()
                - chrono::Duration::hours(hours);
            m["created_at"] = t.to_rfc3339().into();
            std::fs::write(&p, serde_json::to_vec(&m).unwrap()).unwrap();
        }
    }
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn files_join_and_leave_the_fleet_and_the_backups_of_those_gone_stay() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("tenants")).unwrap();
    for i in 1..=5 {
        tenant(
            &d.join(format!("tenants/t{i:02}.db")),
            &format!("tenant {i}"),
        );
    }
    // Not databases: passed over, with a warning for the one that looks like one by name.
    std::fs::write(d.join("tenants/notes.db"), "just some text, not SQLite").unwrap();
    std::fs::write(d.join("tenants/creating.db"), "").unwrap();
    config(d, FLEET);
    let o = run(d, &["backup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("notes.db: not a SQLite database"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        outcome(&stdout(&o)).0,
        names(&["t01", "t02", "t03", "t04", "t05"])
    );

    // t02 goes, t06 comes: the next run follows.
    std::fs::remove_file(d.join("tenants/t02.db")).unwrap();
    tenant(&d.join("tenants/t06.db"), "tenant 6");
    let out = ok(d, &["backup"]);
    assert_eq!(outcome(&out).0, names(&["t01", "t03", "t04", "t05", "t06"]));
    // t02's backup is still there, listed and restorable; the others have two.
    assert_eq!(
        listed(d, &[]),
        [
            ("t01".into(), 2),
            ("t02".into(), 1),
            ("t03".into(), 2),
            ("t04".into(), 2),
            ("t05".into(), 2),
            ("t06".into(), 1)
        ]
    );
    // --db with the fleet's name: the databases it finds now.
    assert_eq!(listed(d, &["--db", "tenants"]).len(), 5);
    ok(d, &["restore", "--db", "t02", "--to", "t02-back.db"]);
    assert_eq!(
        sqlite3(&d.join("t02-back.db"), "SELECT x FROM t"),
        "tenant 2"
    );
    // Status: all fresh; t02 is not stale but gone from the fleet.
    let o = run(d, &["status"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("gone from fleet tenants"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "status"])).unwrap();
    let t02 = v["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["database"] == "t02")
        .unwrap();
    assert_eq!(t02["left_fleet"], "tenants");
    // Its backup ages past max_age: still not stale, as there is nothing left to back up.
    age(d, "t02", 30);
    assert_eq!(run(d, &["status"]).status.code(), Some(0));
    // But a whole directory gone says nothing about the tenants (an unmounted volume): the
    // fleet's run fails, and t02's old backup is stale again.
    std::fs::rename(d.join("tenants"), d.join("unmounted")).unwrap();
    let o = run(d, &["backup"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
    assert_eq!(run(d, &["status"]).status.code(), Some(2));
}

#[test]
fn discovered_names_work_for_list_restore_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("tenants")).unwrap();
    for n in ["acme", "globex", "initech"] {
        tenant(&d.join(format!("tenants/{n}.db")), n);
    }
    sqlite3(
        &d.join("main.db"),
        "CREATE TABLE m(x); INSERT INTO m VALUES (1);",
    );
    config(
        d,
        &format!("[[database]]\nname = \"main\"\npath = \"main.db\"\n{FLEET}"),
    );
    let out = ok(d, &["backup", "--db", "globex"]);
    assert_eq!(outcome(&out).0, names(&["globex"]));
    ok(d, &["backup"]);
    assert_eq!(listed(d, &["--db", "globex"]), [("globex".to_string(), 2)]);
    ok(d, &["restore", "--db", "globex", "--to", "restored.db"]);
    assert_same_db(&d.join("tenants/globex.db"), &d.join("restored.db"));
    let o = run(d, &["status", "--db", "acme", "--nagios"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("'acme_age'="), "{}", stdout(&o));
    // A fleet's name is not one database.
    let e = fails(d, &["restore", "--db", "tenants", "--to", "x.db"], 2);
    assert!(e.contains("is a fleet"), "{e}");
}

#[test]
fn clashing_names_are_refused_and_the_others_backed_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["east", "west"] {
        std::fs::create_dir(d.join(sub)).unwrap();
    }
    // `acme` in two directories; `main` is a configured database at another path.
    for f in [
        "east/acme.db",
        "west/acme.db",
        "east/main.db",
        "east/beta.db",
        "west/gamma.db",
    ] {
        tenant(&d.join(f), f);
    }
    sqlite3(&d.join("main.db"), "CREATE TABLE m(x);");
    config(
        d,
        "[[database]]\nname = \"main\"\npath = \"main.db\"\n[[database]]\nglob = \"*/*.db\"\n",
    );
    let o = run(d, &["backup"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("same file stem"), "{err}");
    assert!(
        err.contains("east/acme.db") && err.contains("west/acme.db"),
        "{err}"
    );
    assert!(err.contains("configured database \"main\""), "{err}");
    assert!(err.contains("3 of 6 backups failed"), "{err}");
    assert_eq!(outcome(&stdout(&o)).0, names(&["beta", "gamma", "main"]));
    // Nothing was filed under the clashing names but the configured database's own backup.
    assert!(!d.join("repo/acme").exists());
    assert_eq!(listed(d, &["--db", "main"]), [("main".to_string(), 1)]);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first_manifest(d, "main")).unwrap()).unwrap();
    assert!(v["source"]["path"].as_str().unwrap().ends_with("/main.db"));
    assert!(!v["source"]["path"].as_str().unwrap().contains("east"));
    // Status shows the clashes: CRITICAL, naming the refused files, not silence.
    let o = cmd(d).args(["status", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let of = |db: &str| {
        v["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["database"] == db)
            .cloned()
            .unwrap_or_else(|| panic!("{db} in {v}"))
    };
    for db in ["acme", "main"] {
        let s = of(db);
        assert_eq!(s["state"], "CRITICAL", "{s}");
        assert!(s["reasons"].to_string().contains("is not backed up"), "{s}");
    }
    assert_eq!(of("beta")["state"], "OK");
}

fn first_manifest(d: &Path, db: &str) -> PathBuf {
    std::fs::read_dir(d.join("repo").join(db).join("backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .unwrap()
}

#[test]
fn unchanged_databases_are_skipped_and_count_as_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("tenants")).unwrap();
    // Rollback-journal databases a and c; WAL databases b and e, held open by live writers
    // (so their commits stay in the -wal file).
    tenant(&d.join("tenants/a.db"), "aaaa");
    tenant(&d.join("tenants/c.db"), "cccc");
    let mut writers = Vec::new();
    for n in ["b", "e"] {
        let mut w = Writer::open(&d.join(format!("tenants/{n}.db")));
        w.exec("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('bbbb');");
        writers.push(w);
    }
    // A glob of `*`: the writers' -wal and -shm files must never count as databases.
    config(
        d,
        "[[database]]\nname = \"tenants\"\nglob = \"tenants/*\"\n",
    );
    assert!(d.join("tenants/b.db-wal").exists() && d.join("tenants/b.db-shm").exists());
    let all = names(&["a", "b", "c", "e"]);
    let out = ok(d, &["backup", "--kind", "scheduled"]);
    assert_eq!(outcome(&out), (all.clone(), vec![]), "{out}");

    // Nothing changed: every database is skipped, the skip recorded. Twice at once, too.
    let both: Vec<_> = (0..2)
        .map(|_| {
            cmd(d)
                .args(["backup", "--kind", "scheduled"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in both {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(
            outcome(&stdout(&o)),
            (vec![], all.clone()),
            "{}",
            stdout(&o)
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "backup", "--kind", "scheduled"])).unwrap();
    assert_eq!(v["backups"].as_array().unwrap().len(), 0);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 4);
    assert!(v["skipped"][0]["unchanged_since"]
        .as_str()
        .unwrap()
        .starts_with("backup-"));

    // Same-size writes: a in rollback mode (by a new sqlite3 process), b in WAL mode (by its
    // live writer: the main file is not touched at all).
    sqlite3(&d.join("tenants/a.db"), "UPDATE t SET x = 'AAAA';");
    let main_before = std::fs::metadata(d.join("tenants/b.db")).unwrap();
    let wal_before = std::fs::metadata(d.join("tenants/b.db-wal")).unwrap().len();
    writers[0].exec("UPDATE t SET x = 'BBBB';");
    let main_after = std::fs::metadata(d.join("tenants/b.db")).unwrap();
    assert_eq!(
        (main_after.len(), main_after.modified().unwrap()),
        (main_before.len(), main_before.modified().unwrap()),
        "the WAL commit left the main file alone"
    );
    assert!(std::fs::metadata(d.join("tenants/b.db-wal")).unwrap().len() > wal_before);
    let out = ok(d, &["backup", "--kind", "scheduled"]);
    assert_eq!(
        outcome(&out),
        (names(&["a", "b"]), names(&["c", "e"])),
        "{out}"
    );
    // The changed databases' new backups hold the writes.
    ok(d, &["restore", "--db", "b", "--to", "b-now.db"]);
    assert_eq!(sqlite3(&d.join("b-now.db"), "SELECT x FROM t"), "BBBB");

    // A checkpoint that empties the WAL changes the main file: backed up, then stable.
    writers[1].exec("PRAGMA wal_checkpoint(TRUNCATE);");
    let out = ok(d, &["backup", "--kind", "scheduled", "--db", "e"]);
    assert_eq!(outcome(&out).0, names(&["e"]), "{out}");
    let out = ok(d, &["backup", "--kind", "scheduled", "--db", "e"]);
    assert_eq!(outcome(&out).1, names(&["e"]), "{out}");
    // A WAL restart rewrites the WAL from its start with a new salt, at the same size, and
    // leaves the main file alone: still seen.
    writers[1].exec("UPDATE t SET x = 'eeee';");
    writers[1].exec("PRAGMA wal_checkpoint(PASSIVE);");
    ok(d, &["backup", "--kind", "scheduled", "--db", "e"]);
    let wal = || std::fs::metadata(d.join("tenants/e.db-wal")).unwrap().len();
    let main = || {
        std::fs::metadata(d.join("tenants/e.db"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let (wal_before, main_before) = (wal(), main());
    writers[1].exec("UPDATE t SET x = 'EEEE';");
    assert_eq!(
        (wal(), main()),
        (wal_before, main_before),
        "restarted in place"
    );
    let out = ok(d, &["backup", "--kind", "scheduled", "--db", "e"]);
    assert_eq!(outcome(&out).0, names(&["e"]), "{out}");
    ok(d, &["restore", "--db", "e", "--to", "e-now.db"]);
    assert_eq!(sqlite3(&d.join("e-now.db"), "SELECT x FROM t"), "EEEE");

    // Manual and emergency backups never skip.
    let out = ok(d, &["backup", "--db", "c"]);
    assert_eq!(outcome(&out).0, names(&["c"]));

    // Every backup 30 hours old: past max_age (26 h). The skip makes a database fresh.
    for n in ["a", "b", "c", "e"] {
        age(d, n, 30);
    }
    let o = run(d, &["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    let out = ok(d, &["backup", "--kind", "scheduled"]);
    assert_eq!(outcome(&out), (vec![], all.clone()), "{out}");
    let o = run(d, &["status"]);
    let text = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(text.contains("unchanged since backup-"), "{text}");
    let o = run(d, &["status", "--nagios"]);
    assert!(
        stdout(&o).starts_with("LIFEBOAT OK - 4 database(s)"),
        "{}",
        stdout(&o)
    );
    let v: serde_json::Value =
        serde_json::from_str(&ok(d, &["--json", "status", "--db", "c"])).unwrap();
    let c = &v["databases"][0];
    assert_eq!(c["last_run"]["skipped"], true);
    assert!(c["unchanged_checked_at"].is_string());
    assert!(c["last_good_age_seconds"].as_i64().unwrap() >= 30 * 3600);
    assert!(c["age_seconds"].as_i64().unwrap() < 3600);
    drop(writers);
}

#[test]
fn skip_unchanged_off_backs_up_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("tenants")).unwrap();
    std::fs::create_dir(d.join("always")).unwrap();
    tenant(&d.join("tenants/a.db"), "a");
    tenant(&d.join("always/z.db"), "z");
    config(
        d,
        &format!("{FLEET}[[database]]\nglob = \"always/*.db\"\nskip_unchanged = false\n"),
    );
    ok(d, &["backup", "--kind", "scheduled"]);
    let out = ok(d, &["backup", "--kind", "scheduled"]);
    assert_eq!(outcome(&out), (names(&["z"]), names(&["a"])), "{out}");
    // [daemon] skip_unchanged = false: for every database without a setting of its own.
    config(
        d,
        &format!("[daemon]\nskip_unchanged = false\n{FLEET}[[database]]\nglob = \"always/*.db\"\nskip_unchanged = false\n"),
    );
    let out = ok(d, &["backup", "--kind", "scheduled"]);
    assert_eq!(outcome(&out).0, names(&["a", "z"]), "{out}");
}
