//! The S3 path against a real S3-compatible server (s3s-fs, real SigV4 checks) on 127.0.0.1,
//! started and stopped by each test. `scripts/test.sh` builds s3s-fs into a cache directory.

mod common;

use common::s3::*;
use common::*;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rusqlite::Connection;

#[test]
fn s3_round_trip_with_multipart_upload() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let db = d.join("studio.db");
    tricky_db(&db);
    // ~30 MB that does not compress: the stored object needs several 8 MiB parts.
    Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE blobs (b BLOB);
             WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 7500)
               INSERT INTO blobs SELECT randomblob(4000) FROM n;",
        )
        .unwrap();
    let url = format!("s3://{BUCKET}/prod/lifeboat");
    let out = s3.ok(
        d,
        &["--json", "backup", "--db", "studio.db", "--repo", &url],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = v["backups"][0]["id"].as_str().unwrap().to_string();
    let stored = v["backups"][0]["stored_size"].as_u64().unwrap();
    assert!(stored > 3 * 8 * 1024 * 1024, "stored {stored} bytes");

    // Same layout as on a local disk, under the prefix; the data object came in parts.
    let store = s3.store();
    let meta = rt()
        .block_on(store.head(&Key::from(format!(
            "prod/lifeboat/studio/backups/{id}.sqlite.zst"
        ))))
        .unwrap();
    assert_eq!(meta.size, stored);
    let etag = meta.e_tag.unwrap_or_default();
    assert!(
        etag.trim_matches('"').contains('-'),
        "multipart ETag has a part count: {etag}"
    );
    rt().block_on(store.head(&Key::from(format!(
        "prod/lifeboat/studio/backups/{id}.json"
    ))))
    .unwrap();

    s3.ok(
        d,
        &[
            "restore",
            "--db",
            "studio.db",
            "--repo",
            &url,
            "--to",
            "restored.db",
        ],
    );
    assert_same_db(&db, &d.join("restored.db"));
    let out = s3.ok(d, &["verify", "--all", "--repo", &url]);
    assert!(out.starts_with("ok "), "{out}");
}

#[test]
fn s3_listing_pages_past_1000_objects() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("many.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (42);")
        .unwrap();
    // 1,100 leftover objects whose keys sort before any real backup's.
    let store = s3.store();
    rt().block_on(async {
        futures::stream::iter(0..1100)
            .map(|i| {
                let store = store.clone();
                async move {
                    let key = Key::from(format!(
                        "r/many/backups/backup-2001-01-01T000000Z-{i:04}.sqlite.zst"
                    ));
                    store
                        .put(&key, PutPayload::from_static(b"partial"))
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
    });
    let url = format!("s3://{BUCKET}/r");
    s3.ok(d, &["backup", "--db", "many.db", "--repo", &url]);
    let v: serde_json::Value =
        serde_json::from_str(&s3.ok(d, &["--json", "list", "--repo", &url])).unwrap();
    assert_eq!(
        v["databases"][0]["backups"].as_array().unwrap().len(),
        1,
        "the backup after key 1,000 is seen"
    );
    assert_eq!(
        v["databases"][0]["incomplete"].as_array().unwrap().len(),
        1100
    );
    s3.ok(
        d,
        &["restore", "--db", "many.db", "--repo", &url, "--to", "r.db"],
    );
    assert_eq!(sqlite3(&d.join("r.db"), "SELECT x FROM t"), "42");
    s3.ok(d, &["cleanup", "--repo", &url, "--older-than", "0s"]);
    let v: serde_json::Value =
        serde_json::from_str(&s3.ok(d, &["--json", "list", "--repo", &url])).unwrap();
    assert_eq!(v["databases"][0]["incomplete"].as_array().unwrap().len(), 0);
    assert_eq!(v["databases"][0]["backups"].as_array().unwrap().len(), 1);
}

#[test]
fn s3_wrong_credentials_are_a_clear_error() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Connection::open(d.join("a.db"))
        .unwrap()
        .execute_batch("CREATE TABLE t (x);")
        .unwrap();
    let url = format!("s3://{BUCKET}/creds");
    for args in [
        vec!["backup", "--db", "a.db", "--repo", &url],
        vec!["list", "--repo", &url],
    ] {
        let o = s3.lifeboat(d, "wrong-secret-value", &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(4), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("access denied"), "{err}");
        assert!(
            !err.contains("wrong-secret-value") && !err.contains(SECRET),
            "no secrets in errors"
        );
    }
    let listed = rt().block_on(async { s3.store().list(None).collect::<Vec<_>>().await });
    assert!(listed.is_empty(), "nothing was written: {listed:?}");
}
