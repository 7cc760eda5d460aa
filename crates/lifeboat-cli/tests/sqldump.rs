//! SQL dumps both ways, proven with the real sqlite3 CLI and sqldiff.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rusqlite::Connection;

/// tricky_db plus text that is not valid UTF-8.
fn trickier_db(path: &Path) {
    tricky_db(path);
    let c = Connection::open(path).unwrap();
    c.execute(
        "INSERT INTO plain (id, t) VALUES (1000, CAST(X'ff00fe41' AS TEXT))",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO plain (id, t) VALUES (1001, CAST(X'c328' AS TEXT))",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO plain (id, t) VALUES (1002, 'a\\nb' || char(13) || 'c\\r' || char(10))",
        [],
    )
    .unwrap();
}

/// Load a dump with the real sqlite3 shell.
fn sqlite3_load(dump: &Path, db: &Path) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("sqlite3 '{}' < '{}'", db.display(), dump.display()))
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "sqlite3 load failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sqlite_dialect_loads_in_sqlite3_and_is_equal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trickier_db(&d.join("src.db"));
    ok(d, &["dump", "--db", "src.db", "--out", "dump.sql"]);
    let text = std::fs::read(d.join("dump.sql")).unwrap();
    let tail = String::from_utf8_lossy(&text[text.len() - 60..]).to_string();
    assert!(
        tail.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("-- lifeboat dump complete: "),
        "{tail}"
    );
    // Triggers come after the data.
    let s = String::from_utf8_lossy(&text);
    assert!(s.find("CREATE TRIGGER").unwrap() > s.rfind("INSERT INTO \"seq\"").unwrap());
    sqlite3_load(&d.join("dump.sql"), &d.join("loaded.db"));
    assert_same_db(&d.join("src.db"), &d.join("loaded.db"));
    // lifeboat's own import of it is equal too.
    ok(d, &["import", "dump.sql", "--to", "imported.db"]);
    assert_same_db(&d.join("src.db"), &d.join("imported.db"));
}

#[test]
fn sqlite3_dump_imports_losslessly_and_chains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    trickier_db(&d.join("src.db"));
    // sqlite3's .dump cuts text at a NUL (lifeboat's own dump does not): keep NUL out of the
    // source here so the comparison tests the importer, not sqlite3's exporter.
    let c = Connection::open(d.join("src.db")).unwrap();
    for (t, col) in [
        ("plain", "t"),
        ("kv", "v"),
        ("strict_t", "t"),
        ("seq", "v"),
        ("composite", "a"),
    ] {
        c.execute(
            &format!("UPDATE {t} SET {col} = 'no nul' WHERE instr({col}, char(0)) > 0"),
            [],
        )
        .unwrap();
    }
    drop(c);
    let o = Command::new("sqlite3")
        .arg(d.join("src.db"))
        .arg(".dump")
        .output()
        .unwrap();
    std::fs::write(d.join("cli.sql"), &o.stdout).unwrap();
    ok(d, &["import", "cli.sql", "--to", "a.db"]);
    assert_same_db(&d.join("src.db"), &d.join("a.db"));
    // sqlite3 itself loses 5e-324 from its own dump; lifeboat does not.
    let tiny: f64 = Connection::open(d.join("a.db"))
        .unwrap()
        .query_row("SELECT r FROM plain WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tiny.to_bits(), 1);
    // sqlite3 .dump -> lifeboat import -> lifeboat dump -> sqlite3 load.
    ok(d, &["dump", "--db", "a.db", "--out", "again.sql"]);
    sqlite3_load(&d.join("again.sql"), &d.join("b.db"));
    assert_same_db(&d.join("src.db"), &d.join("b.db"));
}

#[test]
fn compressed_input_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("src.db"));
    ok(d, &["dump", "--db", "src.db", "--out", "dump.sql.zst"]);
    ok(d, &["import", "dump.sql.zst", "--to", "z.db"]);
    assert_same_db(&d.join("src.db"), &d.join("z.db"));
    ok(
        d,
        &[
            "dump",
            "--db",
            "src.db",
            "--out",
            "dump.sql.gz",
            "--dialect",
            "d1",
        ],
    );
    ok(d, &["import", "dump.sql.gz", "--to", "g.db"]);
    assert_same_db(&d.join("src.db"), &d.join("g.db"));
    // Existing outputs are not overwritten without --force.
    fails(d, &["dump", "--db", "src.db", "--out", "dump.sql.gz"], 7);
    fails(d, &["import", "dump.sql.zst", "--to", "z.db"], 7);
}

