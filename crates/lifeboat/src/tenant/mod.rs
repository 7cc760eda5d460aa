//! Tenants: which rows belong to whom ([`map`]; the global rows they need in [`references`]), one tenant out ([`export`]), and one tenant back
//! into a live database ([`restore`]: scratch copies in [`copy`], the locked transaction in
//! [`apply`], row identity in [`rows`], the foreign-key check in [`fk`]) or into D1 ([`to_d1`]).

pub mod apply;
pub mod copy;
pub mod export;
pub mod fk;
pub mod map;
pub mod references;
pub mod restore;
pub mod rows;
pub mod to_d1;
