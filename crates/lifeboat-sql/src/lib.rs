//! lifeboat-sql: SQL text, both ways, and nothing else. It knows SQLite's and D1's SQL; it does not
//! know about repositories, backups or files in place.
//!
//! - Out: [`dump`] streams a database as SQL in the SQLite or D1 dialect ([`value_literal`] writes
//!   each value exactly; `dump/d1_rows.rs` cuts rows too long for one D1 statement).
//! - In: [`statement_reader`] cuts a dump into statements, [`insert_parser`] reads the values of
//!   INSERT statements, and [`load`] builds a database from a dump.
//! - [`ident`] quotes identifiers; [`error`] is this crate's error value.

pub mod dump;
pub mod error;
pub mod ident;
pub mod insert_parser;
pub mod load;
pub mod statement_reader;
pub mod value_literal;

pub use dump::Dialect;
pub use error::{Error, Kind, Result};
pub use ident::quote_ident;
