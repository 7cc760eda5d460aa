//! Flags several commands share, each group defined once and flattened into the commands that
//! take it, and the parser that lets clap offer the engine's named choices.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};

use crate::{select_backup, single_database_name, Ctx};
use lifeboat::error::{Error, Kind, Result};
use lifeboat::restore::image::{fetch_image, live_image};
use lifeboat::restore::{parse_time, Selector};

/// What a read-only command reads: a stored backup, or a live database.
#[derive(clap::Args, Debug, Clone)]
pub struct ImageArgs {
    /// Read a stored backup: its id or `latest`.
    #[arg(long, value_name = "ID|latest", conflicts_with = "at")]
    pub backup: Option<String>,
    /// Read the newest backup taken at or before this UTC time.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// With --backup/--at: the database's name. Without: a live database file (or configured name).
    #[arg(long, value_name = "NAME|PATH")]
    pub db: Option<String>,
}

/// Where the output of dump and export goes.
#[derive(clap::Args, Debug, Clone)]
pub struct OutArgs {
    /// Output file, or `-` for stdout (not for `export --format sqlite`). `.zst` and `.gz` are
    /// compressed.
    #[arg(long, value_name = "FILE|-", default_value = "-")]
    pub out: String,
    /// Overwrite an existing output file (the old one is moved aside; a database never is).
    #[arg(long)]
    pub force: bool,
}

/// Where temporary images go.
#[derive(clap::Args, Debug, Clone)]
pub struct ScratchArgs {
    /// Directory for temporary files and images (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
}

impl ImageArgs {
    /// The database to read: a stored backup (downloaded and checked into `dir`, after saying
    /// which one a selector picked) or a live database file. Its path and a description.
    pub async fn image(
        &self,
        ctx: &Ctx,
        dir: &Path,
        stdout_is_data: bool,
    ) -> Result<(PathBuf, String)> {
        if self.backup.is_some() || self.at.is_some() {
            let repo = ctx.repository(false)?;
            let name = single_database_name(ctx, &repo, self.db.as_deref()).await?;
            let sel = match (&self.at, &self.backup) {
                (Some(t), _) => Selector::At(parse_time(t)?),
                (None, Some(id)) => Selector::Id(id.clone()),
                (None, None) => Selector::Latest,
            };
            let m = select_backup(ctx, &repo, &name, &sel, stdout_is_data)
                .await?
                .manifest;
            return fetch_image(&repo, &m, dir).await;
        }
        let Some(flag) = self.db.as_deref() else {
            return Err(Error::new(
                Kind::Config,
                "give --backup ID|latest, or --db PATH of a live database",
            ));
        };
        live_image(&ctx.config.database(flag)?.path)
    }
}

/// A clap parser for an engine type offered as `choices` (name, what it means): they show in
/// --help as its possible values. The engine's types know their names (`FromStr`), not clap.
pub fn choice<T>(
    choices: &'static [(&'static str, &'static str)],
) -> impl TypedValueParser<Value = T>
where
    T: FromStr<Err = String> + Clone + Send + Sync + 'static,
{
    let values = choices.iter().map(|&(name, help)| {
        let v = PossibleValue::new(name);
        if help.is_empty() {
            v
        } else {
            v.help(help)
        }
    });
    PossibleValuesParser::new(values).try_map(|s| s.parse::<T>())
}
