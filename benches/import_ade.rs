//! `paved import ade` of a project with 500 live environments (SPEC 15): the wall time to
//! read it from the DevCenter emulator (pages of 100, outputs of each environment), map it,
//! check the 500 manifests with the pull request's own checks and push them as one commit
//! for the team, and open the pull request. Run with `cargo bench --bench import_ade`.
//!
//! Everything is real but ADE and GitHub (their strict emulators): Paved's store (SQLite
//! file), the Git repository it pushes to (file://), the checks.

#[path = "support/setup.rs"]
mod setup;
use setup::SECRET;

use devcenter_emulator::DevCenter;
use github_emulator::Emulator;
use paved::ids::RepoName;
use paved::import::ade::{self, client::Credentials, write::Outcome, ImportOptions};
use paved_testkit::{self as testkit, FileChange, GitRemote};
use serde_json::json;
use std::time::{Duration, Instant};

const ENVIRONMENTS: usize = 500;
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0a1b2c3d-0000-4000-8000-00000000c11e";

/// The examples repository, with a team that has room and the ADE type already governed
/// (the governance pull request merged), so the import opens the environments one.
fn base_files() -> anyhow::Result<Vec<FileChange>> {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut platform = std::fs::read_to_string(examples.join(".paved/platform.yaml"))?;
    platform = platform.replacen(
        "teams:\n",
        "teams:\n  imported:\n    members: [octocat]\n    quota:\n      environments: 100000\n",
        1,
    );
    platform = platform.replacen(
        "environmentTypes:\n",
        "environmentTypes:\n  devtest:\n    workflow: default\n    definitions: [webapp]\n",
        1,
    );
    let mut files: Vec<FileChange> = GitRemote::files_of(&examples)?
        .into_iter()
        .filter(|(p, _)| !p.starts_with("environments/"))
        .collect();
    files.push((".paved/platform.yaml".into(), Some(platform.into_bytes())));
    files.push((
        "catalog/webapp/environment.yaml".into(),
        Some(b"name: webapp\nrunner: command\nparameters:\n  - id: size\n    type: string\n    allowed: [small, large]\n".to_vec()),
    ));
    Ok(files)
}

async fn devcenter() -> anyhow::Result<DevCenter> {
    let dc = DevCenter::start().await?;
    dc.add_client_secret(TENANT, CLIENT, "bench-secret-value");
    dc.add_environment_type("contoso", "DevTest", "Enabled");
    dc.add_catalog(
        "contoso",
        "main",
        vec![json!({"name": "webapp", "parameters": [
            {"id": "size", "type": "string", "required": false, "allowed": ["small", "large"]}]})],
    );
    for i in 0..ENVIRONMENTS {
        dc.add_environment(
            "contoso",
            json!({"name": format!("env-{i:04}"), "user": "b08e39b4-2ac6-4465-a35e-48322efb0f98",
                   "environmentType": "DevTest", "catalogName": "main",
                   "environmentDefinitionName": "webapp", "provisioningState": "Succeeded",
                   "parameters": {"size": "small"}, "expirationDate": "2027-03-01T17:00:00Z"}),
            json!({"outputs": {"url": {"type": "string", "value": format!("https://env-{i}.example.net"), "sensitive": false}}}),
        );
    }
    Ok(dc)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list") {
        println!("import_ade: bench");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let github = Emulator::start_with(github_emulator::EmulatorConfig {
        git_root: Some(tmp.path().join("git")),
        ..Default::default()
    })
    .await?;
    let repo = RepoName::parse("bench/environments")?;
    let remote = GitRemote::create(&tmp.path().join("git"), &repo)?;
    let base = remote.commit("refs/heads/main", None, &base_files()?, "base")?;
    let data = tmp.path().join("data");
    let config = setup::config(
        github.url(),
        remote.clone_url_template(),
        &data,
        "bench/environments",
    );
    let service = paved::service::start(config.clone()).await?;
    // Paved learns of the repository from a webhook.
    let spec = remote.open_pull(1, &base, &base, &[], "hello")?;
    github.set_pull(&repo.to_string(), 1, testkit::pull_json(&spec)?);
    let client = reqwest::Client::new();
    let status = testkit::post_webhook(
        &client,
        &service.url(),
        "pull_request",
        "import-bench-hello",
        SECRET,
        testkit::pull_request_payload(&spec)?,
    )
    .await?;
    anyhow::ensure!(status == 202, "webhook answered {status}");
    let mirrors = tempfile::tempdir()?;
    let orch = paved::service::orchestrator(config, mirrors.path()).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while orch.store.repository(&repo).await?.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Paved never learnt of the repository"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let dc = devcenter().await?;
    let users = tmp.path().join("users.csv");
    std::fs::write(&users, "b08e39b4-2ac6-4465-a35e-48322efb0f98,octocat\n")?;
    let opts = ImportOptions {
        endpoint: dc.url(),
        project: "contoso".into(),
        repository: repo.to_string(),
        team: "imported".into(),
        users: Some(users),
        tags: vec!["cost-center=cc-1234".into()],
        type_map: vec![],
        catalog: None,
        dry_run: false,
    };
    let credentials = Credentials::from_env(|k| match k {
        "AZURE_TENANT_ID" => Some(TENANT.into()),
        "AZURE_CLIENT_ID" => Some(CLIENT.into()),
        "AZURE_CLIENT_SECRET" => Some("bench-secret-value".into()),
        "AZURE_AUTHORITY_HOST" => Some(dc.authority()),
        _ => None,
    })?;
    let start = Instant::now();
    let (project, mapping) = ade::plan(&opts, &credentials).await?;
    let read = start.elapsed();
    let outcome = ade::write::open(&orch, &repo, "ade:bench", &project, &mapping).await?;
    let total = start.elapsed();
    let Outcome::Environments { adopted, .. } = outcome else {
        anyhow::bail!("expected the environments pull request, got {outcome:?}");
    };
    anyhow::ensure!(adopted == ENVIRONMENTS, "adopted {adopted}");
    anyhow::ensure!(dc.rejected().is_empty() && github.rejected().is_empty());
    println!("import of an ADE project with {ENVIRONMENTS} environments (emulators on loopback):");
    println!(
        "  read and map ({} data-plane requests): {:>8.2?}",
        dc.requests().len(),
        read
    );
    println!(
        "  check, commit, push, open the PR:     {:>8.2?}",
        total - read
    );
    println!("  total wall:                           {total:>8.2?}  (target: under 30 s)");
    service.shutdown().await?;
    Ok(())
}
