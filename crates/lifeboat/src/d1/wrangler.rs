//! Cloudflare D1 through wrangler: the same commands operators already run (`wrangler d1 export`,
//! `wrangler d1 execute`, `wrangler d1 time-travel info`), so `--remote` works in production and
//! `--local` in tests. A D1 backup exports the database, loads the export with lifeboat's importer
//! (proving it loads, at the moment it is taken) and stores the image like any SQLite backup.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::error::{Error, Kind, Result};
pub use crate::repo::manifest::D1Info;

/// A D1 database as configured: `d1 = { database = "…", remote = true, config = "wrangler.toml" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct D1Config {
    /// The database name (or binding) as wrangler knows it.
    pub database: String,
    /// `--remote` (production) rather than `--local`.
    #[serde(default)]
    pub remote: bool,
    /// The wrangler configuration file (`-c`).
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// How to run wrangler for one database.
#[derive(Debug, Clone)]
pub struct Wrangler {
    /// The command and its leading arguments, e.g. `["npx", "--no-install", "wrangler"]`.
    program: Vec<String>,
    pub config: Option<PathBuf>,
}

impl Wrangler {
    /// `custom` is the `wrangler = "…"` setting; otherwise `$LIFEBOAT_WRANGLER`, then `wrangler`
    /// on PATH, else npx (which must not download anything: `--no-install`).
    pub fn new(custom: Option<&str>, config: Option<PathBuf>) -> Wrangler {
        let from_env = std::env::var("LIFEBOAT_WRANGLER")
            .ok()
            .filter(|v| !v.is_empty());
        let program = match custom.or(from_env.as_deref()) {
            Some(c) => c.split_whitespace().map(str::to_string).collect(),
            None if on_path("wrangler") => vec!["wrangler".to_string()],
            None => ["npx", "--no-install", "wrangler"]
                .map(str::to_string)
                .to_vec(),
        };
        Wrangler { program, config }
    }

    fn with_config(&self, mut args: Vec<String>) -> Vec<String> {
        if let Some(c) = &self.config {
            args.push("-c".into());
            args.push(c.display().to_string());
        }
        args
    }

    fn location(remote: bool) -> String {
        if remote { "--remote" } else { "--local" }.to_string()
    }

