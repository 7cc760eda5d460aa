//! Restoring into Cloudflare D1: the runbook's Scenario 1 and Scenario 2 Option A ("restore to a
//! test database"). The checked image is written out in the D1 dialect and applied with
//! `wrangler d1 execute --file`, which D1 runs atomically; a non-empty target is refused unless
//! forced, and then backed up first. Row counts are compared with the manifest afterwards.

use std::path::{Path, PathBuf};

use crate::progress::Progress;
use serde::Serialize;

use crate::backup::d1::backup_d1_with;
use crate::backup::pipeline::BackupOptions;
use crate::d1::D1Config;
pub use crate::d1::D1Target;
use crate::error::{Error, Kind, Result};
use crate::fs::scratch::scratch;
use crate::repo::manifest::Manifest;
use crate::repo::repository::Repository;
use crate::source::Source;

/// Split a D1-dialect file into parts of at most `max` bytes at statement boundaries (schema
/// statements can span lines), each part starting with `PRAGMA defer_foreign_keys=TRUE;`.
/// Returns the part files, in order.
fn import_parts(file: &Path, max: u64) -> Result<Vec<PathBuf>> {
    use std::io::Write;
    let size = std::fs::metadata(file)
        .map_err(|e| Error::io("the import file", e))?
        .len();
    if size <= max {
        return Ok(vec![file.to_path_buf()]);
    }
    let io = |e| Error::io("split the import file", e);
    let head = b"PRAGMA defer_foreign_keys=TRUE;\n";
    let reader = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
    let mut statements = lifeboat_sql::statement_reader::StatementReader::new(reader);
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut out: Option<(std::io::BufWriter<std::fs::File>, u64)> = None;
    loop {
        let st = match statements.next_statement() {
            Ok(Some(st)) => st,
            Ok(None) => break,
            Err(e) => {
                return Err(Error::new(
                    Kind::Internal,
                    format!("split the import file: line {}: {}", e.line, e.message),
                ))
            }
        };
        if st
            .sql
            .eq_ignore_ascii_case(b"PRAGMA defer_foreign_keys=TRUE;")
        {
            continue; // every part gets its own
        }
        let len = st.sql.len() as u64 + 1;
        if len + head.len() as u64 > max {
            return Err(Error::new(
                Kind::Config,
                format!("--max-import-file {max} is smaller than one statement ({len} bytes)"),
            ));
        }
        if out.as_ref().is_none_or(|(_, n)| n + len > max) {
            if let Some((mut w, _)) = out.take() {
                w.flush().map_err(io)?;
            }
            let path = file.with_extension(format!("part{}.sql", parts.len() + 1));
            let mut w = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            w.write_all(head).map_err(io)?;
            parts.push(path);
            out = Some((w, head.len() as u64));
        }
        let (w, n) = out.as_mut().expect("a part is open");
        w.write_all(&st.sql).map_err(io)?;
        w.write_all(b"\n").map_err(io)?;
        *n += len;
    }
    if let Some((mut w, _)) = out {
        w.flush().map_err(io)?;
    }
    Ok(parts)
}

/// What a restore into D1 did, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct D1RestoreReport {
    pub backup: String,
    pub database: String,
    pub remote: bool,
    /// The safety backup of the target taken before replacing it (`--force`).
    pub safety_backup: Option<String>,
    /// Nothing was changed: the import file was written and the target inspected only.
    pub dry_run: bool,
    /// Tables, views and triggers of the target that are (or would be) dropped.
    pub would_drop: usize,
    /// How many `wrangler d1 execute --file` runs the import takes.
    pub import_parts: usize,
    pub tables: usize,
    pub manifest_tables: usize,
    pub rows: u64,
    /// (step, milliseconds)
    pub steps: Vec<(String, u64)>,
    /// How long downloading and checking the backup took (said before the steps).
    #[serde(skip)]
    pub fetch_ms: u64,
}

