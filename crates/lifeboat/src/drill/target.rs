//! A drill's work on its target: download the backup, restore it (into a file in scratch
//! space, a file, or a D1 database), check it, run the data checks read-only, and clean up.

use std::path::{Path, PathBuf};

use crate::backup::pipeline::BackupOptions;
use crate::drill::check::{judge, DataCheck, Value};
use crate::drill::{CheckResult, DrillOptions, Target, TargetRecord};
use crate::error::{Error, Kind, Result};
use crate::fs::atomic_replace::{FileId, Placement};
use crate::progress::Progress;
use crate::repo::{Manifest, Repository};
use crate::restore::to_file::{check_image, fetch, FetchOptions, IntegrityCheck};

/// What a drill holds while it works.
pub(super) struct Work<'a> {
    opts: &'a DrillOptions,
    /// Scratch space: the image (D1) or the restored file (scratch target).
    scratch: Option<tempfile::TempDir>,
    /// A file target being written.
    placement: Option<Placement>,
    /// The restored SQLite file (file targets), or the checked image (D1).
    file: Option<PathBuf>,
    replaced: Option<String>,
}

fn task(step: &str) -> impl Fn(tokio::task::JoinError) -> Error + '_ {
    move |e| Error::task(step, e)
}

impl<'a> Work<'a> {
    pub(super) fn new(opts: &'a DrillOptions) -> Work<'a> {
        Work {
            opts,
            scratch: None,
            placement: None,
            file: None,
            replaced: None,
        }
    }

    fn scratch_dir(&mut self) -> Result<PathBuf> {
        if self.scratch.is_none() {
            self.scratch = Some(crate::fs::scratch::scratch(
                self.opts.scratch_dir.as_deref(),
            )?);
        }
        Ok(self
            .scratch
            .as_ref()
            .expect("made above")
            .path()
            .to_path_buf())
    }

    /// Step 2: the stored object, its sha256 checked as it arrives, decompressed next to
    /// where it goes (a file target's own temp file, locked against other writers).
    pub(super) async fn download(&mut self, repo: &Repository, m: &Manifest) -> Result<String> {
        crate::restore::to_file::refuse_tenant_scoped(m)?;
        let (dest, opts) = match &self.opts.target {
            Target::Scratch => {
                let dir = self.scratch_dir()?;
                let p = Placement::prepare(&dir.join("restored.sqlite"), false, "drill")?;
                let tmp = p.tmp().to_path_buf();
                self.placement = Some(p);
                (tmp, FetchOptions::SCRATCH)
            }
            Target::File(path) => {
                let p = Placement::prepare(path, self.opts.force, "drill")?;
                let tmp = p.tmp().to_path_buf();
                self.placement = Some(p);
                (tmp, FetchOptions::DURABLE)
            }
            Target::D1(_) => (
                self.scratch_dir()?.join("image.sqlite"),
                FetchOptions::SCRATCH,
            ),
        };
        fetch(repo, m, &dest, opts, &Progress::hidden()).await?;
        self.file = Some(dest);
        Ok(format!(
            "{} stored bytes, sha256 checked; {} bytes decompressed",
            m.stored_size, m.image_size
        ))
    }

    /// Step 3: `quick_check`, row counts and schema of the image, then into the target: a
    /// rename that replaces nothing (a file moved aside with `--force`), or a D1 import.
    pub(super) async fn restore(&mut self, repo: &Repository, m: &Manifest) -> Result<String> {
        let image = self
            .file
            .clone()
            .ok_or_else(|| Error::new(Kind::Internal, "no image"))?;
        let (img, man) = (image.clone(), m.clone());
        tokio::task::spawn_blocking(move || check_image(&img, &man, IntegrityCheck::Quick))
            .await
            .map_err(task("check the image"))??;
        match &self.opts.target {
            Target::D1(t) => {
                let r = crate::restore::to_d1::restore_d1(
                    repo,
                    m,
                    &image,
                    t,
                    self.opts.force,
                    false,
                    &BackupOptions::default(),
                )
                .await?;
                self.replaced = r.safety_backup.clone();
                let place = if t.remote { "remote" } else { "local" };
                Ok(format!(
                    "imported into D1 database {} ({place}): {} tables, {} rows, counts match{}",
                    t.database,
                    r.tables,
                    r.rows,
                    r.safety_backup
                        .map(|s| format!("; safety backup of what it held: {s}"))
                        .unwrap_or_default()
                ))
            }
            Target::Scratch | Target::File(_) => {
                let placement = self
                    .placement
                    .take()
                    .ok_or_else(|| Error::new(Kind::Internal, "the target was not prepared"))?;
                let target = placement.target().path.clone();
                let checked = FileId::of(&image);
                let aside = placement.commit(checked)?;
                self.replaced = aside.as_ref().map(|a| a.display().to_string());
                self.file = Some(target.clone());
                Ok(match aside {
                    Some(a) => format!(
                        "restored to {} (the old file moved aside to {})",
                        target.display(),
                        a.display()
                    ),
                    None => format!("restored to {}", target.display()),
                })
            }
        }
    }

    /// Step 4: `integrity_check` (D1: `quick_check`, all D1 allows), `foreign_key_check`,
    /// and the row counts and schema hash against the manifest.
    pub(super) async fn integrity(&mut self, m: &Manifest) -> Result<String> {
        match &self.opts.target {
            Target::D1(t) => {
                let quick = t.query("quick_check", "PRAGMA quick_check").await?;
                let said = quick
                    .first()
                    .and_then(|r| r.as_object())
                    .and_then(|o| o.values().next())
                    .and_then(|v| v.as_str())
                    .unwrap_or("no answer")
                    .to_string();
                if said != "ok" {
                    return Err(Error::new(
                        Kind::Corrupt,
                        format!("D1 database {}: quick_check: {said}", t.database),
                    ));
                }
                let fk = t
                    .query("foreign_key_check", "PRAGMA foreign_key_check")
                    .await?;
                fk_verdict(fk.len(), fk.first().map(|r| r.to_string()))?;
                let expected: Vec<(&String, &u64)> = m
                    .tables
                    .iter()
                    .filter(|(n, _)| !n.starts_with("sqlite_") && !n.starts_with("_cf_"))
                    .collect();
                let queries = expected
                    .iter()
                    .map(|(n, _)| ((*n).clone(), lifeboat_sql::quote_ident(n)))
                    .collect();
                let counted = t.count_rows(queries).await?;
                for (name, n) in &expected {
                    if counted.get(*name) != Some(n) {
                        return Err(Error::new(
                            Kind::Corrupt,
                            format!(
                                "D1 database {}: table {name} has {} rows, the backup has {n}",
                                t.database,
                                counted.get(*name).map_or("no".into(), |c| c.to_string())
                            ),
                        ));
                    }
                }
                Ok(format!(
                    "quick_check ok, foreign_key_check ok, {} tables' row counts match; schema hash checked on the image",
                    expected.len()
                ))
            }
            Target::Scratch | Target::File(_) => {
                let file = self
                    .file
                    .clone()
                    .ok_or_else(|| Error::new(Kind::Internal, "no file"))?;
                let man = m.clone();
                tokio::task::spawn_blocking(move || -> Result<String> {
                    check_image(&file, &man, IntegrityCheck::Full)?;
                    let conn = open_read_only(&file)?;
                    let mut stmt = conn
                        .prepare("PRAGMA foreign_key_check")
                        .map_err(|e| Error::sqlite(Kind::Internal, "foreign_key_check", e))?;
                    let mut rows = stmt
                        .query([])
                        .map_err(|e| Error::sqlite(Kind::Internal, "foreign_key_check", e))?;
                    let mut n = 0usize;
                    let mut first = None;
                    while let Some(r) = rows
                        .next()
                        .map_err(|e| Error::sqlite(Kind::Internal, "foreign_key_check", e))?
                    {
                        if first.is_none() {
                            let table: String = r.get(0).unwrap_or_default();
                            let parent: String = r.get(2).unwrap_or_default();
                            first = Some(format!("a row of {table} references a missing row of {parent}"));
                        }
                        n += 1;
                    }
                    fk_verdict(n, first)?;
                    Ok(format!(
                        "integrity_check ok, foreign_key_check ok, {} tables and {} rows match the manifest, schema hash matches",
                        man.tables.len(),
                        man.total_rows()
                    ))
                })
                .await
                .map_err(task("integrity"))?
            }
        }
    }

    /// Step 5: every data check, read-only. The SQL is first prepared on a read-only copy
    /// (the restored file, or for D1 the checked image): a statement that would write is
    /// refused there, before it reaches D1.
    pub(super) async fn data_checks(&self, m: &Manifest, checks: &[DataCheck]) -> Vec<CheckResult> {
        let mut out = Vec::new();
        for c in checks {
            let got = self.value_of(&c.sql).await;
            let (value, verdict) = match got {
                Ok(v) => (
                    v.as_ref().map(Value::shown),
                    judge(&c.expect, v.as_ref(), m.created_at),
                ),
                Err(e) => (None, Err(e)),
            };
            out.push(CheckResult {
                name: c.name.clone(),
                sql: c.sql.clone(),
                expect: c.expect.to_string(),
                ok: verdict.is_ok(),
                value,
                reason: verdict.err().map(|r| crate::text::escape(&r).into_owned()),
            });
        }
        out
    }

    /// The first column of the first row `sql` returns (None: no row); Err: why not.
    async fn value_of(&self, sql: &str) -> std::result::Result<Option<Value>, String> {
        let file = self.file.clone().ok_or("the restore did not finish")?;
        let local = sql.to_string();
        let d1 = matches!(self.opts.target, Target::D1(_));
        let (column, value) = tokio::task::spawn_blocking(move || local_value(&file, &local, !d1))
            .await
            .map_err(|e| format!("check task: {e}"))??;
        let Target::D1(t) = &self.opts.target else {
            return Ok(value);
        };
        let rows = t
            .query("data check", sql)
            .await
            .map_err(|e| e.to_string())?;
        let Some(row) = rows.first().and_then(|r| r.as_object()) else {
            return Ok(None);
        };
        let v = match row.len() {
            1 => row.values().next(),
            _ => row.get(&column),
        };
        Ok(Some(v.map(Value::from_json).unwrap_or(Value::Null)))
    }

    /// Clean up: scratch space removed; a file or D1 target is left as restored.
    pub(super) fn clean_up(&mut self) -> Result<String> {
        drop(self.placement.take());
        let removed = match self.scratch.take() {
            Some(dir) => {
                let path = dir.path().display().to_string();
                dir.close()
                    .map_err(|e| Error::io(format!("remove scratch space {path}"), e))?;
                Some(path)
            }
            None => None,
        };
        let kept = match &self.opts.target {
            Target::Scratch => None,
            Target::File(p) => Some(format!("{} left in place", p.display())),
            Target::D1(t) => Some(format!("D1 database {} left as restored", t.database)),
        };
        Ok(match (removed, kept) {
            (Some(r), Some(k)) => format!("scratch space {r} removed; {k}"),
            (Some(r), None) => format!("scratch space {r} removed"),
            (None, Some(k)) => k,
            (None, None) => "nothing to remove".into(),
        })
    }

    pub(super) fn record(&self) -> TargetRecord {
        let (kind, name, remote, left) = match &self.opts.target {
            Target::Scratch => ("scratch", "scratch space".to_string(), None, false),
            Target::File(p) => ("file", p.display().to_string(), None, true),
            Target::D1(t) => ("d1", t.database.clone(), Some(t.remote), true),
        };
        TargetRecord {
            kind: kind.into(),
            name,
            remote,
            left_in_place: left,
            replaced: self.replaced.clone(),
        }
    }
}

fn fk_verdict(n: usize, first: Option<String>) -> Result<()> {
    match n {
        0 => Ok(()),
        n => Err(Error::new(
            Kind::Corrupt,
            format!(
                "foreign_key_check: {n} dangling reference(s), e.g. {}",
                first.unwrap_or_default()
            ),
        )),
    }
}

fn open_read_only(path: &Path) -> Result<rusqlite::Connection> {
    rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::sqlite(Kind::Internal, format!("open {}", path.display()), e))
}

/// Prepare `sql` on a read-only connection to `file` (refusing a statement that writes) and,
/// when `run`, return its first column's name and its first row's first value.
fn local_value(
    file: &Path,
    sql: &str,
    run: bool,
) -> std::result::Result<(String, Option<Value>), String> {
    let conn = open_read_only(file).map_err(|e| e.to_string())?;
    let mut stmt = conn.prepare(sql).map_err(|e| format!("SQL error: {e}"))?;
    if !stmt.readonly() {
        return Err("the SQL would write: a data check only reads".into());
    }
    if stmt.column_count() == 0 {
        return Err("the SQL returns no column".into());
    }
    let column = stmt.column_name(0).map(str::to_string).unwrap_or_default();
    if !run {
        return Ok((column, None));
    }
    let mut rows = stmt.query([]).map_err(|e| format!("SQL error: {e}"))?;
    let Some(row) = rows.next().map_err(|e| format!("SQL error: {e}"))? else {
        return Ok((column, None));
    };
    use rusqlite::types::ValueRef;
    let v = match row.get_ref(0).map_err(|e| format!("SQL error: {e}"))? {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.len()),
    };
    Ok((column, Some(v)))
}
