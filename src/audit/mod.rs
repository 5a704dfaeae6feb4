//! The audit trail in Git (SPEC section 5).
//!
//! After each provisioning run Paved appends one [`AuditRecord`] to the git note of the merge
//! commit, under `refs/notes/paved` (see [`crate::repo::notes`]). A record is a block of
//! git-trailer-style lines, so it reads well in `git log --notes=paved` and parses back
//! exactly:
//!
//! ```text
//! Paved-Audit: v1
//! Environment: checkout-preview
//! Team: payments
//! Operation: deploy
//! Outcome: succeeded
//! Run: 42
//! Attempt: 1
//! Repository: acme/envs
//! Pull-Request: 12
//! Requester: octocat
//! Merger: hubot
//! Approvers: admin1, admin2
//! Check: paved/schema=pass
//! Check: paved/policy=pass
//! Governance-Commit: 0123…
//! Started: 2026-11-27T08:00:00.000Z
//! Finished: 2026-11-27T08:00:03.120Z
//! Message: deployed in 3.1 s
//! ```
//!
//! Rules of the format:
//! - a block starts with the line `Paved-Audit: v1` and ends at the first blank line, the
//!   next `Paved-Audit:` line, or the first line that is not `Key: value`;
//! - the five required fields (Environment, Team, Operation, Outcome, Repository) are always
//!   written; optional fields are omitted when absent; `Approvers` is omitted when empty;
//!   `Check` repeats, once per commit-status context, as `context=verdict`;
//! - values are single-line: [`render`] replaces every control character (CR, LF, tab, ESC…)
//!   with a space, so a value can neither start a forged block nor drive a terminal;
//! - keys are matched case-insensitively and unknown keys are ignored, so a later version can
//!   add fields without breaking older readers; a block without `Environment` is not a record;
//! - several records in one note (retries, or several environments merged by one commit) are
//!   separated by one blank line, and anything else in the note is skipped.
//!
//! [`history`] and [`run_cli`] implement `paved audit ENV`, from Git alone.

pub mod history;

pub use history::{history, history_from, run_cli, AuditError, Change, Entry, History};

use serde::{Deserialize, Serialize};

/// The first line of every record block.
pub const BLOCK_HEADER: &str = "Paved-Audit: v1";

/// One commit-status verdict, e.g. `paved/schema` = `pass`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckVerdict {
    pub context: String,
    pub verdict: String,
}

/// What Paved did for one environment at one commit.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRecord {
    /// The environment's name, e.g. `checkout-preview`.
    pub environment: String,
    pub team: String,
    /// `deploy`, `delete`, or `none` (an ungoverned push).
    pub operation: String,
    /// `succeeded`, `failed`, `interrupted`, `refused` or `ungoverned`.
    pub outcome: String,
    pub run_id: Option<i64>,
    /// `owner/repo`.
    pub repository: String,
    pub pull_request: Option<u64>,
    /// The pull request's author.
    pub requester: Option<String>,
    pub merger: Option<String>,
    #[serde(default)]
    pub approvers: Vec<String>,
    #[serde(default)]
    pub checks: Vec<CheckVerdict>,
    /// The commit whose `.paved/` and `catalog/` governed the run.
    pub governance_commit: Option<String>,
    /// RFC 3339.
    pub started_at: Option<String>,
    /// RFC 3339.
    pub finished_at: Option<String>,
    /// One line saying why (already free of secrets).
    pub message: Option<String>,
    pub attempt: Option<u32>,
}

/// `value` on one line: control characters (CR and LF above all) become spaces.
fn one_line(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Renders `record` as one block, ending with a newline.
pub fn render(record: &AuditRecord) -> String {
    let mut out = String::with_capacity(512);
    let mut field = |key: &str, value: &str| {
        out.push_str(key);
        out.push_str(": ");
        out.push_str(&one_line(value));
        out.push('\n');
    };
    field("Paved-Audit", "v1");
    field("Environment", &record.environment);
    field("Team", &record.team);
    field("Operation", &record.operation);
    field("Outcome", &record.outcome);
    if let Some(run) = record.run_id {
        field("Run", &run.to_string());
    }
    if let Some(attempt) = record.attempt {
        field("Attempt", &attempt.to_string());
    }
    field("Repository", &record.repository);
    if let Some(pr) = record.pull_request {
        field("Pull-Request", &pr.to_string());
    }
    if let Some(v) = &record.requester {
        field("Requester", v);
    }
    if let Some(v) = &record.merger {
        field("Merger", v);
    }
    if !record.approvers.is_empty() {
        field("Approvers", &record.approvers.join(", "));
    }
    for check in &record.checks {
        field("Check", &format!("{}={}", check.context, check.verdict));
    }
    if let Some(v) = &record.governance_commit {
        field("Governance-Commit", v);
    }
    if let Some(v) = &record.started_at {
        field("Started", v);
    }
    if let Some(v) = &record.finished_at {
        field("Finished", v);
    }
    if let Some(v) = &record.message {
        field("Message", v);
    }
    out
}

/// Splits `Key: value` (the key made of letters, digits and '-'); the one space after the
/// colon is not part of the value.
fn split_field(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let (key, value) = line.split_once(':')?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return None;
    }
    Some((key, value.strip_prefix(' ').unwrap_or(value)))
}

