//! One real consumer of Paved's run tokens (SPEC 13): the `s3-bucket` example definition,
//! whose script uses the AWS SDK for Python as it is, against a local STS and S3 (the
//! `moto` server on loopback, installed by `script/bootstrap` into `/opt/paved-aws` with boto3; or
//! where `PAVED_TEST_AWS_VENV` says). The script finds its credentials only through the
//! variables Paved sets: boto3 calls `AssumeRoleWithWebIdentity` with the run's token, which
//! this test catches on its way to STS and verifies against Paved's published keys.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::REPO;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use paved::config::{AwsIdentity, Identity};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const ROLE: &str = "arn:aws:iam::123456789012:role/paved-dev";

fn venv() -> PathBuf {
    let dir = PathBuf::from(
        std::env::var("PAVED_TEST_AWS_VENV").unwrap_or_else(|_| "/opt/paved-aws".into()),
    );
    assert!(
        dir.join("bin/moto_server").is_file() && dir.join("bin/python3").exists(),
        "{} has no moto_server and python3 with boto3: run script/bootstrap, which installs them (python3 -m venv {0}; {0}/bin/pip install 'moto[server]' boto3)",
        dir.display()
    );
    dir
}

/// A moto server on a free loopback port, stopped with the guard.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_moto(venv: &std::path::Path) -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = std::process::Command::new(venv.join("bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    common::eventually("moto started", async || {
        client.get(&moto.url).send().await.ok().map(|_| ())
    })
    .await;
    moto
}

/// What went to STS through the proxy: each call's form fields.
type StsCalls = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A loopback proxy in front of moto that keeps the form of every STS call.
async fn proxy(to: String, calls: StsCalls) -> String {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, Method, Uri};
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let (client, to, calls) = (client.clone(), to.clone(), calls.clone());
            async move {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&body)
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                if form
                    .iter()
                    .any(|(k, v)| k == "Action" && v.starts_with("AssumeRole"))
                {
                    calls.lock().unwrap().push(form);
                }
                let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
                let mut req = client.request(method, format!("{to}{path}")).body(body);
                for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
                    req = req.header(k, v);
                }
                let r = req.send().await.expect("moto answers");
                let status = r.status();
                let mut out = axum::http::Response::builder().status(status.as_u16());
                for (k, v) in r.headers() {
                    if k != "transfer-encoding" && k != "content-length" {
                        out = out.header(k, v);
                    }
                }
                out.body(axum::body::Body::from(r.bytes().await.unwrap_or_default()))
                    .expect("response")
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_sdk_script_gets_credentials_only_through_paveds_token() {
    let venv = venv();
    let moto = start_moto(&venv).await;
    let calls: StsCalls = Arc::default();
    let sts = proxy(moto.url.clone(), calls.clone()).await;

    let env = Env::prepare_platform(
        |t| {
            t.replace(
                "definitions: [postgres-db, static-site, recorder]",
                "definitions: [postgres-db, static-site, recorder, s3-bucket]",
            )
            .replace(
                "    timeout: 30m\n",
                "    timeout: 30m\n    identity: dev-deployer\n",
            )
        },
        |_, _| {},
    )
    .await;
    let venv2 = venv.clone();
    let env = env
        .run_with(move |c| {
            c.runner.path = format!("{}:{}", venv2.join("bin").display(), c.runner.path);
            c.runner.mounts.push((venv2.clone(), false));
            c.runner.identities.insert(
                "dev-deployer".into(),
                Identity {
                    name: "dev-deployer".into(),
                    vars: vec![
                        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
                        // Only because this STS and S3 are local: a real role needs neither.
                        ("AWS_ENDPOINT_URL".into(), sts.clone()),
                    ],
                    oidc_audience: Some("sts.amazonaws.com".into()),
                    aws: Some(AwsIdentity {
                        role_arn: ROLE.into(),
                    }),
                    ..Identity::default()
                },
            );
        })
        .await;

    let manifest = common::recorder::manifest_of(
        "bucket-env",
        "dev",
        "s3-bucket",
        "    bucket: paved-bucket-env\n",
    );
    let pr = env.open(&[(
        "environments/payments/bucket-env.yaml".into(),
        Some(manifest.into_bytes()),
    )]);
    let (merge, _) = env.merge(&pr).await;
    let status = env.provision_status(&merge).await;
    let ops = env.operations(&merge).await;
    assert_eq!(status.state, "success", "{ops:#?}");

    // boto3 assumed the identity's role with the token Paved signed for this run.
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "one AssumeRoleWithWebIdentity: {calls:#?}");
    let field = |k: &str| {
        calls[0]
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field("Action"), "AssumeRoleWithWebIdentity");
    assert_eq!(field("RoleArn"), ROLE);
    let token = field("WebIdentityToken");
    let jwks: JwkSet = reqwest::get(format!("{}/.well-known/jwks.json", env.h.url()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(&token).expect("a JWT");
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.expect("kid")).expect("published"))
        .expect("key");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["sts.amazonaws.com"]);
    v.set_issuer(&["http://paved.test"]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
        .expect("the token STS got is Paved's")
        .claims;
    assert_eq!(
        claims["sub"],
        format!("repo:{REPO}:environment:payments/bucket-env:type:dev:operation:deploy")
    );
    assert_eq!(
        field("RoleSessionName"),
        format!("paved-run-{}", claims["run_id"].as_str().unwrap())
    );

    // The SDK used the role's credentials, and the bucket exists.
    let detail = env.environment("bucket-env").await;
    let outputs = &detail["environment"]["outputs"];
    assert_eq!(outputs["bucket"]["value"], "paved-bucket-env");
    assert!(
        outputs["deployedAs"]["value"].as_str().is_some_and(
            |a| a.starts_with("arn:aws:sts::123456789012:assumed-role/paved-dev/paved-run-")
        ),
        "{outputs:#}"
    );
    let listing = reqwest::get(&moto.url)
        .await
        .expect("moto")
        .text()
        .await
        .expect("text");
    assert!(
        listing.contains("<Name>paved-bucket-env</Name>"),
        "{listing}"
    );
}
