//! The configuration of a Paved the benches start: a SQLite file in `data`, GitHub at the
//! emulator with a token, the repository cloned from a local remote, everything else as
//! `paved serve` defaults it.
#![allow(dead_code)] // each bench uses a part of it

use paved::config::{Config, GithubAuth, Secret};
use std::path::Path;
use std::time::Duration;

/// The webhook secret of the benches' deliveries.
pub const SECRET: &str = "bench-secret";

pub fn config(api_url: String, clone_url_template: String, data: &Path, repo: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        data_dir: data.to_path_buf(),
        database_url: format!("sqlite://{}", data.join("paved.sqlite").display()),
        public_url: None,
        workers: 4,
        webhook_secrets: vec![Secret::new(SECRET)],
        api_url,
        auth: Some(GithubAuth::Token(Secret::new("bench-token"))),
        clone_url_template: Some(clone_url_template),
        runner: Default::default(),
        push_grace: Duration::from_secs(600),
        lease: Duration::from_secs(60),
        repositories: paved::config::RepoFilter::only([repo]),
        checks: Default::default(),
        intake: Default::default(),
        report: None,
        store: Default::default(),
        portal: Default::default(),
        lifecycle: Default::default(),
        oidc: Default::default(),
        log_format: Default::default(),
        api: Default::default(),
    }
}
