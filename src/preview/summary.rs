//! A preview's change list: the JSON `plan.sh` writes to `ADE_PLAN`, or the resources of
//! `terraform show -json`. Destroying changes come first, then by resource.

use super::{Action, PlannedChange};
use serde::Deserialize;

/// Changes listed at most (a longer list is cut, and says so).
pub const MAX_CHANGES: usize = 500;

/// `[{"action": "create|update|delete|replace", "resource": "…"}]`, as `plan.sh` writes it.
pub fn parse_change_list(bytes: &[u8]) -> Result<Vec<PlannedChange>, String> {
    let list: Vec<PlannedChange> = serde_json::from_slice(bytes).map_err(|e| {
        format!(
            "ADE_PLAN is not a list of {{\"action\": \"create|update|delete|replace\", \"resource\": \"…\"}}: {e}"
        )
    })?;
    if let Some(bad) = list.iter().find(|c| c.resource.trim().is_empty()) {
        return Err(format!(
            "ADE_PLAN lists a {} with an empty resource",
            bad.action
        ));
    }
    Ok(sorted(list))
}

#[derive(Deserialize)]
struct Show {
    #[serde(default)]
    resource_changes: Vec<ResourceChange>,
}

#[derive(Deserialize)]
struct ResourceChange {
    address: String,
    change: ChangeActions,
}

#[derive(Deserialize)]
struct ChangeActions {
    actions: Vec<String>,
}

/// The resources `terraform show -json <plan>` would add, change, destroy or replace,
/// each by its address (`no-op` and `read` are left out). Values are never read: a
/// sensitive one cannot reach the summary.
pub fn terraform_changes(show_json: &[u8]) -> Result<Vec<PlannedChange>, String> {
    let show: Show = serde_json::from_slice(show_json)
        .map_err(|e| format!("terraform show -json could not be read: {e}"))?;
    let mut out = Vec::new();
    for rc in show.resource_changes {
        let acts: Vec<&str> = rc.change.actions.iter().map(String::as_str).collect();
        let action = match acts.as_slice() {
            ["create"] => Action::Create,
            ["update"] => Action::Update,
            ["delete"] => Action::Delete,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            ["no-op"] | ["read"] | [] | ["forget"] => continue,
            other => {
                return Err(format!(
                    "unknown Terraform actions {other:?} for {}",
                    rc.address
                ))
            }
        };
        out.push(PlannedChange {
            action,
            resource: rc.address,
        });
    }
    Ok(sorted(out))
}

/// Destroying changes first (replace, then delete), then creates and updates; by resource
/// within each.
fn sorted(mut list: Vec<PlannedChange>) -> Vec<PlannedChange> {
    let rank = |a: Action| Action::ALL.iter().position(|x| *x == a).unwrap_or(0);
    list.sort_by(|a, b| {
        rank(a.action)
            .cmp(&rank(b.action))
            .then_with(|| a.resource.cmp(&b.resource))
    });
    list.dedup();
    list
}

/// What the new plan destroys or replaces that the approved one did not.
pub fn destroys_more<'a>(
    approved: &[PlannedChange],
    now: &'a [PlannedChange],
) -> Vec<&'a PlannedChange> {
    now.iter()
        .filter(|c| c.action.destroys())
        .filter(|c| {
            !approved
                .iter()
                .any(|a| a.action.destroys() && a.resource == c.resource)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_list_is_read_and_sorted_destroying_first() {
        let list = parse_change_list(
            br#"[{"action":"create","resource":"b"},{"action":"replace","resource":"db"},{"action":"delete","resource":"a"}]"#,
        )
        .unwrap();
        let actions: Vec<Action> = list.iter().map(|c| c.action).collect();
        assert_eq!(actions, [Action::Replace, Action::Delete, Action::Create]);
        assert!(
            parse_change_list(br#"[{"action":"explode","resource":"x"}]"#)
                .unwrap_err()
                .contains("ADE_PLAN")
        );
        assert!(parse_change_list(br#"[{"action":"create","resource":" "}]"#).is_err());
    }

    #[test]
    fn terraform_actions_map_to_changes() {
        let show = br#"{"resource_changes":[
            {"address":"terraform_data.db","change":{"actions":["delete","create"]}},
            {"address":"terraform_data.web","change":{"actions":["create"]}},
            {"address":"terraform_data.same","change":{"actions":["no-op"]}},
            {"address":"terraform_data.old","change":{"actions":["delete"]}},
            {"address":"terraform_data.tag","change":{"actions":["update"]}}]}"#;
        let list = terraform_changes(show).unwrap();
        let got: Vec<(Action, &str)> = list
            .iter()
            .map(|c| (c.action, c.resource.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Action::Replace, "terraform_data.db"),
                (Action::Delete, "terraform_data.old"),
                (Action::Create, "terraform_data.web"),
                (Action::Update, "terraform_data.tag"),
            ]
        );
    }

    #[test]
    fn only_new_destruction_counts_as_more() {
        let c = |a, r: &str| PlannedChange {
            action: a,
            resource: r.into(),
        };
        let approved = [c(Action::Replace, "db"), c(Action::Create, "x")];
        let now = [
            c(Action::Delete, "db"),
            c(Action::Replace, "cache"),
            c(Action::Update, "x"),
        ];
        let more = destroys_more(&approved, &now);
        assert_eq!(more, vec![&now[1]]);
    }
}
