//! Data checks: `[[drill.check]]` in lifeboat.toml, SQL with an expectation (`"> 0"`,
//! `"within 26h of backup"`), parsed when the config is loaded (a bad one is a config error)
//! and judged against the first column of the first row the SQL returns.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Kind, Result};

/// `[drill]` in lifeboat.toml.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillConfig {
    /// `[[drill.check]]`: the data checks every drill runs.
    #[serde(default, rename = "check")]
    pub checks: Vec<DataCheck>,
}

impl DrillConfig {
    /// The checks that apply to database `db` (those without `database`, and its own).
    pub fn checks_for(&self, db: &str) -> Vec<DataCheck> {
        self.checks
            .iter()
            .filter(|c| c.database.as_deref().is_none_or(|d| d == db))
            .cloned()
            .collect()
    }
}

/// One data check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataCheck {
    pub name: String,
    /// One read-only statement; its first row's first column is judged.
    pub sql: String,
    pub expect: Expect,
    /// Only for this database (default: every database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// A comparison with a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    fn text(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ne => "!=",
        }
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Eq => a == b,
            Op::Ne => a != b,
        }
    }
}

/// What a check's value must be.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Compare(Op, f64),
    /// A timestamp no older than this before the backup was taken (and not more than a
    /// minute after it: clocks differ a little, data from the future is wrong).
    WithinOfBackup(Duration, String),
}

/// How far after the backup's time a timestamp may be (the source's clock and lifeboat's).
const FUTURE_SLACK: i64 = 60;

impl FromStr for Expect {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Expect, String> {
        let t = s.trim();
        if let Some(rest) = t.strip_prefix("within ") {
            let dur = rest.strip_suffix(" of backup").map(str::trim).ok_or_else(|| {
                format!("expect {s:?}: say \"within DURATION of backup\", e.g. \"within 26h of backup\"")
            })?;
            let d = humantime::parse_duration(dur).map_err(|e| {
                format!("expect {s:?}: {dur:?} is not a duration (say 26h, 7d): {e}")
            })?;
            return Ok(Expect::WithinOfBackup(d, dur.to_string()));
        }
        let ops = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
        ];
        let (op, rest) = ops
            .iter()
            .find_map(|(p, op)| t.strip_prefix(p).map(|r| (*op, r.trim())))
            .ok_or_else(|| {
                format!("expect {s:?}: use > >= < <= = != with a number (\"> 0\"), or \"within 26h of backup\"")
            })?;
        let n: f64 = rest
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite())
            .ok_or_else(|| format!("expect {s:?}: {rest:?} is not a number"))?;
        Ok(Expect::Compare(op, n))
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Compare(op, n) => write!(f, "{} {n}", op.text()),
            Expect::WithinOfBackup(_, text) => write!(f, "within {text} of backup"),
        }
    }
}

impl<'de> Deserialize<'de> for Expect {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Expect, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A value a check's SQL returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(usize),
}

impl Value {
    /// As the report shows it.
    pub fn shown(&self) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Integer(i) => i.to_string(),
            Value::Real(r) => r.to_string(),
            Value::Text(t) => {
                let t: String = t.chars().take(80).collect();
                format!("{:?}", crate::text::escape(&t))
            }
            Value::Blob(n) => format!("a blob of {n} bytes"),
        }
    }

    /// From wrangler's JSON.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Integer(i),
                None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Bool(b) => Value::Integer(*b as i64),
            other => Value::Text(other.to_string()),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Value::Integer(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            Value::Text(t) => t.trim().parse().ok().filter(|n: &f64| n.is_finite()),
            _ => None,
        }
    }

    /// A timestamp: RFC 3339 / ISO 8601 text (UTC when no offset is given), or unix seconds
    /// (milliseconds when the number is too large to be seconds).
    fn time(&self) -> Option<DateTime<Utc>> {
        let from_number = |n: f64| {
            // 1e11 seconds is the year 5138: anything larger is milliseconds.
            let ms = if n.abs() >= 1e11 { n } else { n * 1000.0 };
            DateTime::from_timestamp_millis(ms as i64)
        };
        match self {
            Value::Integer(i) => from_number(*i as f64),
            Value::Real(r) => from_number(*r),
            Value::Text(t) => {
                let t = t.trim();
                if let Ok(d) = DateTime::parse_from_rfc3339(t) {
                    return Some(d.to_utc());
                }
                let naive = t.trim_end_matches('Z').replace('T', " ");
                for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
                    if let Ok(d) = NaiveDateTime::parse_from_str(&naive, fmt) {
                        return Some(d.and_utc());
                    }
                }
                if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
                    return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
                }
                t.parse::<f64>().ok().and_then(from_number)
            }
            _ => None,
        }
    }
}

