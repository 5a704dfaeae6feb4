//! What the pages read from Git: the default branch as it is now (fetched into the
//! repository's mirror, as the Orchestrator fetches it), for the environments' `expiresAt`
//! and an environment's audit history (commits and the notes Paved wrote).

use super::PortalState;
use crate::audit::History;
use crate::ids::RepoName;
use crate::repo::{Mirror, RepoError};
use crate::tree::TreeReader as _;
use std::collections::BTreeMap;

/// Runs `f` on `repo`'s mirror with its default branch fetched at most
/// [`super::DEFAULT_BRANCH_TTL`] ago (a page view does not fetch each time); `None` when
/// the repository is unknown or cannot be fetched (the page then goes without).
async fn on_default_branch<T: Send + 'static>(
    s: &PortalState,
    repo: &RepoName,
    f: impl FnOnce(&Mirror, &crate::ids::CommitSha) -> Result<T, RepoError> + Send + 'static,
) -> Option<T> {
    let known = s.api.directory.known(repo).await?;
    if s.cache.fresh_fetch(&known.repo.to_string()) {
        let local = format!("refs/remotes/origin/{}", known.default_branch);
        let read = s
            .api
            .orchestrator
            .repos
            .read(&known.repo, move |m| -> Result<Option<T>, RepoError> {
                match m.resolve(&local) {
                    Some(tip) => f(&m, &tip).map(Some),
                    None => Ok(None),
                }
            })
            .await;
        return match read {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, repo = %repo, "portal: reading the default branch failed");
                None
            }
        };
    }
    let result = s
        .api
        .orchestrator
        .repos
        .with_branch(
            &known.repo,
            &known.clone_url,
            known.installation,
            &known.default_branch,
            f,
        )
        .await;
    match result {
        Ok(v) => {
            s.cache.fetched_now(&known.repo.to_string());
            Some(v)
        }
        Err(e) => {
            tracing::warn!(error = %e, repo = %repo, "portal: reading the default branch failed");
            None
        }
    }
}

/// `name -> spec.expiresAt` of the manifests `environments/<team>/<name>.yaml` on the
/// default branch.
pub(super) async fn expiries(
    s: &PortalState,
    repo: &RepoName,
    envs: Vec<(String, String)>,
) -> BTreeMap<String, String> {
    on_default_branch(s, repo, move |mirror, tip| {
        let tree = mirror.tree_at(tip)?;
        let mut out = BTreeMap::new();
        for (team, name) in envs {
            let path = format!("environments/{team}/{name}.yaml");
            let Ok(Some(bytes)) = tree.read(&path) else {
                continue;
            };
            let Ok(doc) = serde_yaml::from_slice::<serde_yaml::Value>(&bytes) else {
                continue;
            };
            if let Some(at) = doc["spec"]["expiresAt"].as_str() {
                out.insert(name, at.to_string());
            }
        }
        Ok(out)
    })
    .await
    .unwrap_or_default()
}

/// The audit history of environment `env`: what `paved audit` prints.
pub(super) async fn history(s: &PortalState, repo: &RepoName, env: &str) -> Option<History> {
    let env = env.to_string();
    on_default_branch(s, repo, move |mirror, tip| {
        let git = git2::Repository::open_bare(mirror.path())?;
        let oid = git2::Oid::from_str(tip.as_str())?;
        Ok(crate::audit::history_from(&git, &env, oid).ok())
    })
    .await
    .flatten()
}

/// "in 3 days", "in 5 hours", "expired 2 hours ago": how long until `at` (RFC 3339).
pub(super) fn countdown(at: &str, now: chrono::DateTime<chrono::Utc>) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(at)
        .ok()?
        .with_timezone(&chrono::Utc);
    let d = t - now;
    let (n, unit) = match d.num_minutes().abs() {
        m if m >= 2 * 24 * 60 => (m / (24 * 60), "days"),
        m if m >= 120 => (m / 60, "hours"),
        m => (m.max(1), "minutes"),
    };
    Some(if d.num_seconds() >= 0 {
        format!("in {n} {unit}")
    } else {
        format!("expired {n} {unit} ago")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_read_as_people_say_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-03T12:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        assert_eq!(
            countdown("2026-12-06T12:00:00Z", now).as_deref(),
            Some("in 3 days")
        );
        assert_eq!(
            countdown("2026-12-03T17:30:00Z", now).as_deref(),
            Some("in 5 hours")
        );
        assert_eq!(
            countdown("2026-12-03T12:20:00Z", now).as_deref(),
            Some("in 20 minutes")
        );
        assert_eq!(
            countdown("2026-12-03T10:00:00Z", now).as_deref(),
            Some("expired 2 hours ago")
        );
        assert_eq!(countdown("not a time", now), None);
    }
}
