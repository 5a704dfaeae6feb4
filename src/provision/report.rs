//! Reporting finished operations: each one's final deployment status, and one git note
//! with every record (the audit trail, queued in the notes outbox and pushed apart: see
//! [`crate::outbox`]).

use super::MAX_OP_ATTEMPTS;
use crate::audit::{AuditRecord, CheckVerdict};
use crate::forge::client::{GitHub, NewDeploymentStatus};
use crate::store::{
    public_outputs, reported, NewNote, OpKind, OpState, OperationRecord, OperationUpdate,
};
use crate::work::{Deps, Target, WorkError};

/// Makes the reports of finished operations that are not made yet: each one's final
/// deployment status (concurrently), then one git note holding every record, queued once
/// (a note per operation would cost a commit and a push each).
pub(crate) async fn report_operations(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    recs: &[OperationRecord],
) -> Result<(), WorkError> {
    let finished: Vec<&OperationRecord> = recs.iter().filter(|r| r.state.is_final()).collect();
    let posts = finished
        .iter()
        .filter(|r| r.reported & reported::DEPLOYMENT == 0)
        .map(|r| report_deployment(deps, gh, at, r));
    for r in futures::future::join_all(posts).await {
        r?;
    }
    let unnoted: Vec<&&OperationRecord> = finished
        .iter()
        .filter(|r| r.reported & reported::NOTE == 0)
        .collect();
    let Some(first) = unnoted.first() else {
        return Ok(());
    };
    let text = unnoted
        .iter()
        .map(|r| crate::audit::render(&audit_record(r)))
        .collect::<Vec<_>>()
        .join("\n");
    // The outcome never waits on Git (issue 20): the note is queued with the operations
    // marked noted, in one transaction, and pushed by the outbox apart from this delivery.
    let ids: Vec<_> = unnoted.iter().map(|r| r.id).collect();
    let note = deps
        .store
        .queue_note(
            NewNote {
                repo: at.repo.clone(),
                clone_url: at.clone_url.clone(),
                installation: at.installation,
                commit: first.op.merge_sha.clone(),
                text,
            },
            &ids,
            crate::outbox::lease(deps),
        )
        .await?;
    crate::outbox::push_now(deps, note).await;
    Ok(())
}

/// The final deployment status of a finished operation.
async fn report_deployment(
    deps: &Deps,
    gh: &GitHub,
    at: &Target,
    rec: &OperationRecord,
) -> Result<(), WorkError> {
    let run_url = format!("{}/api/v1/operations/{}", deps.public_url(), rec.id);
    if let Some(d) = rec.deployment_id {
        let (state, description) = match rec.state {
            // An expired environment is gone: GitHub shows its deployment inactive.
            OpState::Succeeded if rec.op.kind == OpKind::Expire => {
                ("inactive", "expired: deleted at its expiresAt".to_string())
            }
            OpState::Succeeded => ("success", format!("{} succeeded", rec.op.kind.as_str())),
            OpState::Interrupted => (
                "error",
                if rec.op.attempt < MAX_OP_ATTEMPTS {
                    "interrupted by a server restart; running it again".to_string()
                } else {
                    "interrupted by a server restart; gave up".to_string()
                },
            ),
            _ => (
                "failure",
                rec.error.clone().unwrap_or_else(|| "failed".into()),
            ),
        };
        let environment_url = (rec.state == OpState::Succeeded)
            .then(|| output_url(&rec.outputs))
            .flatten();
        gh.create_deployment_status(
            &at.repo,
            d,
            &NewDeploymentStatus {
                state: state.into(),
                description,
                log_url: Some(run_url),
                environment_url,
                auto_inactive: None,
            },
        )
        .await?;
    }
    deps.store
        .update_operation(rec.id, OperationUpdate::Reported(reported::DEPLOYMENT))
        .await?;
    Ok(())
}

/// The `url` output, when the run wrote one, it is not sensitive and it is a web address
/// (a `javascript:` value is never made a link).
fn output_url(outputs: &serde_json::Value) -> Option<String> {
    let o = public_outputs(outputs);
    let v = o.get("url")?.get("value")?;
    v.as_str()
        .and_then(crate::links::web_url)
        .map(str::to_string)
}

/// The audit note of one operation attempt. Never holds outputs or logs: only who, what,
/// which checks, which governance, when and how it ended.
fn audit_record(rec: &OperationRecord) -> AuditRecord {
    let op = &rec.op;
    let checks = op
        .checks
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| CheckVerdict {
                    context: c["context"].as_str().unwrap_or_default().to_string(),
                    verdict: c["verdict"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let message = match rec.state {
        OpState::Succeeded => format!("{} succeeded", op.kind.as_str()),
        OpState::Interrupted => "interrupted: the server stopped while it ran".to_string(),
        _ => rec
            .error
            .clone()
            .unwrap_or_else(|| rec.state.as_str().to_string()),
    };
    AuditRecord {
        environment: op.env_name.to_string(),
        team: op.team.to_string(),
        operation: op.kind.as_str().to_string(),
        outcome: rec.state.as_str().to_string(),
        run_id: Some(rec.id.0),
        repository: op.repo.to_string(),
        pull_request: op.pr.map(|p| p.0),
        requester: Some(op.requester.to_string()),
        merger: op.merger.as_ref().map(ToString::to_string),
        approvers: op.approvers.iter().map(ToString::to_string).collect(),
        checks,
        governance_commit: (!op.governance_sha.is_empty()).then(|| op.governance_sha.clone()),
        started_at: rec.started_at.clone(),
        finished_at: rec.finished_at.clone(),
        message: Some(message),
        attempt: Some(op.attempt),
    }
}
