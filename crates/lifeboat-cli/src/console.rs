//! Lines for the terminal that never stop the program: a write to stdout or stderr that
//! fails (a closed pipe, `lifeboat list | head`; a log file on a full disk) is ignored, where
//! `say_out!` and `say_err!` would panic (exit 101) and stop a replicator or a daemon over a
//! line nobody could read.

use std::io::Write;

/// Print a line to stdout, ignoring a failed write.
pub fn out_line(s: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

/// Print a line to stderr, ignoring a failed write.
pub fn err_line(s: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

/// `say_err!` that ignores a failed write.
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::console::err_line(format_args!($($arg)*))
    };
}

/// `say_out!` that ignores a failed write.
macro_rules! say_out {
    ($($arg:tt)*) => {
        $crate::console::out_line(format_args!($($arg)*))
    };
}
