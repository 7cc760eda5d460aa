//! `lifeboat prune` at scale on a real S3 server (s3s-fs, which pages listings at 1,000 keys like
//! S3): 1,200 backups, each a copy of one real backup under its own id and time, with a pin, an
//! active and an expired hold, and a damaged manifest. What must remain is computed here from the
//! timeline, not by the code under test. Then prunes racing each other, a prune racing `pin`, and
//! a prune whose server dies half-way.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use common::s3::*;
use common::*;
use futures::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const PREFIX: &str = "fleet";
const BACKUPS: &str = "fleet/db/backups";

fn url() -> String {
    format!("s3://{BUCKET}/{PREFIX}")
}

/// The time of the `i`-th newest backup of the timeline: every 6 hours back from 2025-12-31 18:00.
fn time_of(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 12, 31, 18, 0, 0).unwrap() - Duration::hours(6 * i as i64)
}

fn id_of(i: usize) -> String {
    time_of(i).format("backup-%Y-%m-%dT%H%M%SZ").to_string()
}

/// One real backup of a small database, then `n` copies of it under the timeline's ids (the
/// manifest rewritten, the data object copied), written straight to the store 32 at a time. The
/// real backup goes, so the timeline is the same whatever day the test runs.
fn plant(s3: &S3Server, d: &Path, n: usize) {
    sqlite3(
        &d.join("db.sqlite"),
        "CREATE TABLE IF NOT EXISTS t(x); DELETE FROM t; INSERT INTO t VALUES (1), (2);",
    );
    config(d, "keep_last = 1");
    let out = s3.ok(d, &["--json", "backup", "--db", "db.sqlite", "--no-verify"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let real = v["backups"][0]["id"].as_str().unwrap().to_string();
    let store = s3.store();
    rt().block_on(async {
        let get = |name: String| {
            let store = store.clone();
            async move {
                let key = Key::from(format!("{BACKUPS}/{name}"));
                store.get(&key).await.unwrap().bytes().await.unwrap()
            }
        };
        let manifest: serde_json::Value =
            serde_json::from_slice(&get(format!("{real}.json")).await).unwrap();
        let data = get(format!("{real}.sqlite.zst")).await;
        futures::stream::iter(0..n)
            .map(|i| {
                let (store, data) = (store.clone(), data.clone());
                let mut m = manifest.clone();
                async move {
                    let id = id_of(i);
                    m["id"] = id.clone().into();
                    m["created_at"] = time_of(i).to_rfc3339().into();
                    m["kind"] = "scheduled".into();
                    m["data_object"] = format!("{id}.sqlite.zst").into();
                    let key = |suffix: &str| Key::from(format!("{BACKUPS}/{id}{suffix}"));
                    store
                        .put(&key(".sqlite.zst"), PutPayload::from(data))
                        .await
                        .unwrap();
                    store
                        .put(
                            &key(".json"),
                            PutPayload::from(serde_json::to_vec(&m).unwrap()),
                        )
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        for suffix in [".json", ".sqlite.zst"] {
            let key = Key::from(format!("{BACKUPS}/{real}{suffix}"));
            store.delete(&key).await.unwrap();
        }
    });
}

fn config(d: &Path, retention: &str) {
    std::fs::write(
        d.join("lifeboat.toml"),
        format!(
            "[repository]\nurl = \"{}\"\n\n[retention]\n{retention}\n",
            url()
        ),
    )
    .unwrap();
}

/// Write a hold on backup `id` set at `at` (holds are set by backups that see a table shrink;
/// this is the object such a backup writes).
fn hold(store: &dyn ObjectStore, id: &str, at: DateTime<Utc>) {
    let body = serde_json::json!({"id": id, "reason": "t 100 -> 3", "at": at});
    rt().block_on(store.put(
        &Key::from(format!("{PREFIX}/db/holds/{id}.json")),
        PutPayload::from(serde_json::to_vec(&body).unwrap()),
    ))
    .unwrap();
}

/// The listed backups' ids, and the count of incomplete leftovers.
fn listed(s3: &S3Server, d: &Path) -> (BTreeSet<String>, usize) {
    let v: serde_json::Value =
        serde_json::from_str(&s3.ok(d, &["--json", "list", "--repo", &url()])).unwrap();
    let db = &v["databases"][0];
    let ids = db["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    (ids, db["incomplete"].as_array().unwrap().len())
}

/// Every object under the backups folder, by name.
fn objects(s3: &S3Server) -> BTreeSet<String> {
    let store = s3.store();
    rt().block_on(async {
        store
            .list(Some(&Key::from(BACKUPS)))
            .map(|m| m.unwrap().location.filename().unwrap().to_string())
            .collect()
            .await
    })
}

fn prune_json(s3: &S3Server, d: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "prune"];
    all.extend_from_slice(args);
    serde_json::from_str(&s3.ok(d, &all)).unwrap()
}

#[test]
fn prune_of_1200_backups_on_s3_keeps_exactly_what_the_policy_keeps() {
    const N: usize = 1200;
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plant(&s3, d, N);
    let store = s3.store();
    // An unreadable manifest, years old: never deleted.
    let damaged = "backup-2019-01-01T000000Z";
    rt().block_on(async {
        let key = |s: &str| Key::from(format!("{BACKUPS}/{damaged}{s}"));
        store
            .put(&key(".json"), PutPayload::from_static(b"{not json"))
            .await
            .unwrap();
        store
            .put(&key(".sqlite.zst"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    });
    let (pinned, held, expired) = (id_of(N - 5), id_of(700), id_of(900));
    s3.ok(d, &["pin", &pinned, "--reason", "audit 2025"]);
    hold(store.as_ref(), &held, Utc::now());
    hold(store.as_ref(), &expired, Utc::now() - Duration::days(60));
    let (before, _) = listed(&s3, d);
    assert_eq!(before.len(), N, "all 2,400 objects are listed, past page 1");

    // keep_last 10 keeps the 10 newest; keep_daily 30 the 18:00 backup of each of the last 30
    // days (every 4th, from the newest); the pin and the active hold keep theirs.
    config(d, "keep_last = 10\nkeep_daily = 30\nmin_keep = 1");
    let mut want: BTreeSet<String> = (0..N)
        .filter(|&i| i < 10 || (i % 4 == 0 && i < 4 * 30))
        .map(id_of)
        .collect();
    assert!((0..120).all(|i| time_of(i).hour() == 18 || i % 4 != 0));
    want.insert(pinned.clone());
    want.insert(held.clone());
    assert_eq!(want.len(), 39);

    let dry = prune_json(&s3, d, &["--dry-run"]);
    let to_delete = dry["databases"][0]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["keep"] == false)
        .count();
    assert_eq!(to_delete, N - want.len());
    assert_eq!(listed(&s3, d).0.len(), N, "a dry run deletes nothing");

    let report = prune_json(&s3, d, &[]);
    assert_eq!(report["databases"][0]["deleted"], N - want.len());
    let (left, incomplete) = listed(&s3, d);
    assert_eq!(left, want);
    assert_eq!(incomplete, 0, "nothing half-deleted");
    // What is left in the folder is exactly the kept backups' objects and the damaged one's.
    let mut want_objects: BTreeSet<String> = want
        .iter()
        .flat_map(|id| [format!("{id}.json"), format!("{id}.sqlite.zst")])
        .collect();
    want_objects.insert(format!("{damaged}.json"));
    want_objects.insert(format!("{damaged}.sqlite.zst"));
    assert_eq!(objects(&s3), want_objects);
    // A kept backup from the far end of the timeline still restores.
    s3.ok(
        d,
        &["restore", "--db", "db", "--backup", &pinned, "--to", "r.db"],
    );
    assert_same_db(&d.join("db.sqlite"), &d.join("r.db"));

    let again = prune_json(&s3, d, &[]);
    assert_eq!(again["databases"][0]["deleted"], 0);
    assert_eq!(listed(&s3, d).0, want);
}

#[test]
fn prunes_racing_each_other_or_pins_on_s3_lose_no_pinned_backup() {
    const N: usize = 400;
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let newest: BTreeSet<String> = (0..5).map(id_of).collect();
    let prune = || {
        cmd(d)
            .env("AWS_ACCESS_KEY_ID", KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ENDPOINT_URL", s3.endpoint())
            .env("AWS_REGION", "us-east-1")
            .arg("prune")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Two prunes at once: both succeed, and together delete exactly what one would.
    plant(&s3, d, N);
    config(d, "keep_last = 5\nmin_keep = 1");
    let (a, b) = (prune(), prune());
    for p in [a, b] {
        let o = p.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(listed(&s3, d), (newest.clone(), 0));

    // A prune, and pins on the backups it deletes, from the oldest while it goes newest first:
    // some land before it reads the marks, some while it deletes, some after.
    plant(&s3, d, N);
    config(d, "keep_last = 5\nmin_keep = 1");
    let running = prune();
    let mut pinned = BTreeSet::new();
    let mut refused = 0;
    for i in (5..N).rev().step_by(3) {
        let o = s3.lifeboat(d, SECRET, &["pin", &id_of(i), "--reason", "race"]);
        if o.status.success() {
            pinned.insert(id_of(i));
        } else {
            let err = stderr(&o);
            assert!(err.contains("has no backup"), "{err}");
            refused += 1;
        }
    }
    let o = running.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (left, incomplete) = listed(&s3, d);
    assert!(left.is_superset(&newest));
    // A pin that said yes keeps its backup, whole (listed, not damaged: its data is there).
    assert!(left.is_superset(&pinned), "{pinned:?} not all in {left:?}");
    assert_eq!(incomplete, 0, "nothing half-deleted");
    // A pin that said no may have made the prune put a manifest back; the next prune settles
    // it: exactly the newest five and the pinned remain.
    prune_json(&s3, d, &[]);
    let want: BTreeSet<String> = newest.union(&pinned).cloned().collect();
    assert_eq!(listed(&s3, d).0, want);
    eprintln!("{} pins said yes, {refused} said no", pinned.len());
}

#[test]
fn a_prune_whose_server_dies_leaves_no_listed_backup_without_data() {
    // Two batches of deletions: the server dies during the first.
    const N: usize = 1500;
    let mut s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plant(&s3, d, N);
    config(d, "keep_last = 5\nmin_keep = 1");
    let running = cmd(d)
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_ENDPOINT_URL", s3.endpoint())
        .env("AWS_REGION", "us-east-1")
        .arg("prune")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = s3.store();
    let first = Key::from(format!("{BACKUPS}/{}.json", id_of(5)));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while rt().block_on(store.head(&first)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the prune never began"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    s3.kill();
    let o = running.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "repository unreachable: {err}");
    // Retries are said as they happen; the error is one line.
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("lifeboat: error: prune db: ")
            && last.contains("backup(s) deleted before this failure"),
        "{err}"
    );

    s3.restart();
    let v: serde_json::Value =
        serde_json::from_str(&s3.ok(d, &["--json", "list", "--repo", &url()])).unwrap();
    let db = &v["databases"][0];
    assert_eq!(
        db["damaged"].as_array().unwrap().len(),
        0,
        "every listed backup has its data"
    );
    let kept: BTreeSet<String> = db["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    let newest: BTreeSet<String> = (0..5).map(id_of).collect();
    assert!(kept.is_superset(&newest));
    assert!(!kept.contains(&id_of(5)), "its manifest went first");
    // What was cut off half-way is a data object without its manifest, for cleanup.
    for l in db["incomplete"].as_array().unwrap() {
        let id = l["id"].as_str().unwrap();
        assert!((5..N).any(|i| id_of(i) == id), "{id}");
        assert_eq!(
            l["objects"],
            serde_json::json!([format!("{id}.sqlite.zst")])
        );
    }
    // The next prune and cleanup finish the job.
    s3.ok(d, &["prune"]);
    s3.ok(d, &["cleanup", "--older-than", "0s"]);
    assert_eq!(listed(&s3, d), (newest, 0));
}
