//! From ADE to Paved through pull requests: the governance one first (types and
//! definitions), then the environments one, whose merge adopts them: `ready`, with their
//! outputs, and no script run. Running the import again opens nothing twice.

use super::{ALICE, CLIENT, SECRET, TENANT};
use crate::common::provisioning::Env;
use crate::common::REPO;
use devcenter_emulator::DevCenter;
use paved::import::ade::{self, client::Credentials, write::Outcome, ImportOptions};
use paved_testkit::PullRequestSpec;
use serde_json::json;

/// An ADE catalog checkout: `webapp`, whose deploy fails if it is ever run.
fn catalog(dir: &std::path::Path) -> std::path::PathBuf {
    let def = dir.join("ade-catalog/Environments/WebApp");
    std::fs::create_dir_all(&def).unwrap();
    std::fs::write(
        def.join("environment.yaml"),
        "name: webapp\nversion: 1.0.0\nsummary: A web app\nrunner: command\nparameters:\n  - id: size\n    name: Size\n    type: string\n    allowed: [small, large]\n    default: small\n",
    )
    .unwrap();
    std::fs::write(
        def.join("deploy.sh"),
        "#!/bin/sh\necho 'adoption must not run me' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::write(def.join("delete.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    dir.join("ade-catalog")
}

async fn devcenter() -> DevCenter {
    let dc = DevCenter::start().await.unwrap();
    dc.add_client_secret(TENANT, CLIENT, SECRET);
    dc.add_environment_type("contoso", "DevTest", "Enabled");
    dc.add_catalog(
        "contoso",
        "main",
        vec![json!({"name": "webapp", "parameters": [
            {"id": "size", "name": "Size", "type": "string", "required": false, "allowed": ["small", "large"]}]})],
    );
    dc.add_environment(
        "contoso",
        json!({"name": "shop-dev", "user": ALICE, "environmentType": "DevTest", "catalogName": "main",
               "environmentDefinitionName": "webapp", "provisioningState": "Succeeded",
               "parameters": {"size": "large"}, "expirationDate": "2027-03-01T17:00:00Z"}),
        json!({"outputs": {
            "url": {"type": "string", "value": "https://shop-dev.example.net", "sensitive": false},
            "password": {"type": "string", "value": "hunter2-very-secret", "sensitive": true},
        }}),
    );
    dc
}

fn pull_of(e: &Env, url: &str) -> PullRequestSpec {
    let number: u64 = url.rsplit('/').next().unwrap().parse().unwrap();
    let pull = e.h.github.pull(REPO, number).expect("pull at the emulator");
    PullRequestSpec::of_pull(&pull, &e.h.repo, &e.h.remote.clone_url()).expect("a pull request")
}

async fn import(e: &Env, dc: &DevCenter, opts: &ImportOptions) -> Outcome {
    let credentials = Credentials::from_env(|k| match k {
        "AZURE_TENANT_ID" => Some(TENANT.into()),
        "AZURE_CLIENT_ID" => Some(CLIENT.into()),
        "AZURE_CLIENT_SECRET" => Some(SECRET.into()),
        "AZURE_AUTHORITY_HOST" => Some(dc.authority()),
        _ => None,
    })
    .unwrap();
    let (project, mapping) = ade::plan(opts, &credentials).await.unwrap();
    let mirrors = tempfile::tempdir().unwrap();
    let orch = paved::service::orchestrator(e.h.config(), mirrors.path())
        .await
        .unwrap();
    let repo = paved::ids::RepoName::parse(REPO).unwrap();
    ade::write::open(
        &orch,
        &repo,
        "ade:test/projects/contoso",
        &project,
        &mapping,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_adopts_live_environments_without_running_a_script() {
    let e = Env::prepare_platform(|t| t, |c, git| c.git_root = Some(git.to_path_buf()))
        .await
        .run_with(|_| {})
        .await;
    let dc = devcenter().await;
    let tmp = tempfile::tempdir().unwrap();
    let users = tmp.path().join("users.csv");
    std::fs::write(&users, format!("{ALICE},octocat\n")).unwrap();
    // Paved learns of the repository from its first webhook.
    let hello = e.open(&[]);
    e.h.send_pr(&hello).await;
    let opts = ImportOptions {
        endpoint: dc.url(),
        project: "contoso".into(),
        repository: REPO.into(),
        team: "payments".into(),
        users: Some(users),
        tags: vec!["cost-center=cc-1234".into()],
        type_map: vec![],
        catalog: Some(catalog(tmp.path())),
        dry_run: false,
    };

    // 1. The types and the definition, first: the default branch has neither.
    let Outcome::Governance { url } = import(&e, &dc, &opts).await else {
        panic!("expected the governance pull request first");
    };
    let gov = pull_of(&e, &url);
    let platform =
        e.h.remote
            .read_file(&gov.head_sha, ".paved/platform.yaml")
            .unwrap();
    assert!(platform.contains("  devtest:\n    description: Imported from ADE project contoso (environment type DevTest).\n    workflow: default\n    definitions: [webapp]\n"), "{platform}");
    let deploy =
        e.h.remote
            .read_file(&gov.head_sha, "catalog/webapp/deploy.sh")
            .unwrap();
    assert!(
        deploy.contains("adoption must not run me"),
        "copied from --catalog as it is"
    );
    // Again while it is open: no second pull request.
    assert_eq!(
        import(&e, &dc, &opts).await,
        Outcome::AlreadyOpen { url: url.clone() }
    );
    // Closed without a merge, that import is over: the next one opens a new pull request.
    e.h.github.set_pull(
        REPO,
        gov.number,
        json!({"state": "closed", "merged": false}),
    );
    let Outcome::Governance { url: again } = import(&e, &dc, &opts).await else {
        panic!("expected a new governance pull request");
    };
    assert_ne!(again, url);
    let gov = pull_of(&e, &again);
    e.merge(&gov).await;

    // 2. The environments: their manifests pass the checks, and merging adopts them.
    let Outcome::Environments { url, adopted } = import(&e, &dc, &opts).await else {
        panic!("expected the environments pull request");
    };
    assert_eq!(adopted, 1);
    let envs = pull_of(&e, &url);
    let body = e.h.github.pull(REPO, envs.number).unwrap()["body"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        body.contains("`shop-dev` (devtest from webapp, owner @octocat)"),
        "{body}"
    );
    assert!(!body.contains("hunter2"), "{body}");
    e.h.send_pr(&envs).await;
    let verdicts = e.h.verdicts(&envs.head_sha, 3).await;
    for c in ["paved/schema", "paved/policy", "paved/quota"] {
        assert_eq!(verdicts[c].state, "success", "{c}: {verdicts:?}");
    }
    let (merge, _) = e.merge(&envs).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let ops = e.operations(&merge).await;
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0]["kind"], "adopt", "{ops:?}");
    assert_eq!(ops[0]["state"], "succeeded", "{ops:?}");
    let log = ops[0]["log"].as_str().unwrap_or_default();
    assert!(
        log.contains("no script ran") && !log.contains("must not run me"),
        "{log}"
    );
    let detail = e.environment("shop-dev").await;
    assert_eq!(detail["environment"]["state"], "ready", "{detail:#}");
    assert_eq!(
        detail["environment"]["outputs"]["url"]["value"], "https://shop-dev.example.net",
        "{detail:#}"
    );
    assert!(
        !detail.to_string().contains("hunter2-very-secret"),
        "{detail:#}"
    );
    let notes = e.notes(&merge);
    assert!(notes.iter().any(|n| n.operation == "adopt"), "{notes:?}");

    let comments: Vec<String> =
        e.h.comments(envs.number)
            .into_iter()
            .map(|c| c.body)
            .collect();
    assert!(
        comments.iter().all(|c| !c.contains("hunter2")),
        "{comments:?}"
    );

    // 3. Again: everything is Paved's; nothing opened, nothing adopted twice.
    assert_eq!(import(&e, &dc, &opts).await, Outcome::Nothing);

    // 4. From now on it is Paved's like any other: deleting its manifest runs its
    //    definition's delete.sh (copied from the ADE catalog).
    let gone = e.open(&[("environments/payments/shop-dev.yaml".into(), None)]);
    let (merge, _) = e.merge(&gone).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");
    let ops = e.operations(&merge).await;
    assert_eq!(
        (ops[0]["kind"].as_str(), ops[0]["state"].as_str()),
        (Some("delete"), Some("succeeded")),
        "{ops:?}"
    );
    assert_eq!(
        e.environment("shop-dev").await["environment"]["state"],
        "deleted"
    );
    assert!(dc.writes().is_empty() && dc.rejected().is_empty());
}
