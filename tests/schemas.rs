//! The published JSON Schemas: the examples' files validate against them, typical
//! mistakes do not, and the API and `paved schema` publish the same documents.

#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::{examples_dir, Harness};
use github_emulator::schema::validate;
use paved::manifest::schema::by_name;
use serde_json::Value;

fn yaml(text: &str) -> Value {
    let v: serde_yaml::Value = serde_yaml::from_str(text).expect("yaml");
    serde_json::to_value(v).expect("json")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(examples_dir().join(path)).expect(path)
}

#[test]
fn the_examples_validate_and_mistakes_do_not() {
    let env = by_name("environment").expect("environment schema");
    let manifest = read("environments/payments/checkout-preview.yaml");
    assert_eq!(validate(&env, &yaml(&manifest)), Ok(()));
    let recorder = common::recorder::recorder_manifest("orders-preview", "dev", "ok", "n");
    assert_eq!(validate(&env, &yaml(&recorder)), Ok(()));

    // A misspelt field, a wrong kind, a name that is no DNS label: each refused.
    for (bad, what) in [
        (
            manifest.replace("  parameters:", "  paramters:"),
            "paramters",
        ),
        (
            manifest.replace("kind: Environment", "kind: Environmnet"),
            "kind",
        ),
        (
            manifest.replace("name: checkout-preview", "name: Checkout_Preview"),
            "name",
        ),
    ] {
        assert_ne!(bad, manifest, "{what}: the example changed");
        let errors = validate(&env, &yaml(&bad)).expect_err(what);
        assert!(
            errors
                .iter()
                .any(|e| e.contains(what) || e.contains("metadata")),
            "{what}: {errors:?}"
        );
    }

    let platform = by_name("platform").expect("platform schema");
    let text = read(".paved/platform.yaml");
    assert_eq!(validate(&platform, &yaml(&text)), Ok(()));
    let governance = common::recorder::governance_files();
    let test_platform =
        String::from_utf8(governance[0].1.clone().expect("platform")).expect("utf8");
    assert_eq!(validate(&platform, &yaml(&test_platform)), Ok(()));
    let bad = test_platform.replace("maxTtl: 3650d", "maxTtl: ten years");
    assert_ne!(bad, test_platform);
    assert!(validate(&platform, &yaml(&bad)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_command_publish_the_same_schemas() {
    let h = Harness::start().await;
    let out = h.tmp.path().join("schemas");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
        .args(["schema", "--out"])
        .arg(&out)
        .status()
        .expect("paved schema");
    assert!(status.success());
    for (name, file, path) in paved::manifest::schema::SCHEMAS {
        let resp = h
            .client
            .get(format!("{}{path}", h.url()))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/schema+json");
        let served: Value = resp.json().await.expect("json");
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(file)).expect(file))
                .expect("json");
        assert_eq!(served, written, "{name}");
        assert_eq!(served, by_name(name).expect("schema"));
        let printed = std::process::Command::new(env!("CARGO_BIN_EXE_paved"))
            .args(["schema", name])
            .output()
            .expect("paved schema name");
        let printed: Value = serde_json::from_slice(&printed.stdout).expect("json");
        assert_eq!(printed, served, "{name}");
    }
    let missing = h
        .client
        .get(format!("{}/schemas/nothing.json", h.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
}
