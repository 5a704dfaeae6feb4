//! The Checks API (GitHub Apps only): check runs on a commit, with annotations that GitHub
//! shows inline on the lines of "Files changed".

use super::client::{ForgeError, GitHub, Method};
use crate::ids::{CommitSha, RepoName};
use serde::{Deserialize, Serialize};

/// GitHub takes at most this many annotations per create or update request; more are
/// sent in further updates, which append to the run's list.
pub const ANNOTATIONS_PER_REQUEST: usize = 50;

/// A check run's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CheckRunId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    InProgress,
    Completed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conclusion {
    Success,
    Failure,
    /// Neither: nothing to say (`paved/plan` when no definition has a preview).
    Neutral,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnnotationLevel {
    Notice,
    Warning,
    Failure,
}

/// A finding on lines of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Annotation {
    pub path: String,
    pub start_line: usize,
    pub end_line: usize,
    /// Only on a single line (GitHub refuses columns across lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_column: Option<usize>,
    pub annotation_level: AnnotationLevel,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// A check run's `output`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    /// The details below the summary (`paved/plan`: the preview).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
}

/// The fields of a create or update request Paved sends.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRunFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<CheckStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<Conclusion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<CheckOutput>,
}

/// GitHub's limits on output text (65,535 characters).
const TEXT_MAX: usize = 65_535;

fn bounded(mut f: CheckRunFields) -> CheckRunFields {
    if let Some(o) = &mut f.output {
        o.title = cut(&o.title, 255);
        o.summary = cut(&o.summary, TEXT_MAX);
        for a in &mut o.annotations {
            a.message = cut(&a.message, 64 * 1024);
            a.title = a.title.as_deref().map(|t| cut(t, 255));
        }
    }
    f
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max - 1).collect();
        out.push('…');
        out
    }
}

impl GitHub {
    /// `POST /repos/{owner}/{repo}/check-runs`. Sent again when its answer is lost: a
    /// second run of the same name on the commit is harmless (GitHub shows the latest).
    pub async fn create_check_run(
        &self,
        repo: &RepoName,
        name: &str,
        head_sha: &CommitSha,
        fields: CheckRunFields,
    ) -> Result<CheckRunId, ForgeError> {
        #[derive(Serialize)]
        struct B<'a> {
            name: &'a str,
            head_sha: &'a str,
            #[serde(flatten)]
            fields: CheckRunFields,
        }
        #[derive(Deserialize)]
        struct Created {
            id: CheckRunId,
        }
        let path = format!("/repos/{}/{}/check-runs", repo.owner(), repo.name());
        let body = B {
            name,
            head_sha: head_sha.as_str(),
            fields: bounded(fields),
        };
        let a = self
            .send(
                &format!("check run {name}"),
                Method::Post,
                &path,
                Some(&body),
            )
            .await?;
        let c: Created = serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("create check run: bad JSON: {e}")))?;
        Ok(c.id)
    }

    /// `PATCH /repos/{owner}/{repo}/check-runs/{id}`; annotations append to the run's.
    pub async fn update_check_run(
        &self,
        repo: &RepoName,
        id: CheckRunId,
        fields: CheckRunFields,
    ) -> Result<(), ForgeError> {
        let path = format!(
            "/repos/{}/{}/check-runs/{}",
            repo.owner(),
            repo.name(),
            id.0
        );
        self.send(
            "update check run",
            Method::Patch,
            &path,
            Some(&bounded(fields)),
        )
        .await?;
        Ok(())
    }
}
