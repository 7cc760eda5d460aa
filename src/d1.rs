//! Cloudflare D1 through wrangler: the same commands operators already run (`wrangler d1 export`,
//! `wrangler d1 execute`, `wrangler d1 time-travel info`), so `--remote` works in production and
//! `--local` in tests. A D1 backup exports the database, loads the export with lifeboat's importer
//! (proving it loads, at the moment it is taken) and stores the image like any SQLite backup.

use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::config::Database;
use crate::error::{Error, Kind, Result};
use crate::import::{load, open_dump, ImportOptions};
use crate::manifest::{Manifest, SourceInfo};
use crate::repository::Repository;
use crate::restore::IntegrityCheck;
use crate::snapshot::{backup, scratch, BackupOptions};

/// A D1 database as configured: `d1 = { database = "…", remote = true, config = "wrangler.toml" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct D1Config {
    /// The database name (or binding) as wrangler knows it.
    pub database: String,
    /// `--remote` (production) rather than `--local`.
    #[serde(default)]
    pub remote: bool,
    /// The wrangler configuration file (`-c`).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// What a D1 backup's manifest records about its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct D1Info {
    pub database: String,
    pub remote: bool,
    pub wrangler_version: String,
    /// The Time Travel bookmark current at export time (remote databases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_travel_bookmark: Option<String>,
    /// Why there is no bookmark, when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_travel_note: Option<String>,
}

/// How to run wrangler for one database.
#[derive(Debug, Clone)]
pub struct Wrangler {
    /// The command and its leading arguments, e.g. `["npx", "--no-install", "wrangler"]`.
    program: Vec<String>,
    pub config: Option<PathBuf>,
}

impl Wrangler {
    /// `custom` is the `wrangler = "…"` setting; otherwise `$LIFEBOAT_WRANGLER`, then `wrangler`
    /// on PATH, else npx (which must not download anything: `--no-install`).
    pub fn new(custom: Option<&str>, config: Option<PathBuf>) -> Wrangler {
        let from_env = std::env::var("LIFEBOAT_WRANGLER")
            .ok()
            .filter(|v| !v.is_empty());
        let program = match custom.or(from_env.as_deref()) {
            Some(c) => c.split_whitespace().map(str::to_string).collect(),
            None if on_path("wrangler") => vec!["wrangler".to_string()],
            None => ["npx", "--no-install", "wrangler"]
                .map(str::to_string)
                .to_vec(),
        };
        Wrangler { program, config }
    }

    fn with_config(&self, mut args: Vec<String>) -> Vec<String> {
        if let Some(c) = &self.config {
            args.push("-c".into());
            args.push(c.display().to_string());
        }
        args
    }

    fn location(remote: bool) -> String {
        if remote { "--remote" } else { "--local" }.to_string()
    }

