//! `lifeboat daemon`: run every configured database's backups on its schedule until stopped.

use std::time::Duration;

use crate::{parse_duration, Ctx};
use lifeboat::error::Result;
use lifeboat_daemon::daemon::{run as run_daemon, Options};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  lifeboat daemon --config /etc/lifeboat/lifeboat.toml
  lifeboat daemon --once                  # every database now (unchanged ones skipped), then exit

Schedules are 5-field cron in UTC: `[daemon] schedule = \"0 2 * * *\"` (the default) or
`schedule` on a [[database]]. At start, and after the host wakes, a database whose scheduled time
passed since its newest good backup is backed up at once. `max_concurrent` (default 2) backups
run at a time, one per database. Each job takes a lease in the repository, so two daemons on one
repository never run the same job twice. SIGTERM or SIGINT: no new jobs; running backups get
--shutdown-timeout, then are aborted (no manifest written); exit 0. SIGHUP reloads the config (a
bad one is refused and the old one stays). Logs: one line per job (LIFEBOAT_LOG, default info).")]
pub struct Args {
    /// After SIGTERM, how long running backups get to finish before they are aborted.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    shutdown_timeout: Duration,
    /// Back every database up once now (skipping unchanged ones), then exit.
    #[arg(long)]
    once: bool,
    /// Serve Prometheus `/metrics` and `/healthz` on this address (127.0.0.1:9898,
    /// localhost:9898, [::1]:9898).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_listen_addr)]
    metrics_addr: Option<std::net::SocketAddr>,
}

pub async fn run(ctx: &Ctx, args: Args) -> Result<i32> {
    crate::DETACH_BLOCKING.store(true, std::sync::atomic::Ordering::SeqCst);
    let opts = Options {
        config_path: ctx.config_path.clone(),
        repo_flag: ctx.repo_flag.clone(),
        shutdown_timeout: args.shutdown_timeout,
        once: args.once,
        metrics_addr: args.metrics_addr,
    };
    run_daemon(opts, ctx.config.clone()).await
}

/// `HOST:PORT` for a listening socket: an IP address, or a name resolved once (its first
/// address), so `localhost:9898` works as well as `127.0.0.1:9898`.
fn parse_listen_addr(s: &str) -> std::result::Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}
