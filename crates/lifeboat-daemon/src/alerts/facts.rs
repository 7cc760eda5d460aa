//! What an alert says to people: a subject line and the facts (the database, the error, the time,
//! the last good backup, the commands to investigate with). Email and Slack both tell them.

use lifeboat::text::shell_word;

use super::{Event, EventKind};

/// `[lifeboat] backup failed: studio-platform-db`: one line, whatever the source holds.
pub fn subject(e: &Event) -> String {
    let s = match e.kind {
        EventKind::Test => "[lifeboat] test alert".to_string(),
        k => format!("[lifeboat] {}: {}", k.title(), e.source),
    };
    one_line(&s)
}

/// The facts, labelled, in the order people read them.
pub fn facts(e: &Event) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let whole_run = e.source == "system_backup";
    if e.kind != EventKind::Test {
        out.push(if whole_run {
            ("Source".into(), "system_backup (the run as a whole)".into())
        } else {
            ("Database".into(), e.source.clone())
        });
    }
    let failed = e.kind.name().ends_with(".failed");
    out.push((
        if failed { "Error" } else { "What" }.into(),
        e.message.clone(),
    ));
    out.push((
        "Time".into(),
        e.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    ));
    if e.kind != EventKind::Test {
        out.push(("Last good backup".into(), last_good(e)));
    }
    out.push(("Event".into(), e.kind.name().into()));
    if let Some(map) = e.details.as_object() {
        for (k, v) in map {
            if k == "last_good" || k == "last_good_at" {
                continue;
            }
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            out.push((label(k), v));
        }
    }
    out
}

/// The commands that show more, for the source.
pub fn commands(e: &Event) -> Vec<String> {
    if e.kind == EventKind::Test {
        return Vec::new();
    }
    let db = match e.source.as_str() {
        "system_backup" => String::new(),
        s => format!(" --db {}", shell_word(s)),
    };
    let mut out = vec![format!("lifeboat status{db}"), format!("lifeboat list{db}")];
    if e.kind == EventKind::PruneFailed {
        out.push(format!("lifeboat prune --dry-run{db}"));
    }
    if matches!(
        e.kind,
        EventKind::ReplicationStalled | EventKind::ReplicationRecovered
    ) {
        out.push(format!("lifeboat list --pitr{db}"));
    }
    if matches!(e.kind, EventKind::DrillFailed | EventKind::DrillRtoBreached) {
        out.push(format!("lifeboat drill --history{db}"));
    }
    out
}

/// `details.last_good` (with `last_good_at`) as told by the sender: the id and when; `none` if it
/// looked and found none; `unknown` if it could not look.
fn last_good(e: &Event) -> String {
    match e.details.get("last_good") {
        Some(serde_json::Value::String(id)) => {
            let at = e
                .details
                .get("last_good_at")
                .and_then(|v| v.as_str())
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&chrono::Utc));
            match at {
                Some(t) => format!(
                    "{id} ({}, {} before this alert)",
                    t.format("%Y-%m-%d %H:%M:%S UTC"),
                    lifeboat::status::hours((e.at - t).num_seconds().max(0))
                ),
                None => id.clone(),
            }
        }
        Some(serde_json::Value::Null) => "none".into(),
        _ => "unknown".into(),
    }
}

/// A detail's key as a label: `exit_code` is "Exit code"; `kind` is the error's kind.
fn label(key: &str) -> String {
    let words = match key {
        "kind" => "error kind".to_string(),
        k => k.replace('_', " "),
    };
    let mut c = words.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `s` with line breaks and other control characters as spaces: a subject is one line.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, source: &str, details: serde_json::Value) -> Event {
        Event {
            kind,
            source: source.into(),
            message: "it broke\nbadly".into(),
            at: "2025-03-02T02:00:05Z".parse().unwrap(),
            details,
        }
    }

    #[test]
    fn the_subject_names_what_and_which_on_one_line() {
        let e = event(
            EventKind::BackupFailed,
            "studio-platform-db",
            serde_json::Value::Null,
        );
        assert_eq!(subject(&e), "[lifeboat] backup failed: studio-platform-db");
        let e = event(
            EventKind::BackupFailed,
            "a\r\nBcc: x@y",
            serde_json::Value::Null,
        );
        assert_eq!(subject(&e), "[lifeboat] backup failed: a  Bcc: x@y");
    }

    #[test]
    fn the_last_good_backup_is_its_id_and_age_or_none_or_unknown() {
        let details = serde_json::json!({"last_good": "backup-2025-03-01T020001Z", "last_good_at": "2025-03-01T02:00:01Z", "exit_code": 3});
        let f = facts(&event(EventKind::BackupFailed, "db", details));
        let get = |k: &str| f.iter().find(|(l, _)| l == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("Last good backup").unwrap(),
            "backup-2025-03-01T020001Z (2025-03-01 02:00:01 UTC, 24h before this alert)"
        );
        assert_eq!(get("Exit code").unwrap(), "3");
        assert_eq!(get("Time").unwrap(), "2025-03-02 02:00:05 UTC");
        let none = facts(&event(
            EventKind::BackupFailed,
            "db",
            serde_json::json!({"last_good": null}),
        ));
        assert!(none.contains(&("Last good backup".into(), "none".into())));
        let unknown = facts(&event(
            EventKind::BackupFailed,
            "db",
            serde_json::Value::Null,
        ));
        assert!(unknown.contains(&("Last good backup".into(), "unknown".into())));
    }

    #[test]
    fn commands_quote_odd_names_and_the_whole_run_has_no_db() {
        let e = event(EventKind::PruneFailed, "it's", serde_json::Value::Null);
        assert_eq!(
            commands(&e),
            [
                "lifeboat status --db 'it'\\''s'",
                "lifeboat list --db 'it'\\''s'",
                "lifeboat prune --dry-run --db 'it'\\''s'"
            ]
        );
        let e = event(
            EventKind::BackupFailed,
            "system_backup",
            serde_json::Value::Null,
        );
        assert_eq!(commands(&e), ["lifeboat status", "lifeboat list"]);
    }
}
