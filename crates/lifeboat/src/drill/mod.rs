//! DR drills: the runbook's quarterly checklist, done by the program and timed. A drill picks
//! the latest good backup, downloads it, restores it into a target (scratch space, a file, or
//! a D1 database), checks its integrity and row counts against the manifest, runs the
//! configured data checks read-only, cleans up, and compares the total time with the RTO. The
//! record ([`DrillRecord`]) is kept at `<db>/drills/`; [`report`] prints it as the runbook's
//! checklist, and the history with its trend.

pub mod check;
pub mod report;
mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::d1::D1Target;
use crate::error::{Error, Kind, Result};
use crate::repo::Repository;
use crate::restore::select::{select, Selector};

pub use check::{DataCheck, DrillConfig, Expect};

/// The RTO when `[objectives] rto` is not set: the runbook's hour.
pub const DEFAULT_RTO: Duration = Duration::from_secs(3600);
pub use crate::schedule::DEFAULT_DRILL_SCHEDULE;
/// The record format's version.
pub const RECORD_VERSION: u32 = 1;

/// `[objectives]` in lifeboat.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// How long a full recovery may take (default 1h); a drill slower than this fails.
    #[serde(default, with = "crate::duration::optional")]
    pub rto: Option<Duration>,
}

impl Objectives {
    pub fn rto(&self) -> Duration {
        self.rto.unwrap_or(DEFAULT_RTO)
    }
}

/// Where a drill restores, as written (`--target`, `[daemon] drill_target`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// A file in scratch space, removed at the end (the default).
    Scratch,
    /// A file, left in place.
    File(PathBuf),
    /// A D1 database (`d1:NAME`), left as restored.
    D1(String),
}

impl std::str::FromStr for TargetSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<TargetSpec, String> {
        match s {
            "" => Err("an empty drill target: say scratch, a file path or d1:NAME".into()),
            "scratch" => Ok(TargetSpec::Scratch),
            _ => match s.strip_prefix("d1:") {
                Some("") => Err("d1: needs the D1 database's name (d1:NAME)".into()),
                Some(name) => Ok(TargetSpec::D1(name.to_string())),
                None => Ok(TargetSpec::File(PathBuf::from(s))),
            },
        }
    }
}

/// Where a drill restores, resolved.
#[derive(Debug, Clone)]
pub enum Target {
    Scratch,
    File(PathBuf),
    D1(D1Target),
}

/// How to run a drill.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    pub target: Target,
    /// Replace an existing file target (moved aside) or a non-empty D1 target (a safety backup
    /// of it first), as `restore --force` does.
    pub force: bool,
    pub rto: Duration,
    pub checks: Vec<DataCheck>,
    /// Where scratch space goes (default: the system temp dir).
    pub scratch_dir: Option<PathBuf>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
}

/// One timed step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    /// 1 to 6, the checklist's order.
    pub step: u8,
    pub name: String,
    pub ok: bool,
    /// Milliseconds, to the microsecond.
    pub ms: f64,
    /// What it did or found (one line).
    pub detail: String,
}

/// What a data check found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub sql: String,
    pub expect: String,
    pub ok: bool,
    /// The value the SQL returned, as shown.
    pub value: Option<String>,
    /// Why it failed (one line).
    pub reason: Option<String>,
}

/// The backup a drill restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrilledBackup {
    pub id: String,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub image_size: u64,
    pub tables: usize,
    pub rows: u64,
}

/// Where the drill restored, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetRecord {
    /// `scratch`, `file` or `d1`.
    pub kind: String,
    /// The file, or the D1 database.
    pub name: String,
    /// D1: `--remote` (true) or `--local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<bool>,
    /// Whether the restored database is still there after the drill.
    pub left_in_place: bool,
    /// Where `--force` moved an existing file, or the D1 target's safety backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
}

/// Why a step failed, typed (its kind decides the exit code).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillError {
    pub kind: String,
    pub exit_code: i32,
    pub message: String,
}

/// Everything a drill found: stored at `<db>/drills/drill-<ts>-<random>.json` (docs/format.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub version: u32,
    pub database: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The machine that ran it.
    pub host: Option<String>,
    pub target: TargetRecord,
    pub backup: Option<DrilledBackup>,
    pub steps: Vec<Step>,
    pub checks: Vec<CheckResult>,
    pub total_ms: f64,
    pub rto_seconds: f64,
    pub rto_breached: bool,
    /// Achieved RPO: the drill's start minus the backup's time (how old the restored data is).
    pub rpo_seconds: Option<i64>,
    pub verdict: Verdict,
    /// The failed step's error, when one failed with an error.
    pub error: Option<DrillError>,
    /// The record's name in the repository (set once it is stored).
    #[serde(default)]
    pub record: Option<String>,
}

