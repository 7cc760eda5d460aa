//! Cloudflare D1 through the real wrangler (4.86.0, local mode: workerd + SQLite on 127.0.0.1),
//! installed by scripts/test.sh into ~/.cache/lifeboat-test-tools/wrangler.

mod common;

use std::path::{Path, PathBuf};

use common::d1::*;
use common::*;
use rusqlite::Connection;

/// What D1 data typically looks like: TEXT UUID keys, JSON text, newlines, quotes, unicode,
/// blobs, an AUTOINCREMENT table, foreign keys, an index, a trigger and a view.
const SEED: &str = r#"
CREATE TABLE tenants (id TEXT PRIMARY KEY, slug TEXT UNIQUE NOT NULL, name TEXT, settings TEXT, logo BLOB, created_at INTEGER);
CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT UNIQUE, profile TEXT);
CREATE TABLE tenant_members (tenant_id TEXT NOT NULL REFERENCES tenants(id), user_id TEXT NOT NULL REFERENCES users(id), role TEXT, PRIMARY KEY (tenant_id, user_id));
CREATE TABLE audit_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT REFERENCES tenants(id), action TEXT, details TEXT);
CREATE INDEX audit_tenant ON audit_logs(tenant_id);
INSERT INTO tenants VALUES ('0f8a3c1e-1b2d-4e5f-8a9b-0c1d2e3f4a5b', 'zen', 'Zoë''s "Zen" Studio 🧘', '{"tz":"Europe/Paris","welcome":"Hi\nthere; -- welcome"}', X'89504e470d0a1a0a', 1732500000);
INSERT INTO tenants VALUES ('7c6b5a49-3827-4165-9483-726150493827', 'flow', 'Flow
Yoga', '{"quote":"it''s \"fine\""}', NULL, 1732600000);
INSERT INTO users VALUES ('auth0|abc', 'a@example.com', '{"bio":"line1\r\nline2"}'), ('auth0|def', 'b@example.com', NULL);
INSERT INTO tenant_members VALUES ('0f8a3c1e-1b2d-4e5f-8a9b-0c1d2e3f4a5b', 'auth0|abc', 'owner'), ('7c6b5a49-3827-4165-9483-726150493827', 'auth0|abc', 'student'), ('7c6b5a49-3827-4165-9483-726150493827', 'auth0|def', 'owner');
INSERT INTO audit_logs (tenant_id, action, details) VALUES ('0f8a3c1e-1b2d-4e5f-8a9b-0c1d2e3f4a5b', 'tenant.created', '{}'), (NULL, 'platform.config', 'x;y');
CREATE TRIGGER tenants_audit AFTER INSERT ON tenants BEGIN INSERT INTO audit_logs (tenant_id, action) VALUES (NEW.id, 'tenant.created; via trigger'); END;
CREATE VIEW member_counts AS SELECT tenant_id, count(*) AS n FROM tenant_members GROUP BY tenant_id;
"#;

#[test]
fn d1_backup_restores_to_an_equal_database() {
    let p = Project::new(&["studio-platform-db"]);
    std::fs::write(p.path().join("seed.sql"), SEED).unwrap();
    p.execute_file("studio-platform-db", "seed.sql");
    p.config("studio-platform-db", "sql_mirror = true\n");

    let out = ok(p.path(), &["--json", "backup", "--kind", "scheduled"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m = &v["backups"][0];
    assert_eq!(m["source"]["kind"], "d1");
    assert_eq!(m["d1"]["database"], "studio-platform-db");
    assert_eq!(m["d1"]["wrangler_version"], "4.86.0");
    assert!(
        m["d1"]["time_travel_note"]
            .as_str()
            .unwrap()
            .contains("local"),
        "{m}"
    );
    assert_eq!(m["tables"]["tenants"], 2);
    assert_eq!(
        m["tables"]["audit_logs"], 2,
        "the trigger did not fire while the export was loaded"
    );
    // The runbook's key holds wrangler's own export.
    let mirror = p
        .path()
        .join("repo/studio-platform-db/backups")
        .join(m["sql_mirror"].as_str().unwrap());
    let text = std::fs::read_to_string(&mirror).unwrap();
    assert!(
        text.starts_with("PRAGMA defer_foreign_keys=TRUE;"),
        "{}",
        &text[..80]
    );
    assert!(
        !text.contains("lifeboat dump"),
        "the original export, not a lifeboat dump"
    );

    ok(p.path(), &["restore", "--to", "restored.db"]);
    let current = p.export_to_db("studio-platform-db", "current.db");
    assert_same_db(&current, &p.path().join("restored.db"));
    assert_eq!(
        sqlite3(
            &p.path().join("restored.db"),
            "SELECT seq FROM sqlite_sequence WHERE name='audit_logs'"
        ),
        "2"
    );
}

#[test]
fn lifeboat_d1_dialect_is_accepted_by_wrangler_and_comes_back_equal() {
    let p = Project::new(&["target-db"]);
    let src = p.path().join("src.db");
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        // The child table is created first: the dump must still create the parent first.
        "CREATE TABLE bookings (id TEXT PRIMARY KEY, class_id TEXT NOT NULL REFERENCES classes(id), note TEXT);
         CREATE TABLE classes (id TEXT PRIMARY KEY, title TEXT, payload TEXT, photo BLOB, price REAL);
         CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
         CREATE INDEX bookings_class ON bookings(class_id);
         CREATE TRIGGER seq_audit AFTER INSERT ON bookings BEGIN INSERT INTO seq (v) VALUES ('fired'); END;
         CREATE VIEW class_bookings AS SELECT class_id, count(*) AS n FROM bookings GROUP BY class_id;",
    )
    .unwrap();
    let json = nasty_json(9000, false);
    assert!(json.len() > 300_000);
    let photo = noise(150_000, 11);
    c.execute(
        "INSERT INTO classes VALUES ('c-1', 'Vinyasa 🧘', ?1, ?2, 12.5)",
        rusqlite::params![json, photo],
    )
    .unwrap();
    c.execute(
        "INSERT INTO classes VALUES ('c-2', 'it''s\nmultiline\r\ntext', '{}', NULL, 0.1)",
        [],
    )
    .unwrap();
    c.execute_batch(
        "INSERT INTO bookings VALUES ('b-1', 'c-1', 'semi;colon'), ('b-2', 'c-2', NULL);
         INSERT INTO seq (v) VALUES ('a'), ('b');",
    )
    .unwrap();
    drop(c);
    ok(
        p.path(),
        &[
            "dump",
            "--db",
            "src.db",
            "--dialect",
            "d1",
            "--out",
            "d1.sql",
        ],
    );
    let text = std::fs::read_to_string(p.path().join("d1.sql")).unwrap();
    assert!(text.lines().all(|l| l.len() <= 100_000));
    assert!(text
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .starts_with("-- lifeboat dump complete:"));
    p.execute_file("target-db", "d1.sql");
    let back = p.export_to_db("target-db", "back.db");
    assert_same_db(&src, &back);
}

#[test]
fn failing_exports_are_clear_errors_and_write_no_manifest() {
    let p = Project::new(&["studio-platform-db", "search-db"]);
    // Wrong database name: wrangler's own message, exit 3, nothing stored.
    p.config("no-such-db", "");
    let err = fails(p.path(), &["backup"], 3);
    assert!(
        err.contains("Couldn't find a D1 DB") && err.contains("no-such-db"),
        "{err}"
    );
    let manifests = walk_json(&p.path().join("repo"));
    assert!(manifests.is_empty(), "{manifests:?}");
    // A database with an FTS5 table: D1 refuses to export it.
    std::fs::write(
        p.path().join("fts.sql"),
        "CREATE VIRTUAL TABLE notes USING fts5(body); INSERT INTO notes VALUES ('hello');",
    )
    .unwrap();
    p.execute_file("search-db", "fts.sql");
    p.config("search-db", "");
    let err = fails(p.path(), &["backup"], 3);
    assert!(err.contains("search-db") && err.contains("failed"), "{err}");
    assert!(walk_json(&p.path().join("repo")).is_empty());
    // wrangler missing.
    std::fs::write(
        p.path().join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"x\"\nd1 = { database = \"x\" }\nwrangler = \"/nonexistent/wrangler\"\n",
    )
    .unwrap();
    let err = fails(p.path(), &["backup"], 2);
    assert!(err.contains("/nonexistent/wrangler not found"), "{err}");
}

#[test]
fn restore_into_d1_refuses_a_non_empty_target_unless_forced() {
    let p = Project::new(&["studio-platform-db", "recovery-db"]);
    std::fs::write(p.path().join("seed.sql"), SEED).unwrap();
    p.execute_file("studio-platform-db", "seed.sql");
    p.config("studio-platform-db", "");
    ok(p.path(), &["backup"]);
    let source = p.export_to_db("studio-platform-db", "source.db");

    // Into an empty database: the runbook's "restore to a test database".
    let out = p.lifeboat(&[
        "restore",
        "--to-d1",
        "recovery-db",
        "--local",
        "--wrangler-config",
        "wrangler.jsonc",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("4 tables (backup: 4)") && text.contains("row counts match"),
        "{text}"
    );
    assert!(
        text.contains("wrangler d1 execute --file"),
        "steps with timings: {text}"
    );
    assert_same_db(&source, &p.export_to_db("recovery-db", "recovered.db"));

    // Not empty any more: refused, and nothing changes.
    std::fs::write(
        p.path().join("extra.sql"),
        "INSERT INTO users VALUES ('auth0|new', 'new@example.com', NULL);",
    )
    .unwrap();
    p.execute_file("recovery-db", "extra.sql");
    let before = p.export_to_db("recovery-db", "before.db");
    let refused = p.lifeboat(&[
        "restore",
        "--to-d1",
        "recovery-db",
        "--wrangler-config",
        "wrangler.jsonc",
    ]);
    assert_eq!(refused.status.code(), Some(7), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("not empty") && stderr(&refused).contains("--force"),
        "{}",
        stderr(&refused)
    );
    assert_same_db(&before, &p.export_to_db("recovery-db", "after-refusal.db"));

    // --force: an emergency backup of the target first, then the target equals the backup.
    let forced = p.lifeboat(&[
        "restore",
        "--to-d1",
        "recovery-db",
        "--wrangler-config",
        "wrangler.jsonc",
        "--force",
    ]);
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert!(
        stdout(&forced).contains("safety backup of the target"),
        "{}",
        stdout(&forced)
    );
    assert_same_db(&source, &p.export_to_db("recovery-db", "forced.db"));
    let v: serde_json::Value =
        serde_json::from_str(&ok(p.path(), &["--json", "list", "--db", "recovery-db"])).unwrap();
    let safety = &v["databases"][0]["backups"][0];
    assert_eq!(safety["kind"], "safety");
    assert_eq!(
        safety["tables"]["users"], 3,
        "the safety backup holds the target as it was"
    );
}

#[test]
fn large_imports_are_split_into_parts_applied_in_order() {
    let p = Project::new(&["studio-platform-db", "copy-db"]);
    std::fs::write(p.path().join("seed.sql"), SEED).unwrap();
    p.execute_file("studio-platform-db", "seed.sql");
    p.config("studio-platform-db", "");
    ok(p.path(), &["backup"]);
    let out = p.lifeboat(&[
        "restore",
        "--to-d1",
        "copy-db",
        "--wrangler-config",
        "wrangler.jsonc",
        "--max-import-file",
        "1200",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("(part 2 of "), "{}", stdout(&out));
    let source = p.export_to_db("studio-platform-db", "source.db");
    assert_same_db(&source, &p.export_to_db("copy-db", "copy.db"));
}

#[test]
fn one_tenant_restored_into_d1_leaves_the_others_alone() {
    let p = Project::new(&["studio-platform-db", "copy-db"]);
    std::fs::write(p.path().join("seed.sql"), TENANT_SCHEMA).unwrap();
    p.execute_file("studio-platform-db", "seed.sql");
    p.config(
        "studio-platform-db",
        "tenancy = { exclude = [\"webhook_log\"], links = { \"videos.owner_ref\" = \"classes\" } }\n",
    );
    ok(p.path(), &["backup"]);
    // t1 loses and changes data; t2 keeps working.
    std::fs::write(
        p.path().join("damage.sql"),
        "DELETE FROM booking_notes WHERE booking_id = 'b1'; DELETE FROM bookings WHERE id = 'b1';
         UPDATE classes SET title = 'Renamed' WHERE id = 'c2'; INSERT INTO bookings VALUES ('b9', 'c2', 'u1');
         UPDATE classes SET title = 'Spin 2' WHERE id = 'c3'; INSERT INTO posts VALUES ('p9', 't2', 'new t2 post');",
    )
    .unwrap();
    p.execute_file("studio-platform-db", "damage.sql");
    let before = p.export_to_db("studio-platform-db", "before.db");
    let audit_before = sqlite3(&before, "SELECT count(*) FROM audit_logs");

    let out = ok(
        p.path(),
        &[
            "restore",
            "--tenant",
            "t1",
            "--into-d1",
            "studio-platform-db",
        ],
    );
    assert!(
        out.contains("match the backup") && out.contains("1 trigger(s) dropped and recreated"),
        "{out}"
    );
    assert!(
        out.contains("safety backup of the target: backup-"),
        "{out}"
    );
    let after = p.export_to_db("studio-platform-db", "after.db");
    // t1 is back as in the backup.
    assert_eq!(sqlite3(&after, "SELECT group_concat(id) FROM (SELECT id FROM bookings WHERE class_id IN ('c1','c2') ORDER BY id)"), "b1,b2");
    assert_eq!(
        sqlite3(&after, "SELECT title FROM classes WHERE id = 'c2'"),
        "Pilates"
    );
    assert_eq!(sqlite3(&after, "SELECT count(*) FROM booking_notes"), "2");
    // t2's changes after the backup are still there.
    assert_eq!(
        sqlite3(&after, "SELECT title FROM classes WHERE id = 'c3'"),
        "Spin 2"
    );
    assert_eq!(
        sqlite3(&after, "SELECT body FROM posts WHERE id = 'p9'"),
        "new t2 post"
    );
    // No trigger fired while t1's classes went back in, and the trigger is still there.
    assert_eq!(
        sqlite3(&after, "SELECT count(*) FROM audit_logs"),
        audit_before
    );
    assert_eq!(
        sqlite3(
            &after,
            "SELECT count(*) FROM sqlite_schema WHERE type = 'trigger' AND name = 'classes_audit'"
        ),
        "1"
    );
    // An unknown tenant changes nothing.
    let err = fails(
        p.path(),
        &[
            "restore",
            "--tenant",
            "nope",
            "--into-d1",
            "studio-platform-db",
        ],
        5,
    );
    assert!(err.contains("nope"), "{err}");
    // A whole-database restore of this 13-table schema: counts are verified 5 tables at a time
    // (D1's limit on compound SELECTs).
    let out = p.lifeboat(&[
        "restore",
        "--to-d1",
        "copy-db",
        "--wrangler-config",
        "wrangler.jsonc",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("13 tables (backup: 13)"),
        "{}",
        stdout(&out)
    );
}

fn walk_json(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_json(&p));
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn long_rows_into_a_live_d1_touch_only_the_rows_they_create() {
    // Rows over D1's 100,000-byte statement limit are written as an INSERT plus appends. Into a
    // live database: an existing global row (INSERT OR IGNORE skips it) must not get the
    // appends, and a row whose rowid is not a column must be found by its new rowid.
    let p = Project::new(&["live-db"]);
    let big = |a: char, b: char| {
        format!(
            "{}{}",
            a.to_string().repeat(75_000),
            b.to_string().repeat(75_000)
        )
    };
    // Seeded through lifeboat's own D1 dump: the rows are too long for one statement.
    let c = Connection::open(p.path().join("seed.db")).unwrap();
    c.execute_batch(&format!(
            "CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT);
             CREATE TABLE docs (id TEXT PRIMARY KEY, body TEXT);
             CREATE TABLE pages (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), doc_id TEXT REFERENCES docs(id));
             CREATE TABLE files (tenant_id TEXT REFERENCES tenants(id), data BLOB);
             INSERT INTO tenants VALUES ('t1', 'one'), ('t2', 'two');
             INSERT INTO docs VALUES ('d1', '{d1}'), ('d2', '{d2}'), ('d3', '{d3}');
             INSERT INTO pages VALUES ('p1', 't1', 'd1'), ('p2', 't1', 'd2'), ('p3', 't1', 'd3');
             INSERT INTO files (rowid, tenant_id, data) VALUES (1, 't1', zeroblob(150000)), (2, 't2', X'02');",
            d1 = big('A', 'B'),
            d2 = big('C', 'D'),
            d3 = big('E', 'F'),
    ))
    .unwrap();
    drop(c);
    ok(
        p.path(),
        &[
            "dump",
            "--db",
            "seed.db",
            "--dialect",
            "d1",
            "--out",
            "seed.sql",
        ],
    );
    p.execute_file("live-db", "seed.sql");
    p.config("live-db", "");
    ok(p.path(), &["backup"]);
    // After the backup: d2 is edited, d3 deleted (with its page), t1's file goes and t2 takes
    // its rowid.
    std::fs::write(
        p.path().join("damage.sql"),
        "UPDATE docs SET body = 'edited' WHERE id = 'd2';
         DELETE FROM pages WHERE id = 'p3'; DELETE FROM docs WHERE id = 'd3';
         DELETE FROM files WHERE rowid = 1;
         INSERT INTO files (rowid, tenant_id, data) VALUES (1, 't2', X'0101');",
    )
    .unwrap();
    p.execute_file("live-db", "damage.sql");
    ok(
        p.path(),
        &["restore", "--tenant", "t1", "--into-d1", "live-db"],
    );
    let after = p.export_to_db("live-db", "after.db");
    // d1 existed unchanged, d2 existed edited: both left exactly as they were (no doubled text).
    assert_eq!(
        sqlite3(&after, "SELECT length(body), substr(body, 1, 1), substr(body, 150000, 1) FROM docs WHERE id = 'd1'"),
        "150000|A|B"
    );
    assert_eq!(
        sqlite3(&after, "SELECT body FROM docs WHERE id = 'd2'"),
        "edited"
    );
    // d3 was missing: inserted whole.
    assert_eq!(
        sqlite3(&after, "SELECT length(body), substr(body, 1, 1), substr(body, 150000, 1) FROM docs WHERE id = 'd3'"),
        "150000|E|F"
    );
    // t1's file is back whole, under a new rowid; t2's files are untouched.
    assert_eq!(
        sqlite3(
            &after,
            "SELECT length(data), data = zeroblob(150000) FROM files WHERE tenant_id = 't1'"
        ),
        "150000|1"
    );
    assert_eq!(
        sqlite3(&after, "SELECT group_concat(rowid || ':' || hex(data)) FROM (SELECT rowid, data FROM files WHERE tenant_id = 't2' ORDER BY rowid)"),
        "1:0101|2:02".replace('|', ",")
    );
    assert_eq!(
        sqlite3(&after, "SELECT count(*) FROM pages WHERE tenant_id = 't1'"),
        "3"
    );
}

#[test]
fn a_d1_target_runs_wrangler_as_its_source_does_and_wrangler_errors_are_plain() {
    let p = Project::new(&["studio-platform-db", "copy-db"]);
    std::fs::write(p.path().join("seed.sql"), SEED).unwrap();
    p.execute_file("studio-platform-db", "seed.sql");
    p.config("studio-platform-db", "");
    // No LIFEBOAT_WRANGLER and no wrangler on PATH: only the config says how to run it.
    let bare = |args: &[&str]| {
        cmd(p.path())
            .env_remove("LIFEBOAT_WRANGLER")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .args(args)
            .output()
            .unwrap()
    };
    let o = bare(&["backup"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // copy-db is not configured: it inherits the source's wrangler command and config file.
    let o = bare(&["restore", "--to-d1", "copy-db"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("row counts match"), "{}", stdout(&o));
    // An empty wrangler command is a config error, not a crash.
    std::fs::write(
        p.path().join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"x\"\nd1 = { database = \"x\" }\nwrangler = \"\"\n",
    )
    .unwrap();
    let o = bare(&["backup"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    // npx finding no wrangler: one line naming the fixes.
    std::fs::write(
        p.path().join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"x\"\nd1 = { database = \"x\" }\n",
    )
    .unwrap();
    let o = bare(&["backup"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("wrangler is not installed") && err.contains("LIFEBOAT_WRANGLER"),
        "{err}"
    );
}
