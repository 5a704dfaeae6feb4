//! Where a pull request's verdicts go (`github.report`): commit statuses on the head, or,
//! for a GitHub App, one check run per context whose annotations point at the lines of
//! the manifests, so errors show inline in the pull request's "Files changed".

use super::WorkError;
use crate::checks::Finding;
use crate::config::ReportMode;
use crate::event::PrInfo;
use crate::forge::checks::{
    Annotation, AnnotationLevel, CheckOutput, CheckRunFields, CheckRunId, CheckStatus, Conclusion,
    ANNOTATIONS_PER_REQUEST,
};
use crate::forge::client::{GitHub, NewStatus, StatusState};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Annotations sent per check run at most (ten requests' worth); the summary says how many
/// more there were.
pub const MAX_ANNOTATIONS: usize = 10 * ANNOTATIONS_PER_REQUEST;

/// Reports one pull request's contexts, remembering the check runs it opened.
pub struct Feedback<'a> {
    gh: &'a GitHub,
    pr: &'a PrInfo,
    mode: ReportMode,
    runs: HashMap<String, CheckRunId>,
}

/// A finished context's verdict.
pub struct Verdict<'v> {
    pub context: &'v str,
    pub pass: bool,
    /// One line (statuses keep 140 characters).
    pub description: &'v str,
    pub url: &'v str,
    /// What is behind it, for check runs: annotations and the summary's list.
    pub findings: Vec<Finding<'v>>,
    /// A check run's text below its summary (`paved/plan`: the preview).
    pub text: Option<String>,
    /// A passing check run is `neutral` rather than `success` (nothing was previewed).
    pub neutral: bool,
}

impl<'a> Feedback<'a> {
    pub fn new(gh: &'a GitHub, pr: &'a PrInfo, mode: ReportMode) -> Feedback<'a> {
        Feedback {
            gh,
            pr,
            mode,
            runs: HashMap::new(),
        }
    }

    /// The client it reports with.
    pub fn client(&self) -> &'a GitHub {
        self.gh
    }

    /// `context` is being evaluated.
    pub async fn pending(
        &mut self,
        context: &str,
        description: &str,
        url: &str,
    ) -> Result<(), WorkError> {
        match self.mode {
            ReportMode::Statuses => {
                self.status(StatusState::Pending, context, description, url)
                    .await
            }
            ReportMode::Checks => {
                let fields = CheckRunFields {
                    status: Some(CheckStatus::InProgress),
                    conclusion: None,
                    details_url: Some(url.to_string()),
                    external_id: None,
                    output: Some(CheckOutput {
                        title: description.to_string(),
                        summary: description.to_string(),
                        text: None,
                        annotations: Vec::new(),
                    }),
                };
                let id = self
                    .gh
                    .create_check_run(&self.pr.repo, context, &self.pr.head_sha, fields)
                    .await?;
                self.runs.insert(context.to_string(), id);
                Ok(())
            }
        }
    }

    /// `context` ended. A check run gets its annotations [`ANNOTATIONS_PER_REQUEST`] at a
    /// time (GitHub appends them), up to [`MAX_ANNOTATIONS`], its conclusion with the last.
    pub async fn finish(&mut self, v: Verdict<'_>) -> Result<(), WorkError> {
        if self.mode == ReportMode::Statuses {
            let state = if v.pass {
                StatusState::Success
            } else {
                StatusState::Failure
            };
            return self.status(state, v.context, v.description, v.url).await;
        }
        let annotations: Vec<Annotation> = v
            .findings
            .iter()
            .take(MAX_ANNOTATIONS)
            .map(|f| annotation(v.context, f))
            .collect();
        let summary = summary(v.description, &v.findings);
        let output = |annotations: &[Annotation]| CheckOutput {
            title: v.description.to_string(),
            summary: summary.clone(),
            text: v.text.clone(),
            annotations: annotations.to_vec(),
        };
        let fields = |output: CheckOutput, conclusion: Option<Conclusion>| CheckRunFields {
            status: None,
            conclusion,
            details_url: Some(v.url.to_string()),
            external_id: None,
            output: Some(output),
        };
        let conclusion = match (v.pass, v.neutral) {
            (true, true) => Conclusion::Neutral,
            (true, false) => Conclusion::Success,
            (false, _) => Conclusion::Failure,
        };
        // Annotations first, the conclusion with the last batch: once a run shows as
        // completed, everything it has to say is on it.
        let mut batches: Vec<&[Annotation]> = annotations.chunks(ANNOTATIONS_PER_REQUEST).collect();
        let last = batches.pop().unwrap_or_default();
        let mut id = self.runs.get(v.context).copied();
        for batch in batches {
            match id {
                Some(id) => {
                    let f = fields(output(batch), None);
                    self.gh.update_check_run(&self.pr.repo, id, f).await?;
                }
                None => {
                    let mut f = fields(output(batch), None);
                    f.status = Some(CheckStatus::InProgress);
                    let repo = &self.pr.repo;
                    let created = self
                        .gh
                        .create_check_run(repo, v.context, &self.pr.head_sha, f)
                        .await?;
                    id = Some(created);
                }
            }
        }
        let f = fields(output(last), Some(conclusion));
        match id {
            Some(id) => self.gh.update_check_run(&self.pr.repo, id, f).await?,
            None => {
                let repo = &self.pr.repo;
                let created = self
                    .gh
                    .create_check_run(repo, v.context, &self.pr.head_sha, f)
                    .await?;
                id = Some(created);
            }
        }
        if let Some(id) = id {
            self.runs.insert(v.context.to_string(), id);
        }
        Ok(())
    }

    async fn status(
        &self,
        state: StatusState,
        context: &str,
        description: &str,
        url: &str,
    ) -> Result<(), WorkError> {
        self.gh
            .create_status(
                &self.pr.repo,
                &self.pr.head_sha,
                &NewStatus {
                    state,
                    context: context.to_string(),
                    description: description.to_string(),
                    target_url: Some(url.to_string()),
                },
            )
            .await?;
        Ok(())
    }
}

/// A finding as an annotation on its file's line (line 1 when the line is unknown: the
/// file as a whole).
fn annotation(context: &str, f: &Finding<'_>) -> Annotation {
    let d = f.diagnostic;
    let line = d.line.unwrap_or(1).max(1);
    let message = match &d.field {
        Some(field) => format!("{field}: {}", d.message),
        None => d.message.clone(),
    };
    Annotation {
        path: d.file.clone(),
        start_line: line,
        end_line: line,
        start_column: d.line.and(d.column),
        end_column: d.line.and(d.column),
        annotation_level: if f.error {
            AnnotationLevel::Failure
        } else {
            AnnotationLevel::Warning
        },
        message,
        title: Some(format!("{context}: {}", f.about)),
    }
}

/// The check run's summary: the verdict, then each finding as `file:line: message`.
fn summary(description: &str, findings: &[Finding<'_>]) -> String {
    let mut out = format!("{description}\n");
    if findings.is_empty() {
        return out;
    }
    out.push('\n');
    for f in findings.iter().take(MAX_ANNOTATIONS) {
        let kind = if f.error { "error" } else { "warning" };
        let _ = writeln!(out, "- **{kind}** ({}): `{}`", f.about, f.diagnostic);
    }
    if findings.len() > MAX_ANNOTATIONS {
        let _ = writeln!(
            out,
            "\n{} more not shown; the summary comment and the run's report have them all.",
            findings.len() - MAX_ANNOTATIONS
        );
    }
    out
}
