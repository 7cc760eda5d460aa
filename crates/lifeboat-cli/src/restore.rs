//! `lifeboat restore`: a whole database from a backup into a file; one tenant into a live
//! database (`tenant_restore.rs`); into D1 (`restore_d1.rs`).

use std::path::PathBuf;

use crate::shared_args::choice;
use crate::{secs, select_backup, single_database_name, Ctx};
use lifeboat::error::{Result, ResultExt};
use lifeboat::replicate::PitrTarget;
use lifeboat::repo::events::{Event, RESTORE_DONE};
use lifeboat::repo::manifest::human_size;
use lifeboat::restore::to_file::{parse_time, restore, IntegrityCheck, RestoreOptions, Selector};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat restore --db ./studio.db --to ./restored.db
  lifeboat restore --db studio-platform-db --backup backup-2026-11-20T020000Z --to ./studio.db --force
  lifeboat restore --db studio-platform-db --at 2026-11-20T03:00Z --to ./before-incident.db
  lifeboat restore --db studio-platform-db --at 2026-12-02T10:15:30.250Z --to ./pitr.db   # replicated
  lifeboat restore --tenant 0f8a3c1e-… --backup latest --into ./studio.db --dry-run
  lifeboat restore --tenant 0f8a3c1e-… --from-file ./studio.db.pre-tenant-restore-… --into ./studio.db
  lifeboat restore --backup latest --to-d1 studio-platform-db-recovery --remote
  lifeboat restore --backup latest --to-d1 studio-platform-db --remote --force   # replaces production")]
