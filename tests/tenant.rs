//! Tenancy map and single-tenant export on one schema with every kind of table.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rusqlite::Connection;

const SCHEMA: &str = r#"
CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, plan_id TEXT REFERENCES plans(id));
CREATE TABLE plans (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE tenant_members (tenant_id TEXT NOT NULL REFERENCES tenants(id), user_id TEXT NOT NULL REFERENCES users(id), role TEXT, PRIMARY KEY (tenant_id, user_id));
CREATE TABLE classes (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), title TEXT);
CREATE TABLE bookings (id TEXT PRIMARY KEY, class_id TEXT NOT NULL REFERENCES classes(id), user_id TEXT REFERENCES users(id));
CREATE TABLE booking_notes (id INTEGER PRIMARY KEY, booking_id TEXT NOT NULL REFERENCES bookings(id), note BLOB);
CREATE TABLE class_instructors (class_id TEXT NOT NULL REFERENCES classes(id), user_id TEXT NOT NULL REFERENCES users(id), PRIMARY KEY (class_id, user_id)) WITHOUT ROWID;
CREATE TABLE posts (id TEXT PRIMARY KEY, owner TEXT NOT NULL REFERENCES tenants(id), body TEXT);
CREATE TABLE comments (id TEXT PRIMARY KEY, post_id TEXT NOT NULL REFERENCES posts(id), parent_id TEXT REFERENCES comments(id), body TEXT);
CREATE TABLE audit_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT REFERENCES tenants(id), action TEXT);
CREATE TABLE videos (id TEXT PRIMARY KEY, owner_ref TEXT, title TEXT);
CREATE TABLE webhook_log (id INTEGER PRIMARY KEY, payload TEXT);
CREATE TRIGGER classes_audit AFTER INSERT ON classes BEGIN INSERT INTO audit_logs (tenant_id, action) VALUES (NEW.tenant_id, 'class.created'); END;
CREATE VIEW class_sizes AS SELECT class_id, count(*) AS n FROM bookings GROUP BY class_id;
INSERT INTO plans VALUES ('pro', 'Pro'), ('free', 'Free'), ('unused', 'Unused');
INSERT INTO tenants VALUES ('t1', 'Zen'), ('t2', 'Flow');
INSERT INTO users VALUES ('u1', 'shared@x', 'pro'), ('u2', 'only-t2@x', 'free'), ('u3', 'only-t1@x', NULL), ('u4', 'nobody@x', 'unused');
INSERT INTO tenant_members VALUES ('t1', 'u1', 'owner'), ('t1', 'u3', 'student'), ('t2', 'u1', 'student'), ('t2', 'u2', 'owner');
INSERT INTO classes VALUES ('c1', 't1', 'Yoga'), ('c2', 't1', 'Pilates'), ('c3', 't2', 'Spin');
INSERT INTO bookings VALUES ('b1', 'c1', 'u1'), ('b2', 'c2', 'u3'), ('b3', 'c3', 'u2');
INSERT INTO booking_notes VALUES (1, 'b1', X'00ff'), (2, 'b3', X'01');
INSERT INTO class_instructors VALUES ('c1', 'u1'), ('c3', 'u1');
INSERT INTO posts VALUES ('p1', 't1', 'hello'), ('p2', 't2', 'hi');
INSERT INTO comments VALUES ('k1', 'p1', NULL, 'top'), ('k2', 'p1', 'k1', 'reply'), ('k3', 'p2', NULL, 'other');
INSERT INTO audit_logs (tenant_id, action) VALUES ('t1', 'login'), ('t2', 'login'), (NULL, 'platform');
INSERT INTO videos VALUES ('v1', 'c1', 'warmup'), ('v2', 'c3', 'sprint'), ('v3', NULL, 'platform intro');
INSERT INTO webhook_log VALUES (1, '{"tenant":"t1"}');
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(dir.path().join("studio.db"))
        .unwrap()
        .execute_batch(SCHEMA)
        .unwrap();
    std::fs::write(
        dir.path().join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n\
         tenancy = { exclude = [\"webhook_log\"], links = { \"videos.owner_ref\" = \"classes\" } }\n",
    )
    .unwrap();
    dir
}

/// What belongs to t1, written out by hand from the fixture.
const T1: &[(&str, i64)] = &[
    ("tenants", 1),
    ("tenant_members", 2),
    ("classes", 2),
    ("bookings", 2),
    ("booking_notes", 1),
    ("class_instructors", 1),
    ("posts", 1),
    ("comments", 2),
    ("audit_logs", 3), // login, plus the trigger's two class.created rows
    ("videos", 1),
];

#[test]
fn tenancy_map_names_every_kind_of_table() {
    let dir = setup();
    let out = ok(dir.path(), &["tenants", "map", "--db", "studio"]);
    let line = |t: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{t} ")))
            .unwrap_or_else(|| panic!("{t} in {out}"))
            .to_string()
    };
    assert!(line("tenants").contains("tenant table"), "{out}");
    assert!(line("classes").contains("direct (tenant_id)"));
    assert!(
        line("posts").contains("direct (owner)"),
        "a foreign key to the tenant table counts: {out}"
    );
    assert!(line("audit_logs").contains("nullable"));
    assert!(line("bookings").contains("1 hop") && !line("bookings").contains("several paths"));
    assert!(line("booking_notes").contains("2 hop"));
    assert!(
        line("comments").contains("post_id -> posts"),
        "the self-reference is not a path: {out}"
    );
    assert!(line("videos").contains("owner_ref -> classes (config)"));
    assert!(line("users").contains("global") && line("plans").contains("global"));
    assert!(line("webhook_log").contains("excluded"));
    let v: serde_json::Value = serde_json::from_str(&ok(
        dir.path(),
        &["--json", "tenants", "map", "--db", "studio"],
    ))
    .unwrap();
    assert_eq!(v["tables"]["booking_notes"]["kind"], "parents");
    assert_eq!(v["tables"]["booking_notes"]["depth"], 2);
    assert_eq!(v["tables"]["users"]["kind"], "global");
}

