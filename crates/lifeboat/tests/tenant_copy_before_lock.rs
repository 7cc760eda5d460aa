//! In WAL mode the tenant restore copies the tenant's live rows before taking the write lock. The
//! copy may only be used if nobody committed in between; these tests commit in between (from
//! another connection, at the exact moment the restore waits for the image's check) and check
//! that the restore is still exact and that its kept copy is what it replaced.

use std::path::Path;
use std::time::Duration;

use lifeboat::tenant::apply::prepare;
use rusqlite::Connection;

const SCHEMA: &str = "
    PRAGMA journal_mode=WAL;
    CREATE TABLE tenants (id TEXT PRIMARY KEY, name TEXT);
    CREATE TABLE bookings (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL REFERENCES tenants(id), what TEXT);
    INSERT INTO tenants VALUES ('t1', 'one'), ('t2', 'two');
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
    INSERT INTO bookings (tenant_id, what) SELECT 't1', 'b' || i FROM n;
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50)
    INSERT INTO bookings (tenant_id, what) SELECT 't2', 'b' || i FROM n;
";

fn rows(db: &Path, tenant: &str) -> Vec<(i64, String)> {
    let c = Connection::open(db).unwrap();
    let mut st = c
        .prepare("SELECT id, what FROM bookings WHERE tenant_id = ?1 ORDER BY id")
        .unwrap();
    st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A live WAL database, its backup image (a copy taken before the damage), and the damage:
/// half of t1's bookings deleted.
fn setup(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let live = dir.join("live.db");
    let image = dir.join("image.db");
    let c = Connection::open(&live).unwrap();
    c.execute_batch(SCHEMA).unwrap();
    c.execute("VACUUM INTO ?1", [image.to_str().unwrap()])
        .unwrap();
    c.execute_batch("DELETE FROM bookings WHERE tenant_id = 't1' AND id % 2 = 0")
        .unwrap();
    (live, image)
}

fn restore(
    dir: &Path,
    live: &Path,
    image: &Path,
    between: impl FnOnce(),
) -> (bool, std::path::PathBuf) {
    let scratch = dir.join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let prepared = prepare(
        live,
        image,
        &Default::default(),
        "t1",
        &scratch,
        &dir.join("live-copy.sqlite"),
        Duration::from_secs(5),
    )
    .unwrap();
    let (changes, kept) = prepared
        .apply(&dir.join("kept.sqlite"), || {
            between();
            Ok(())
        })
        .map_err(|f| f.error)
        .unwrap();
    (changes.live_copy_before_lock, kept)
}

#[test]
fn a_quiet_database_is_copied_before_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (live, image) = setup(dir.path());
    let before = rows(&live, "t1");
    let (early, kept) = restore(dir.path(), &live, &image, || {});
    assert!(early, "nobody wrote: the copy made before the lock is used");
    assert_eq!(rows(&live, "t1"), rows(&image, "t1"));
    assert_eq!(
        rows(&kept, "t1"),
        before,
        "the kept copy is what was replaced"
    );
}

#[test]
fn a_commit_before_the_lock_makes_the_copy_again() {
    let dir = tempfile::tempdir().unwrap();
    let (live, image) = setup(dir.path());
    let writer = live.clone();
    let (early, kept) = restore(dir.path(), &live, &image, move || {
        // Another process adds a booking of t1 and changes one of t2 after the restore copied
        // t1's rows, before it locks.
        let c = Connection::open(&writer).unwrap();
        c.execute_batch(
            "INSERT INTO bookings (id, tenant_id, what) VALUES (1000, 't1', 'late');
             UPDATE bookings SET what = 'changed' WHERE tenant_id = 't2' AND id = 60;",
        )
        .unwrap();
    });
    assert!(
        !early,
        "a commit came between: the copy is made again under the lock"
    );
    // Exact: the late booking is not in the backup, so it is gone from t1 ...
    assert_eq!(rows(&live, "t1"), rows(&image, "t1"));
    // ... but kept in the copy of what the restore replaced, which is the undo.
    assert!(rows(&kept, "t1").contains(&(1000, "late".to_string())));
    // Other tenants are untouched, the writer's change included.
    assert!(rows(&live, "t2").contains(&(60, "changed".to_string())));
}

#[test]
fn rollback_journal_mode_copies_under_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (live, image) = setup(dir.path());
    Connection::open(&live)
        .unwrap()
        .execute_batch("PRAGMA journal_mode=DELETE")
        .unwrap();
    let (early, _) = restore(dir.path(), &live, &image, || {});
    assert!(
        !early,
        "a read would block writers in rollback mode: no copy before the lock"
    );
    assert_eq!(rows(&live, "t1"), rows(&image, "t1"));
}
