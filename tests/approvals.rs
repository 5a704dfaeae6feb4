//! `paved/approval` and environment ownership, through the evaluation engine over real
//! directories (copies of `examples/`, mutated), as tests/checks.rs does.

use paved::checks::{
    self, check_local, evaluate, planned_checks, planned_checks_with_branch, Change, ChangeKind,
    CheckKind, Governance, PrContext, Report, Review, ReviewState, Verdict,
};
use paved::diag::Diagnostic;

const NEW: &str = "environments/payments/orders-db.yaml";
const EXISTING: &str = "environments/payments/checkout-preview.yaml";
const HEAD: &str = "1111111111111111111111111111111111111111";
const OLDER: &str = "2222222222222222222222222222222222222222";

fn manifest(name: &str, env_type: &str) -> String {
    paved_testkit::manifest(name, "payments", "small")
        .replace("type: dev", &format!("type: {env_type}"))
}

fn change(path: &str, kind: ChangeKind) -> Change {
    Change {
        path: path.to_string(),
        kind,
    }
}

/// A pull request by `author` on head [`HEAD`] with these reviews (user, state, commit).
fn pr(author: &str, reviews: &[(&str, ReviewState, &str)]) -> PrContext {
    PrContext {
        author: author.into(),
        reviews: reviews
            .iter()
            .map(|(user, state, commit)| Review {
                id: None,
                user: user.to_string(),
                state: *state,
                commit_id: Some(commit.to_string()),
                digest: None,
            })
            .collect(),
        head_sha: Some(HEAD.into()),
        ..Default::default()
    }
}

/// Evaluate `changes` with governance and the default branch from `base`, manifests from `head`.
fn check(base: &Repo, head: &Repo, changes: &[Change], ctx: &PrContext) -> Report {
    let gov = Governance::load(&base.tree());
    assert!(gov.all_errors().is_empty(), "{:?}", gov.all_errors());
    evaluate(&gov, &head.tree(), &base.tree(), changes, ctx)
}

fn context(report: &Report, check: CheckKind) -> checks::ContextVerdict {
    report
        .contexts()
        .into_iter()
        .find(|c| c.check == check)
        .unwrap_or_else(|| panic!("no {check} context in {}", checks::render_text(report)))
}

fn errors(report: &Report, check: CheckKind) -> Vec<Diagnostic> {
    report
        .environments
        .iter()
        .filter_map(|e| e.outcome(check))
        .flat_map(|o| o.errors.clone())
        .collect()
}

use ReviewState::{Approved, ChangesRequested, Commented, Dismissed};

mod trees;
use trees::Repo;

#[test]
fn a_prod_manifest_needs_two_platform_approvals_on_the_head() {
    let base = Repo::new();
    let head = Repo::new();
    head.write(NEW, manifest("orders-db", "prod"));
    let changes = [change(NEW, ChangeKind::Added)];
    let gov = Governance::load(&base.tree());
    assert_eq!(
        planned_checks(&gov, &head.tree(), &changes),
        [
            CheckKind::Schema,
            CheckKind::Policy,
            CheckKind::Quota,
            CheckKind::Approval,
            CheckKind::Plan
        ]
    );

    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.context, "paved/approval");
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.description
            .starts_with("payments/orders-db: needs 2 more approvals from team platform"),
        "{}",
        c.description
    );
    let e = &errors(&report, CheckKind::Approval)[0];
    assert_eq!(e.file, NEW);
    assert!(
        e.message
            .contains("environmentTypes.prod.approvals in .paved/platform.yaml"),
        "{e}"
    );
    // The other checks pass: only approvals are missing.
    for k in [CheckKind::Schema, CheckKind::Policy, CheckKind::Quota] {
        assert_eq!(
            context(&report, k).verdict,
            Verdict::Pass,
            "{}",
            checks::render_text(&report)
        );
    }

    // One approval is not enough.
    let report = check(
        &base,
        &head,
        &changes,
        &pr("octocat", &[("admin1", Approved, HEAD)]),
    );
    assert_eq!(
        context(&report, CheckKind::Approval).description,
        "payments/orders-db: needs 1 more approval from team platform (type prod: environmentTypes.prod.approvals in .paved/platform.yaml)"
    );

    // Two from platform on the head pass, and the status says who approved.
    let two = [("admin1", Approved, HEAD), ("admin2", Approved, HEAD)];
    let report = check(&base, &head, &changes, &pr("octocat", &two));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Pass, "{}", checks::render_text(&report));
    assert_eq!(c.description, "approved by admin1, admin2");
    let md = checks::render_markdown(&report);
    assert!(md.contains("paved/approval"), "{md}");

    // Approvals of an older commit are stale (dismissStale defaults to true).
    let stale = [("admin1", Approved, HEAD), ("admin2", Approved, OLDER)];
    let report = check(&base, &head, &changes, &pr("octocat", &stale));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.description.contains("admin2 approved an older commit"),
        "{}",
        c.description
    );

    // Outsiders, the author and changes requested.
    let report = check(
        &base,
        &head,
        &changes,
        &pr(
            "admin1",
            &[
                ("admin1", Approved, HEAD),
                ("hubot", Approved, HEAD),
                ("admin2", Approved, HEAD),
            ],
        ),
    );
    assert_eq!(context(&report, CheckKind::Approval).verdict, Verdict::Fail);
    let blocked = [
        ("admin1", Approved, HEAD),
        ("admin2", Approved, HEAD),
        ("admin1", Commented, HEAD),
        ("admin2", ChangesRequested, HEAD),
    ];
    let report = check(&base, &head, &changes, &pr("octocat", &blocked));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.description.contains("changes requested by admin2"),
        "{}",
        c.description
    );
    let mut resolved = blocked.to_vec();
    resolved.push(("admin2", Dismissed, HEAD));
    resolved.push(("admin2", Approved, HEAD));
    let report = check(&base, &head, &changes, &pr("octocat", &resolved));
    assert_eq!(context(&report, CheckKind::Approval).verdict, Verdict::Pass);
}

