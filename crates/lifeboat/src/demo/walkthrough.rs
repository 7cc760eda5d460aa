//! The README's first command, `lifeboat demo`: a realistic multi-tenant database, then backup,
//! list, verify and restore against a repository of the demo's own, and the runbook's Scenario 2
//! (one tenant loses data; only that tenant is brought back). Each step is reported as it ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::backup::{backup, BackupOptions};
use crate::demo::generate;
use crate::error::{Error, Kind, Result};
use crate::progress::Progress;
use crate::repo::{Manifest, Repository};
use crate::restore::select;
use crate::restore::to_file::{restore, RestoreOptions, RestoreReport};
use crate::restore::Selector;
use crate::source::sqlite::{inspect, open_image, IntegrityCheck};
use crate::source::Source;
use crate::verify::{restore_test, VerifyReport};

/// The file that marks a directory as the demo's own, so a later demo may replace its files.
const MARKER: &str = ".lifeboat-demo";
/// The label of the demo's backups: in a repository that already holds another database called
/// `studio`, they would become its `latest`, so such a repository is refused.
const LABEL: &str = "lifeboat demo";

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct Demo {
    /// Working directory: the sample database, the restored copy and (by default) the repository.
    pub dir: PathBuf,
    pub size_mb: u64,
    pub seed: u64,
    pub repo_url: String,
    /// Stop after generating the database (the benchmarks use this).
    pub generate_only: bool,
}

/// One step, reported as it ends.
#[derive(Debug)]
pub enum Step<'a> {
    Generated {
        path: &'a Path,
        bytes: u64,
        tenants: usize,
        /// As every later step counts them: SQLite's own tables included.
        rows: u64,
        /// Of which in SQLite's own tables (the AUTOINCREMENT counters).
        internal_rows: u64,
        ms: u64,
    },
    BackedUp {
        manifest: &'a Manifest,
        repo_url: &'a str,
        ms: u64,
    },
    Listed {
        complete: usize,
        incomplete: usize,
        newest: Option<&'a str>,
        ms: u64,
    },
    Verified(&'a VerifyReport),
    Restored {
        report: &'a RestoreReport,
        ms: u64,
    },
    TenantRestored {
        tenant: &'a str,
        lost: i64,
        inserted: u64,
        bookings_now: i64,
        ms: u64,
    },
}

/// Everything the demo did, for `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub database: PathBuf,
    pub restored: PathBuf,
    pub generated_bytes: u64,
    pub tenants: usize,
    pub backup: Option<Manifest>,
    pub verify: Option<VerifyReport>,
    pub restore: Option<RestoreReport>,
}

/// Run the demo; `on_step` hears of each step as it ends; `progress` shows the backup's.
pub async fn run(
    demo: &Demo,
    progress: &Progress,
    mut on_step: impl FnMut(Step<'_>),
) -> Result<Summary> {
    claim_dir(&demo.dir)?;
    let db_path = demo.dir.join("studio.db");
    let restored = demo.dir.join("restored.db");

    // 1. A fresh sample database (only the demo's own files are replaced).
    remove_db(&db_path)?;
    let t = Instant::now();
    let (size, seed, path) = (demo.size_mb, demo.seed, db_path.clone());
    let generated = tokio::task::spawn_blocking(move || generate(&path, size, seed))
        .await
        .map_err(|e| Error::task("demo: generate", e))?
        .map_err(|e| Error::sqlite(Kind::Internal, "demo: generate", e))?;
    let counted = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || inspect(&open_image(&path)?))
            .await
            .map_err(|e| Error::task("demo: count", e))?
            .map_err(|e| Error::sqlite(Kind::Internal, "demo: count", e))?
    };
    on_step(Step::Generated {
        path: &db_path,
        bytes: generated.bytes,
        tenants: generated.tenants,
        rows: counted.tables.values().sum(),
        internal_rows: counted
            .tables
            .iter()
            .filter(|(t, _)| t.starts_with("sqlite_"))
            .map(|(_, n)| n)
            .sum(),
        ms: ms(t),
    });
    let mut summary = Summary {
        database: db_path.clone(),
        restored: restored.clone(),
        generated_bytes: generated.bytes,
        tenants: generated.tenants,
        backup: None,
        verify: None,
        restore: None,
    };
    if demo.generate_only {
        return Ok(summary);
    }

    // 2. Backup, into a repository where no other `studio` lives.
    let repo = Repository::open(&demo.repo_url, true)?;
    refuse_foreign_studio(&repo).await?;
    let db = Source::file("studio", db_path.clone());
    let t = Instant::now();
    let opts = BackupOptions {
        label: Some(LABEL.to_string()),
        ..BackupOptions::default()
    };
    let m = backup(&repo, &db, &opts, progress).await?;
    on_step(Step::BackedUp {
        manifest: &m,
        repo_url: repo.url(),
        ms: ms(t),
    });

    // 3. List.
    let t = Instant::now();
    let listing = repo.list(&db.name).await?;
    on_step(Step::Listed {
        complete: listing.backups.len(),
        incomplete: listing.incomplete.len(),
        newest: listing.backups.first().map(|m| m.id.as_str()),
        ms: ms(t),
    });

    // 4. Verify.
    let report = restore_test(&repo, &m, None).await;
    if let Some(p) = &report.problem {
        return Err(Error::new(Kind::Corrupt, format!("demo: verify: {p}")));
    }
    on_step(Step::Verified(&report));

    // 5. Restore into a new file and compare with the source.
    remove_db(&restored)?;
    let t = Instant::now();
    let latest = select(&repo, &db.name, &Selector::Latest).await?.manifest;
    let opts = RestoreOptions {
        force: false,
        integrity: IntegrityCheck::Quick,
        dry_run: false,
        scratch_dir: None,
    };
    let r = restore(&repo, &latest, &restored, &opts, &Progress::hidden()).await?;
    let restored_ms = ms(t);
    let (a, b) = (db_path.clone(), restored.clone());
    let same = tokio::task::spawn_blocking(move || -> rusqlite::Result<bool> {
        let x = inspect(&open_image(&a)?)?;
        let y = inspect(&open_image(&b)?)?;
        Ok(x.tables == y.tables && x.schema_sha256 == y.schema_sha256)
    })
    .await
    .map_err(|e| Error::task("demo: compare", e))?
    .map_err(|e| Error::sqlite(Kind::Internal, "demo: compare", e))?;
    if !same {
        return Err(Error::new(
            Kind::Corrupt,
            "demo: restored copy differs from the source",
        ));
    }
    on_step(Step::Restored {
        report: &r,
        ms: restored_ms,
    });

    // 6. The runbook's Scenario 2: one tenant loses data; bring back only that tenant.
    let t = Instant::now();
    let (live, image) = (db_path.clone(), restored.clone());
    let tenant = tokio::task::spawn_blocking(move || scenario_2(&live, &image))
        .await
        .map_err(|e| Error::task("demo: tenant", e))??;
    on_step(Step::TenantRestored {
        tenant: &tenant.tenant,
        lost: tenant.lost,
        inserted: tenant.inserted,
        bookings_now: tenant.bookings_now,
        ms: ms(t),
    });
    summary.backup = Some(m);
    summary.verify = Some(report);
    summary.restore = Some(r);
    Ok(summary)
}

