//! GitHub: the thin client Paved uses. (The strict emulator that stands in for GitHub in
//! tests and `paved demo` is the `github-emulator` crate.)

pub mod app;
pub mod checks;
pub mod client;
pub mod issues;
pub mod people;

pub use client::{Forge, RetryPolicy};
