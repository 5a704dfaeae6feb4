//! Built-in rules and Rego policies.
//!
//! The built-in rules of SPEC section 3 are split between the checks:
//! - **schema** ([`schema_rules`]): format, unknown fields, naming, file stem = name,
//!   team folder = team, team exists, type exists, definition exists in the catalog,
//!   parameters valid for the definition, name unique in the repository;
//! - **policy** ([`policy_rules`] + [`rego`]): definition allowed for the type, required
//!   tags, `expiresAt` present and within `maxTtl`, owner (default: the PR author) is a
//!   member of the team, and the repository's Rego policies;
//! - **quota** ([`quota`]): the team's environment count on the default branch plus this
//!   pull request;
//! - **approval** ([`approval`]): the reviews against the type's `approvals`. Ownership (who
//!   may change or delete an existing environment, [`may_change`]) is part of **policy**.
//!
//! Rego policies see Paved's context under `data.paved` ([`paved_context`]):
//! ```json
//! {
//!   "type":   {"name": "dev", "workflow": "default", "maxTtl": "168h", "maxTtlSeconds": 604800,
//!              "definitions": ["postgres-db"], "requiredTags": ["cost-center"],
//!              "approvals": null, "dismissStale": true, "timeout": null},
//!   "team":   {"name": "payments", "members": ["octocat"], "quota": {"environments": 5}},
//!   "counts": {"team_environments": 3},
//!   "pr":     {"author": "octocat", "approvers": []}
//! }
//! ```
//! `counts.team_environments` is the team's count after this pull request (as the quota
//! check computes it); `definitions` is `null` when every definition is allowed.

pub mod approval;
pub mod quota;
pub mod rego;

pub use approval::{
    evaluate_approvals, evaluate_bound_approvals, may_change, ApprovalOutcome, Membership,
    NoMembers,
};
pub use rego::{Finding, RegoOutcome, RegoPolicies};

use crate::diag::Diagnostic;
use crate::manifest::{
    self, EnvironmentType, FieldPath, LoadedDefinition, ParsedManifest, Platform, Team,
};
use chrono::{DateTime, Utc};
use serde_json::json;
use std::collections::BTreeMap;

/// `data.paved` for one manifest.
pub fn paved_context(
    type_name: &str,
    ty: &EnvironmentType,
    team_name: &str,
    team: &Team,
    team_environments: usize,
    author: &str,
    approvers: &[String],
) -> serde_json::Value {
    json!({
        "type": {
            "name": type_name,
            "description": ty.description,
            "workflow": ty.workflow,
            "maxTtl": ty.max_ttl.as_ref().map(|d| d.as_str()),
            "maxTtlSeconds": ty.max_ttl.as_ref().map(|d| d.seconds()),
            "definitions": ty.definitions,
            "requiredTags": ty.required_tags,
            "approvals": ty.approvals,
            "dismissStale": ty.dismiss_stale,
            "timeout": ty.timeout.as_ref().map(|d| d.as_str()),
        },
        "team": {
            "name": team_name,
            "members": team.members,
            "quota": team.quota,
        },
        "counts": { "team_environments": team_environments },
        "pr": { "author": author, "approvers": approvers },
    })
}

/// The schema rules that need governance: team, type and definition exist, parameters
/// match the definition. (Format, naming and path rules are in
/// [`manifest::environment::check_manifest`].)
pub fn schema_rules(
    m: &ParsedManifest,
    platform: &Platform,
    catalog: &BTreeMap<String, Result<LoadedDefinition, Vec<Diagnostic>>>,
) -> Vec<Diagnostic> {
    let mut errs = Vec::new();
    let spec = &m.manifest.spec;
    let team = &m.manifest.metadata.team;
    if !platform.teams.contains_key(team) {
        errs.push(m.diag(
            "metadata.team",
            format!(
                "team {team:?} is not defined in .paved/platform.yaml ({})",
                list_or_none(platform.teams.keys())
            ),
        ));
    }
    if !platform.environment_types.contains_key(&spec.env_type) {
        errs.push(m.diag(
            "spec.type",
            format!(
                "type {:?} is not defined in .paved/platform.yaml ({})",
                spec.env_type,
                list_or_none(platform.environment_types.keys())
            ),
        ));
    }
    match catalog.get(&spec.definition) {
        None => errs.push(m.diag(
            "spec.definition",
            format!(
                "definition {:?} is not in the catalog (no catalog/{}/environment.yaml at the base branch)",
                spec.definition, spec.definition
            ),
        )),
        Some(Err(def_errs)) => {
            errs.push(m.diag(
                "spec.definition",
                format!("definition {:?} is broken at the base branch", spec.definition),
            ));
            errs.extend(def_errs.iter().cloned());
        }
        Some(Ok(def)) => errs.extend(manifest::check_parameters(m, def)),
    }
    errs
}

fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none are".to_string()
    } else {
        format!("known: {}", v.join(", "))
    }
}