#[test]
fn dismiss_stale_false_keeps_approvals_across_pushes() {
    let base = Repo::new();
    base.platform(|t| {
        t.replace(
            "    workflow: production\n",
            "    workflow: production\n    dismissStale: false\n",
        )
    });
    let head = Repo::new();
    head.write(NEW, manifest("orders-db", "prod"));
    let changes = [change(NEW, ChangeKind::Added)];
    let old = [("admin1", Approved, OLDER), ("admin2", Approved, OLDER)];
    let report = check(&base, &head, &changes, &pr("octocat", &old));
    assert_eq!(context(&report, CheckKind::Approval).verdict, Verdict::Pass);
}

#[test]
fn alternatives_any_one_suffices() {
    let base = Repo::new();
    base.platform(|t| {
        t.replace(
            "  platform:\n",
            "  security:\n    members: [sec1]\n  platform:\n",
        )
        .replace(
            "    approvals:\n      team: platform\n      count: 2\n",
            "    approvals:\n      - { team: platform, count: 2 }\n      - { team: security, count: 1 }\n",
        )
    });
    let head = Repo::new();
    head.write(NEW, manifest("orders-db", "prod"));
    let changes = [change(NEW, ChangeKind::Added)];
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let c = context(&report, CheckKind::Approval);
    assert!(
        c.description
            .contains("needs 2 more approvals from team platform, or 1 from team security"),
        "{}",
        c.description
    );
    let report = check(
        &base,
        &head,
        &changes,
        &pr("octocat", &[("SEC1", Approved, HEAD)]),
    );
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Pass);
    assert_eq!(c.description, "approved by SEC1");
}

#[test]
fn dev_environments_get_no_approval_check_unless_the_workflow_lists_it() {
    let base = Repo::new();
    let head = Repo::new();
    head.write(NEW, manifest("orders-db", "dev"));
    let changes = [change(NEW, ChangeKind::Added)];
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let names: Vec<String> = report.contexts().into_iter().map(|c| c.context).collect();
    assert_eq!(
        names,
        ["paved/schema", "paved/policy", "paved/quota", "paved/plan"]
    );

    base.write(
        ".paved/workflows/default.yaml",
        "name: default\nchecks: [schema, policy, quota, approval]\n",
    );
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Pass);
    assert_eq!(c.description, "no approval required");

    // A type with approvals gets the check even when its workflow does not list it.
    base.write(
        ".paved/workflows/production.yaml",
        "name: production\nchecks: [schema]\n",
    );
    head.write(NEW, manifest("orders-db", "prod"));
    let gov = Governance::load(&base.tree());
    assert_eq!(
        planned_checks(&gov, &head.tree(), &changes),
        [CheckKind::Schema, CheckKind::Approval]
    );
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    assert_eq!(context(&report, CheckKind::Approval).verdict, Verdict::Fail);
}

