//! The end-to-end suites again, each test with a database of its own on the PostgreSQL
//! server named by `PAVED_TEST_DATABASE_URL` (`script/test` sets it). Without the variable
//! at build time the suite is not built, and one ignored test says so: `cargo test` reports
//! it as ignored, never as passed.

// Each suite brings its own `mod common;`: loading the helpers once per suite is what
// lets the same files compile both as their own test binaries and here.
#![allow(clippy::duplicate_mod)]

/// Read by `tests/common`: harnesses in this binary use PostgreSQL.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = true;

#[cfg(not(paved_postgres))]
#[test]
#[ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"]
fn the_end_to_end_suites_on_postgresql() {
    panic!("the PostgreSQL suite was not built: set PAVED_TEST_DATABASE_URL and build again");
}

#[cfg(paved_postgres)]
#[path = "approval_flow.rs"]
mod approval_flow;
#[cfg(paved_postgres)]
#[path = "outbox.rs"]
mod outbox;
#[cfg(paved_postgres)]
#[path = "pr_checks.rs"]
mod pr_checks;
#[cfg(paved_postgres)]
#[path = "provision.rs"]
mod provision;
#[cfg(paved_postgres)]
#[path = "restart.rs"]
mod restart;
#[cfg(paved_postgres)]
#[path = "retention.rs"]
mod retention;
#[cfg(paved_postgres)]
#[path = "security.rs"]
mod security;
