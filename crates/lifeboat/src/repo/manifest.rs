//! The backup manifest: the versioned JSON document that describes one backup and, written last,
//! is its commit point. The format is documented in `docs/format.md`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};

/// Bumped on any incompatible change; readers refuse versions they do not know.
pub const FORMAT_VERSION: u32 = 1;

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

/// Why a backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    Scheduled,
    Manual,
    /// Taken on purpose before something risky (a migration).
    Emergency,
    /// Taken by a restore of the state it is about to replace, so the restore can be undone.
    /// It holds the damage the restore repairs: `latest` and `--at` never pick it.
    Safety,
}

impl BackupKind {
    /// The kinds a user may give `backup --kind`, each with what it means where that is not
    /// plain (a safety backup is only ever a restore's).
    pub const CHOICES: &'static [(&'static str, &'static str)] = &[
        ("scheduled", ""),
        ("manual", ""),
        (
            "emergency",
            "Taken on purpose before something risky (a migration)",
        ),
    ];

    /// Whether `latest` and `--at` may pick a backup of this kind.
    pub fn selectable(self) -> bool {
        self != BackupKind::Safety
    }
}

impl std::fmt::Display for BackupKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackupKind::Scheduled => "scheduled",
            BackupKind::Manual => "manual",
            BackupKind::Emergency => "emergency",
            BackupKind::Safety => "safety",
        })
    }
}

impl std::str::FromStr for BackupKind {
    type Err = String;

    /// A kind a user may ask for: `safety` is refused, as it is never a user's backup.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "scheduled" => Ok(BackupKind::Scheduled),
            "manual" => Ok(BackupKind::Manual),
            "emergency" => Ok(BackupKind::Emergency),
            _ => Err(format!(
                "unknown kind {s:?} (scheduled, manual or emergency)"
            )),
        }
    }
}

/// Where the backup came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `sqlite` for a database file.
    pub kind: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub id: String,
    pub database: String,
    pub kind: BackupKind,
    pub created_at: DateTime<Utc>,
    pub source: SourceInfo,
    pub sqlite_version: String,
    pub page_size: u64,
    pub page_count: u64,
    /// Size of the SQLite image in bytes (page_size × page_count).
    pub image_size: u64,
    /// Size of the stored (compressed) object in bytes.
    pub stored_size: u64,
    /// `zstd`.
    pub compression: String,
    /// File name of the data object, next to this manifest.
    pub data_object: String,
    pub stored_sha256: String,
    pub image_sha256: String,
    /// Rows per table (every table of `sqlite_schema` except virtual tables).
    pub tables: BTreeMap<String, u64>,
    /// sha256 over the schema (type, name, table and SQL of every `sqlite_schema` row).
    pub schema_sha256: String,
    pub duration_ms: u64,
    pub lifeboat_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// File name (next to this manifest) of the D1-dialect dump written with `sql_mirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_mirror: Option<String>,
    /// Set when the backup holds only this tenant's rows (the safety backup a tenant restore
    /// takes): it can only be restored with `restore --tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// For a D1 source: the database, wrangler's version and the Time Travel bookmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d1: Option<D1Info>,
    /// For a SQLite file: how the file looked just before the backup read it (a scheduled run
    /// skips a database whose file still looks the same; `backup::unchanged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
}

/// How a SQLite database file looks from outside, without opening SQLite: its size, times and
/// inode, the header fields that change with its content, and its WAL's state. Equal
/// fingerprints mean the file has not been written since (see `backup::unchanged`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    /// Modification and status-change times, in nanoseconds since the epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// A file replaced by another (a restore, a copy) has another inode.
    pub inode: u64,
    /// Header offset 24: bumped by every transaction in rollback-journal mode.
    pub change_counter: u32,
    /// Header offset 28: the database's size in pages.
    pub header_pages: u32,
    /// Header offset 40: bumped by every schema change.
    pub schema_cookie: u32,
    /// The `-wal` file, when it holds any frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalFingerprint>,
}

/// A WAL file's state: in WAL mode commits go here and leave the main file alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalFingerprint {
    pub size: u64,
    pub mtime_ns: i64,
    /// WAL header offsets 12, 16, 20: a restarted WAL has a new salt.
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    /// The current generation's frames (those with the header's salts; the rest are left over
    /// from before a restart).
    pub frames: u64,
    /// The last of those frames' cumulative checksum: it covers every frame before it, so any
    /// commit changes it, even one that leaves the file's size alone.
    pub checksum: [u32; 2],
}

/// A backup dated this far ahead of the clock does not count as good (clock skew).
pub const FUTURE_SLACK: chrono::Duration = chrono::Duration::minutes(1);

impl Manifest {
    /// Whether this is a good backup at `now`, as status and skipping see it: one `latest`
    /// could pick (not a restore's safety backup, not one tenant's rows), not dated in the future.
    pub fn good_at(&self, now: DateTime<Utc>) -> bool {
        self.kind.selectable() && self.tenant.is_none() && self.created_at <= now + FUTURE_SLACK
    }

    pub fn total_rows(&self) -> u64 {
        self.tables.values().sum()
    }

    /// Compression ratio as image size over stored size.
    pub fn ratio(&self) -> f64 {
        if self.stored_size == 0 {
            return 0.0;
        }
        self.image_size as f64 / self.stored_size as f64
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| Error::new(Kind::Corrupt, format!("manifest is not valid JSON: {e}")))?;
        if v.format_version != FORMAT_VERSION {
            return Err(Error::new(
                Kind::Corrupt,
                format!(
                    "manifest format version {} is not supported (this lifeboat reads {FORMAT_VERSION})",
                    v.format_version
                ),
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Error::new(Kind::Corrupt, format!("manifest is malformed: {e}")))
    }
}

/// Human-readable byte size, e.g. `48.2 MB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_unknown_versions() {
        let e = Manifest::from_json(br#"{"format_version": 99}"#).unwrap_err();
        assert!(e.to_string().contains("version 99"), "{e}");
        assert!(Manifest::from_json(b"{").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(48_200_000), "48.2 MB");
    }
}
