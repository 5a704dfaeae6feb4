//! Previews on the pull request (SPEC 14): what a change would do, as data.
//!
//! A preview is the definition's `plan.sh` (exit 0 no changes, 2 changes, anything else an
//! error; what it prints is the preview; it may write a JSON list of changes to the file
//! `ADE_PLAN` names), or for `runner: terraform`, `terraform plan -out` summarised from
//! `terraform show -json`. The handlers run them (`handlers::preview`); this room holds what
//! they found ([`PreviewSet`]), its digest (what an approval is bound to), the summaries of
//! the change lists ([`summary`]) and their renderings ([`render`]). It uses nothing else of
//! Paved, so the checks (`paved/plan`, `approvals.onDestroy`) read it as data.

pub mod render;
pub mod summary;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// What a preview says happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
    Replace,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Replace,
        Action::Delete,
        Action::Create,
        Action::Update,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Replace => "replace",
        }
    }

    /// Deletes or replaces something that exists: what `approvals.onDestroy` is about, and
    /// what a merge refuses to do more of than was approved.
    pub fn destroys(&self) -> bool {
        matches!(self, Action::Delete | Action::Replace)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change a preview announces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PlannedChange {
    pub action: Action,
    pub resource: String,
}

/// How one environment's preview ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The definition has no `plan.sh` (or the environment could not be previewed: its
    /// manifest does not pass `paved/schema`): neutral, never a failure.
    NoPreview,
    /// Exit 0: nothing would change.
    NoChanges,
    /// Exit 2: these changes.
    Changes,
    /// Anything else: the preview failed (a failure of `paved/plan` when the type says
    /// `requirePlan: true`).
    Failed,
}

/// What one environment's preview was made from, to tell at merge whether it still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    /// Git tree ids of `.paved/` and of the definition's folder where it was read.
    pub governance: String,
    /// SHA-256 of the parameters (JSON).
    pub parameters: String,
    /// SHA-256 of the environment's `ADE_STORAGE` archive (empty: none).
    pub state: String,
}

/// One environment's preview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvPreview {
    /// The manifest's path.
    pub path: String,
    /// `team/name`, else the path.
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// `deploy` or `delete`: what the pull request would make happen.
    pub operation: String,
    pub status: Status,
    /// The change list (`ADE_PLAN`, or Terraform's resources), destroying ones first.
    #[serde(default)]
    pub changes: Vec<PlannedChange>,
    /// What the preview printed: capped and redacted.
    #[serde(default)]
    pub text: String,
    /// Why it failed, or why there is none (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The type says `requirePlan: true`.
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub inputs: Inputs,
    /// Terraform: a plan file was kept (in the store) to apply at merge.
    #[serde(default)]
    pub plan_file: bool,
}

impl EnvPreview {
    /// The resources it deletes or replaces, by name.
    pub fn destroyed(&self) -> Vec<&PlannedChange> {
        self.changes
            .iter()
            .filter(|c| c.action.destroys())
            .collect()
    }

    /// How many changes of `action`.
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }
}

/// The previews of one pull request's head.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviewSet {
    pub environments: Vec<EnvPreview>,
}

impl PreviewSet {
    /// What an approval is bound to: SHA-256 over each environment's path, operation,
    /// status, changes and text, in path order. Inputs are left out: the same preview made
    /// again (a recheck, a review) keeps its approvals; a different one does not.
    pub fn digest(&self) -> String {
        let mut envs: Vec<&EnvPreview> = self.environments.iter().collect();
        envs.sort_by(|a, b| a.path.cmp(&b.path));
        let mut h = Sha256::new();
        for e in envs {
            let part = serde_json::json!({
                "path": e.path,
                "operation": e.operation,
                "status": e.status,
                "changes": e.changes,
                "text": e.text,
            });
            h.update(part.to_string().as_bytes());
            h.update(b"\n");
        }
        hex(&h.finalize())
    }

    pub fn get(&self, path: &str) -> Option<&EnvPreview> {
        self.environments.iter().find(|e| e.path == path)
    }

    /// Counts per action over every environment, in [`Action::ALL`] order, zeros left out.
    pub fn counts(&self) -> Vec<(Action, usize)> {
        Action::ALL
            .iter()
            .map(|a| (*a, self.environments.iter().map(|e| e.count(*a)).sum()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of bytes, as hex (the inputs' digests).
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(path: &str, changes: Vec<PlannedChange>) -> EnvPreview {
        EnvPreview {
            path: path.into(),
            label: path.into(),
            env_type: None,
            definition: None,
            operation: "deploy".into(),
            status: Status::Changes,
            changes,
            text: String::new(),
            reason: None,
            required: false,
            inputs: Inputs::default(),
            plan_file: false,
        }
    }

    #[test]
    fn the_digest_follows_what_was_shown_not_the_order_or_inputs() {
        let c = |a, r: &str| PlannedChange {
            action: a,
            resource: r.into(),
        };
        let a = PreviewSet {
            environments: vec![env("a", vec![c(Action::Create, "x")]), env("b", vec![])],
        };
        let mut b = PreviewSet {
            environments: vec![a.environments[1].clone(), a.environments[0].clone()],
        };
        b.environments[0].inputs.state = "moved".into();
        assert_eq!(a.digest(), b.digest());
        b.environments[1].changes[0].action = Action::Replace;
        assert_ne!(a.digest(), b.digest());
        assert_eq!(b.counts(), vec![(Action::Replace, 1)]);
        assert_eq!(b.get("a").map(|e| e.destroyed().len()), Some(1));
    }
}
