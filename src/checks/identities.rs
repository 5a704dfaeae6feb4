//! Deploy identities named in `platform.yaml` (SPEC 13): `environmentTypes.<type>.identity`
//! and `planIdentity` must name identities the server defines (`[runner.identities]`).
//! Only the server knows its list: the checks get it in [`PrContext::identities`], and
//! `paved check`, offline, says it could not check them.

use super::PrContext;
use crate::diag::Diagnostic;
use crate::manifest::platform::{parse_platform, Platform, PLATFORM_PATH};
use crate::manifest::read_text;
use crate::manifest::yaml::{FieldPath, YamlDoc};
use crate::tree::TreeReader;
use std::collections::BTreeSet;

/// `platform.yaml` of `tree`, when it is there and parses (a broken one is reported by the
/// checks that read it).
fn platform_of(tree: &dyn TreeReader) -> Option<(YamlDoc, Platform)> {
    let text = read_text(tree, PLATFORM_PATH).ok().flatten()?;
    parse_platform(PLATFORM_PATH, &text).ok()
}

/// Each identity a platform names: (type, field, name).
fn named(platform: &Platform) -> impl Iterator<Item = (&String, &'static str, &String)> {
    platform.environment_types.iter().flat_map(|(ty, t)| {
        [
            ("identity", &t.identity),
            ("planIdentity", &t.plan_identity),
        ]
        .into_iter()
        .filter_map(move |(field, v)| v.as_ref().map(|v| (ty, field, v)))
    })
}

/// Each identity `tree`'s `platform.yaml` names that is not in `known`, with its field and
/// line.
pub fn unknown_identities(tree: &dyn TreeReader, known: &BTreeSet<String>) -> Vec<Diagnostic> {
    let Some((doc, platform)) = platform_of(tree) else {
        return Vec::new();
    };
    let defined = if known.is_empty() {
        "none".to_string()
    } else {
        known.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    named(&platform)
        .filter(|(_, _, v)| !known.contains(*v))
        .map(|(ty, field, v)| {
            let at = FieldPath::root()
                .key("environmentTypes")
                .key(ty.clone())
                .key(field);
            doc.diag(
                &at,
                format!("identity {v:?} is not defined by this Paved server (its [runner.identities]: {defined})"),
            )
        })
        .collect()
}

/// The identities `tree`'s `platform.yaml` names, as `environmentTypes.<type>.<field>: <name>`
/// (what `paved check` says it could not check).
pub fn named_identities(tree: &dyn TreeReader) -> Vec<String> {
    platform_of(tree)
        .map(|(_, p)| {
            named(&p)
                .map(|(ty, field, v)| format!("environmentTypes.{ty}.{field}: {v}"))
                .collect()
        })
        .unwrap_or_default()
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