    /// `d1 export <db> --remote|--local --output <file> [-c config]`
    pub fn export_args(&self, db: &str, remote: bool, out: &Path) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "export".into(),
            db.into(),
            Self::location(remote),
            "--output".into(),
            out.display().to_string(),
        ];
        self.with_config(args)
    }

    /// `d1 execute <db> --remote|--local --file <file> --yes [-c config]`
    pub fn execute_file_args(&self, db: &str, remote: bool, file: &Path) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "execute".into(),
            db.into(),
            Self::location(remote),
            "--file".into(),
            file.display().to_string(),
            "--yes".into(),
        ];
        self.with_config(args)
    }

    /// `d1 execute <db> --remote|--local --command <sql> --json [-c config]`
    pub fn query_args(&self, db: &str, remote: bool, sql: &str) -> Vec<String> {
        let args = vec![
            "d1".into(),
            "execute".into(),
            db.into(),
            Self::location(remote),
            "--command".into(),
            sql.into(),
            "--json".into(),
        ];
        self.with_config(args)
    }

    /// `d1 time-travel info <db> --json [-c config]`
    pub fn time_travel_args(&self, db: &str) -> Vec<String> {
        let args = ["d1", "time-travel", "info", db, "--json"]
            .map(str::to_string)
            .to_vec();
        self.with_config(args)
    }

    /// The full command line, for messages and tests.
    pub fn command_line(&self, args: &[String]) -> String {
        self.program
            .iter()
            .chain(args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Run wrangler; a non-zero exit becomes an error quoting wrangler's own message.
    pub fn run(&self, args: &[String]) -> Result<String> {
        let what = format!(
            "wrangler {}",
            args.iter().take(3).cloned().collect::<Vec<_>>().join(" ")
        );
        let Some(program) = self.program.first() else {
            return Err(Error::new(
                Kind::Config,
                "the wrangler command is empty: set `wrangler = \"…\"` or LIFEBOAT_WRANGLER",
            ));
        };
        let out = Command::new(program)
            .args(&self.program[1..])
            .args(args)
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("NO_COLOR", "1")
            .env("CI", "true") // never prompt
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::new(
                    Kind::Config,
                    format!("{program} not found: install wrangler (npm i -g wrangler), set `wrangler = \"…\"` for this database, or set LIFEBOAT_WRANGLER"),
                ),
                _ => Error::new(Kind::Database, format!("{what}: cannot run {program}: {e}")),
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            // `npx --no-install wrangler` without wrangler installed: npx's own words say
            // nothing about what to do.
            if program.ends_with("npx")
                && (stderr.contains("could not determine executable")
                    || stderr.contains("npx canceled"))
            {
                return Err(Error::new(
                    Kind::Config,
                    "wrangler is not installed (npx found no wrangler here): install it (npm i -D wrangler), set `wrangler = \"…\"` for this database in lifeboat.toml, or set LIFEBOAT_WRANGLER",
                ));
            }
            return Err(Error::new(
                Kind::Database,
                format!("{what} failed: {}", wrangler_message(&stderr, &stdout)),
            ));
        }
        Ok(stdout)
    }

    /// wrangler's version, e.g. `4.86.0`.
    pub fn version(&self) -> Result<String> {
        let out = self.run(&["--version".to_string()])?;
        Ok(out
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or("unknown")
            .trim_start_matches("⛅️ wrangler ")
            .to_string())
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The line of wrangler's output that says what went wrong, without colours or decoration.
pub fn wrangler_message(stderr: &str, stdout: &str) -> String {
    let clean = |s: &str| -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // Skip an ANSI escape sequence: ESC [ … letter
                for n in chars.by_ref() {
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    // With --json, wrangler reports failures as {"error": {"text": "…", "notes": […]}}.
    if let Some(start) = stdout.find('{') {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&stdout[start..]) {
            if let Some(text) = v.pointer("/error/text").and_then(|t| t.as_str()) {
                let notes: Vec<&str> = v
                    .pointer("/error/notes")
                    .and_then(|n| n.as_array())
                    .map(|n| n.iter().filter_map(|x| x.get("text")?.as_str()).collect())
                    .unwrap_or_default();
                return std::iter::once(text)
                    .chain(notes)
                    .collect::<Vec<_>>()
                    .join(" ");
            }
        }
    }
    let text = format!("{}\n{}", clean(stderr), clean(stdout));
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines
        .iter()
        .find(|l| {
            l.contains("[ERROR]")
                || l.starts_with('✘')
                || l.to_ascii_lowercase().starts_with("error")
        })
        .or_else(|| lines.iter().rfind(|l| !l.starts_with("🪵")))
        .copied()
        .unwrap_or("no output");
    error
        .trim_start_matches('✘')
        .trim()
        .trim_start_matches("[ERROR]")
        .trim()
        .to_string()
}

impl Wrangler {
    /// Run a query and return the rows of its (single) result set.
    pub fn query(&self, db: &str, remote: bool, sql: &str) -> Result<Vec<serde_json::Value>> {
        let out = self.run(&self.query_args(db, remote, sql))?;
        let start = out
            .find('[')
            .ok_or_else(|| Error::new(Kind::Database, "no JSON in wrangler's output"))?;
        let v: serde_json::Value = serde_json::from_str(&out[start..])
            .map_err(|e| Error::new(Kind::Database, format!("wrangler's JSON: {e}")))?;
        Ok(v.get(0)
            .and_then(|r| r.get("results"))
            .and_then(|r| r.as_array())
            .cloned()
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w() -> Wrangler {
        Wrangler::new(
            Some("npx wrangler"),
            Some(PathBuf::from("packages/api/wrangler.toml")),
        )
    }

    #[test]
    fn remote_command_lines() {
        let w = w();
        assert_eq!(
            w.command_line(&w.export_args("studio-platform-db", true, Path::new("/tmp/x/export.sql"))),
            "npx wrangler d1 export studio-platform-db --remote --output /tmp/x/export.sql -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.execute_file_args("studio-platform-db", true, Path::new("r.sql"))),
            "npx wrangler d1 execute studio-platform-db --remote --file r.sql --yes -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.query_args("studio-platform-db", true, "SELECT 1")),
            "npx wrangler d1 execute studio-platform-db --remote --command SELECT 1 --json -c packages/api/wrangler.toml"
        );
        assert_eq!(
            w.command_line(&w.time_travel_args("studio-platform-db")),
            "npx wrangler d1 time-travel info studio-platform-db --json -c packages/api/wrangler.toml"
        );
        let local = Wrangler::new(Some("/opt/wrangler"), None);
        assert_eq!(
            local.command_line(&local.export_args("db", false, Path::new("e.sql"))),
            "/opt/wrangler d1 export db --local --output e.sql"
        );
    }

    #[test]
    fn quotes_wranglers_error_line() {
        let stderr = "\u{1b}[31m✘ \u{1b}[41;31m[\u{1b}[41;97mERROR\u{1b}[41;31m]\u{1b}[0m \u{1b}[1mCouldn't find a D1 DB with the name or binding 'nope' in your wrangler.jsonc file.\u{1b}[0m\n\n🪵  Logs were written to \"/x.log\"\n";
        assert_eq!(
            wrangler_message(stderr, " ⛅️ wrangler 4.86.0\n"),
            "Couldn't find a D1 DB with the name or binding 'nope' in your wrangler.jsonc file."
        );
    }
}
