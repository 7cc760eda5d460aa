//! Helpers shared by the integration tests: run the real binary, the real sqlite3 and sqldiff.
#![allow(dead_code)]

pub mod d1;
pub mod daemon;
pub mod moto;
pub mod receiver;
pub mod replicating;
pub mod s3;
pub mod smtp;
pub mod tmpfs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rusqlite::Connection;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"))
}

/// A `lifeboat` command running in `dir`, with no AWS settings leaking in from the environment.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.current_dir(dir);
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "BACKUP_ALERT_WEBHOOK_URL",
        "SLACK_WEBHOOK_URL",
        "PLATFORM_ADMIN_EMAIL",
        "SMTP_URL",
        "SMTP_USERNAME",
        "SMTP_PASSWORD",
        "SMTP_FROM",
        "LIFEBOAT_ALERT_TIMEOUT",
    ] {
        c.env_remove(v);
    }
    c
}

/// The files in `dir` whose names start with `prefix`, sorted.
pub fn files_starting_with(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// Run lifeboat in `dir` with `args`.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir).args(args).output().expect("run lifeboat")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run lifeboat and insist on success.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = run(dir, args);
    assert!(
        o.status.success(),
        "lifeboat {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Run lifeboat expecting failure with `code`; returns stderr, which must be one line.
pub fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let o = run(dir, args);
    let err = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "lifeboat {args:?}: expected exit {code}\nstdout: {}\nstderr: {err}",
        stdout(&o)
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error must be one line: {err:?}"
    );
    assert!(err.starts_with("lifeboat: error: "), "{err}");
    err
}

/// `sqldiff a b`: the real tool, which prints nothing when the contents are equal.
pub fn sqldiff(a: &Path, b: &Path) -> String {
    let o = Command::new("sqldiff")
        .arg(a)
        .arg(b)
        .output()
        .expect("sqldiff (apt-get install sqlite3-tools)");
    assert!(
        o.status.success(),
        "sqldiff failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Assert two databases are equal in content and schema, by sqldiff.
pub fn assert_same_db(a: &Path, b: &Path) {
    let d = sqldiff(a, b);
    assert!(
        d.is_empty(),
        "sqldiff {} {} is not empty:\n{}",
        a.display(),
        b.display(),
        &d[..d.len().min(2000)]
    );
    let o = Command::new("sqldiff")
        .arg("--schema")
        .arg(a)
        .arg(b)
        .output()
        .expect("sqldiff");
    assert!(
        o.stdout.is_empty(),
        "schemas differ: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// Run SQL through the real sqlite3 CLI and return its output.
/// Flip bits `mask` of the byte in the middle of `file` (a stored object damaged in place: same
/// size, so only a read of its bytes can tell).
pub fn flip_middle_byte(file: &Path, mask: u8) {
    let mut bytes = std::fs::read(file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= mask;
    std::fs::write(file, bytes).unwrap();
}

pub fn sqlite3(db: &Path, sql: &str) -> String {
    let o = Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 CLI");
    assert!(
        o.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A JSON text of `items` objects whose strings hold quotes, `;`, `--` and (with `newlines`)
/// line breaks: everything a SQL splitter can trip on. 8,000 items are over 300 KB.
pub fn nasty_json(items: usize, newlines: bool) -> String {
    let nl = if newlines { "\\n" } else { "" };
    format!(
        "{{\"items\":[{}]}}",
        (0..items)
            .map(|i| format!("{{\"i\":{i},\"s\":\"it's \\\"q\\\"; -- {i}{nl}\"}}"))
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// `n` bytes that look random (and do not compress), the same every run.
pub fn noise(n: u32, shift: u32) -> Vec<u8> {
    (0..n)
        .map(|i| (i.wrapping_mul(2654435761) >> shift) as u8)
        .collect()
}

/// A database exercising the awkward corners of SQLite.
pub fn tricky_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        r#"
        CREATE TABLE plain (id INTEGER PRIMARY KEY, r REAL, t TEXT, b BLOB, n);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
        CREATE TABLE strict_t (id INTEGER PRIMARY KEY, i INTEGER NOT NULL, r REAL, t TEXT, b BLOB, a ANY) STRICT;
        CREATE TABLE seq (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE "odd ""name"" 🦀" ("select" TEXT, "from" INTEGER, [bracket col] TEXT, `back tick` REAL);
        CREATE TABLE composite (a TEXT, b INTEGER, c TEXT, PRIMARY KEY (a, b));
        CREATE INDEX plain_t ON plain(t);
        CREATE UNIQUE INDEX "odd idx" ON "odd ""name"" 🦀"("select");
        CREATE VIEW v_plain AS SELECT id, t FROM plain WHERE r > 0;
        CREATE TABLE log (at INTEGER, what TEXT);
        CREATE TRIGGER seq_log AFTER INSERT ON seq BEGIN INSERT INTO log VALUES (NEW.id, 'ins; ''quoted'' -- not a comment'); END;
        "#,
    )
    .unwrap();
    let reals: [f64; 9] = [
        -0.0,
        f64::from_bits(1), // 5e-324, the smallest subnormal
        2.2250738585072014e-308,
        1.7976931348623157e308,
        0.1,
        1.0 / 3.0,
        -1e-10,
        123456789.12345679,
        9.223372036854776e18, // 2^63 as REAL
    ];
    let ints: [i64; 5] = [i64::MIN, i64::MAX, 0, -1, 1 << 53];
    let texts = [
        "",
        "it's \"quoted\"",
        "line1\nline2\r\nline3",
        "emoji 🧘‍♀️ and Zoë, 日本語",
        "semi;colon -- dash /* c */",
        "NUL\0inside",
    ];
    for i in 0..200i64 {
        let r = reals[i as usize % reals.len()];
        let t = texts[i as usize % texts.len()];
        let b: Vec<u8> = (0..(i % 17) as u8 * 13).collect();
        let n: rusqlite::types::Value = match i % 4 {
            0 => rusqlite::types::Value::Null,
            1 => rusqlite::types::Value::Integer(ints[i as usize % ints.len()]),
            2 => rusqlite::types::Value::Real(r),
            _ => rusqlite::types::Value::Blob(vec![0, 255, 1]),
        };
        c.execute(
            "INSERT INTO plain VALUES (?,?,?,?,?)",
            rusqlite::params![i, r, t, b, n],
        )
        .unwrap();
        c.execute(
            "INSERT INTO kv VALUES (?,?)",
            rusqlite::params![format!("k{i:04}"), t],
        )
        .unwrap();
        c.execute(
            "INSERT INTO strict_t VALUES (?,?,?,?,?,?)",
            rusqlite::params![i, ints[i as usize % ints.len()], r, t, b, n],
        )
        .unwrap();
        c.execute("INSERT INTO seq (v) VALUES (?)", [t]).unwrap();
        c.execute(
            r#"INSERT INTO "odd ""name"" 🦀" VALUES (?,?,?,?)"#,
            rusqlite::params![format!("s{i}"), i, Option::<String>::None, r],
        )
        .unwrap();
        c.execute(
            "INSERT INTO composite VALUES (?,?,?)",
            rusqlite::params![t, i, "x"],
        )
        .unwrap();
    }
    // Leave a gap in the AUTOINCREMENT counter: the restored sequence must keep it.
    c.execute_batch("DELETE FROM seq WHERE id > 190;").unwrap();
}

/// A multi-tenant schema with every kind of table (direct, through parents, self-referencing,
/// composite keys, nullable tenant, a key known only from config, global, excluded) and data.
pub const TENANT_SCHEMA: &str = r#"
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
