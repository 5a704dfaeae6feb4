//! `[github]` and `[git]`: how Paved reaches GitHub, which repositories it serves, and the
//! webhook secrets it accepts.

use super::file::{FileGit, FileGithub};
use super::{parse_bool, pick, ConfigError, Env, RepoFilter, Secret, DEFAULT_API_URL};
use std::path::PathBuf;

/// How Paved authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GithubAuth {
    Token(Secret),
    /// A GitHub App: installation tokens are minted from the app's private key.
    App {
        app_id: u64,
        private_key_path: PathBuf,
    },
}

/// Where a pull request's verdicts go (`github.report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportMode {
    /// Commit statuses on the head SHA (a token, or an App that asks for them).
    Statuses,
    /// Check runs with annotations on the manifests' lines (GitHub Apps only).
    Checks,
}

impl ReportMode {
    /// The mode for `auth` when `github.report` is not set: checks for an App.
    pub fn default_for(auth: Option<&GithubAuth>) -> ReportMode {
        match auth {
            Some(GithubAuth::App { .. }) => ReportMode::Checks,
            _ => ReportMode::Statuses,
        }
    }

    fn parse(v: &str) -> Result<ReportMode, ConfigError> {
        match v.trim() {
            "checks" => Ok(ReportMode::Checks),
            "statuses" => Ok(ReportMode::Statuses),
            other => Err(ConfigError::Invalid(format!(
                "github.report {other:?}: expected \"checks\" or \"statuses\""
            ))),
        }
    }
}

/// What `[github]` and `[git]` give.
pub(super) struct GithubSettings {
    pub report: Option<ReportMode>,
    pub webhook_secrets: Vec<Secret>,
    pub api_url: String,
    pub auth: Option<GithubAuth>,
    pub repositories: RepoFilter,
    pub clone_url_template: Option<String>,
}

pub(super) fn load_github(
    github: FileGithub,
    git: FileGit,
    env: Env,
) -> Result<GithubSettings, ConfigError> {
    let webhook_secrets: Vec<Secret> = match env("PAVED_WEBHOOK_SECRET") {
        Some(v) => split_secrets(&v),
        None => github
            .webhook_secrets
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(Secret)
            .collect(),
    };
    let api_url = pick(env, None, "PAVED_GITHUB_API_URL", github.api_url)
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    url::Url::parse(&api_url)
        .map_err(|e| ConfigError::Invalid(format!("github.api_url {api_url:?}: {e}")))?;
    let token = pick(env, None, "PAVED_GITHUB_TOKEN", github.token);
    let app_id = match env("PAVED_GITHUB_APP_ID") {
        Some(v) => Some(v.parse().map_err(|_| {
            ConfigError::Invalid(format!("PAVED_GITHUB_APP_ID: not a number: {v}"))
        })?),
        None => github.app_id,
    };
    let key = env("PAVED_GITHUB_PRIVATE_KEY_PATH")
        .map(PathBuf::from)
        .or(github.private_key_path);
    let auth = match (token, app_id, key) {
        (Some(t), _, _) => Some(GithubAuth::Token(Secret(t))),
        (None, Some(app_id), Some(private_key_path)) => Some(GithubAuth::App {
            app_id,
            private_key_path,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => {
            return Err(ConfigError::Invalid(
                "github.app_id and github.private_key_path go together".into(),
            ))
        }
        (None, None, None) => None,
    };
    let patterns: Vec<String> = match env("PAVED_GITHUB_REPOSITORIES") {
        Some(v) => v.split(',').map(|s| s.trim().to_string()).collect(),
        None => github.repositories.unwrap_or_default(),
    };
    let allow_any = match env("PAVED_GITHUB_ALLOW_ANY_REPOSITORY") {
        Some(v) => parse_bool("PAVED_GITHUB_ALLOW_ANY_REPOSITORY", &v)?,
        None => github.allow_any_repository.unwrap_or(false),
    };
    let report = match pick(env, None, "PAVED_GITHUB_REPORT", github.report) {
        Some(v) => Some(ReportMode::parse(&v)?),
        None => None,
    };
    Ok(GithubSettings {
        report,
        webhook_secrets,
        api_url: api_url.trim_end_matches('/').to_string(),
        auth,
        repositories: RepoFilter::new(&patterns, allow_any)?,
        clone_url_template: pick(
            env,
            None,
            "PAVED_GIT_CLONE_URL_TEMPLATE",
            git.clone_url_template,
        ),
    })
}

fn split_secrets(v: &str) -> Vec<Secret> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Secret(s.to_string()))
        .collect()
}
