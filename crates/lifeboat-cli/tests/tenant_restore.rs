//! Single-tenant restore into a live database: the tenant comes back exactly as in the backup,
//! and nothing else changes.

mod common;

use std::path::Path;

use common::*;
use rusqlite::Connection;

const CONFIG: &str = "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio\"\npath = \"studio.db\"\n\
    tenancy = { exclude = [\"webhook_log\"], links = { \"videos.owner_ref\" = \"classes\" } }\n";

/// A project directory with `studio.db` (the tenant schema, then `extra`) and its config.
fn studio(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("studio.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(TENANT_SCHEMA).unwrap();
    c.execute_batch(extra).unwrap();
    std::fs::write(dir.path().join("lifeboat.toml"), CONFIG).unwrap();
    (dir, db)
}

/// Every row of `table` matching `cond` (on alias t0, ?1 = tenant), sorted, as text.
fn rows(db: &Path, table: &str, cond: &str, tenant: &str) -> Vec<String> {
    let c = Connection::open(db).unwrap();
    // With the rowid where the table has one (WITHOUT ROWID tables have none).
    let mut stmt = c
        .prepare(&format!(
            "SELECT quote(t0.rowid), * FROM {table} AS t0 WHERE {cond}"
        ))
        .or_else(|_| c.prepare(&format!("SELECT * FROM {table} AS t0 WHERE {cond}")))
        .unwrap();
    let n = stmt.column_count();
    let mut out: Vec<String> = stmt
        .query_map([tenant], |r| {
            Ok((0..n)
                .map(|i| show(r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join("|"))
        })
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    out.sort();
    out
}

fn show(v: rusqlite::types::ValueRef) -> String {
    use rusqlite::types::ValueRef::*;
    match v {
        Null => "NULL".into(),
        Integer(i) => i.to_string(),
        Real(f) => format!("{f:?}"),
        Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        Blob(b) => format!(
            "X'{}'",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        ),
    }
}

/// How each table's rows belong to t1 (the same rules the map uses, written out by hand).
const T1_ROWS: &[(&str, &str)] = &[
    ("tenants", "t0.id = ?1"),
    ("tenant_members", "t0.tenant_id = ?1"),
    ("classes", "t0.tenant_id = ?1"),
    ("bookings", "t0.class_id IN (SELECT id FROM classes WHERE tenant_id = ?1)"),
    ("booking_notes", "t0.booking_id IN (SELECT b.id FROM bookings b JOIN classes c ON c.id = b.class_id WHERE c.tenant_id = ?1)"),
    ("class_instructors", "t0.class_id IN (SELECT id FROM classes WHERE tenant_id = ?1)"),
    ("posts", "t0.owner = ?1"),
    ("comments", "t0.post_id IN (SELECT id FROM posts WHERE owner = ?1)"),
    ("audit_logs", "t0.tenant_id = ?1"),
    ("videos", "t0.owner_ref IN (SELECT id FROM classes WHERE tenant_id = ?1)"),
];

/// Everything that is not t1's: other tenants' rows, global rows, excluded tables.
fn everything_else(db: &Path) -> Vec<String> {
    let mut all = Vec::new();
    for (table, cond) in T1_ROWS {
        all.extend(
            rows(db, table, &format!("NOT coalesce(({cond}), 0)"), "t1")
                .into_iter()
                .map(|r| format!("{table}:{r}")),
        );
    }
    for table in ["users", "plans", "webhook_log"] {
        all.extend(
            rows(db, table, "?1 IS NOT NULL", "t1")
                .into_iter()
                .map(|r| format!("{table}:{r}")),
        );
    }
    all
}

fn t1(db: &Path) -> Vec<String> {
    T1_ROWS
        .iter()
        .flat_map(|(t, c)| {
            rows(db, t, c, "t1")
                .into_iter()
                .map(move |r| format!("{t}:{r}"))
        })
        .collect()
}

#[test]
fn tenant_comes_back_exactly_and_nothing_else_changes() {
    // Columns where equal is not the same: NOCASE text, and no affinity (10 and 10.0 are equal).
    let (dir, db) = studio(
        "ALTER TABLE classes ADD COLUMN code TEXT COLLATE NOCASE;
         ALTER TABLE classes ADD COLUMN capacity;
         UPDATE classes SET code = 'yoga', capacity = 10 WHERE id = 'c1';",
    );
    let d = dir.path();
    ok(d, &["backup"]);
    ok(d, &["restore", "--to", "at-backup.db"]);
    let t1_at_backup = t1(&d.join("at-backup.db"));

    // The bad day: t1 deletes half its data, edits rows, adds rows; a user it references goes;
    // meanwhile t2 keeps working.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "DELETE FROM booking_notes WHERE booking_id = 'b1';
             DELETE FROM bookings WHERE id = 'b1';
             DELETE FROM class_instructors WHERE class_id = 'c1';
             DELETE FROM comments WHERE id = 'k2';
             UPDATE classes SET title = 'Renamed' WHERE id = 'c2';
             UPDATE tenants SET name = 'Zen (edited)' WHERE id = 't1';
             INSERT INTO bookings VALUES ('b9', 'c2', 'u1');
             DELETE FROM tenant_members WHERE user_id = 'u3';
             DELETE FROM bookings WHERE user_id = 'u3';
             DELETE FROM users WHERE id = 'u3';
             INSERT INTO classes (id, tenant_id, title) VALUES ('c8', 't2', 'New t2 class');
             UPDATE classes SET title = 'Spin 2' WHERE id = 'c3';
             UPDATE classes SET code = 'YOGA', capacity = 10.0 WHERE id = 'c1';
             -- Same content, new rowid: the restore brings the old rowid back.
             DELETE FROM videos WHERE id = 'v1';
             INSERT INTO videos VALUES ('v1', 'c1', 'warmup');",
        )
        .unwrap();
    let others_before = everything_else(&db);
    let audit_before: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT count(*) FROM audit_logs", [], |r| r.get(0))
        .unwrap();

    // Dry run: lists the diff, changes nothing.
    let bytes_before = std::fs::read(&db).unwrap();
    let plan = ok(
        d,
        &[
            "restore",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
            "--dry-run",
        ],
    );
    assert!(plan.contains("dry run: nothing changed"), "{plan}");
    let line = |t: &str| {
        plan.lines()
            .find(|l| l.trim_start().starts_with(&format!("{t} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        line("bookings").contains("would delete      1  insert      2  update      0"),
        "b9 goes, b1 and b2 come back: {plan}"
    );
    assert!(
        line("classes").contains("update      2"),
        "c1 and c2: {plan}"
    );
    assert!(line("tenants").contains("update      1"), "{plan}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        bytes_before,
        "a dry run writes nothing"
    );

    let t1_bad_day = t1(&db);

    // The real thing.
    let out = ok(d, &["restore", "--tenant", "t1", "--into", "studio.db"]);
    assert!(out.contains("safety backup of studio.db: backup-"), "{out}");
    assert!(
        out.contains("users") && out.contains("inserted 1 referenced global row"),
        "u3 comes back: {out}"
    );
    assert_eq!(t1(&db), t1_at_backup, "t1 equals the backup in every table");
    let mut others_expected = others_before.clone();
    // The only other change: the global user t1's restored rows need.
    let users_after: Vec<String> = everything_else(&db)
        .into_iter()
        .filter(|r| r.starts_with("users:"))
        .collect();
    assert!(users_after.iter().any(|r| r.contains("only-t1@x")));
    others_expected.retain(|r| !r.starts_with("users:"));
    let mut others_after = everything_else(&db);
    others_after.retain(|r| !r.starts_with("users:"));
    assert_eq!(
        others_after, others_expected,
        "other tenants' rows and global rows are untouched"
    );
    // No trigger fired: restoring classes c1/c2 did not add audit rows beyond the backup's own.
    let c = Connection::open(&db).unwrap();
    let audit_after: i64 = c
        .query_row("SELECT count(*) FROM audit_logs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        audit_after, audit_before,
        "t1's audit rows are exactly the backup's (same count as before: none were deleted)"
    );
    assert_eq!(sqlite3(&db, "PRAGMA foreign_key_check"), "");
    // The trigger is still there and still works.
    c.execute(
        "INSERT INTO classes (id, tenant_id, title) VALUES ('c9', 't1', 'After')",
        [],
    )
    .unwrap();
    let audit_later: i64 = c
        .query_row("SELECT count(*) FROM audit_logs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(audit_later, audit_after + 1);

    // The safety backup and the restore record are listed.
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    assert_eq!(v["databases"][0]["backups"][0]["kind"], "safety");
    let records = ok(d, &["restores"]);
    assert!(
        records.contains("tenant t1") && records.contains("safety backup backup-"),
        "{records}"
    );

    // The printed undo command puts t1 back as it was before the restore (c9, added since, goes).
    let undo = out
        .split("to undo just this tenant: lifeboat ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .map(|l| l.trim_end_matches(')'))
        .unwrap_or_else(|| panic!("no undo command: {out}"));
    let mut args: Vec<&str> = undo.split_whitespace().collect();
    args.push("--no-safety-backup");
    ok(d, &args);
    assert_eq!(t1(&db), t1_bad_day, "undone: t1 as before the restore");
}

#[test]
fn unknown_tenant_changes_nothing() {
    let (dir, db) = studio("");
    let d = dir.path();
    ok(d, &["backup"]);
    let before = std::fs::read(&db).unwrap();
    let err = fails(
        d,
        &["restore", "--tenant", "nope", "--into", "studio.db"],
        5,
    );
    assert!(
        err.contains("tenant \"nope\" is not in the backup"),
        "{err}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    assert_eq!(
        v["databases"][0]["backups"].as_array().unwrap().len(),
        1,
        "no safety backup for a refused restore"
    );
    // The safety backup taken while the backup was checked is removed whole, leaving nothing.
    assert_eq!(
        v["databases"][0]["incomplete"].as_array().unwrap().len(),
        0,
        "{v}"
    );
}

#[test]
fn a_backup_that_fails_its_check_changes_nothing() {
    // A global table nothing points at: the restore never reads it, only quick_check does.
    let (dir, db) = studio(
        "CREATE TABLE junk (x); CREATE INDEX junk_x ON junk(x); INSERT INTO junk VALUES (1);",
    );
    let d = dir.path();
    // Back up a copy whose junk index page is damaged (its sha256 is the damaged image's, so
    // only SQLite's own check can tell), then put the live page back as it was.
    let (root, page_size): (i64, i64) = {
        let c = Connection::open(&db).unwrap();
        let root = c
            .query_row(
                "SELECT rootpage FROM sqlite_schema WHERE name = 'junk_x'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        (
            root,
            c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap(),
        )
    };
    let healthy = std::fs::read(&db).unwrap();
    let mut damaged = healthy.clone();
    damaged[((root - 1) * page_size) as usize] = 0; // not a b-tree page type
    std::fs::write(&db, &damaged).unwrap();
    // Without the restore-test after the backup, which would find the damage and mark it bad.
    ok(d, &["backup", "--no-verify"]);
    std::fs::write(&db, &healthy).unwrap();
    let c = Connection::open(&db).unwrap();
    c.execute_batch("UPDATE classes SET title = 'oops' WHERE tenant_id = 't1';")
        .unwrap();
    drop(c);
    let before = std::fs::read(&db).unwrap();

    let err = fails(d, &["restore", "--tenant", "t1", "--into", "studio.db"], 6);
    assert!(err.contains("quick_check"), "{err}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the live database is untouched"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    assert_eq!(
        v["databases"][0]["backups"].as_array().unwrap().len(),
        1,
        "the safety backup of a refused restore is removed: {v}"
    );
    let dry = fails(
        d,
        &[
            "restore",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
            "--dry-run",
        ],
        6,
    );
    assert!(dry.contains("quick_check"), "{dry}");
}

#[test]
fn a_row_elsewhere_pointing_at_a_removed_row_stops_the_restore() {
    // Reviews name their tenant directly, so a t2 review stays t2's whatever class it points at.
    let (dir, db) = studio("CREATE TABLE class_reviews (id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), class_id TEXT REFERENCES classes(id));");
    let d = dir.path();
    ok(d, &["backup"]);
    let c = Connection::open(&db).unwrap();
    // After the backup t1 adds a class, and a review of t2 comes to point at it.
    c.execute_batch("INSERT INTO classes VALUES ('c7', 't1', 'Late'); INSERT INTO class_reviews VALUES ('r1', 't2', 'c7');").unwrap();
    drop(c);
    let before = std::fs::read(&db).unwrap();
    let err = fails(
        d,
        &[
            "restore",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
            "--no-safety-backup",
        ],
        3,
    );
    assert!(
        err.contains("class_reviews point at rows of classes that the restore would remove"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "rolled back: nothing changed"
    );
}

#[test]
fn kill_9_during_a_tenant_restore_leaves_the_database_as_it_was() {
    // Enough of t1 that the restore's transaction is open long enough to be interrupted.
    let (dir, db) = studio(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
         INSERT INTO bookings SELECT 'x' || i, 'c1', 'u1' FROM n;",
    );
    let d = dir.path();
    ok(d, &["backup"]);
    let c = Connection::open(&db).unwrap();
    c.execute_batch("DELETE FROM bookings WHERE id LIKE 'x%' AND rowid % 2 = 0;")
        .unwrap();
    drop(c);
    std::fs::copy(&db, d.join("before.db")).unwrap();
    let mut child = cmd(d)
        .args([
            "restore",
            "--tenant",
            "t1",
            "--into",
            "studio.db",
            "--no-safety-backup",
        ])
        // A killed process cannot remove its scratch directory: keep it inside this test's.
        .env("TMPDIR", d)
        .spawn()
        .unwrap();
    let journal = d.join("studio.db-journal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !journal.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the restore finished before it could be killed"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the restore never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap(); // SIGKILL, mid-transaction
    child.wait().unwrap();
    // SQLite rolls the hot journal back on the next open: the database is as it was.
    assert_same_db(&d.join("before.db"), &db);
    assert_eq!(sqlite3(&db, "PRAGMA integrity_check"), "ok");
}

#[test]
fn rows_orphaned_by_unenforced_deletes_are_put_back_in_place() {
    let (dir, db) = studio("");
    let d = dir.path();
    ok(d, &["backup"]);
    ok(d, &["restore", "--to", "at-backup.db"]);
    let t1_at_backup = t1(&d.join("at-backup.db"));
    let others = everything_else(&db);
    // The application deletes t1's booking b1 and leaves its note behind (SQLite does not
    // enforce foreign keys unless asked): the note holds the key the backup's note has.
    Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA foreign_keys=OFF; DELETE FROM bookings WHERE id = 'b1';")
        .unwrap();
    let out = ok(d, &["restore", "--tenant", "t1", "--into", "studio.db"]);
    assert!(out.contains("bookings"), "{out}");
    assert_eq!(t1(&db), t1_at_backup);
    assert_eq!(everything_else(&db), others);
    assert_eq!(sqlite3(&db, "PRAGMA foreign_key_check"), "");
}

#[test]
fn global_rows_reached_through_their_own_table_come_along() {
    // A tenant's item points at user 5, whose manager is 6; user 5's org 2 has parent org 1.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("s.db");
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE tenants(id TEXT PRIMARY KEY);
             CREATE TABLE orgs(id INTEGER PRIMARY KEY, parent_org INTEGER REFERENCES orgs(id));
             CREATE TABLE users(id INTEGER PRIMARY KEY, manager_id INTEGER REFERENCES users(id),
                                org_id INTEGER REFERENCES orgs(id));
             CREATE TABLE items(id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id),
                                user_id INTEGER REFERENCES users(id));
             INSERT INTO tenants VALUES ('A'), ('B');
             INSERT INTO orgs VALUES (1, NULL), (2, 1), (3, NULL);
             INSERT INTO users VALUES (6, NULL, 1), (5, 6, 2), (7, NULL, 3);
             INSERT INTO items VALUES (1, 'A', 5), (2, 'B', 7);",
        )
        .unwrap();
    ok(d, &["backup", "--db", "s.db", "--repo", "file://./repo"]);
    // The export stands on its own: every row it references is in it.
    ok(
        d,
        &"export --tenant A --backup latest --db s --repo file://./repo --format sqlite --out a.db"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        sqlite3(
            &d.join("a.db"),
            "SELECT group_concat(id) FROM (SELECT id FROM users ORDER BY id)"
        ),
        "5,6"
    );
    assert_eq!(
        sqlite3(
            &d.join("a.db"),
            "SELECT group_concat(id) FROM (SELECT id FROM orgs ORDER BY id)"
        ),
        "1,2"
    );
    // The live database lost the tenant's item and every global row it needs.
    sqlite3(
        &db,
        "DELETE FROM items WHERE tenant_id = 'A'; DELETE FROM users WHERE id IN (5, 6); DELETE FROM orgs WHERE id IN (1, 2);",
    );
    ok(
        d,
        &"restore --tenant A --backup latest --db s --repo file://./repo --into s.db"
            .split(' ')
            .collect::<Vec<_>>(),
    );
    assert_eq!(sqlite3(&db, "PRAGMA foreign_key_check"), "");
    assert_eq!(sqlite3(&db, "SELECT count(*) FROM users"), "3");
    assert_eq!(sqlite3(&db, "SELECT count(*) FROM orgs"), "3");
}
