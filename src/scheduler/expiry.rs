//! Expiry (SPEC 11): the owner is warned `lifecycle.warn_before` ahead, on the pull request
//! that last changed the manifest; at `expiresAt` the definition's delete runs as operation
//! `expire`, and a pull request removing the manifest is opened so Git matches what exists
//! (merging it runs nothing: the environment is already deleted).

use super::jobs::{self, Snapshot};
use crate::ids::PrNumber;
use crate::store::{EnvironmentRecord, OpKind, OpState, Timer};
use crate::work::{Deps, WorkError};

/// Marks Paved's expiry warning among a pull request's comments (one per `expiresAt`).
fn warning_marker(env: &str, expires: &str) -> String {
    format!("<!-- paved:expiry-warning {env} {expires} -->")
}

/// Posts the warning, once per environment and `expiresAt` (found by its marker when a
/// restart came between posting it and recording so).
pub(super) async fn warn(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    timer: &Timer,
) -> Result<(), WorkError> {
    let Some(pr) = jobs::last_pull_request(deps.store.as_ref(), snap, env).await? else {
        tracing::info!(env = %env.name, "no pull request to warn on: the environment was never merged through one");
        return Ok(());
    };
    let gh = deps.forge.client(snap.target.installation)?;
    let marker = warning_marker(&env.name, &timer.cause);
    let repo = &snap.known.repo;
    // Posted already (a restart came between posting and recording it): a comment of
    // Paved's own with the marker. Anyone can write the marker; only Paved's counts.
    let own = gh.own_login();
    let posted = gh.list_comments(repo, PrNumber(pr)).await?.iter().any(|c| {
        own.as_deref().is_some_and(|o| c.by(o))
            && c.body.as_deref().is_some_and(|b| b.starts_with(&marker))
    });
    if posted {
        return Ok(());
    }
    let owner = snap
        .manifest
        .as_ref()
        .and_then(|m| m.metadata.owner.clone())
        .unwrap_or_else(|| env.owner.to_string());
    let within = snap
        .max_ttl
        .as_deref()
        .map(|t| format!(" (at most {t} from now, the type's `maxTtl`)"))
        .unwrap_or_default();
    let portal = format!("{}/environments/{repo}/{}", deps.public_url(), env.name);
    let body = format!(
        "{marker}\n### ⏳ `{team}/{name}` expires at {exp}\n\n@{owner}: at `{exp}` Paved will run its delete script and open a pull request removing `{path}`.\n\nTo keep it, move `spec.expiresAt` later{within} in a pull request that changes nothing else: no script runs for an extension. Or ask Paved to do it: `paved env extend {name} --until <time>`, or **Extend** on [its page]({portal}).\n",
        team = env.team,
        name = env.name,
        exp = timer.cause,
        path = snap.manifest_path,
    );
    gh.create_comment(repo, PrNumber(pr), &body).await?;
    Ok(())
}

/// Deletes the environment (operation `expire`) and opens the pull request that removes its
/// manifest. Returns the operation's final state.
pub(super) async fn expire(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    timer: &Timer,
) -> Result<OpState, WorkError> {
    let pr = jobs::last_pull_request(deps.store.as_ref(), snap, env).await?;
    let item = snap.item(
        env,
        OpKind::Expire,
        format!("expire@{}", timer.cause),
        "paved",
        pr,
    );
    let done = snap.run(deps, item).await?;
    if done.state == OpState::Succeeded {
        cleanup_pull_request(deps, snap, env, &timer.cause, done.id.0).await?;
    }
    Ok(done.state)
}

/// The pull request removing an expired environment's manifest, on a branch pushed with
/// Git under a name no one can guess, opened only once that push made the branch Paved's
/// commit (SPEC 12). An open clean-up request from an earlier try with its pull request is
/// left as it is; one without (a restart between the push and the pull request) is closed
/// and made anew.
async fn cleanup_pull_request(
    deps: &Deps,
    snap: &Snapshot,
    env: &EnvironmentRecord,
    expired_at: &str,
    run: i64,
) -> Result<(), WorkError> {
    let k = &snap.known;
    if let Some(earlier) = deps.store.open_request_for(&k.repo, &env.name).await? {
        if earlier.pr_number.is_some() {
            return Ok(());
        }
        deps.store.close_request(earlier.id).await?;
    }
    let message = format!(
        "Remove expired environment {}/{}\n\nIt expired at {expired_at} and was deleted by Paved (run {run}).\n",
        env.team, env.name
    );
    // Asked for on the owner's behalf, as a request is: the owner counts as the pull
    // request's author while its head is Paved's commit, so its checks judge what the
    // owner may do (delete their own).
    let owner = snap
        .manifest
        .as_ref()
        .and_then(|m| m.metadata.owner.as_deref())
        .and_then(|o| crate::ids::Login::parse(o).ok())
        .unwrap_or_else(|| env.owner.clone());
    let mut pushed = None;
    for _ in 0..3 {
        let branch = crate::repo::unguessable_branch("expired", &env.name);
        let Some(id) = deps
            .store
            .open_request(&crate::store::NewRequest {
                repo: k.repo.clone(),
                action: "delete".into(),
                env_name: env.name.clone(),
                team: env.team.clone(),
                requester: owner.clone(),
                branch: branch.clone(),
                manifest_path: snap.manifest_path.clone(),
            })
            .await?
        else {
            return Ok(());
        };
        let (b, path, tip) = (branch.clone(), snap.manifest_path.clone(), snap.tip.clone());
        let message = message.clone();
        let push = deps
            .repos
            .with_remote(&k.repo, &k.clone_url, k.installation, move |s| {
                s.mirror.commit_and_push_branch(
                    &s.url,
                    s.token.as_ref(),
                    &crate::repo::BranchChange {
                        base: &tip,
                        branch: &b,
                        path: &path,
                        content: None,
                        message: &message,
                    },
                )
            })
            .await;
        match push {
            Ok(head) => {
                deps.store.set_request_head(id, head.as_str()).await?;
                pushed = Some((id, branch));
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, %branch, "the cleanup branch could not be pushed; trying another name");
                deps.store.close_request(id).await?;
            }
        }
    }
    let Some((id, branch)) = pushed else {
        tracing::warn!(env = %env.name, "no cleanup pull request: its branch could not be pushed; remove the manifest by a pull request (nothing will run)");
        return Ok(());
    };
    let gh = deps.forge.client(k.installation)?;
    let body = format!(
        "`{team}/{name}` expired at `{expired_at}`: Paved ran its delete script ([run {run}]({url}/api/v1/operations/{run})).\n\nMerging this removes `{path}` so the default branch matches what exists. Nothing runs when it merges.\n",
        team = env.team,
        name = env.name,
        url = deps.public_url(),
        path = snap.manifest_path,
    );
    let title = format!("Remove expired environment {}/{}", env.team, env.name);
    match gh
        .create_pull(&k.repo, &branch, &k.default_branch, &title, &body)
        .await
    {
        Ok(p) => {
            tracing::info!(env = %env.name, pull = p.number, "opened the expired environment's cleanup pull request");
            deps.store.set_request_pr(id, p.number, &p.html_url).await?;
            Ok(())
        }
        Err(e) => {
            deps.store.close_request(id).await?;
            Err(e.into())
        }
    }
}
