//! Claims: the `<id>.pending` object a backup creates (with a conditional create) before it
//! uploads anything, and removes once its manifest and SQL mirror are written. It names who
//! holds the id (host, boot, pid) and the S3 multipart uploads it started, so `cleanup` can tell
//! a running backup from a dead one, and abort the uploads a dead one left behind (S3 keeps, and
//! bills, the parts of an upload nobody completes or aborts).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::process::pid_alive;

/// An S3 multipart upload a backup started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The object key, as object_store spells it.
    pub key: String,
    pub upload_id: String,
}

/// The content of a claim object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claim {
    pub pid: u32,
    #[serde(default)]
    pub host: Option<String>,
    /// The kernel's boot id: a pid is only meaningful within one boot.
    #[serde(default)]
    pub boot_id: Option<String>,
    pub claimed_at: DateTime<Utc>,
    #[serde(default)]
    pub uploads: Vec<Upload>,
}

/// Whether a claim's process still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// On this machine, in this boot, and running.
    Running,
    /// On this machine, and gone (exited, or from an earlier boot).
    Gone,
    /// Another machine's, or an old claim without a host: only its age can tell.
    Unknown,
}

impl Claim {
    /// A claim for this process.
    pub fn mine() -> Claim {
        Claim {
            pid: std::process::id(),
            host: host(),
            boot_id: boot_id(),
            claimed_at: Utc::now(),
            uploads: Vec::new(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).expect("claim serializes");
        v.push(b'\n');
        v
    }

    pub fn from_json(bytes: &[u8]) -> Option<Claim> {
        serde_json::from_slice(bytes).ok()
    }

    /// Is the process that holds this claim still running?
    pub fn holder(&self) -> Holder {
        let (Some(h), Some(me)) = (&self.host, host()) else {
            return Holder::Unknown;
        };
        if *h != me {
            return Holder::Unknown;
        }
        if self.boot_id.is_some() && self.boot_id != boot_id() {
            return Holder::Gone;
        }
        if pid_alive(self.pid) {
            Holder::Running
        } else {
            Holder::Gone
        }
    }
}

fn host() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_gone_holders() {
        let me = Claim::mine();
        assert_eq!(me.holder(), Holder::Running);
        let back = Claim::from_json(&me.to_json()).unwrap();
        assert_eq!(back.pid, me.pid);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = Claim {
            pid: dead,
            ..me.clone()
        };
        assert_eq!(gone.holder(), Holder::Gone);
        let other_boot = Claim {
            boot_id: Some("another boot".into()),
            ..me.clone()
        };
        assert_eq!(other_boot.holder(), Holder::Gone);
        let elsewhere = Claim {
            host: Some("another-host".into()),
            ..me.clone()
        };
        assert_eq!(elsewhere.holder(), Holder::Unknown);
        // Claims written before hosts were recorded.
        let old = Claim::from_json(br#"{"pid":1,"claimed_at":"2026-11-20T02:00:00Z"}"#).unwrap();
        assert_eq!(old.holder(), Holder::Unknown);
    }
}
