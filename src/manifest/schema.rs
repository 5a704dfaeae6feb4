//! JSON Schemas of the files people write, generated from the Rust types that read them
//! (so they cannot drift apart), for editors to validate as people type:
//! `# yaml-language-server: $schema=<paved>/schemas/environment.json`. Served by the API
//! and written by `paved schema`. They describe the files' shape; the checks still
//! decide (a team must exist, a definition must be allowed for the type, ...).

use super::environment::Manifest;
use super::platform::Platform;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;

/// The schemas Paved publishes: (name, file name, URL path).
pub const SCHEMAS: [(&str, &str, &str); 2] = [
    (
        "environment",
        "environment.schema.json",
        "/schemas/environment.json",
    ),
    ("platform", "platform.schema.json", "/schemas/platform.json"),
];

/// Draft 7, the newest draft yaml-language-server (VS Code's YAML extension) reads fully;
/// subschemas inline (no `$ref`: the files are small and not recursive).
fn schema_of<T: JsonSchema>() -> serde_json::Value {
    let generator = SchemaSettings::draft07()
        .for_deserialize()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The schema named `name` (`environment` or `platform`).
pub fn by_name(name: &str) -> Option<serde_json::Value> {
    match name {
        "environment" => Some(schema_of::<Manifest>()),
        "platform" => Some(schema_of::<Platform>()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_schema_says_what_the_reader_takes() {
        let s = by_name("environment").expect("schema");
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        assert_eq!(s["additionalProperties"], false);
        let required = s["required"].as_array().expect("required");
        for field in ["apiVersion", "kind", "metadata", "spec"] {
            assert!(required.iter().any(|r| r == field), "{field}");
        }
        assert_eq!(s["properties"]["apiVersion"]["const"], "paved/v1");
        assert_eq!(s["properties"]["kind"]["const"], "Environment");
        let text = s.to_string();
        assert!(text.contains("expiresAt"), "camelCase as written");
        assert!(text.contains("\"maxLength\":40"));
    }

    #[test]
    fn the_platform_schema_takes_both_forms_of_approvals() {
        let s = by_name("platform").expect("schema");
        let text = s.to_string();
        assert!(text.contains("environmentTypes"));
        assert!(text.contains("anyOf"), "one rule or a list of alternatives");
        assert!(by_name("nothing").is_none());
    }
}
