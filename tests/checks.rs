//! The evaluation engine over real directories: copies of `examples/`, mutated.

use paved::checks::{
    self, check_local, evaluate, planned_checks, Change, ChangeKind, CheckKind, Governance,
    PrContext, Report, Verdict,
};
use paved::diag::Diagnostic;
use paved::tree::DirTree;
use std::time::{Duration, Instant};

mod trees;
use trees::{examples, Repo};

const NEW: &str = "environments/payments/orders-preview.yaml";

fn manifest(name: &str, size: &str) -> String {
    paved_testkit::manifest(name, "payments", size)
}

fn added(path: &str) -> Change {
    Change {
        path: path.to_string(),
        kind: ChangeKind::Added,
    }
}

fn octocat() -> PrContext {
    PrContext {
        author: "octocat".into(),
        approvers: Vec::new(),
        ..Default::default()
    }
}

/// Evaluate a PR adding `path` to the repository (base = default branch = head, as after
/// `git checkout` of a PR branch whose base holds the same governance).
fn check_pr(repo: &Repo, changes: &[Change]) -> Report {
    let tree = repo.tree();
    let gov = Governance::load(&tree);
    evaluate(&gov, &tree, &tree, changes, &octocat())
}

fn verdict(report: &Report, check: CheckKind) -> Verdict {
    report
        .contexts()
        .into_iter()
        .find(|c| c.check == check)
        .map(|c| c.verdict)
        .unwrap_or_else(|| panic!("no {check} context in {report:#?}"))
}

fn errors(report: &Report, check: CheckKind) -> Vec<Diagnostic> {
    report
        .environments
        .iter()
        .filter_map(|e| e.outcome(check))
        .flat_map(|o| o.errors.clone())
        .collect()
}

fn description(report: &Report, check: CheckKind) -> String {
    report
        .contexts()
        .into_iter()
        .find(|c| c.check == check)
        .map(|c| c.description)
        .unwrap_or_default()
}

#[test]
fn examples_pass_every_check() {
    let report = check_local(&examples());
    let contexts = report.contexts();
    let names: Vec<&str> = contexts.iter().map(|c| c.context.as_str()).collect();
    assert_eq!(
        names,
        ["paved/schema", "paved/policy", "paved/quota", "paved/plan"]
    );
    for c in &contexts {
        assert_eq!(c.verdict, Verdict::Pass, "{}", checks::render_text(&report));
    }
    assert_eq!(contexts[0].description, "1 environment passes");
    let tree = DirTree::new(examples());
    let gov = Governance::load(&tree);
    assert!(gov.all_errors().is_empty(), "{:?}", gov.all_errors());
    assert_eq!(gov.policies().engine_name(), "rvm");
}

#[test]
fn a_valid_pr_passes_and_plans_three_checks() {
    let repo = Repo::new();
    repo.write(NEW, manifest("orders-preview", "small"));
    let tree = repo.tree();
    let gov = Governance::load(&tree);
    let changes = [added(NEW)];
    assert_eq!(
        planned_checks(&gov, &tree, &changes),
        vec![
            CheckKind::Schema,
            CheckKind::Policy,
            CheckKind::Quota,
            CheckKind::Plan
        ]
    );
    let report = evaluate(&gov, &tree, &tree, &changes, &octocat());
    for c in report.contexts() {
        assert_eq!(c.verdict, Verdict::Pass, "{}", checks::render_text(&report));
    }
    let env = &report.environments[0];
    assert_eq!(env.name.as_deref(), Some("orders-preview"));
    assert_eq!(env.team.as_deref(), Some("payments"));
    assert_eq!(env.workflow, "default");
    // JSON for the API and the CLI
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["environments"][0]["checks"][0]["verdict"], "pass");
}