#[test]
fn dump_of_a_backup_equals_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("app.db"));
    ok(d, &["backup", "--db", "app.db", "--repo", "file://./repo"]);
    ok(
        d,
        &[
            "dump",
            "--backup",
            "latest",
            "--db",
            "app",
            "--repo",
            "file://./repo",
            "--out",
            "b.sql",
        ],
    );
    sqlite3_load(&d.join("b.sql"), &d.join("b.db"));
    assert_same_db(&d.join("app.db"), &d.join("b.db"));
    let out = ok(
        d,
        &[
            "dump",
            "--backup",
            "latest",
            "--repo",
            "file://./repo",
            "--dialect",
            "d1",
        ],
    );
    assert!(
        out.starts_with("-- lifeboat dump v1 dialect=d1 from backup backup-"),
        "{}",
        &out[..80]
    );
}

#[test]
fn d1_dialect_splits_long_rows_under_100000_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("big.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "CREATE TABLE parent (id TEXT PRIMARY KEY, name TEXT);
         CREATE TABLE docs (id TEXT PRIMARY KEY, parent_id TEXT REFERENCES parent(id), json TEXT, pic BLOB, n INTEGER);
         CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;",
    )
    .unwrap();
    // Child table created first: the D1 dialect must still put parent first.
    c.execute_batch("CREATE TABLE early_child (id INTEGER PRIMARY KEY, p TEXT REFERENCES parent(id)); INSERT INTO parent VALUES ('p1', 'x'); INSERT INTO early_child VALUES (1, 'p1');").unwrap();
    let json = nasty_json(8000, true);
    assert!(json.len() > 300_000);
    let blob = noise(1_500_000, 13);
    c.execute(
        "INSERT INTO docs VALUES ('d1', 'p1', ?1, ?2, 7)",
        rusqlite::params![json, blob],
    )
    .unwrap();
    c.execute(
        "INSERT INTO docs VALUES ('d2', 'p1', ?1, NULL, 8)",
        rusqlite::params![format!("line\n{json}\r\nend")],
    )
    .unwrap();
    c.execute("INSERT INTO kv VALUES ('big', ?1)", rusqlite::params![json])
        .unwrap();
    drop(c);
    ok(
        d,
        &[
            "dump",
            "--db",
            "big.db",
            "--dialect",
            "d1",
            "--out",
            "d1.sql",
        ],
    );
    let text = std::fs::read_to_string(d.join("d1.sql")).unwrap();
    let mut statements = 0;
    for line in text.lines() {
        assert!(
            line.len() <= 100_000,
            "a {}-byte line: {}",
            line.len(),
            &line[..100]
        );
        if !line.starts_with("--") {
            statements += 1;
        }
    }
    assert!(
        statements > 20,
        "the long rows were split: {statements} statements"
    );
    assert!(text.starts_with("-- lifeboat dump v1 dialect=d1"));
    assert!(text.lines().nth(1) == Some("PRAGMA defer_foreign_keys=TRUE;"));
    assert!(!text.contains("BEGIN TRANSACTION") && !text.contains("COMMIT;"));
    assert!(
        text.find("CREATE TABLE parent").unwrap() < text.find("CREATE TABLE early_child").unwrap()
    );
    ok(d, &["import", "d1.sql", "--to", "back.db"]);
    assert_same_db(&db, &d.join("back.db"));
    // The real sqlite3 shell takes it as well.
    sqlite3_load(&d.join("d1.sql"), &d.join("shell.db"));
    assert_same_db(&db, &d.join("shell.db"));
}

#[test]
fn d1_dialect_refuses_values_over_2mb_and_virtual_tables() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = Connection::open(d.join("huge.db")).unwrap();
    c.execute_batch("CREATE TABLE files (id TEXT PRIMARY KEY, body BLOB);")
        .unwrap();
    c.execute("INSERT INTO files VALUES ('f-7', zeroblob(2500000))", [])
        .unwrap();
    let err = fails(
        d,
        &[
            "dump",
            "--db",
            "huge.db",
            "--dialect",
            "d1",
            "--out",
            "x.sql",
        ],
        3,
    );
    assert!(
        err.contains("table files") && err.contains("f-7") && err.contains("2000000"),
        "{err}"
    );
    assert!(!d.join("x.sql").exists() && !d.join("x.sql.lifeboat-tmp").exists());
    // The sqlite dialect has no such limit.
    ok(d, &["dump", "--db", "huge.db", "--out", "ok.sql"]);
    c.execute_batch("CREATE VIRTUAL TABLE notes USING fts5(body);")
        .unwrap();
    let err = fails(d, &["dump", "--db", "huge.db", "--out", "v.sql"], 3);
    assert!(
        err.contains("notes") && err.contains("virtual table"),
        "{err}"
    );
}