impl DrillRecord {
    /// The exit code the drill's outcome calls for: 0 on pass; a failed step's own code
    /// (4 repository, 5 no backup, 6 corrupt, 7 target, 8 disk full, …); 1 when only a check
    /// failed or the RTO was breached.
    pub fn exit_code(&self) -> i32 {
        match (&self.error, self.verdict) {
            (Some(e), _) => e.exit_code,
            (None, Verdict::Pass) => 0,
            (None, Verdict::Fail) => 1,
        }
    }

    /// One line saying why the drill failed (None when it passed).
    pub fn failure(&self) -> Option<String> {
        if self.verdict == Verdict::Pass {
            return None;
        }
        // Step 5 fails through its checks, named below.
        if let Some(s) = self.steps.iter().find(|s| !s.ok && s.step != 5) {
            return Some(format!("step {} ({}) failed: {}", s.step, s.name, s.detail));
        }
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.reason.as_deref().unwrap_or("failed")))
            .collect();
        if !failed.is_empty() {
            return Some(format!("data check failed: {}", failed.join("; ")));
        }
        if self.rto_breached {
            return Some(format!(
                "RTO breached: the drill took {}, the RTO is {}",
                report::ms_text(self.total_ms),
                humantime::format_duration(Duration::from_secs_f64(self.rto_seconds))
            ));
        }
        Some("failed".into())
    }
}

/// The timer of one step.
struct Timer(Instant);

impl Timer {
    fn start() -> Timer {
        Timer(Instant::now())
    }

    fn ms(&self) -> f64 {
        self.0.elapsed().as_secs_f64() * 1000.0
    }
}

/// The steps' names, in order.
pub const STEPS: [&str; 6] = [
    "pick the latest good backup",
    "download",
    "restore to the target",
    "integrity and row counts",
    "data checks",
    "clean up",
];

/// Run a drill of database `db`. It never fails as a whole: a failed step is recorded (with
/// its error's kind), the steps after it but the clean-up (step 6) are not run and not listed.
pub async fn drill(repo: &Repository, db: &str, opts: &DrillOptions) -> DrillRecord {
    let started_at = Utc::now();
    let started = Instant::now();
    let mut steps: Vec<Step> = Vec::new();
    let mut error: Option<Error> = None;
    let mut done = |steps: &mut Vec<Step>, n: u8, t: Timer, r: Result<String>| -> bool {
        let ms = t.ms();
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => {
                let line = e.to_string();
                error.get_or_insert(e);
                (false, line)
            }
        };
        steps.push(Step {
            step: n,
            name: STEPS[n as usize - 1].to_string(),
            ok,
            ms,
            detail,
        });
        ok
    };
    let mut work = target::Work::new(opts);
    let mut checks = Vec::new();
    let mut backup = None;
    // Steps 1 to 5, stopping at the first that fails.
    'steps: {
        let t = Timer::start();
        let picked = select(repo, db, &Selector::Id("latest".into())).await;
        let m = match picked {
            Ok(s) => {
                let detail = s.describe();
                let m = s.manifest;
                done(&mut steps, 1, t, Ok(detail));
                m
            }
            Err(e) => {
                done(&mut steps, 1, t, Err(e));
                break 'steps;
            }
        };
        backup = Some(DrilledBackup {
            id: m.id.clone(),
            kind: m.kind.to_string(),
            created_at: m.created_at,
            image_size: m.image_size,
            tables: m.tables.len(),
            rows: m.total_rows(),
        });
        let t = Timer::start();
        if !done(&mut steps, 2, t, work.download(repo, &m).await) {
            break 'steps;
        }
        let t = Timer::start();
        if !done(&mut steps, 3, t, work.restore(repo, &m).await) {
            break 'steps;
        }
        let t = Timer::start();
        if !done(&mut steps, 4, t, work.integrity(&m).await) {
            break 'steps;
        }
        let t = Timer::start();
        checks = work.data_checks(&m, &opts.checks).await;
        let failed = checks.iter().filter(|c| !c.ok).count();
        let summary = match (checks.len(), failed) {
            (0, _) => "none configured ([[drill.check]])".to_string(),
            (n, 0) => format!("{n} of {n} passed"),
            (n, f) => format!("{f} of {n} failed"),
        };
        steps.push(Step {
            step: 5,
            name: STEPS[4].to_string(),
            ok: failed == 0,
            ms: t.ms(),
            detail: summary,
        });
    }
    let t = Timer::start();
    let cleaned = work.clean_up();
    done(&mut steps, 6, t, cleaned);
    let total_ms = started.elapsed().as_secs_f64() * 1000.0;
    let rto_breached = total_ms > opts.rto.as_secs_f64() * 1000.0;
    let ok = steps.iter().all(|s| s.ok) && checks.iter().all(|c| c.ok) && !rto_breached;
    DrillRecord {
        version: RECORD_VERSION,
        database: db.to_string(),
        started_at,
        finished_at: Utc::now(),
        host: crate::repo::claim::Claim::mine().host,
        target: work.record(),
        rpo_seconds: backup
            .as_ref()
            .map(|b| (started_at - b.created_at).num_seconds()),
        backup,
        steps,
        checks,
        total_ms,
        rto_seconds: opts.rto.as_secs_f64(),
        rto_breached,
        verdict: if ok { Verdict::Pass } else { Verdict::Fail },
        error: error.map(|e| DrillError {
            kind: e.kind.name().to_string(),
            exit_code: e.kind.exit_code(),
            message: e.to_string(),
        }),
        record: None,
    }
}

