//! Errors as values: every failure carries a kind (which decides the exit code) and a one-line
//! message that names the step that failed, as in `restore: download: backup-… is corrupt`.

use std::fmt;

/// What went wrong, coarsely: the CLI maps each kind to a documented exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A bug or an unexpected failure.
    Internal,
    /// Bad command line or configuration file.
    Config,
    /// The source database is missing, not SQLite, or locked past the timeout.
    Database,
    /// The repository cannot be reached, or refuses our credentials.
    Repository,
    /// The requested backup (or any backup at all) does not exist.
    NotFound,
    /// A stored backup fails its checksum, decompression or integrity checks.
    Corrupt,
    /// A restore target exists and `--force` was not given.
    TargetExists,
    /// No space left on a device we write to.
    DiskFull,
    /// The system refused access to a local file or directory (permissions, a read-only file
    /// system): the environment's doing, not a bug and not the backup's.
    Permission,
}

impl Kind {
    /// A short lowercase name, for JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::Config => "config",
            Kind::Database => "database",
            Kind::Repository => "repository",
            Kind::NotFound => "not_found",
            Kind::Corrupt => "corrupt",
            Kind::TargetExists => "target_exists",
            Kind::DiskFull => "disk_full",
            Kind::Permission => "permission",
        }
    }

    /// The process exit code for this kind (documented in the README).
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Internal => 1,
            Kind::Config => 2,
            Kind::Database => 3,
            Kind::Repository => 4,
            Kind::NotFound => 5,
            Kind::Corrupt => 6,
            Kind::TargetExists => 7,
            Kind::DiskFull => 8,
            Kind::Permission => 9,
        }
    }
}

impl serde::Serialize for Kind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A lifeboat error: a kind and a single-line message.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        // One line, always: multi-line messages from libraries are folded. Secrets never
        // reach a message (a URL's userinfo, the AWS secret variables).
        let message = crate::text::redact(&message.into()).replace(['\n', '\r'], " ");
        let message = crate::text::escape(&message).into_owned();
        Error { kind, message }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with the step that failed.
    pub fn context(mut self, step: impl fmt::Display) -> Self {
        self.message = crate::text::redact(&format!("{step}: {}", self.message)).into_owned();
        self
    }

    /// A background task of `step` that panicked or was cancelled: a bug, named by its step.
    pub fn task(step: impl fmt::Display, err: impl fmt::Display) -> Self {
        Error::new(Kind::Internal, format!("{step}: {err}"))
    }

    /// Classify an I/O error on a local file: ENOSPC becomes [`Kind::DiskFull`], permission
    /// denied and a read-only file system [`Kind::Permission`], anything else `Internal`.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        if is_disk_full(&err) {
            return Error::new(Kind::DiskFull, format!("{what}: no space left on device"));
        }
        if is_refused(&err) {
            return Error::new(Kind::Permission, format!("{what}: {err}"));
        }
        Error::new(Kind::Internal, format!("{what}: {err}"))
    }

    /// Classify an I/O error on something of `kind` (the repository, the source): ENOSPC is
    /// still [`Kind::DiskFull`], permission denied is the environment's, anything else `kind`.
    pub fn io_as(kind: Kind, what: impl fmt::Display, err: std::io::Error) -> Self {
        if is_disk_full(&err) {
            return Error::new(Kind::DiskFull, format!("{what}: no space left on device"));
        }
        Error::new(kind, format!("{what}: {err}"))
    }

    /// Classify an SQLite error; SQLITE_FULL becomes [`Kind::DiskFull`].
    pub fn sqlite(kind: Kind, what: impl fmt::Display, err: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(e, _) = &err {
            if e.code == rusqlite::ErrorCode::DiskFull {
                return Error::new(Kind::DiskFull, format!("{what}: no space left on device"));
            }
        }
        Error::new(kind, format!("{what}: {err}"))
    }
}

fn is_refused(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::PermissionDenied
        || err.kind() == std::io::ErrorKind::ReadOnlyFilesystem
}

fn is_disk_full(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(28)
}

/// The SQL layer's errors, in the engine's kinds: a source that fails to read is the database's
/// fault, a dump that fails to load is corrupt.
impl From<lifeboat_sql::Error> for Error {
    fn from(e: lifeboat_sql::Error) -> Self {
        let kind = match e.kind {
            lifeboat_sql::Kind::Source => Kind::Database,
            lifeboat_sql::Kind::Input => Kind::Corrupt,
            lifeboat_sql::Kind::DiskFull => Kind::DiskFull,
            lifeboat_sql::Kind::Target | lifeboat_sql::Kind::Internal => Kind::Internal,
        };
        Error::new(kind, e.message())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Adds the failing step to an error on the way up, Litestream style.
pub trait ResultExt<T> {
    fn step(self, step: &str) -> Result<T>;
}

impl<T> ResultExt<T> for Result<T> {
    fn step(self, step: &str) -> Result<T> {
        self.map_err(|e| e.context(step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_and_carry_steps() {
        let e = Error::new(Kind::Corrupt, "bad\nthing").context("restore");
        assert_eq!(e.to_string(), "restore: bad thing");
        assert_eq!(e.kind.exit_code(), 6);
    }

    #[test]
    fn refused_access_is_the_environments() {
        for errno in [libc::EACCES, libc::EPERM, libc::EROFS] {
            let e = Error::io("write x", std::io::Error::from_raw_os_error(errno));
            assert_eq!(e.kind, Kind::Permission, "errno {errno}");
            assert_eq!(e.kind.exit_code(), 9);
        }
        let e = Error::io("write x", std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.kind, Kind::Internal);
    }

    #[test]
    fn enospc_is_disk_full() {
        let e = Error::io("write x", std::io::Error::from_raw_os_error(28));
        assert_eq!(e.kind, Kind::DiskFull);
        assert!(e.to_string().contains("no space left"));
    }
}
