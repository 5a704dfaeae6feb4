//! `paved import ade` (SPEC 15) against the strict DevCenter and Entra emulator: what it
//! reads, how it maps, what it leaves out and why, and how it fails.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

#[path = "import_ade/adopt.rs"]
mod adopt;

use devcenter_emulator::DevCenter;
use serde_json::json;
use std::process::Output;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0a1b2c3d-0000-4000-8000-00000000c11e";
const SECRET: &str = "import-s3cret-value";
const ALICE: &str = "b08e39b4-2ac6-4465-a35e-48322efb0f98";
const BOB: &str = "cf849cb0-3a05-4059-84b4-40c16abb1e93";

fn env(name: &str, user: &str, state: &str, params: serde_json::Value) -> serde_json::Value {
    json!({
        "name": name, "user": user, "environmentType": "DevTest", "catalogName": "main",
        "environmentDefinitionName": "webapp", "provisioningState": state,
        "parameters": params, "expirationDate": "2027-03-01T17:00:00+00:00",
        "resourceGroupId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/rg1",
    })
}

/// A project with a definition `webapp` (a `size` of small or large) and environments of
/// every kind the import meets.
async fn project() -> DevCenter {
    let dc = DevCenter::start().await.unwrap();
    dc.add_client_secret(TENANT, CLIENT, SECRET);
    dc.add_environment_type("contoso", "DevTest", "Enabled");
    dc.add_catalog(
        "contoso",
        "main",
        vec![json!({"name": "webapp", "templatePath": "webapp/main.tf", "parameters": [
            {"id": "size", "name": "Size", "type": "string", "required": true, "allowed": ["small", "large"], "default": "small"},
            {"id": "replicas", "name": "Replicas", "type": "integer", "required": false, "default": "1"},
        ]})],
    );
    let outputs = json!({"outputs": {
        "url": {"type": "string", "value": "https://shop-dev.example.net", "sensitive": false},
        "password": {"type": "string", "value": "hunter2-very-secret", "sensitive": true},
    }});
    dc.add_environment(
        "contoso",
        env(
            "shop-dev",
            ALICE,
            "Succeeded",
            json!({"size": "large", "replicas": "3"}),
        ),
        outputs,
    );
    dc.add_environment(
        "contoso",
        env("Shop_Old", ALICE, "Succeeded", json!({"size": "small"})),
        json!({"outputs": {}}),
    );
    dc.add_environment(
        "contoso",
        env("bobs-env", BOB, "Succeeded", json!({"size": "small"})),
        json!({"outputs": {}}),
    );
    dc.add_environment(
        "contoso",
        env("broken", ALICE, "Failed", json!({"size": "small"})),
        json!({"outputs": {}}),
    );
    dc.add_environment(
        "contoso",
        env("going", ALICE, "Deleting", json!({"size": "small"})),
        json!({"outputs": {}}),
    );
    dc.add_environment(
        "contoso",
        env("too-big", ALICE, "Succeeded", json!({"size": "huge"})),
        json!({"outputs": {}}),
    );
    dc.set_page_size(2);
    dc
}

fn users_file(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("users.csv");
    std::fs::write(
        &path,
        format!("# Entra object id, GitHub login\n{ALICE},alice\n"),
    )
    .unwrap();
    path
}

