//! Governed input at merge time (SPEC 12): a path that a push changed on the default branch
//! without a governed pull request runs again only once a governed pull request changed it
//! again. A merge clears the flagged paths it changed (a fork's, only manifests: a fork
//! never supplies code), and refuses every operation that would use one still flagged: its
//! manifest, its definition's folder, or any of `.paved/` and workflows, which decide every
//! check.

use crate::ids::{CommitSha, RepoName};
use crate::provision::RunSource;
use crate::repo::Mirror;
use crate::store::NewOperation;
use crate::work::{Deps, WorkError};

/// The paths still flagged after this merge, as (path, commit that changed them).
pub(super) async fn still_ungoverned(
    deps: &Deps,
    repo: &RepoName,
    src: &RunSource,
    merge_sha: &CommitSha,
) -> Result<Vec<(String, String)>, WorkError> {
    let flagged = deps.store.ungoverned(repo).await?;
    if flagged.is_empty() {
        return Ok(flagged);
    }
    let paths: Vec<String> = flagged
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| !src.from_fork || p.starts_with("environments/"))
        .collect();
    let (mirror_path, base, merge) = (
        src.mirror_path.clone(),
        src.first_parent.clone(),
        merge_sha.clone(),
    );
    let changed = crate::work::blocking(move || -> Result<Vec<String>, WorkError> {
        let mirror = Mirror::open_path(&mirror_path)?;
        let mut changed = Vec::new();
        for p in paths {
            if mirror.blob_id(&base, &p)? != mirror.blob_id(&merge, &p)? {
                changed.push(p);
            }
        }
        Ok(changed)
    })
    .await?;
    if !changed.is_empty() {
        tracing::info!(%repo, paths = ?changed, "a governed merge changed paths a direct push had changed: they run again");
        deps.store.clear_ungoverned(repo, &changed).await?;
    }
    Ok(flagged
        .into_iter()
        .filter(|(p, _)| !changed.contains(p))
        .collect())
}

/// Why `op` may not run while `tainted` paths are flagged, if it may not.
pub(super) fn refusal(tainted: &[(String, String)], op: &NewOperation) -> Option<String> {
    let definition = format!("catalog/{}/", op.definition);
    let (path, commit) = tainted.iter().find(|(p, _)| {
        p.starts_with(".paved/")
            || p.starts_with("workflows/")
            || p.starts_with(&definition)
            || *p == op.manifest_path
    })?;
    let short: String = commit.chars().take(7).collect();
    Some(format!(
        "ungoverned: {path} was changed by a direct push ({short}) and no governed pull request has changed it since; merge a pull request that changes it to run this again"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(definition: &str, manifest: &str) -> NewOperation {
        NewOperation {
            repo: RepoName::parse("acme/envs").unwrap(),
            env_name: crate::ids::EnvName::parse("web").unwrap(),
            kind: crate::store::OpKind::Deploy,
            merge_sha: CommitSha::parse("0123456789abcdef0123456789abcdef01234567").unwrap(),
            pr: Some(crate::ids::PrNumber(1)),
            attempt: 1,
            delivery_id: None,
            cause: String::new(),
            team: crate::ids::TeamName::parse("payments").unwrap(),
            owner: crate::ids::Login::parse("octocat").unwrap(),
            env_type: "dev".into(),
            definition: definition.into(),
            manifest_path: manifest.into(),
            parameters: serde_json::json!({}),
            requester: crate::ids::Login::parse("octocat").unwrap(),
            merger: None,
            approvers: vec![],
            governance_sha: String::new(),
            checks: serde_json::json!([]),
            state: crate::store::OpState::Planned,
            error: None,
        }
    }

    #[test]
    fn what_a_flagged_path_stops() {
        let m = "environments/payments/web.yaml";
        let flag = |p: &str| vec![(p.to_string(), "abcdef0123".to_string())];
        let stops = |p: &str| refusal(&flag(p), &op("site", m)).is_some();
        assert!(stops("catalog/site/deploy.sh"));
        assert!(stops(".paved/platform.yaml"));
        assert!(stops(".paved/workflows/x.yaml"));
        assert!(stops(m));
        assert!(!stops("catalog/site-two/deploy.sh"), "another definition");
        assert!(!stops("environments/payments/other.yaml"));
        let why = refusal(&flag("catalog/site/deploy.sh"), &op("site", m)).unwrap();
        assert!(
            why.starts_with("ungoverned: catalog/site/deploy.sh"),
            "{why}"
        );
        assert!(why.contains("abcdef0"), "{why}");
    }
}
