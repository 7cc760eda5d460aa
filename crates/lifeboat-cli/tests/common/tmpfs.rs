//! A small tmpfs a test mounts (root, as in CI and scripts/test.sh) to fill up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::stdout;

/// A tmpfs of `size` mounted at `at` for the life of the value (unmounted when dropped, also
/// when the test fails).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (CI and scripts/test.sh run as root)"
        );
        Tmpfs(at.to_path_buf())
    }

    /// Fill what is left with a file (`dd` stops at ENOSPC).
    pub fn fill(&self) {
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=16k"])
            .arg(format!("of={}", self.0.join("fill").display()))
            .stderr(Stdio::null())
            .status();
        let left = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.0)
            .output()
            .unwrap();
        let avail: u64 = stdout(&left)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap();
        assert!(avail < 64 << 10, "{avail} bytes still free");
    }

    /// Fill it, then give back `bytes` (room for small writes, not for a snapshot).
    pub fn fill_leaving(&self, bytes: u64) {
        self.fill();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.0.join("fill"))
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(bytes)).unwrap();
    }

    pub fn free(&self) {
        std::fs::remove_file(self.0.join("fill")).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
