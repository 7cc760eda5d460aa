//! `lifeboat restore`: restore a whole database from a backup into a file.

use std::path::PathBuf;

use crate::shared_args::choice;
use crate::{secs, select_backup, single_database_name, Ctx};
use lifeboat::backup::pipeline::BackupOptions;
use lifeboat::d1::wrangler::Wrangler;
use lifeboat::error::{Result, ResultExt};
use lifeboat::fs::scratch::scratch;
use lifeboat::repo::manifest::human_size;
use lifeboat::repo::manifest::Manifest;
use lifeboat::repo::repository::Repository;
use lifeboat::restore::to_d1::{restore_d1, D1Target};
use lifeboat::restore::to_file::{
    fetch_checked, parse_time, restore, IntegrityCheck, RestoreOptions, Selector,
};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat restore --db ./studio.db --to ./restored.db
  lifeboat restore --db studio-platform-db --backup backup-2026-11-20T020000Z --to ./studio.db --force
  lifeboat restore --db studio-platform-db --at 2026-11-20T03:00Z --to ./before-incident.db
  lifeboat restore --tenant 0f8a3c1e-… --backup latest --into ./studio.db --dry-run
  lifeboat restore --tenant 0f8a3c1e-… --from-file ./studio.db.pre-tenant-restore-… --into ./studio.db
  lifeboat restore --backup latest --to-d1 studio-platform-db-recovery --remote
  lifeboat restore --backup latest --to-d1 studio-platform-db --remote --force   # replaces production")]