#[test]
fn json_export_holds_the_tenant_and_referenced_globals_only() {
    let dir = setup();
    // From a backup, as the runbook's Scenario 2 needs.
    ok(dir.path(), &["backup"]);
    ok(
        dir.path(),
        &[
            "export", "--tenant", "t1", "--backup", "latest", "--format", "json", "--out",
            "t1.json",
        ],
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("t1.json")).unwrap())
            .unwrap();
    assert_eq!(v["tenant"], "t1");
    for (table, n) in T1 {
        assert_eq!(
            v["tables"][table]["rows"]
                .as_array()
                .map(|a| a.len() as i64),
            Some(*n),
            "{table}: {}",
            v["tables"][table]
        );
    }
    assert!(v["tables"].get("webhook_log").is_none() && v["tables"].get("users").is_none());
    let ids = |t: &str, section: &str| -> Vec<String> {
        let mut ids: Vec<String> = v[section][t]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids("users", "referenced"),
        vec!["u1", "u3"],
        "members, bookers and instructors of t1"
    );
    assert_eq!(
        ids("plans", "referenced"),
        vec!["pro"],
        "referenced by a referenced user"
    );
    assert_eq!(ids("comments", "tables"), vec!["k1", "k2"]);
    assert_eq!(
        v["tables"]["booking_notes"]["rows"][0]["note"]["$blob_hex"],
        "00ff"
    );
    let text = serde_json::to_string(&v["tables"]).unwrap();
    assert!(
        !text.contains("\"t2\"") && !text.contains("c3") && !text.contains("Spin"),
        "nothing of t2: {text}"
    );
}

fn count(db: &Path, table: &str) -> i64 {
    Connection::open(db)
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sql_and_sqlite_exports_load_and_pass_foreign_key_check() {
    let dir = setup();
    let d = dir.path();
    ok(
        d,
        &[
            "export", "--tenant", "t1", "--db", "studio", "--format", "sql", "--out", "t1.sql",
        ],
    );
    let o = Command::new("sh")
        .arg("-c")
        .arg("sqlite3 loaded.db < t1.sql")
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    ok(
        d,
        &[
            "export", "--tenant", "t1", "--db", "studio", "--format", "sqlite", "--out", "t1.db",
        ],
    );
    for db in [d.join("loaded.db"), d.join("t1.db")] {
        for (table, n) in T1 {
            assert_eq!(count(&db, table), *n, "{table} in {}", db.display());
        }
        assert_eq!(count(&db, "users"), 2);
        assert_eq!(count(&db, "plans"), 1);
        assert_eq!(count(&db, "webhook_log"), 0);
        assert_eq!(
            sqlite3(&db, "PRAGMA foreign_key_check"),
            "",
            "self-contained"
        );
        assert_eq!(
            sqlite3(
                &db,
                "SELECT count(*) FROM sqlite_schema WHERE type IN ('trigger','view')"
            ),
            "2"
        );
    }
    // The D1 dialect too.
    let out = ok(
        d,
        &[
            "export",
            "--tenant",
            "t2",
            "--db",
            "studio",
            "--format",
            "sql",
            "--dialect",
            "d1",
            "--out",
            "-",
        ],
    );
    assert!(out.lines().nth(1) == Some("PRAGMA defer_foreign_keys=TRUE;"));
    assert!(out.contains("'Spin'") && !out.contains("'Yoga'"));
}

#[test]
fn unknown_tenant_is_a_clear_error_and_writes_nothing() {
    let dir = setup();
    let err = fails(
        dir.path(),
        &[
            "export", "--tenant", "nope", "--db", "studio", "--format", "json", "--out", "x.json",
        ],
        5,
    );
    assert!(err.contains("tenant \"nope\" not found"), "{err}");
    assert!(
        !dir.path().join("x.json").exists() && !dir.path().join("x.json.lifeboat-tmp").exists()
    );
    let err = fails(
        dir.path(),
        &[
            "export", "--tenant", "nope", "--db", "studio", "--format", "sqlite", "--out", "x.db",
        ],
        5,
    );
    assert!(err.contains("not found"), "{err}");
    assert!(!dir.path().join("x.db").exists());
}