/// Store `record` at `<db>/drills/` (never over another), and note its name in it.
pub async fn store(repo: &Repository, record: &mut DrillRecord) -> Result<String> {
    let body = serde_json::to_vec_pretty(&*record)
        .map_err(|e| Error::new(Kind::Internal, format!("drill record: {e}")))?;
    let name = repo
        .put_drill(&record.database, record.started_at, body)
        .await?;
    record.record = Some(name.clone());
    Ok(name)
}

/// The drills of `db`, oldest first. A record this lifeboat cannot read is passed over with a
/// warning rather than hiding the rest.
pub async fn history(repo: &Repository, db: &str) -> Result<(Vec<DrillRecord>, Vec<String>)> {
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for name in repo.drill_names(db).await? {
        let v = match repo.drill_record(db, &name).await {
            Ok(v) => v,
            Err(e) if e.kind == Kind::Corrupt => {
                unreadable.push(format!("{name}: {e}"));
                continue;
            }
            Err(e) => return Err(e),
        };
        match serde_json::from_value::<DrillRecord>(v) {
            Ok(mut r) => {
                r.record.get_or_insert(name);
                out.push(r);
            }
            Err(e) => unreadable.push(format!("{name}: {e}")),
        }
    }
    Ok((out, unreadable))
}

/// The last drill of a database, as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    pub started_at: DateTime<Utc>,
    pub verdict: Verdict,
    pub total_ms: f64,
    pub rto_breached: bool,
    pub record: String,
}

/// `db`'s last drill: one LIST of its records and one read of the newest.
pub async fn last_drill(repo: &Repository, db: &str) -> Result<Option<LastDrill>> {
    let Some(name) = repo.drill_names(db).await?.pop() else {
        return Ok(None);
    };
    let v = repo.drill_record(db, &name).await?;
    let r: DrillRecord = serde_json::from_value(v)
        .map_err(|e| Error::new(Kind::Corrupt, format!("drill record {name} of {db}: {e}")))?;
    Ok(Some(LastDrill {
        started_at: r.started_at,
        verdict: r.verdict,
        total_ms: r.total_ms,
        rto_breached: r.rto_breached,
        record: name,
    }))
}

/// When `db`'s last drill started, from the names of its records alone (one LIST).
pub async fn last_drill_at(repo: &Repository, db: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(repo
        .drill_names(db)
        .await?
        .last()
        .and_then(|n| crate::repo::drills::drill_time(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!("scratch".parse::<TargetSpec>(), Ok(TargetSpec::Scratch));
        assert_eq!(
            "d1:drill-db".parse::<TargetSpec>(),
            Ok(TargetSpec::D1("drill-db".into()))
        );
        assert_eq!(
            "./drill.db".parse::<TargetSpec>(),
            Ok(TargetSpec::File("./drill.db".into()))
        );
        assert!("d1:".parse::<TargetSpec>().is_err());
        assert!("".parse::<TargetSpec>().is_err());
    }
}
