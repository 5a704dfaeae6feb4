//! The `recorder` test definition: reports what each run received (environment,
//! parameters, ADE_STORAGE history, start and end times) to the test's record server as
//! `<run id>.*` (see `records`: the sandbox lets a script reach loopback, not the test's
//! folder).
#![allow(dead_code)]

use paved_testkit::FileChange;

/// The recorder definition: reports its environment, parameters and ADE_STORAGE history as
/// `<run id>.*`, writes outputs (one sensitive), and behaves as its `mode` parameter says:
/// With a deploy identity that has `oidc`, it reports its token as `<run id>.token`.
/// `ok`, `fail`, `hang` (outlives any timeout), `slow` (0.3 s), `block` (waits until the
/// test reports `release`), `jsurl` (its `url` output is a `javascript:` value), `leak`
/// (prints `$API_TOKEN`, a `runner.pass_env` secret, to its output and its error log, and
/// fails). `hang` and `block` report `<run id>.pid` once they wait.
pub const RECORDER_DEPLOY: &str = r#"#!/bin/sh
set -eu
report() { curl -sfS --noproxy '*' -X PUT --data-binary @- "$RECORD_URL/$1" >/dev/null; }
run="$PAVED_RUN_ID"
date +%s%N | report "$run.start"
env | sort | report "$run.env"
if [ -n "${PAVED_OIDC_TOKEN_FILE:-}" ]; then report "$run.token" < "$PAVED_OIDC_TOKEN_FILE"; fi
printf '%s' "$ADE_OPERATION_PARAMETERS" | report "$run.params"
echo "$ADE_OPERATION_NAME $PAVED_RUN_ID" >> "$ADE_STORAGE/history"
report "$run.history" < "$ADE_STORAGE/history"
echo "the password is s3cr3t-$ADE_ENVIRONMENT_NAME-value"
url="https://$ADE_ENVIRONMENT_NAME.example.test"
case "$ADE_OPERATION_PARAMETERS" in
  *'"mode":"jsurl"'*)
    url='javascript:alert(document.domain)//' ;;
  *'"mode":"fail"'*)
    echo "upstream refused the request" > "$ADE_ERROR_LOG"
    echo "boom" >&2
    exit 3 ;;
  *'"mode":"hang"'*)
    echo $$ | report "$run.pid"
    sleep 600 ;;
  *'"mode":"slow"'*)
    sleep 0.3 ;;
  *'"mode":"leak"'*)
    echo "calling the API with token ${API_TOKEN:-unset}"
    echo "the API rejected token ${API_TOKEN:-unset}" > "$ADE_ERROR_LOG"
    exit 4 ;;
  *'"mode":"block"'*)
    echo $$ | report "$run.pid"
    until curl -sf --noproxy '*' "$RECORD_URL/release" >/dev/null; do sleep 0.05; done ;;
esac
cat > "$ADE_OUTPUTS" <<EOF
{"outputs": {
  "url": {"type": "string", "value": "$url", "sensitive": false},
  "password": {"type": "string", "value": "s3cr3t-$ADE_ENVIRONMENT_NAME-value", "sensitive": true}
}}
EOF
date +%s%N | report "$run.end"
"#;

pub const RECORDER_DELETE: &str = r#"#!/bin/sh
set -eu
report() { curl -sfS --noproxy '*' -X PUT --data-binary @- "$RECORD_URL/$1" >/dev/null; }
run="$PAVED_RUN_ID"
date +%s%N | report "$run.start"
env | sort | report "$run.env"
if [ -n "${PAVED_OIDC_TOKEN_FILE:-}" ]; then report "$run.token" < "$PAVED_OIDC_TOKEN_FILE"; fi
printf '%s' "$ADE_OPERATION_PARAMETERS" | report "$run.params"
if [ -e "$ADE_STORAGE/history" ]; then report "$run.history" < "$ADE_STORAGE/history"; fi
date +%s%N | report "$run.end"
"#;

pub const RECORDER_DEFINITION: &str = "name: recorder
version: 1.0.0
summary: Records what it receives (Paved's tests)
runner: command
parameters:
  - id: mode
    name: Mode
    type: string
    default: ok
    allowed: [ok, fail, hang, slow, block, leak, jsurl]
  - id: note
    name: Note
    type: string
    default: ''
";

pub fn governance_files() -> Vec<FileChange> {
    let platform = std::fs::read_to_string(super::examples_dir().join(".paved/platform.yaml"))
        .expect("platform.yaml");
    let platform = platform.replace(
        "definitions: [postgres-db, static-site]",
        "definitions: [postgres-db, static-site, recorder]",
    ) + "  quick:
    description: Runs that must finish within two seconds.
    workflow: default
    maxTtl: 3650d
    definitions: [recorder]
    requiredTags: [cost-center]
    timeout: 2s
";
    vec![
        (".paved/platform.yaml".into(), Some(platform.into_bytes())),
        (
            "catalog/recorder/environment.yaml".into(),
            Some(RECORDER_DEFINITION.as_bytes().to_vec()),
        ),
        (
            "catalog/recorder/deploy.sh".into(),
            Some(RECORDER_DEPLOY.as_bytes().to_vec()),
        ),
        (
            "catalog/recorder/delete.sh".into(),
            Some(RECORDER_DELETE.as_bytes().to_vec()),
        ),
    ]
}

pub fn recorder_manifest(name: &str, env_type: &str, mode: &str, note: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar: the note arrives verbatim.
    let note = serde_json::to_string(note).expect("json");
    manifest_of(
        name,
        env_type,
        "recorder",
        &format!("    mode: {mode}\n    note: {note}\n"),
    )
}

/// A manifest of team `payments` (owner octocat) expiring in two days, with `parameters`
/// (YAML lines, indented by four).
pub fn manifest_of(name: &str, env_type: &str, definition: &str, parameters: &str) -> String {
    let expires = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "apiVersion: paved/v1
kind: Environment
metadata:
  name: {name}
  team: payments
  owner: octocat
spec:
  type: {env_type}
  definition: {definition}
  parameters:
{parameters}  expiresAt: {expires}
  tags:
    cost-center: cc-1234
"
    )
}

pub fn path_of(name: &str) -> String {
    format!("environments/payments/{name}.yaml")
}

pub fn add(name: &str, mode: &str) -> Vec<FileChange> {
    vec![(
        path_of(name),
        Some(recorder_manifest(name, "dev", mode, "").into_bytes()),
    )]
}

/// `platform.yaml` with a `search` team (member `searcher`) beside `payments`.
pub fn with_search_team(text: String) -> String {
    let text = text.replace(
        "  platform:\n    members: [admin1, admin2]\n",
        "  platform:\n    members: [admin1, admin2]\n  search:\n    members: [searcher]\n",
    );
    assert!(text.contains("searcher"), "platform.yaml changed shape");
    text
}

/// `platform.yaml` whose `quick` type (recorder only) needs one approval from payments,
/// with a `search` team.
pub fn with_quick_approval_and_search_team(text: String) -> String {
    let text = text.replace(
        "    definitions: [recorder]\n    requiredTags: [cost-center]\n    timeout: 2s\n",
        "    definitions: [recorder]\n    requiredTags: [cost-center]\n    timeout: 2s\n    approvals: { team: payments, count: 1 }\n",
    );
    assert!(
        text.contains("approvals: { team: payments"),
        "platform.yaml changed shape"
    );
    with_search_team(text)
}
