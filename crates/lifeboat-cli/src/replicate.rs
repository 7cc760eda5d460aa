//! `lifeboat replicate`: continuous replication of one SQLite database (WAL mode) in the
//! foreground, until Ctrl-C or SIGTERM; each sync ships the new whole transactions as a
//! segment (docs/format.md, "Replication").

use std::time::Duration;

use crate::Ctx;
use lifeboat::error::{Error, Kind, Result, ResultExt};
use lifeboat::replicate::lease::{self, ReplicationLease};
use lifeboat::replicate::pace::Pace;
use lifeboat::replicate::{ReplicateOptions, Replicator, SyncReport};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat replicate --db ./studio.db
  lifeboat replicate --db studio-platform-db --sync-interval 500ms

The database must be in WAL mode (PRAGMA journal_mode=WAL). lifeboat takes over checkpoints:
it holds a read transaction so nothing is checkpointed away before it is shipped, runs PASSIVE
checkpoints itself, and TRUNCATE when the WAL grows past --truncate-wal-size. One replicator
per database and repository, on any host: it takes the lease <db>/leases/replicate.<n>.json
([daemon] lease_ttl) that daemons take too, and refuses while another holds it.")]
pub struct Args {
    /// The database (a configured name or a file path).
    #[arg(long, value_name = "NAME|PATH")]
    db: Option<String>,
    /// How often new transactions are shipped, the restore resolution (default: the
    /// database's `sync_interval`, else `[replication]`'s, else 1s).
    #[arg(long, value_parser = crate::parse_duration)]
    sync_interval: Option<Duration>,
    /// A PASSIVE checkpoint after this many frames shipped (default 1000)…
    #[arg(long, value_name = "FRAMES")]
    checkpoint_frames: Option<u64>,
    /// …or this long after the last one (default 1m).
    #[arg(long, value_parser = crate::parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// The safety valve: a WAL larger than this many bytes gets a TRUNCATE checkpoint
    /// (default 512 MiB).
    #[arg(long, value_name = "BYTES")]
    truncate_wal_size: Option<u64>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    let source = ctx.config.single_database(args.db.as_deref())?;
    if source.d1.is_some() || source.sql_dump.is_some() {
        return Err(Error::new(
            Kind::Config,
            format!(
                "replicate: {} is not a SQLite file (D1 databases are backed up, not replicated)",
                source.name
            ),
        ));
    }
    if args.sync_interval.is_some_and(|d| d.is_zero()) || args.checkpoint_frames == Some(0) {
        return Err(Error::new(
            Kind::Config,
            "replicate: --sync-interval and --checkpoint-frames must be more than 0",
        ));
    }
    let repo = std::sync::Arc::new(ctx.repository(true).step("replicate")?);
    let defaults = ctx
        .config
        .replication
        .options(args.sync_interval.or(source.replicate));
    let opts = ReplicateOptions {
        checkpoint_frames: args.checkpoint_frames.unwrap_or(defaults.checkpoint_frames),
        checkpoint_interval: args
            .checkpoint_interval
            .unwrap_or(defaults.checkpoint_interval),
        truncate_wal_bytes: args
            .truncate_wal_size
            .unwrap_or(defaults.truncate_wal_bytes),
        ..defaults
    };
    let sync_interval = opts.sync_interval;
    // Registered before the first sync (which takes a snapshot, and may be long): a stop asked
    // for meanwhile is kept, and honoured once it is done.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::io("replicate: SIGTERM handler", e))?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Error::io("replicate: SIGINT handler", e))?;
    // Nothing is written for a database that would be refused.
    lifeboat::replicate::connection::preflight(&source.path).step("replicate")?;
    // Before anything is written: another replicator of this database into this repository,
    // on any host, holds the lease.
    let mut lease = match ReplicationLease::take(&repo, &source.name, ctx.config.daemon.lease_ttl())
        .await
        .step("replicate: take the replication lease")?
    {
        Ok(l) => l,
        Err(held) => return Err(lease::held_elsewhere(&source.name, &held).context("replicate")),
    };
    let (mut r, first) =
        match Replicator::open(std::sync::Arc::clone(&repo), &source, opts.clone()).await {
            Ok(opened) => opened,
            Err(e) => {
                lease.give_up(&repo).await;
                return Err(e.context("replicate"));
            }
        };
    say(ctx, &r, &first);
    ctx.out.line(format!(
        "replicating {} ({}) to {} every {}; generation {}; Ctrl-C stops",
        source.name,
        source.path.display(),
        repo.url(),
        humantime::format_duration(sync_interval),
        r.generation().unwrap_or("-")
    ));
    // Uploads every sync interval; ticks in between while the WAL fills fast (`Pace`).
    let mut pace = Pace::new(&opts, std::time::Instant::now());
    let mut wait = sync_interval;
    loop {
        tokio::select! {
            _ = pace.sleep(wait, |n| r.wal_grew(n)) => {}
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
        // Taken over while this one could not renew (frozen, or cut off): ship nothing more.
        if !lease.keep(&repo).await {
            drop(r);
            return Err(Error::new(
                Kind::Database,
                format!(
                    "replicate: another lifeboat took {} over while this one's lease had expired; stopped, shipping nothing more",
                    source.name
                ),
            ));
        }
        let now = std::time::Instant::now();
        let upload = pace.upload_due(now);
        let ticked = r.tick(upload).await;
        wait = pace.after(upload, ticked.as_ref().map_or(0, |t| t.frames), now);
        tracing::debug!(
            upload,
            frames = ticked.as_ref().map_or(0, |t| t.frames),
            took_ms = now.elapsed().as_millis() as u64,
            wait_ms = wait.as_millis() as u64,
            "tick"
        );
        match ticked {
            Ok(rep) => say(ctx, &r, &rep),
            // The database itself is gone or changed mode: stop, loudly.
            // What is staged goes up first: it is in no other place but the local disk.
            Err(e) if matches!(e.kind, Kind::Database | Kind::Config | Kind::Permission) => {
                if let Err(up) = r.flush().await {
                    say_err!("lifeboat: replicate: staged frames not uploaded: {up}");
                }
                drop(r);
                lease.give_up(&repo).await;
                return Err(e.context("replicate"));
            }
            // The repository may come back: say so, and go on trying.
            Err(e) => say_err!("lifeboat: replicate: {e} (retrying)"),
        }
    }
    // What reached the repository as segments, counted as each was stored (a sync that
    // failed after storing some, or whose report an error replaced, counted all the same).
    let before = r.stored();
    let last = r.close().await;
    lease.give_up(&repo).await;
    let last = last.step("replicate")?;
    let (commits, segments) = (
        before.commits + last.stored_commits,
        before.segments + last.segments,
    );
    ctx.out.line(format!(
        "stopped: {commits} commit(s) in {segments} segment(s) stored this run"
    ));
    ctx.out.json(&serde_json::json!({
        "database": source.name,
        "commits": commits,
        "segments": segments,
    }));
    Ok(0)
}

fn say(ctx: &Ctx, r: &Replicator, rep: &SyncReport) {
    if let Some(why) = &rep.new_generation {
        ctx.out.line(format!(
            "new generation {}: {why}",
            r.generation().unwrap_or("-")
        ));
    }
}
