//! `paved/policy`: the built-in rules, the Rego policies, and ownership of an existing
//! environment.
use super::evaluation::{Evaluation, Read};
use super::{Change, ChangeKind, CheckKind, CheckOutcome};
use crate::diag::Diagnostic;
use crate::manifest::names;
use crate::manifest::ParsedManifest;
use crate::policy;
use crate::policy::rego::PolicyData;

impl Evaluation<'_> {
    pub(super) fn policy(&self, change: &Change, read: &Read, runs_schema: bool) -> CheckOutcome {
        let check = CheckKind::Policy;
        let policies = self.gov.policies();
        if !policies.errors().is_empty() {
            return CheckOutcome::new(check, policies.errors().to_vec(), Vec::new());
        }
        let Some(m) = &read.manifest else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(change, read, runs_schema, "the manifest could not be read"),
                Vec::new(),
            );
        };
        let Some(platform) = self.gov.platform() else {
            return CheckOutcome::new(check, self.gov.errors(), Vec::new());
        };
        let spec = &m.manifest.spec;
        let team_name = &m.manifest.metadata.team;
        let (Some(ty), Some(team)) = (
            platform.environment_types.get(&spec.env_type),
            platform.teams.get(team_name),
        ) else {
            return CheckOutcome::new(
                check,
                self.not_evaluated(
                    change,
                    read,
                    runs_schema,
                    "the manifest's type or team is not defined",
                ),
                Vec::new(),
            );
        };
        let (mut errors, mut warnings) =
            policy::policy_rules(m, &spec.env_type, ty, team, &self.ctx.author, self.now);
        let key = (spec.env_type.clone(), team_name.clone());
        let cached = self.policy_data.borrow().get(&key).cloned();
        let data = match cached {
            Some(d) => d,
            None => {
                let count = self.count_after(team_name).unwrap_or(0);
                let ctx = policy::paved_context(
                    &spec.env_type,
                    ty,
                    team_name,
                    team,
                    count,
                    &self.ctx.author,
                    &self.ctx.approvers,
                );
                let d = PolicyData::new(&ctx);
                self.policy_data.borrow_mut().insert(key, d.clone());
                d
            }
        };
        match data.and_then(|d| policies.evaluate_prepared(&m.doc.json, &d)) {
            Ok(out) => {
                errors.extend(
                    out.denials
                        .into_iter()
                        .map(|f| Diagnostic::new(&change.path, f.message)),
                );
                warnings.extend(
                    out.warnings
                        .into_iter()
                        .map(|f| Diagnostic::new(&change.path, f.message)),
                );
            }
            Err(e) => errors.push(Diagnostic::new(
                &change.path,
                format!("policy evaluation failed: {e}"),
            )),
        }
        CheckOutcome::new(check, errors, warnings)
    }

    /// Ownership: an existing environment may be changed or deleted only by its owner, a
    /// member of its team or a platform approver (owner and team as the default branch has
    /// them: a pull request cannot make itself the owner). The error, if any, names the
    /// manifest's `metadata.owner`: of the pull request's version when it changes the file,
    /// of the default branch's when it deletes it.
    pub(super) fn ownership(
        &self,
        change: &Change,
        head: Option<&ParsedManifest>,
        existing: Option<&Result<ParsedManifest, Diagnostic>>,
    ) -> Option<Diagnostic> {
        let author = self.ctx.author.as_str();
        let existing = existing?;
        let old = existing.as_ref().ok();
        let team = match old {
            Some(m) => m.manifest.metadata.team.clone(),
            None => names::parse_manifest_path(&change.path)
                .ok()?
                .team
                .to_string(),
        };
        let owner = old.and_then(|m| m.manifest.metadata.owner.as_deref());
        let approvers = self.gov.platform_approvers();
        if policy::may_change(author, owner, &team, approvers, self.membership) {
            return None;
        }
        let verb = if change.kind == ChangeKind::Deleted {
            "delete"
        } else {
            "change"
        };
        let mut who = Vec::new();
        if let Some(o) = owner {
            who.push(format!("its owner {o}"));
        }
        who.push(format!("members of team {team}"));
        let teams: Vec<&str> = approvers.iter().map(|a| a.team.as_str()).collect();
        if !teams.is_empty() {
            let mut uniq: Vec<&str> = Vec::new();
            for t in teams {
                if !uniq.contains(&t) {
                    uniq.push(t);
                }
            }
            who.push(format!(
                "platform approvers (team {})",
                uniq.join(", team ")
            ));
        }
        let who = match who.len() {
            1 => who.remove(0),
            _ => {
                let last = who.pop().unwrap_or_default();
                format!("{} or {last}", who.join(", "))
            }
        };
        let msg = format!(
            "{author} may not {verb} this existing environment: only {who} may (owner and team as on the default branch)"
        );
        let field = if owner.is_some() {
            "metadata.owner"
        } else {
            "metadata.team"
        };
        Some(match head.or(old) {
            Some(m) => m.diag(field, msg),
            None => Diagnostic::new(&change.path, msg).field(field),
        })
    }
}
