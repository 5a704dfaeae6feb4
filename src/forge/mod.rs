//! GitHub: the thin client Paved uses, and the strict emulator that stands in for GitHub
//! in tests and in `paved demo`.

pub mod emulator;
pub mod schema;
