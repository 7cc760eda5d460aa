//! The `lifeboat` binary, the command line: parses arguments with clap, loads the config, runs one command module
//! (one file per command) and turns errors into a one-line message and a documented exit code.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use lifeboat::config::Config;
use lifeboat::error::{Error, Kind, Result};
use lifeboat::repo::repository::Repository;
use lifeboat::restore::to_file::{select, Selection, Selector};

#[macro_use]
mod console;
mod alert;
mod alerting;
mod backup;
mod cleanup;
mod compact;
mod daemon;
mod demo;
mod drill;
mod dump;
mod export;
mod import;
mod incident;
mod list;
mod list_pitr;
mod pin;
mod prune;
mod release;
mod replicate;
mod restore;
mod restore_d1;
mod restore_pitr;
mod restores;
mod shared_args;
mod status;
mod tenant_restore;
mod tenants;
mod unpin;
mod verify;

const AFTER_HELP: &str = "\
Examples:
  lifeboat demo                                   # build a sample database, back it up, restore it
  lifeboat backup --db ./studio.db --repo file:///var/backups/lifeboat
  lifeboat list
  lifeboat restore --db ./studio.db --to ./restored.db
  lifeboat verify --all

Exit codes: 0 ok, 1 internal error, 2 bad usage or config, 3 source database problem,
4 repository unreachable or access denied, 5 backup not found, 6 backup corrupt or check failed,
7 restore target exists (use --force), 8 disk full; `drill`: 1 a data check failed or the RTO
was breached.";

#[derive(Parser, Debug)]
#[command(name = "lifeboat", version, about = "Backup and disaster recovery for SQLite and D1", after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (default: ./lifeboat.toml when it exists).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Repository URL, overriding the config: file://PATH or s3://BUCKET/PREFIX.
    #[arg(long, global = true, value_name = "URL")]
    repo: Option<String>,
    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Take a consistent backup of a live database (SQLite file or D1) into the repository.
    Backup(backup::Args),
    /// List complete backups, newest first, and flag incomplete leftovers.
    List(list::Args),
    /// Restore a whole database, or one tenant into a live one, from a checked backup.
    Restore(restore::Args),
    /// Replicate a SQLite database (WAL mode) continuously, in the foreground.
    Replicate(replicate::Args),
    /// Download backups and check them in full (checksums, integrity_check, row counts).
    Verify(verify::Args),
    /// Delete incomplete backups (interrupted uploads) older than a threshold.
    Cleanup(cleanup::Args),
    /// Apply the [retention] policy: keep what its rules keep, delete the rest.
    Prune(prune::Args),
    /// Merge replicated segments into larger windows as they age (restore time stays flat).
    Compact(compact::Args),
    /// Keep a backup whatever the retention policy says.
    Pin(pin::Args),
    /// Let the retention policy decide about a pinned backup again.
    Unpin(unpin::Args),
    /// Lift the hold a shrinking backup put on the backup before it.
    Release(release::Args),
    /// How each database's backups stand (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
    Status(status::Args),
    /// Run every database's backups on its schedule, unattended (cron in UTC, leases, alerts).
    Daemon(daemon::Args),
    /// Alert channels: `alert test` sends a test message on each.
    Alert(alert::Args),
    /// Write a live database or a backup as SQL (sqlite3 or D1 dialect).
    Dump(dump::Args),
    /// Load a SQL dump (sqlite3, wrangler d1 export, lifeboat) into a new database, checked.
    Import(import::Args),
    /// Tenancy: which rows belong to which tenant.
    Tenants(tenants::Args),
    /// Export one tenant's rows (JSON, SQLite or SQL) from a live database or a backup.
    Export(export::Args),
    /// List the records of tenant restores.
    Restores(restores::Args),
    /// DR drill: restore the latest good backup into a target, check it, time it against the RTO.
    Drill(drill::Args),
    /// Incident records: start a post-incident review with its timeline pre-filled from the
    /// repository (`new`), list them (`list`).
    Incident(incident::Args),
    /// Build a sample multi-tenant database, back it up, verify it and restore it.
    Demo(demo::Args),
}

