//! Commands given in GitHub comments (`/paved …`): what each asks for, and who may.
//! `recheck` and `plan` on a pull request; `reconcile` on the issue Paved opened for a
//! drifted environment (SPEC 11).

use super::pr::Previews;
use super::{Deps, WorkError};
use crate::event::{CommentCommand, Event, Installation, Repository};
use crate::identity::Caller;
use crate::ids::{DeliveryId, PrNumber, RepoName};

/// Does what a `/paved …` comment asks, where it may be asked: `recheck` and `plan` on a
/// pull request, `reconcile` on an issue. Anything else is logged and left.
pub async fn handle(deps: &Deps, delivery: &DeliveryId, event: Event) -> Result<(), WorkError> {
    let Event::Command {
        command,
        number,
        on_pull_request,
        commenter,
        repository,
        installation,
    } = event
    else {
        return Ok(());
    };
    match (&command, on_pull_request) {
        (CommentCommand::Recheck, true) => {
            let how = (delivery, Previews::Keep);
            super::pr::recheck(deps, &repository, installation, number, how).await
        }
        (CommentCommand::Plan, true) => {
            let how = (delivery, Previews::Make);
            super::pr::recheck(deps, &repository, installation, number, how).await
        }
        (CommentCommand::Reconcile, false) => {
            reconcile(
                deps,
                &repository,
                installation,
                number,
                commenter.as_deref(),
            )
            .await
        }
        _ => {
            tracing::info!(%command, on_pull_request, "not a command Paved knows here; nothing to do");
            Ok(())
        }
    }
}

/// `/paved reconcile` on a drift issue: queues a reconcile for the scheduler when the
/// commenter is a member of the environment's team or the platform team, and says so on
/// the issue either way. A comment on any other issue is ignored.
async fn reconcile(
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
        crate::timers::ask_reconcile(
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
