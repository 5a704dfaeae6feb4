//! `paved/governance`: a pull request that changes `.paved/` or `catalog/` needs the base's
//! `governance.approvers`, and its summary shows which live environments the change would
//! break. Over directory trees: copies of `examples/`, mutated.

use paved::checks::{
    self, check_local, evaluate_governance, Governance, GovernanceOutcome, PrContext, Report,
    Review, ReviewState, Verdict, GOVERNANCE_CONTEXT, WHAT_IF_MAX,
};
use std::time::{Duration, Instant};

mod trees;
use trees::{examples, Repo};

const HEAD: &str = "1111111111111111111111111111111111111111";
const OLD: &str = "0000000000000000000000000000000000000000";
const CLOSED_POLICY: &str = ".paved/policies/closed.rego";

fn manifest(name: &str, size: &str, cost_center: &str) -> String {
    paved_testkit::manifest(name, "payments", size).replace("cc-1234", cost_center)
}

/// The default branch: the examples' `payments/checkout-preview` (cc-1234) plus
/// `alpha` and `beta` on cost center cc-0001, `gamma` on cc-1234, `already-broken`
/// (cc-0001, but `large` in dev, which the examples' policies deny today), and
/// `platform/delta`, a `prod` environment (a type that needs approvals) on cc-0001.
fn default_branch() -> Repo {
    let repo = Repo::new();
    repo.write(
        "environments/payments/alpha.yaml",
        manifest("alpha", "small", "cc-0001"),
    );
    repo.write(
        "environments/payments/beta.yaml",
        manifest("beta", "small", "cc-0001"),
    );
    repo.write(
        "environments/payments/gamma.yaml",
        manifest("gamma", "small", "cc-1234"),
    );
    repo.write(
        "environments/payments/already-broken.yaml",
        manifest("already-broken", "large", "cc-0001"),
    );
    repo.write(
        "environments/platform/delta.yaml",
        paved_testkit::manifest("delta", "platform", "large")
            .replace("owner: octocat", "owner: admin1")
            .replace("type: dev", "type: prod")
            .replace("cc-1234", "cc-0001"),
    );
    repo
}

/// The pull request's head: the default branch plus a policy closing cost center cc-0001.
fn closing_cc_0001() -> Repo {
    let head = default_branch();
    head.write(
        CLOSED_POLICY,
        r#"package main

deny contains msg if {
    input.spec.tags["cost-center"] == "cc-0001"
    msg := "cost center cc-0001 is closed"
}
"#,
    );
    head
}

fn review(user: &str, state: ReviewState, commit: &str) -> Review {
    Review {
        id: None,
        user: user.into(),
        state,
        commit_id: Some(commit.into()),
        digest: None,
    }
}

/// A pull request by `author` at [`HEAD`] with these reviews.
fn pr(author: &str, reviews: Vec<Review>) -> PrContext {
    PrContext {
        author: author.into(),
        reviews,
        head_sha: Some(HEAD.into()),
        ..Default::default()
    }
}

fn govern(base: &Repo, head: &Repo, changed: &[&str], ctx: &PrContext) -> GovernanceOutcome {
    let gov = Governance::load(&base.tree());
    let changed: Vec<String> = changed.iter().map(|s| s.to_string()).collect();
    evaluate_governance(&gov, &head.tree(), &base.tree(), &changed, ctx)
}

fn with_governance(outcome: GovernanceOutcome) -> Report {
    Report {
        governance: Some(outcome),
        ..Default::default()
    }
}

fn labels(outcome: &GovernanceOutcome) -> Vec<&str> {
    outcome
        .newly_failing
        .iter()
        .map(|w| w.label.as_str())
        .collect()
}

