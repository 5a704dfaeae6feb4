//! Paved: developer environments by pull request, under the platform team's governance.
//!
//! The crate is laid out by domain so a reader finds a room by its name:
//! - [`intake`]: the webhook receiver (signature check, durable acceptance).
//! - [`store`]: the database behind a trait (SQLite by default).
//! - [`worker`]: turns stored deliveries into work, in order per pull request.
//! - [`forge`]: the GitHub client.
//! - [`repo`]: local Git mirrors (git2), always used from blocking threads.
//! - [`manifest`]: environment manifests, `platform.yaml` and ADE definitions.
//! - [`policy`]: built-in rules and Rego policies (regorus).
//! - [`workflow`]: workflows as data (which checks run for an environment type).
//! - [`checks`]: evaluation of a change against governance, shared by the server and `paved check`.
//! - [`api`]: the HTTP router.

pub mod api;
pub mod audit;
pub mod checks;
pub mod cli;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diag;
pub mod event;
pub mod forge;
pub mod handlers;
pub use paved_ids as ids;
pub mod intake;
pub mod manifest;
pub mod policy;
pub mod repo;
pub mod runner;
pub mod service;
pub mod store;
pub mod tree;
pub mod worker;
pub mod workflow;
