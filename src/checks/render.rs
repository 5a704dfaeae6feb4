//! Turning a [`Report`] into commit statuses, a PR comment and terminal output.

use super::governance_check::GOVERNANCE_CONTEXT;
use super::report::GovernanceOutcome;
use super::text::{truncate, DESCRIPTION_MAX};
use super::{ChangeKind, CheckKind, CheckOutcome, EnvironmentReport, Report, Verdict};
use crate::diag::Diagnostic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Stay well under GitHub's 65,536-character comment limit (the server adds a header).
const MARKDOWN_MAX: usize = 60_000;
/// Messages shown per table cell.
const CELL_MESSAGES: usize = 10;

/// The verdict of one status context across every environment of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextVerdict {
    /// e.g. `paved/schema`.
    pub context: String,
    /// The check across environments; `None` for `paved/governance`, which is about the
    /// pull request's governance changes, not an environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckKind>,
    pub verdict: Verdict,
    /// One line, at most 140 characters, saying why.
    pub description: String,
}

/// `c.check == CheckKind::Policy` reads as "is the `paved/policy` context".
impl PartialEq<CheckKind> for Option<CheckKind> {
    fn eq(&self, other: &CheckKind) -> bool {
        self.as_ref() == Some(other)
    }
}

/// One message behind a context's verdict, with the environment (or governance) it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding<'r> {
    /// `true` for an error (it fails the check), `false` for a warning.
    pub error: bool,
    /// `team/name`, or `governance`.
    pub about: String,
    pub diagnostic: &'r Diagnostic,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

impl Report {
    /// One verdict per check context across all environments, in check order, then
    /// `paved/governance` when the pull request changes governance.
    pub fn contexts(&self) -> Vec<ContextVerdict> {
        let kinds: BTreeSet<CheckKind> = self
            .environments
            .iter()
            .flat_map(|e| e.checks.iter().map(|c| c.check))
            .collect();
        let mut out: Vec<ContextVerdict> =
            kinds.into_iter().map(|k| self.context_verdict(k)).collect();
        // The pull request's platform.yaml names what the server lacks: `paved/schema`
        // fails, whether or not an environment was touched too.
        if let Some(first) = self
            .governance
            .as_ref()
            .and_then(|g| g.schema_errors.first())
        {
            // The diagnostic as editors and CI logs show it: file, line, field, message.
            let description = truncate(&first.to_string(), DESCRIPTION_MAX);
            match out.iter_mut().find(|c| c.check == CheckKind::Schema) {
                Some(c) if c.verdict == Verdict::Fail => {}
                Some(c) => {
                    c.verdict = Verdict::Fail;
                    c.description = description;
                }
                None => out.insert(
                    0,
                    ContextVerdict {
                        context: CheckKind::Schema.context().to_string(),
                        check: Some(CheckKind::Schema),
                        verdict: Verdict::Fail,
                        description,
                    },
                ),
            }
        }
        if let Some(g) = &self.governance {
            out.push(ContextVerdict {
                context: GOVERNANCE_CONTEXT.to_string(),
                check: None,
                verdict: g.verdict,
                description: truncate(&g.description, DESCRIPTION_MAX),
            });
        }
        out
    }

