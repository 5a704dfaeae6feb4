//! What is applied is what was previewed (SPEC 14).
//!
//! At merge, a deploy gets the approved preview of its environment (the pull request's
//! kept previews, whose digest the approvals are bound to):
//! - a `plan.sh` definition's `deploy.sh` gets the approved change list in the file
//!   `ADE_PLAN` names, so it can refuse to do more;
//! - a Terraform definition applies the approved plan file itself when what it was made
//!   from (the governance and the definition, the parameters, the state) is unchanged;
//!   otherwise it plans again, and when the new plan deletes or replaces anything the
//!   approved one did not, the operation is refused with that reason and nothing runs (it
//!   applies the new plan otherwise: exactly what was just checked).

use super::preview::{governance_input, parameters_digest, run_preview, state_digest};
use super::{Item, RunSource};
use crate::preview::{summary, EnvPreview, PreviewSet, Status};
use crate::repo::Mirror;
use crate::runner::{PlanInput, RunOutcome, RunSpec, RunnerKind};
use crate::store::{EnvironmentRecord, OpKind};
use crate::work::{Deps, WorkError};

/// Gives a merge's deploy its approved preview. `Ok(Err(why))`: refused, nothing may run.
pub(super) async fn give(
    deps: &Deps,
    src: &RunSource,
    item: &Item,
    spec: &mut RunSpec,
    previous: Option<&EnvironmentRecord>,
) -> Result<Result<(), String>, WorkError> {
    let op = &item.op;
    let Some(pr) = op
        .pr
        .filter(|_| op.kind == OpKind::Deploy && op.cause.is_empty())
    else {
        return Ok(Ok(()));
    };
    let Some(rec) = deps.store.latest_preview(&op.repo, pr.0).await? else {
        return Ok(Ok(()));
    };
    let set: PreviewSet = serde_json::from_value(rec.previews)
        .map_err(|e| WorkError::Internal(format!("kept previews unreadable: {e}")))?;
    let Some(approved) = set.get(&op.manifest_path).cloned() else {
        return Ok(Ok(()));
    };
    if !matches!(approved.status, Status::Changes | Status::NoChanges) {
        return Ok(Ok(()));
    }
    match item.runner {
        RunnerKind::Command => {
            let list = serde_json::to_vec(&approved.changes)
                .map_err(|e| WorkError::Internal(e.to_string()))?;
            spec.plan = Some(PlanInput::Changes(list));
            Ok(Ok(()))
        }
        RunnerKind::Terraform if approved.plan_file => {
            terraform(deps, src, item, spec, previous, (rec.id, &approved)).await
        }
        RunnerKind::Terraform | RunnerKind::Arm => Ok(Ok(())),
    }
}

async fn terraform(
    deps: &Deps,
    src: &RunSource,
    item: &Item,
    spec: &mut RunSpec,
    previous: Option<&EnvironmentRecord>,
    (preview_id, approved): (i64, &EnvPreview),
) -> Result<Result<(), String>, WorkError> {
    let op = &item.op;
    let at = if src.from_fork {
        src.first_parent.clone()
    } else {
        op.merge_sha.clone()
    };
    let (mirror_path, definition) = (src.mirror_path.clone(), op.definition.clone());
    let governance = crate::work::blocking(move || -> Result<String, WorkError> {
        governance_input(&Mirror::open_path(&mirror_path)?, &at, &definition)
    })
    .await?;
    let unchanged = governance == approved.inputs.governance
        && parameters_digest(&op.parameters) == approved.inputs.parameters
        && state_digest(spec.storage.as_deref()) == approved.inputs.state;
    if unchanged {
        if let Some(file) = deps
            .store
            .preview_plan(preview_id, &op.manifest_path)
            .await?
        {
            spec.plan = Some(PlanInput::TerraformPlan(file));
            return Ok(Ok(()));
        }
    }
    // Something moved since the approval: plan again, and never destroy more.
    let r = run_preview(
        deps,
        item,
        &spec.definition_dir,
        previous,
        spec.storage.clone(),
    )
    .await?;
    let changes = matches!(
        r.outcome,
        RunOutcome::Succeeded
            | RunOutcome::Failed {
                exit_code: Some(2),
                ..
            }
    );
    let (Some(show), Some(file), true) = (&r.plan.terraform_show, r.plan.terraform_plan, changes)
    else {
        return Ok(Err(format!(
            "refused: what the approved preview was made from moved, and planning again failed ({}); nothing ran",
            r.outcome.describe()
        )));
    };
    let now = match summary::terraform_changes(show) {
        Ok(list) => list,
        Err(e) => return Ok(Err(format!("refused: {e}; nothing ran"))),
    };
    let more = summary::destroys_more(&approved.changes, &now);
    if !more.is_empty() {
        let named: Vec<String> = more
            .iter()
            .map(|c| format!("{} {}", c.action, c.resource))
            .collect();
        return Ok(Err(format!(
            "refused: the plan made at merge would {}, which the approved preview did not (the governance, the parameters or the state moved since it was approved); nothing ran: open a pull request again to preview and approve it",
            named.join(", ")
        )));
    }
    spec.plan = Some(PlanInput::TerraformPlan(file));
    Ok(Ok(()))
}
