//! A drill as people read it: the runbook's "Quarterly DR Drill Checklist" with every box ticked
//! or crossed, the step timings, RTO and RPO and the verdict (Markdown); and the history of
//! drills with the trend of their total time, "Last Drill" and "Next Scheduled Drill".

use std::fmt::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::drill::{DrillRecord, Verdict};
use crate::schedule::Schedule;
use crate::text::escape;

/// Milliseconds as people read them: `734 µs`, `12.3 ms`, `4.21 s`, `1h 2m`.
pub fn ms_text(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} µs", ms * 1000.0)
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        humantime::format_duration(Duration::from_secs((ms / 1000.0) as u64)).to_string()
    }
}

fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn seconds_text(s: i64) -> String {
    let d = Duration::from_secs(s.unsigned_abs());
    let text = humantime::format_duration(d).to_string();
    if s < 0 {
        format!("-{text}")
    } else {
        text
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    }
}

/// "Next Scheduled Drill": the first scheduled time after the last drill (overdue when that
/// has passed: the daemon runs it at its next start).
pub fn next_drill(schedule: &Schedule, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let next = match last {
        Some(l) => schedule.next_after(l),
        None => None,
    };
    match (last, next) {
        (None, _) => format!("now: no drill yet (then by `{}`, UTC)", schedule.text()),
        (Some(_), Some(n)) if n <= now => format!(
            "overdue since {} (`{}`, UTC: the daemon runs it at once)",
            utc(n),
            schedule.text()
        ),
        (Some(_), Some(n)) => format!("{} (`{}`, UTC)", utc(n), schedule.text()),
        (Some(_), None) => format!("never (`{}` does not come round)", schedule.text()),
    }
}

/// The drill as a Markdown report.
pub fn markdown(r: &DrillRecord, schedule: &Schedule) -> String {
    let mut s = String::new();
    let db = escape(&r.database);
    let _ = writeln!(s, "# DR drill: {db} — {}\n", verdict_word(r.verdict));
    let target = match (r.target.kind.as_str(), r.target.remote) {
        ("d1", Some(true)) => format!("D1 database {} (remote)", escape(&r.target.name)),
        ("d1", _) => format!("D1 database {} (local)", escape(&r.target.name)),
        ("file", _) => format!("file {}", escape(&r.target.name)),
        _ => "a file in scratch space, removed afterwards".to_string(),
    };
    let _ = writeln!(
        s,
        "Started {} on {}; target: {target}.",
        utc(r.started_at),
        r.host.as_deref().unwrap_or("?")
    );
    if let Some(b) = &r.backup {
        let _ = writeln!(
            s,
            "Backup: {} ({}, taken {}), {} tables, {} rows.",
            b.id,
            b.kind,
            utc(b.created_at),
            b.tables,
            b.rows
        );
    }
    let step = |n: u8| r.steps.iter().find(|s| s.step == n);
    let ok = |n: u8| step(n).is_some_and(|s| s.ok);
    let time = |n: u8| step(n).map_or("not run".to_string(), |s| ms_text(s.ms));
    let box_ = |b: bool| if b { "[x]" } else { "[ ]" };
    let checks_ok = r.checks.iter().all(|c| c.ok);
    let _ = writeln!(s, "\n## Quarterly DR Drill Checklist\n");
    let _ = writeln!(
        s,
        "- {} Download latest backup ({} to pick it, {} to download and check its sha256)",
        box_(ok(1) && ok(2)),
        time(1),
        time(2)
    );
    let _ = writeln!(s, "- {} Create test database ({target})", box_(ok(2)));
    let _ = writeln!(
        s,
        "- {} Restore backup to test database ({})",
        box_(ok(3)),
        time(3)
    );
    let _ = writeln!(
        s,
        "- {} Verify data integrity (record counts, sample queries): integrity {}, {} of {} data checks passed",
        box_(ok(4) && ok(5) && checks_ok),
        time(4),
        r.checks.iter().filter(|c| c.ok).count(),
        r.checks.len()
    );
    let _ = writeln!(
        s,
        "- {} Document time taken for restoration: {} in all, RTO {} {}{}",
        box_(!r.rto_breached),
        ms_text(r.total_ms),
        humantime::format_duration(Duration::from_secs_f64(r.rto_seconds)),
        if r.rto_breached { "BREACHED" } else { "met" },
        r.record
            .as_deref()
            .map(|n| format!("; recorded as drills/{n}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- {} Update procedures if anything changed: {}",
        box_(r.verdict == Verdict::Pass),
        match r.failure() {
            None => "nothing failed, nothing to change".to_string(),
            Some(f) => format!("review: {}", escape(&f)),
        }
    );
    let _ = writeln!(
        s,
        "\n**Last Drill:** {} ({})  ",
        utc(r.started_at),
        verdict_word(r.verdict).to_lowercase()
    );
    let _ = writeln!(
        s,
        "**Next Scheduled Drill:** {}",
        next_drill(schedule, Some(r.started_at), r.started_at)
    );
    let _ = writeln!(
        s,
        "\n## Steps\n\n| # | step | time | result |\n|---|---|---|---|"
    );
    for st in &r.steps {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} {} |",
            st.step,
            st.name,
            ms_text(st.ms),
            if st.ok { "ok" } else { "FAILED" },
            cell(&st.detail)
        );
    }
    if !r.checks.is_empty() {
        let _ = writeln!(
            s,
            "\n## Data checks\n\n| check | expect | value | result |\n|---|---|---|---|"
        );
        for c in &r.checks {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                cell(&c.name),
                cell(&c.expect),
                cell(c.value.as_deref().unwrap_or("-")),
                match &c.reason {
                    None => "ok".to_string(),
                    Some(why) => format!("FAILED: {}", cell(why)),
                }
            );
        }
    }
    let _ = writeln!(s, "\n## Objectives\n");
    let _ = writeln!(
        s,
        "- RTO: {} allowed, {} taken: {}",
        humantime::format_duration(Duration::from_secs_f64(r.rto_seconds)),
        ms_text(r.total_ms),
        if r.rto_breached { "BREACHED" } else { "met" }
    );
    match (&r.backup, r.rpo_seconds) {
        (Some(b), Some(rpo)) => {
            let _ = writeln!(
                s,
                "- RPO achieved: {} (the restored data is as of {})",
                seconds_text(rpo),
                utc(b.created_at)
            );
        }
        _ => {
            let _ = writeln!(s, "- RPO achieved: none (no backup was restored)");
        }
    }
    let _ = writeln!(s, "\n**Verdict: {}**", verdict_word(r.verdict));
    if let Some(f) = r.failure() {
        let _ = writeln!(s, "\n{}", escape(&f));
    }
    s
}