#[test]
fn a_policy_change_names_the_live_environments_it_would_break() {
    let base = default_branch();
    let head = closing_cc_0001();
    let approved = pr(
        "octocat",
        vec![review("admin1", ReviewState::Approved, HEAD)],
    );
    let outcome = govern(&base, &head, &[CLOSED_POLICY], &approved);

    assert_eq!(
        labels(&outcome),
        ["payments/alpha", "payments/beta", "platform/delta"]
    );
    let alpha = &outcome.newly_failing[0];
    assert_eq!(alpha.path, "environments/payments/alpha.yaml");
    assert_eq!(
        alpha.checks,
        [(
            "paved/policy".to_string(),
            "cost center cc-0001 is closed".to_string()
        )]
    );
    assert_eq!(outcome.examined, 6);
    assert!(!outcome.truncated);
    assert!(outcome.head_errors.is_empty(), "{:?}", outcome.head_errors);
    assert_eq!(outcome.changed, [CLOSED_POLICY]);
    // The verdict is the approval's; the what-if is a warning for the reviewers.
    assert_eq!(outcome.verdict, Verdict::Pass);
    assert_eq!(outcome.approvers, ["admin1"]);
    assert_eq!(
        outcome.description,
        "approved by admin1; 3 live environments would newly fail"
    );

    let report = with_governance(outcome);
    let md = checks::render_markdown(&report);
    assert!(md.contains("#### Governance change"), "{md}");
    assert!(md.contains(&format!("`{CLOSED_POLICY}`")), "{md}");
    assert!(
        md.contains("With this change, 3 environments on the default branch would fail:"),
        "{md}"
    );
    assert!(
        md.contains("- `payments/alpha` (paved/policy: cost center cc-0001 is closed)"),
        "{md}"
    );
    assert!(md.contains("`payments/beta`"), "{md}");
    assert!(md.contains("`platform/delta`"), "{md}");
    // Still passing (gamma, checkout-preview) or already failing today: not named.
    for quiet in ["gamma", "checkout-preview", "already-broken"] {
        assert!(!md.contains(quiet), "{quiet} named in\n{md}");
    }
    assert!(
        !md.contains("No environment manifests were touched"),
        "{md}"
    );
    let text = checks::render_text(&report);
    assert!(
        text.contains("payments/alpha (paved/policy: cost center cc-0001 is closed)"),
        "{text}"
    );
    assert!(text.contains("paved/governance pass"), "{text}");

    // A change that breaks nothing says so.
    let head = default_branch();
    head.write(CLOSED_POLICY, "package main\n");
    let outcome = govern(&base, &head, &[CLOSED_POLICY], &approved);
    assert!(
        outcome.newly_failing.is_empty(),
        "{:?}",
        outcome.newly_failing
    );
    assert_eq!(
        outcome.description,
        "approved by admin1; no live environment would newly fail"
    );
    let md = checks::render_markdown(&with_governance(outcome));
    assert!(
        md.contains("No environment on the default branch would newly fail."),
        "{md}"
    );
}

#[test]
fn a_catalog_change_names_the_environments_it_would_break() {
    // The definition drops `small`: every live environment but the large `delta` uses it.
    let base = default_branch();
    let head = default_branch();
    let def = "catalog/postgres-db/environment.yaml";
    head.write(
        def,
        head.read(def)
            .replace("[small, large]", "[medium, large]")
            .replace("default: small", "default: medium"),
    );
    let approved = pr(
        "octocat",
        vec![review("admin2", ReviewState::Approved, HEAD)],
    );
    let outcome = govern(&base, &head, &[def], &approved);
    assert_eq!(
        labels(&outcome),
        [
            "payments/alpha",
            "payments/beta",
            "payments/checkout-preview",
            "payments/gamma"
        ]
    );
    let (context, msg) = &outcome.newly_failing[0].checks[0];
    assert_eq!(context, "paved/schema");
    assert!(msg.contains("spec.parameters.size"), "{msg}");
}

