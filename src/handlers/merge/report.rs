//! Reporting a merge's operations: each one's final deployment status, one git note with
//! every record (the audit trail, queued in the notes outbox and pushed apart: see
//! [`crate::handlers::notes`]), the PR's comment and `paved/provision`'s verdict.

use super::{Quiet, MAX_OP_ATTEMPTS};
use crate::audit::{AuditRecord, CheckVerdict};
use crate::checks::{self, Report};
use crate::event::PrInfo;
use crate::forge::client::{GitHub, NewDeploymentStatus, StatusState};
use crate::handlers::{comment, Deps, Target, WorkError};
use crate::ids::CommitSha;
use crate::store::{
    public_outputs, reported, NewNote, OpKind, OpState, OperationRecord, OperationUpdate,
};

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
            crate::handlers::notes::lease(deps),
        )
        .await?;
    crate::handlers::notes::push_now(deps, note).await;
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
        environment: op.env_name.clone(),
        team: op.team.clone(),
        operation: op.kind.as_str().to_string(),
        outcome: rec.state.as_str().to_string(),
        run_id: Some(rec.id.0),
        repository: op.repo.to_string(),
        pull_request: Some(op.pr),
        requester: Some(op.requester.clone()),
        merger: (!op.merger.is_empty()).then(|| op.merger.clone()),
        approvers: op.approvers.clone(),
        checks,
        governance_commit: (!op.governance_sha.is_empty()).then(|| op.governance_sha.clone()),
        started_at: rec.started_at.clone(),
        finished_at: rec.finished_at.clone(),
        message: Some(message),
        attempt: Some(op.attempt),
    }
}

/// `paved/provision`: success only when every operation succeeded.
/// Environments for which nothing ran are named after.
pub(super) fn provision_verdict(ops: &[OperationRecord], quiet: &Quiet) -> (StatusState, String) {
    let mut nothing_ran = Vec::new();
    if !quiet.extended.is_empty() {
        nothing_ran.push(format!("extended {}", quiet.extended.join(", ")));
    }
    if !quiet.gone.is_empty() {
        nothing_ran.push(format!(
            "removed the manifest of {} (already deleted)",
            quiet.gone.join(", ")
        ));
    }
    let nothing_ran = nothing_ran.join("; ");
    if let Some(path) = quiet.unnamed.first() {
        let more = match quiet.unnamed.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        return (
            StatusState::Failure,
            format!(
                "{path} refused: not a valid environment manifest path (paved/schema failed){more}"
            ),
        );
    }
    let ok = ops.iter().filter(|o| o.state == OpState::Succeeded).count();
    let bad: Vec<&OperationRecord> = ops
        .iter()
        .filter(|o| o.state != OpState::Succeeded)
        .collect();
    if bad.is_empty() {
        return (
            StatusState::Success,
            match (ops.len(), nothing_ran.is_empty()) {
                (_, true) => format!("{ok} environment operation(s) succeeded"),
                (0, false) => format!("{nothing_ran}: no script ran"),
                _ => format!(
                    "{ok} environment operation(s) succeeded; {nothing_ran} (no script ran)"
                ),
            },
        );
    }
    let first = bad[0];
    let why = match (first.state, &first.error) {
        (OpState::Refused, Some(e))
            if e.starts_with("expired:") || e.starts_with("ungoverned:") =>
        {
            format!("{} refused, {e}", first.op.env_name)
        }
        (OpState::Refused, _) => format!("{} refused: checks did not pass", first.op.env_name),
        (_, _) => format!(
            "{} {} {}: {}",
            first.op.env_name,
            first.op.kind.as_str(),
            first.state.as_str(),
            first.error.as_deref().unwrap_or("")
        ),
    };
    let more = if bad.len() > 1 {
        format!(" (+{} more)", bad.len() - 1)
    } else {
        String::new()
    };
    (
        StatusState::Failure,
        format!("{ok}/{} succeeded; {why}{more}", ops.len()),
    )
}

/// The PR's summary comment after the merge: the checks as recomputed, then what
/// provisioning did, with non-sensitive outputs only.
pub(super) fn merge_comment(
    public_url: &str,
    pr: &PrInfo,
    merge_sha: &CommitSha,
    report: &Report,
    ops: &[OperationRecord],
    quiet: &Quiet,
) -> String {
    let fork = if pr.from_fork {
        format!("> {}\n\n", comment::FORK_NOTE)
    } else {
        String::new()
    };
    let mut s = format!(
        "{}\n### Paved: merged as `{}`\n\n{fork}#### Provisioning\n\n| environment | operation | outcome | outputs | run |\n|---|---|---|---|---|\n",
        comment::COMMENT_MARKER,
        merge_sha.short()
    );
    for o in ops {
        let outputs = public_outputs(&o.outputs);
        let shown: Vec<String> = outputs
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let val = match v.get("value") {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        format!("`{k}` = `{}`", val.replace('`', "'").replace('|', "\\|"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let outcome = match (o.state, &o.error) {
            (OpState::Succeeded, _) => "✅ succeeded".to_string(),
            (state, Some(e)) => format!(
                "❌ {}: {}",
                state.as_str(),
                e.replace('|', "\\|").replace('\n', " ")
            ),
            (state, None) => format!("❌ {}", state.as_str()),
        };
        s.push_str(&format!(
            "| `{}/{}` | {} | {} | {} | [{}]({public_url}/api/v1/operations/{}) |\n",
            o.op.team,
            o.op.env_name,
            o.op.kind.as_str(),
            outcome,
            if shown.is_empty() {
                "—".to_string()
            } else {
                shown.join("<br>")
            },
            o.id,
            o.id
        ));
    }
    for name in &quiet.extended {
        s.push_str(&format!(
            "| `{name}` | extend | ✅ expiresAt moved; no script ran | — | — |\n"
        ));
    }
    for path in &quiet.unnamed {
        s.push_str(&format!(
            "| `{path}` | — | ❌ refused: not a valid environment manifest path | — | — |\n"
        ));
    }
    for name in &quiet.gone {
        s.push_str(&format!(
            "| `{name}` | — | ✅ already deleted; only its manifest went | — | — |\n"
        ));
    }
    s.push_str(&format!(
        "\n#### Checks at merge (head `{}`)\n\n{}\n",
        pr.head_sha.short(),
        checks::render_markdown(report)
    ));
    s
}