/// A table cell: one line, no `|`.
fn cell(s: &str) -> String {
    escape(s).replace('|', "\\|")
}

/// The history of `db`'s drills, oldest first, with the trend of their total time.
pub fn history_markdown(
    db: &str,
    drills: &[DrillRecord],
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# DR drills: {}\n", escape(db));
    if drills.is_empty() {
        let _ = writeln!(s, "No drill yet.\n");
    } else {
        let _ = writeln!(
            s,
            "| started (UTC) | backup | target | total | vs previous | RTO | RPO | verdict |\n|---|---|---|---|---|---|---|---|"
        );
        let mut previous: Option<f64> = None;
        for r in drills {
            let trend = match previous {
                None => "-".to_string(),
                Some(p) => {
                    let d = r.total_ms - p;
                    let pct = if p > 0.0 { d / p * 100.0 } else { 0.0 };
                    let sign = if d >= 0.0 { "+" } else { "-" };
                    format!("{sign}{} ({sign}{:.0}%)", ms_text(d.abs()), pct.abs())
                }
            };
            previous = Some(r.total_ms);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {trend} | {} {} | {} | {} |",
                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                r.backup.as_ref().map_or("-", |b| b.id.as_str()),
                cell(&r.target.kind),
                ms_text(r.total_ms),
                humantime::format_duration(Duration::from_secs_f64(r.rto_seconds)),
                if r.rto_breached { "BREACHED" } else { "met" },
                r.rpo_seconds.map_or("-".to_string(), seconds_text),
                verdict_word(r.verdict).to_lowercase()
            );
        }
        let _ = writeln!(s);
    }
    let last = drills.last();
    let _ = writeln!(
        s,
        "**Last Drill:** {}  ",
        last.map_or("none yet".to_string(), |r| format!(
            "{} ({})",
            utc(r.started_at),
            verdict_word(r.verdict).to_lowercase()
        ))
    );
    let _ = writeln!(
        s,
        "**Next Scheduled Drill:** {}",
        next_drill(schedule, last.map(|r| r.started_at), now)
    );
    s
}

/// The trend as a value for `--json`: each drill's total time minus the one before's.
pub fn trend_ms(drills: &[DrillRecord]) -> Vec<Option<f64>> {
    let mut prev: Option<f64> = None;
    drills
        .iter()
        .map(|r| {
            let d = prev.map(|p| r.total_ms - p);
            prev = Some(r.total_ms);
            d
        })
        .collect()
}
