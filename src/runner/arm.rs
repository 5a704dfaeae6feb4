//! `runner: ARM` and `runner: Bicep`: ADE's built-in runners, done as ADE's own image does
//! them with the Azure CLI, through argv, in the run's sandbox, with the type's Azure
//! identity (SPEC 15):
//!
//! 1. `az login --service-principal --username $AZURE_CLIENT_ID --tenant $AZURE_TENANT_ID
//!    --federated-token <the run's token>` (then `az account set --subscription
//!    $ADE_SUBSCRIPTION_ID` when the identity names one);
//! 2. deploy: `az deployment group create --resource-group $ADE_RESOURCE_GROUP_NAME --name
//!    <deployment> --template-file <templatePath> --parameters @<run dir>/parameters.json
//!    --mode Incremental --output json`; the outputs are the deployment's
//!    `properties.outputs` (`secureString`/`secureObject` ones sensitive);
//! 3. delete: the same with an empty template in `Complete` mode, which removes what the
//!    resource group holds.
//!
//! The CLI must be on the run's `PATH` (`az`). Status, stop, start and previews are not
//! ADE's for these runners: they are not runnable (a preview is "no preview").

use super::command::{exec, Capture, Step};
use super::{Capped, Jail, Operation, Output, RunDir, RunOutcome, RunSpec, OUTPUTS_LIMIT};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use tokio::time::Instant;

/// The empty template a delete deploys in `Complete` mode.
const EMPTY_TEMPLATE: &str = r#"{"$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#", "contentVersion": "1.0.0.0", "resources": []}"#;

pub(crate) struct ArmRan {
    pub outcome: RunOutcome,
    pub pid: Option<u32>,
    pub outputs: BTreeMap<String, Output>,
    pub outputs_error: Option<String>,
    pub failed_step_stderr: Option<Capped>,
}

impl ArmRan {
    fn not_runnable(why: String) -> ArmRan {
        ArmRan {
            outcome: RunOutcome::NotRunnable(why),
            pid: None,
            outputs: BTreeMap::new(),
            outputs_error: None,
            failed_step_stderr: None,
        }
    }
}

fn var<'a>(env: &'a [(OsString, OsString)], name: &str) -> Option<&'a OsString> {
    env.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `az` on `path` (relative entries skipped, as for Terraform).
fn find_az(path: &str) -> Option<PathBuf> {
    path.split(':')
        .filter(|d| Path::new(d).is_absolute())
        .map(|d| Path::new(d).join("az"))
        .find(|p| super::terraform::is_executable_file(p))
}

/// The template file inside the definition (its `templatePath`).
fn template_file(definition: &Path, template_path: Option<&str>) -> Result<PathBuf, String> {
    let tp = template_path
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("runner ARM/Bicep needs the definition's templatePath (its .json or .bicep file)")?;
    let rel = Path::new(tp);
    if !rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "templatePath {tp:?} must be a path inside the definition folder"
        ));
    }
    let file = definition.join(rel);
    if !file.is_file() {
        return Err(format!("templatePath {tp} is not a file of the definition"));
    }
    Ok(file)
}

/// ARM's parameters file: `{"parameters": {"<id>": {"value": …}}}`.
fn parameters_file(parameters: &serde_json::Value) -> String {
    let mut p = serde_json::Map::new();
    for (k, v) in parameters.as_object().into_iter().flatten() {
        p.insert(k.clone(), serde_json::json!({ "value": v }));
    }
    serde_json::json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": p,
    })
    .to_string()
}

/// The deployment's outputs: `properties.outputs`, `{name: {type, value}}`.
fn outputs_of(deployment: &[u8]) -> Result<BTreeMap<String, Output>, String> {
    let v: serde_json::Value = serde_json::from_slice(deployment)
        .map_err(|e| format!("az deployment group create printed no deployment JSON: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, o) in v["properties"]["outputs"].as_object().into_iter().flatten() {
        let t = o["type"].as_str().unwrap_or("string").to_ascii_lowercase();
        let sensitive = t.starts_with("secure");
        let r#type = match t.as_str() {
            "securestring" | "string" => "string",
            "secureobject" | "object" => "object",
            "int" => "number",
            "bool" => "boolean",
            other => other,
        };
        out.insert(
            name.clone(),
            Output {
                r#type: r#type.to_string(),
                value: o["value"].clone(),
                sensitive,
            },
        );
    }
    Ok(out)
}

