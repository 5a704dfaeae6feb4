//! `sqlx::migrate!` embeds the migrations at compile time, and does not notice a new one:
//! a changed `migrations/` folder rebuilds the crate.
//!
//! A release build's binary gets its debug information compressed by the linker.
//!
//! `paved_postgres`: set when `PAVED_TEST_DATABASE_URL` names a PostgreSQL server for the
//! tests (`script/test` sets it). Tests that need the server are `#[ignore]`d without it, so
//! `cargo test` reports them as ignored, never as passed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=PAVED_TEST_DATABASE_URL");
    println!("cargo::rustc-check-cfg=cfg(paved_postgres)");
    // A release binary's debug information (line tables), compressed by the linker: a third
    // of the size, and still read by backtraces.
    // GNU ld and lld on Linux (Paved's platform: its runs need bubblewrap) take the flag.
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
    if std::env::var("PAVED_TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        println!("cargo:rustc-cfg=paved_postgres");
    }
}
