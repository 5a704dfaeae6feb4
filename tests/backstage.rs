//! The Backstage export: every entity of `GET /api/v1/backstage/entities.yaml` validates
//! against Backstage's own schema for its kind (`tests/fixtures/backstage/`, `$ref`s
//! resolved by `$id`), and says what Paved knows.

/// `false`: this binary's harnesses use SQLite.
#[allow(dead_code)]
pub const POSTGRES_SUITE: bool = false;

mod common;

use common::provisioning::Env;
use common::recorder::add;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/backstage")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("json")
}

/// Backstage's schemas by `$id`, and `common`'s definitions by their `#id`.
struct Registry {
    by_id: BTreeMap<String, Value>,
    common: BTreeMap<String, Value>,
}

impl Registry {
    fn load() -> Registry {
        let mut by_id = BTreeMap::new();
        for f in [
            "Entity.schema.json",
            "EntityMeta.schema.json",
            "Group.v1alpha1.schema.json",
            "User.v1alpha1.schema.json",
            "System.v1alpha1.schema.json",
            "Resource.v1alpha1.schema.json",
            "Template.v1beta3.schema.json",
        ] {
            let v = fixture(f);
            by_id.insert(v["$id"].as_str().expect("$id").to_string(), v);
        }
        let mut common = BTreeMap::new();
        for (_, d) in fixture("common.schema.json")["definitions"]
            .as_object()
            .expect("definitions")
        {
            let id = d["$id"].as_str().expect("#id").to_string();
            common.insert(id, d.clone());
        }
        Registry { by_id, common }
    }

    /// `schema` with every `$ref` replaced by its target (draft-07: a `$ref` object is its
    /// target), and `definitions` (reached only through refs) dropped.
    fn resolve(&self, schema: &Value, depth: usize) -> Value {
        assert!(depth < 32, "a $ref cycle");
        match schema {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str) {
                    let target = if let Some(anchor) = r.strip_prefix("common") {
                        self.common.get(anchor)
                    } else if r.starts_with('#') {
                        self.common.get(r)
                    } else {
                        self.by_id.get(r)
                    }
                    .unwrap_or_else(|| panic!("unresolved $ref {r}"));
                    return self.resolve(target, depth + 1);
                }
                let mut out = Map::new();
                for (k, v) in m {
                    if k == "definitions" {
                        continue;
                    }
                    out.insert(k.clone(), self.resolve(v, depth + 1));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.resolve(v, depth + 1)).collect()),
            other => other.clone(),
        }
    }

    fn schema_for(&self, kind: &str) -> Value {
        let id = match kind {
            "Group" => "GroupV1alpha1",
            "User" => "UserV1alpha1",
            "System" => "SystemV1alpha1",
            "Resource" => "ResourceV1alpha1",
            "Template" => "TemplateV1beta3",
            other => panic!("Paved exported a kind it should not: {other}"),
        };
        self.resolve(&self.by_id[id], 0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_validates_against_backstages_schemas_and_says_what_paved_knows() {
    let e = Env::start().await;
    let pr = e.open(&add("orders-preview", "ok"));
    let (merge, _) = e.merge(&pr).await;
    assert_eq!(e.provision_status(&merge).await.state, "success");

    let r =
        e.h.client
            .get(format!("{}/api/v1/backstage/entities.yaml", e.h.url()))
            .send()
            .await
            .expect("export");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("yaml");
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let y = serde_yaml::Value::deserialize(d).expect("a YAML document");
            serde_json::to_value(y).expect("json")
        })
        .collect();
    let registry = Registry::load();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for d in &docs {
        let kind = d["kind"].as_str().expect("kind");
        *kinds.entry(kind.to_string()).or_default() += 1;
        if let Err(errors) = github_emulator::schema::validate(&registry.schema_for(kind), d) {
            panic!(
                "{kind} {} does not validate: {errors:#?}\n{d:#}",
                d["metadata"]["name"]
            );
        }
    }
    for k in ["Group", "User", "System", "Resource", "Template"] {
        assert!(kinds.contains_key(k), "no {k} in the export: {kinds:?}");
    }
    let find = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let env = find("Resource", "orders-preview");
    // The resolved schemas do bite: without an owner, or with a bad name, it is refused.
    let mut broken = env.clone();
    broken["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("owner");
    assert!(github_emulator::schema::validate(&registry.schema_for("Resource"), &broken).is_err());
    let mut broken = env.clone();
    broken["metadata"]["name"] = Value::String(String::new());
    assert!(github_emulator::schema::validate(&registry.schema_for("Resource"), &broken).is_err());
    assert_eq!(env["spec"]["type"], "environment");
    assert_eq!(env["spec"]["owner"], "group:default/payments");
    assert_eq!(env["spec"]["system"], "acme-environments");
    let ann = &env["metadata"]["annotations"];
    assert_eq!(ann["paved.dev/repository"], "acme/environments");
    assert_eq!(ann["paved.dev/template"], "recorder");
    assert_eq!(ann["paved.dev/type"], "dev");
    assert_eq!(ann["paved.dev/state"], "ready");
    let links: Vec<&str> = env["metadata"]["links"]
        .as_array()
        .expect("links")
        .iter()
        .filter_map(|l| l["url"].as_str())
        .collect();
    assert!(
        links.contains(&"https://orders-preview.example.test"),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l.ends_with(&format!("/pull/{}", pr.number))),
        "{links:?}"
    );
    let team = find("Group", "payments");
    let members: Vec<&str> = team["spec"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        members.contains(&"octocat") && members.contains(&"hubot"),
        "{members:?}"
    );
    assert!(find("User", "octocat")["spec"]["memberOf"]
        .as_array()
        .expect("memberOf")
        .contains(&Value::String("payments".into())));
    // The template's one step opens a request through Paved's API.
    let t = find("Template", "paved-recorder");
    let step = &t["spec"]["steps"][0];
    assert_eq!(step["input"]["method"], "POST");
    assert!(step["input"]["path"]
        .as_str()
        .is_some_and(|p| p.ends_with("/api/v1/requests")));
    assert_eq!(step["input"]["body"]["template"], "recorder");
    assert_eq!(step["input"]["body"]["repository"], "acme/environments");
    let props = &t["spec"]["parameters"][0]["properties"];
    assert_eq!(props["param_mode"]["enum"][0], "ok");
    // Nothing sensitive, and an anonymous caller gets nothing.
    assert!(!text.contains("sensitive"), "{text}");
    let anonymous = reqwest::Client::new()
        .get(format!("{}/api/v1/backstage/entities.yaml", e.h.url()))
        .send()
        .await
        .expect("request");
    assert_eq!(anonymous.status(), 401);
}

use serde::Deserialize as _;
