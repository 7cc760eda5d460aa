//! `lifeboat demo`: the README's first command. Builds a realistic multi-tenant database, then
//! runs backup, list, verify and restore against a local repository, printing timings.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::{secs, Ctx};
use lifeboat::backup::pipeline::{backup, BackupOptions};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::manifest::human_size;
use lifeboat::repo::repository::Repository;
use lifeboat::restore::to_file::{restore, select, IntegrityCheck, RestoreOptions, Selector};
use lifeboat::source::sqlite::{inspect, open_image};
use lifeboat::source::Source;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat demo
  lifeboat demo --size 800 --dir /tmp/lifeboat-bench")]
pub struct Args {
    /// Working directory for the sample database, repository and restored copy.
    #[arg(long, default_value = "lifeboat-demo")]
    dir: PathBuf,
    /// Approximate size of the sample database in MB.
    #[arg(long, default_value_t = 50)]
    size: u64,
    /// Random seed for the generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Only generate the sample database (the benchmarks use this).
    #[arg(long)]
    generate_only: bool,
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

/// The file that marks a directory as the demo's own, so a later demo may replace its files.
const MARKER: &str = ".lifeboat-demo";

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

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let out = &ctx.out;
    claim_dir(&args.dir)?;
    let db_path = args.dir.join("studio.db");
    let restored = args.dir.join("restored.db");
    let repo_url = ctx
        .repo_flag
        .clone()
        .unwrap_or_else(|| format!("file://{}", args.dir.join("repo").display()));

