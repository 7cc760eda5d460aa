//! Processes on this host: whether the one that left a claim, a scratch directory or a tenant
//! restore's copies is still running.

/// Whether a process with this pid exists here (one we may not signal counts as existing).
pub fn pid_alive(pid: u32) -> bool {
    // 0 would ask about this process group, not a process.
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}
