//! A D1 database as a source: `wrangler d1 export` of it, checked to be an export, loaded into a
//! checked SQLite image (the proof that the export is whole), and what the manifest records of
//! it (wrangler's version, the Time Travel bookmark of a remote database).

use std::path::{Path, PathBuf};

use crate::d1::{D1Config, D1Info, Wrangler};
use crate::error::{Error, Kind, Result};
use crate::source::sql_dump::{load, open_dump, ImportOptions};
use crate::source::sqlite::IntegrityCheck;

/// A D1 database exported and loaded: the export (SQL) and the image made of it, in `dir`.
pub struct Exported {
    pub export: PathBuf,
    pub image: PathBuf,
    pub info: D1Info,
}

/// Export `d` through `w` into `dir` and load it into a checked image. Blocking: wrangler runs
/// as a child process.
pub fn export_image(w: &Wrangler, d: &D1Config, dir: &Path) -> Result<Exported> {
    let export = dir.join("export.sql");
    let image = dir.join("d1.sqlite");
    let wrangler_version = w.version()?;
    w.run(&w.export_args(&d.database, d.remote, &export))?;
    check_export(&export)?;
    let reader = open_dump(&export)?;
    // A backup never refuses data: dangling references are stored as they are.
    let opts = ImportOptions {
        force: false,
        integrity: IntegrityCheck::Quick,
        foreign_key_check: false,
    };
    load(reader, &image, &opts).map_err(|err| err.context("load the export"))?;
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
    let info = D1Info {
        database: d.database.clone(),
        remote: d.remote,
        wrangler_version,
        time_travel_bookmark,
        time_travel_note,
    };
    Ok(Exported {
        export,
        image,
        info,
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
