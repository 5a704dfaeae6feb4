//! Paved's one summary comment on a pull request: found by its marker, edited in place,
//! never duplicated (not even when GitHub's answer to its creation was lost).

use super::{Deps, WorkError};
use crate::checks::{self, Report};
use crate::event::PrInfo;
use crate::forge::client::{ForgeError, GitHub};
use crate::ids::CommitSha;

/// The marker that identifies Paved's summary comment among a PR's comments.
pub const COMMENT_MARKER: &str = "<!-- paved:summary -->";

/// The note a fork's pull request carries in its summary comment.
pub const FORK_NOTE: &str = "This pull request comes from a fork: Paved checks its data only, and no script from it ever runs (when it is merged, definitions are taken from the default branch as it was before the merge).";

/// Edits Paved's one summary comment on the PR, creating it the first time. The id is
/// remembered in the store; if it is unknown (a new database), the PR's comments are
/// searched for the marker first so a comment is never duplicated.
pub async fn upsert(deps: &Deps, gh: &GitHub, pr: &PrInfo, body: &str) -> Result<(), WorkError> {
    let mut id = deps.store.pr_comment(&pr.repo, pr.number).await?;
    if id.is_none() {
        id = find(gh, pr).await?;
    }
    if let Some(id) = id {
        match gh.update_comment(&pr.repo, id, body).await {
            Ok(()) => {
                deps.store.set_pr_comment(&pr.repo, pr.number, id).await?;
                return Ok(());
            }
            // Someone deleted the comment: make a new one below.
            Err(ForgeError::Refused { status: 404, .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let id = match gh.create_comment(&pr.repo, pr.number, body).await {
        Ok(id) => id,
        // The comment may exist although its answer was lost: find it before making
        // another one.
        Err(ForgeError::AnswerLost(_)) => match find(gh, pr).await? {
            Some(id) => {
                gh.update_comment(&pr.repo, id, body).await?;
                id
            }
            None => gh.create_comment(&pr.repo, pr.number, body).await?,
        },
        Err(e) => return Err(e.into()),
    };
    deps.store.set_pr_comment(&pr.repo, pr.number, id).await?;
    Ok(())
}

/// Paved's summary comment on the PR, found by its marker among the comments Paved wrote
/// (anyone may write the marker; only Paved's own login counts). `None` while Paved does not
/// know its login yet (it learns it from the first status or comment it creates): a new comment is
/// made rather than someone else's adopted.
async fn find(gh: &GitHub, pr: &PrInfo) -> Result<Option<crate::ids::CommentId>, WorkError> {
    let Some(own) = gh.own_login() else {
        return Ok(None);
    };
    Ok(gh
        .list_comments(&pr.repo, pr.number)
        .await?
        .into_iter()
        .find(|c| {
            c.by(&own)
                && c.body
                    .as_deref()
                    .is_some_and(|b| b.starts_with(COMMENT_MARKER))
        })
        .map(|c| c.id))
}

/// The fork note, as a quote, when the PR comes from a fork.
pub fn fork_note(pr: &PrInfo) -> String {
    if pr.from_fork {
        format!("> {FORK_NOTE}\n\n")
    } else {
        String::new()
    }
}

/// The summary comment of a PR's checks.
pub fn summary(
    pr: &PrInfo,
    report: &Report,
    run_url: &str,
    governance_sha: &CommitSha,
    previews: Option<&crate::preview::PreviewSet>,
) -> String {
    let preview = previews
        .map(|set| format!("\n\n{}", crate::preview::render::comment_section(set)))
        .unwrap_or_default();
    format!(
        "{COMMENT_MARKER}\n### Paved checks for `{}`\n\n{}{}{preview}\n\n[Run details]({run_url}) · governance read at `{}` (where this branch forked off `{}`)\n",
        pr.head_sha.short(),
        fork_note(pr),
        checks::render_markdown(report),
        governance_sha.short(),
        pr.default_branch
    )
}
