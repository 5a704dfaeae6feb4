//! GitHub: the thin client Paved uses, and the strict emulator that stands in for GitHub
//! in tests and in `paved demo`.

pub mod client;
pub mod emulator;
pub mod schema;

pub use client::{Forge, ForgeError, GitHub, NewStatus, RetryPolicy, StatusState};
