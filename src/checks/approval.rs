//! `paved/approval`: the pull request's reviews against the approvals of the environment's
//! type (and of its type on the default branch).
use super::evaluation::Evaluation;
use super::{Change, CheckKind, CheckOutcome};
use crate::diag::Diagnostic;
use crate::manifest::platform::{EnvironmentType, PLATFORM_PATH};
use crate::policy;

impl Evaluation<'_> {
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
            let digest = self.ctx.previews.as_ref().map(|p| p.digest());
            let at = (self.ctx.head_sha.as_deref(), digest.as_deref());
            let out = policy::evaluate_bound_approvals(
                rules,
                &self.ctx.reviews,
                &self.ctx.author,
                at,
                ty.dismiss_stale,
                self.membership,
            );
            // A preview that deletes or replaces something needs each `onDestroy` rule too.
            let destroyed: Vec<&str> = self
                .ctx
                .previews
                .as_ref()
                .and_then(|p| p.get(&change.path))
                .map(|p| p.destroyed().iter().map(|c| c.resource.as_str()).collect())
                .unwrap_or_default();
            let extra = ty
                .approvals
                .as_ref()
                .map(|a| a.on_destroy())
                .unwrap_or_default();
            if !destroyed.is_empty() {
                for rule in &extra {
                    let rule = std::slice::from_ref(rule);
                    let more = policy::evaluate_bound_approvals(
                        rule,
                        &self.ctx.reviews,
                        &self.ctx.author,
                        at,
                        ty.dismiss_stale,
                        self.membership,
                    );
                    if !more.pass {
                        errors.push(Diagnostic::new(
                            &change.path,
                            format!(
                                "{}: the preview destroys or replaces {} (type {name}: environmentTypes.{name}.approvals.onDestroy in {PLATFORM_PATH})",
                                more.description,
                                destroyed.join(", ")
                            ),
                        ));
                    }
                }
            }
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