/// `restore --to-d1`: download and check backup `m` in scratch space, then [`restore_d1`].
pub async fn restore_backup_d1(
    repo: &Repository,
    m: &Manifest,
    target: &D1Target,
    force: bool,
    dry_run: bool,
) -> Result<D1RestoreReport> {
    crate::restore::to_file::refuse_tenant_scoped(m)?;
    let t = std::time::Instant::now();
    let tmp = scratch(None)?;
    let image = crate::restore::to_file::fetch_checked(repo, m, tmp.path()).await?;
    let fetch_ms = t.elapsed().as_millis() as u64;
    let report = restore_d1(
        repo,
        m,
        &image,
        target,
        force,
        dry_run,
        &BackupOptions::default(),
    )
    .await?;
    Ok(D1RestoreReport { fetch_ms, ..report })
}

/// Restore the image at `image` (already checked against `m`) into a D1 database: refuse a
/// non-empty target unless `force`, in which case take a safety backup of it first and put
/// the DROPs at the top of the import file, so dropping and importing are one atomic
/// `wrangler d1 execute --file`. Then compare per-table row counts with the manifest.
pub async fn restore_d1(
    repo: &Repository,
    m: &Manifest,
    image: &Path,
    target: &D1Target,
    force: bool,
    dry_run: bool,
    opts: &BackupOptions,
) -> Result<D1RestoreReport> {
    let mut steps = Vec::new();
    let (db, remote) = (target.database.clone(), target.remote);
    let t = std::time::Instant::now();
    let existing = target.user_objects().await?;
    steps.push(("inspect target".to_string(), t.elapsed().as_millis() as u64));
    let tables_now = existing.iter().filter(|(t, _)| t == "table").count();
    if !existing.is_empty() && !force {
        return Err(Error::new(
            Kind::TargetExists,
            format!(
                "D1 database {db} is not empty ({tables_now} tables, {} views and triggers): D1 cannot import over existing tables; pass --force to back it up, drop them and import",
                existing.len() - tables_now
            ),
        ));
    }
    let safety_backup = if existing.is_empty() || dry_run {
        None
    } else {
        let t = std::time::Instant::now();
        let label = format!("before restoring {} into it", m.id);
        let id = safety_backup(repo, target, label, opts)
            .await
            .map_err(|e| e.context("safety backup of the target"))?;
        steps.push((
            "safety backup of the target".to_string(),
            t.elapsed().as_millis() as u64,
        ));
        Some(id)
    };

    // One file: drops (if any), then the D1-dialect dump.
    let t = std::time::Instant::now();
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    let file = tmp.path().join("restore.sql");
    {
        let (image, file, origin) = (
            image.to_path_buf(),
            file.clone(),
            format!("backup {} of {}", m.id, m.database),
        );
        let existing = existing.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let out =
                std::fs::File::create(&file).map_err(|e| Error::io("write the import file", e))?;
            let mut out = std::io::BufWriter::new(out);
            let io = |e| Error::io("write the import file", e);
            if !existing.is_empty() {
                use std::io::Write;
                writeln!(out, "PRAGMA defer_foreign_keys=TRUE;").map_err(io)?;
                for kind in ["trigger", "view", "table"] {
                    for (_, name) in existing.iter().filter(|(t, _)| t == kind) {
                        writeln!(
                            out,
                            "DROP {} IF EXISTS {};",
                            kind.to_uppercase(),
                            lifeboat_sql::quote_ident(name)
                        )
                        .map_err(io)?;
                    }
                }
            }
            let conn = crate::source::sqlite::open_image(&image)
                .map_err(|e| Error::sqlite(Kind::Internal, "open the image", e))?;
            lifeboat_sql::dump::dump(&conn, lifeboat_sql::dump::Dialect::D1, &origin, &mut out)?;
            std::io::Write::flush(&mut out).map_err(io)?;
            Ok(())
        })
        .await
        .map_err(|e| Error::task("write the statements", e))??;
    }
    steps.push((
        "write the D1 import file".to_string(),
        t.elapsed().as_millis() as u64,
    ));

    let parts = import_parts(&file, target.max_import_file)?;
    let n = parts.len();
    if dry_run {
        return Ok(D1RestoreReport {
            backup: m.id.clone(),
            database: db,
            remote,
            safety_backup: None,
            dry_run: true,
            would_drop: existing.len(),
            import_parts: n,
            tables: 0,
            manifest_tables: m.tables.len(),
            rows: m.total_rows(),
            steps,
            fetch_ms: 0,
        });
    }
    for (k, part) in parts.into_iter().enumerate() {
        let t = std::time::Instant::now();
        if let Err(e) = target.execute_file(&part).await {
            let state = match (n, k) {
                (1, _) => "the import is atomic: the target is as it was".to_string(),
                (_, 0) => format!("part 1 of {n} is atomic: the target is as it was"),
                _ => format!(
                    "parts 1-{k} of {n} were applied, so the target is partly restored{}",
                    safety_backup
                        .as_ref()
                        .map(|id| format!("; its safety backup is {id}"))
                        .unwrap_or_default()
                ),
            };
            return Err(e.context(format!("import ({state})")));
        }
        let label = if n == 1 {
            "wrangler d1 execute --file".to_string()
        } else {
            format!("wrangler d1 execute --file (part {} of {n})", k + 1)
        };
        steps.push((label, t.elapsed().as_millis() as u64));
    }

    // Verify: the same tables, the same row counts.
    let t = std::time::Instant::now();
    let expected: Vec<(&String, &u64)> = m
        .tables
        .iter()
        .filter(|(name, _)| !name.starts_with("sqlite_") && !name.starts_with("_cf_"))
        .collect();
    let queries = expected
        .iter()
        .map(|(name, _)| ((*name).clone(), lifeboat_sql::quote_ident(name)))
        .collect();
    let counted = target.count_rows(queries).await?;
    let after = target.user_objects().await?;
    let tables = after.iter().filter(|(t, _)| t == "table").count();
    steps.push((
        "verify row counts".to_string(),
        t.elapsed().as_millis() as u64,
    ));
    for (name, n) in &expected {
        if counted.get(*name) != Some(n) {
            let got = counted
                .get(*name)
                .map_or("no".to_string(), |g| g.to_string());
            return Err(Error::new(
                Kind::Corrupt,
                format!(
                    "restored D1 database {db}: table {name} has {got} rows, the backup has {n}"
                ),
            ));
        }
    }
    if tables != expected.len() {
        return Err(Error::new(
            Kind::Corrupt,
            format!(
                "restored D1 database {db} has {tables} tables, the backup has {}",
                expected.len()
            ),
        ));
    }
    Ok(D1RestoreReport {
        backup: m.id.clone(),
        database: db,
        remote,
        safety_backup,
        dry_run: false,
        would_drop: existing.len(),
        import_parts: n,
        tables,
        manifest_tables: expected.len(),
        rows: expected.iter().map(|(_, n)| **n).sum(),
        steps,
        fetch_ms: 0,
    })
}

