//! The end-to-end suites again, each test with a database of its own on the PostgreSQL
//! server named by `PAVED_TEST_DATABASE_URL` (`.ci/run` sets it). Without the variable the
//! tests say `PostgreSQL suite SKIPPED` and run on SQLite.

// Each suite brings its own `mod common;`: loading the helpers once per suite is what
// lets the same files compile both as their own test binaries and here.
#![allow(clippy::duplicate_mod)]

/// Read by `tests/common`: harnesses in this binary use PostgreSQL.
pub const POSTGRES_SUITE: bool = true;

#[path = "approval_flow.rs"]
mod approval_flow;
#[path = "outbox.rs"]
mod outbox;
#[path = "pr_checks.rs"]
mod pr_checks;
#[path = "provision.rs"]
mod provision;
#[path = "restart.rs"]
mod restart;
#[path = "retention.rs"]
mod retention;
#[path = "security.rs"]
mod security;
