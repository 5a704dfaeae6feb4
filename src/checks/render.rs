//! Turning a [`Report`] into commit statuses, a PR comment and terminal output.

use super::{ChangeKind, CheckKind, CheckOutcome, EnvironmentReport, Report, Verdict};
use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// GitHub's limit for a commit status description.
const DESCRIPTION_MAX: usize = 140;
/// Stay well under GitHub's 65,536-character comment limit (the server adds a header).
const MARKDOWN_MAX: usize = 60_000;
/// Messages shown per table cell.
const CELL_MESSAGES: usize = 10;

/// The verdict of one status context across every environment of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextVerdict {
    /// e.g. `paved/schema`.
    pub context: String,
    pub check: CheckKind,
    pub verdict: Verdict,
    /// One line, at most 140 characters, saying why.
    pub description: String,
}

fn truncate(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl Report {
    /// One verdict per check context across all environments, in check order.
    pub fn contexts(&self) -> Vec<ContextVerdict> {
        let kinds: BTreeSet<CheckKind> = self
            .environments
            .iter()
            .flat_map(|e| e.checks.iter().map(|c| c.check))
            .collect();
        kinds.into_iter().map(|k| self.context_verdict(k)).collect()
    }

    fn context_verdict(&self, check: CheckKind) -> ContextVerdict {
        let with: Vec<(&EnvironmentReport, &CheckOutcome)> = self
            .environments
            .iter()
            .filter_map(|e| e.outcome(check).map(|o| (e, o)))
            .collect();
        let failing: Vec<&(&EnvironmentReport, &CheckOutcome)> = with
            .iter()
            .filter(|(_, o)| o.verdict == Verdict::Fail)
            .collect();
        if let Some((env, outcome)) = failing.first() {
            let total: usize = failing.iter().map(|(_, o)| o.errors.len().max(1)).sum();
            let first = outcome
                .errors
                .first()
                .map(|d| match &d.field {
                    Some(f) => format!("{f}: {}", d.message),
                    None => d.message.clone(),
                })
                .unwrap_or_else(|| "failed".to_string());
            let more = if total > 1 {
                format!(" (+{} more)", total - 1)
            } else {
                String::new()
            };
            let head = format!("{}: {first}", env.label());
            let room = DESCRIPTION_MAX.saturating_sub(more.chars().count());
            return ContextVerdict {
                context: check.context().to_string(),
                check,
                verdict: Verdict::Fail,
                description: format!("{}{more}", truncate(&head, room)),
            };
        }
        let deleted = with
            .iter()
            .filter(|(e, _)| e.change == ChangeKind::Deleted)
            .count();
        let live = with.len() - deleted;
        let warnings: usize = with.iter().map(|(_, o)| o.warnings.len()).sum();
        let mut parts = Vec::new();
        if live > 0 || deleted == 0 {
            parts.push(format!(
                "{} {}",
                plural(live, "environment", "environments"),
                if live == 1 { "passes" } else { "pass" }
            ));
        }
        if deleted > 0 {
            parts.push(format!(
                "{} deleted",
                plural(deleted, "environment", "environments")
            ));
        }
        let mut description = parts.join(", ");
        if warnings > 0 {
            description.push_str(&format!(" ({})", plural(warnings, "warning", "warnings")));
        }
        ContextVerdict {
            context: check.context().to_string(),
            check,
            verdict: Verdict::Pass,
            description: truncate(&description, DESCRIPTION_MAX),
        }
    }
}

/// `file:line:col` of a diagnostic.
fn location(d: &Diagnostic) -> String {
    match (d.line, d.column) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", d.file),
        (Some(l), None) => format!("{}:{l}", d.file),
        _ => d.file.clone(),
    }
}

fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '`' => out.push('\''),
            c => out.push(c),
        }
    }
    out
}

fn md_message(d: &Diagnostic, warning: bool) -> String {
    let mut s = String::new();
    if warning {
        s.push_str("⚠️ ");
    }
    s.push_str(&format!("`{}` ", md_escape(&location(d))));
    if let Some(f) = &d.field {
        s.push_str(&format!("{}: ", md_escape(f)));
    }
    s.push_str(&md_escape(&truncate(&d.message, 300)));
    s
}

