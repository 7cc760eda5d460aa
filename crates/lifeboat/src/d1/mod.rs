//! Cloudflare D1, through wrangler: running it, reading its answers, where a D1 database is
//! ([`wrangler`]), and a D1 database as a restore target ([`target`]).
//! Backups of D1 (an export made into an image) are in `source::d1`, restores into D1 in
//! `restore::to_d1` and `tenant::to_d1`.

pub mod target;
pub mod wrangler;

pub use target::D1Target;
pub use wrangler::{D1Config, D1Info, Wrangler};