/// Judge `value` (None: the SQL returned no row) against `expect`, for a backup taken at
/// `backup_at`. Ok: passed; Err: the one-line reason it failed.
pub fn judge(
    expect: &Expect,
    value: Option<&Value>,
    backup_at: DateTime<Utc>,
) -> std::result::Result<(), String> {
    let Some(value) = value else {
        return Err("the SQL returned no row".into());
    };
    if *value == Value::Null {
        return Err("the SQL returned NULL".into());
    }
    match expect {
        Expect::Compare(op, n) => {
            let Some(v) = value.number() else {
                return Err(format!("{} is not a number", value.shown()));
            };
            if op.holds(v, *n) {
                Ok(())
            } else {
                Err(format!("{} is not {expect}", value.shown()))
            }
        }
        Expect::WithinOfBackup(d, _) => {
            let Some(t) = value.time() else {
                return Err(format!(
                    "{} is not a timestamp (ISO 8601 text, or unix seconds or milliseconds)",
                    value.shown()
                ));
            };
            let oldest =
                backup_at - chrono::Duration::from_std(*d).unwrap_or(chrono::Duration::MAX);
            let newest = backup_at + chrono::Duration::seconds(FUTURE_SLACK);
            let at = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            if t < oldest {
                Err(format!(
                    "{at} is {} before the backup, more than {}",
                    humantime::format_duration((backup_at - t).to_std().unwrap_or_default()),
                    humantime::format_duration(*d)
                ))
            } else if t > newest {
                Err(format!("{at} is after the backup was taken"))
            } else {
                Ok(())
            }
        }
    }
}

/// Check every expectation in `cfg` once more (they were parsed with the config): a check
/// needs a name and one statement.
pub fn validate(cfg: &DrillConfig) -> Result<()> {
    for (i, c) in cfg.checks.iter().enumerate() {
        if c.name.trim().is_empty() {
            return Err(Error::new(
                Kind::Config,
                format!("[[drill.check]] number {} needs a name", i + 1),
            ));
        }
        if c.sql.trim().is_empty() {
            return Err(Error::new(
                Kind::Config,
                format!("[[drill.check]] {:?}: sql = \"\" asks nothing", c.name),
            ));
        }
        if cfg.checks[..i].iter().any(|o| o.name == c.name) {
            return Err(Error::new(
                Kind::Config,
                format!("[[drill.check]] {:?} is declared twice", c.name),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn parses_expectations() {
        assert_eq!(
            "> 0".parse::<Expect>().unwrap(),
            Expect::Compare(Op::Gt, 0.0)
        );
        assert_eq!(
            ">=10".parse::<Expect>().unwrap(),
            Expect::Compare(Op::Ge, 10.0)
        );
        assert_eq!(
            "!= 3.5".parse::<Expect>().unwrap(),
            Expect::Compare(Op::Ne, 3.5)
        );
        assert_eq!(
            "= 7".parse::<Expect>().unwrap(),
            Expect::Compare(Op::Eq, 7.0)
        );
        assert_eq!(
            "within 26h of backup".parse::<Expect>().unwrap(),
            Expect::WithinOfBackup(Duration::from_secs(26 * 3600), "26h".into())
        );
        for bad in [
            "",
            "0",
            "> zero",
            "=> 1",
            "within 26h",
            "within soon of backup",
            "> inf",
            "> NaN",
        ] {
            assert!(bad.parse::<Expect>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn judges_numbers() {
        let t = at("2026-12-01T02:00:00Z");
        let gt0: Expect = "> 0".parse().unwrap();
        assert!(judge(&gt0, Some(&Value::Integer(3)), t).is_ok());
        assert!(judge(&gt0, Some(&Value::Text("12".into())), t).is_ok());
        let e = judge(&gt0, Some(&Value::Integer(0)), t).unwrap_err();
        assert!(e.contains("0 is not > 0"), "{e}");
        assert!(judge(&gt0, None, t).unwrap_err().contains("no row"));
        assert!(judge(&gt0, Some(&Value::Null), t)
            .unwrap_err()
            .contains("NULL"));
        assert!(judge(&gt0, Some(&Value::Text("abc".into())), t)
            .unwrap_err()
            .contains("not a number"));
    }

    #[test]
    fn judges_timestamps_against_the_backup() {
        let t = at("2026-12-01T02:00:00Z");
        let within: Expect = "within 26h of backup".parse().unwrap();
        for ok in [
            Value::Text("2026-12-01T01:00:00Z".into()),
            Value::Text("2026-11-30 08:00:00".into()),
            Value::Text("2026-12-01T02:00:30+00:00".into()),
            Value::Integer(at("2026-11-30T03:00:00Z").timestamp()),
            Value::Integer(at("2026-11-30T03:00:00Z").timestamp_millis()),
        ] {
            assert!(judge(&within, Some(&ok), t).is_ok(), "{ok:?}");
        }
        let old = judge(
            &within,
            Some(&Value::Text("2026-11-29T02:00:00Z".into())),
            t,
        )
        .unwrap_err();
        assert!(old.contains("before the backup"), "{old}");
        let future = judge(
            &within,
            Some(&Value::Text("2026-12-01T02:05:00Z".into())),
            t,
        )
        .unwrap_err();
        assert!(future.contains("after the backup"), "{future}");
        assert!(judge(&within, Some(&Value::Text("yesterday".into())), t)
            .unwrap_err()
            .contains("not a timestamp"));
    }
}