/// What every command gets: the loaded config, the `--repo` override and the output mode.
pub struct Ctx {
    pub config: Config,
    /// `--config`, for commands that read it again (the daemon, on SIGHUP).
    pub config_path: Option<PathBuf>,
    pub repo_flag: Option<String>,
    pub out: Output,
}

impl Ctx {
    /// Refuse to write a file among a local repository's objects (`<db>/backups/`, …): a dump or
    /// restore written over one (a manifest, say) would damage a backup.
    pub fn refuse_inside_repository(&self, target: &std::path::Path) -> Result<()> {
        let url = self.config.repository_url(self.repo_flag.as_deref());
        if url.contains("://") && !url.starts_with("file://") {
            return Ok(());
        }
        let Ok(repo) = std::fs::canonicalize(url.trim_start_matches("file://")) else {
            return Ok(());
        };
        let Ok((path, _)) = lifeboat::fs::atomic_replace::resolve_links(target) else {
            return Ok(());
        };
        let dir = path
            .parent()
            .and_then(|p| std::fs::canonicalize(p).ok())
            .unwrap_or_default();
        // The repository's own objects are under `<db>/backups/` and `<db>/restores/`.
        let inside = dir.strip_prefix(&repo).is_ok_and(|rel| {
            rel.components()
                .nth(1)
                .is_some_and(|c| c.as_os_str() == "backups" || c.as_os_str() == "restores")
        });
        if inside {
            return Err(Error::new(
                Kind::TargetExists,
                format!(
                    "{} is inside the repository {url}; write it somewhere else",
                    target.display()
                ),
            ));
        }
        Ok(())
    }

    /// Open the repository; `create` makes a missing local directory (for writers only).
    pub fn repository(&self, create: bool) -> Result<Repository> {
        Repository::open_with_timeout(
            &self.config.repository_url(self.repo_flag.as_deref()),
            create,
            self.config
                .repository
                .timeout
                .unwrap_or(lifeboat::repo::store::DEFAULT_TIMEOUT),
        )
    }
}

/// Output mode: human lines, JSON, or nothing.
#[derive(Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// A human-readable line (suppressed by --json and --quiet).
    pub fn line(&self, s: impl AsRef<str>) {
        if !self.json && !self.quiet {
            console::out_line(s.as_ref());
        }
    }

    /// A JSON document (only with --json).
    pub fn json(&self, v: &serde_json::Value) {
        if self.json {
            console::out_line(serde_json::to_string_pretty(v).expect("json"));
        }
    }

    /// A report of the engine's as a JSON document (only with --json).
    pub fn json_of(&self, v: &impl serde::Serialize) -> Result<()> {
        if self.json {
            let doc = serde_json::to_value(v)
                .map_err(|e| Error::new(Kind::Internal, format!("JSON output: {e}")))?;
            self.json(&doc);
        }
        Ok(())
    }

    /// A progress bar on a terminal, hidden otherwise.
    pub fn progress(&self, what: &str) -> ProgressBar {
        if self.json || self.quiet || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .expect("template")
                .progress_chars("=> "),
        );
        pb.set_message(what.to_string());
        pb
    }
}

/// The engine's progress, drawn on a bar.
struct Bar(ProgressBar);

impl lifeboat::progress::ProgressSink for Bar {
    fn set_length(&self, total: u64) {
        self.0.set_length(total);
    }

    fn inc(&self, n: u64) {
        self.0.inc(n);
    }
}

/// Hand a bar to the engine.
pub fn bar(pb: &ProgressBar) -> lifeboat::progress::Progress {
    lifeboat::progress::Progress::new(Bar(pb.clone()))
}

/// Say where `--force` moved an existing output file.
pub fn say_moved_aside(out: &str, moved: Option<PathBuf>) {
    if let Some(aside) = moved {
        say_err!(
            "lifeboat: previous {out} moved aside to {}",
            aside.display()
        );
    }
}

/// Set by commands whose end must not wait for blocking work they abandoned (the daemon).
pub static DETACH_BLOCKING: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn main() {
    std::process::exit(exit_code_of_run());
}

