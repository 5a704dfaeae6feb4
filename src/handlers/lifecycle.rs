//! Commands about an environment's lifecycle given in GitHub: `/paved reconcile` on the
//! issue Paved opened for a drifted environment (SPEC 11).

use super::{Deps, WorkError};
use crate::event::{Installation, Repository};
use crate::identity::Caller;
use crate::ids::{PrNumber, RepoName};

/// `/paved reconcile` on a drift issue: queues a reconcile for the scheduler when the
/// commenter is a member of the environment's team or the platform team, and says so on
/// the issue either way. A comment on any other issue is ignored.
pub async fn reconcile_comment(
    deps: &Deps,
    repository: &Repository,
    installation: Option<Installation>,
    number: u64,
    commenter: Option<&str>,
) -> Result<(), WorkError> {
    let repo =
        RepoName::parse(&repository.full_name).map_err(|e| WorkError::Payload(e.to_string()))?;
    let Some(name) = deps.store.environment_of_drift_issue(&repo, number).await? else {
        tracing::info!(%repo, issue = number, "/paved reconcile on an issue that tells of no drift; ignored");
        return Ok(());
    };
    let Some(env) = deps.store.environment(&repo, &name).await? else {
        return Ok(());
    };
    let gh = deps
        .forge
        .client(installation.map(|i| crate::ids::InstallationId(i.id)))?;
    let login = commenter.unwrap_or_default();
    let may = match deps.directory.roles(&repo).await {
        Some(roles) if !login.is_empty() => roles
            .access(&Caller::User(login.to_string()))
            .acts_for(&env.team),
        _ => false,
    };
    let reply = if may {
        crate::lifecycle::ask_reconcile(
            deps.store.as_ref(),
            &repo,
            &name,
            login,
            deps.config.lifecycle.clock.now(),
        )
        .await?;
        deps.lifecycle_wake.notify_one();
        format!(
            "@{login}: reconcile queued. Paved runs the deploy of `{}/{name}` again with its last parameters, then checks it; this issue closes when it is back in sync.",
            env.team
        )
    } else {
        format!(
            "@{login}: only a member of `{}` or the platform team may reconcile `{name}`; nothing was done.",
            env.team
        )
    };
    gh.create_comment(&repo, PrNumber(number), &reply).await?;
    Ok(())
}
