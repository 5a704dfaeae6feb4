//! `paved/plan`: the preview of each touched environment (SPEC 14), as the handlers made
//! it and put in [`PrContext::previews`](super::PrContext). A failed preview fails the
//! check only when the type says `requirePlan: true`; no preview is never a failure.

use super::evaluation::Evaluation;
use super::{Change, CheckKind, CheckOutcome};
use crate::diag::Diagnostic;
use crate::manifest::platform::PLATFORM_PATH;
use crate::preview::{render, Status};

impl Evaluation<'_> {
    /// `paved/plan` for one environment.
    pub(super) fn plan(&self, change: &Change, env_type: Option<&str>) -> CheckOutcome {
        let check = CheckKind::Plan;
        let Some(set) = &self.ctx.previews else {
            if self.ctx.author.is_empty() {
                // `paved check`: previews run on the pull request, in its sandbox.
                let w = Diagnostic::new(
                    &change.path,
                    "previews (plan.sh, terraform plan) run on the pull request",
                );
                return CheckOutcome::new(check, Vec::new(), vec![w])
                    .with_summary("previews run on the pull request");
            }
            // Not made yet (the other checks are posted first): nothing to say.
            return CheckOutcome::new(check, Vec::new(), Vec::new());
        };
        let Some(p) = set.get(&change.path) else {
            return CheckOutcome::new(check, Vec::new(), Vec::new()).with_summary("not previewed");
        };
        let line = render::env_line(p);
        if p.status != Status::Failed {
            return CheckOutcome::new(check, Vec::new(), Vec::new()).with_summary(line);
        }
        let required = env_type.is_some_and(|t| self.requires_plan(t));
        if required {
            let t = env_type.unwrap_or_default();
            let d = Diagnostic::new(
                &change.path,
                format!("{line} (environmentTypes.{t}.requirePlan in {PLATFORM_PATH})"),
            );
            CheckOutcome::new(check, vec![d], Vec::new())
        } else {
            let d = Diagnostic::new(&change.path, format!("{line} (not required)"));
            CheckOutcome::new(check, Vec::new(), vec![d]).with_summary(line)
        }
    }

    /// The type says `requirePlan: true`.
    pub(super) fn requires_plan(&self, env_type: &str) -> bool {
        self.gov
            .platform()
            .and_then(|p| p.environment_types.get(env_type))
            .is_some_and(|t| t.require_plan)
    }
}