#[test]
fn paved_check_reports_approvals_as_a_warning() {
    let repo = Repo::new();
    repo.write(NEW, manifest("orders-db", "prod"));
    let report = check_local(repo.path());
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Pass, "{}", checks::render_text(&report));
    let env = report
        .environments
        .iter()
        .find(|e| e.path == NEW)
        .expect("env");
    let w = &env.outcome(CheckKind::Approval).expect("approval").warnings;
    assert!(
        w[0].message
            .contains("approvals are counted on the pull request: it needs 2 more approvals from team platform"),
        "{w:?}"
    );
}

/// The examples' dev environment, with a new cost center.
fn modified_existing(head: &Repo) -> [Change; 1] {
    head.write(EXISTING, head.read(EXISTING).replace("cc-1234", "cc-5678"));
    [change(EXISTING, ChangeKind::Modified)]
}

#[test]
fn only_owner_team_or_platform_may_change_an_existing_environment() {
    let base = Repo::new();
    let head = Repo::new();
    let changes = modified_existing(&head);
    let report = check(&base, &head, &changes, &pr("stranger", &[]));
    let c = context(&report, CheckKind::Policy);
    assert_eq!(c.verdict, Verdict::Fail);
    let e = &errors(&report, CheckKind::Policy)[0];
    assert_eq!(e.file, EXISTING);
    assert_eq!(e.field.as_deref(), Some("metadata.owner"));
    assert_eq!(e.line, Some(6), "{e}");
    assert_eq!(
        e.message,
        "stranger may not change this existing environment: only its owner octocat, members of team payments or platform approvers (team platform) may (owner and team as on the default branch)"
    );
    assert!(
        c.description.contains("stranger may not change"),
        "{}",
        c.description
    );
    // Other checks are unaffected.
    assert_eq!(context(&report, CheckKind::Schema).verdict, Verdict::Pass);

    for who in ["octocat", "HUBOT", "admin1"] {
        let report = check(&base, &head, &changes, &pr(who, &[]));
        assert_eq!(
            context(&report, CheckKind::Policy).verdict,
            Verdict::Pass,
            "{who}: {}",
            checks::render_text(&report)
        );
    }

    // Rewriting the owner in the pull request does not help: the default branch's counts.
    head.write(
        EXISTING,
        head.read(EXISTING)
            .replace("owner: octocat", "owner: stranger"),
    );
    let report = check(&base, &head, &changes, &pr("stranger", &[]));
    let msgs: Vec<String> = errors(&report, CheckKind::Policy)
        .iter()
        .map(|d| d.message.clone())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("stranger may not change")),
        "{msgs:?}"
    );

    // A new environment has no owner to protect.
    let head = Repo::new();
    head.write(NEW, manifest("orders-db", "dev"));
    let report = check(
        &base,
        &head,
        &[change(NEW, ChangeKind::Added)],
        &pr("hubot", &[]),
    );
    assert_eq!(context(&report, CheckKind::Policy).verdict, Verdict::Pass);
}

#[test]
fn only_owner_team_or_platform_may_delete() {
    let base = Repo::new();
    let head = Repo::new();
    head.remove(EXISTING);
    let changes = [change(EXISTING, ChangeKind::Deleted)];
    let report = check(&base, &head, &changes, &pr("stranger", &[]));
    let c = context(&report, CheckKind::Policy);
    assert_eq!(c.verdict, Verdict::Fail);
    let e = &errors(&report, CheckKind::Policy)[0];
    assert_eq!(e.file, EXISTING);
    assert_eq!(e.field.as_deref(), Some("metadata.owner"));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(
        e.message
            .starts_with("stranger may not delete this existing environment"),
        "{e}"
    );
    // A dev environment needs no approval to go.
    let gov = Governance::load(&base.tree());
    assert_eq!(
        planned_checks_with_branch(&gov, &head.tree(), &base.tree(), &changes),
        [
            CheckKind::Schema,
            CheckKind::Policy,
            CheckKind::Quota,
            CheckKind::Plan
        ]
    );
    assert!(report.environments[0]
        .outcome(CheckKind::Approval)
        .is_none());
    assert_eq!(report.environments[0].env_type.as_deref(), Some("dev"));

    for who in ["octocat", "hubot", "Admin2"] {
        let report = check(&base, &head, &changes, &pr(who, &[]));
        for c in report.contexts() {
            assert_eq!(c.verdict, Verdict::Pass, "{who}: {c:?}");
            assert_eq!(c.description, "1 environment deleted");
        }
    }
}