/// Run the CLI and return the process exit code.
fn exit_code_of_run() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version print as clap writes them; a usage error is one line, like
        // every other error.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let text = e.render().to_string();
            let what: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            let what = what.join(" ");
            let what = what.trim_start_matches("error: ");
            say_err!(
                "lifeboat: error: {} (see --help)",
                lifeboat::text::escape(what)
            );
            return 2;
        }
    };
    init_logging(matches!(
        cli.command,
        Command::Daemon(_) | Command::Replicate(_)
    ));
    let out = Output {
        json: cli.json,
        quiet: cli.quiet,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say_err!("lifeboat: error: cannot start runtime: {e}");
            return 1;
        }
    };
    let result = rt.block_on(run(cli));
    // The daemon's aborted backups may leave blocking reads running: do not wait for them.
    if DETACH_BLOCKING.load(std::sync::atomic::Ordering::SeqCst) {
        rt.shutdown_background();
    }
    match result {
        Ok(code) => code,
        Err(e) => {
            say_err!("lifeboat: error: {e}");
            if out.json {
                out.json(
                    &serde_json::json!({"error": e.to_string(), "exit_code": e.kind.exit_code()}),
                );
            }
            e.kind.exit_code()
        }
    }
}

/// Logs go to stderr, filtered by `LIFEBOAT_LOG` (else `RUST_LOG`; errors only by default, info
/// for the daemon); the object
/// store's retries are always said, one line each, so a slow or silent server is visible.
fn init_logging(daemon: bool) {
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::filter::{EnvFilter, Targets};
    use tracing_subscriber::prelude::*;
    let main = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_filter(
            EnvFilter::builder()
                .with_default_directive(if daemon {
                    LevelFilter::INFO.into()
                } else {
                    LevelFilter::ERROR.into()
                })
                // `RUST_LOG`, the ecosystem's name, when `LIFEBOAT_LOG` is not set.
                .with_env_var(
                    if std::env::var_os("LIFEBOAT_LOG").is_none()
                        && std::env::var_os("RUST_LOG").is_some()
                    {
                        "RUST_LOG"
                    } else {
                        "LIFEBOAT_LOG"
                    },
                )
                .from_env_lossy(),
        );
    let retries = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .event_format(RetryLine)
        .with_filter(
            Targets::new()
                .with_target("object_store::client::retry", LevelFilter::INFO)
                .with_target("object_store::client::get", LevelFilter::INFO),
        );
    let _ = tracing_subscriber::registry()
        .with(main)
        .with(retries)
        .try_init();
}

/// `lifeboat: retrying: <object_store's message>`.
struct RetryLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for RetryLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut w: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut text = String::new();
        ctx.field_format().format_fields(
            tracing_subscriber::fmt::format::Writer::new(&mut text),
            event,
        )?;
        // A refused connection fails fast and says so in the error; what is worth a line is
        // a wait: a timeout, a server error.
        if text.contains("kind Connect") {
            return Ok(());
        }
        writeln!(w, "lifeboat: retrying: {}", lifeboat::text::redact(&text))
    }
}

async fn run(cli: Cli) -> Result<i32> {
    let ctx = Ctx {
        config: Config::load(cli.config.as_deref())?,
        config_path: cli.config.clone(),
        repo_flag: cli.repo,
        out: Output {
            json: cli.json,
            quiet: cli.quiet,
        },
    };
    match cli.command {
        Command::Backup(a) => backup::run(&ctx, a).await,
        Command::List(a) => list::run(&ctx, a).await,
        Command::Restore(a) => restore::run(&ctx, a).await,
        Command::Replicate(a) => replicate::run(&ctx, a).await,
        Command::Verify(a) => verify::run(&ctx, a).await,
        Command::Cleanup(a) => cleanup::run(&ctx, a).await,
        Command::Dump(a) => dump::run(&ctx, a).await,
        Command::Import(a) => import::run(&ctx, a).await,
        Command::Tenants(a) => tenants::run(&ctx, a).await,
        Command::Export(a) => export::run(&ctx, a).await,
        Command::Restores(a) => restores::run(&ctx, a).await,
        Command::Prune(a) => prune::run(&ctx, a).await,
        Command::Compact(a) => compact::run(&ctx, a).await,
        Command::Pin(a) => pin::run(&ctx, a).await,
        Command::Unpin(a) => unpin::run(&ctx, a).await,
        Command::Release(a) => release::run(&ctx, a).await,
        Command::Status(a) => status::run(&ctx, a).await,
        Command::Alert(a) => alert::run(&ctx, a).await,
        Command::Daemon(a) => daemon::run(&ctx, a).await,
        Command::Incident(a) => incident::run(&ctx, a).await,
        Command::Demo(a) => demo::run(&ctx, a).await,
        Command::Drill(a) => drill::run(&ctx, a).await,
    }
}

