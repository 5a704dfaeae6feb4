//! A preview's run (SPEC 14): `plan.sh`, or `terraform plan`, for the operation a pull
//! request would start, in the sandbox with the type's identity, and the digests an
//! approval is bound to (what governs it, its parameters, the state it starts from).

use super::{identity, run::run_spec, Item};
use crate::ids::CommitSha;
use crate::preview;
use crate::runner::{self, Operation, PlanInput, RunResult};
use crate::work::{Deps, WorkError};

/// What governs a preview: the tree ids of `.paved/` and of the definition's folder.
pub(crate) fn governance_input(
    mirror: &crate::repo::Mirror,
    at: &CommitSha,
    definition: &str,
) -> Result<String, WorkError> {
    Ok(format!(
        "{}:{}",
        mirror.subtree_id(at, ".paved")?.unwrap_or_default(),
        mirror
            .subtree_id(at, &format!("catalog/{definition}"))?
            .unwrap_or_default()
    ))
}

/// The digest of a run's parameters.
pub(crate) fn parameters_digest(parameters: &serde_json::Value) -> String {
    preview::sha256(parameters.to_string().as_bytes())
}

/// The digest of an environment's `ADE_STORAGE` (empty: none).
pub(crate) fn state_digest(storage: Option<&[u8]>) -> String {
    match storage {
        Some(s) if !s.is_empty() => preview::sha256(s),
        _ => String::new(),
    }
}

/// Runs `item`'s preview (its operation: deploy or delete) from `def_dir`, with `storage`.
pub(crate) async fn run_preview(
    deps: &Deps,
    item: &Item,
    def_dir: &std::path::Path,
    previous: Option<&crate::store::EnvironmentRecord>,
    storage: Option<Vec<u8>>,
) -> Result<RunResult, WorkError> {
    // Runs carry an id for PAVED_RUN_ID and the token; a preview's is its own, apart from
    // operations' (which count up from 1).
    let run_id = -(i64::from(rand::random::<u32>()) + 1);
    let mut spec = run_spec(
        deps,
        item,
        (run_id, Operation::Plan),
        def_dir.to_path_buf(),
        previous,
        storage,
    );
    let of = if item.op.kind.removes() {
        Operation::Delete
    } else {
        Operation::Deploy
    };
    spec.plan = Some(PlanInput::Preview(of));
    let r = match identity::prepare(deps, item, &item.op, (run_id, spec.timeout), "plan").await? {
        Ok(prepared) => {
            if let Some(p) = prepared {
                p.apply(&mut spec);
            }
            runner::run(spec, |_| async {}).await
        }
        Err(why) => runner::not_run(why, Vec::new()),
    };
    Ok(r)
}