#[test]
fn deleting_a_prod_environment_needs_its_approvals() {
    let prod = "environments/payments/orders-db.yaml";
    let base = Repo::new();
    base.write(prod, manifest("orders-db", "prod"));
    let head = Repo::new();
    let changes = [change(prod, ChangeKind::Deleted)];
    let gov = Governance::load(&base.tree());
    // Without the default branch the deleted type is unknown; with it, approval is planned.
    assert!(!planned_checks(&gov, &head.tree(), &changes).contains(&CheckKind::Approval));
    assert_eq!(
        planned_checks_with_branch(&gov, &head.tree(), &base.tree(), &changes),
        [
            CheckKind::Schema,
            CheckKind::Policy,
            CheckKind::Quota,
            CheckKind::Approval,
            CheckKind::Plan
        ]
    );
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let env = &report.environments[0];
    assert_eq!(env.change, ChangeKind::Deleted);
    assert_eq!(env.env_type.as_deref(), Some("prod"));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Fail);
    assert!(
        c.description
            .starts_with("payments/orders-db: needs 2 more approvals from team platform"),
        "{}",
        c.description
    );
    assert_eq!(context(&report, CheckKind::Policy).verdict, Verdict::Pass);

    let two = [("admin1", Approved, HEAD), ("admin2", Approved, HEAD)];
    let report = check(&base, &head, &changes, &pr("octocat", &two));
    let c = context(&report, CheckKind::Approval);
    assert_eq!(c.verdict, Verdict::Pass);
    assert_eq!(c.description, "approved by admin1, admin2");
}

#[test]
fn turning_a_prod_environment_into_dev_needs_prod_approvals() {
    let path = "environments/payments/orders-db.yaml";
    let base = Repo::new();
    base.write(path, manifest("orders-db", "prod"));
    let head = Repo::new();
    head.write(path, manifest("orders-db", "dev"));
    let changes = [change(path, ChangeKind::Modified)];
    let gov = Governance::load(&base.tree());
    assert!(
        planned_checks_with_branch(&gov, &head.tree(), &base.tree(), &changes)
            .contains(&CheckKind::Approval)
    );
    let report = check(&base, &head, &changes, &pr("octocat", &[]));
    let e = &errors(&report, CheckKind::Approval)[0];
    assert!(
        e.message.contains("(type prod on the default branch:"),
        "{e}"
    );
}

#[test]
fn platform_yaml_alternatives_and_dismiss_stale_are_validated_with_lines() {
    let repo = Repo::new();
    repo.platform(|t| {
        t.replace(
            "    approvals:\n      team: platform\n      count: 2\n",
            "    dismissStale: false\n    approvals:\n      - { team: platform, count: 2 }\n      - { team: ghosts, count: 0 }\n",
        )
    });
    let gov = Governance::load(&repo.tree());
    let errs = gov.errors();
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert_eq!(
        errs[0].field.as_deref(),
        Some("environmentTypes.prod.approvals[1].team")
    );
    assert!(
        errs[0].message.contains("\"ghosts\" is not defined"),
        "{}",
        errs[0]
    );
    assert_eq!(
        errs[1].field.as_deref(),
        Some("environmentTypes.prod.approvals[1].count")
    );
    assert_eq!(errs[0].line, errs[1].line);
    let line = repo
        .read(".paved/platform.yaml")
        .lines()
        .position(|l| l.contains("ghosts"))
        .map(|i| i + 1);
    assert_eq!(errs[0].line, line);

    // A broken rule inside the list keeps its path and line.
    let repo = Repo::new();
    repo.platform(|t| {
        t.replace(
            "    approvals:\n      team: platform\n      count: 2\n",
            "    approvals:\n      - team: platform\n        count: 2\n        quorum: 3\n",
        )
    });
    let errs = Governance::load(&repo.tree()).errors();
    assert_eq!(
        errs[0].field.as_deref(),
        Some("environmentTypes.prod.approvals[0].quorum"),
        "{errs:?}"
    );
    assert!(errs[0].line.is_some(), "{errs:?}");

    // dismissStale must be a boolean.
    let repo = Repo::new();
    repo.platform(|t| {
        t.replace(
            "    workflow: production\n",
            "    workflow: production\n    dismissStale: sometimes\n",
        )
    });
    let errs = Governance::load(&repo.tree()).errors();
    assert_eq!(
        errs[0].field.as_deref(),
        Some("environmentTypes.prod.dismissStale"),
        "{errs:?}"
    );
    assert!(errs[0].line.is_some(), "{errs:?}");
}