#[test]
fn invalid_yaml_fails_schema_with_line_and_column() {
    let repo = Repo::new();
    repo.write(
        NEW,
        "apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: orders-preview\n  team: payments\n  owner: [octocat\nspec: {}\n",
    );
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.file, NEW);
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
    assert_eq!(e.line, Some(7), "{e}");
    // The policy check does not pass on a manifest it cannot read.
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
    assert!(errors(&report, CheckKind::Policy)[0]
        .message
        .contains("see paved/schema"));
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let repo = Repo::new();
    let text = manifest("orders-preview", "small")
        .replace("  owner: octocat\n", "  owner: octocat\n  colour: blue\n");
    repo.write(NEW, text);
    let report = check_pr(&repo, &[added(NEW)]);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.field.as_deref(), Some("metadata.colour"));
    assert_eq!(e.line, Some(7));
    assert!(e.message.contains("unknown field `colour`"), "{e}");
    assert!(description(&report, CheckKind::Schema).contains("colour"));
}

#[test]
fn parameter_outside_allowed_fails_schema() {
    let repo = Repo::new();
    repo.write(NEW, manifest("orders-preview", "huge"));
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail);
    assert_eq!(
        description(&report, CheckKind::Schema),
        "payments/orders-preview: spec.parameters.size: 'huge' is not one of small, large"
    );
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!((e.line, e.column), (Some(11), Some(5)));
    let md = checks::render_markdown(&report);
    assert!(
        md.contains(&format!("`{NEW}:11:5` spec.parameters.size")),
        "{md}"
    );
}

#[test]
fn definition_type_team_and_readonly_parameters_are_checked() {
    let repo = Repo::new();
    let text = manifest("orders-preview", "small")
        .replace("definition: postgres-db", "definition: redis")
        .replace("type: dev", "type: staging");
    repo.write(NEW, text);
    let report = check_pr(&repo, &[added(NEW)]);
    let msgs: Vec<String> = errors(&report, CheckKind::Schema)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("spec.type: type \"staging\" is not defined")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("spec.definition: definition \"redis\" is not in the catalog")),
        "{msgs:#?}"
    );

    let text = manifest("orders-preview", "small")
        .replace("    size: small\n", "    size: small\n    version: 15\n");
    repo.write(NEW, text);
    let report = check_pr(&repo, &[added(NEW)]);
    let msgs: Vec<String> = errors(&report, CheckKind::Schema)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("spec.parameters.version") && m.contains("read-only")),
        "{msgs:#?}"
    );
}

const DENY_POLICY: &str = r#"package main

deny contains msg if {
    input.spec.tags["cost-center"] == "cc-0000"
    msg := "cost center cc-0000 is closed"
}
"#;

#[test]
fn rego_deny_fails_policy_and_warn_only_reports() {
    let repo = Repo::new();
    repo.write(".paved/policies/closed.rego", DENY_POLICY);
    repo.write(
        NEW,
        manifest("orders-preview", "small").replace("cc-1234", "cc-0000"),
    );
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Pass);
    assert!(description(&report, CheckKind::Policy).contains("cost center cc-0000 is closed"));

    // The example policies: large is for prod; no expiresAt is only a warning (in prod).
    let repo = Repo::new();
    repo.write(NEW, manifest("orders-preview", "large"));
    let report = check_pr(&repo, &[added(NEW)]);
    let e = errors(&report, CheckKind::Policy);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].message.contains("size 'large' is not allowed for dev"),
        "{e:?}"
    );

    let prod = manifest("orders-preview", "large").replace("type: dev", "type: prod");
    let prod: String = prod
        .lines()
        .filter(|l| !l.contains("expiresAt"))
        .map(|l| format!("{l}\n"))
        .collect();
    repo.write(NEW, prod);
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(
        verdict(&report, CheckKind::Policy),
        Verdict::Pass,
        "{}",
        checks::render_text(&report)
    );
    let warnings = &report.environments[0]
        .outcome(CheckKind::Policy)
        .expect("policy")
        .warnings;
    assert!(
        warnings.iter().any(|w| w.message.contains("no expiresAt")),
        "{warnings:?}"
    );
    assert!(description(&report, CheckKind::Policy).contains("1 warning"));
    assert_eq!(report.environments[0].workflow, "production");
}