pub struct Args {
    /// Database whose backup to restore (a configured name or a file path; default: the only
    /// configured database, or the only one in the repository).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// Backup id, or `latest`.
    #[arg(
        long,
        value_name = "ID|latest",
        default_value = "latest",
        conflicts_with = "at"
    )]
    backup: String,
    /// Use the newest backup taken at or before this UTC time (e.g. 2026-11-20T03:00Z).
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// File to restore into.
    #[arg(long, value_name = "PATH", required_unless_present_any = ["to_d1", "tenant"], conflicts_with_all = ["to_d1", "tenant"])]
    to: Option<PathBuf>,
    /// Restore only this tenant's rows, into the live database --into (see `lifeboat tenants map`).
    #[arg(long, value_name = "ID", conflicts_with = "to_d1")]
    tenant: Option<String>,
    /// With --tenant: the live database to restore the tenant into.
    #[arg(
        long,
        value_name = "PATH",
        requires = "tenant",
        conflicts_with = "into_d1"
    )]
    into: Option<PathBuf>,
    /// With --tenant: a live D1 database to restore the tenant into (through wrangler).
    #[arg(long, value_name = "DB", requires = "tenant")]
    into_d1: Option<String>,
    /// Download and check the backup and say what would change (per table with --tenant);
    /// change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --tenant: what to keep of what the restore replaces: `tenant` (the tenant's rows as
    /// they were, copied under the write lock; the default), `full` (a full backup of the live
    /// database first) or `off`.
    #[arg(
        long,
        value_name = "tenant|full|off",
        requires = "tenant",
        default_value = "tenant"
    )]
    safety_backup: lifeboat::tenant::restore::Safety,
    /// With --tenant: keep no safety backup (same as --safety-backup off).
    #[arg(long, requires = "tenant")]
    no_safety_backup: bool,
    /// With --tenant: how long to wait for the live database's other writers.
    #[arg(long, value_parser = crate::parse_duration, default_value = "30s", requires = "tenant")]
    lock_timeout: std::time::Duration,
    /// With --tenant: restore the tenant from this local SQLite file instead of a backup (the
    /// tenant's rows an earlier restore kept next to the database, or a tenant export).
    #[arg(long, value_name = "FILE", requires = "tenant", conflicts_with_all = ["at", "into_d1"])]
    from_file: Option<PathBuf>,
    /// With --tenant: list every table of the tenant, also those that do not change.
    #[arg(long, short)]
    verbose: bool,
    /// Or a Cloudflare D1 database (through wrangler). It must be empty unless --force.
    #[arg(long, value_name = "DB")]
    to_d1: Option<String>,
    /// With --to-d1: the production database (`wrangler --remote`).
    #[arg(long, conflicts_with = "local")]
    remote: bool,
    /// With --to-d1: the local development database (`wrangler --local`, the default).
    #[arg(long)]
    local: bool,
    /// With --to-d1: the wrangler configuration file (`-c`).
    #[arg(long, value_name = "FILE")]
    wrangler_config: Option<PathBuf>,
    /// With --to-d1: split import files larger than this (bytes) into parts applied in order.
    /// Each part is atomic; the whole restore then is not (see the README).
    #[arg(long, value_name = "BYTES", requires = "to_d1", default_value_t = lifeboat::d1::target::D1_MAX_IMPORT_FILE)]
    max_import_file: u64,
    /// Replace an existing file (the old one, with its -wal/-shm, is moved to
    /// <PATH>.pre-restore-<time>), or a non-empty D1 database (a safety backup of it is
    /// taken first; its tables, views and triggers are dropped in the same atomic import).
    #[arg(long)]
    force: bool,
    /// `quick` (PRAGMA quick_check) or `full` (PRAGMA integrity_check, slow on large databases).
    #[arg(long, value_parser = choice::<IntegrityCheck>(IntegrityCheck::CHOICES), default_value = "quick")]
    integrity_check: IntegrityCheck,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let sel = match &args.at {
        Some(t) => Selector::At(parse_time(t)?),
        None => Selector::Id(args.backup.clone()),
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
        return to_d1(ctx, &args, &repo, &m, d1).await;
    }
    if let (Some(tenant), Some(d1)) = (&args.tenant, &args.into_d1) {
        return tenant_into_d1(ctx, &args, &repo, &m, tenant, d1).await;
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
        if let Some(aside) = &report.moved_aside {
            ctx.out.line(format!(
                "previous database moved aside to {}",
                aside.display()
            ));
        }
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

/// The D1 database `name` as a restore target: a configured D1 database of that name lends its
/// settings; flags override them.
fn d1_target(ctx: &Ctx, args: &Args, name: &str, m: &Manifest) -> Result<D1Target> {
    let all = ctx.config.all_databases();
    let configured = all.iter().find(|d| {
        d.d1.as_ref().is_some_and(|c| c.database == name) || (d.name == name && d.d1.is_some())
    });
    // Otherwise the D1 database whose backup this is lends how to run wrangler (the command and
    // the wrangler config file), never its name or location.
    let source = all.iter().find(|d| d.name == m.database && d.d1.is_some());
    let (database, mut remote, mut config, wrangler_cmd, backup_name) = match (configured, source) {
        (Some(d), _) => {
            let c = d.d1.clone().expect("filtered on d1");
            (
                c.database,
                c.remote,
                c.config,
                d.wrangler.clone(),
                d.name.clone(),
            )
        }
        (None, Some(s)) => (
            name.to_string(),
            false,
            s.d1.as_ref().and_then(|c| c.config.clone()),
            s.wrangler.clone(),
            name.to_string(),
        ),
        (None, None) => (name.to_string(), false, None, None, name.to_string()),
    };
    if args.remote {
        remote = true;
    }
    if args.local {
        remote = false;
    }
    if args.wrangler_config.is_some() {
        config = args.wrangler_config.clone();
    }
    lifeboat::repo::repository::check_name(&backup_name)?;
    Ok(D1Target {
        database,
        remote,
        wrangler: Wrangler::new(wrangler_cmd.as_deref(), config),
        backup_name,
        max_import_file: args.max_import_file,
    })
}

async fn to_d1(ctx: &Ctx, args: &Args, repo: &Repository, m: &Manifest, name: &str) -> Result<i32> {
    lifeboat::restore::to_file::refuse_tenant_scoped(m).step("restore")?;
    let target = d1_target(ctx, args, name, m)?;
    let t = std::time::Instant::now();
    let tmp = scratch(None)?;
    let image = fetch_checked(repo, m, tmp.path()).await.step("restore")?;
    let fetched = t.elapsed().as_millis() as u64;
    let report = restore_d1(
        repo,
        m,
        &image,
        &target,
        args.force,
        args.dry_run,
        &BackupOptions::default(),
    )
    .await
    .step("restore")?;
    ctx.out
        .line(format!("  download and check {}  {}", m.id, secs(fetched)));
    for (step, ms) in &report.steps {
        ctx.out.line(format!("  {step}  {}", secs(*ms)));
    }
    if let Some(id) = &report.safety_backup {
        ctx.out.line(format!(
            "safety backup of the target before it was replaced: {id} (database {})",
            target.backup_name
        ));
    }
    let place = if report.remote { "remote" } else { "local" };
    if report.dry_run {
        let drop = match report.would_drop {
            0 => String::new(),
            n => format!("back it up, drop its {n} tables, views and triggers and "),
        };
        ctx.out.line(format!(
            "dry run: {} {} downloaded and checked; would {drop}import {} tables, {} rows into D1 database {} ({place}) in {} atomic file(s); nothing changed",
            m.database, m.id, report.manifest_tables, report.rows, report.database, report.import_parts
        ));
    } else {
        ctx.out.line(format!(
            "restored {} {} into D1 database {} ({place}): {} tables (backup: {}), {} rows, row counts match",
            m.database,
            m.id,
            report.database,
            report.tables,
            report.manifest_tables,
            report.rows
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(0)
}

/// `restore --tenant … --into-d1 DB`.
async fn tenant_into_d1(
    ctx: &Ctx,
    args: &Args,
    repo: &Repository,
    m: &Manifest,
    tenant: &str,
    name: &str,
) -> Result<i32> {
    let target = d1_target(ctx, args, name, m)?;
    let tmp = scratch(None)?;
    let image = fetch_checked(repo, m, tmp.path())
        .await
        .step("restore --tenant")?;
    let cfg = ctx.config.tenancy_for(Some(&m.database));
    let report = lifeboat::tenant::to_d1::restore_tenant_d1(
        repo,
        m,
        &image,
        &target,
        &cfg,
        tenant,
        !args.no_safety_backup,
        args.dry_run,
        &BackupOptions::default(),
    )
    .await
    .step("restore --tenant")?;
    for (step, ms) in &report.steps {
        ctx.out.line(format!("  {step}  {}", secs(*ms)));
    }
    if let Some(id) = &report.safety_backup {
        ctx.out.line(format!(
            "safety backup of the target: {id} (database {})",
            target.backup_name
        ));
    }
    let rows: u64 = report.tables.iter().map(|(_, n)| n).sum();
    let tenant = lifeboat::text::escape(tenant);
    if report.dry_run {
        ctx.out.line(format!(
            "dry run: would replace tenant {tenant}'s rows in D1 database {} with the {rows} rows in {} tables of {} (dropping and recreating {} trigger(s)); nothing changed",
            report.database,
            report.tables.len(),
            m.id,
            report.triggers_recreated
        ));
    } else {
        ctx.out.line(format!(
            "restored tenant {tenant} from {} into D1 database {}: {rows} rows in {} tables match the backup; {} trigger(s) dropped and recreated",
            m.id,
            report.database,
            report.tables.len(),
            report.triggers_recreated
        ));
    }
    ctx.out.json_of(&report)?;
    Ok(0)
}