/// The built-in rules of the policy check for a manifest whose type and team exist.
/// Returns (errors, warnings).
pub fn policy_rules(
    m: &ParsedManifest,
    type_name: &str,
    ty: &EnvironmentType,
    team: &Team,
    author: &str,
    now: DateTime<Utc>,
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut errs = Vec::new();
    let mut warns = Vec::new();
    let spec = &m.manifest.spec;
    let meta = &m.manifest.metadata;

    if let Some(allowed) = &ty.definitions {
        if !allowed.contains(&spec.definition) {
            errs.push(m.diag(
                "spec.definition",
                format!(
                    "definition {:?} is not allowed for type {type_name} (allowed: {})",
                    spec.definition,
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                ),
            ));
        }
    }

    for tag in &ty.required_tags {
        match spec.tags.get(tag) {
            None => errs.push(m.diag(
                "spec.tags",
                format!("tag {tag:?} is required for type {type_name}"),
            )),
            Some(v) if v.trim().is_empty() => errs.push(m.diag_path(
                &FieldPath::parse("spec.tags").key(tag.clone()),
                format!("tag {tag:?} must not be empty"),
            )),
            Some(_) => {}
        }
    }

    match (&ty.max_ttl, &spec.expires_at, m.expires_at()) {
        (Some(ttl), None, _) => errs.push(m.diag(
            "spec",
            format!("expiresAt is required for type {type_name} (maxTtl {ttl})"),
        )),
        (_, Some(_), None) => {} // not a time: a schema error
        (ttl, Some(raw), Some(exp)) => {
            if exp <= now {
                let d = m.diag("spec.expiresAt", format!("{raw} is in the past"));
                if ttl.is_some() {
                    errs.push(d);
                } else {
                    warns.push(d);
                }
            } else if let Some(ttl) = ttl {
                let secs = i64::try_from(ttl.seconds()).unwrap_or(i64::MAX);
                let latest = now + chrono::Duration::seconds(secs.min(100 * 365 * 86_400));
                if exp > latest {
                    errs.push(m.diag(
                        "spec.expiresAt",
                        format!(
                            "{raw} is more than {ttl} from now (maxTtl of type {type_name}); the latest allowed is {}",
                            latest.format("%Y-%m-%dT%H:%M:%SZ")
                        ),
                    ));
                }
            }
        }
        (None, None, _) => {}
    }

    if ty.require_schedule && spec.schedule.as_ref().is_none_or(|s| s.stop.is_none()) {
        errs.push(m.diag(
            "spec",
            format!(
                "schedule is required for type {type_name} (requireSchedule): add spec.schedule with a stop time, e.g. {{stop: \"19:00\", start: \"08:00\", timeZone: Europe/Berlin, days: [mon, tue, wed, thu, fri]}}"
            ),
        ));
    }

    match &meta.owner {
        Some(owner) => {
            if !team.has_member(owner) {
                errs.push(m.diag(
                    "metadata.owner",
                    format!("owner {owner} is not a member of team {}", meta.team),
                ));
            }
        }
        None if author.is_empty() => warns.push(m.diag(
            "metadata",
            "no owner: on a pull request the owner defaults to its author, who must be a member of the team",
        )),
        None => {
            if !team.has_member(author) {
                errs.push(m.diag(
                    "metadata",
                    format!(
                        "the owner defaults to the pull request's author {author}, who is not a member of team {}; set metadata.owner",
                        meta.team
                    ),
                ));
            }
        }
    }
    (errs, warns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::platform::parse_platform;

    const PLATFORM: &str = "\
teams:
  payments: { members: [octocat], quota: { environments: 2 } }
environmentTypes:
  dev: { maxTtl: 168h, definitions: [postgres-db], requiredTags: [cost-center] }
";

    fn manifest(extra: &str) -> ParsedManifest {
        let text = format!(
            "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: abc\n  team: payments\n{extra}spec:\n  type: dev\n  definition: static-site\n  tags:\n    cost-center: ''\n  expiresAt: 2030-01-01T00:00:00Z\n"
        );
        manifest::parse_manifest("environments/payments/abc.yaml", &text).expect("manifest")
    }

    #[test]
    fn type_rules() {
        let (_, p) = parse_platform("p", PLATFORM).expect("platform");
        let now = DateTime::parse_from_rfc3339("2029-12-30T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let m = manifest("  owner: hubot\n");
        let (errs, warns) = policy_rules(
            &m,
            "dev",
            &p.environment_types["dev"],
            &p.teams["payments"],
            "octocat",
            now,
        );
        let msgs: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert_eq!(errs.len(), 3, "{msgs:#?}");
        assert!(
            msgs[0].contains(":9:3: spec.definition: definition \"static-site\" is not allowed"),
            "{msgs:#?}"
        );
        assert!(
            msgs[1].contains("spec.tags.cost-center: tag \"cost-center\" must not be empty"),
            "{msgs:#?}"
        );
        assert!(msgs[2].contains("owner hubot is not a member"), "{msgs:#?}");
        assert!(warns.is_empty());

        let later = DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let m = manifest("");
        let (errs, _) = policy_rules(
            &m,
            "dev",
            &p.environment_types["dev"],
            &p.teams["payments"],
            "stranger",
            later,
        );
        assert!(
            errs.iter()
                .any(|d| d.message.contains("more than 168h from now")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|d| d.message.contains("author stranger")),
            "{errs:?}"
        );
    }

    #[test]
    fn context_shape() {
        let (_, p) = parse_platform("p", PLATFORM).expect("platform");
        let c = paved_context(
            "dev",
            &p.environment_types["dev"],
            "payments",
            &p.teams["payments"],
            1,
            "octocat",
            &[],
        );
        assert_eq!(c["type"]["maxTtlSeconds"], 604_800);
        assert_eq!(c["team"]["quota"]["environments"], 2);
        assert_eq!(c["counts"]["team_environments"], 1);
        assert_eq!(c["pr"]["author"], "octocat");
    }
}