#[test]
fn conftest_conventions_every_package_and_paved_context() {
    let repo = Repo::new();
    repo.write(
        ".paved/policies/team.rego",
        r#"package teams.rules

violation contains {"msg": msg} if {
    data.paved.pr.author != input.metadata.owner
    msg := sprintf("%s may only request environments for themselves", [data.paved.pr.author])
}

deny_too_many if data.paved.counts.team_environments > 1
"#,
    );
    repo.write(
        NEW,
        manifest("orders-preview", "small").replace("owner: octocat", "owner: hubot"),
    );
    let report = check_pr(&repo, &[added(NEW)]);
    let msgs: Vec<String> = errors(&report, CheckKind::Policy)
        .into_iter()
        .map(|d| d.message)
        .collect();
    assert_eq!(
        msgs,
        [
            "teams.rules.deny_too_many is true",
            "octocat may only request environments for themselves"
        ],
        "{msgs:?}"
    );
}

#[test]
fn rego_syntax_error_fails_the_policy_check_with_the_error() {
    let repo = Repo::new();
    repo.write(
        ".paved/policies/broken.rego",
        "package main\n\ndeny contains msg if {\n  input.x ==\n}\n",
    );
    repo.write(NEW, manifest("orders-preview", "small"));
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Pass);
    let e = &errors(&report, CheckKind::Policy)[0];
    assert_eq!(e.file, ".paved/policies/broken.rego");
    assert_eq!(e.line, Some(5));
    assert!(e.message.contains("expecting expression"), "{e}");
    // Rego v0 syntax is an error too: policies are Rego v1.
    repo.write(
        ".paved/policies/broken.rego",
        "package main\n\ndeny[msg] { msg := \"x\" }\n",
    );
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
}

/// Writes `n` payments manifests `extra-1..n` and returns them as added changes.
fn add_payments_environments(repo: &Repo, n: usize) -> Vec<Change> {
    (1..=n)
        .map(|i| {
            let name = format!("extra-{i}");
            let path = format!("environments/payments/{name}.yaml");
            repo.write(&path, manifest(&name, "small"));
            added(&path)
        })
        .collect()
}

#[test]
fn quota_overrun_fails_quota() {
    let repo = Repo::new();
    let changes = add_payments_environments(&repo, 5);
    // The default branch holds only the examples (one payments environment).
    let default_branch = DirTree::new(examples());
    let head = repo.tree();
    let gov = Governance::load(&default_branch);
    let report = evaluate(&gov, &head, &default_branch, &changes, &octocat());
    assert_eq!(verdict(&report, CheckKind::Quota), Verdict::Fail);
    assert_eq!(
        verdict(&report, CheckKind::Schema),
        Verdict::Pass,
        "{}",
        checks::render_text(&report)
    );
    let d = description(&report, CheckKind::Quota);
    assert!(
        d.contains("would have 6 environments, over its quota of 5"),
        "{d}"
    );

    // Four more fit, and deleting one makes room for a fifth.
    let report = evaluate(&gov, &head, &default_branch, &changes[..4], &octocat());
    assert_eq!(verdict(&report, CheckKind::Quota), Verdict::Pass);
    let mut swap = changes.clone();
    swap.push(Change {
        path: "environments/payments/checkout-preview.yaml".into(),
        kind: ChangeKind::Deleted,
    });
    let report = evaluate(&gov, &head, &default_branch, &swap, &octocat());
    assert_eq!(
        verdict(&report, CheckKind::Quota),
        Verdict::Pass,
        "{}",
        checks::render_text(&report)
    );

    // `paved check` counts the manifests in the tree.
    let report = check_local(repo.path());
    assert_eq!(verdict(&report, CheckKind::Quota), Verdict::Fail);
}

#[test]
fn quota_counts_live_environments_of_the_inventory() {
    let repo = Repo::new();
    let changes = add_payments_environments(&repo, 4);
    let default_branch = DirTree::new(examples());
    let head = repo.tree();
    let gov = Governance::load(&default_branch);
    // 1 on the default branch + 4 added = 5: within the quota.
    let report = evaluate(&gov, &head, &default_branch, &changes, &octocat());
    assert_eq!(verdict(&report, CheckKind::Quota), Verdict::Pass);
    // An environment whose manifest is gone but whose teardown failed is still live in
    // the inventory: it counts, and the fifth addition no longer fits.
    let mut ctx = octocat();
    ctx.live.insert(
        "payments".into(),
        ["half-deleted".to_string(), "checkout-preview".to_string()].into(),
    );
    let report = evaluate(&gov, &head, &default_branch, &changes, &ctx);
    assert_eq!(verdict(&report, CheckKind::Quota), Verdict::Fail);
    let d = description(&report, CheckKind::Quota);
    assert!(d.contains("would have 6 environments"), "{d}");
}

