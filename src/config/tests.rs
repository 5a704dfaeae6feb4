use super::*;
use std::collections::HashMap;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| m.get(k).cloned()
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("paved.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn file_then_env_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        r#"
listen = "127.0.0.1:9000"
data_dir = "/var/lib/paved"
[github]
webhook_secrets = ["one"]
api_url = "http://127.0.0.1:1"
token = "file-token"
[git]
clone_url_template = "file:///srv/{owner}/{repo}.git"
"#,
    );
    let flags = Overrides {
        config_path: Some(p.clone()),
        ..Default::default()
    };
    let c = Config::load(&flags, &env_of(&[])).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9000");
    assert_eq!(c.database_url, "sqlite:///var/lib/paved/paved.sqlite");
    assert_eq!(c.webhook_secrets, vec![Secret::new("one")]);
    assert_eq!(
        c.clone_url_template.as_deref(),
        Some("file:///srv/{owner}/{repo}.git")
    );

    let env = env_of(&[
        ("PAVED_LISTEN", "127.0.0.1:9001"),
        ("PAVED_WEBHOOK_SECRET", "new, old"),
    ]);
    let c = Config::load(&flags, &env).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9001");
    assert_eq!(
        c.webhook_secrets,
        vec![Secret::new("new"), Secret::new("old")]
    );

    let flags = Overrides {
        config_path: Some(p),
        listen: Some("127.0.0.1:9002".into()),
        ..Default::default()
    };
    assert_eq!(Config::load(&flags, &env).unwrap().listen, "127.0.0.1:9002");
}

#[test]
fn unknown_keys_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "[github]\nwebhook_secret = \"typo\"\n");
    let flags = Overrides {
        config_path: Some(p),
        ..Default::default()
    };
    let err = Config::load(&flags, &env_of(&[])).unwrap_err().to_string();
    assert!(err.contains("webhook_secret"), "{err}");
}

#[test]
fn repository_patterns_match_case_insensitively_with_globs() {
    let f = RepoFilter::new(
        &[
            "acme/environments".into(),
            "Platform/env-*".into(),
            "*/sandbox-?".into(),
        ],
        false,
    )
    .unwrap();
    let r = |s: &str| crate::ids::RepoName::parse(s).unwrap();
    assert!(f.allows(&r("acme/environments")));
    assert!(f.allows(&r("ACME/Environments")));
    assert!(f.allows(&r("platform/env-prod")));
    assert!(f.allows(&r("platform/env-")));
    assert!(f.allows(&r("anyone/sandbox-1")));
    assert!(!f.allows(&r("anyone/sandbox-12")));
    assert!(!f.allows(&r("acme/environments-2")));
    assert!(!f.allows(&r("evil/environments")));
    assert!(!f.allows(&r("platform/prod-env")));
    assert!(RepoFilter::any().allows(&r("evil/anything")));
    assert!(RepoFilter::new(&["no-slash".into()], false).is_err());
    assert!(RepoFilter::new(&["a/b c".into()], false).is_err());
    assert!(RepoFilter::new(&[], false).unwrap().is_unset());
    // Many stars never blow up.
    let stars = RepoFilter::new(&[format!("{}/x", "*".repeat(60))], false).unwrap();
    assert!(!stars.allows(&r(&format!("{}/y", "a".repeat(90)))));
}

#[test]
fn repositories_come_from_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "[github]\nrepositories = [\"acme/envs\"]\nwebhook_secrets = [\"long-enough-secret\"]\n",
    );
    let flags = Overrides {
        config_path: Some(p),
        ..Default::default()
    };
    let c = Config::load(&flags, &env_of(&[])).unwrap();
    assert_eq!(c.repositories.patterns(), ["acme/envs"]);
    c.validate().unwrap();
    let c = Config::load(
        &flags,
        &env_of(&[("PAVED_GITHUB_REPOSITORIES", "a/b, c/*")]),
    )
    .unwrap();
    assert_eq!(c.repositories.patterns(), ["a/b", "c/*"]);
}

#[test]
fn refuses_to_start_without_repositories_unless_any_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let flags = Overrides {
        config_path: Some(write(dir.path(), "")),
        ..Default::default()
    };
    let c = Config::load(&flags, &env_of(&[])).unwrap();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("github.repositories"), "{err}");
    assert!(err.contains("allow_any_repository"), "{err}");
    let c = Config::load(
        &flags,
        &env_of(&[("PAVED_GITHUB_ALLOW_ANY_REPOSITORY", "true")]),
    )
    .unwrap();
    c.validate().unwrap();
    assert!(c.repositories.allows_any());
}

#[test]
fn short_secrets_are_refused_at_start_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        r#"
[github]
repositories = ["a/b"]
webhook_secrets = ["short"]
token = "tok"
[runner]
pass_env = ["API_TOKEN", "NOT_SET"]
[runner.env]
DB_PASSWORD = "pw"
[runner.vars]
REGION = "eu"
"#,
    );
    let flags = Overrides {
        config_path: Some(p),
        ..Default::default()
    };
    let c = Config::load(&flags, &env_of(&[("API_TOKEN", "abc")])).unwrap();
    assert_eq!(c.runner.pass_env_missing, ["NOT_SET"]);
    assert_eq!(c.runner.vars, [("REGION".to_string(), "eu".to_string())]);
    let err = c.validate().unwrap_err().to_string();
    for name in [
        "github.webhook_secrets[0]",
        "github.token",
        "runner.env.DB_PASSWORD",
        "runner.pass_env API_TOKEN",
    ] {
        assert!(err.contains(name), "{name} not named in: {err}");
    }
    assert!(!err.contains("REGION"), "{err}");
    // The values themselves are never in the message.
    assert!(!err.contains("\"pw\""), "{err}");
}

#[test]
fn secrets_are_not_printed() {
    let s = Secret::new("hunter2");
    assert_eq!(format!("{s:?}"), "[redacted]");
}

#[test]
fn identities_come_from_the_file_and_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let base = r#"
[github]
webhook_secrets = ["0123456789abcdef"]
token = "file-token-123456"
repositories = ["acme/environments"]
[oidc]
rotate_every = "7d"
[runner.identities.dev-deployer]
env = { CLOUD_KEY = "short" }
oidc = { audience = "sts.amazonaws.com" }
aws = { role_arn = "arn:aws:iam::1:role/dev" }
"#;
    let load = |text: &str| {
        let p = write(dir.path(), text);
        Config::load(
            &Overrides {
                config_path: Some(p),
                ..Default::default()
            },
            &env_of(&[]),
        )
    };
    let c = load(base).unwrap();
    assert_eq!(
        c.oidc.rotate_every,
        std::time::Duration::from_secs(7 * 86400)
    );
    assert_eq!(
        c.runner.identities["dev-deployer"]
            .aws
            .as_ref()
            .unwrap()
            .role_arn,
        "arn:aws:iam::1:role/dev"
    );
    // A short secret is refused, by name, its value never shown.
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("runner.identities.dev-deployer.env.CLOUD_KEY"),
        "{e}"
    );
    assert!(!e.contains("\"short\""), "the value is never shown: {e}");
    // A token needs an issuer: public_url.
    let ok = base.replace("\"short\"", "\"long-enough-secret\"");
    let e = load(&ok).unwrap().validate().unwrap_err().to_string();
    assert!(e.contains("needs public_url"), "{e}");
    let c = load(&format!("public_url = \"https://paved.example\"\n{ok}")).unwrap();
    c.validate().unwrap();
    assert!(
        load(&ok.replace("\"7d\"", "\"10m\"")).is_err(),
        "rotation under 1h"
    );
}
