//! Fills a repository with a long history of backups quickly, for benchmarks: the newest real
//! backup of a database is copied under `N` new ids, one every `STEP_HOURS` back from `END`
//! (each copy a complete backup: its manifest rewritten, its data object copied, and its verify
//! record too when the real backup has one, as `verify_after_backup` writes), 32 backups at a
//! time, straight through the object store; then the real backup is removed, so the history is
//! the same whatever day it runs. S3 settings come from the same variables as lifeboat's.
//!
//! ```text
//! cargo run --release -p lifeboat --example plant_backups -- REPO_URL DB N STEP_HOURS END
//! plant_backups s3://bench/lb studio 10000 6 2026-11-30T18:00:00Z
//! ```

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};

use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::repository::{backup_id, DATA_SUFFIX, MANIFEST_SUFFIX};
use lifeboat::repo::{BackupKind, Repository};

#[tokio::main]
async fn main() {
    if let Err(e) = plant().await {
        eprintln!("plant_backups: {e}");
        std::process::exit(1);
    }
}

async fn plant() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, db, n, step, end] = args.as_slice() else {
        return Err(Error::new(
            Kind::Config,
            "usage: plant_backups REPO_URL DB N STEP_HOURS END (RFC 3339)",
        ));
    };
    let bad = |what: &str| Error::new(Kind::Config, format!("{what} is not valid"));
    let n: usize = n.parse().map_err(|_| bad("N"))?;
    let step: i64 = step.parse().map_err(|_| bad("STEP_HOURS"))?;
    let end: DateTime<Utc> = end.parse().map_err(|_| bad("END"))?;
    let repo = Repository::open(url, false)?;
    let real = repo
        .list(db)
        .await?
        .backups
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::new(
                Kind::NotFound,
                format!("{db} has no backup to copy in {url}"),
            )
        })?;
    let store = repo.backend().store.clone();
    let fail = |what: &'static str| {
        move |e: object_store::Error| Error::new(Kind::Repository, format!("{what}: {e}"))
    };
    let data = store
        .get(&repo.key(db, &real.id, DATA_SUFFIX))
        .await
        .map_err(fail("read data"))?
        .bytes()
        .await
        .map_err(fail("read data"))?;
    // The real record's shape, each copy's dates moved with its backup's.
    let record = repo.verify_record(db, &real.id).await?;
    futures::stream::iter(0..n)
        .map(|i| {
            let (repo, store, data) = (&repo, store.clone(), data.clone());
            let mut record = record.clone();
            let mut m = real.clone();
            m.created_at = end - Duration::hours(step * i as i64);
            m.id = backup_id(m.created_at);
            m.kind = BackupKind::Scheduled;
            m.data_object = format!("{}{DATA_SUFFIX}", m.id);
            let shift = m.created_at - real.created_at;
            let record = record.as_mut().map(|r| {
                r.id = m.id.clone();
                for c in [&mut r.catalogue, &mut r.read, &mut r.restore_test]
                    .into_iter()
                    .flatten()
                {
                    c.at += shift;
                }
                let mut body = serde_json::to_vec_pretty(r).expect("record serializes");
                body.push(b'\n');
                body
            });
            async move {
                let data_key = repo.key(db, &m.id, DATA_SUFFIX);
                store
                    .put(&data_key, PutPayload::from(data))
                    .await
                    .map_err(fail("write data"))?;
                if let Some(body) = record {
                    store
                        .put(&repo.record_key(db, &m.id), PutPayload::from(body))
                        .await
                        .map_err(fail("write verify record"))?;
                }
                store
                    .put(
                        &repo.key(db, &m.id, MANIFEST_SUFFIX),
                        PutPayload::from(m.to_json()),
                    )
                    .await
                    .map_err(fail("write manifest"))?;
                Ok::<(), Error>(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    repo.delete_backup(&real).await?;
    println!("planted {n} backups of {db} in {url}");
    Ok(())
}
