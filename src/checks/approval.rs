//! `paved/approval`: the pull request's reviews against the approvals of the environment's
//! type (and of its type on the default branch).
use super::run::Run;
use super::{Change, CheckKind, CheckOutcome};
use crate::diag::Diagnostic;
use crate::manifest::platform::{EnvironmentType, PLATFORM_PATH};
use crate::policy;

impl Run<'_> {
    /// `paved/approval`: the reviews against the approvals of the environment's type in
    /// the pull request (`env_type`) and, when different, of its type on the default branch
    /// (`old_type`): changing a `prod` environment into a `dev` one needs `prod`'s approvals.
    pub(super) fn approval(
        &self,
        change: &Change,
        env_type: Option<&str>,
        old_type: Option<&str>,
    ) -> CheckOutcome {
        let check = CheckKind::Approval;
        let mut types: Vec<(&str, &EnvironmentType)> = Vec::new();
        for t in [env_type, old_type].into_iter().flatten() {
            if let Some((name, ty)) = self.gov.approval_type(t) {
                if !types.iter().any(|(n, _)| *n == name) {
                    types.push((name, ty));
                }
            }
        }
        if types.is_empty() {
            return CheckOutcome::new(check, Vec::new(), Vec::new())
                .with_summary("no approval required");
        }
        let where_ = |name: &str| format!("environmentTypes.{name}.approvals in {PLATFORM_PATH}");
        if self.ctx.author.is_empty() {
            // `paved check`: there is no pull request whose reviews could count.
            let warnings = types
                .iter()
                .map(|(name, ty)| {
                    let rules = ty
                        .approvals
                        .as_ref()
                        .map(|a| a.alternatives())
                        .unwrap_or_default();
                    let need =
                        policy::evaluate_approvals(rules, &[], "", None, false, self.membership);
                    Diagnostic::new(
                        &change.path,
                        format!(
                            "approvals are counted on the pull request: it {} ({})",
                            need.description,
                            where_(name)
                        ),
                    )
                })
                .collect();
            return CheckOutcome::new(check, Vec::new(), warnings)
                .with_summary("approvals are counted on the pull request");
        }
        let mut errors = Vec::new();
        let mut summaries: Vec<String> = Vec::new();
        for (name, ty) in &types {
            let rules = ty
                .approvals
                .as_ref()
                .map(|a| a.alternatives())
                .unwrap_or_default();
            let out = policy::evaluate_approvals(
                rules,
                &self.ctx.reviews,
                &self.ctx.author,
                self.ctx.head_sha.as_deref(),
                ty.dismiss_stale,
                self.membership,
            );
            if out.pass {
                if !summaries.contains(&out.description) {
                    summaries.push(out.description);
                }
            } else {
                let on_branch = if Some(*name) != env_type {
                    " on the default branch"
                } else {
                    ""
                };
                errors.push(Diagnostic::new(
                    &change.path,
                    format!(
                        "{} (type {name}{on_branch}: {})",
                        out.description,
                        where_(name)
                    ),
                ));
            }
        }
        let outcome = CheckOutcome::new(check, errors, Vec::new());
        if outcome.verdict.is_pass() {
            outcome.with_summary(summaries.join("; "))
        } else {
            outcome
        }
    }
}
