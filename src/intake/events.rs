//! Which deliveries Paved stores, and the queue key each is processed under.
//!
//! This runs on the acknowledgement path, after the signature was verified: it parses
//! only the handful of fields it needs, borrowing from the body.

use crate::ids::{CommitSha, RepoName};
use serde::Deserialize;
use std::borrow::Cow;

/// What [`classify`] keeps of a delivery Paved handles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// The repository the delivery is about (Paved serves only those it is configured for).
    pub repo: RepoName,
    /// The payload's `action`, if it has one (`push` has none).
    pub action: Option<String>,
    /// Deliveries with the same key are processed one at a time, in arrival order.
    pub queue_key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("body is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("payload lacks {0}")]
    Missing(&'static str),
    #[error("payload has an invalid {0}")]
    Invalid(&'static str),
}

/// The prefix of a pull request comment that is a command to Paved (`/paved recheck`).
pub const COMMAND_PREFIX: &str = "/paved";

/// Decides whether Paved handles a delivery, from its `X-GitHub-Event` and body.
///
/// **The table of handled deliveries** (extend it here, and only here):
///
/// | event | actions | queue key |
/// |---|---|---|
/// | `pull_request` | `opened`, `synchronize`, `reopened`, `edited` | `owner/repo#<number>` |
/// | `pull_request_review` | `submitted`, `dismissed` | `owner/repo#<number>` |
/// | `issue_comment` | `created`, on a pull request, body starting with `/paved` | `owner/repo#<number>` |
/// | `check_run` | `rerequested` | `owner/repo#<number>` of its first pull request, else `owner/repo@<head_sha>` |
/// | `pull_request` | `closed` with `merged: true` | `owner/repo#<number>` (after the PR's own checks) |
/// | `push` | to `refs/heads/<default branch>` | `owner/repo@push` |
///
/// A merge shares its pull request's key so it runs after every check of that PR already
/// queued. Pushes get their own key: a push waits (retrying) for the merge that explains
/// it, and must not hold back that very merge. A closed-unmerged PR is not stored.
///
/// Everything else (`ping`, other events, other actions, comments that are not
/// commands) is `Ok(None)`: acknowledged, not stored. The body of an event outside the
/// table is not parsed at all. A handled event whose body is not JSON, or lacks the
/// fields its key is made of, is an error (answered 400, not stored).
pub fn classify(event: &str, body: &[u8]) -> Result<Option<Classified>, ClassifyError> {
    match event {
        "pull_request" => {
            let p: Payload = serde_json::from_slice(body)?;
            if p.action.as_deref() == Some("closed") {
                let merged = p.pull_request.as_ref().is_some_and(|pr| pr.merged);
                return if merged {
                    keyed_by_pr(&p, &["closed"])
                } else {
                    Ok(None)
                };
            }
            keyed_by_pr(&p, &["opened", "synchronize", "reopened", "edited"])
        }
        "push" => {
            let p: Payload = serde_json::from_slice(body)?;
            let r = p
                .repository
                .as_ref()
                .ok_or(ClassifyError::Missing("repository"))?;
            let (Some(git_ref), Some(default)) =
                (p.git_ref.as_deref(), r.default_branch.as_deref())
            else {
                return Err(ClassifyError::Missing("ref or repository.default_branch"));
            };
            if git_ref.strip_prefix("refs/heads/") != Some(default) {
                return Ok(None);
            }
            let repo = repo(&p)?;
            Ok(Some(Classified {
                queue_key: format!("{repo}@push"),
                repo,
                action: None,
            }))
        }
        "pull_request_review" => {
            let p: Payload = serde_json::from_slice(body)?;
            keyed_by_pr(&p, &["submitted", "dismissed"])
        }
        "issue_comment" => {
            let p: Payload = serde_json::from_slice(body)?;
            if p.action.as_deref() != Some("created") {
                return Ok(None);
            }
            let issue = p.issue.as_ref().ok_or(ClassifyError::Missing("issue"))?;
            if issue.pull_request.is_none() {
                return Ok(None);
            }
            let comment = p
                .comment
                .as_ref()
                .ok_or(ClassifyError::Missing("comment"))?;
            if !is_command(comment.body.as_deref().unwrap_or("")) {
                return Ok(None);
            }
            let repo = repo(&p)?;
            Ok(Some(Classified {
                action: action(&p),
                queue_key: format!("{repo}#{}", issue.number),
                repo,
            }))
        }
        "check_run" => {
            let p: Payload = serde_json::from_slice(body)?;
            if p.action.as_deref() != Some("rerequested") {
                return Ok(None);
            }
            let run = p
                .check_run
                .as_ref()
                .ok_or(ClassifyError::Missing("check_run"))?;
            let repo = repo(&p)?;
            let queue_key = match run.pull_requests.first() {
                Some(pr) => format!("{repo}#{}", pr.number),
                None => {
                    let sha = run
                        .head_sha
                        .as_deref()
                        .ok_or(ClassifyError::Missing("check_run.head_sha"))?;
                    let sha = CommitSha::parse(sha)
                        .map_err(|_| ClassifyError::Invalid("check_run.head_sha"))?;
                    format!("{repo}@{sha}")
                }
            };
            Ok(Some(Classified {
                action: action(&p),
                queue_key,
                repo,
            }))
        }
        _ => Ok(None),
    }
}

fn is_command(body: &str) -> bool {
    body.trim_start()
        .strip_prefix(COMMAND_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

fn keyed_by_pr(p: &Payload<'_>, actions: &[&str]) -> Result<Option<Classified>, ClassifyError> {
    let Some(a) = p.action.as_deref() else {
        return Err(ClassifyError::Missing("action"));
    };
    if !actions.contains(&a) {
        return Ok(None);
    }
    let pr = p
        .pull_request
        .as_ref()
        .ok_or(ClassifyError::Missing("pull_request"))?;
    let repo = repo(p)?;
    Ok(Some(Classified {
        action: action(p),
        queue_key: format!("{repo}#{}", pr.number),
        repo,
    }))
}

fn action(p: &Payload<'_>) -> Option<String> {
    p.action.as_deref().map(str::to_owned)
}

fn repo(p: &Payload<'_>) -> Result<RepoName, ClassifyError> {
    let r = p
        .repository
        .as_ref()
        .ok_or(ClassifyError::Missing("repository"))?;
    RepoName::parse(&r.full_name).map_err(|_| ClassifyError::Invalid("repository.full_name"))
}

/// The few fields of any handled payload that classification reads; serde skips the rest.
#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    repository: Option<Repository<'a>>,
    #[serde(default)]
    pull_request: Option<Numbered>,
    #[serde(default)]
    issue: Option<Issue>,
    #[serde(borrow, default)]
    comment: Option<Comment<'a>>,
    #[serde(borrow, default)]
    check_run: Option<CheckRun<'a>>,
    /// `push`: the ref pushed to.
    #[serde(borrow, default, rename = "ref")]
    git_ref: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Repository<'a> {
    #[serde(borrow)]
    full_name: Cow<'a, str>,
    #[serde(borrow, default)]
    default_branch: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Numbered {
    number: u64,
    /// `pull_request.merged` (closed events).
    #[serde(default)]
    merged: bool,
}

#[derive(Deserialize)]
struct Issue {
    number: u64,
    /// Present (an object) when the issue is a pull request.
    #[serde(default)]
    pull_request: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Comment<'a> {
    #[serde(borrow, default)]
    body: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct CheckRun<'a> {
    #[serde(borrow, default)]
    head_sha: Option<Cow<'a, str>>,
    #[serde(default)]
    pull_requests: Vec<Numbered>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture(rel: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/github")
            .join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn key(event: &str, body: &[u8]) -> Option<String> {
        classify(event, body)
            .expect("classify")
            .map(|c| c.queue_key)
    }

    #[test]
    fn pull_request_actions() {
        for (file, handled) in [
            ("opened.payload.json", true),
            ("synchronize.payload.json", true),
            ("reopened.payload.json", true),
            // An unmerged close (the fixture's `merged` is false).
            ("closed.payload.json", false),
            ("labeled.payload.json", false),
        ] {
            let body = fixture(&format!("webhooks/pull_request/{file}"));
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            let expect = format!(
                "{}#{}",
                v["repository"]["full_name"].as_str().expect("repo"),
                v["pull_request"]["number"]
            );
            let got = classify("pull_request", &body).expect(file);
            if handled {
                let c = got.expect(file);
                assert_eq!(c.queue_key, expect, "{file}");
                assert_eq!(c.action.as_deref(), v["action"].as_str(), "{file}");
            } else {
                assert_eq!(got, None, "{file}");
            }
        }
        let c = classify(
            "pull_request",
            &fixture("webhooks-supplement/pull_request/pr_edited.json"),
        )
        .expect("edited")
        .expect("handled");
        assert_eq!(c.action.as_deref(), Some("edited"));
    }

    #[test]
    fn exact_keys() {
        let body = br#"{"action":"opened","number":7,"pull_request":{"number":7},"repository":{"full_name":"octo/envs"}}"#;
        assert_eq!(key("pull_request", body).as_deref(), Some("octo/envs#7"));
        let body = br#"{"action":"submitted","pull_request":{"number":8},"repository":{"full_name":"octo/envs"}}"#;
        assert_eq!(
            key("pull_request_review", body).as_deref(),
            Some("octo/envs#8")
        );
        let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"octo/envs","default_branch":"main"}}"#;
        assert_eq!(key("push", body).as_deref(), Some("octo/envs@push"));
        let body = br#"{"ref":"refs/heads/feature","repository":{"full_name":"octo/envs","default_branch":"main"}}"#;
        assert_eq!(key("push", body), None, "only the default branch matters");
        let body = br#"{"action":"closed","pull_request":{"number":9,"merged":true},"repository":{"full_name":"octo/envs"}}"#;
        assert_eq!(key("pull_request", body).as_deref(), Some("octo/envs#9"));
        let body = br#"{"action":"closed","pull_request":{"number":9,"merged":false},"repository":{"full_name":"octo/envs"}}"#;
        assert_eq!(key("pull_request", body), None, "closed without merging");
    }

    #[test]
    fn reviews() {
        for file in ["submitted.payload.json", "dismissed.payload.json"] {
            let body = fixture(&format!("webhooks/pull_request_review/{file}"));
            let k = key("pull_request_review", &body).expect(file);
            assert!(k.contains('#'), "{k}");
        }
    }

    #[test]
    fn comments_only_commands_on_pull_requests() {
        // The fixtures are comments on issues, not pull requests.
        let body = fixture("webhooks/issue_comment/created.payload.json");
        assert_eq!(key("issue_comment", &body), None);

        let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        v["issue"]["pull_request"] = serde_json::json!({"url": "https://api.github.com/x"});
        let on_pr = serde_json::to_vec(&v).expect("json");
        assert_eq!(key("issue_comment", &on_pr), None, "not a command");

        v["comment"]["body"] = serde_json::json!("  /paved recheck\nplease");
        let cmd = serde_json::to_vec(&v).expect("json");
        assert_eq!(
            key("issue_comment", &cmd).as_deref(),
            Some("Codertocat/Hello-World#1")
        );
        v["comment"]["body"] = serde_json::json!("/pavedx");
        let near = serde_json::to_vec(&v).expect("json");
        assert_eq!(key("issue_comment", &near), None);
        v["comment"]["body"] = serde_json::json!("/paved");
        v["action"] = serde_json::json!("edited");
        let edited = serde_json::to_vec(&v).expect("json");
        assert_eq!(key("issue_comment", &edited), None);
    }

    #[test]
    fn check_run_rerequested() {
        let body = fixture("webhooks/check_run/rerequested.payload.json");
        assert_eq!(
            key("check_run", &body).as_deref(),
            Some("github/hello-world@d6fde92930d4715a2b49857d24b940956b26d2d3")
        );
        let mut v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        v["check_run"]["pull_requests"] = serde_json::json!([{"number": 5, "id": 1}]);
        let with_pr = serde_json::to_vec(&v).expect("json");
        assert_eq!(
            key("check_run", &with_pr).as_deref(),
            Some("github/hello-world#5")
        );
        let created = fixture("webhooks/check_run/created.payload.json");
        assert_eq!(key("check_run", &created), None);
    }

    #[test]
    fn ignored_and_invalid() {
        let ping = fixture("webhooks/ping/payload.json");
        assert_eq!(key("ping", &ping), None);
        assert_eq!(key("installation", b"not json"), None);
        assert!(matches!(
            classify("pull_request", b"not json"),
            Err(ClassifyError::Json(_))
        ));
        assert!(matches!(
            classify("pull_request", br#"{"action":"opened"}"#),
            Err(ClassifyError::Missing(_))
        ));
        assert!(matches!(
            classify(
                "pull_request",
                br#"{"action":"opened","pull_request":{"number":1},"repository":{"full_name":"../etc"}}"#
            ),
            Err(ClassifyError::Invalid(_))
        ));
    }
}