#[test]
fn yaml_bomb_fails_fast_with_a_clear_message() {
    let repo = Repo::new();
    let mut bomb = String::from("apiVersion: paved/v1\nkind: Environment\nmetadata:\n  name: orders-preview\n  team: payments\nspec:\n  type: dev\n  definition: postgres-db\n  parameters:\n    a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for i in 0..20u8 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let next = format!("l{i}");
        bomb.push_str(&format!("    {next}: &{next} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
    }
    repo.write(NEW, bomb);
    let start = Instant::now();
    let report = check_pr(&repo, &[added(NEW)]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert!(
        e.message
            .contains("YAML anchors and aliases are not allowed in manifests"),
        "{e}"
    );
    assert_eq!(e.line, Some(10));
}

#[test]
fn a_five_mib_manifest_fails_clearly() {
    let repo = Repo::new();
    let mut huge = manifest("orders-preview", "small");
    huge.push_str("# ");
    huge.push_str(&"x".repeat(5 * 1024 * 1024));
    huge.push('\n');
    repo.write(NEW, huge);
    let start = Instant::now();
    let report = check_pr(&repo, &[added(NEW)]);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.file, NEW);
    assert!(
        e.message.contains("larger than the 1048576 byte limit"),
        "{e}"
    );
}

#[test]
fn paths_with_dot_dot_or_odd_names_fail_schema() {
    let repo = Repo::new();
    for (path, expect) in [
        ("environments/../secrets.yaml", "'..'"),
        ("environments/payments/../../etc/passwd.yaml", "'..'"),
        (
            "environments/payments/notes.txt",
            "only environment manifests",
        ),
        ("environments/payments/x.yml", ".yaml extension"),
        ("environments/pay ments/abc.yaml", "not a valid team name"),
        ("environments/payments/sub/abc.yaml", "exactly two levels"),
        (
            "environments/payments/Bad_Name.yaml",
            "not a valid environment name",
        ),
    ] {
        let report = check_pr(&repo, &[added(path)]);
        assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail, "{path}");
        let e = &errors(&report, CheckKind::Schema)[0];
        assert!(e.message.contains(expect), "{path}: {e}");
        // and nothing else passes for it
        assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail, "{path}");
    }
}

#[test]
fn name_must_equal_file_stem_and_team_folder() {
    let repo = Repo::new();
    repo.write(NEW, manifest("other-name", "small"));
    let report = check_pr(&repo, &[added(NEW)]);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.field.as_deref(), Some("metadata.name"));
    assert_eq!(e.line, Some(4));
    assert!(
        e.message
            .contains("must equal the file name \"orders-preview\""),
        "{e}"
    );

    let path = "environments/platform/orders-preview.yaml";
    repo.write(path, manifest("orders-preview", "small"));
    let report = check_pr(&repo, &[added(path)]);
    let msgs: Vec<String> = errors(&report, CheckKind::Schema)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("metadata.team") && m.contains("team folder")),
        "{msgs:#?}"
    );
    // the same name in two teams
    assert!(
        msgs.iter()
            .any(|m| m.contains("already used by environments/payments/orders-preview.yaml")),
        "{msgs:#?}"
    );
}

