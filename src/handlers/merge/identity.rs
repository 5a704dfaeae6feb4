//! A run's deploy identity (SPEC 13): the one its environment type names, as the server
//! defines it, with a token signed for this run when the identity has `oidc`. A run gets
//! its own type's identity and nothing of any other's.

use super::Item;
use crate::config::Identity;
use crate::handlers::Deps;
use crate::oidc::RunClaims;
use crate::runner::{AzureRun, GcpRun, RunIdentity, RunSpec};
use crate::store::NewOperation;

/// Gives `spec` the identity its type names (`item.identity`), its secrets to redact and,
/// with `oidc`, a token for `op` (as recorded: with its approvers and governing commit)
/// whose `operation` is `operation`. `Err`: why the run must not start (an identity the
/// server does not define, a token that could not be signed).
pub(crate) async fn attach_identity(
    deps: &Deps,
    item: &Item,
    op: &NewOperation,
    spec: &mut RunSpec,
    operation: &str,
) -> Result<(), String> {
    let Some(name) = &item.identity else {
        return Ok(());
    };
    let Some(identity) = deps.config.runner.identities.get(name) else {
        return Err(format!(
            "environment type {} names identity {name:?}, which this Paved server does not define ([runner.identities.{name}] in its configuration): nothing ran",
            op.env_type
        ));
    };
    let token = match &identity.oidc_audience {
        Some(audience) => {
            let claims = RunClaims {
                audience: audience.clone(),
                repository: op.repo.to_string(),
                environment: op.env_name.clone(),
                team: op.team.clone(),
                env_type: op.env_type.clone(),
                definition: op.definition.clone(),
                operation: operation.to_string(),
                run_id: spec.run_id,
                requester: op.requester.clone(),
                approvers: op.approvers.clone(),
                governance_sha: op.governance_sha.clone(),
                commit: op.merge_sha.to_string(),
            };
            let token = deps
                .issuer
                .mint(&claims, spec.timeout)
                .await
                .map_err(|e| format!("the run's identity token could not be signed: {e}"))?;
            spec.secrets.push(token.jwt.clone());
            Some(token.jwt)
        }
        None => None,
    };
    spec.identity = Some(run_identity(identity, op, token));
    spec.secrets
        .extend(identity.env.iter().map(|(_, v)| v.expose().to_string()));
    Ok(())
}

fn run_identity(identity: &Identity, op: &NewOperation, token: Option<String>) -> RunIdentity {
    let mut vars: Vec<(String, String)> = identity.vars.clone();
    vars.extend(
        identity
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string())),
    );
    RunIdentity {
        name: identity.name.clone(),
        vars,
        token,
        aws_role_arn: identity.aws.as_ref().map(|a| a.role_arn.clone()),
        azure: identity.azure.as_ref().map(|a| AzureRun {
            client_id: a.client_id.clone(),
            tenant_id: a.tenant_id.clone(),
            subscription_id: a.subscription_id.clone(),
            resource_group: a.resource_group_of(&op.team, &op.env_name, &op.env_type),
            location: a.location.clone(),
        }),
        gcp: identity.gcp.as_ref().map(|g| GcpRun {
            audience: g.audience.clone(),
            service_account: g.service_account.clone(),
        }),
    }
}
