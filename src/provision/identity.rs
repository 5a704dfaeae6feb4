//! A run's deploy identity (SPEC 13): the one its environment type names, as the server
//! defines it, with a token signed for this run when the identity has `oidc`. A run gets
//! its own type's identity and nothing of any other's.
//!
//! It is prepared before the operation is marked running: a database that cannot be
//! reached to sign the token is a transient error ([`WorkError`], the delivery is tried
//! again, nothing has started), while an identity the server does not define refuses the
//! run with that reason.

use super::Item;
use crate::config::Identity;
use crate::oidc::{IssuerError, RunClaims};
use crate::runner::{AzureRun, GcpRun, RunIdentity, RunSpec};
use crate::store::NewOperation;
use crate::work::{Deps, WorkError};
use std::time::Duration;

/// A run's identity, ready: what the runner lays out, and the values to redact.
pub(crate) struct Prepared {
    identity: RunIdentity,
    secrets: Vec<String>,
}

impl Prepared {
    /// Gives `spec` the identity and its secrets to redact.
    pub(crate) fn apply(self, spec: &mut RunSpec) {
        spec.secrets.extend(self.secrets);
        spec.identity = Some(self.identity);
    }
}

/// The identity of run `run_id` of `op` (as recorded: with its approvers and governing
/// commit), its token's `operation` being `operation` and its lifetime `timeout`.
/// `Ok(Err(why))`: the run must not start, for this reason; `Err`: try again later.
pub(crate) async fn prepare(
    deps: &Deps,
    item: &Item,
    op: &NewOperation,
    (run_id, timeout): (i64, Duration),
    operation: &str,
) -> Result<Result<Option<Prepared>, String>, WorkError> {
    let Some(name) = &item.identity else {
        return Ok(Ok(None));
    };
    let Some(identity) = deps.config.runner.identities.get(name) else {
        return Ok(Err(format!(
            "environment type {} names identity {name:?}, which this Paved server does not define ([runner.identities.{name}] in its configuration): nothing ran",
            op.env_type
        )));
    };
    let mut secrets: Vec<String> = identity
        .env
        .iter()
        .map(|(_, v)| v.expose().to_string())
        .collect();
    let token = match &identity.oidc_audience {
        Some(audience) => {
            let claims = RunClaims {
                audience: audience.clone(),
                repository: op.repo.to_string(),
                environment: op.env_name.to_string(),
                team: op.team.to_string(),
                env_type: op.env_type.clone(),
                definition: op.definition.clone(),
                operation: operation.to_string(),
                run_id,
                requester: op.requester.to_string(),
                approvers: op.approvers.iter().map(ToString::to_string).collect(),
                governance_sha: op.governance_sha.clone(),
                commit: op.merge_sha.to_string(),
            };
            match deps.issuer.mint(&claims, timeout).await {
                Ok(token) => {
                    secrets.push(token.jwt.clone());
                    Some(token.jwt)
                }
                Err(IssuerError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    return Ok(Err(format!(
                        "the run's identity token could not be signed: {e}"
                    )))
                }
            }
        }
        None => None,
    };
    Ok(Ok(Some(Prepared {
        identity: run_identity(identity, op, token),
        secrets,
    })))
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