#[test]
fn governance_changes_need_the_base_approvers_on_the_head_commit() {
    let base = default_branch();
    let head = closing_cc_0001();
    let check = |ctx: &PrContext| govern(&base, &head, &[CLOSED_POLICY], ctx);

    // No review: fails, and says who is needed.
    let outcome = check(&pr("octocat", vec![]));
    assert_eq!(outcome.verdict, Verdict::Fail);
    assert!(
        outcome
            .description
            .starts_with("needs 1 more approval from team platform"),
        "{}",
        outcome.description
    );
    assert!(outcome
        .description
        .contains("3 live environments would newly fail"));
    assert!(outcome.description.chars().count() <= 140);
    // The what-if is there whatever the approval.
    assert_eq!(
        labels(&outcome),
        ["payments/alpha", "payments/beta", "platform/delta"]
    );

    // An approval from the team on the head: passes.
    let outcome = check(&pr(
        "octocat",
        vec![review("admin2", ReviewState::Approved, HEAD)],
    ));
    assert_eq!(outcome.verdict, Verdict::Pass, "{}", outcome.description);
    assert_eq!(outcome.approvers, ["admin2"]);

    // The author approving their own pull request does not count.
    let outcome = check(&pr(
        "admin1",
        vec![review("admin1", ReviewState::Approved, HEAD)],
    ));
    assert_eq!(outcome.verdict, Verdict::Fail);
    assert!(
        outcome
            .description
            .starts_with("needs 1 more approval from team platform"),
        "{}",
        outcome.description
    );

    // An approval of an older commit does not count.
    let outcome = check(&pr(
        "octocat",
        vec![review("admin1", ReviewState::Approved, OLD)],
    ));
    assert_eq!(outcome.verdict, Verdict::Fail);
    assert!(outcome.approvers.is_empty());

    // Nor does one withdrawn by a later request for changes, or one from outside the team.
    let outcome = check(&pr(
        "octocat",
        vec![
            review("admin1", ReviewState::Approved, HEAD),
            review("admin1", ReviewState::ChangesRequested, HEAD),
            review("hubot", ReviewState::Approved, HEAD),
        ],
    ));
    assert_eq!(outcome.verdict, Verdict::Fail);

    // Rule zero: the head naming other approvers changes nothing.
    let head = closing_cc_0001();
    head.write(
        ".paved/platform.yaml",
        head.read(".paved/platform.yaml").replace(
            "approvers:\n    team: platform",
            "approvers:\n    team: payments",
        ),
    );
    assert!(head
        .read(".paved/platform.yaml")
        .contains("team: payments\n    count: 1"));
    let outcome = govern(
        &base,
        &head,
        &[".paved/platform.yaml"],
        &pr(
            "octocat",
            vec![review("hubot", ReviewState::Approved, HEAD)],
        ),
    );
    assert_eq!(outcome.verdict, Verdict::Fail, "{}", outcome.description);
    assert!(outcome.description.contains("team platform"));

    // The status: paved/governance, with the outcome's description.
    let report = with_governance(outcome);
    let contexts = report.contexts();
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0].context, GOVERNANCE_CONTEXT);
    assert_eq!(contexts[0].check, None);
    assert_eq!(contexts[0].verdict, Verdict::Fail);
    let md = checks::render_markdown(&report);
    assert!(
        md.contains("**paved/governance** ❌ needs 1 more approval"),
        "{md}"
    );
}

#[test]
fn no_governance_approvers_or_a_broken_base_platform_fails() {
    let base = default_branch();
    let platform = base.read(".paved/platform.yaml");
    let start = platform.find("governance:").expect("governance");
    let end = platform.find("environmentTypes:").expect("types");
    base.write(
        ".paved/platform.yaml",
        format!("{}{}", &platform[..start], &platform[end..]),
    );
    let head = closing_cc_0001();
    let ctx = pr(
        "octocat",
        vec![review("admin1", ReviewState::Approved, HEAD)],
    );
    let outcome = govern(&base, &head, &[CLOSED_POLICY], &ctx);
    assert_eq!(outcome.verdict, Verdict::Fail);
    assert!(
        outcome.description.starts_with(
            "platform.yaml names no governance.approvers: changes to .paved/ and catalog/ cannot be approved"
        ),
        "{}",
        outcome.description
    );

    base.write(".paved/platform.yaml", "teams: [\n");
    let outcome = govern(&base, &head, &[CLOSED_POLICY], &ctx);
    assert_eq!(outcome.verdict, Verdict::Fail);
    assert!(!outcome.errors.is_empty());
    assert_eq!(outcome.errors[0].file, ".paved/platform.yaml");
    assert!(
        outcome
            .description
            .starts_with("cannot decide who approves: .paved/platform.yaml"),
        "{}",
        outcome.description
    );
    let md = checks::render_markdown(&with_governance(outcome));
    assert!(md.contains("`.paved/platform.yaml"), "{md}");
}

#[test]
fn a_head_policy_that_does_not_parse_is_one_what_if_line() {
    let base = default_branch();
    let head = default_branch();
    let broken = ".paved/policies/broken.rego";
    head.write(
        broken,
        "package main\n\ndeny contains msg if {\n  input.x ==\n}\n",
    );

    let approved = pr(
        "octocat",
        vec![review("admin1", ReviewState::Approved, HEAD)],
    );
    let outcome = govern(&base, &head, &[broken], &approved);
    // Decided by the approval alone.
    assert_eq!(outcome.verdict, Verdict::Pass, "{}", outcome.description);
    assert_eq!(outcome.head_errors.len(), 1, "{:?}", outcome.head_errors);
    assert_eq!(outcome.head_errors[0].file, broken);
    // Every environment passing today fails the policy check.
    assert_eq!(outcome.newly_failing.len(), 5);
    assert_eq!(
        outcome.description,
        "approved by admin1; 5 live environments would newly fail (the PR's governance has errors)"
    );

    let md = checks::render_markdown(&with_governance(outcome.clone()));
    let lines: Vec<&str> = md
        .lines()
        .filter(|l| l.contains("would fail") || l.contains("payments/") || l.contains("platform/"))
        .collect();
    assert_eq!(lines.len(), 1, "{md}");
    assert!(
        lines[0].starts_with(
            "⚠️ With this change, 5 environments on the default branch would fail: the pull request's governance has errors: .paved/policies/broken.rego:5"
        ),
        "{md}"
    );
    assert!(lines[0].contains("expecting expression"), "{md}");

    let unapproved = govern(&base, &head, &[broken], &pr("octocat", vec![]));
    assert_eq!(unapproved.verdict, Verdict::Fail);
    assert_eq!(unapproved.newly_failing, outcome.newly_failing);
}

