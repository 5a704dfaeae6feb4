//! A deploy identity per environment type, and Paved as an OpenID Connect issuer (SPEC 13):
//! each run gets its own type's identity and nothing of another's, and its token verifies
//! with an independent JWT library against the discovery document and keys Paved serves
//! over HTTP.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::{path_of, recorder_manifest};
use common::{Harness, REPO};
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use paved::config::{AwsIdentity, AzureIdentity, Identity, Secret};
use serde_json::Value;
use std::collections::BTreeMap;

const DEV_KEY: &str = "dev-key-0123456789";
const PROD_KEY: &str = "prod-key-9876543210";
const ISSUER: &str = "http://paved.test";

/// `dev` runs as `dev-deployer`, `prod` (which may use the recorder here) as
/// `prod-deployer`.
fn with_identities(text: String) -> String {
    let text = text
        .replace(
            "    timeout: 30m\n",
            "    timeout: 30m\n    identity: dev-deployer\n",
        )
        .replace(
            "    definitions: [postgres-db]\n    requiredTags: [cost-center]\n",
            "    definitions: [postgres-db, recorder]\n    requiredTags: [cost-center]\n    identity: prod-deployer\n",
        );
    assert!(
        text.contains("identity: prod-deployer"),
        "platform.yaml changed shape"
    );
    text
}

fn identities() -> BTreeMap<String, Identity> {
    let dev = Identity {
        name: "dev-deployer".into(),
        env: vec![("DEV_API_KEY".into(), Secret::new(DEV_KEY))],
        vars: vec![("REGION".into(), "eu-dev".into())],
        oidc_audience: Some("sts.amazonaws.com/dev".into()),
        azure: Some(AzureIdentity {
            client_id: "11111111-dev".into(),
            tenant_id: "tenant-dev".into(),
            subscription_id: Some("sub-dev".into()),
            resource_group: Some("rg-{team}-{name}-{type}".into()),
            location: Some("westeurope".into()),
        }),
        aws: Some(AwsIdentity {
            role_arn: "arn:aws:iam::123456789012:role/paved-dev".into(),
        }),
        gcp: None,
    };
    let prod = Identity {
        name: "prod-deployer".into(),
        env: vec![("PROD_API_KEY".into(), Secret::new(PROD_KEY))],
        vars: Vec::new(),
        oidc_audience: Some("api://prod".into()),
        azure: None,
        aws: Some(AwsIdentity {
            role_arn: "arn:aws:iam::123456789012:role/paved-prod".into(),
        }),
        gcp: None,
    };
    BTreeMap::from([(dev.name.clone(), dev), (prod.name.clone(), prod)])
}

