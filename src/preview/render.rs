//! `paved/plan` in words: the status line, the check run's text, the summary comment's
//! "Preview" section. Counts per action first, then the destroyed and replaced resources by
//! name, then each environment's preview.

use super::{Action, EnvPreview, PreviewSet, Status};
use std::fmt::Write as _;

/// A check run's text at most (GitHub takes 65,535 characters).
pub const CHECK_TEXT_MAX: usize = 60_000;
/// One environment's preview text shown in the summary comment at most.
pub const COMMENT_TEXT_MAX: usize = 3_000;

/// One line: "1 to replace (terraform_data.db), 1 to create", "no changes",
/// "no preview for static-site", "preview failed for payments/api: exited with code 1".
pub fn description(set: &PreviewSet) -> String {
    let failed: Vec<&EnvPreview> = set
        .environments
        .iter()
        .filter(|e| e.status == Status::Failed)
        .collect();
    if let Some(f) = failed.first() {
        let more = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        return format!(
            "preview failed for {}{more}: {}",
            f.label,
            f.reason.as_deref().unwrap_or("error")
        );
    }
    let counts = set.counts();
    if !counts.is_empty() {
        return counts_line(set, &counts);
    }
    let previewed = set
        .environments
        .iter()
        .any(|e| e.status != Status::NoPreview);
    if previewed {
        let changes = set.environments.iter().any(|e| e.status == Status::Changes);
        return if changes {
            "changes (see the preview)".to_string()
        } else {
            "no changes".to_string()
        };
    }
    let mut defs: Vec<&str> = set
        .environments
        .iter()
        .filter_map(|e| e.definition.as_deref())
        .collect();
    defs.sort_unstable();
    defs.dedup();
    match defs.as_slice() {
        [] => "no preview".to_string(),
        defs => format!("no preview for {}", defs.join(", ")),
    }
}

/// Whether `paved/plan` is neutral (check runs): nothing was previewed.
pub fn is_neutral(set: &PreviewSet) -> bool {
    set.environments
        .iter()
        .all(|e| e.status == Status::NoPreview)
}

fn counts_line(set: &PreviewSet, counts: &[(Action, usize)]) -> String {
    let mut parts = Vec::new();
    for (action, n) in counts {
        let mut part = format!("{n} to {action}");
        if action.destroys() {
            let names: Vec<&str> = set
                .environments
                .iter()
                .flat_map(|e| e.changes.iter())
                .filter(|c| c.action == *action)
                .map(|c| c.resource.as_str())
                .take(3)
                .collect();
            let _ = write!(part, " ({})", names.join(", "));
        }
        parts.push(part);
    }
    parts.join(", ")
}

/// The check run's text: per environment, its change list then its preview.
pub fn check_text(set: &PreviewSet) -> String {
    let mut out = String::new();
    for e in &set.environments {
        let _ = writeln!(out, "### {} ({})\n", e.label, e.operation);
        env_body(&mut out, e, CHECK_TEXT_MAX);
        if out.len() > CHECK_TEXT_MAX {
            cut(&mut out, CHECK_TEXT_MAX);
            out.push_str("\n\n[… the rest is in the run's report]\n");
            break;
        }
    }
    out
}

/// The summary comment's "Preview" section.
pub fn comment_section(set: &PreviewSet) -> String {
    let mut out = String::from("#### Preview\n\n");
    let counts = set.counts();
    if !counts.is_empty() {
        let line: Vec<String> = counts
            .iter()
            .map(|(a, n)| format!("**{n}** to {a}"))
            .collect();
        let _ = writeln!(out, "{}\n", line.join(" · "));
        let destroyed: Vec<String> = set
            .environments
            .iter()
            .flat_map(|e| {
                e.destroyed()
                    .into_iter()
                    .map(move |c| format!("- ⚠️ `{}` **{}** `{}`", e.label, c.action, c.resource))
            })
            .collect();
        if !destroyed.is_empty() {
            out.push_str("Destroyed or replaced:\n");
            for d in destroyed {
                let _ = writeln!(out, "{d}");
            }
            out.push('\n');
        }
    }
    for e in &set.environments {
        let _ = writeln!(
            out,
            "<details><summary><code>{}</code> ({}): {}</summary>\n",
            e.label,
            e.operation,
            env_line(e)
        );
        env_body(&mut out, e, COMMENT_TEXT_MAX);
        out.push_str("\n</details>\n\n");
    }
    out
}

/// One environment in a line.
pub fn env_line(e: &EnvPreview) -> String {
    match e.status {
        Status::NoPreview => e.reason.clone().unwrap_or_else(|| "no preview".to_string()),
        Status::NoChanges => "no changes".to_string(),
        Status::Failed => format!(
            "preview failed: {}{}",
            e.reason.as_deref().unwrap_or("error"),
            if e.required { " (required)" } else { "" }
        ),
        Status::Changes if e.changes.is_empty() => "changes".to_string(),
        Status::Changes => Action::ALL
            .iter()
            .filter_map(|a| match e.count(*a) {
                0 => None,
                n => Some(format!("{n} to {a}")),
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn env_body(out: &mut String, e: &EnvPreview, max_text: usize) {
    for c in &e.changes {
        let mark = if c.action.destroys() { "⚠️ " } else { "" };
        let _ = writeln!(out, "- {mark}**{}** `{}`", c.action, c.resource);
    }
    if !e.changes.is_empty() {
        out.push('\n');
    }
    let text = e.text.trim_end();
    if text.is_empty() {
        let _ = writeln!(out, "{}", env_line(e));
        return;
    }
    let mut shown = text.replace("```", "'''");
    if shown.len() > max_text {
        cut(&mut shown, max_text);
        shown.push_str("\n[…]");
    }
    let _ = writeln!(out, "```\n{shown}\n```");
}

fn cut(s: &mut String, max: usize) {
    let mut at = max.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    s.truncate(at);
}

#[cfg(test)]
mod tests {
    use super::super::{Inputs, PlannedChange};
    use super::*;

    fn env(status: Status, changes: Vec<PlannedChange>) -> EnvPreview {
        EnvPreview {
            path: "environments/a/b.yaml".into(),
            label: "a/b".into(),
            env_type: Some("dev".into()),
            definition: Some("site".into()),
            operation: "deploy".into(),
            status,
            changes,
            text: "plan text".into(),
            reason: None,
            required: false,
            inputs: Inputs::default(),
            plan_file: false,
        }
    }

    #[test]
    fn the_line_names_what_is_destroyed_first() {
        let set = PreviewSet {
            environments: vec![env(
                Status::Changes,
                vec![
                    PlannedChange {
                        action: Action::Replace,
                        resource: "db".into(),
                    },
                    PlannedChange {
                        action: Action::Create,
                        resource: "web".into(),
                    },
                ],
            )],
        };
        assert_eq!(description(&set), "1 to replace (db), 1 to create");
        let section = comment_section(&set);
        assert!(section.contains("⚠️ `a/b` **replace** `db`"), "{section}");
        let none = PreviewSet {
            environments: vec![env(Status::NoPreview, vec![])],
        };
        assert_eq!(description(&none), "no preview for site");
        assert!(is_neutral(&none));
    }
}