    // 1. A fresh sample database (only the demo's own files are replaced).
    remove_db(&db_path)?;
    let t = Instant::now();
    let (size, seed, path) = (args.size, args.seed, db_path.clone());
    let generated =
        tokio::task::spawn_blocking(move || lifeboat::demo::generate(&path, size, seed))
            .await
            .map_err(|e| Error::task("demo: generate", e))?
            .map_err(|e| Error::sqlite(Kind::Internal, "demo: generate", e))?;
    // Counted as every later step counts (the manifest's row counts): SQLite's own tables
    // (the AUTOINCREMENT counters in sqlite_sequence) included, and said so.
    let counted = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || inspect(&open_image(&path)?))
            .await
            .map_err(|e| Error::task("demo: count", e))?
            .map_err(|e| Error::sqlite(Kind::Internal, "demo: count", e))?
    };
    let total: u64 = counted.tables.values().sum();
    let internal: u64 = counted
        .tables
        .iter()
        .filter(|(t, _)| t.starts_with("sqlite_"))
        .map(|(_, n)| n)
        .sum();
    let of_which = if internal > 0 {
        format!(
            " ({} generated + {internal} in SQLite's own sqlite_sequence)",
            total - internal
        )
    } else {
        String::new()
    };
    out.line(format!(
        "1. generated {}: {}, {} tenants, {total} rows{of_which}  {}",
        db_path.display(),
        human_size(generated.bytes),
        generated.tenants,
        secs(ms(t))
    ));

    if args.generate_only {
        return Ok(0);
    }

    // 2. Backup.
    let repo = Repository::open(&repo_url, true)?;
    // The demo's backups are labelled as such; in a repository that already holds another
    // database called `studio`, they would become its `latest`.
    const LABEL: &str = "lifeboat demo";
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
    let db = Source::file("studio", db_path.clone());
    let t = Instant::now();
    let pb = out.progress("backup");
    let opts = BackupOptions {
        label: Some(LABEL.to_string()),
        ..BackupOptions::default()
    };
    let m = backup(&repo, &db, &opts, &crate::bar(&pb)).await;
    pb.finish_and_clear();
    let m = m?;
    out.line(format!(
        "2. backup  {}  {} -> {} ({:.1}x) in {}  {}",
        m.id,
        human_size(m.image_size),
        human_size(m.stored_size),
        m.ratio(),
        repo.url(),
        secs(ms(t))
    ));

    // 3. List.
    let t = Instant::now();
    let listing = repo.list(&db.name).await?;
    out.line(format!(
        "3. list    {} complete backup(s), {} incomplete; newest {}  {}",
        listing.backups.len(),
        listing.incomplete.len(),
        listing
            .backups
            .first()
            .map(|m| m.id.as_str())
            .unwrap_or("-"),
        secs(ms(t))
    ));

    // 4. Verify.
    let report = lifeboat::verify::verify(&repo, &m, None).await;
    if let Some(p) = &report.problem {
        return Err(Error::new(Kind::Corrupt, format!("demo: verify: {p}")));
    }
    out.line(format!(
        "4. verify  {}  sha256 ok, integrity_check ok, {} tables, {} rows  {}",
        report.backup,
        report.tables,
        report.rows,
        secs(report.duration_ms)
    ));

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
    let r = restore(
        &repo,
        &latest,
        &restored,
        &opts,
        &lifeboat::progress::Progress::hidden(),
    )
    .await?;
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
    out.line(format!(
        "5. restore {} -> {}  {} tables, {} rows, same schema and row counts as the source  {}",
        r.backup,
        r.target.display(),
        r.tables,
        r.rows,
        secs(restored_ms)
    ));
    // 6. The runbook's Scenario 2: one tenant loses data; bring back only that tenant.
    let t = Instant::now();
    let (live, image) = (db_path.clone(), restored.clone());
    let (tenant, lost, changes, back) = tokio::task::spawn_blocking(move || -> Result<(String, i64, u64, i64)> {
        let conn = rusqlite::Connection::open(&live).map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        let count = |c: &rusqlite::Connection, t: &str| -> rusqlite::Result<i64> {
            c.query_row(
                "SELECT count(*) FROM bookings b JOIN classes c ON c.id = b.class_id WHERE c.tenant_id = ?1",
                [t],
                |r| r.get(0),
            )
        };
        let tenant: String = conn
            .query_row("SELECT id FROM tenants WHERE slug = 'studio-3'", [], |r| r.get(0))
            .map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        let before = count(&conn, &tenant).map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        conn.execute(
            "DELETE FROM bookings WHERE rowid % 2 = 0 AND class_id IN (SELECT id FROM classes WHERE tenant_id = ?1)",
            [&tenant],
        )
        .map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        let lost = before - count(&conn, &tenant).map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        drop(conn);
        let scratch = lifeboat::fs::scratch::scratch(None)?;
        let copy = scratch.path().join("live-tenant.sqlite");
        let prepared = lifeboat::tenant::apply::prepare(&live, &image, &Default::default(), &tenant, scratch.path(), &copy, std::time::Duration::from_secs(30))?;
        let (changes, _) = prepared.apply(&scratch.path().join("kept.sqlite"), || Ok(())).map_err(|f| f.error)?;
        let conn = rusqlite::Connection::open(&live).map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        let back = count(&conn, &tenant).map_err(|e| Error::sqlite(Kind::Internal, "demo", e))?;
        let inserted = changes.tables.iter().map(|c| c.insert).sum();
        Ok((tenant, lost, inserted, back))
    })
    .await
    .map_err(|e| Error::task("demo: tenant", e))??;
    out.line(format!(
        "6. tenant  deleted {lost} bookings of tenant studio-3 ({tenant}); restore --tenant put {changes} rows back, {back} bookings now, other tenants untouched  {}",
        secs(ms(t))
    ));
    out.line(format!(
        "Done. Try: lifeboat list --repo {repo_url}   |   sqldiff {} {}",
        db_path.display(),
        restored.display()
    ));
    out.json(&serde_json::json!({
        "database": db_path, "generated_bytes": generated.bytes, "tenants": generated.tenants,
        "backup": m, "verify": report, "restore": r,
    }));
    Ok(0)
}