/// The discovery document and the JWKS it names, fetched over HTTP from `base` (the
/// issuer's own host is `paved.test`; its path is kept).
async fn published_keys(client: &reqwest::Client, base: &str) -> (Value, JwkSet) {
    let discovery: Value = client
        .get(format!("{base}/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery json");
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    let path = jwks_uri
        .strip_prefix(ISSUER)
        .expect("jwks_uri under the issuer");
    let r = client
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("jwks");
    assert!(r.status().is_success(), "jwks: {}", r.status());
    (discovery, r.json().await.expect("jwks json"))
}

/// Verifies `token` (signature, `iss`, `aud`, `exp`) with `jsonwebtoken`, an independent
/// JWT library, against `keys`.
fn verify(token: &str, keys: &JwkSet, audience: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = keys
        .find(&kid)
        .ok_or(format!("kid {kid} is not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// The recorder's run for environment `name`.
fn run_of(env: &Env, name: &str) -> common::provisioning::Run {
    env.runs()
        .into_values()
        .find(|r| r.env.get("ADE_ENVIRONMENT_NAME").map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no run of {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_type_runs_with_its_own_identity_and_a_token_that_verifies() {
    let env = Env::prepare_platform(with_identities, |_, _| {})
        .await
        .run_with(|c| c.runner.identities = identities())
        .await;

    let dev = env.open(&[(
        path_of("idev"),
        Some(recorder_manifest("idev", "dev", "ok", "").into_bytes()),
    )]);
    let (dev_merge, _) = env.merge(&dev).await;
    assert_eq!(env.provision_status(&dev_merge).await.state, "success");

    let prod = env.open(&[(
        path_of("iprod"),
        Some(recorder_manifest("iprod", "prod", "ok", "").into_bytes()),
    )]);
    env.h.github.set_pull_reviews(
        REPO,
        prod.number,
        ["admin1", "admin2"]
            .iter()
            .map(|u| {
                serde_json::json!({"user": {"login": u}, "state": "APPROVED",
                                   "commit_id": prod.head_sha.as_str()})
            })
            .collect(),
    );
    let (prod_merge, _) = env.merge(&prod).await;
    assert_eq!(env.provision_status(&prod_merge).await.state, "success");

    let (d, p) = (run_of(&env, "idev"), run_of(&env, "iprod"));
    // Each run has its own type's secrets and settings, and nothing of the other's.
    assert_eq!(d.env.get("DEV_API_KEY").map(String::as_str), Some(DEV_KEY));
    assert_eq!(d.env.get("REGION").map(String::as_str), Some("eu-dev"));
    assert!(!d.env.contains_key("PROD_API_KEY"), "dev got prod's secret");
    assert_eq!(
        p.env.get("PROD_API_KEY").map(String::as_str),
        Some(PROD_KEY)
    );
    assert!(!p.env.contains_key("DEV_API_KEY"), "prod got dev's secret");
    assert!(!p.env.contains_key("REGION"), "prod got dev's variables");
    for (run, role) in [(&d, "paved-dev"), (&p, "paved-prod")] {
        let token_file = run.env.get("PAVED_OIDC_TOKEN_FILE").expect("token file");
        assert_eq!(run.env.get("AWS_WEB_IDENTITY_TOKEN_FILE"), Some(token_file));
        assert_eq!(
            run.env.get("AWS_ROLE_ARN").map(String::as_str),
            Some(format!("arn:aws:iam::123456789012:role/{role}").as_str())
        );
    }
    // The Azure identity of dev: the SDKs' variables, Terraform's, and ADE's.
    for (k, v) in [
        ("AZURE_CLIENT_ID", "11111111-dev"),
        ("AZURE_TENANT_ID", "tenant-dev"),
        ("ARM_USE_OIDC", "true"),
        ("ADE_CLIENT_ID", "11111111-dev"),
        ("ADE_TENANT_ID", "tenant-dev"),
        ("ADE_SUBSCRIPTION_ID", "sub-dev"),
        ("ADE_RESOURCE_GROUP_NAME", "rg-payments-idev-dev"),
        ("ADE_ENVIRONMENT_LOCATION", "westeurope"),
    ] {
        assert_eq!(d.env.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(
        d.env.get("AZURE_FEDERATED_TOKEN_FILE"),
        d.env.get("PAVED_OIDC_TOKEN_FILE")
    );
    assert_eq!(
        d.env.get("ADE_HTTP__OPERATIONID"),
        d.env.get("PAVED_RUN_ID")
    );
    assert!(
        !p.env.contains_key("AZURE_CLIENT_ID"),
        "prod has no Azure identity"
    );

    // The tokens verify against what Paved publishes, without any identity of Paved's.
    let anonymous = reqwest::Client::new();
    let (discovery, keys) = published_keys(&anonymous, &env.h.url()).await;
    assert_eq!(discovery["issuer"], ISSUER);
    let dev_token = d.token.as_deref().expect("dev's token").trim();
    let prod_token = p.token.as_deref().expect("prod's token").trim();
    let claims = verify(dev_token, &keys, "sts.amazonaws.com/dev").expect("dev's token verifies");
    let run_id = d.env["PAVED_RUN_ID"].clone();
    assert_eq!(
        claims["sub"],
        format!("repo:{REPO}:environment:payments/idev:type:dev:operation:deploy")
    );
    for (k, v) in [
        ("repository", REPO),
        ("environment", "idev"),
        ("team", "payments"),
        ("type", "dev"),
        ("definition", "recorder"),
        ("operation", "deploy"),
        ("run_id", run_id.as_str()),
        ("requester", dev.author.as_str()),
        ("commit", dev_merge.as_str()),
    ] {
        assert_eq!(claims[k], v, "claim {k}");
    }
    assert!(claims["governance_sha"]
        .as_str()
        .is_some_and(|s| s.len() == 40));
    assert!(claims["jti"].as_str().is_some_and(|s| !s.is_empty()));
    // `exp` is the type's 30m timeout from issue.
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 30 * 60);

    // Prod's token is prod's: its audience and subject, never dev's.
    let prod_claims = verify(prod_token, &keys, "api://prod").expect("prod's token verifies");
    assert!(prod_claims["sub"]
        .as_str()
        .unwrap()
        .ends_with("environment:payments/iprod:type:prod:operation:deploy"));
    assert!(prod_claims["approvers"]
        .as_array()
        .is_some_and(|a| a.len() == 2));
    assert!(
        verify(dev_token, &keys, "api://prod").is_err(),
        "dev's token must not pass for prod's audience"
    );
    assert!(verify(prod_token, &keys, "sts.amazonaws.com/dev").is_err());
    // A forged signature fails.
    let mut forged = dev_token.to_string();
    forged.pop();
    forged.push(if dev_token.ends_with('A') { 'B' } else { 'A' });
    assert!(verify(&forged, &keys, "sts.amazonaws.com/dev").is_err());

    // Secrets never leave: not in the operation's log, nor in the API's answers.
    let detail = env.environment("idev").await;
    assert_eq!(detail["identity"], "dev-deployer", "{detail:#}");
    let text = detail.to_string();
    for secret in [DEV_KEY, dev_token] {
        assert!(!text.contains(secret), "a secret in the API's answer");
    }
    // The Graph names it too: the type's entity.
    let dev_type = env
        .get(&format!("/api/v1/entities/environmentType:{REPO}/dev"))
        .await;
    let dev_type = &dev_type["entity"];
    assert_eq!(dev_type["identity"], "dev-deployer");
}

/// A governance pull request naming an identity the server does not define fails
/// `paved/schema`, naming the field and line; a manifest of a type whose identity is
/// missing fails it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_the_server_lacks_fails_the_schema_check() {
    let env = Env::prepare_platform(with_identities, |_, _| {})
        .await
        .run_with(|c| {
            c.runner.identities = identities();
            c.runner.identities.remove("prod-deployer");
        })
        .await;
    let platform = std::fs::read_to_string(common::examples_dir().join(".paved/platform.yaml"))
        .expect("platform.yaml");
    let changed = with_identities(platform.replace(
        "definitions: [postgres-db, static-site]",
        "definitions: [postgres-db, static-site, recorder]",
    ))
    .replace("identity: dev-deployer", "identity: dev-deployr");
    let line = changed
        .lines()
        .position(|l| l.contains("identity: dev-deployr"))
        .expect("line")
        + 1;
    let gov = env.open(&[(".paved/platform.yaml".into(), Some(changed.into_bytes()))]);
    env.h.send_pr(&gov).await;
    let verdicts = env.h.verdicts(&gov.head_sha, 2).await;
    let schema = &verdicts["paved/schema"];
    assert_eq!(schema.state, "failure", "{schema:?}");
    let description = schema.description.clone().unwrap_or_default();
    assert!(
        description
            .contains("environmentTypes.dev.identity: identity \"dev-deployr\" is not defined"),
        "{description}"
    );
    let n = gov.number;
    env.h
        .github
        .wait_until(common::DEADLINE, "the summary comment", move |gh| {
            !gh.comments(REPO, n).is_empty()
        })
        .await
        .expect("comment");
    let comment = env
        .h
        .comments(gov.number)
        .last()
        .map(|c| c.body.clone())
        .unwrap_or_default();
    assert!(
        comment.contains(&format!(".paved/platform.yaml:{line}")),
        "the comment names the file and line {line}: {comment}"
    );

    // prod names prod-deployer, which this server lacks: a prod manifest fails.
    let prod = env.open(&[(
        path_of("iprod"),
        Some(recorder_manifest("iprod", "prod", "ok", "").into_bytes()),
    )]);
    env.h.send_pr(&prod).await;
    let verdicts = env.h.verdicts(&prod.head_sha, 2).await;
    assert_eq!(verdicts["paved/schema"].state, "failure");
    let description = verdicts["paved/schema"]
        .description
        .clone()
        .unwrap_or_default();
    assert!(
        description.contains("uses identity \"prod-deployer\""),
        "{description}"
    );
}

/// Rotation: the next key is published before it signs, new tokens use it, and a token the
/// old key signed verifies until it expires; then the old key goes.
#[tokio::test]
async fn after_a_rotation_old_tokens_verify_until_they_expire() {
    use paved::oidc::{Issuer, RunClaims, MAX_TOKEN_LIFETIME, PUBLISH_LEAD, SKEW};
    let h = Harness::prepare(&[]).await;
    let config = h.config();
    std::fs::create_dir_all(&config.data_dir).expect("data dir");
    let store = paved::service::open_store(&config).await.expect("store");
    let start = chrono::Utc::now();
    let clock = paved::clock::Clock::manual(start);
    let every = std::time::Duration::from_secs(30 * 24 * 3600);
    let issuer = Issuer::new(store, ISSUER, every, clock.clone());
    let claims = RunClaims {
        audience: "aud".into(),
        repository: REPO.into(),
        environment: "e".into(),
        team: "t".into(),
        env_type: "dev".into(),
        definition: "d".into(),
        operation: "deploy".into(),
        run_id: 1,
        requester: "octocat".into(),
        approvers: vec![],
        governance_sha: "0".repeat(40),
        commit: "1".repeat(40),
    };
    let jwks = |body: bytes::Bytes| -> JwkSet { serde_json::from_slice(&body).expect("jwks") };
    let hour = std::time::Duration::from_secs(3600);

    let old = issuer.mint(&claims, hour).await.expect("mint");
    assert!(verify(&old.jwt, &jwks(issuer.jwks().await.unwrap()), "aud").is_ok());

    // 30 days on: the next key is made and published, but the old one still signs.
    clock.advance(chrono::Duration::days(30));
    let still_old = issuer.mint(&claims, hour).await.expect("mint");
    assert_eq!(still_old.kid, old.kid);
    let published = jwks(issuer.jwks().await.unwrap());
    assert_eq!(
        published.keys.len(),
        2,
        "the next key is published before it signs"
    );

    // After the lead, new tokens use the new key; the old token still verifies.
    clock.advance(chrono::Duration::from_std(PUBLISH_LEAD).unwrap() + chrono::Duration::seconds(1));
    let new = issuer.mint(&claims, hour).await.expect("mint");
    assert_ne!(new.kid, old.kid, "new tokens use the new key");
    let published = jwks(issuer.jwks().await.unwrap());
    assert!(verify(&new.jwt, &published, "aud").is_ok());
    assert!(
        published.find(&old.kid).is_some(),
        "the old key stays while its tokens live"
    );

    // Once every token the old key signed has expired, it is gone.
    clock.advance(
        chrono::Duration::from_std(MAX_TOKEN_LIFETIME + SKEW).unwrap()
            + chrono::Duration::seconds(1),
    );
    let _ = issuer.mint(&claims, hour).await.expect("mint");
    let published = jwks(issuer.jwks().await.unwrap());
    assert!(
        published.find(&old.kid).is_none(),
        "the retired key is gone"
    );
    assert!(published.find(&new.kid).is_some());
}

/// Two replicas on one PostgreSQL database: a token a run got on one verifies with the
/// keys the other serves.
#[cfg_attr(
    not(paved_postgres),
    ignore = "needs PostgreSQL: set PAVED_TEST_DATABASE_URL (script/test does)"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_on_one_replica_verifies_with_the_others_keys() {
    let server = common::postgres_server()
        .expect("PAVED_TEST_DATABASE_URL is set: the test is ignored without it");
    let mut env = Env::prepare_platform(with_identities, |_, _| {}).await;
    env.h.database = Some(common::TestDatabase::create(&server).await);
    let env = env.run_with(|c| c.runner.identities = identities()).await;
    let mut other_config = env.h.config();
    other_config.data_dir = env.h.tmp.path().join("replica-b");
    other_config.runner.identities = identities();
    // Either replica may claim the merge: both give runs the record server's address.
    env.report_to(&mut other_config);
    let other = paved::service::start(other_config)
        .await
        .expect("replica b");

    let dev = env.open(&[(
        path_of("rdev"),
        Some(recorder_manifest("rdev", "dev", "ok", "").into_bytes()),
    )]);
    let (merge, _) = env.merge(&dev).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");
    let token = run_of(&env, "rdev").token.expect("token");
    // Whichever replica ran it, the token verifies with the keys each of them serves.
    for url in [other.url(), env.h.url()] {
        let (_, keys) = published_keys(&reqwest::Client::new(), &url).await;
        verify(token.trim(), &keys, "sts.amazonaws.com/dev")
            .unwrap_or_else(|e| panic!("does not verify with {url}'s keys: {e}"));
    }
    other.shutdown().await.expect("stop replica b");
}

/// A drift check gets a token of its own, its `operation` `drift`; so does a scheduled
/// job (an expiry: `expire`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drift_check_and_a_scheduled_job_get_their_own_tokens() {
    // The recorder with a status.sh that reports the token it was given.
    let status = "#!/bin/sh
set -eu
curl -sfS --noproxy '*' -X PUT --data-binary @\"$PAVED_OIDC_TOKEN_FILE\" \"$RECORD_URL/drift.token\" >/dev/null
echo in sync
";
    let clock = paved::clock::Clock::manual(chrono::Utc::now());
    let c2 = clock.clone();
    let env = Env::prepare_platform_files(
        with_identities,
        vec![(
            "catalog/recorder/status.sh".into(),
            Some(status.as_bytes().to_vec()),
        )],
    )
    .await
    .run_with(move |c| {
        c.runner.identities = identities();
        c.lifecycle.clock = c2;
        c.lifecycle.tick = std::time::Duration::from_secs(1);
        c.lifecycle.drift_interval = std::time::Duration::from_secs(6 * 3600);
    })
    .await;
    let pr = env.open(&[(
        path_of("ddev"),
        Some(recorder_manifest("ddev", "dev", "ok", "").into_bytes()),
    )]);
    let (merge, _) = env.merge(&pr).await;
    assert_eq!(env.provision_status(&merge).await.state, "success");

    clock.advance(chrono::Duration::hours(6));
    let file = env.records.join("drift.token");
    common::eventually("a drift check ran", async || file.exists().then_some(())).await;
    let token = std::fs::read_to_string(&file).expect("token");
    let (_, keys) = published_keys(&reqwest::Client::new(), &env.h.url()).await;
    let claims = verify(token.trim(), &keys, "sts.amazonaws.com/dev").expect("verifies");
    assert_eq!(claims["operation"], "drift");
    assert_eq!(
        claims["sub"],
        format!("repo:{REPO}:environment:payments/ddev:type:dev:operation:drift")
    );
    let deploy = run_of(&env, "ddev").token.expect("the deploy's token");
    assert_ne!(deploy.trim(), token.trim(), "each run has its own token");

    // Past its expiresAt (two days on), the scheduler expires it: delete.sh runs with a
    // token whose operation is `expire`.
    clock.advance(chrono::Duration::days(2));
    let expired = common::eventually("an expiry ran", async || {
        env.runs().into_values().find(|r| {
            r.env.get("ADE_ENVIRONMENT_NAME").map(String::as_str) == Some("ddev")
                && r.env.get("ADE_OPERATION_NAME").map(String::as_str) == Some("delete")
                && r.token.is_some()
        })
    })
    .await;
    let claims = verify(
        expired.token.as_deref().unwrap().trim(),
        &keys,
        "sts.amazonaws.com/dev",
    )
    .expect("verifies");
    assert_eq!(claims["operation"], "expire");
    assert_eq!(
        claims["sub"],
        format!("repo:{REPO}:environment:payments/ddev:type:dev:operation:expire")
    );
}

/// `paved check`, offline, cannot know the server's identities: it passes what it can check
/// and says so, naming the fields.
#[test]
fn paved_check_says_it_cannot_know_the_servers_identities() {
    let dir = tempfile::tempdir().expect("tmp");
    let examples = common::examples_dir();
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let out = std::process::Command::new("cp")
            .arg("-r")
            .arg(from)
            .arg(to)
            .status()
            .expect("cp");
        assert!(out.success());
    };
    for part in [".paved", "catalog", "environments"] {
        copy(&examples.join(part), dir.path());
    }
    let platform = dir.path().join(".paved/platform.yaml");
    let text = std::fs::read_to_string(&platform).expect("platform.yaml");
    std::fs::write(
        &platform,
        text.replace(
            "    timeout: 30m\n",
            "    timeout: 30m\n    identity: dev-deployer\n",
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .arg("check")
        .arg(dir.path())
        .env_remove("PAVED_LOG")
        .output()
        .expect("paved check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("environmentTypes.dev.identity: dev-deployer")
            && stderr.contains("only the Paved server knows"),
        "{stderr}"
    );
}

/// An identity's secret, printed by the script to its output and its error log, never
/// reaches the operation log, the deployment status, the comment or the note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identitys_secret_is_redacted_everywhere() {
    let env = Env::prepare_platform(with_identities, |_, _| {})
        .await
        .run_with(|c| {
            let mut ids = identities();
            if let Some(dev) = ids.get_mut("dev-deployer") {
                // The recorder's `leak` mode prints $API_TOKEN.
                dev.env.push(("API_TOKEN".into(), Secret::new(DEV_KEY)));
            }
            c.runner.identities = ids;
        })
        .await;
    let pr = env.open(&[(
        path_of("leaky"),
        Some(recorder_manifest("leaky", "dev", "leak", "").into_bytes()),
    )]);
    let (merge, _) = env.merge(&pr).await;
    let status = env.provision_status(&merge).await;
    assert_eq!(status.state, "failure");
    assert_eq!(
        run_of(&env, "leaky")
            .env
            .get("API_TOKEN")
            .map(String::as_str),
        Some(DEV_KEY),
        "the script got the identity's secret"
    );
    let detail = env.environment("leaky").await;
    let log = detail["operations"][0]["log"].as_str().unwrap_or_default();
    assert!(
        log.contains("calling the API with token [redacted]"),
        "{log}"
    );
    let n = pr.number;
    env.h
        .github
        .wait_until(common::DEADLINE, "the merge comment", move |gh| {
            gh.comments(REPO, n)
                .iter()
                .any(|c| c.body.contains("merged as"))
        })
        .await
        .expect("comment");
    let everywhere = [
        detail.to_string(),
        serde_json::to_string(&env.h.github.deployments(&env.repo())).expect("json"),
        env.h
            .comments(pr.number)
            .iter()
            .map(|c| c.body.clone())
            .collect::<String>(),
        format!("{:?}", env.notes(&merge)),
        format!("{status:?}"),
    ];
    for (i, text) in everywhere.iter().enumerate() {
        assert!(
            !text.contains(DEV_KEY),
            "secret leaked in place {i}: {text}"
        );
    }
}