#[test]
fn contexts_include_governance_only_when_set() {
    let report = check_local(&examples());
    assert!(report.governance.is_none());
    let names: Vec<String> = report.contexts().into_iter().map(|c| c.context).collect();
    assert_eq!(
        names,
        ["paved/schema", "paved/policy", "paved/quota", "paved/plan"]
    );
    let json = serde_json::to_value(&report).expect("json");
    assert!(json.get("governance").is_none(), "{json}");
    assert!(json["environments"].is_array());
    // Reports stored before governance existed still read.
    let old: Report =
        serde_json::from_value(serde_json::json!({ "environments": [] })).expect("old report");
    assert_eq!(old, Report::default());

    let base = default_branch();
    let head = closing_cc_0001();
    let outcome = govern(
        &base,
        &head,
        &[CLOSED_POLICY, "README.md"],
        &pr("octocat", vec![]),
    );
    assert_eq!(
        outcome.changed,
        [CLOSED_POLICY],
        "only governance paths are listed"
    );
    let mut report = check_local(&examples());
    report.governance = Some(outcome);
    let contexts = report.contexts();
    let names: Vec<&str> = contexts.iter().map(|c| c.context.as_str()).collect();
    assert_eq!(
        names,
        [
            "paved/schema",
            "paved/policy",
            "paved/quota",
            "paved/plan",
            GOVERNANCE_CONTEXT
        ]
    );
    assert_eq!(contexts[4].verdict, Verdict::Fail);
    // Both sections in the comment, governance first.
    let md = checks::render_markdown(&report);
    let gov_at = md
        .find("#### Governance change")
        .expect("governance section");
    let env_at = md.find("| Environment |").expect("table");
    assert!(gov_at < env_at, "{md}");
    // Round trip through the stored JSON.
    let back: Report =
        serde_json::from_value(serde_json::to_value(&report).expect("json")).expect("parse");
    assert_eq!(back, report);
}

#[test]
fn the_what_if_is_bounded() {
    let base = Repo::new();
    let n = WHAT_IF_MAX + 5;
    for i in 0..n {
        let name = format!("env-{i:05}");
        base.write(
            &format!("environments/payments/{name}.yaml"),
            manifest(&name, "small", "cc-1234"),
        );
    }
    let head = Repo::new();
    head.write(
        CLOSED_POLICY,
        "package main\n\ndeny contains \"closed\" if input.metadata.name == \"env-00007\"\n",
    );
    let started = Instant::now();
    let outcome = govern(&base, &head, &[CLOSED_POLICY], &pr("octocat", vec![]));
    let took = started.elapsed();
    assert!(outcome.truncated);
    assert_eq!(outcome.examined, WHAT_IF_MAX);
    assert_eq!(labels(&outcome), ["payments/env-00007"]);
    assert!(
        outcome.description.ends_with("(first 2000 checked)"),
        "{}",
        outcome.description
    );
    let md = checks::render_markdown(&with_governance(outcome));
    assert!(
        md.contains("Only the first 2000 manifests of the default branch were evaluated."),
        "{md}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}

/// The what-if judges `expiresAt` at the instant it is given (the service's clock, which the
/// checks use too), not the machine's: a `maxTtl` cut to one day breaks environments that
/// expire in two days today, and none of them a day and a half later.
#[test]
fn the_what_if_judges_expiry_at_the_time_it_is_given() {
    let base = default_branch();
    let head = default_branch();
    head.platform(|t| t.replace("maxTtl: 3650d", "maxTtl: 1d"));
    let gov = Governance::load(&base.tree());
    let changed = vec![".paved/platform.yaml".to_string()];
    let ctx = pr("octocat", vec![]);
    let at = |now| {
        let o = checks::evaluate_governance_with(
            &gov,
            &head.tree(),
            &base.tree(),
            &changed,
            &ctx,
            None,
            now,
        );
        labels(&o).iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let today = at(chrono::Utc::now());
    assert!(today.contains(&"payments/alpha".to_string()), "{today:?}");
    let later = at(chrono::Utc::now() + chrono::Duration::hours(36));
    assert!(!later.contains(&"payments/alpha".to_string()), "{later:?}");
}
