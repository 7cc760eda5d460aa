//! Which backups a verify checks beyond the catalogue: a sample to restore-test
//! (`--sample N`: the newest always, then those never restore-tested, then those tested
//! longest ago), or a rolling subset to read (`--read-subset n/t`, restic's idea: backups fall
//! into `t` fixed groups by a hash of their id, and each run reads the next `n` groups after the
//! ones the last run read, so `t/n` runs read everything once). The cursor is kept in the
//! repository at `<db>/verify/read-cursor.json`, so any machine continues where the last left.

use chrono::{DateTime, Utc};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Kind, Result};
use crate::repo::listing::Listing;
use crate::repo::{Manifest, Repository};

/// `--read-subset n/t`: `n` of `t` groups per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subset {
    pub n: u32,
    pub t: u32,
}

impl std::str::FromStr for Subset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Subset> {
        let bad = || {
            Error::new(
                Kind::Config,
                format!(
                    "--read-subset {s:?}: expected n/t with 1 <= n <= t <= 10000, such as 1/30"
                ),
            )
        };
        let (n, t) = s.split_once('/').ok_or_else(bad)?;
        let (n, t): (u32, u32) = (
            n.trim().parse().map_err(|_| bad())?,
            t.trim().parse().map_err(|_| bad())?,
        );
        if n == 0 || t == 0 || n > t || t > 10_000 {
            return Err(bad());
        }
        Ok(Subset { n, t })
    }
}

/// Where the last rolling read stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub t: u32,
    /// The first group the next run reads.
    pub next: u32,
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
}

/// The group of backup `id` among `t`: fixed for an id, whatever else the repository holds.
pub fn group(id: &str, t: u32) -> u32 {
    let h = Sha256::digest(id.as_bytes());
    let v = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    (v % t as u64) as u32
}

/// The groups a run reads from `cursor` (one for another `t` starts over at 0), and the cursor
/// after it.
pub fn groups(subset: Subset, cursor: Option<Cursor>) -> (Vec<u32>, Cursor) {
    let start = cursor
        .filter(|c| c.t == subset.t)
        .map_or(0, |c| c.next % subset.t);
    let groups = (0..subset.n).map(|i| (start + i) % subset.t).collect();
    let next = Cursor {
        t: subset.t,
        next: (start + subset.n) % subset.t,
        at: Some(Utc::now()),
    };
    (groups, next)
}

/// The backups in `groups`, newest first.
pub fn in_groups<'a>(backups: &'a [Manifest], t: u32, groups: &[u32]) -> Vec<&'a Manifest> {
    backups
        .iter()
        .filter(|m| groups.contains(&group(&m.id, t)))
        .collect()
}

/// `--sample N` from `candidates` (newest first): the newest, then those never
/// restore-tested (in random order), then those tested longest ago.
pub fn sample<'a>(listing: &Listing, candidates: &[&'a Manifest], n: usize) -> Vec<&'a Manifest> {
    let Some((newest, rest)) = candidates.split_first() else {
        return Vec::new();
    };
    let tested = |m: &Manifest| {
        listing
            .records
            .get(&m.id)
            .and_then(|r| r.restore_test.as_ref())
            .map(|c| c.at)
    };
    let mut untested: Vec<&Manifest> = rest
        .iter()
        .copied()
        .filter(|m| tested(m).is_none())
        .collect();
    use rand::seq::SliceRandom;
    untested.shuffle(&mut rand::thread_rng());
    let mut tested_before: Vec<&Manifest> = rest
        .iter()
        .copied()
        .filter(|m| tested(m).is_some())
        .collect();
    tested_before.sort_by_key(|m| tested(m));
    std::iter::once(*newest)
        .chain(untested)
        .chain(tested_before)
        .take(n)
        .collect()
}

impl Cursor {
    fn key(repo: &Repository, db: &str) -> Key {
        repo.backend()
            .root
            .clone()
            .join(db)
            .join("verify")
            .join("read-cursor.json")
    }

    /// The cursor of `db`'s rolling read; None when there is none or it cannot be read.
    pub async fn load(repo: &Repository, db: &str) -> Result<Option<Cursor>> {
        match repo.backend().store.get(&Self::key(repo, db)).await {
            Ok(g) => {
                let bytes = g
                    .bytes()
                    .await
                    .map_err(|e| repo.err("read the read cursor", e))?;
                Ok(serde_json::from_slice(&bytes).ok())
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(repo.err("read the read cursor", e)),
        }
    }

    pub async fn save(&self, repo: &Repository, db: &str) -> Result<()> {
        let body = serde_json::to_vec_pretty(self).expect("cursor serializes");
        repo.backend()
            .store
            .put(&Self::key(repo, db), PutPayload::from(body))
            .await
            .map_err(|e| repo.err("write the read cursor", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_id_is_read_exactly_once_over_t_over_n_runs() {
        let ids: Vec<String> = (0..500).map(|i| format!("backup-{i:04}")).collect();
        for (n, t) in [(1, 30), (1, 3), (2, 6), (3, 3)] {
            let subset = Subset { n, t };
            let mut cursor = None;
            let mut seen = std::collections::BTreeMap::<&str, u32>::new();
            for _ in 0..t / n {
                let (gs, next) = groups(subset, cursor);
                cursor = Some(next);
                for id in ids.iter().filter(|id| gs.contains(&group(id, t))) {
                    *seen.entry(id).or_default() += 1;
                }
            }
            assert_eq!(seen.len(), ids.len(), "{n}/{t}");
            assert!(seen.values().all(|&c| c == 1), "{n}/{t}");
        }
        assert!("0/3".parse::<Subset>().is_err());
        assert!("4/3".parse::<Subset>().is_err());
        assert!("x".parse::<Subset>().is_err());
        assert_eq!("1/30".parse::<Subset>().unwrap(), Subset { n: 1, t: 30 });
    }
}
