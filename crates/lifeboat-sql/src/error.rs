//! Errors of the SQL layer as values: a kind, which the engine maps to its own (and so to an exit
//! code), and a one-line message naming the step that failed.

use std::fmt;

/// What went wrong, from the SQL layer's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The database being read (dumped) failed or refused.
    Source,
    /// The SQL text is damaged or foreign: a statement fails or the dump is truncated.
    Input,
    /// The database being built failed for a reason of its own, not the dump's.
    Target,
    /// No space left on a device being written.
    DiskFull,
    /// A bug.
    Internal,
}

/// A kind and a single-line message.
#[derive(Debug)]
pub struct Error {
    pub kind: Kind,
    message: String,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into().replace(['\n', '\r'], " "),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefix the message with the step that failed.
    pub fn context(mut self, step: impl fmt::Display) -> Self {
        self.message = format!("{step}: {}", self.message);
        self
    }

    /// Classify an I/O error; ENOSPC becomes [`Kind::DiskFull`], anything else `Internal`.
    pub fn io(what: impl fmt::Display, err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::StorageFull || err.raw_os_error() == Some(28) {
            return Error::new(Kind::DiskFull, format!("{what}: no space left on device"));
        }
        Error::new(Kind::Internal, format!("{what}: {err}"))
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

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
