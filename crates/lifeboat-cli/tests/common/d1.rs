//! Local D1 through the real wrangler (4.86.0, local mode: workerd + SQLite on 127.0.0.1),
//! installed by scripts/test.sh into ~/.cache/lifeboat-test-tools/wrangler: a throwaway wrangler
//! project per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{cmd, ok, stderr, stdout};

pub fn wrangler() -> PathBuf {
    if let Ok(p) = std::env::var("LIFEBOAT_WRANGLER") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let p =
        PathBuf::from(home).join(".cache/lifeboat-test-tools/wrangler/node_modules/.bin/wrangler");
    assert!(
        p.exists(),
        "{} is missing: run ./scripts/test.sh, which installs it",
        p.display()
    );
    p
}

/// A throwaway wrangler project with local D1 databases.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    pub fn new(databases: &[&str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        let dbs: Vec<String> = databases
            .iter()
            .enumerate()
            .map(|(i, name)| {
                format!(r#"{{ "binding": "DB{i}", "database_name": "{name}", "database_id": "00000000-0000-4000-8000-{i:012}" }}"#)
            })
            .collect();
        std::fs::write(
            dir.path().join("wrangler.jsonc"),
            format!(r#"{{ "name": "lifeboat-test", "compatibility_date": "2025-01-01", "d1_databases": [{}] }}"#, dbs.join(",")),
        )
        .unwrap();
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn wrangler(&self, args: &[&str]) -> std::process::Output {
        Command::new(wrangler())
            .args(args)
            .args(["-c", "wrangler.jsonc"])
            .current_dir(self.path())
            .env("WRANGLER_SEND_METRICS", "false")
            .env("WRANGLER_SEND_ERROR_REPORTS", "false")
            .env("XDG_CONFIG_HOME", self.path().join("xdg"))
            .output()
            .unwrap()
    }

    /// Run lifeboat in the project with this wrangler.
    pub fn lifeboat(&self, args: &[&str]) -> std::process::Output {
        cmd(self.path())
            .env("LIFEBOAT_WRANGLER", wrangler())
            .args(args)
            .output()
            .unwrap()
    }

    pub fn execute_file(&self, db: &str, file: &str) {
        let o = self.wrangler(&["d1", "execute", db, "--local", "--file", file, "--yes"]);
        assert!(
            o.status.success(),
            "wrangler execute failed: {}{}",
            stderr(&o),
            stdout(&o)
        );
    }

    /// Export a database with wrangler and load it with lifeboat into `into` (a comparison copy).
    pub fn export_to_db(&self, db: &str, into: &str) -> PathBuf {
        let o = self.wrangler(&["d1", "export", db, "--local", "--output", "cmp.sql"]);
        assert!(o.status.success(), "wrangler export failed: {}", stderr(&o));
        ok(self.path(), &["import", "cmp.sql", "--to", into, "--force"]);
        std::fs::remove_file(self.path().join("cmp.sql")).unwrap();
        self.path().join(into)
    }

    /// lifeboat.toml pointing at one of this project's databases.
    pub fn config(&self, db: &str, extra: &str) {
        std::fs::write(
            self.path().join("lifeboat.toml"),
            format!(
                "[repository]\nurl = \"file://./repo\"\n[[database]]\nname = \"{db}\"\nd1 = {{ database = \"{db}\", remote = false, config = \"wrangler.jsonc\" }}\nwrangler = \"{}\"\n{extra}",
                wrangler().display()
            ),
        )
        .unwrap();
    }
}
