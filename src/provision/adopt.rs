//! Adoption at merge (SPEC 15): the environments pull request `paved import ade` opened
//! records its environments as they are in the other tool. Its deploys become `adopt`
//! operations: no script runs; the environment enters the inventory `ready` with the
//! outputs the import read (sensitive ones stay in the database), and its note says so.
//! A pull request whose head is not the commit Paved pushed adopts nothing: someone changed
//! it after the import, and what was read is no longer what is merged.

use super::Item;
use crate::ids::{CommitSha, RepoName};
use crate::runner::{Output, RunOutcome, RunResult};
use crate::store::{NewOperation, OpKind, OpState};
use crate::work::Deps;
use crate::work::WorkError;
use std::collections::BTreeMap;

/// Turns the import's deploys into adoptions; closes the import. A changed pull request's
/// imported environments are refused with the reason.
pub(crate) async fn mark(
    deps: &Deps,
    repo: &RepoName,
    pr: u64,
    head: &CommitSha,
    items: &mut [Item],
) -> Result<(), WorkError> {
    let Some(import) = deps.store.import_for_pr(repo, pr).await? else {
        return Ok(());
    };
    if import.open {
        deps.store.close_import(import.id).await?;
    }
    let untouched = import.head_sha.as_deref() == Some(head.as_str());
    for item in items.iter_mut().filter(|i| i.op.kind == OpKind::Deploy) {
        let imported = deps
            .store
            .imported_environment(import.id, &item.op.env_name)
            .await?;
        let Some(env) = imported else {
            continue;
        };
        item.op.kind = OpKind::Adopt;
        item.op.cause = format!("imported from {}", env.source_uri);
        if !untouched && item.op.state != OpState::Refused {
            item.op.state = OpState::Refused;
            item.op.error = Some(format!(
                "the import pull request was changed after Paved pushed it (head {head}, pushed {}): {} was not adopted; run paved import ade again",
                import.head_sha.as_deref().unwrap_or("none"),
                item.op.env_name
            ));
        }
    }
    Ok(())
}

/// The result of an adoption: the outputs the import read, no script run. An environment
/// adopted before is not adopted again.
pub(super) async fn result(deps: &Deps, op: &NewOperation) -> Result<RunResult, WorkError> {
    let now = deps.config.lifecycle.clock.now();
    let done = |outcome, log: String, outputs| RunResult {
        outcome,
        log,
        error_log: String::new(),
        outputs,
        outputs_error: None,
        operation_result: None,
        plan: Default::default(),
        storage: Vec::new(),
        pid: None,
        started_at: now,
        finished_at: now,
    };
    let import = match op.pr {
        Some(pr) => deps.store.import_for_pr(&op.repo, pr.0).await?,
        None => None,
    };
    let env = match &import {
        Some(i) => deps.store.imported_environment(i.id, &op.env_name).await?,
        None => None,
    };
    let (Some(import), Some(env)) = (import, env) else {
        return Ok(done(
            RunOutcome::NotRunnable(format!("no import records {} any more", op.env_name)),
            String::new(),
            BTreeMap::new(),
        ));
    };
    if !deps.store.mark_adopted(import.id, &op.env_name).await? {
        return Ok(done(
            RunOutcome::NotRunnable(format!(
                "{} was adopted already by this import: nothing adopted twice",
                op.env_name
            )),
            String::new(),
            BTreeMap::new(),
        ));
    }
    let outputs = outputs_of(&env.outputs);
    let log = format!(
        "adopted from {} as it is there (import {}); no script ran\n",
        env.source_uri, import.id
    );
    Ok(done(RunOutcome::Succeeded, log, outputs))
}

/// The outputs as Paved keeps them; ADE's types (`boolean`, and the `bool` and `int` its own
/// examples use) named as `ADE_OUTPUTS` names them.
fn outputs_of(outputs: &serde_json::Value) -> BTreeMap<String, Output> {
    let mut out = BTreeMap::new();
    for (name, o) in outputs.as_object().into_iter().flatten() {
        let t = match o["type"]
            .as_str()
            .unwrap_or("string")
            .to_ascii_lowercase()
            .as_str()
        {
            "bool" | "boolean" => "boolean".to_string(),
            "int" | "integer" | "number" => "number".to_string(),
            other => other.to_string(),
        };
        out.insert(
            name.clone(),
            Output {
                r#type: t,
                value: o["value"].clone(),
                sensitive: o["sensitive"].as_bool().unwrap_or(false),
            },
        );
    }
    out
}
