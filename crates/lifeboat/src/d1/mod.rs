//! Cloudflare D1, through wrangler: running it, reading its answers, and where a D1 database is.
//! Backups of D1 (an export made into an image) are in `source::d1`, restores into D1 in
//! `restore::to_d1` and `tenant::to_d1`.

pub mod wrangler;

pub use wrangler::{D1Config, D1Info, Wrangler};