pub struct Args {
    /// Database whose backup to restore (a configured name or a file path; default: the only
    /// configured database, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    pub(crate) db: Option<String>,
    /// Backup id, or `latest`.
    #[arg(
        long,
        value_name = "ID|latest",
        default_value = "latest",
        conflicts_with = "at"
    )]
    pub(crate) backup: String,
    /// A replicated database: its state as of the last commit seen at or before this time
    /// (RFC 3339, fractions allowed: 2026-12-02T10:15:30.250Z), or `latest` (the newest
    /// replicated commit). Otherwise: the newest backup taken at or before it.
    #[arg(long, value_name = "TIME|latest")]
    pub(crate) at: Option<String>,
    /// File to restore into.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["to_d1", "tenant"], conflicts_with_all = ["to_d1", "tenant"])]
    pub(crate) to: Option<PathBuf>,
    /// Restore only this tenant's rows, into the live database --into (see `lifeboat tenants map`).
    #[arg(long, value_name = "ID", conflicts_with = "to_d1")]
    pub(crate) tenant: Option<String>,
    /// With --tenant: the live database to restore the tenant into.
    #[arg(
        long,
        value_name = "PATH",
        requires = "tenant",
        conflicts_with = "into_d1"
    )]
    pub(crate) into: Option<PathBuf>,
    /// With --tenant: a live D1 database to restore the tenant into (through wrangler).
    #[arg(long, value_name = "DB", requires = "tenant")]
    into_d1: Option<String>,
    /// Download and check the backup and say what would change (per table with --tenant);
    /// change nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// With --tenant: what to keep of what the restore replaces: `tenant` (the tenant's rows as
    /// they were, copied under the write lock; the default), `full` (a full backup of the live
    /// database first) or `off`.
    #[arg(
        long,
        value_name = "tenant|full|off",
        requires = "tenant",
        default_value = "tenant"
    )]
    pub(crate) safety_backup: lifeboat::tenant::restore::Safety,
    /// With --tenant: keep no safety backup (same as --safety-backup off).
    #[arg(long, requires = "tenant")]
    pub(crate) no_safety_backup: bool,
    /// With --tenant: how long to wait for the live database's other writers.
    #[arg(long, value_parser = crate::parse_duration, default_value = "30s", requires = "tenant")]
    pub(crate) lock_timeout: std::time::Duration,
    /// With --tenant: restore the tenant from this local SQLite file instead of a backup (the
    /// tenant's rows an earlier restore kept next to the database, or a tenant export).
    #[arg(long, value_name = "FILE", requires = "tenant", conflicts_with_all = ["at", "into_d1"])]
    pub(crate) from_file: Option<PathBuf>,
    /// With --tenant: list every table of the tenant, also those that do not change.
    #[arg(long, short)]
    pub(crate) verbose: bool,
    /// Or a Cloudflare D1 database (through wrangler). It must be empty unless --force.
    #[arg(long, value_name = "DB")]
    to_d1: Option<String>,
    /// With --to-d1: the production database (`wrangler --remote`).
    #[arg(long, conflicts_with = "local")]
    pub(crate) remote: bool,
    /// With --to-d1: the local development database (`wrangler --local`, the default).
    #[arg(long)]
    pub(crate) local: bool,
    /// With --to-d1: the wrangler configuration file (`-c`).
    #[arg(long, value_name = "FILE")]
    pub(crate) wrangler_config: Option<PathBuf>,
    /// With --to-d1: split import files larger than this (bytes) into parts applied in order.
    /// Each part is atomic; the whole restore then is not (see the README).
    #[arg(long, value_name = "BYTES", requires = "to_d1", default_value_t = lifeboat::d1::target::D1_MAX_IMPORT_FILE)]
    pub(crate) max_import_file: u64,
    /// Replace an existing file (the old one, with its -wal/-shm, is moved to
    /// <PATH>.pre-restore-<time>), or a non-empty D1 database (a safety backup of it is
    /// taken first; its tables, views and triggers are dropped in the same atomic import).
    #[arg(long)]
    pub(crate) force: bool,
    /// `quick` (PRAGMA quick_check) or `full` (PRAGMA integrity_check, slow on large databases).
    #[arg(long, value_parser = choice::<IntegrityCheck>(IntegrityCheck::CHOICES), default_value = "quick")]
    pub(crate) integrity_check: IntegrityCheck,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    // `--at` picks a replicated commit when the database is replicated, else a backup.
    let pitr = match args.at.as_deref() {
        Some("latest") => Some(PitrTarget::Latest),
        Some(t) => Some(PitrTarget::At(parse_time(t)?)),
        None => None,
    };
    let sel = match pitr {
        Some(PitrTarget::At(t)) => Selector::At(t),
        _ => Selector::Id(args.backup.clone()),
    };
    if let Some(to) = &args.to {
        // A target that cannot be written is refused before anything else is done or said.
        ctx.refuse_inside_repository(to).step("restore")?;
        lifeboat::fs::atomic_replace::check_target(to, args.force).step("restore")?;
    }
    let tenant_opts = || crate::tenant_restore::Opts {
        options: lifeboat::tenant::restore::TenantRestoreOptions {
            dry_run: args.dry_run,
            safety: if args.no_safety_backup {
                lifeboat::tenant::restore::Safety::Off
            } else {
                args.safety_backup
            },
            lock_timeout: args.lock_timeout,
            scratch_dir: None,
        },
        verbose: args.verbose,
    };
    if let (Some(tenant), Some(into), Some(file)) = (&args.tenant, &args.into, &args.from_file) {
        // Not from the repository, but records and safety backups still go there, under the
        // database's name: --db, the only configured database, or the live file's stem.
        let repo = ctx.repository(true).step("restore")?;
        let db = match (args.db.as_deref(), ctx.config.single_database(None)) {
            (Some(flag), _) => ctx.config.database(flag)?.name,
            (None, Ok(only)) => only.name,
            (None, Err(_)) => ctx.config.database(&into.display().to_string())?.name,
        };
        let source = lifeboat::tenant::restore::TenantSource::File {
            path: file,
            database: &db,
        };
        return crate::tenant_restore::run(ctx, &repo, source, tenant, into, &tenant_opts()).await;
    }
    let repo = ctx.repository(false).step("restore")?;
    let db = single_database_name(ctx, &repo, args.db.as_deref()).await?;
    if let (Some(target), Some(to), None, None) = (pitr, &args.to, &args.tenant, &args.to_d1) {
        if crate::restore_pitr::run(ctx, &repo, &db, target, to, &args).await? {
            return Ok(0);
        }
    }
    let selection = select_backup(ctx, &repo, &db, &sel, false)
        .await
        .step("restore")?;
    let m = selection.manifest.clone();
    let opts = RestoreOptions {
        force: args.force,
        integrity: args.integrity_check,
        dry_run: args.dry_run,
        scratch_dir: None,
    };
    if let Some(d1) = &args.to_d1 {
        return crate::restore_d1::to_d1(ctx, &args, &repo, &m, d1).await;
    }
    if let (Some(tenant), Some(d1)) = (&args.tenant, &args.into_d1) {
        return crate::restore_d1::tenant_into_d1(ctx, &args, &repo, &m, tenant, d1).await;
    }
    if let (Some(tenant), None) = (&args.tenant, &args.into) {
        return Err(lifeboat::error::Error::new(
            lifeboat::error::Kind::Config,
            format!("restore --tenant {tenant} needs --into PATH or --into-d1 DB"),
        ));
    }
    if let (Some(tenant), Some(into)) = (&args.tenant, &args.into) {
        let source = lifeboat::tenant::restore::TenantSource::Backup(&m);
        return crate::tenant_restore::run(ctx, &repo, source, tenant, into, &tenant_opts()).await;
    }
    let to = args.to.clone().unwrap_or_default();
    let pb = ctx.out.progress(&m.id);
    let report = restore(&repo, &m, &to, &opts, &crate::bar(&pb)).await;
    pb.finish_and_clear();
    let report = report.step("restore")?;
    if let Some(link) = &report.link {
        let verb = if report.dry_run {
            "would restore"
        } else {
            "restored"
        };
        ctx.out.line(format!(
            "{} is a symbolic link: {verb} into the file it points at, {}",
            link.display(),
            report.target.display()
        ));
    }
    if report.dry_run {
        let aside = if report.would_move_aside {
            format!(
                "would move the existing database aside to {}.pre-restore-<time>, then ",
                report.target.display()
            )
        } else {
            "would ".to_string()
        };
        ctx.out.line(format!(
            "dry run: {} {} downloaded and checked ({}): {} tables, {} rows; {aside}restore it to {}; nothing changed  {}",
            m.database,
            m.id,
            args.integrity_check,
            report.tables,
            report.rows,
            report.target.display(),
            secs(report.duration_ms)
        ));
    } else {
        if let Some(earlier) = &report.earlier_aside {
            ctx.out.line(format!(
                "an earlier restore was killed while moving the old database aside: finished, it is {}",
                earlier.display()
            ));
        }
        let placed = Placed {
            db: &m.database,
            backup: &m.id,
            target: &report.target,
            moved_aside: report.moved_aside.as_deref(),
            duration_ms: report.duration_ms,
        };
        let summary = format!("restored {} to {}", m.id, report.target.display());
        placed
            .tell(ctx, &repo, &summary, serde_json::json!({}))
            .await;
        ctx.out.line(format!(
            "restored {} {} to {}  {}  {} tables  {} rows  checked ({})  {}",
            m.database,
            m.id,
            report.target.display(),
            human_size(report.image_size),
            report.tables,
            report.rows,
            args.integrity_check,
            secs(report.duration_ms)
        ));
    }
    let mut doc = serde_json::to_value(&report)
        .map_err(|e| lifeboat::Error::new(lifeboat::Kind::Internal, format!("JSON output: {e}")))?;
    doc["selection"] = selection.to_json();
    ctx.out.json(&doc);
    Ok(0)
}

/// A restore placed at its target: the old file's new name said, and the restore logged as an
/// event in the repository.
pub(crate) struct Placed<'a> {
    pub db: &'a str,
    pub backup: &'a str,
    pub target: &'a std::path::Path,
    pub moved_aside: Option<&'a std::path::Path>,
    pub duration_ms: u64,
}

impl Placed<'_> {
    /// `more`: the event's details beyond the target, the old file and the duration.
    pub async fn tell(
        &self,
        ctx: &Ctx,
        repo: &lifeboat::repo::Repository,
        summary: &str,
        more: serde_json::Value,
    ) {
        if let Some(aside) = self.moved_aside {
            ctx.out.line(format!(
                "previous database moved aside to {}",
                aside.display()
            ));
        }
        let mut details = serde_json::json!({
            "target": self.target.display().to_string(),
            "moved_aside": self.moved_aside.map(|p| p.display().to_string()),
            "duration_ms": self.duration_ms,
        });
        if let (Some(d), serde_json::Value::Object(more)) = (details.as_object_mut(), more) {
            d.extend(more);
        }
        let event = Event::new(RESTORE_DONE, self.db, summary)
            .with_backup(self.backup)
            .with_details(details);
        repo.log_event_best_effort(self.db, &event).await;
    }
}