fn is_header(line: &str) -> bool {
    matches!(split_field(line), Some((k, v)) if k.eq_ignore_ascii_case("Paved-Audit") && v.trim() == "v1")
}

/// A record being read, with whether its `Environment` line was seen.
struct Partial {
    record: AuditRecord,
    has_environment: bool,
}

impl Partial {
    fn set(&mut self, key: &str, value: &str) {
        let r = &mut self.record;
        let key = key.to_ascii_lowercase();
        let text = || Some(value.to_string());
        match key.as_str() {
            "environment" => {
                r.environment = value.to_string();
                self.has_environment = true;
            }
            "team" => r.team = value.to_string(),
            "operation" => r.operation = value.to_string(),
            "outcome" => r.outcome = value.to_string(),
            "repository" => r.repository = value.to_string(),
            "run" => r.run_id = value.trim().parse().ok(),
            "attempt" => r.attempt = value.trim().parse().ok(),
            "pull-request" => r.pull_request = value.trim().trim_start_matches('#').parse().ok(),
            "requester" => r.requester = text(),
            "merger" => r.merger = text(),
            "approvers" => r.approvers.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string),
            ),
            "check" => {
                // Verdicts are plain words; a context may hold '=' in theory, so split at the last.
                let (context, verdict) = value.rsplit_once('=').unwrap_or((value, ""));
                r.checks.push(CheckVerdict {
                    context: context.to_string(),
                    verdict: verdict.to_string(),
                });
            }
            "governance-commit" => r.governance_commit = text(),
            "started" => r.started_at = text(),
            "finished" => r.finished_at = text(),
            "message" => r.message = text(),
            _ => {} // a field from a later version
        }
    }
}