    /// `d1 export <db> --remote|--local --output <file> [-c config]`
    pub fn export_args(&self, db: &str, remote: bool, out: &Path) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "export".into(),
            db.into(),
            Self::location(remote),
            "--output".into(),
            out.display().to_string(),
        ];
        self.with_config(args)
    }

    /// `d1 execute <db> --remote|--local --file <file> --yes [-c config]`
    pub fn execute_file_args(&self, db: &str, remote: bool, file: &Path) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "execute".into(),
            db.into(),
            Self::location(remote),
            "--file".into(),
            file.display().to_string(),
            "--yes".into(),
        ];
        self.with_config(args)
    }

    /// `d1 execute <db> --remote|--local --command <sql> --json [-c config]`
    pub fn query_args(&self, db: &str, remote: bool, sql: &str) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "execute".into(),
            db.into(),
            Self::location(remote),
            "--command".into(),
            sql.into(),
            "--json".into(),
        ];
        self.with_config(args)
    }

    /// `d1 time-travel info <db> --json [-c config]`
    pub fn time_travel_args(&self, db: &str) -> Vec<String> {
        let args = ["d1", "time-travel", "info", db, "--json"]
            .map(str::to_string)
            .to_vec();
        self.with_config(args)
    }

    /// The full command line, for messages and tests.
    pub fn command_line(&self, args: &[String]) -> String {
        self.program
            .iter()
            .chain(args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run wrangler; a non-zero exit becomes an error quoting wrangler's own message.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let what = format!(
            "wrangler {}",
            args.iter().take(3).cloned().collect::<Vec<_>>().join(" ")
        );
        let out = Command::new(&self.program[0])
            .args(&self.program[1..])
            .args(args)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("NO_COLOR", "1")
            .env("CI", "true") // never prompt
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::new(
                    Kind::Config,
                    format!("{} not found: install wrangler (npm i -g wrangler) or set `wrangler = \"…\"` for this database", self.program[0]),
                ),
                _ => Error::new(Kind::Database, format!("{what}: cannot run {}: {e}", self.program[0])),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(Error::new(
                Kind::Database,
                format!("{what} failed: {}", wrangler_message(&stderr, &stdout)),
            ));
        }
        Ok(stdout)
    }

    /// wrangler's version, e.g. `4.86.0`.
    pub fn version(&self) -> Result<String> {
        let out = self.run(&["--version".to_string()])?;
        Ok(out
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("unknown")
            .trim_start_matches("⛅️ wrangler ")
            .to_string())
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The line of wrangler's output that says what went wrong, without colours or decoration.
pub fn wrangler_message(stderr: &str, stdout: &str) -> String {
    let clean = |s: &str| -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip an ANSI escape sequence: ESC [ … letter
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let text = format!("{}\n{}", clean(stderr), clean(stdout));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines
        .iter()
        .find(|l| {
            l.contains("[ERROR]")
                || l.starts_with('✘')
                || l.to_ascii_lowercase().starts_with("error")
        })
        .or_else(|| lines.iter().rfind(|l| !l.starts_with("🪵")))
        .copied()
        .unwrap_or("no output");
    error
        .trim_start_matches('✘')
        .trim()
        .trim_start_matches("[ERROR]")
        .trim()
        .to_string()
}

/// Back up a D1 database: export, load (the proof that the export is whole), store.
pub async fn backup_d1(
    repo: &Repository,
    db: &Database,
    d1: &D1Config,
    wrangler_cmd: Option<&str>,
    opts: &BackupOptions,
    progress: &ProgressBar,
) -> Result<Manifest> {
    let wrangler = Wrangler::new(wrangler_cmd, d1.config.clone());
    backup_d1_with(repo, db, d1, wrangler, opts, progress).await
}

async fn backup_d1_with(
    repo: &Repository,
    db: &Database,
    d1: &D1Config,
    wrangler: Wrangler,
    opts: &BackupOptions,
    progress: &ProgressBar,
) -> Result<Manifest> {
    let tmp = scratch(opts.scratch_dir.as_deref())?;
    let export = tmp.path().join("export.sql");
    let image = tmp.path().join("d1.sqlite");
    let (w, d, e, i) = (wrangler.clone(), d1.clone(), export.clone(), image.clone());
    let info = tokio::task::spawn_blocking(move || -> Result<D1Info> {
        let wrangler_version = w.version()?;
        w.run(&w.export_args(&d.database, d.remote, &e))?;
        check_export(&e)?;
        let reader = open_dump(&e)?;
        // A backup never refuses data: dangling references are stored as they are.
        let opts = ImportOptions {
            force: false,
            integrity: IntegrityCheck::Quick,
            foreign_key_check: false,
        };
        load(reader, &i, &opts).map_err(|err| err.context("load the export"))?;
        let (time_travel_bookmark, time_travel_note) = if d.remote {
            match w
                .run(&w.time_travel_args(&d.database))
                .and_then(|out| bookmark(&out))
            {
                Ok(b) => (Some(b), None),
                Err(e) => (
                    None,
                    Some(format!("Time Travel bookmark not available: {e}")),
                ),
            }
        } else {
            (None, Some("local database: no Time Travel".to_string()))
        };
        Ok(D1Info {
            database: d.database.clone(),
            remote: d.remote,
            wrangler_version,
            time_travel_bookmark,
            time_travel_note,
        })
    })
    .await
    .map_err(crate::cli::internal)?
    .map_err(|e| e.context(format!("backup {}: d1 {}", db.name, d1.database)))?;

    let mut opts = opts.clone();
    opts.source = Some(SourceInfo {
        kind: "d1".into(),
        path: format!(
            "{} ({})",
            d1.database,
            if d1.remote { "remote" } else { "local" }
        ),
    });
    opts.d1 = Some(info);
    opts.mirror_file = db.sql_mirror.then(|| export.clone());
    let image_db = Database {
        name: db.name.clone(),
        path: image,
        sql_mirror: db.sql_mirror,
        d1: None,
        wrangler: None,
    };
    backup(repo, &image_db, &opts, progress).await
}

/// Where a restore into D1 goes.
#[derive(Debug, Clone)]
pub struct D1Target {
    pub database: String,
    pub remote: bool,
    pub wrangler: Wrangler,
    /// The repository name for the target's emergency backup.
    pub backup_name: String,
    /// Import files above this size are split into parts applied in order (D1 takes up to
    /// 5 GB per file); each part is atomic, the whole no longer is.
    pub max_import_file: u64,
}

/// D1's limit on one import file.
pub const D1_MAX_IMPORT_FILE: u64 = 5_000_000_000;

/// Split a D1-dialect file into parts of at most `max` bytes at statement boundaries (schema
/// statements can span lines), each part starting with `PRAGMA defer_foreign_keys=TRUE;`.
/// Returns the part files, in order.
fn split_import(file: &Path, max: u64) -> Result<Vec<PathBuf>> {
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
    let mut splitter = crate::sqltext::Splitter::new(reader);
    let mut parts: Vec<PathBuf> = Vec::new();
    let mut out: Option<(std::io::BufWriter<std::fs::File>, u64)> = None;
    loop {
        let st = match splitter.next_statement() {
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
    /// The emergency backup of the target taken before replacing it (`--force`).
    pub safety_backup: Option<String>,
    pub tables: usize,
    pub manifest_tables: usize,
    pub rows: u64,
    /// (step, milliseconds)
    pub steps: Vec<(String, u64)>,
}

impl Wrangler {
    /// Run a query and return the rows of its (single) result set.
    pub fn query(&self, db: &str, remote: bool, sql: &str) -> Result<Vec<serde_json::Value>> {
        let out = self.run(&self.query_args(db, remote, sql))?;
        let start = out
            .find('[')
            .ok_or_else(|| Error::new(Kind::Database, "no JSON in wrangler's output"))?;
        let v: serde_json::Value = serde_json::from_str(&out[start..])
            .map_err(|e| Error::new(Kind::Database, format!("wrangler's JSON: {e}")))?;
        Ok(v.get(0)
            .and_then(|r| r.get("results"))
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default())
    }
}

/// The user's tables, views and triggers in a D1 database (D1's own `_cf_*` and SQLite's
/// `sqlite_*` objects excluded), as (type, name).
fn user_objects(w: &Wrangler, db: &str, remote: bool) -> Result<Vec<(String, String)>> {
    let rows = w.query(
        db,
        remote,
        "SELECT type, name FROM sqlite_schema WHERE type IN ('table','view','trigger') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'",
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                r.get("type")?.as_str()?.to_string(),
                r.get("name")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// Restore the image at `image` (already checked against `m`) into a D1 database: refuse a
/// non-empty target unless `force`, in which case take an emergency backup of it first and put
/// the DROPs at the top of the import file, so dropping and importing are one atomic
/// `wrangler d1 execute --file`. Then compare per-table row counts with the manifest.
pub async fn restore_d1(
    repo: &Repository,
    m: &Manifest,
    image: &Path,
    target: &D1Target,
    force: bool,
    opts: &BackupOptions,
) -> Result<D1RestoreReport> {
    let mut steps = Vec::new();
    let (w, db, remote) = (
        target.wrangler.clone(),
        target.database.clone(),
        target.remote,
    );
    let t = std::time::Instant::now();
    let existing = {
        let (w, db) = (w.clone(), db.clone());
        tokio::task::spawn_blocking(move || user_objects(&w, &db, remote))
            .await
            .map_err(crate::cli::internal)??
    };
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
    let safety_backup = if existing.is_empty() {
        None
    } else {
        let t = std::time::Instant::now();
        let config = D1Config {
            database: db.clone(),
            remote,
            config: w.config.clone(),
        };
        let mut safety = opts.clone();
        safety.kind = crate::manifest::BackupKind::Emergency;
        safety.label = Some(format!("before restoring {} into it", m.id));
        let target_db = Database {
            name: target.backup_name.clone(),
            path: PathBuf::new(),
            sql_mirror: false,
            d1: None,
            wrangler: None,
        };
        let sm = backup_d1_with(
            repo,
            &target_db,
            &config,
            w.clone(),
            &safety,
            &ProgressBar::hidden(),
        )
        .await
        .map_err(|e| e.context("emergency backup of the target"))?;
        steps.push((
            "emergency backup of the target".to_string(),
            t.elapsed().as_millis() as u64,
        ));
        Some(sm.id)
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
                            crate::source::quote_ident(name)
                        )
                        .map_err(io)?;
                    }
                }
            }
            let conn = crate::source::open_image(&image)
                .map_err(|e| Error::sqlite(Kind::Internal, "open the image", e))?;
            crate::dump::dump(&conn, crate::dump::Dialect::D1, &origin, &mut out)?;
            std::io::Write::flush(&mut out).map_err(io)?;
            Ok(())
        })
        .await
        .map_err(crate::cli::internal)??;
    }
    steps.push((
        "write the D1 import file".to_string(),
        t.elapsed().as_millis() as u64,
    ));

    let parts = split_import(&file, target.max_import_file)?;
    let n = parts.len();
    for (k, part) in parts.into_iter().enumerate() {
        let t = std::time::Instant::now();
        let (w, db2) = (w.clone(), db.clone());
        let done =
            tokio::task::spawn_blocking(move || w.run(&w.execute_file_args(&db2, remote, &part)))
                .await
                .map_err(crate::cli::internal)?;
        if let Err(e) = done {
            let state = match (n, k) {
                (1, _) => "the import is atomic: the target is as it was".to_string(),
                (_, 0) => format!("part 1 of {n} is atomic: the target is as it was"),
                _ => format!(
                    "parts 1-{k} of {n} were applied, so the target is partly restored{}",
                    safety_backup
                        .as_ref()
                        .map(|id| format!("; its emergency backup is {id}"))
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
    let mut counted = std::collections::BTreeMap::new();
    for chunk in expected.chunks(50) {
        let sql = chunk
            .iter()
            .map(|(name, _)| {
                let lit = name.replace('\'', "''");
                format!(
                    "SELECT '{lit}' AS t, count(*) AS n FROM {}",
                    crate::source::quote_ident(name)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let (w, db) = (w.clone(), db.clone());
        let rows = tokio::task::spawn_blocking(move || w.query(&db, remote, &sql))
            .await
            .map_err(crate::cli::internal)??;
        for r in rows {
            if let (Some(t), Some(n)) = (
                r.get("t").and_then(|v| v.as_str()),
                r.get("n").and_then(|v| v.as_u64()),
            ) {
                counted.insert(t.to_string(), n);
            }
        }
    }
    let after = {
        let (w, db) = (w.clone(), db.clone());
        tokio::task::spawn_blocking(move || user_objects(&w, &db, remote))
            .await
            .map_err(crate::cli::internal)??
    };
    let tables = after.iter().filter(|(t, _)| t == "table").count();
    steps.push((
        "verify row counts".to_string(),
        t.elapsed().as_millis() as u64,
    ));
    for (name, n) in &expected {
        if counted.get(*name) != Some(n) {
            return Err(Error::new(
                Kind::Corrupt,
                format!(
                    "restored D1 database {db}: table {name} has {:?} rows, the backup has {n}",
                    counted.get(*name)
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
        tables,
        manifest_tables: expected.len(),
        rows: expected.iter().map(|(_, n)| **n).sum(),
        steps,
    })
}

/// A D1 export always starts with `PRAGMA defer_foreign_keys=TRUE;`; an empty file or anything
/// else means the export did not happen.
fn check_export(path: &Path) -> Result<()> {
    let mut head = [0u8; 64];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path).map_err(|e| Error::io("read the export", e))?,
        &mut head,
    )
    .map_err(|e| Error::io("read the export", e))?;
    let text = String::from_utf8_lossy(&head[..n]);
    if n == 0 {
        return Err(Error::new(Kind::Database, "wrangler wrote an empty export"));
    }
    if !text
        .trim_start()
        .to_ascii_uppercase()
        .starts_with("PRAGMA DEFER_FOREIGN_KEYS")
    {
        return Err(Error::new(
            Kind::Database,
            format!(
                "the export does not look like a D1 export: {:?}",
                text.lines().next().unwrap_or("")
            ),
        ));
    }
    Ok(())
}

/// The bookmark out of `wrangler d1 time-travel info --json`.
fn bookmark(json: &str) -> Result<String> {
    let start = json
        .find('{')
        .ok_or_else(|| Error::new(Kind::Database, "no JSON in wrangler's output"))?;
    let v: serde_json::Value = serde_json::from_str(&json[start..])
        .map_err(|e| Error::new(Kind::Database, format!("wrangler's JSON: {e}")))?;
    v.get("bookmark")
        .and_then(|b| b.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::new(Kind::Database, "wrangler's answer has no bookmark"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Wrangler {
        Wrangler::new(
            Some("npx wrangler"),
            Some(PathBuf::from("packages/api/wrangler.toml")),
        )
    }

    #[test]
    fn remote_command_lines() {
        let w = w();
        assert_eq!(
            w.command_line(&w.export_args("studio-platform-db", true, Path::new("/tmp/x/export.sql"))),
            "npx wrangler d1 export studio-platform-db --remote --output /tmp/x/export.sql -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.execute_file_args("studio-platform-db", true, Path::new("r.sql"))),
            "npx wrangler d1 execute studio-platform-db --remote --file r.sql --yes -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.query_args("studio-platform-db", true, "SELECT 1")),
            "npx wrangler d1 execute studio-platform-db --remote --command SELECT 1 --json -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.time_travel_args("studio-platform-db")),
            "npx wrangler d1 time-travel info studio-platform-db --json -c packages/api/wrangler.toml"
        );
        let local = Wrangler::new(Some("/opt/wrangler"), None);
        assert_eq!(
            local.command_line(&local.export_args("db", false, Path::new("e.sql"))),
            "/opt/wrangler d1 export db --local --output e.sql"
        );
    }

    #[test]
    fn quotes_wranglers_error_line() {
        let stderr = "\u{1b}[31m✘ \u{1b}[41;31m[\u{1b}[41;97mERROR\u{1b}[41;31m]\u{1b}[0m \u{1b}[1mCouldn't find a D1 DB with the name or binding 'nope' in your wrangler.jsonc file.\u{1b}[0m\n\n🪵  Logs were written to \"/x.log\"\n";
        assert_eq!(
            wrangler_message(stderr, " ⛅️ wrangler 4.86.0\n"),
            "Couldn't find a D1 DB with the name or binding 'nope' in your wrangler.jsonc file."
        );
    }

    #[test]
    fn splits_at_statement_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.sql");
        let sql = "PRAGMA defer_foreign_keys=TRUE;\nCREATE TABLE t (\n  a TEXT, -- a comment; with a semicolon\n  b TEXT\n);\nINSERT INTO t VALUES('x;\ny','z');\nINSERT INTO t VALUES('2','3');\n-- lifeboat dump complete: 4 statements\n";
        std::fs::write(&f, sql).unwrap();
        let parts = split_import(&f, 110).unwrap();
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
        assert!(split_import(&f, 20).is_err());
    }

    #[test]
    fn parses_bookmarks() {
        let out = "some banner\n{\"bookmark\": \"00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683\", \"timestamp\": \"2026-11-25T02:00:00Z\"}";
        assert_eq!(
            bookmark(out).unwrap(),
            "00000085-0000024c-00004c6d-8e61117bf38d7adb71b934ebbf891683"
        );
        assert!(bookmark("not json").is_err());
    }
}
