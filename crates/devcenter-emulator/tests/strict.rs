//! The DevCenter emulator answers as Microsoft's description says, from its state, and
//! refuses what the description does not allow; Entra's token endpoint checks secrets and
//! federated assertions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use devcenter_emulator::{DevCenter, FederatedCredential, DEVCENTER_SCOPE};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "0a1b2c3d-0000-4000-8000-00000000c11e";
const USER: &str = "b08e39b4-2ac6-4465-a35e-48322efb0f98";

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/azure-devcenter/examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn token(dc: &DevCenter) -> String {
    dc.add_client_secret(TENANT, CLIENT, "s3cret-value");
    let r = reqwest::Client::new()
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", dc.authority()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("client_secret", "s3cret-value"),
            ("scope", DEVCENTER_SCOPE),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    body["access_token"].as_str().unwrap().to_string()
}

async fn get(url: &str, token: Option<&str>) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.json().await.unwrap_or(Value::Null), headers)
}

/// Microsoft's own example environment, served back as the example shows it.
#[tokio::test]
async fn microsofts_example_environment_is_listed_as_published() {
    let dc = DevCenter::start().await.unwrap();
    let example = fixture("Environments_ListEnvironments.json");
    let mut env = example["responses"]["200"]["body"]["value"][0].clone();
    env.as_object_mut().unwrap().remove("uri");
    dc.add_environment("myProject", env.clone(), json!({"outputs": {}}));
    let t = token(&dc).await;
    let (status, body, _) = get(
        &format!(
            "{}/projects/myProject/environments?api-version=2025-02-01",
            dc.url()
        ),
        Some(&t),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let got = &body["value"][0];
    for k in [
        "name",
        "environmentType",
        "catalogName",
        "environmentDefinitionName",
        "parameters",
        "user",
        "provisioningState",
        "expirationDate",
    ] {
        assert_eq!(got[k], env[k], "{k}");
    }
    assert!(got["uri"].as_str().unwrap().ends_with(&format!(
        "/projects/myProject/users/{USER}/environments/mydevenv"
    )));
    assert!(body.get("nextLink").is_none());
    assert!(dc.rejected().is_empty());
    assert!(
        dc.response_schema_errors().is_empty(),
        "{:?}",
        dc.response_schema_errors()
    );
    assert!(dc.writes().is_empty());
}

/// The emulator's own answer check catches what the description forbids, even in
/// Microsoft's example (output types `bool` and `int` are not in `EnvironmentOutputType`).
#[tokio::test]
async fn answers_are_checked_against_the_response_schema() {
    let dc = DevCenter::start().await.unwrap();
    let outputs = fixture("Environments_GetOutputs.json")["responses"]["200"]["body"].clone();
    dc.add_environment(
        "myProject",
        json!({"name": "mydevenv", "user": USER, "environmentType": "dev", "catalogName": "main", "environmentDefinitionName": "hello"}),
        outputs,
    );
    let t = token(&dc).await;
    let (status, _, _) = get(
        &format!("{}/projects/myProject/users/{USER}/environments/mydevenv/outputs?api-version=2025-02-01", dc.url()),
        Some(&t),
    )
    .await;
    assert_eq!(status, 200);
    let errors = dc.response_schema_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("boolOutput") || errors[0].contains("bool"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn requests_the_description_does_not_allow_are_refused() {
    let dc = DevCenter::start().await.unwrap();
    dc.add_project("myProject");
    let t = token(&dc).await;
    let base = dc.url();
    let cases = [
        (format!("{base}/projects/myProject/environments"), Some(&t), 400, "MissingApiVersionParameter"),
        (format!("{base}/projects/myProject/environments?api-version=2024-02-01"), Some(&t), 400, "UnsupportedApiVersion"),
        (format!("{base}/projects/myProject/environments?api-version=2025-02-01&filter=x"), Some(&t), 400, "InvalidParameter"),
        (format!("{base}/projects/myProject/environments?api-version=2025-02-01&api-version=2025-02-01"), Some(&t), 400, "InvalidParameter"),
        (format!("{base}/projects/a/environments?api-version=2025-02-01"), Some(&t), 400, "InvalidParameter"),
        (format!("{base}/projects/myProject/users/someone/environments?api-version=2025-02-01"), Some(&t), 400, "InvalidParameter"),
        (format!("{base}/projects/myProject/environments?api-version=2025-02-01&$skipToken=forged"), Some(&t), 400, "InvalidParameter"),
        (format!("{base}/projects/myProject/environments?api-version=2025-02-01"), None, 401, "Unauthorized"),
        (format!("{base}/projects/myProject/pools?api-version=2025-02-01"), Some(&t), 501, "NotImplemented"),
        (format!("{base}/subscriptions/x/environments?api-version=2025-02-01"), Some(&t), 404, "NotFound"),
    ];
    for (url, tok, want, code) in &cases {
        let (status, body, headers) = get(url, tok.map(String::as_str)).await;
        assert_eq!(status, *want, "{url}: {body}");
        assert_eq!(body["error"]["code"], *code, "{url}: {body}");
        assert_eq!(headers["x-ms-error-code"], *code);
    }
    let (status, _, _) = get(
        &format!("{base}/projects/myProject/environments?api-version=2025-02-01"),
        Some("made-up"),
    )
    .await;
    assert_eq!(status, 401);
    let r = reqwest::Client::new()
        .delete(format!(
            "{base}/projects/myProject/environments?api-version=2025-02-01"
        ))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(dc.rejected().len(), cases.len() + 2);
    // A project that does not exist is a valid request answered 404, not a rejection.
    let (status, body, _) = get(
        &format!("{base}/projects/nowhere/environments?api-version=2025-02-01"),
        Some(&t),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NotFound"))
    );
    assert_eq!(dc.rejected().len(), cases.len() + 2);
    assert!(
        dc.response_schema_errors().is_empty(),
        "{:?}",
        dc.response_schema_errors()
    );
}

#[tokio::test]
async fn lists_are_paged_by_next_link_and_throttling_says_when_to_retry() {
    let dc = DevCenter::start().await.unwrap();
    for i in 0..5 {
        dc.add_environment(
            "myProject",
            json!({"name": format!("env-{i}"), "user": USER, "environmentType": "dev", "catalogName": "main", "environmentDefinitionName": "hello", "provisioningState": "Succeeded"}),
            json!({"outputs": {}}),
        );
    }
    dc.set_page_size(2);
    let t = token(&dc).await;
    let mut url = format!(
        "{}/projects/myProject/environments?api-version=2025-02-01",
        dc.url()
    );
    let mut names = Vec::new();
    loop {
        let (status, body, _) = get(&url, Some(&t)).await;
        assert_eq!(status, 200, "{body}");
        for e in body["value"].as_array().unwrap() {
            names.push(e["name"].as_str().unwrap().to_string());
        }
        match body["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(names, ["env-0", "env-1", "env-2", "env-3", "env-4"]);
    dc.throttle_next(1, 7);
    let (status, body, headers) = get(&url, Some(&t)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(headers["retry-after"], "7");
    assert!(dc.rejected().is_empty());
}

/// An app registration's federated credential: Entra takes an assertion signed by the
/// issuer's published key, for the right subject and audience, and nothing else.
#[tokio::test]
async fn a_federated_assertion_is_checked_against_the_issuers_published_key() {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/app-private-key.pem"),
    )
    .unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).unwrap();
    let jwk = json!({"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()), "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be())});
    // The issuer: its OpenID configuration and JWKS over loopback HTTP.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let jwks = json!({"keys": [jwk]});
    let config = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || async move { axum::Json(config) }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || async move { axum::Json(jwks) }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dc = DevCenter::start().await.unwrap();
    dc.add_federated_credential(
        TENANT,
        CLIENT,
        FederatedCredential {
            issuer: issuer.clone(),
            subject: "paved:import".into(),
            audience: "api://AzureADTokenExchange".into(),
        },
    );
    let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let sign = |sub: &str, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let now = chrono::Utc::now().timestamp();
        jsonwebtoken::encode(&header, &json!({"iss": issuer, "sub": sub, "aud": "api://AzureADTokenExchange", "iat": now, "exp": now + 300}), &encoding).unwrap()
    };
    let ask = |assertion: String| {
        let url = format!("{}/{TENANT}/oauth2/v2.0/token", dc.authority());
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", CLIENT),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.as_str()),
                    ("scope", DEVCENTER_SCOPE),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask(sign("paved:import", "k1")).await;
    assert_eq!(status, 200, "{body}");
    let t = body["access_token"].as_str().unwrap().to_string();
    dc.add_project("p1x");
    let (status, _, _) = get(
        &format!("{}/projects/p1x?api-version=2025-02-01", dc.url()),
        Some(&t),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = ask(sign("someone-else", "k1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "{body}"
    );
    let (status, body) = ask(sign("paved:import", "k2")).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("no key k2"),
        "{body}"
    );
    let mut tampered = sign("paved:import", "k1");
    let last = tampered.pop();
    tampered.push(if last == Some('A') { 'B' } else { 'A' });
    let (status, _) = ask(tampered).await;
    assert_eq!(status, 401);
}
