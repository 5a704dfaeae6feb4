//! Getting from nothing to a running installation: `paved init` (a platform repository to
//! push), `paved setup github` (the GitHub App, through GitHub's App manifest flow), and
//! `paved backup` and `paved restore` (the SQLite database, taken while the server runs,
//! put back while it does not).

pub mod backup;
pub mod github;
pub mod init;