/// A Markdown table: environment | check | verdict | messages. No comment marker.
pub fn render_markdown(report: &Report) -> String {
    if report.environments.is_empty() {
        return "No environment manifests were touched.\n".to_string();
    }
    let mut out = String::new();
    out.push_str("| Environment | Check | Verdict | Messages |\n|---|---|---|---|\n");
    let mut truncated = false;
    'envs: for env in &report.environments {
        let label = match env.change {
            ChangeKind::Deleted => format!("`{}` (deleted)", md_escape(&env.label())),
            _ => format!("`{}`", md_escape(&env.label())),
        };
        for outcome in &env.checks {
            let verdict = match (outcome.verdict, env.change) {
                (Verdict::Pass, ChangeKind::Deleted) => "✅ pass (deletion)",
                (Verdict::Pass, _) => "✅ pass",
                (Verdict::Fail, _) => "❌ fail",
            };
            let mut msgs: Vec<String> = outcome
                .errors
                .iter()
                .map(|d| md_message(d, false))
                .chain(outcome.warnings.iter().map(|d| md_message(d, true)))
                .collect();
            if msgs.len() > CELL_MESSAGES {
                let extra = msgs.len() - CELL_MESSAGES;
                msgs.truncate(CELL_MESSAGES);
                msgs.push(format!("… and {extra} more"));
            }
            let row = format!(
                "| {label} | {} | {verdict} | {} |\n",
                outcome.check.context(),
                msgs.join("<br>")
            );
            if out.len() + row.len() > MARKDOWN_MAX {
                truncated = true;
                break 'envs;
            }
            out.push_str(&row);
        }
    }
    if truncated {
        out.push_str(
            "\n_The report is too long for a comment; see the run details for every message._\n",
        );
    }
    out
}

/// Plain text for `paved check`: each environment with its checks and messages, then one
/// line per status context.
pub fn render_text(report: &Report) -> String {
    let mut out = String::new();
    if report.environments.is_empty() {
        out.push_str("no environment manifests found under environments/\n");
        return out;
    }
    for env in &report.environments {
        let change = match env.change {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "modified",
            ChangeKind::Deleted => "deleted",
        };
        let _ = writeln!(
            out,
            "{} ({}, workflow {}, {change})",
            env.path,
            env.label(),
            env.workflow
        );
        for outcome in &env.checks {
            let verdict = match outcome.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
            };
            let _ = writeln!(out, "  {:<13} {verdict}", outcome.check.context());
            for d in &outcome.errors {
                let _ = writeln!(out, "    {d}");
            }
            for d in &outcome.warnings {
                let _ = writeln!(out, "    warning: {d}");
            }
        }
    }
    out.push('\n');
    for c in report.contexts() {
        let verdict = match c.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
        };
        let _ = writeln!(out, "{:<13} {verdict}  {}", c.context, c.description);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str, change: ChangeKind, outcomes: Vec<CheckOutcome>) -> EnvironmentReport {
        EnvironmentReport {
            path: format!("environments/payments/{name}.yaml"),
            name: Some(name.into()),
            team: Some("payments".into()),
            env_type: Some("dev".into()),
            workflow: "default".into(),
            change,
            checks: outcomes,
        }
    }

    fn pass(check: CheckKind) -> CheckOutcome {
        CheckOutcome::new(check, Vec::new(), Vec::new())
    }

    #[test]
    fn descriptions_say_why() {
        let bad = Diagnostic::new(
            "environments/payments/checkout.yaml",
            "'huge' is not one of small, large",
        )
        .field("spec.parameters.size")
        .at(10, 5);
        let report = Report {
            environments: vec![
                env(
                    "checkout",
                    ChangeKind::Added,
                    vec![
                        CheckOutcome::new(CheckKind::Schema, vec![bad], Vec::new()),
                        pass(CheckKind::Policy),
                    ],
                ),
                env(
                    "other",
                    ChangeKind::Added,
                    vec![pass(CheckKind::Schema), pass(CheckKind::Policy)],
                ),
                env("gone", ChangeKind::Deleted, vec![pass(CheckKind::Schema)]),
            ],
        };
        let c = report.contexts();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].context, "paved/schema");
        assert_eq!(c[0].verdict, Verdict::Fail);
        assert_eq!(
            c[0].description,
            "payments/checkout: spec.parameters.size: 'huge' is not one of small, large"
        );
        assert_eq!(c[1].description, "2 environments pass");
        let md = render_markdown(&report);
        assert!(md.contains("`environments/payments/checkout.yaml:10:5` spec.parameters.size: 'huge' is not one of small, large"), "{md}");
        assert!(md.contains("(deleted)"));
        let text = render_text(&report);
        assert!(
            text.contains("environments/payments/checkout.yaml:10:5: spec.parameters.size:"),
            "{text}"
        );
    }

    #[test]
    fn long_descriptions_are_cut_to_140() {
        let long = Diagnostic::new("f", "x ".repeat(200));
        let report = Report {
            environments: vec![env(
                "a",
                ChangeKind::Added,
                vec![CheckOutcome::new(
                    CheckKind::Policy,
                    vec![long.clone(), long],
                    Vec::new(),
                )],
            )],
        };
        let c = report.contexts();
        assert!(
            c[0].description.chars().count() <= 140,
            "{}",
            c[0].description
        );
        assert!(c[0].description.ends_with("(+1 more)"));
    }
}