#[test]
fn governance_follows_base_not_head() {
    // base: the examples plus a strict policy; head: the PR relaxes it and adds a manifest.
    let base = Repo::new();
    base.write(".paved/policies/closed.rego", DENY_POLICY);
    let head = Repo::new();
    head.write(".paved/policies/closed.rego", "package main\n");
    head.write(
        ".paved/platform.yaml",
        head.read(".paved/platform.yaml")
            .replace("[cost-center]", "[]"),
    );
    head.write(
        NEW,
        manifest("orders-preview", "small").replace("cc-1234", "cc-0000"),
    );
    let gov = Governance::load(&base.tree());
    let changes = [
        added(NEW),
        Change {
            path: ".paved/policies/closed.rego".into(),
            kind: ChangeKind::Modified,
        },
    ];
    let report = evaluate(&gov, &head.tree(), &base.tree(), &changes, &octocat());
    assert_eq!(
        report.environments.len(),
        1,
        "only manifests are environments"
    );
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
    assert!(description(&report, CheckKind::Policy).contains("cc-0000 is closed"));
}

#[test]
fn a_broken_platform_yaml_fails_every_check() {
    let repo = Repo::new();
    repo.write(NEW, manifest("orders-preview", "small"));
    repo.write(
        ".paved/platform.yaml",
        "teams:\n  payments:\n    members: [octocat]\n    bogus: 1\n",
    );
    let report = check_pr(&repo, &[added(NEW)]);
    for c in report.contexts() {
        assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
        assert!(c.description.contains("unknown field `bogus`"), "{c:?}");
    }
    let e = &errors(&report, CheckKind::Quota)[0];
    assert_eq!(e.file, ".paved/platform.yaml");
    assert_eq!(e.line, Some(4));

    repo.remove(".paved/platform.yaml");
    let report = check_pr(&repo, &[added(NEW)]);
    assert!(description(&report, CheckKind::Schema).contains("needs .paved/platform.yaml"));
}

#[test]
fn deletions_pass_as_deletions() {
    let repo = Repo::new();
    let path = "environments/payments/checkout-preview.yaml";
    let base = repo.tree();
    let gov = Governance::load(&base);
    let head = Repo::new();
    head.remove(path);
    let changes = [Change {
        path: path.into(),
        kind: ChangeKind::Deleted,
    }];
    assert_eq!(planned_checks(&gov, &head.tree(), &changes).len(), 4);
    let report = evaluate(&gov, &head.tree(), &base, &changes, &octocat());
    let env = &report.environments[0];
    assert_eq!(env.change, ChangeKind::Deleted);
    assert_eq!(env.name.as_deref(), Some("checkout-preview"));
    for c in report.contexts() {
        assert_eq!(c.verdict, Verdict::Pass);
        assert_eq!(c.description, "1 environment deleted");
    }
    assert!(checks::render_markdown(&report).contains("(deleted)"));
}

#[test]
fn workflows_choose_the_checks_and_broken_ones_fail() {
    let repo = Repo::new();
    repo.write(
        ".paved/workflows/quick.yaml",
        "name: quick\ndescription: schema only\nchecks: [schema]\n",
    );
    repo.write(
        ".paved/platform.yaml",
        repo.read(".paved/platform.yaml")
            .replace("workflow: default", "workflow: quick"),
    );
    repo.write(NEW, manifest("orders-preview", "large"));
    let tree = repo.tree();
    let gov = Governance::load(&tree);
    let changes = [added(NEW)];
    assert_eq!(
        planned_checks(&gov, &tree, &changes),
        vec![CheckKind::Schema]
    );
    let report = evaluate(&gov, &tree, &tree, &changes, &octocat());
    let names: Vec<String> = report.contexts().into_iter().map(|c| c.context).collect();
    assert_eq!(names, ["paved/schema"]);
    assert_eq!(report.environments[0].workflow, "quick");

    repo.write(
        ".paved/workflows/quick.yaml",
        "name: quick\nchecks: [schema, lint]\n",
    );
    let report = check_pr(&repo, &changes);
    assert_eq!(verdict(&report, CheckKind::Schema), Verdict::Fail);
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.file, ".paved/workflows/quick.yaml");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("lint"), "{e}");
}