/// Every record block in `note`, in order. Text that is not part of a block is skipped, and
/// so is a block without an `Environment` line.
pub fn parse(note: &str) -> Vec<AuditRecord> {
    let mut out = Vec::new();
    let mut current: Option<Partial> = None;
    let finish = |current: &mut Option<Partial>, out: &mut Vec<AuditRecord>| {
        if let Some(p) = current.take() {
            if p.has_environment {
                out.push(p.record);
            }
        }
    };
    for line in note.lines() {
        if is_header(line) {
            finish(&mut current, &mut out);
            current = Some(Partial {
                record: AuditRecord::default(),
                has_environment: false,
            });
            continue;
        }
        let Some(partial) = current.as_mut() else {
            continue;
        };
        match split_field(line) {
            Some((key, value)) if !line.trim().is_empty() => partial.set(key, value),
            _ => finish(&mut current, &mut out),
        }
    }
    finish(&mut current, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> AuditRecord {
        AuditRecord {
            environment: "checkout-preview".into(),
            team: "payments".into(),
            operation: "deploy".into(),
            outcome: "succeeded".into(),
            run_id: Some(42),
            repository: "acme/envs".into(),
            pull_request: Some(12),
            requester: Some("octocat".into()),
            merger: Some("hubot".into()),
            approvers: vec!["admin1".into(), "admin2".into()],
            checks: vec![
                CheckVerdict {
                    context: "paved/schema".into(),
                    verdict: "pass".into(),
                },
                CheckVerdict {
                    context: "paved/policy".into(),
                    verdict: "pass".into(),
                },
            ],
            governance_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            started_at: Some("2026-11-27T08:00:00.000Z".into()),
            finished_at: Some("2026-11-27T08:00:03.120Z".into()),
            message: Some("deployed in 3.1 s".into()),
            attempt: Some(1),
        }
    }

    #[test]
    fn renders_the_documented_block() {
        let expected = "Paved-Audit: v1
Environment: checkout-preview
Team: payments
Operation: deploy
Outcome: succeeded
Run: 42
Attempt: 1
Repository: acme/envs
Pull-Request: 12
Requester: octocat
Merger: hubot
Approvers: admin1, admin2
Check: paved/schema=pass
Check: paved/policy=pass
Governance-Commit: 0123456789abcdef0123456789abcdef01234567
Started: 2026-11-27T08:00:00.000Z
Finished: 2026-11-27T08:00:03.120Z
Message: deployed in 3.1 s
";
        assert_eq!(render(&full()), expected);
        assert_eq!(parse(expected), vec![full()]);
    }

    #[test]
    fn minimal_record_omits_absent_fields_and_round_trips() {
        let r = AuditRecord {
            environment: "abc".into(),
            team: "t".into(),
            operation: "none".into(),
            outcome: "ungoverned".into(),
            repository: "o/r".into(),
            ..Default::default()
        };
        let text = render(&r);
        assert_eq!(
            text,
            "Paved-Audit: v1\nEnvironment: abc\nTeam: t\nOperation: none\nOutcome: ungoverned\nRepository: o/r\n"
        );
        assert_eq!(parse(&text), vec![r]);
    }

    #[test]
    fn awkward_values_round_trip() {
        let awkward = [
            "",
            " ",
            "a: b: c",
            "Paved-Audit: v1",
            "Check: x=y",
            "ünïcødé — 環境 🚀",
            "trailing spaces   ",
            "  leading",
            "=",
            "a=b=c",
            "x, y",
            "#12",
            "\u{a0}nbsp\u{2003}em",
        ];
        for v in awkward {
            let mut r = full();
            r.environment = v.to_string();
            r.team = v.to_string();
            r.operation = v.to_string();
            r.outcome = v.to_string();
            r.repository = v.to_string();
            r.requester = Some(v.to_string());
            r.merger = Some(v.to_string());
            r.governance_commit = Some(v.to_string());
            r.started_at = Some(v.to_string());
            r.finished_at = Some(v.to_string());
            r.message = Some(v.to_string());
            r.checks = vec![CheckVerdict {
                context: format!("ctx/{v}"),
                verdict: "fail".into(),
            }];
            let text = render(&r);
            assert_eq!(parse(&text), vec![r.clone()], "value {v:?}:\n{text}");
        }
        for approvers in [
            vec![],
            vec!["solo".to_string()],
            vec!["ä-1".into(), "b".into(), "c".into()],
        ] {
            let mut r = full();
            r.approvers = approvers;
            assert_eq!(parse(&render(&r)), vec![r]);
        }
        for (run, pr, attempt) in [
            (Some(i64::MIN), Some(u64::MAX), Some(u32::MAX)),
            (Some(0), Some(0), Some(0)),
            (None, None, None),
        ] {
            let mut r = full();
            r.run_id = run;
            r.pull_request = pr;
            r.attempt = attempt;
            assert_eq!(parse(&render(&r)), vec![r]);
        }
    }

    #[test]
    fn newlines_and_control_characters_cannot_forge_a_block() {
        let mut r = full();
        r.message =
            Some("line one\r\nline two\n\nPaved-Audit: v1\nEnvironment: forged\x1b[31m".into());
        let text = render(&r);
        assert_eq!(text.lines().count(), render(&full()).lines().count());
        assert!(!text.contains('\x1b'));
        let parsed = parse(&text);
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].message.as_deref(),
            Some("line one  line two  Paved-Audit: v1 Environment: forged [31m")
        );
    }

    #[test]
    fn parses_several_blocks_among_foreign_text() {
        let mut second = full();
        second.outcome = "failed".into();
        second.attempt = Some(2);
        second.message = Some("runner exited with 1".into());
        let mut other = full();
        other.environment = "search-dev".into();
        let note = format!(
            "Reviewed-by: someone\nfree text a human added\n\n{}\n{}\nsome: trailer-looking text\n\n{}not a field line\n{}",
            render(&full()),
            render(&second),
            render(&other),
            render(&AuditRecord {
                environment: "after-foreign".into(),
                ..Default::default()
            }),
        );
        let parsed = parse(&note);
        assert_eq!(parsed.len(), 4, "{parsed:#?}");
        assert_eq!(parsed[0], full());
        assert_eq!(parsed[1], second);
        assert_eq!(parsed[2], other);
        assert_eq!(parsed[3].environment, "after-foreign");
    }

    #[test]
    fn tolerant_reading() {
        // Back-to-back blocks, CRLF, keys in another case, unknown keys, a block without an
        // environment, a different format version.
        let note = "Paved-Audit: v1\r\nenvironment: one\r\nOUTCOME: failed\r\nFuture-Field: x\r\nPaved-Audit: v1\nEnvironment: two\nRun: not-a-number\n\nPaved-Audit: v1\nTeam: no-env\n\nPaved-Audit: v2\nEnvironment: three\n";
        let parsed = parse(note);
        let names: Vec<&str> = parsed.iter().map(|r| r.environment.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        assert_eq!(parsed[0].outcome, "failed");
        assert_eq!(parsed[1].run_id, None);
        assert!(parse("").is_empty());
        assert!(parse("just a note\n").is_empty());
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(full()).unwrap();
        assert_eq!(v["run_id"], 42);
        assert_eq!(v["checks"][0]["context"], "paved/schema");
        assert_eq!(v["checks"][0]["verdict"], "pass");
        let back: AuditRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back, full());
    }
}