pub(crate) async fn run_arm<F, Fut>(
    spec: &RunSpec,
    dir: &RunDir,
    env: &[(OsString, OsString)],
    jail: Option<&Jail<'_>>,
    log: &mut Capped,
    on_spawn: &mut Option<F>,
) -> ArmRan
where
    F: FnOnce(u32) -> Fut + Send,
    Fut: std::future::Future<Output = ()> + Send,
{
    if !matches!(spec.operation, Operation::Deploy | Operation::Delete) {
        return ArmRan::not_runnable(format!(
            "runner ARM/Bicep has no {} operation (ADE's built-in runners deploy and delete)",
            spec.operation
        ));
    }
    let Some(az) = find_az(&spec.path) else {
        return ArmRan::not_runnable("runner ARM/Bicep needs the Azure CLI (`az`) on PATH".into());
    };
    let (Some(client), Some(tenant), Some(token_file), Some(group)) = (
        var(env, "AZURE_CLIENT_ID"),
        var(env, "AZURE_TENANT_ID"),
        var(env, "AZURE_FEDERATED_TOKEN_FILE"),
        var(env, "ADE_RESOURCE_GROUP_NAME"),
    ) else {
        return ArmRan::not_runnable(
            "runner ARM/Bicep needs the type's Azure identity with a resource group (identity kind oidc with azure.client_id, tenant_id and resource_group)".into(),
        );
    };
    let template = match spec.operation {
        Operation::Delete => {
            let path = dir.root.join("empty.json");
            if let Err(e) = tokio::fs::write(&path, EMPTY_TEMPLATE).await {
                return ArmRan::not_runnable(format!("could not write the empty template: {e}"));
            }
            path
        }
        _ => match template_file(&dir.definition, spec.template_path.as_deref()) {
            Ok(t) => t,
            Err(why) => return ArmRan::not_runnable(why),
        },
    };
    let params = dir.root.join("parameters.json");
    if let Err(e) = tokio::fs::write(&params, parameters_file(&spec.parameters)).await {
        return ArmRan::not_runnable(format!("could not write the parameters file: {e}"));
    }
    let token = match tokio::fs::read_to_string(token_file).await {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            return ArmRan::not_runnable(format!("the run's identity token could not be read: {e}"))
        }
    };
    if let Some(j) = jail {
        if let Err(why) = j.bwrap.give(&dir.root) {
            return ArmRan::not_runnable(why);
        }
    }
    let deployment = format!(
        "paved-{}-{}",
        spec.environment_name,
        spec.run_id.unsigned_abs()
    );
    let mut at_param = OsString::from("@");
    at_param.push(&params);
    let mut steps: Vec<(Vec<OsString>, String, bool)> = vec![(
        vec![
            "login".into(),
            "--service-principal".into(),
            "--username".into(),
            client.clone(),
            "--tenant".into(),
            tenant.clone(),
            "--federated-token".into(),
            token.into(),
            "--output".into(),
            "none".into(),
        ],
        format!(
            "$ az login --service-principal --username {} --tenant {} --federated-token <the run's token> --output none",
            client.to_string_lossy(),
            tenant.to_string_lossy()
        ),
        false,
    )];
    if let Some(sub) = var(env, "ADE_SUBSCRIPTION_ID") {
        steps.push((
            vec![
                "account".into(),
                "set".into(),
                "--subscription".into(),
                sub.clone(),
            ],
            format!("$ az account set --subscription {}", sub.to_string_lossy()),
            false,
        ));
    }
    let mode = if spec.operation == Operation::Delete {
        "Complete"
    } else {
        "Incremental"
    };
    let create: Vec<OsString> = vec![
        "deployment".into(),
        "group".into(),
        "create".into(),
        "--resource-group".into(),
        group.clone(),
        "--name".into(),
        deployment.clone().into(),
        "--template-file".into(),
        template.clone().into(),
        "--parameters".into(),
        at_param,
        "--mode".into(),
        mode.into(),
        "--output".into(),
        "json".into(),
    ];
    let root = dir.root.to_string_lossy().into_owned();
    let shown = create
        .iter()
        .map(|a| a.to_string_lossy().replace(&root, "<run dir>"))
        .collect::<Vec<_>>()
        .join(" ");
    steps.push((create, format!("$ az {shown}"), true));

    let deadline = Instant::now() + spec.timeout;
    let mut ran = ArmRan::not_runnable(String::new());
    ran.outcome = RunOutcome::Succeeded;
    for (args, shown, captured) in steps {
        log.note(&shown);
        let mut argv = vec![az.clone().into_os_string()];
        argv.extend(args);
        let mut stderr = Capped::new(spec.output_limit);
        let mut stdout = Capped::new(OUTPUTS_LIMIT);
        let report = exec(
            Step {
                argv,
                cwd: &dir.definition,
                env,
                deadline,
                jail,
            },
            Capture {
                log: &mut *log,
                stdout: captured.then_some(&mut stdout),
                stderr: Some(&mut stderr),
            },
            on_spawn,
        )
        .await;
        if ran.pid.is_none() {
            ran.pid = report.pid;
        }
        let outcome = report.outcome(spec.timeout, "az");
        if !outcome.is_success() {
            ran.outcome = outcome;
            ran.failed_step_stderr = Some(stderr);
            return ran;
        }
        if captured && spec.operation == Operation::Deploy {
            match outputs_of(&stdout.bytes()) {
                Ok(o) => ran.outputs = o,
                Err(e) => ran.outputs_error = Some(e),
            }
        }
    }
    ran
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_outputs_are_typed_and_secure_ones_sensitive() {
        let o = outputs_of(
            br#"{"properties": {"outputs": {
                "url": {"type": "String", "value": "https://x"},
                "key": {"type": "SecureString", "value": "s3cr3t"},
                "n": {"type": "Int", "value": 3}}}}"#,
        )
        .unwrap();
        assert_eq!(
            (o["url"].r#type.as_str(), o["url"].sensitive),
            ("string", false)
        );
        assert_eq!(
            (o["key"].r#type.as_str(), o["key"].sensitive),
            ("string", true)
        );
        assert_eq!(o["n"].r#type, "number");
        assert!(outputs_of(b"not json").is_err());
    }

    #[test]
    fn parameters_are_wrapped_as_arm_wants_them() {
        let p: serde_json::Value = serde_json::from_str(&parameters_file(
            &serde_json::json!({"size": "large", "n": 2}),
        ))
        .unwrap();
        assert_eq!(p["parameters"]["size"]["value"], "large");
        assert_eq!(p["parameters"]["n"]["value"], 2);
        assert_eq!(p["contentVersion"], "1.0.0.0");
    }

    #[test]
    fn the_template_must_be_a_file_inside_the_definition() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("azuredeploy.json"), "{}").unwrap();
        assert!(template_file(d.path(), Some("azuredeploy.json")).is_ok());
        assert!(template_file(d.path(), Some("../x.json")).is_err());
        assert!(template_file(d.path(), Some("missing.bicep")).is_err());
        assert!(template_file(d.path(), None).is_err());
    }
}