#[test]
fn truncated_and_garbled_dumps_name_the_line_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("src.db"));
    ok(d, &["dump", "--db", "src.db", "--out", "full.sql"]);
    let text = std::fs::read_to_string(d.join("full.sql")).unwrap();
    // Cut inside a statement.
    let cut = text.find("INSERT INTO \"kv\"").unwrap() + 30;
    std::fs::write(d.join("cut.sql"), &text[..cut]).unwrap();
    let err = fails(d, &["import", "cut.sql", "--to", "x.db"], 6);
    assert!(err.contains("line ") && err.contains("truncated"), "{err}");
    // Cut cleanly between statements: only the missing footer tells.
    let clean = text.rfind("CREATE INDEX").unwrap();
    std::fs::write(d.join("clean.sql"), &text[..clean]).unwrap();
    let err = fails(d, &["import", "clean.sql", "--to", "x.db"], 6);
    assert!(err.contains("truncated"), "{err}");
    // A garbled line.
    let garbled = text.replacen("INSERT INTO \"kv\"", "INSERT INTO \"kv\" VALUE (((", 1);
    std::fs::write(d.join("garbled.sql"), garbled).unwrap();
    let err = fails(d, &["import", "garbled.sql", "--to", "x.db"], 6);
    assert!(err.contains("line "), "{err}");
    // A sqlite3 .dump that rolled back.
    std::fs::write(
        d.join("rb.sql"),
        "BEGIN TRANSACTION;\nCREATE TABLE t(x);\nROLLBACK; -- due to errors\n",
    )
    .unwrap();
    let err = fails(d, &["import", "rb.sql", "--to", "x.db"], 6);
    assert!(err.contains("line 3"), "{err}");
    // A row that breaks a constraint, among many INSERTs into the same table (bound in one
    // run): the error names its own line.
    let mut dup = String::from("CREATE TABLE u(id TEXT PRIMARY KEY, n INTEGER);\n");
    for i in 0..500 {
        dup.push_str(&format!("INSERT INTO u VALUES('k{i}', {i});\n"));
    }
    dup.push_str("INSERT INTO u VALUES('k7', 7);\nINSERT INTO u VALUES('k999', 1);\n");
    std::fs::write(d.join("dup.sql"), dup).unwrap();
    let err = fails(d, &["import", "dup.sql", "--to", "x.db"], 6);
    assert!(
        err.contains("line 502") && err.contains("UNIQUE constraint failed"),
        "{err}"
    );
    let left: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("x.db"))
        .collect();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    let err = fails(d, &["import", "missing.sql", "--to", "x.db"], 2);
    assert!(err.contains("missing.sql"), "{err}");
}

#[test]
fn wrangler_style_export_imports() {
    // The shape `wrangler d1 export` writes (4.86 and 4.164 INSERT forms), see shared/reference.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let export = "PRAGMA defer_foreign_keys=TRUE;\n\
        CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT, logo BLOB);\n\
        INSERT INTO \"tenants\" VALUES('t1','Zoë''s \"studio\"',x'89504e47');\n\
        INSERT INTO \"tenants\" (\"id\",\"name\",\"logo\") VALUES('t2',replace('line1\\nline2','\\n',char(10)),NULL);\n\
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, tenant_id TEXT REFERENCES tenants(id), what TEXT);\n\
        INSERT INTO \"audit\" VALUES(1,'t1','created; -- ok');\n\
        DELETE FROM sqlite_sequence;\n\
        INSERT INTO \"sqlite_sequence\" VALUES('audit',41);\n\
        CREATE INDEX audit_tenant ON audit(tenant_id);\n\
        CREATE TRIGGER audit_touch AFTER INSERT ON tenants BEGIN INSERT INTO audit (tenant_id, what) VALUES (NEW.id, 'created; via trigger'); END;\n";
    std::fs::write(d.join("export.sql"), export).unwrap();
    ok(d, &["import", "export.sql", "--to", "t.db"]);
    let db = d.join("t.db");
    assert_eq!(
        sqlite3(&db, "SELECT name FROM tenants WHERE id='t2'"),
        "line1\nline2"
    );
    assert_eq!(
        sqlite3(&db, "SELECT count(*) FROM audit"),
        "1",
        "the trigger did not fire during the load"
    );
    assert_eq!(sqlite3(&db, "SELECT seq FROM sqlite_sequence"), "41");
    assert_eq!(
        sqlite3(&db, "SELECT hex(logo) FROM tenants WHERE id='t1'"),
        "89504E47"
    );
    assert_eq!(
        sqlite3(
            &db,
            "SELECT count(*) FROM sqlite_schema WHERE type='trigger'"
        ),
        "1"
    );
}