    /// Every error and warning behind `verdict`, errors first (check runs annotate each one
    /// on its file and line).
    pub fn findings(&self, verdict: &ContextVerdict) -> Vec<Finding<'_>> {
        let mut out = Vec::new();
        match verdict.check {
            Some(check) => {
                if check == CheckKind::Schema {
                    if let Some(g) = &self.governance {
                        out.extend(g.schema_errors.iter().map(|d| Finding {
                            error: true,
                            about: "governance".to_string(),
                            diagnostic: d,
                        }));
                    }
                }
                for error in [true, false] {
                    for env in &self.environments {
                        let Some(o) = env.outcome(check) else {
                            continue;
                        };
                        let list = if error { &o.errors } else { &o.warnings };
                        out.extend(list.iter().map(|d| Finding {
                            error,
                            about: env.label(),
                            diagnostic: d,
                        }));
                    }
                }
            }
            None => {
                // The approvals decide `paved/governance`: what the pull request's own
                // governance breaks is a warning on it, not its verdict.
                if let Some(g) = &self.governance {
                    let errors = g.errors.iter().map(|d| (true, d));
                    let head = g.head_errors.iter().map(|d| (false, d));
                    out.extend(errors.chain(head).map(|(error, d)| Finding {
                        error,
                        about: "governance".to_string(),
                        diagnostic: d,
                    }));
                }
            }
        }
        out
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
                check: Some(check),
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
        // A check that says why it passed (`paved/approval`: who approved) says so.
        if !with.is_empty() && with.iter().all(|(_, o)| o.summary.is_some()) {
            let summary = |o: &CheckOutcome| o.summary.clone().unwrap_or_default();
            let first = summary(with[0].1);
            description = if with.iter().all(|(_, o)| summary(o) == first) {
                first
            } else {
                with.iter()
                    .map(|(e, o)| format!("{}: {}", e.label(), summary(o)))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
        }
        if warnings > 0 {
            description.push_str(&format!(" ({})", plural(warnings, "warning", "warnings")));
        }
        ContextVerdict {
            context: check.context().to_string(),
            check: Some(check),
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

/// A Markdown table: environment | check | verdict | messages, after a "Governance
/// change" section when the pull request changes governance. No comment marker.
pub fn render_markdown(report: &Report) -> String {
    let mut out = String::new();
    if let Some(g) = &report.governance {
        governance_markdown(g, &mut out);
        if report.environments.is_empty() {
            return out;
        }
        out.push_str("\n#### Environments\n\n");
    } else if report.environments.is_empty() {
        return "No environment manifests were touched.\n".to_string();
    }
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
    if report.environments.is_empty() && report.governance.is_none() {
        out.push_str("no environment manifests found under environments/\n");
        return out;
    }
    if let Some(g) = &report.governance {
        governance_text(g, &mut out);
        if !report.environments.is_empty() {
            out.push('\n');
        }
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

/// Changed paths shown in the governance section.
const GOVERNANCE_PATHS: usize = 20;
/// Environments named in the governance what-if.
const WHAT_IF_LINES: usize = 50;

/// The what-if in one sentence, and the lines that follow it (one per environment).
fn what_if_lines(
    g: &GovernanceOutcome,
    fmt_env: impl Fn(&str, &str) -> String,
) -> (String, Vec<String>) {
    let n = g.newly_failing.len();
    let would = if n == 1 {
        "1 environment on the default branch would fail".to_string()
    } else {
        format!("{n} environments on the default branch would fail")
    };
    if let Some(first) = g.head_errors.first() {
        let more = match g.head_errors.len() {
            1 => String::new(),
            k => format!(" (+{} more)", k - 1),
        };
        let why = format!(
            "the pull request's governance has errors: {}{more}",
            truncate(&first.to_string(), 300)
        );
        let sentence = if n == 0 {
            format!(
                "{}; no environment on the default branch would newly fail.",
                upper_first(&why)
            )
        } else {
            format!("With this change, {would}: {why}.")
        };
        return (sentence, Vec::new());
    }
    if n == 0 {
        return (
            "No environment on the default branch would newly fail.".to_string(),
            Vec::new(),
        );
    }
    let mut lines: Vec<String> = g
        .newly_failing
        .iter()
        .take(WHAT_IF_LINES)
        .map(|w| {
            let checks: Vec<String> = w
                .checks
                .iter()
                .map(|(context, msg)| format!("{context}: {}", truncate(msg, 200)))
                .collect();
            fmt_env(&w.label, &checks.join("; "))
        })
        .collect();
    if n > WHAT_IF_LINES {
        lines.push(format!("… and {} more", n - WHAT_IF_LINES));
    }
    (format!("With this change, {would}:"), lines)
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn truncated_note(g: &GovernanceOutcome) -> Option<String> {
    g.truncated.then(|| {
        format!(
            "Only the first {} manifests of the default branch were evaluated.",
            g.examined
        )
    })
}

/// The "Governance change" section of the PR comment.
fn governance_markdown(g: &GovernanceOutcome, out: &mut String) {
    out.push_str("#### Governance change\n\n");
    let mut paths: Vec<String> = g
        .changed
        .iter()
        .take(GOVERNANCE_PATHS)
        .map(|p| format!("`{}`", md_escape(p)))
        .collect();
    if g.changed.len() > GOVERNANCE_PATHS {
        paths.push(format!("… and {} more", g.changed.len() - GOVERNANCE_PATHS));
    }
    let _ = writeln!(
        out,
        "This pull request changes governance: {}. Its rules take effect only after merge; the checks of its environments use the base branch's.\n",
        paths.join(", ")
    );
    let verdict = match g.verdict {
        Verdict::Pass => "✅",
        Verdict::Fail => "❌",
    };
    let _ = writeln!(
        out,
        "**{GOVERNANCE_CONTEXT}** {verdict} {}\n",
        md_escape(&truncate(&g.approval, 500))
    );
    for d in g.errors.iter().take(CELL_MESSAGES) {
        let _ = writeln!(out, "- {}", md_message(d, false));
    }
    if !g.errors.is_empty() {
        out.push('\n');
    }
    if !g.schema_errors.is_empty() {
        out.push_str(
            "**paved/schema** ❌ `platform.yaml` names what this Paved server does not define:\n\n",
        );
        for d in g.schema_errors.iter().take(CELL_MESSAGES) {
            let _ = writeln!(out, "- {}", md_message(d, false));
        }
        out.push('\n');
    }
    let (sentence, lines) = what_if_lines(g, |label, checks| {
        format!("- `{}` ({})", md_escape(label), md_escape(checks))
    });
    let warn = if g.newly_failing.is_empty() && g.head_errors.is_empty() {
        ""
    } else {
        "⚠️ "
    };
    let _ = writeln!(out, "{warn}{}", md_escape(&sentence));
    for l in &lines {
        let _ = writeln!(out, "{l}");
    }
    if let Some(note) = truncated_note(g) {
        let _ = writeln!(out, "\n_{note}_");
    }
}

/// The governance section of [`render_text`].
fn governance_text(g: &GovernanceOutcome, out: &mut String) {
    let _ = writeln!(out, "governance change: {}", g.changed.join(", "));
    let verdict = match g.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
    };
    let _ = writeln!(out, "  {GOVERNANCE_CONTEXT} {verdict}  {}", g.approval);
    for d in &g.errors {
        let _ = writeln!(out, "    {d}");
    }
    let (sentence, lines) = what_if_lines(g, |label, checks| format!("{label} ({checks})"));
    let _ = writeln!(out, "  {sentence}");
    for l in &lines {
        let _ = writeln!(out, "    {l}");
    }
    if let Some(note) = truncated_note(g) {
        let _ = writeln!(out, "  {note}");
    }
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
            governance: None,
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
            governance: None,
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