fn import(dc: &DevCenter, endpoint: &str, args: &[&str], secret: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args([
            "import",
            "ade",
            "--endpoint",
            endpoint,
            "--repository",
            "acme/envs",
            "--team",
            "payments",
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AZURE_TENANT_ID", TENANT)
        .env("AZURE_CLIENT_ID", CLIENT)
        .env("AZURE_CLIENT_SECRET", secret)
        .env("AZURE_AUTHORITY_HOST", dc.authority())
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_manifests_and_why_the_rest_is_left_out() {
    let dc = project().await;
    let tmp = tempfile::tempdir().unwrap();
    let users = users_file(tmp.path());
    // ADE throttles once on the way: the import waits as Retry-After says.
    dc.throttle_next(1, 1);
    let o = import(
        &dc,
        &dc.url(),
        &[
            "--project",
            "contoso",
            "--users",
            users.to_str().unwrap(),
            "--tag",
            "cost-center=cc-42",
            "--dry-run",
        ],
        SECRET,
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("--- environments/payments/shop-dev.yaml"),
        "{out}"
    );
    let manifest = out
        .split("--- environments/payments/shop-dev.yaml\n")
        .nth(1)
        .unwrap();
    for line in [
        "  name: shop-dev\n",
        "  team: payments\n",
        "  owner: alice\n",
        "  type: devtest\n",
        "  definition: webapp\n",
        "    size: \"large\"\n",
        "    replicas: 3\n",
        "  expiresAt: 2027-03-01T17:00:00Z\n",
        "    cost-center: \"cc-42\"\n",
    ] {
        assert!(
            manifest.contains(line),
            "{line:?} missing from:\n{manifest}"
        );
    }
    // A definition from the API alone has no scripts, and the report says so.
    assert!(out.contains("--- catalog/webapp/environment.yaml"), "{out}");
    assert!(out.contains("Definitions without scripts"), "{out}");
    assert!(
        out.contains("1 environment(s) adopted, 5 left out"),
        "{out}"
    );
    for (name, why) in [
        ("Shop_Old", "is not a DNS label"),
        ("bobs-env", &format!("its owner {BOB} is not in --users")),
        ("broken", "last ADE operation failed"),
        ("going", "ADE is deleting it"),
        (
            "too-big",
            "refuses parameter size: 'huge' is not one of small, large",
        ),
    ] {
        assert!(
            out.contains(&format!("- `{name}`: ")) && out.contains(why),
            "{name}: {why}\n{out}"
        );
    }
    assert!(
        !out.contains("hunter2-very-secret"),
        "a sensitive output was printed"
    );
    assert!(out.contains("nothing was pushed"));
    // An ADE type may be mapped to a Paved type of another name.
    let o = import(
        &dc,
        &dc.url(),
        &[
            "--project",
            "contoso",
            "--users",
            users.to_str().unwrap(),
            "--type-map",
            "DevTest=dev",
            "--dry-run",
        ],
        SECRET,
    );
    let (mapped, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        mapped.contains("  type: dev\n") && !mapped.contains("devtest"),
        "{mapped}"
    );
    // Read-only, strict: every request was one the description allows.
    assert!(dc.writes().is_empty(), "{:?}", dc.writes());
    assert!(dc.rejected().is_empty(), "{:?}", dc.rejected());
    assert!(
        dc.response_schema_errors().is_empty(),
        "{:?}",
        dc.response_schema_errors()
    );
    let reqs = dc.requests();
    assert!(reqs.iter().any(|r| r.status == 429), "the throttle was met");
    // Pages of two: the environments list took three requests in each of the two imports.
    let pages = reqs
        .iter()
        .filter(|r| {
            r.operation_id.as_deref() == Some("Environments_ListEnvironments") && r.status == 200
        })
        .count();
    assert_eq!(pages, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_a_missing_project_and_an_unreadable_page_fail_clearly() {
    let dc = project().await;
    let tmp = tempfile::tempdir().unwrap();
    let users = users_file(tmp.path());
    let users = users.to_str().unwrap();

    let o = import(
        &dc,
        &dc.url(),
        &["--project", "contoso", "--users", users, "--dry-run"],
        "wrong-secret",
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(
        err.contains("refused the sign-in (401 Unauthorized)")
            && err.contains("invalid client secret"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");

    let o = import(
        &dc,
        &dc.url(),
        &["--project", "nowhere", "--users", users, "--dry-run"],
        SECRET,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("project nowhere")
            && err.contains("answered 404")
            && err.contains("project nowhere was not found"),
        "{err}"
    );

    // A project name ADE cannot have: refused before anything is asked of Entra or ADE.
    let before = dc.requests().len();
    let o = import(
        &dc,
        &dc.url(),
        &["--project", "../x", "--users", users, "--dry-run"],
        SECRET,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("is not an ADE project name"), "{err}");
    assert_eq!(dc.requests().len(), before);

    // An endpoint where nothing listens.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let o = import(
        &dc,
        &closed,
        &["--project", "contoso", "--users", users, "--dry-run"],
        SECRET,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("could not be reached"), "{err}");

    // An endpoint that answers something other than the data plane's JSON.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { "<html>maintenance</html>" });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let o = import(
        &dc,
        &garbage,
        &["--project", "contoso", "--users", users, "--dry-run"],
        SECRET,
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("not the data plane's JSON"), "{err}");
    assert!(dc.writes().is_empty());
}

/// Signed in without a secret: Entra takes a token Paved's own issuer signed, for the
/// subject and audience of the app's federated credential (the issuer's keys fetched from
/// the running Paved's discovery document and JWKS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_paveds_issuer_signed_signs_the_import_in() {
    use paved::oidc::{Issuer, RunClaims};
    // Paved's public address is where it listens, so Entra can fetch its keys.
    let e = common::provisioning::Env::start_with(|c| c.public_url = None).await;
    let issuer_url = e.h.url();
    let mut config = e.h.config();
    config.public_url = Some(issuer_url.clone());
    let store = paved::service::open_store(&config).await.unwrap();
    let issuer = Issuer::new(
        store,
        &issuer_url,
        std::time::Duration::from_secs(30 * 24 * 3600),
        paved::clock::Clock::system(),
    );
    let claims = RunClaims {
        audience: "api://AzureADTokenExchange".into(),
        repository: "acme/envs".into(),
        environment: "ade-import".into(),
        team: "platform".into(),
        env_type: "dev".into(),
        definition: "import".into(),
        operation: "deploy".into(),
        run_id: 1,
        requester: "admin1".into(),
        approvers: vec![],
        governance_sha: "0".repeat(40),
        commit: "1".repeat(40),
    };
    let token = issuer
        .mint(&claims, std::time::Duration::from_secs(600))
        .await
        .unwrap();
    let dc = project().await;
    dc.add_federated_credential(
        TENANT,
        CLIENT,
        devcenter_emulator::FederatedCredential {
            issuer: issuer_url.clone(),
            subject: claims.subject(),
            audience: "api://AzureADTokenExchange".into(),
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, &token.jwt).unwrap();
    let users = users_file(tmp.path());
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
            .args([
                "import",
                "ade",
                "--endpoint",
                &dc.url(),
                "--repository",
                "acme/envs",
            ])
            .args(["--team", "payments", "--project", "contoso", "--dry-run"])
            .args(["--users", users.to_str().unwrap()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT)
            .env("AZURE_FEDERATED_TOKEN_FILE", file)
            .env("AZURE_AUTHORITY_HOST", dc.authority())
            .output()
            .unwrap()
    };
    let o = run(&token_file);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("1 environment(s) adopted"), "{out}");
    // A token for another subject is refused by Entra, and the import stops there.
    let other = issuer
        .mint(
            &RunClaims {
                environment: "someone-else".into(),
                ..claims.clone()
            },
            std::time::Duration::from_secs(600),
        )
        .await
        .unwrap();
    std::fs::write(&token_file, &other.jwt).unwrap();
    let o = run(&token_file);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(
        err.contains("invalid_client") || err.contains("not valid for the federated credential"),
        "{err}"
    );
    assert!(dc.rejected().iter().all(|r| r.target.contains("/oauth2/")));
}