/// Take a safety backup of a D1 target into the repository, under its backup name.
pub(crate) async fn safety_backup(
    repo: &Repository,
    target: &D1Target,
    label: String,
    opts: &BackupOptions,
) -> Result<String> {
    let config = D1Config {
        database: target.database.clone(),
        remote: target.remote,
        config: target.wrangler.config.clone(),
    };
    let safety = BackupOptions {
        kind: crate::repo::manifest::BackupKind::Safety,
        label: Some(label),
        ..opts.clone()
    };
    let db = Source {
        name: target.backup_name.clone(),
        ..Source::default()
    };
    let m = backup_d1_with(
        repo,
        &db,
        &config,
        target.wrangler.clone(),
        &safety,
        &Progress::hidden(),
    )
    .await?;
    Ok(m.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_statement_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.sql");
        let sql = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (\n  a TEXT, -- a comment; with a semicolon\n  b TEXT\n);\nINSERT INTO t VALUES('x;\ny','z');\nINSERT INTO t VALUES('2','3');\n-- lifeboat dump complete: 4 statements\n";
        std::fs::write(&f, sql).unwrap();
        let parts = import_parts(&f, 110).unwrap();
        assert!(parts.len() >= 2, "{parts:?}");
        let mut all = String::new();
        for p in &parts {
            let text = std::fs::read_to_string(p).unwrap();
            assert!(text.starts_with("PRAGMA defer_foreign_keys=TRUE;\n"));
            assert!(text.len() <= 110, "{text:?}");
            all.push_str(&text);
        }
        assert!(all
            .contains("CREATE TABLE t (\n  a TEXT, -- a comment; with a semicolon\n  b TEXT\n);"));
        assert!(all.contains("INSERT INTO t VALUES('x;\ny','z');"));
        assert!(import_parts(&f, 20).is_err());
    }
}