#[test]
fn ttl_required_tags_and_owner_are_policy_rules() {
    let repo = Repo::new();
    repo.write(
        ".paved/platform.yaml",
        repo.read(".paved/platform.yaml")
            .replace("maxTtl: 3650d", "maxTtl: 168h"),
    );
    let far = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let text = manifest("orders-preview", "small");
    let text: String = text
        .lines()
        .map(|l| {
            if l.contains("expiresAt") {
                format!("  expiresAt: {far}\n")
            } else if l.contains("cost-center") {
                "    team: checkout\n".to_string()
            } else if l.contains("owner:") {
                String::new()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    repo.write(NEW, text);
    let tree = repo.tree();
    let gov = Governance::load(&tree);
    let stranger = PrContext {
        author: "stranger".into(),
        approvers: Vec::new(),
        ..Default::default()
    };
    let report = evaluate(&gov, &tree, &tree, &[added(NEW)], &stranger);
    let msgs: Vec<String> = errors(&report, CheckKind::Policy)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("tag \"cost-center\" is required for type dev")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("spec.expiresAt") && m.contains("more than 168h from now")),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("author stranger") && m.contains("not a member of team payments")),
        "{msgs:#?}"
    );
}

#[test]
fn thousands_of_bad_parameters_are_cut_short() {
    let repo = Repo::new();
    let mut text = manifest("orders-preview", "small");
    let extra: String = (0..20_000).map(|i| format!("    p{i}: {i}\n")).collect();
    text = text.replace("    size: small\n", &format!("    size: small\n{extra}"));
    assert!(text.len() < 1024 * 1024);
    repo.write(NEW, text);
    let start = Instant::now();
    let report = check_pr(&repo, &[added(NEW)]);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    let e = errors(&report, CheckKind::Schema);
    assert_eq!(e.len(), 21, "{e:?}");
    assert!(e[20].message.contains("more problems not shown"));
}

#[test]
fn a_type_naming_a_missing_workflow_fails_its_checks() {
    let repo = Repo::new();
    repo.write(
        ".paved/platform.yaml",
        repo.read(".paved/platform.yaml")
            .replace("workflow: default", "workflow: nightly"),
    );
    repo.write(NEW, manifest("orders-preview", "small"));
    let report = check_pr(&repo, &[added(NEW)]);
    for c in report.contexts() {
        assert_eq!(c.verdict, Verdict::Fail, "{c:?}");
        assert!(
            c.description
                .contains("workflow \"nightly\" is not defined"),
            "{c:?}"
        );
    }
    let e = &errors(&report, CheckKind::Schema)[0];
    assert_eq!(e.field.as_deref(), Some("environmentTypes.dev.workflow"));
    assert_eq!(e.file, ".paved/platform.yaml");
    assert!(e.line.is_some(), "{e}");
}

#[test]
fn a_type_may_require_a_schedule_and_a_bad_schedule_names_its_field() {
    let repo = Repo::new();
    repo.write(
        ".paved/platform.yaml",
        repo.read(".paved/platform.yaml").replace(
            "    timeout: 30m",
            "    timeout: 30m\n    requireSchedule: true",
        ),
    );
    repo.write(NEW, manifest("orders-preview", "small"));
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(verdict(&report, CheckKind::Policy), Verdict::Fail);
    let msgs: Vec<String> = errors(&report, CheckKind::Policy)
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains(NEW) && m.contains("schedule is required for type dev")),
        "{msgs:#?}"
    );

    // With a schedule it passes; a schedule with a bad time zone fails the schema, at its
    // line.
    let scheduled = format!(
        "{}  schedule: {{stop: \"19:00\", start: \"08:00\", timeZone: Europe/Berlin, days: [mon, fri]}}\n",
        manifest("orders-preview", "small")
    );
    repo.write(NEW, &scheduled);
    let report = check_pr(&repo, &[added(NEW)]);
    assert_eq!(
        verdict(&report, CheckKind::Policy),
        Verdict::Pass,
        "{}",
        checks::render_text(&report)
    );
    repo.write(NEW, scheduled.replace("Europe/Berlin", "Europe/Atlantis"));
    let report = check_pr(&repo, &[added(NEW)]);
    let errs = errors(&report, CheckKind::Schema);
    let bad = errs
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.schedule.timeZone"))
        .unwrap_or_else(|| panic!("{errs:#?}"));
    assert!(bad.line.is_some(), "{bad:?}");
    assert!(bad.message.contains("Europe/Atlantis"), "{bad:?}");
}
