//! The demo: a sample multi-tenant database ([`generate`]) and the walkthrough `lifeboat demo`
//! runs on it ([`walkthrough`]): backup, list, verify, restore, and one tenant brought back.

pub mod generate;
pub mod walkthrough;

pub use generate::{generate, Generated};
