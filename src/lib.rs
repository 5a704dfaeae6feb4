//! Paved: developer environments by pull request, under the platform team's governance.
//!
//! The crate is laid out by domain so a reader finds a room by its name; `ARCHITECTURE.md`
//! is the map (the rooms, the direction of dependencies, the invariants). What the binary,
//! the tests and the benchmarks use is public; the rest is the crate's own.

pub mod ade;
mod api;
pub mod audit;
pub mod chaos;
pub mod checks;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diag;
mod event;
mod forge;
pub mod graph;
pub mod handlers;
pub mod identity;
pub mod import;
pub use paved_ids as ids;
pub mod intake;
pub mod links;
pub mod manifest;
pub mod metrics;
pub mod oidc;
pub mod orchestrator;
pub mod outbox;
pub mod policy;
pub mod portal;
pub mod preview;
pub mod problem;
pub mod provision;
pub mod repo;
pub mod retention;
pub mod runner;
pub mod scheduler;
pub mod service;
pub mod setup;
pub mod store;
pub mod timers;
pub mod tree;
pub mod work;
mod worker;
mod workflow;
