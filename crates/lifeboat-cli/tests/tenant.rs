//! Tenancy map and single-tenant export on one schema with every kind of table.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const SCHEMA: &str = TENANT_SCHEMA;
use rusqlite::Connection;

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

#[test]
fn an_export_to_stdout_carries_only_the_export_even_with_json() {
    let dir = setup();
    for format in ["json", "sql"] {
        let out = ok(
            dir.path(),
            &[
                "--json", "export", "--tenant", "t1", "--db", "studio", "--format", format,
            ],
        );
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
            assert_eq!(v["tenant"], "t1");
        } else {
            assert!(
                out.trim_end().ends_with("statements"),
                "ends with the dump's last line"
            );
        }
    }
}
