//! `sqlx::migrate!` embeds the migrations at compile time, and does not notice a new one:
//! a changed `migrations/` folder rebuilds the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