struct TenantOutcome {
    tenant: String,
    lost: i64,
    inserted: u64,
    bookings_now: i64,
}

/// Delete half of tenant studio-3's bookings in the live database, then put them back from the
/// restored copy with the tenant restore's engine.
fn scenario_2(live: &Path, image: &Path) -> Result<TenantOutcome> {
    let err = |e| Error::sqlite(Kind::Internal, "demo", e);
    let count = |c: &rusqlite::Connection, t: &str| -> rusqlite::Result<i64> {
        c.query_row(
            "SELECT count(*) FROM bookings b JOIN classes c ON c.id = b.class_id WHERE c.tenant_id = ?1",
            [t],
            |r| r.get(0),
        )
    };
    let conn = rusqlite::Connection::open(live).map_err(err)?;
    let tenant: String = conn
        .query_row("SELECT id FROM tenants WHERE slug = 'studio-3'", [], |r| {
            r.get(0)
        })
        .map_err(err)?;
    let before = count(&conn, &tenant).map_err(err)?;
    conn.execute(
        "DELETE FROM bookings WHERE rowid % 2 = 0 AND class_id IN (SELECT id FROM classes WHERE tenant_id = ?1)",
        [&tenant],
    )
    .map_err(err)?;
    let lost = before - count(&conn, &tenant).map_err(err)?;
    drop(conn);
    let scratch = crate::fs::scratch::scratch(None)?;
    let copy = scratch.path().join("live-tenant.sqlite");
    let prepared = crate::tenant::apply::prepare(
        live,
        image,
        &Default::default(),
        &tenant,
        scratch.path(),
        &copy,
        Duration::from_secs(30),
    )?;
    let (changes, _) = prepared
        .apply(&scratch.path().join("kept.sqlite"), || Ok(()))
        .map_err(|f| f.error)?;
    let conn = rusqlite::Connection::open(live).map_err(err)?;
    let bookings_now = count(&conn, &tenant).map_err(err)?;
    Ok(TenantOutcome {
        inserted: changes.tables.iter().map(|c| c.insert).sum(),
        tenant,
        lost,
        bookings_now,
    })
}

/// Refuse a repository that holds backups of a `studio` the demo did not make.
async fn refuse_foreign_studio(repo: &Repository) -> Result<()> {
    let listing = repo.list("studio").await?;
    let theirs = listing
        .backups
        .iter()
        .any(|m| m.label.as_deref() != Some(LABEL))
        || !listing.damaged.is_empty()
        || !listing.incomplete.is_empty();
    if theirs {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "demo: {} already holds backups of a database named studio that the demo did not make; give the demo its own repository",
                repo.url()
            ),
        ));
    }
    Ok(())
}

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
}

fn remove_db(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }
    Ok(())
}

/// Make `dir` the demo's: a new or empty directory gets the marker; one with the marker is the
/// demo's already; anything else is refused, so the demo never replaces a user's files.
fn claim_dir(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER);
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if marker.is_file() {
                return Ok(());
            }
            if entries.next().is_some() {
                return Err(Error::new(
                    Kind::TargetExists,
                    format!(
                        "demo --dir {}: the directory is not empty and was not made by lifeboat demo; give a new or empty directory",
                        dir.display()
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        Err(e) => return Err(Error::io(format!("demo --dir {}", dir.display()), e)),
    }
    std::fs::write(
        &marker,
        "made by `lifeboat demo`; a later demo may replace the files in this directory\n",
    )
    .map_err(|e| Error::io(format!("create {}", marker.display()), e))
}
