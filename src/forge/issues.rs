//! Issues Paved keeps itself: one per drifted environment (SPEC 11), opened, edited in
//! place and closed when the environment is back in sync.

use super::client::Method;
use super::client::{ForgeError, GitHub};
use crate::ids::RepoName;
use serde::Deserialize;

/// What Paved reads of an issue it opened.
#[derive(Debug, Clone, Deserialize)]
pub struct IssueRef {
    pub number: u64,
    pub html_url: String,
}

impl GitHub {
    /// `POST /repos/{owner}/{repo}/issues`. Not repeated when its answer is lost: the caller
    /// records the number it gets, and a second issue is exactly what it must not open.
    pub async fn create_issue(
        &self,
        repo: &RepoName,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Result<IssueRef, ForgeError> {
        let path = format!("/repos/{repo}/issues");
        let payload = serde_json::json!({ "title": title, "body": body, "labels": labels });
        let a = self.send_create("open issue", &path, &payload).await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("open issue: bad JSON: {e}")))
    }

    /// `PATCH /repos/{owner}/{repo}/issues/{number}`: a new body, and `closed` or `open`
    /// when `state` says so.
    pub async fn update_issue(
        &self,
        repo: &RepoName,
        number: u64,
        body: &str,
        state: Option<&str>,
    ) -> Result<IssueRef, ForgeError> {
        let path = format!("/repos/{repo}/issues/{number}");
        let mut payload = serde_json::json!({ "body": body });
        if let Some(s) = state {
            payload["state"] = serde_json::Value::String(s.to_string());
            if s == "closed" {
                payload["state_reason"] = serde_json::json!("completed");
            }
        }
        let a = self
            .send("update issue", Method::Patch, &path, Some(&payload))
            .await?;
        serde_json::from_slice(&a.body)
            .map_err(|e| ForgeError::Transient(format!("update issue: bad JSON: {e}")))
    }
}
