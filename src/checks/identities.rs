//! Deploy identities named in `platform.yaml` (SPEC 13): `environmentTypes.<type>.identity`
//! and `planIdentity` must name identities the server defines (`[runner.identities]`).
//! Only the server knows its list: the checks get it in [`PrContext::identities`], and
//! `paved check`, offline, says it could not check them.

use super::PrContext;
use crate::diag::Diagnostic;
use crate::manifest::platform::{parse_platform, PLATFORM_PATH};
use crate::manifest::read_text;
use crate::manifest::yaml::FieldPath;
use crate::tree::TreeReader;
use std::collections::BTreeSet;

/// Each identity `tree`'s `platform.yaml` names that is not in `known`, with its field and
/// line.
pub fn unknown_identities(tree: &dyn TreeReader, known: &BTreeSet<String>) -> Vec<Diagnostic> {
    let Some(text) = read_text(tree, PLATFORM_PATH).ok().flatten() else {
        return Vec::new();
    };
    let Ok((doc, platform)) = parse_platform(PLATFORM_PATH, &text) else {
        // A platform.yaml that does not parse is reported by the checks that read it.
        return Vec::new();
    };
    let mut errs = Vec::new();
    for (name, t) in &platform.environment_types {
        for (field, value) in [
            ("identity", &t.identity),
            ("planIdentity", &t.plan_identity),
        ] {
            let Some(v) = value else { continue };
            if !known.contains(v) {
                let at = FieldPath::root()
                    .key("environmentTypes")
                    .key(name.clone())
                    .key(field);
                errs.push(doc.diag(
                    &at,
                    format!(
                        "identity {v:?} is not defined by this Paved server (its [runner.identities]: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.iter().cloned().collect::<Vec<_>>().join(", ")
                        }
                    ),
                ));
            }
        }
    }
    errs
}

/// The identities `tree`'s `platform.yaml` names, as `environmentTypes.<type>.<field>: <name>`
/// (what `paved check` says it could not check).
pub fn named_identities(tree: &dyn TreeReader) -> Vec<String> {
    let Some(text) = read_text(tree, PLATFORM_PATH).ok().flatten() else {
        return Vec::new();
    };
    let Ok((_, platform)) = parse_platform(PLATFORM_PATH, &text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (name, t) in &platform.environment_types {
        for (field, value) in [
            ("identity", &t.identity),
            ("planIdentity", &t.plan_identity),
        ] {
            if let Some(v) = value {
                out.push(format!("environmentTypes.{name}.{field}: {v}"));
            }
        }
    }
    out
}

/// [`named_identities`] of a checkout on disk (`paved check`).
pub fn named_identities_local(path: &std::path::Path) -> Vec<String> {
    named_identities(&crate::tree::DirTree::new(path))
}

/// For a pull request that changes `platform.yaml`: the identities its head names that the
/// server does not define. Nothing when the list is unknown (offline).
pub(super) fn for_governance(
    head: &dyn TreeReader,
    changed: &[String],
    ctx: &PrContext,
) -> Vec<Diagnostic> {
    match &ctx.identities {
        Some(known) if changed.iter().any(|p| p == PLATFORM_PATH) => {
            unknown_identities(head, known)
        }
        _ => Vec::new(),
    }
}
