//! ADE's runner contract (SPEC 13): a definition written the way Azure Deployment
//! Environments' documentation writes custom-image scripts runs under Paved unchanged, in
//! the sandbox, with the `ade` command on its `PATH`.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use paved_testkit::FileChange;
use serde_json::Value;

/// The fixture definition as `catalog/ade-style/`.
fn ade_style_files() -> Vec<FileChange> {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ade-custom-image");
    [
        "environment.yaml",
        "main.json",
        "deploy.sh",
        "delete.sh",
        "scripts/shared.sh",
    ]
    .iter()
    .map(|f| {
        (
            format!("catalog/ade-style/{f}"),
            Some(std::fs::read(dir.join(f)).expect("fixture")),
        )
    })
    .collect()
}

fn manifest(name: &str, mode: &str) -> Vec<FileChange> {
    let text =
        common::recorder::manifest_of(name, "dev", "ade-style", &format!("    mode: {mode}\n"));
    vec![(
        format!("environments/payments/{name}.yaml"),
        Some(text.into_bytes()),
    )]
}

async fn start() -> Env {
    Env::prepare_platform_files(
        |t| {
            t.replace(
                "definitions: [postgres-db, static-site, recorder]",
                "definitions: [postgres-db, static-site, recorder, ade-style]",
            )
        },
        ade_style_files(),
    )
    .await
    .run_with(|_| {})
    .await
}

/// The operation of `merge` (there is one).
async fn operation(env: &Env, merge: &paved::ids::CommitSha) -> Value {
    let ops = env.operations(merge).await;
    assert_eq!(ops.len(), 1, "{ops:#?}");
    let id = ops[0]["id"].as_i64().expect("id");
    env.get(&format!("/api/v1/operations/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ade_custom_image_script_runs_unchanged() {
    let env = start().await;
    let pr = env.open(&manifest("ade-ok", "ok"));
    let (merge, _) = env.merge(&pr).await;
    let status = env.provision_status(&merge).await;
    let op = operation(&env, &merge).await;
    assert_eq!(status.state, "success", "{op:#}");

    // Its `ade log` lines are in the operation log.
    let log = op["log"].as_str().unwrap_or_default();
    for line in [
        "Deploying ade-ok (dev) from main.json",
        "verbose: Selecting catalog directory:",
        "Operation completed successfully!",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
    // Its outputs, uploaded with `ade outputs upload`, reach the inventory and the comment.
    let url = "https://ade-ok.ade.example.test";
    let detail = env.environment("ade-ok").await;
    assert_eq!(
        detail["environment"]["outputs"]["endpoint"]["value"], url,
        "{detail:#}"
    );
    let n = pr.number;
    env.h
        .github
        .wait_until(common::DEADLINE, "the merge comment", move |gh| {
            gh.comments(common::REPO, n)
                .iter()
                .any(|c| c.body.contains("merged as"))
        })
        .await
        .expect("comment");
    assert!(
        env.h
            .comments(pr.number)
            .iter()
            .any(|c| c.body.contains(url)),
        "the outputs are in the PR comment"
    );

    // `ade definitions list` and `ade environment` print what ADE prints.
    let run = op["run_id"]
        .as_i64()
        .or_else(|| op["id"].as_i64())
        .expect("run id");
    let read = |what: &str| -> Value {
        let text = std::fs::read_to_string(env.records.join(format!("{run}.{what}")))
            .unwrap_or_else(|e| panic!("{what} not recorded: {e}"));
        serde_json::from_str(&text).expect("json")
    };
    let definition = read("ade-definition");
    assert_eq!(definition["name"], "ade-style");
    assert_eq!(definition["catalogName"], "catalog");
    assert_eq!(definition["templatePath"], "catalog/ade-style/main.json");
    assert_eq!(definition["parameters"][0]["id"], "mode");
    assert_eq!(
        definition["parameters"][0]["allowed"],
        serde_json::json!(["ok", "fail"])
    );
    assert!(definition["id"]
        .as_str()
        .is_some_and(|id| id.ends_with("/catalogs/catalog/environmentDefinitions/ade-style")));
    let environment = read("ade-environment");
    assert_eq!(environment["name"], "ade-ok");
    assert_eq!(environment["environmentType"], "dev");
    assert_eq!(environment["environmentDefinitionName"], "ade-style");
    assert_eq!(environment["parameters"]["mode"], "ok");

    // The delete finds the folder `ade files upload` kept, with the environment's storage.
    let gone = env.open(&[("environments/payments/ade-ok.yaml".to_string(), None)]);
    let (delete_merge, _) = env.merge(&gone).await;
    assert_eq!(env.provision_status(&delete_merge).await.state, "success");
    let deleted = operation(&env, &delete_merge).await;
    let log = deleted["log"].as_str().unwrap_or_default();
    assert!(log.contains("state.zip"), "ade files list:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_reported_with_ade_operation_result_reaches_the_status_and_the_note() {
    let env = start().await;
    let pr = env.open(&manifest("ade-bad", "fail"));
    let (merge, _) = env.merge(&pr).await;
    assert_eq!(env.provision_status(&merge).await.state, "failure");
    let op = operation(&env, &merge).await;
    let expected = "DeploymentFailed: Operation failed with exit code 7 ! Additional Error Details: quota exceeded in westeurope";
    let error = op["error"].as_str().unwrap_or_default();
    assert!(error.contains(expected), "{error}");
    let log = op["log"].as_str().unwrap_or_default();
    assert!(
        log.contains("error: Operation failed with exit code 7 !!!"),
        "{log}"
    );
    // The deployment's failure status and the audit note say why.
    let deployments = env.h.github.deployments(&env.repo());
    let failure = deployments
        .iter()
        .flat_map(|d| d.statuses.iter())
        .find(|s| s.state == "failure")
        .expect("a failure status");
    assert!(
        failure.description.contains("DeploymentFailed"),
        "{}",
        failure.description
    );
    let sha = merge.to_string();
    let remote = env.h.remote.path().to_path_buf();
    env.h
        .github
        .wait_until(common::DEADLINE, "the audit note", move |_| {
            let Ok(r) = git2::Repository::open_bare(&remote) else {
                return false;
            };
            let Ok(oid) = git2::Oid::from_str(&sha) else {
                return false;
            };
            let found = r.find_note(Some("refs/notes/paved"), oid).is_ok();
            found
        })
        .await
        .expect("note");
    let notes = env.notes(&merge);
    assert!(
        notes
            .iter()
            .any(|n| n.message.as_deref().is_some_and(|m| m.contains(expected))),
        "{notes:#?}"
    );
}