#[test]
fn sql_mirror_writes_the_runbook_key_and_names_its_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("studio.db"));
    std::fs::write(
        d.join("lifeboat.toml"),
        "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"studio-platform-db\"\npath = \"studio.db\"\nsql_mirror = true\n",
    )
    .unwrap();
    let out = ok(d, &["--json", "backup"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mirror = v["backups"][0]["sql_mirror"].as_str().unwrap().to_string();
    let today = chrono::Utc::now().format("backup-%Y-%m-%d.sql").to_string();
    assert_eq!(mirror, today);
    let path = d.join("repo/studio-platform-db/backups").join(&mirror);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().nth(1) == Some("PRAGMA defer_foreign_keys=TRUE;"),
        "the D1 dialect"
    );
    let id = v["backups"][0]["id"].as_str().unwrap();
    assert!(
        text.lines().next().unwrap().contains(id),
        "the first line names the backup"
    );
    let manifest =
        std::fs::read_to_string(d.join(format!("repo/studio-platform-db/backups/{id}.json")))
            .unwrap();
    assert!(
        !manifest.contains("sql_mirror"),
        "written after it, the mirror is not vouched for by the manifest"
    );
    ok(
        d,
        &["import", path.to_str().unwrap(), "--to", "from-mirror.db"],
    );
    assert_same_db(&d.join("studio.db"), &d.join("from-mirror.db"));
    // The day's last backup wins; the mirror is not mistaken for an incomplete backup.
    Connection::open(d.join("studio.db"))
        .unwrap()
        .execute_batch("INSERT INTO kv VALUES ('late', 'row');")
        .unwrap();
    ok(d, &["backup"]);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("'late'"),
        "the second backup's mirror replaced the first"
    );
    let v: serde_json::Value = serde_json::from_str(&ok(d, &["--json", "list"])).unwrap();
    assert_eq!(v["databases"][0]["backups"].as_array().unwrap().len(), 2);
    assert_eq!(v["databases"][0]["incomplete"].as_array().unwrap().len(), 0);
}

#[test]
fn backup_from_sql_stores_a_dump_as_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tricky_db(&d.join("src.db"));
    ok(
        d,
        &[
            "dump",
            "--db",
            "src.db",
            "--dialect",
            "d1",
            "--out",
            "export.sql.gz",
        ],
    );
    let out = ok(
        d,
        &[
            "--json",
            "backup",
            "--from-sql",
            "export.sql.gz",
            "--db-name",
            "from-d1",
            "--repo",
            "file://./repo",
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["backups"][0]["source"]["kind"], "sql-dump");
    assert_eq!(v["backups"][0]["database"], "from-d1");
    ok(
        d,
        &[
            "restore",
            "--db",
            "from-d1",
            "--repo",
            "file://./repo",
            "--to",
            "r.db",
        ],
    );
    assert_same_db(&d.join("src.db"), &d.join("r.db"));
    // A broken dump is refused before anything reaches the repository.
    std::fs::write(
        d.join("broken.sql"),
        "CREATE TABLE t(x);\nINSERT INTO t VALUES('unterminated);\n",
    )
    .unwrap();
    let err = fails(
        d,
        &[
            "backup",
            "--from-sql",
            "broken.sql",
            "--repo",
            "file://./repo",
        ],
        6,
    );
    assert!(err.contains("line 2"), "{err}");
    assert!(!d.join("repo/broken").exists());
}

#[test]
fn a_dump_cannot_reach_another_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sqlite3(
        &d.join("victim.db"),
        "CREATE TABLE precious(x); INSERT INTO precious VALUES('keep me');",
    );
    let victim = d.join("victim.db").display().to_string();
    let attacks = [
        format!("ATTACH DATABASE '{victim}' AS v;\nDELETE FROM v.precious;\n"),
        format!("attach '{victim}' as v;\n"),
        format!("VACUUM INTO '{}';\n", d.join("copy.db").display()),
        "DETACH DATABASE main;\n".to_string(),
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let file = d.join(format!("evil{i}.sql"));
        std::fs::write(
            &file,
            format!("CREATE TABLE t(x);\nINSERT INTO t VALUES(1);\n{attack}"),
        )
        .unwrap();
        let name = format!("evil{i}.sql");
        let err = fails(d, &["import", &name, "--to", "out.db"], 6);
        assert!(err.contains("another database file"), "{err}");
        assert!(!d.join("out.db").exists());
        let err = fails(
            d,
            &["backup", "--from-sql", &name, "--repo", "file://./repo"],
            6,
        );
        assert!(err.contains("another database file"), "{err}");
        assert!(!d.join("repo").exists(), "nothing reached the repository");
    }
    assert_eq!(
        sqlite3(&d.join("victim.db"), "SELECT x FROM precious"),
        "keep me"
    );
    assert!(!d.join("copy.db").exists());
}
