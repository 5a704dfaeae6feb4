//! Reporting a merge as a whole (each operation's own report is
//! [`crate::provision::report`]): the PR's comment and `paved/provision`'s verdict.

use super::Quiet;
use crate::checks::{self, Report};
use crate::event::PrInfo;
use crate::forge::client::StatusState;
use crate::handlers::comment;
use crate::ids::CommitSha;
use crate::store::{public_outputs, OpState, OperationRecord};

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
