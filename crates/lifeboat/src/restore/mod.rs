//! Restores: which backup a selector means ([`select`]), fetching and checking its image, and
//! putting it in place as a file ([`to_file`]) or into D1 ([`to_d1`]).

pub mod image;
pub mod select;
pub mod to_d1;
pub mod to_file;

pub use select::{parse_time, select, Selection, Selector, Skipped};