/// The database names a multi-database command covers: `--db` (a fleet's name: every database
/// its glob finds now), else the configured and discovered ones, else every database found in
/// the repository. With a glob in the config, also every database the repository holds: a
/// fleet's databases whose files are gone keep their backups, under retention.
pub async fn database_names(
    ctx: &Ctx,
    repo: &Repository,
    flag: Option<&str>,
) -> Result<Vec<String>> {
    if let Some(f) = flag {
        return Ok(ctx
            .config
            .select(f)?
            .sources
            .into_iter()
            .map(|s| s.name)
            .collect());
    }
    let mut configured: Vec<String> = ctx
        .config
        .all_databases()
        .into_iter()
        .map(|d| d.name)
        .collect();
    if ctx.config.has_fleets() {
        let known: std::collections::HashSet<String> = configured.iter().cloned().collect();
        let held = repo.databases().await?;
        configured.extend(held.into_iter().filter(|n| !known.contains(n)));
        return Ok(configured);
    }
    if !configured.is_empty() {
        return Ok(configured);
    }
    repo.databases().await
}

/// The one database a command such as restore works on: `--db`, the only configured one, or
/// the only one the repository holds.
pub async fn single_database_name(
    ctx: &Ctx,
    repo: &Repository,
    flag: Option<&str>,
) -> Result<String> {
    if flag.is_some() || !ctx.config.databases.is_empty() {
        return Ok(ctx.config.single_database(flag)?.name);
    }
    match repo.databases().await?.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Error::new(
            Kind::NotFound,
            format!("no backups in {}", repo.url()),
        )),
        many => Err(Error::new(
            Kind::Config,
            format!(
                "{} holds several databases ({}): pass --db NAME",
                repo.url(),
                many.join(", ")
            ),
        )),
    }
}

/// Resolve a backup selector for a command, and say which backup `latest` or `--at` picked
/// (id, kind, time, the safety backups passed over; on stdout, or stderr when stdout carries
/// data) and, on stderr, the newer damaged backups it passed over and why.
pub async fn select_backup(
    ctx: &Ctx,
    repo: &Repository,
    db: &str,
    sel: &Selector,
    stdout_is_data: bool,
) -> Result<Selection> {
    let s = select(repo, db, sel).await?;
    if s.selector != s.manifest.id {
        if stdout_is_data {
            if !ctx.out.quiet {
                say_err!("lifeboat: {}", s.describe());
            }
        } else {
            ctx.out.line(s.describe());
        }
    }
    if !ctx.out.quiet {
        for sk in s.skipped.iter().filter(|s| s.damaged()) {
            say_err!("lifeboat: warning: skipped backup {}: {}", sk.id, sk.reason);
        }
        if let Some(bad) = &s.bad {
            say_err!(
                "lifeboat: warning: backup {} failed its {} on {} and does not count as good ({}); used because its id was given",
                s.manifest.id,
                bad.rung,
                bad.since.format("%Y-%m-%d %H:%M UTC"),
                lifeboat::text::escape(&bad.problem)
            );
        }
    }
    Ok(s)
}

/// Parse a duration flag such as `30s`, `500ms` or `2h`.
pub fn parse_duration(s: &str) -> std::result::Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 30s, 500ms, 2h)"))
}

/// Seconds with one decimal, for human output.
pub fn secs(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
